"""Reading and writing TimeSformer weights in every supported format, and label lists.

Supported sources (detected by `detect_format`):

* ``official``: facebookresearch/TimeSformer `.pyth` files (a dict with ``model_state``, keys
  prefixed ``model.`` and sometimes ``module.``), or any torch-saved state dict with the official
  key names.
* ``huggingface``: a directory written by `TimesformerForVideoClassification.save_pretrained`
  (config.json and model.safetensors or pytorch_model.bin; labels from ``id2label``).
* ``timesformer_ros``: this project's format, ``NAME.safetensors`` with a ``NAME.json`` beside
  it holding the configuration, labels, normalisation mean/std and where the weights came from.

Every conversion is a pure dict -> dict function onto the official key names, which are also the
names of `model.TimeSformer`'s parameters. Loading is strict: missing or unexpected keys and
shape mismatches raise `CheckpointError` listing them. Position and time embeddings whose size
differs from the requested configuration are resized explicitly, in float32, and logged.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from einops import rearrange

from .model import TimeSformer, TimeSformerConfig

LOGGER = logging.getLogger(__name__)

FORMAT_NAME = 'timesformer_ros'
FORMAT_VERSION = 1

# The official models normalise RGB in [0, 1] with mean 0.45 and std 0.225 per channel:
# facebookresearch/TimeSformer, timesformer/config/defaults.py, _C.DATA.MEAN and _C.DATA.STD.
OFFICIAL_MEAN = (0.45, 0.45, 0.45)
OFFICIAL_STD = (0.225, 0.225, 0.225)

PathLike = Union[str, Path]


EMBEDDED_CHECKPOINT = 'motion_tiny.json'


def embedded_checkpoint() -> Path:
    """Return the path of the shipped default model (package data)."""
    return Path(str(resources.files('timesformer_ros') / 'data' / EMBEDDED_CHECKPOINT))


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message says why."""


@dataclass
class Checkpoint:
    """A loaded model with everything needed to feed it and to name its outputs."""

    model: TimeSformer
    labels: list
    mean: tuple = OFFICIAL_MEAN
    std: tuple = OFFICIAL_STD
    source: str = ''
    path: str = ''
    extra: dict = field(default_factory=dict)

    @property
    def config(self) -> TimeSformerConfig:
        return self.model.config


@dataclass(frozen=True)
class CheckpointContents:
    """What a format reader found: official-named weights and what describes them."""

    state_dict: dict
    config: TimeSformerConfig
    labels: Optional[list] = None       # None: the checkpoint names no classes
    mean: tuple = OFFICIAL_MEAN
    std: tuple = OFFICIAL_STD
    extra: dict = field(default_factory=dict)   # further metadata, 'source' among it


# -- key mapping ---------------------------------------------------------------------------

# Official (and this project's) block parameter prefixes -> Hugging Face's. Derived from
# transformers' src/transformers/models/timesformer/convert_timesformer_to_pytorch.py
# (rename_key and convert_state_dict), which converts the official checkpoints.
_HF_BLOCK_NAMES = {
    'norm1': 'layernorm_before',
    'attn.qkv': 'attention.attention.qkv',
    'attn.proj': 'attention.output.dense',
    'temporal_norm1': 'temporal_layernorm',
    'temporal_attn.qkv': 'temporal_attention.attention.qkv',
    'temporal_attn.proj': 'temporal_attention.output.dense',
    'temporal_fc': 'temporal_dense',
    'norm2': 'layernorm_after',
    'mlp.fc1': 'intermediate.dense',
    'mlp.fc2': 'output.dense',
}
_HF_TOP_NAMES = {
    'cls_token': 'timesformer.embeddings.cls_token',
    'pos_embed': 'timesformer.embeddings.position_embeddings',
    'time_embed': 'timesformer.embeddings.time_embeddings',
    'patch_embed.proj': 'timesformer.embeddings.patch_embeddings.projection',
    'norm': 'timesformer.layernorm',
    'head': 'classifier',
}
_BLOCK_KEY = re.compile(r'^blocks\.(\d+)\.(.+)\.(weight|bias)$')


def official_to_hf_key(name: str) -> str:
    """Map an official parameter name to Hugging Face TimesformerForVideoClassification's."""
    match = _BLOCK_KEY.match(name)
    if match:
        index, module, param = match.groups()
        if module in _HF_BLOCK_NAMES:
            return f'timesformer.encoder.layer.{index}.{_HF_BLOCK_NAMES[module]}.{param}'
    else:
        module, _, param = name.rpartition('.')
        if name in _HF_TOP_NAMES:
            return _HF_TOP_NAMES[name]
        if module in _HF_TOP_NAMES:
            return f'{_HF_TOP_NAMES[module]}.{param}'
    raise CheckpointError(f'no Hugging Face name for parameter {name!r}')


def hf_to_official(state_dict: dict, config: TimeSformerConfig) -> dict:
    """Rename a Hugging Face state dict to official names; report keys the model lacks."""
    expected = _official_keys(config)
    renames = {official_to_hf_key(key): key for key in expected}
    out, unknown = {}, []
    for key, value in state_dict.items():
        if key in renames:
            out[renames[key]] = value
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(
            f'Hugging Face checkpoint has keys a {config.attention_type} TimeSformer does not: '
            f'{sorted(unknown)}')
    return out


def strip_prefixes(state_dict: dict, prefixes: Sequence[str] = ('module.', 'model.')) -> dict:
    """Remove wrapper prefixes (DataParallel's `module.`, the official wrapper's `model.`)."""
    out = {}
    for key, value in state_dict.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in prefixes:
                if key.startswith(prefix):
                    key = key[len(prefix):]
                    stripped = True
        out[key] = value
    return out


def _official_keys(config: TimeSformerConfig) -> list:
    """Return the parameter names of a TimeSformer with `config`, without building weights."""
    with torch.device('meta'):
        return list(TimeSformer(config).state_dict().keys())


# -- configuration from weights -----------------------------------------------------------

def config_from_state_dict(state_dict: dict, num_heads: Optional[int] = None,
                           **overrides) -> TimeSformerConfig:
    """Infer the architecture from official-named weights.

    The number of heads is not recorded in the weights; every official model uses 64-dim
    heads (ViT-B: 768 / 12), which is the default when `num_heads` is not given.
    """
    required = ('cls_token', 'pos_embed', 'patch_embed.proj.weight', 'blocks.0.norm1.weight',
                'blocks.0.mlp.fc1.weight')
    missing = [key for key in required if key not in state_dict]
    if missing:
        sample = sorted(state_dict)[:8]
        raise CheckpointError(
            f'not a TimeSformer state dict: missing {missing}; its first keys are {sample}')
    embed_dim = state_dict['cls_token'].shape[-1]
    proj = state_dict['patch_embed.proj.weight']
    num_patches = state_dict['pos_embed'].shape[1] - 1
    grid = math.isqrt(num_patches)
    if grid * grid != num_patches:
        raise CheckpointError(f'pos_embed holds {num_patches} patches, not a square grid')
    depth = 1 + max(int(m.group(1)) for m in map(_BLOCK_KEY.match, state_dict) if m)
    if 'blocks.0.temporal_attn.qkv.weight' in state_dict:
        attention_type = 'divided_space_time'
    elif 'time_embed' in state_dict:
        attention_type = 'joint_space_time'
    else:
        attention_type = 'space_only'
    values = dict(
        img_size=grid * proj.shape[-1],
        patch_size=proj.shape[-1],
        num_frames=state_dict['time_embed'].shape[1] if 'time_embed' in state_dict else 8,
        in_chans=proj.shape[1],
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads or max(1, embed_dim // 64),
        mlp_ratio=state_dict['blocks.0.mlp.fc1.weight'].shape[0] / embed_dim,
        qkv_bias='blocks.0.attn.qkv.bias' in state_dict,
        num_classes=state_dict['head.weight'].shape[0] if 'head.weight' in state_dict else 0,
        attention_type=attention_type,
    )
    values.update(overrides)
    return TimeSformerConfig(**values)


def config_from_hf(hf_config: dict, **overrides) -> TimeSformerConfig:
    """Translate a Hugging Face TimesformerConfig (config.json) into a TimeSformerConfig."""
    act = hf_config.get('hidden_act', 'gelu')
    if act != 'gelu':
        raise CheckpointError(f'hidden_act {act!r} is not supported (only exact gelu)')
    required = ('hidden_size', 'image_size', 'patch_size', 'num_frames', 'num_hidden_layers',
                'num_attention_heads', 'intermediate_size')
    missing = [key for key in required if key not in hf_config]
    if missing:
        raise CheckpointError(f'not a Hugging Face TimesformerConfig: missing {missing}')
    hidden = hf_config['hidden_size']
    num_labels = len(hf_config.get('id2label') or {}) or hf_config.get('num_labels', 2)
    values = dict(
        img_size=hf_config['image_size'],
        patch_size=hf_config['patch_size'],
        num_frames=hf_config['num_frames'],
        in_chans=hf_config.get('num_channels', 3),
        embed_dim=hidden,
        depth=hf_config['num_hidden_layers'],
        num_heads=hf_config['num_attention_heads'],
        mlp_ratio=hf_config['intermediate_size'] / hidden,
        qkv_bias=hf_config.get('qkv_bias', True),
        num_classes=num_labels,
        attention_type=hf_config.get('attention_type', 'divided_space_time'),
        layer_norm_eps=hf_config.get('layer_norm_eps', 1e-6),
    )
    values.update(overrides)
    return TimeSformerConfig(**values)


# -- embedding resizing -------------------------------------------------------------------

def resize_embeddings(state_dict: dict, config: TimeSformerConfig) -> dict:
    """Resize `pos_embed` and `time_embed` to `config` (nearest, in float32, logged).

    Nearest-neighbour is what the official code uses when T or the resolution change. Returns
    a new dict; the input is not modified.
    """
    out = dict(state_dict)
    pos = state_dict.get('pos_embed')
    if pos is not None and pos.shape[1] != config.num_patches + 1:
        old_grid = math.isqrt(pos.shape[1] - 1)
        grid = rearrange(pos[:, 1:].float(), '1 (h w) d -> 1 d h w', h=old_grid)
        grid = F.interpolate(grid, size=(config.grid_size, config.grid_size), mode='nearest')
        out['pos_embed'] = torch.cat(
            [pos[:, :1].float(), rearrange(grid, '1 d h w -> 1 (h w) d')], dim=1).to(pos.dtype)
        LOGGER.info('resized pos_embed from a %dx%d to a %dx%d patch grid', old_grid, old_grid,
                    config.grid_size, config.grid_size)
    time = state_dict.get('time_embed')
    if time is not None and time.shape[1] != config.num_frames:
        resized = F.interpolate(rearrange(time.float(), '1 t d -> 1 d t'),
                                size=config.num_frames, mode='nearest')
        out['time_embed'] = rearrange(resized, '1 d t -> 1 t d').to(time.dtype)
        LOGGER.info('resized time_embed from %d to %d frames', time.shape[1], config.num_frames)
    return out


# -- strict loading -------------------------------------------------------------------------

def load_state_dict_strict(model: TimeSformer, state_dict: dict, origin: str = 'checkpoint'):
    """Load official-named weights; raise `CheckpointError` listing every mismatch."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = sorted(
        f'{key}: {tuple(state_dict[key].shape)} vs model {tuple(expected[key].shape)}'
        for key in set(expected) & set(state_dict)
        if tuple(state_dict[key].shape) != tuple(expected[key].shape))
    problems = []
    if missing:
        problems.append(f'missing keys {missing}')
    if unexpected:
        problems.append(f'unexpected keys {unexpected}')
    if shapes:
        problems.append(f'shape mismatches {shapes}')
    if problems:
        raise CheckpointError(f'{origin} does not fit the model: ' + '; '.join(problems))
    model.load_state_dict(state_dict, strict=True)


def build_model(state_dict: dict, config: TimeSformerConfig, origin: str) -> TimeSformer:
    """Build a TimeSformer with `config` holding `state_dict` (embeddings resized to fit)."""
    model = TimeSformer(config)
    load_state_dict_strict(model, resize_embeddings(state_dict, config), origin)
    return model.eval()


# -- labels ---------------------------------------------------------------------------------

def read_labels(path: PathLike) -> list:
    """Read labels from a text file (one label per line) or JSON (a list, or {id: label})."""
    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8')
    except OSError as exc:
        raise CheckpointError(f'cannot read labels file {path}: {exc.strerror}') from None
    if path.suffix == '.json':
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f'labels file {path} is not valid JSON: {exc}') from None
        if isinstance(data, dict):
            return labels_from_id2label(data, origin=str(path))
        if isinstance(data, list) and all(isinstance(x, str) for x in data):
            return data
        raise CheckpointError(f'labels file {path} must hold a list of names or an id -> name map')
    return [line.strip() for line in text.splitlines() if line.strip()]


def labels_from_id2label(id2label: dict, origin: str = 'id2label') -> list:
    """Return the labels of an {id: label} map whose ids are 0..n-1 (as strings or ints)."""
    try:
        by_id = {int(k): str(v) for k, v in id2label.items()}
    except ValueError:
        raise CheckpointError(f'{origin}: ids must be integers, got {sorted(id2label)[:5]}') \
            from None
    if sorted(by_id) != list(range(len(by_id))):
        raise CheckpointError(f'{origin}: ids must be 0..{len(by_id) - 1} without gaps')
    return [by_id[i] for i in range(len(by_id))]


def check_labels(labels: Sequence[str], num_classes: int, origin: str) -> list:
    """Return `labels` as a list; raise `CheckpointError` unless there are `num_classes`."""
    labels = list(labels)
    if len(labels) != num_classes:
        raise CheckpointError(
            f'{origin} has {len(labels)} labels but the model head has {num_classes} classes')
    return labels


def default_labels(num_classes: int) -> list:
    """Return placeholder labels class_0, class_1, ... for a checkpoint that names none."""
    return [f'class_{i}' for i in range(num_classes)]


# -- the formats ------------------------------------------------------------------------------

def _own_json_path(path: Path) -> Optional[Path]:
    if path.suffix == '.json':
        return path
    if path.suffix == '.safetensors' and path.with_suffix('.json').is_file():
        return path.with_suffix('.json')
    return None


def detect_format(path: PathLike) -> str:
    """Return the format of an existing path: 'official', 'huggingface' or 'timesformer_ros'."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f'checkpoint not found: {path}')
    if path.is_dir():
        if (path / 'config.json').is_file():
            return 'huggingface'
        raise CheckpointError(
            f'{path} is a directory without config.json (not a Hugging Face model directory)')
    if _own_json_path(path) is not None:
        return FORMAT_NAME
    if path.suffix == '.safetensors':
        raise CheckpointError(
            f'{path} has no {path.with_suffix(".json").name} beside it: a timesformer_ros '
            f'checkpoint is NAME.safetensors plus NAME.json')
    return 'official'


def _torch_load(path: Path) -> object:
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling garbage raises any exception type
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f'{path}: not a readable PyTorch checkpoint (truncated, corrupt or a foreign '
            f'file?): {first_line}') from None


def _safetensors_load(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f'{path}: not a readable safetensors file (truncated or corrupt?): {exc}') from None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding='utf-8'))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f'{path}: not readable JSON: {exc}') from None
    if not isinstance(data, dict):
        raise CheckpointError(f'{path}: expected a JSON object')
    return data


def _official_state_dict(obj: object, path: Path) -> dict:
    if isinstance(obj, dict):
        for key in ('model_state', 'model', 'module', 'state_dict'):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f'{path}: no state dict found (expected a dict of tensors, or one under '
            f'model_state / model / module / state_dict)')
    return strip_prefixes(obj)


def _read_official(path: Path, overrides: dict) -> CheckpointContents:
    state = _official_state_dict(_torch_load(path), path)
    num_heads = overrides.pop('num_heads', None)
    try:
        config = config_from_state_dict(state, num_heads=num_heads, **overrides)
    except CheckpointError as exc:
        raise CheckpointError(f'{path}: {exc}') from None
    return CheckpointContents(state, config)


def _read_huggingface(path: Path, overrides: dict) -> CheckpointContents:
    hf_config = _read_json(path / 'config.json')
    try:
        config = config_from_hf(hf_config, **overrides)
    except CheckpointError as exc:
        raise CheckpointError(f'{path / "config.json"}: {exc}') from None
    if (path / 'model.safetensors').is_file():
        hf_state = _safetensors_load(path / 'model.safetensors')
    elif (path / 'pytorch_model.bin').is_file():
        hf_state = _official_state_dict(_torch_load(path / 'pytorch_model.bin'), path)
    else:
        raise CheckpointError(f'{path}: no model.safetensors or pytorch_model.bin')
    # TimesformerForVideoClassification keeps no buffers; position_ids-style extras would be
    # reported by hf_to_official rather than dropped.
    state = hf_to_official(hf_state, config)
    labels = None
    if hf_config.get('id2label'):
        labels = labels_from_id2label(hf_config['id2label'], origin=str(path / 'config.json'))
    mean, std = OFFICIAL_MEAN, OFFICIAL_STD
    processor = path / 'preprocessor_config.json'
    if processor.is_file():
        pre = _read_json(processor)
        mean = tuple(pre.get('image_mean', mean))
        std = tuple(pre.get('image_std', std))
    return CheckpointContents(state, config, labels, mean, std)


def _read_own(path: Path, overrides: dict) -> CheckpointContents:
    meta_path = _own_json_path(path)
    meta = _read_json(meta_path)
    if meta.get('format') != FORMAT_NAME:
        raise CheckpointError(f'{meta_path}: not a {FORMAT_NAME} checkpoint description '
                              f'(format is {meta.get("format")!r})')
    weights = meta_path.parent / meta.get('weights', meta_path.with_suffix('.safetensors').name)
    if not weights.is_file():
        raise CheckpointError(f'{meta_path}: its weights file {weights} is missing')
    try:
        config = TimeSformerConfig.from_dict({**meta['config'], **overrides})
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f'{meta_path}: invalid config: {exc}') from None
    state = _safetensors_load(weights)
    mean = tuple(meta.get('mean', OFFICIAL_MEAN))
    std = tuple(meta.get('std', OFFICIAL_STD))
    extra = {k: v for k, v in meta.items()
             if k not in ('format', 'version', 'config', 'labels', 'mean', 'std', 'weights')}
    return CheckpointContents(state, config, meta.get('labels'), mean, std, extra)


_READERS = {
    'official': _read_official,
    'huggingface': _read_huggingface,
    FORMAT_NAME: _read_own,
}


def load_checkpoint(path: PathLike, labels: Union[None, PathLike, Sequence[str]] = None,
                    **config_overrides) -> Checkpoint:
    """Load any supported checkpoint into a `Checkpoint` (model in eval mode, on the CPU).

    `labels` (a list, or a labels file) replaces the checkpoint's own labels. Config overrides
    (for example `num_frames=16`) change the architecture the weights are loaded into;
    embeddings are resized to fit.
    """
    path = Path(path)
    fmt = detect_format(path)
    contents = _READERS[fmt](path, dict(config_overrides))
    config, mean, std = contents.config, contents.mean, contents.std
    model = build_model(contents.state_dict, config, origin=str(path))
    if labels is not None:
        origin = str(labels) if isinstance(labels, (str, Path)) else 'labels'
        labels = labels if not isinstance(labels, (str, Path)) else read_labels(labels)
        labels = check_labels(labels, config.num_classes, origin)
    elif contents.labels is not None:
        labels = check_labels(contents.labels, config.num_classes, str(path))
    else:
        labels = default_labels(config.num_classes)
    source = contents.extra.get('source', f'{fmt}:{path}')
    extra = {k: v for k, v in contents.extra.items() if k != 'source'}
    if len(mean) != config.in_chans or len(std) != config.in_chans:
        raise CheckpointError(f'{path}: mean/std {mean}/{std} do not have {config.in_chans} '
                              f'channels')
    return Checkpoint(model=model, labels=labels, mean=tuple(float(m) for m in mean),
                      std=tuple(float(s) for s in std), source=source, path=str(path),
                      extra=extra)


def load_model(path: PathLike, **kwargs):
    """Load any supported checkpoint; return (model, labels)."""
    ckpt = load_checkpoint(path, **kwargs)
    return ckpt.model, ckpt.labels


def save_checkpoint(path: PathLike, model: TimeSformer, labels: Sequence[str],
                    mean: Sequence[float] = OFFICIAL_MEAN, std: Sequence[float] = OFFICIAL_STD,
                    source: str = '', **extra) -> Path:
    """Write the project's own format, NAME.safetensors and NAME.json; return the JSON path."""
    from safetensors.torch import save_file
    path = Path(path)
    if path.suffix in ('.json', '.safetensors'):
        path = path.with_suffix('')
    weights = path.with_name(path.name + '.safetensors')
    meta_path = path.with_name(path.name + '.json')
    labels = check_labels(labels, model.config.num_classes, 'labels')
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to('cpu').contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights), metadata={'format': FORMAT_NAME})
    meta = {
        'format': FORMAT_NAME,
        'version': FORMAT_VERSION,
        'weights': weights.name,
        'config': model.config.to_dict(),
        'labels': labels,
        'mean': [float(m) for m in mean],
        'std': [float(s) for s in std],
        'source': source,
        **extra,
    }
    meta_path.write_text(json.dumps(meta, indent=2) + '\n', encoding='utf-8')
    return meta_path


# -- timm ViT -> TimeSformer ----------------------------------------------------------------

def load_vit_weights_into_timesformer(model: TimeSformer, vit, include_head: bool = True):
    """Initialise `model` from a timm VisionTransformer or its state dict.

    This is how the official code initialises TimeSformer from ImageNet ViT weights.

    Patch embedding, CLS token, position embedding (resized if the grid differs), spatial
    attention, MLPs and norms are copied; in divided blocks the temporal attention and its norm
    start as copies of the spatial ones and `temporal_fc` stays zero, so each block is
    initially the ViT block; the time embedding is zero. The head is copied when
    `include_head` (shapes must match), else left as initialised.
    """
    vit_state = vit.state_dict() if hasattr(vit, 'state_dict') else dict(vit)
    target = model.state_dict()
    allowed = {k for k in target if 'temporal' not in k and k != 'time_embed'}
    if not include_head:
        allowed -= {'head.weight', 'head.bias'}
        vit_state = {k: v for k, v in vit_state.items() if not k.startswith('head.')}
    unsupported = sorted(set(vit_state) - allowed)
    missing = sorted(allowed - set(vit_state))
    if unsupported or missing:
        raise CheckpointError(
            'ViT does not map onto the TimeSformer: '
            + (f'ViT parameters without a counterpart {unsupported}' if unsupported else '')
            + ('; ' if unsupported and missing else '')
            + (f'TimeSformer parameters the ViT lacks {missing}' if missing else ''))
    state = resize_embeddings(dict(vit_state), model.config)
    for key, value in list(state.items()):
        if key.startswith('blocks.') and ('.attn.' in key or '.norm1.' in key):
            state[key.replace('.attn.', '.temporal_attn.').replace('.norm1.', '.temporal_norm1.')]\
                = value
    full = {k: v for k, v in target.items()}
    full.update({k: v for k, v in state.items() if k in target})
    load_state_dict_strict(model, full, origin='ViT weights')
    return model


# -- console script ---------------------------------------------------------------------------

def convert_main(argv: Optional[Sequence[str]] = None) -> int:
    """Run timesformer_convert SRC DST [--labels FILE]: write any source in the own format."""
    parser = argparse.ArgumentParser(
        prog='timesformer_convert',
        description='Convert an official .pyth, a Hugging Face directory or a timesformer_ros '
                    'checkpoint into the timesformer_ros format (DST.safetensors + DST.json).')
    parser.add_argument('src', help='checkpoint file or Hugging Face model directory')
    parser.add_argument('dst', help='output path (the .safetensors/.json suffix is optional)')
    parser.add_argument('--labels', help='labels file: one name per line, or JSON list/map')
    parser.add_argument('--num-heads', type=int,
                        help='attention heads (official checkpoints do not record it; '
                             'default embed_dim / 64)')
    parser.add_argument('--mean', type=float, nargs='+', help='normalisation mean per channel')
    parser.add_argument('--std', type=float, nargs='+', help='normalisation std per channel')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    overrides = {'num_heads': args.num_heads} if args.num_heads else {}
    try:
        ckpt = load_checkpoint(args.src, labels=args.labels, **overrides)
        out = save_checkpoint(args.dst, ckpt.model, ckpt.labels, mean=args.mean or ckpt.mean,
                              std=args.std or ckpt.std, source=ckpt.source)
    except CheckpointError as exc:
        print(f'timesformer_convert: error: {exc}', file=sys.stderr)
        return 1
    cfg = ckpt.config
    print(f'wrote {out} ({cfg.attention_type}, {cfg.num_frames}x{cfg.img_size}, '
          f'{cfg.num_classes} classes)')
    return 0
