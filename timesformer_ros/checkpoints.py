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
names of `model.TimeSformer`'s parameters. Position and time embeddings whose size differs from
the requested configuration are resized explicitly, in float32, and logged.

A checkpoint is untrusted input, read in two steps by `load_checkpoint`:

1. What it describes, before any weight is read: the configuration (types, ranges and
   `CONFIG_LIMITS`), the labels (distinct non-empty strings, one per class), the normalisation
   (finite, std > 0) and the names, shapes and dtypes of its tensors (from the safetensors
   header, or a memory-mapped torch file) against a model built on the meta device. Missing or
   unexpected keys and shape mismatches are listed; nothing is loaded with `strict=False`.
2. The weights: read, checked to be finite, and loaded into the model, whose memory is
   allocated only now.

So memory follows the file's real size, not what its description claims. Every malformed
input raises `CheckpointError` with one line naming the file and the problem.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import math
import numbers
import re
import reprlib
import stat
import sys
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from einops import rearrange

from .errors import brief
from .model import TimeSformer, TimeSformerConfig
from .rates import MAX_FPS, MIN_FPS, rate_problem

LOGGER = logging.getLogger(__name__)

FORMAT_NAME = 'timesformer_ros'
FORMAT_VERSION = 1

# The official models normalise RGB in [0, 1] with mean 0.45 and std 0.225 per channel:
# facebookresearch/TimeSformer, timesformer/config/defaults.py, _C.DATA.MEAN and _C.DATA.STD.
OFFICIAL_MEAN = (0.45, 0.45, 0.45)
OFFICIAL_STD = (0.225, 0.225, 0.225)

# What a checkpoint may describe, checked before anything is built. Generous for real models
# (TimeSformer, -HR, -L: embed_dim 768, depth 12, 12 heads, 224 or 448 px, 8 to 96 frames,
# 400 to 600 classes; the largest ViTs, up to ViT-22B: embed_dim 6144, depth 48, 48 heads).
CONFIG_LIMITS = {
    'img_size': 2048,
    'patch_size': 256,
    'num_frames': 1024,
    'in_chans': 16,
    'embed_dim': 8192,
    'depth': 128,
    'num_heads': 256,
    'num_classes': 100_000,         # ImageNet-21k has 21,843
}
MAX_MLP_RATIO = 16.0
MAX_PATCHES = 128 * 128             # patches per frame: 2048 px in 16 px patches
MAX_PARAMETERS = 2_000_000_000      # 8 GB in float32; TimeSformer-L has 121 million
MAX_TENSORS = 10_000                # a depth-128 divided model has 2,569
MAX_JSON_BYTES = 32 * 2 ** 20       # a description, config.json or labels file
# Inputs are RGB in [0, 1]: with |mean| <= 10 and std >= 0.001 a normalised pixel stays within
# +-11,000, finite even in float16. Statistics of 0-255 pixels (mean 123.7) are refused.
MAX_ABS_MEAN = 10.0
MIN_STD = 1e-3
MAX_STD = 1e3

# safetensors dtypes that torch reads; `check_fit` refuses all but the floating-point ones.
_SAFETENSORS_DTYPES = {'F64': torch.float64, 'F32': torch.float32, 'F16': torch.float16,
                       'BF16': torch.bfloat16, 'I64': torch.int64, 'I32': torch.int32,
                       'I16': torch.int16, 'I8': torch.int8, 'U8': torch.uint8,
                       'BOOL': torch.bool}

PathLike = Union[str, Path]


EMBEDDED_CHECKPOINT = 'motion.json'


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
    clip_fps: Optional[float] = None    # the rate of the clips it was trained on; None: unknown

    @property
    def config(self) -> TimeSformerConfig:
        return self.model.config


@dataclass(frozen=True)
class CheckpointContents:
    """What a format reader found: official-named tensors and what describes them.

    `state_dict` may hold stand-ins that carry only names, shapes and dtypes (meta tensors, or
    tensors of a memory-mapped file not read yet); `read` returns the weights themselves.
    `config` is what the checkpoint describes, before the caller's overrides.
    """

    state_dict: dict
    config: TimeSformerConfig
    labels: Optional[list] = None       # None: the checkpoint names no classes
    mean: tuple = OFFICIAL_MEAN
    std: tuple = OFFICIAL_STD
    extra: dict = field(default_factory=dict)   # further metadata, 'source' among it
    read: Optional[Callable[[], dict]] = None   # the weights; None: `state_dict` holds them
    origin: str = ''                            # the weights in messages; '': the path
    clip_fps: Optional[float] = None            # frames per second of the training clips


# -- the clip rate ----------------------------------------------------------------------------

# Kinetics videos, which the official models were trained on, are about 30 fps.
KINETICS_FPS = 30.0
MAX_CLIP_FPS = MAX_FPS
_OFFICIAL_NAME = re.compile(r'_(\d+)x(\d+)_')


def check_clip_fps(value: object, origin: str) -> float:
    """Return a clip rate (frames per second of the sampled clip) or raise CheckpointError.

    The range is `rates.MIN_FPS`..`rates.MAX_FPS` (0.01..1000), for every source of a rate.
    """
    problem = rate_problem(value)
    if problem:
        raise CheckpointError(f'{origin}: clip_fps {problem}')
    return float(value)


def clip_fps_from_interval(interval: object, camera_fps: object = KINETICS_FPS,
                           origin: str = 'frame interval') -> float:
    """Return the clip rate of taking every `interval`-th frame of a `camera_fps` video."""
    if type(interval) is not int or interval < 1:
        raise CheckpointError(f'{origin}: the frame interval must be a positive whole number, '
                              f'got {_show(interval)}')
    problem = rate_problem(camera_fps)
    if problem:
        raise CheckpointError(f'{origin}: the camera rate {problem}')
    fps = float(camera_fps) / min(interval, 10 ** 300)     # an int past float range: 0 fps
    if rate_problem(fps):
        raise CheckpointError(f'{origin}: every {_show(interval)}th frame of '
                              f'{float(camera_fps):g} fps video is {fps:g} fps; clip rates '
                              f'must be in '
                              f'[{MIN_FPS:g}, {MAX_FPS:g}] frames per second')
    return fps


def clip_fps_from_name(path: Path, num_frames: int) -> Optional[float]:
    """Return the clip rate an official checkpoint's file name states, or None.

    The official names say FRAMESxINTERVAL (TimeSformer_divST_8x32_224_K400.pyth: 8 frames,
    every 32nd frame of the ~30 fps Kinetics videos, 0.9375 fps); a name whose frame count is
    not the model's says nothing.
    """
    match = _OFFICIAL_NAME.search(Path(path).name)
    if not match or int(match.group(1)) != num_frames:
        return None
    interval = int(match.group(2))
    fps = clip_fps_from_interval(interval, KINETICS_FPS, str(path))
    LOGGER.info('%s: clip rate from the file name: every %dth frame at %g fps = %g fps',
                path, interval, KINETICS_FPS, fps)
    return fps


# -- messages -------------------------------------------------------------------------------

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 100


def _show(value: object) -> str:
    """Return a short one-line repr of an untrusted value, for a message."""
    return _REPR.repr(value)


def _listing(items: Sequence, show: Callable = _show, limit: int = 8) -> str:
    """Return `items` as a one-line list, the first `limit` shown and the rest counted."""
    items = list(items)
    shown = ', '.join(show(item) for item in items[:limit])
    more = f', ... ({len(items)} in all)' if len(items) > limit else ''
    return f'[{shown}{more}]'


@contextmanager
def _about(origin: object):
    """Prefix the message of a `CheckpointError` raised inside with `origin`."""
    try:
        yield
    except CheckpointError as exc:
        raise CheckpointError(f'{origin}: {exc}') from None


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
            f'{_listing(sorted(unknown))}')
    return out


def strip_prefixes(state_dict: dict, prefixes: Sequence[str] = ('module.', 'model.')) -> dict:
    """Remove wrapper prefixes (DataParallel's `module.`, the official wrapper's `model.`)."""
    out, original = {}, {}
    for key, value in state_dict.items():
        name = key
        stripped = True
        while stripped:
            stripped = False
            for prefix in prefixes:
                if name.startswith(prefix):
                    name = name[len(prefix):]
                    stripped = True
        if name in out:
            raise CheckpointError(f'the state dict holds {_show(name)} twice, as '
                                  f'{_show(original[name])} and {_show(key)}')
        out[name], original[name] = value, key
    return out


@functools.lru_cache(maxsize=8)
def _expected_state(config: TimeSformerConfig) -> Mapping:
    """Return the state dict of a TimeSformer with `config` as meta tensors (no memory)."""
    with torch.device('meta'):
        return MappingProxyType(TimeSformer(config).state_dict())


def _official_keys(config: TimeSformerConfig) -> list:
    """Return the parameter names of a TimeSformer with `config`, without building weights."""
    return list(_expected_state(config))


# -- configuration: types, ranges, limits ---------------------------------------------------

def _number(value: object) -> Optional[float]:
    """Return `value` as a float if it is a real number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except OverflowError:           # an integer beyond float range
        return math.inf if value > 0 else -math.inf


def _typed(value: object, kind: type, what: str) -> object:
    """Return `value` if it is of the type of a config field's default, else raise."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise CheckpointError(f'{what} must be true or false, got {_show(value)}')
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise CheckpointError(f'{what} must be an integer, got {_show(value)}')
    if kind is float:
        number = _number(value)
        if number is not None and math.isfinite(number):
            return number
        raise CheckpointError(f'{what} must be a finite number, got {_show(value)}')
    if isinstance(value, kind):
        return value
    kind_name = 'string' if kind is str else kind.__name__
    raise CheckpointError(f'{what} must be a {kind_name}, got {_show(value)}')


def _check_fields(values: dict):
    """Raise `CheckpointError` for the first typed config value above its limit."""
    for name, limit in CONFIG_LIMITS.items():
        if name in values and values[name] > limit:
            raise CheckpointError(f'{name} {_show(values[name])} is above the limit of {limit}')
    if values.get('mlp_ratio', 0) > MAX_MLP_RATIO:
        raise CheckpointError(
            f'mlp_ratio {values["mlp_ratio"]} is above the limit of {MAX_MLP_RATIO}')
    if not 0 < values.get('layer_norm_eps', 1e-6) < 1:
        raise CheckpointError(
            f'layer_norm_eps must lie between 0 and 1, got {values["layer_norm_eps"]}')


def check_config(config: TimeSformerConfig) -> TimeSformerConfig:
    """Return `config` if it is within `CONFIG_LIMITS` and `MAX_PARAMETERS`, else raise.

    Builds nothing but a meta-device model, to count the parameters.
    """
    _check_fields(dataclasses.asdict(config))
    if config.num_patches > MAX_PATCHES:
        raise CheckpointError(
            f'img_size {config.img_size} in patches of {config.patch_size} gives '
            f'{config.num_patches} patches per frame, above the limit of {MAX_PATCHES}')
    parameters = sum(t.numel() for t in _expected_state(config).values())
    if parameters > MAX_PARAMETERS:
        raise CheckpointError(f'the config describes {parameters:,} parameters, above the '
                              f'limit of {MAX_PARAMETERS:,}')
    return config


def config_from_values(values: object, **overrides) -> TimeSformerConfig:
    """Return the TimeSformerConfig of JSON-like `values`, every field checked for type and range.

    Fields left out take their defaults; `overrides` replace fields. Raises `CheckpointError`
    without the file's name, which the caller adds.
    """
    if not isinstance(values, dict):
        raise CheckpointError(f'config must be a JSON object, got {_show(values)}')
    values = {**values, **overrides}
    fields = {f.name: f for f in dataclasses.fields(TimeSformerConfig)}
    unknown = [name for name in values if name not in fields]
    if unknown:
        raise CheckpointError(f'unknown config fields {_listing(unknown)}')
    typed = {name: _typed(value, type(fields[name].default), f'config {name}')
             for name, value in values.items()}
    _check_fields(typed)
    try:
        config = TimeSformerConfig(**typed)
    except ValueError as exc:
        raise CheckpointError(f'invalid config: {exc}') from None
    return check_config(config)


# -- configuration from weights -----------------------------------------------------------

def _dims(state_dict: dict, key: str, expected: str) -> tuple:
    """Return the shape of `state_dict[key]` if it has as many non-empty axes as `expected`."""
    shape = tuple(state_dict[key].shape)
    if len(shape) != expected.count(',') + 1 or 0 in shape:
        raise CheckpointError(f'not a TimeSformer state dict: {key} has shape {shape}, '
                              f'expected {expected}')
    return shape


def _block_index(key: str) -> int:
    match = _BLOCK_KEY.match(key)
    if not match:
        return -1
    digits = match.group(1)
    return int(digits) if len(digits) < 10 else 10 ** 9


def config_from_state_dict(state_dict: dict, num_heads: Optional[int] = None,
                           **overrides) -> TimeSformerConfig:
    """Infer the architecture from official-named weights (or meta tensors of their shapes).

    The number of heads is not recorded in the weights; every official model uses 64-dim
    heads (ViT-B: 768 / 12), which is the default when `num_heads` is not given.
    """
    required = ('cls_token', 'pos_embed', 'patch_embed.proj.weight', 'blocks.0.norm1.weight',
                'blocks.0.mlp.fc1.weight')
    missing = [key for key in required if key not in state_dict]
    if missing:
        sample = sorted(state_dict)[:8]
        raise CheckpointError(
            f'not a TimeSformer state dict: missing {missing}; its first keys are '
            f'{_listing(sample)}')
    embed_dim = _dims(state_dict, 'cls_token', '(1, 1, embed_dim)')[-1]
    proj = _dims(state_dict, 'patch_embed.proj.weight', '(embed_dim, channels, patch, patch)')
    if proj[2] != proj[3]:
        raise CheckpointError(f'patch_embed.proj.weight has shape {proj}: patches are not square')
    num_patches = _dims(state_dict, 'pos_embed', '(1, 1 + patches, embed_dim)')[1] - 1
    grid = math.isqrt(num_patches)
    if num_patches < 1 or grid * grid != num_patches:
        raise CheckpointError(f'pos_embed holds {num_patches} patches, not a square grid')
    mlp_hidden = _dims(state_dict, 'blocks.0.mlp.fc1.weight', '(mlp_hidden, embed_dim)')[0]
    if 'blocks.0.temporal_attn.qkv.weight' in state_dict:
        attention_type = 'divided_space_time'
    elif 'time_embed' in state_dict:
        attention_type = 'joint_space_time'
    else:
        attention_type = 'space_only'
    values = dict(
        img_size=grid * proj[-1],
        patch_size=proj[-1],
        num_frames=(_dims(state_dict, 'time_embed', '(1, frames, embed_dim)')[1]
                    if 'time_embed' in state_dict else 8),
        in_chans=proj[1],
        embed_dim=embed_dim,
        depth=1 + max(map(_block_index, state_dict)),
        num_heads=num_heads or max(1, embed_dim // 64),
        mlp_ratio=mlp_hidden / embed_dim,
        qkv_bias='blocks.0.attn.qkv.bias' in state_dict,
        num_classes=(_dims(state_dict, 'head.weight', '(classes, embed_dim)')[0]
                     if 'head.weight' in state_dict else 0),
        attention_type=attention_type,
    )
    return config_from_values(values, **overrides)


# Hugging Face TimesformerConfig sizes -> TimeSformerConfig's fields.
_HF_SIZES = {'image_size': 'img_size', 'patch_size': 'patch_size', 'num_frames': 'num_frames',
             'num_channels': 'in_chans', 'hidden_size': 'embed_dim',
             'num_hidden_layers': 'depth', 'num_attention_heads': 'num_heads'}


def _hf_size(name: str, value: object, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(f'{name} must be a positive integer, got {_show(value)}')
    if value > limit:
        raise CheckpointError(f'{name} {value} is above the limit of {limit}')
    return value


def config_from_hf(hf_config: dict, **overrides) -> TimeSformerConfig:
    """Translate a Hugging Face TimesformerConfig (config.json) into a TimeSformerConfig."""
    act = hf_config.get('hidden_act', 'gelu')
    if act != 'gelu':
        raise CheckpointError(f'hidden_act {_show(act)} is not supported (only exact gelu)')
    required = ('hidden_size', 'image_size', 'patch_size', 'num_frames', 'num_hidden_layers',
                'num_attention_heads', 'intermediate_size')
    missing = [key for key in required if key not in hf_config]
    if missing:
        raise CheckpointError(f'not a Hugging Face TimesformerConfig: missing {missing}')
    values = {ours: _hf_size(name, hf_config.get(name, 3), CONFIG_LIMITS[ours])
              for name, ours in _HF_SIZES.items()}
    hidden = values['embed_dim']
    intermediate = _hf_size('intermediate_size', hf_config['intermediate_size'],
                            int(MAX_MLP_RATIO * hidden))
    id2label = hf_config.get('id2label') or {}
    if not isinstance(id2label, dict):
        raise CheckpointError(f'id2label must be a JSON object {{id: name}}, got '
                              f'{_show(id2label)}')
    values.update(
        mlp_ratio=intermediate / hidden,
        qkv_bias=hf_config.get('qkv_bias', True),
        num_classes=len(id2label) or _hf_size('num_labels', hf_config.get('num_labels', 2),
                                              CONFIG_LIMITS['num_classes']),
        attention_type=hf_config.get('attention_type', 'divided_space_time'),
        layer_norm_eps=hf_config.get('layer_norm_eps', 1e-6),
    )
    return config_from_values(values, **overrides)


# -- embedding resizing -------------------------------------------------------------------

def resize_embeddings(state_dict: dict, config: TimeSformerConfig, log: bool = True) -> dict:
    """Resize `pos_embed` and `time_embed` to `config` (nearest, in float32, logged).

    Nearest-neighbour is what the official code uses when T or the resolution change. Returns
    a new dict; the input is not modified. Meta tensors give the shapes without any data
    (`log=False` keeps that quiet).
    """
    out = dict(state_dict)
    pos = state_dict.get('pos_embed')
    if pos is not None and pos.shape[1] != config.num_patches + 1:
        old_grid = math.isqrt(pos.shape[1] - 1)
        grid = rearrange(pos[:, 1:].float(), '1 (h w) d -> 1 d h w', h=old_grid)
        grid = F.interpolate(grid, size=(config.grid_size, config.grid_size), mode='nearest')
        out['pos_embed'] = torch.cat(
            [pos[:, :1].float(), rearrange(grid, '1 d h w -> 1 (h w) d')], dim=1).to(pos.dtype)
        if log:
            LOGGER.info('resized pos_embed from a %dx%d to a %dx%d patch grid', old_grid,
                        old_grid, config.grid_size, config.grid_size)
    time = state_dict.get('time_embed')
    if time is not None and time.shape[1] != config.num_frames:
        resized = F.interpolate(rearrange(time.float(), '1 t d -> 1 d t'),
                                size=config.num_frames, mode='nearest')
        out['time_embed'] = rearrange(resized, '1 d t -> 1 t d').to(time.dtype)
        if log:
            LOGGER.info('resized time_embed from %d to %d frames', time.shape[1],
                        config.num_frames)
    return out


# -- strict loading -------------------------------------------------------------------------

def check_fit(expected: dict, state_dict: dict, origin: str = 'checkpoint'):
    """Raise `CheckpointError` listing every missing or unexpected key and shape mismatch.

    `expected` is a model's state dict (meta tensors will do); weights must be floating point.
    """
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = sorted(
        f'{key}: {tuple(state_dict[key].shape)} vs model {tuple(expected[key].shape)}'
        for key in set(expected) & set(state_dict)
        if tuple(state_dict[key].shape) != tuple(expected[key].shape))
    not_float = sorted(f'{key} ({str(value.dtype).replace("torch.", "")})'
                       for key, value in state_dict.items()
                       if key in expected and not value.dtype.is_floating_point)
    problems = []
    if missing:
        problems.append(f'missing keys {_listing(missing)}')
    if unexpected:
        problems.append(f'unexpected keys {_listing(unexpected)}')
    if shapes:
        problems.append(f'shape mismatches {_listing(shapes, show=str)}')
    if not_float:
        problems.append(f'tensors that are not floating point {_listing(not_float, show=str)}')
    if problems:
        raise CheckpointError(f'{origin} does not fit the model: ' + '; '.join(problems))


def check_finite(state_dict: dict, origin: str = 'checkpoint'):
    """Raise `CheckpointError` naming the tensors that hold NaN or infinite values."""
    bad = [key for key, value in state_dict.items() if not bool(torch.isfinite(value).all())]
    if bad:
        raise CheckpointError(f'{origin}: non-finite values (NaN or infinity) in '
                              f'{_listing(bad)}')


def load_state_dict_strict(model: TimeSformer, state_dict: dict, origin: str = 'checkpoint'):
    """Load official-named weights; raise `CheckpointError` listing every mismatch."""
    check_fit(model.state_dict(), state_dict, origin)
    model.load_state_dict(state_dict, strict=True)


def build_model(state_dict: dict, config: TimeSformerConfig,
                origin: str = 'checkpoint') -> TimeSformer:
    """Build a TimeSformer with `config` holding `state_dict` (embeddings resized to fit).

    The model is built on the meta device and checked against the weights first; its memory
    is allocated only once they fit, as copies of the weights in the model's dtype (never
    views of a memory-mapped file). (`Module.to_empty` would do too, but imports sympy: 35 MB.)
    """
    with torch.device('meta'):
        model = TimeSformer(config)
    state = resize_embeddings(state_dict, config)
    expected = model.state_dict()
    check_fit(expected, state, origin)
    state = {key: value.to('cpu', expected[key].dtype, copy=True,
                           memory_format=torch.contiguous_format)
             for key, value in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


# -- labels and normalisation ---------------------------------------------------------------

def _check_names(labels: object) -> list:
    """Return `labels` as a list of distinct non-empty one-line strings, else raise."""
    if not isinstance(labels, (list, tuple)):
        raise CheckpointError(f'labels must be a list of names, got {_show(labels)}')
    for index, name in enumerate(labels):
        if not isinstance(name, str):
            raise CheckpointError(f'label {index} must be a string, got {_show(name)}')
        if not name.strip():
            raise CheckpointError(f'label {index} is empty')
        if name.splitlines() != [name]:
            raise CheckpointError(f'label {index} {_show(name)} spans several lines')
    repeated = sorted(name for name, count in Counter(labels).items() if count > 1)
    if repeated:
        raise CheckpointError(f'labels must be distinct; repeated: {_listing(repeated)}')
    return list(labels)


def read_labels(path: PathLike) -> list:
    """Read labels from a text file (one label per line) or JSON (a list, or {id: label}).

    Blank lines are skipped. The names must be distinct non-empty strings.
    """
    path = Path(path)
    if path.suffix == '.json':
        data = _read_json(path, 'labels file', dict_only=False)
        if isinstance(data, dict):
            labels = labels_from_id2label(data, origin=str(path))
        elif isinstance(data, list):
            labels = data
        else:
            raise CheckpointError(f'{path}: a labels file must hold a list of names or an '
                                  f'id -> name map, got {_show(data)}')
    else:
        text = _read_text(path, 'labels file')
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    with _about(path):
        return _check_names(labels)


def labels_from_id2label(id2label: dict, origin: str = 'id2label') -> list:
    """Return the labels of an {id: label} map whose ids are 0..n-1 (as strings or ints)."""
    by_id = {}
    for key, name in id2label.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            raise CheckpointError(f'{origin}: ids must be integers, got {_show(key)}') from None
        if not isinstance(name, str):
            raise CheckpointError(f'{origin}: the name of id {index} must be a string, got '
                                  f'{_show(name)}')
        by_id[index] = name
    if sorted(by_id) != list(range(len(id2label))):
        raise CheckpointError(f'{origin}: ids must be 0..{len(id2label) - 1} without gaps')
    with _about(origin):
        return _check_names([by_id[i] for i in range(len(by_id))])


def check_labels(labels: Sequence[str], num_classes: int, origin: str) -> list:
    """Return `labels` as a list; raise `CheckpointError` unless `num_classes` valid names."""
    with _about(origin):
        labels = _check_names(labels)
    if len(labels) != num_classes:
        raise CheckpointError(
            f'{origin} has {len(labels)} labels but the model head has {num_classes} classes')
    return labels


def default_labels(num_classes: int) -> list:
    """Return placeholder labels class_0, class_1, ... for a checkpoint that names none."""
    return [f'class_{i}' for i in range(num_classes)]


def _normalisation(mean: object, std: object, channels: int) -> tuple:
    """Return (mean, std) as tuples of floats, or raise without naming the file."""
    out = []
    for name, values in (('mean', mean), ('std', std)):
        numbers = [_number(v) for v in values] if isinstance(values, (list, tuple)) else []
        if len(numbers) != channels or None in numbers:
            raise CheckpointError(f'{name} must be a list of {channels} numbers (one per '
                                  f'channel), got {_show(values)}')
        if not all(math.isfinite(v) for v in numbers):
            raise CheckpointError(f'{name} {numbers} is not finite')
        out.append(tuple(numbers))
    mean, std = out
    if not all(abs(m) <= MAX_ABS_MEAN for m in mean):
        raise CheckpointError(f'mean {list(mean)} is outside [-{MAX_ABS_MEAN:g}, '
                              f'{MAX_ABS_MEAN:g}] (pixels are normalised as RGB in [0, 1])')
    if not all(MIN_STD <= s <= MAX_STD for s in std):
        raise CheckpointError(f'std {list(std)} must lie between {MIN_STD:g} and {MAX_STD:g} '
                              f'(pixels are normalised as RGB in [0, 1])')
    return mean, std


def check_normalisation(mean: Sequence[float], std: Sequence[float], channels: int,
                        origin: str) -> tuple:
    """Return (mean, std) as tuples of floats; raise unless each holds `channels` numbers.

    The mean must be finite and within +-`MAX_ABS_MEAN`, the std within [`MIN_STD`,
    `MAX_STD`]: inputs are RGB in [0, 1], and a normalised pixel must stay finite.
    """
    with _about(origin):
        return _normalisation(mean, std, channels)


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
    try:
        exists, is_dir, is_file = path.exists(), path.is_dir(), path.is_file()
    except OSError as exc:
        raise CheckpointError(f'{path}: cannot be read: {exc.strerror or exc}') from None
    if not exists:
        raise CheckpointError(f'checkpoint not found: {path}')
    if is_dir:
        if (path / 'config.json').is_file():
            return 'huggingface'
        raise CheckpointError(
            f'{path} is a directory without config.json (not a Hugging Face model directory)')
    if not is_file:
        raise CheckpointError(f'{path}: not a regular file')
    if _own_json_path(path) is not None:
        return FORMAT_NAME
    if path.suffix == '.safetensors':
        raise CheckpointError(
            f'{path} has no {path.with_suffix(".json").name} beside it: a timesformer_ros '
            f'checkpoint is NAME.safetensors plus NAME.json')
    return 'official'


def _torch_load(path: Path) -> object:
    """Load a torch file memory-mapped (nothing is read until used) where its format allows."""
    try:
        try:
            return torch.load(path, map_location='cpu', weights_only=True, mmap=True)
        except RuntimeError as exc:
            if 'mmap' not in str(exc):
                raise
            # Files from torch.save(..., _use_new_zipfile_serialization=False) cannot be mapped.
            return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling garbage raises any exception type
        raise CheckpointError(
            f'{path}: not a readable PyTorch checkpoint (truncated, corrupt or a foreign '
            f'file?): {brief(exc, with_type=False)}') from None


def _safetensors_errors() -> tuple:
    from safetensors import SafetensorError
    return SafetensorError, OSError, ValueError, RuntimeError


def _safetensors_header(path: Path) -> dict:
    """Return the tensors of a safetensors file as meta tensors: names, shapes, dtypes, no data."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework='pt') as file:
            names = list(file.keys())
            if len(names) > MAX_TENSORS:
                raise CheckpointError(f'{path}: {len(names)} tensors, more than a TimeSformer '
                                      f'has (limit {MAX_TENSORS})')
            header = {name: (file.get_slice(name).get_shape(), file.get_slice(name).get_dtype())
                      for name in names}
    except _safetensors_errors() as exc:
        raise CheckpointError(
            f'{path}: not a readable safetensors file (truncated or corrupt?): '
            f'{brief(exc, with_type=False)}') from None
    state = {}
    for name, (shape, dtype) in header.items():
        if dtype not in _SAFETENSORS_DTYPES:
            raise CheckpointError(f'{path}: tensor {_show(name)} holds {dtype}, not '
                                  f'floating-point weights')
        try:
            state[name] = torch.empty(shape, dtype=_SAFETENSORS_DTYPES[dtype], device='meta')
        except (RuntimeError, ValueError, OverflowError):
            raise CheckpointError(f'{path}: tensor {_show(name)} has an impossible shape '
                                  f'{_show(shape)}') from None
    return state


def _safetensors_load(path: Path) -> dict:
    from safetensors.torch import load_file
    try:
        return load_file(str(path))
    except _safetensors_errors() as exc:
        raise CheckpointError(
            f'{path}: not a readable safetensors file (truncated or corrupt?): '
            f'{brief(exc, with_type=False)}') from None


def _read_text(path: Path, what: str) -> str:
    """Return the text of a small UTF-8 file (a description, a config, labels)."""
    try:
        status = path.stat()
        if not stat.S_ISREG(status.st_mode):
            raise CheckpointError(f'{path}: the {what} is not a regular file')
        if status.st_size > MAX_JSON_BYTES:
            raise CheckpointError(f'{path}: the {what} has {status.st_size} bytes, more than '
                                  f'the {MAX_JSON_BYTES} allowed')
        with open(path, 'rb') as file:
            data = file.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise CheckpointError(f'{path}: cannot read the {what}: {exc.strerror or exc}') \
            from None
    try:
        return data.decode('utf-8-sig')
    except UnicodeDecodeError as exc:
        raise CheckpointError(f'{path}: the {what} is not UTF-8 text ({exc.reason} at byte '
                              f'{exc.start})') from None


def _read_json(path: Path, what: str = 'JSON file', dict_only: bool = True) -> object:
    text = _read_text(path, what)
    try:
        data = json.loads(text)
    except RecursionError:
        raise CheckpointError(f'{path}: not readable JSON: nested too deeply') from None
    except ValueError as exc:
        reason = brief(exc, with_type=False)
        raise CheckpointError(f'{path}: not readable JSON: {reason}') from None
    if dict_only and not isinstance(data, dict):
        raise CheckpointError(f'{path}: expected a JSON object, got {_show(data)}')
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
    if len(obj) > MAX_TENSORS:
        raise CheckpointError(f'{path}: {len(obj)} tensors, more than a TimeSformer has '
                              f'(limit {MAX_TENSORS})')
    odd = [key for key, value in obj.items()
           if not isinstance(key, str) or value.layout != torch.strided]
    if odd:
        raise CheckpointError(f'{path}: not a state dict of named dense tensors: '
                              f'{_listing(odd)}')
    with _about(path):
        return strip_prefixes(obj)


def _stand_ins(state_dict: dict) -> dict:
    """Return meta tensors of the shapes and dtypes of `state_dict`'s, reading no data."""
    return {key: torch.empty(value.shape, dtype=value.dtype, device='meta')
            for key, value in state_dict.items()}


def _read_official(path: Path, overrides: dict) -> CheckpointContents:
    state = _official_state_dict(_torch_load(path), path)   # memory-mapped: nothing read yet
    shapes = _stand_ins(state)
    with _about(path):
        config = config_from_state_dict(shapes, num_heads=overrides.get('num_heads'))
    return CheckpointContents(shapes, config, read=lambda: state,
                              clip_fps=clip_fps_from_name(path, config.num_frames))


def _per_channel(value: object, channels: int) -> object:
    """Return a number repeated per channel (Hugging Face image processors allow one)."""
    return [value] * channels if _number(value) is not None else value


def _read_huggingface(path: Path, overrides: dict) -> CheckpointContents:
    config_path = path / 'config.json'
    hf_config = _read_json(config_path, 'Hugging Face config')
    with _about(config_path):
        config = config_from_hf(hf_config)
    labels = None
    if hf_config.get('id2label'):
        labels = labels_from_id2label(hf_config['id2label'], origin=str(config_path))
    if (path / 'model.safetensors').is_file():
        weights = path / 'model.safetensors'
        hf_state = _safetensors_header(weights)

        def read() -> dict:
            return _safetensors_load(weights)
    elif (path / 'pytorch_model.bin').is_file():
        weights = path / 'pytorch_model.bin'
        loaded = _official_state_dict(_torch_load(weights), weights)
        hf_state = _stand_ins(loaded)

        def read() -> dict:
            return loaded
    else:
        raise CheckpointError(f'{path}: no model.safetensors or pytorch_model.bin')
    # TimesformerForVideoClassification keeps no buffers; position_ids-style extras would be
    # reported by hf_to_official rather than dropped.
    with _about(weights):
        state = hf_to_official(hf_state, config)
    mean, std = OFFICIAL_MEAN, OFFICIAL_STD
    processor = path / 'preprocessor_config.json'
    if processor.is_file():
        pre = _read_json(processor, 'preprocessor config')
        mean, std = check_normalisation(
            _per_channel(pre.get('image_mean', mean), config.in_chans),
            _per_channel(pre.get('image_std', std), config.in_chans), config.in_chans,
            str(processor))
    return CheckpointContents(state, config, labels, mean, std,
                              read=lambda: hf_to_official(read(), config),
                              origin=f'{config_path} (weights {weights.name})')


def _weights_beside(meta_path: Path, name: object) -> Path:
    """Return the weights file `name` in the directory of `meta_path`, or raise."""
    if not isinstance(name, str) or name in ('', '.', '..') or Path(name).name != name:
        raise CheckpointError(f'weights must name a file in the same directory as the '
                              f'description, got {_show(name)}')
    weights = meta_path.parent / name
    if not weights.is_file():
        raise CheckpointError(f'its weights file {weights} is missing')
    return weights


def _read_own(path: Path, overrides: dict) -> CheckpointContents:
    meta_path = _own_json_path(path)
    meta = _read_json(meta_path, 'checkpoint description')
    with _about(meta_path):
        if meta.get('format') != FORMAT_NAME:
            raise CheckpointError(f'not a {FORMAT_NAME} checkpoint description (format is '
                                  f'{_show(meta.get("format"))})')
        version = meta.get('version', FORMAT_VERSION)
        if type(version) is not int or not 1 <= version <= FORMAT_VERSION:
            raise CheckpointError(f'format version {_show(version)} is not readable here '
                                  f'(this package reads up to version {FORMAT_VERSION})')
        weights = _weights_beside(
            meta_path, meta.get('weights', meta_path.with_suffix('.safetensors').name))
        if 'config' not in meta:
            raise CheckpointError('no config')
        config = config_from_values(meta['config'])
        labels = meta.get('labels')
        if labels is not None:
            labels = _check_names(labels)
        mean, std = _normalisation(meta.get('mean', OFFICIAL_MEAN),
                                   meta.get('std', OFFICIAL_STD), config.in_chans)
        if not isinstance(meta.get('source', ''), str):
            raise CheckpointError(f'source must be a string, got {_show(meta["source"])}')
    clip_fps = meta.get('clip_fps')
    if clip_fps is not None:
        clip_fps = check_clip_fps(clip_fps, str(meta_path))
    state = _safetensors_header(weights)
    extra = {k: v for k, v in meta.items() if k not in (
        'format', 'version', 'config', 'labels', 'mean', 'std', 'weights', 'clip_fps')}
    return CheckpointContents(state, config, labels, mean, std, extra,
                              read=lambda: _safetensors_load(weights),
                              origin=f'{meta_path} (weights {weights.name})', clip_fps=clip_fps)


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
    embeddings are resized to fit. Everything the checkpoint describes is checked before its
    weights are read and the model's memory allocated (see the module's docstring).
    """
    path = Path(path)
    fmt = detect_format(path)
    contents = _READERS[fmt](path, dict(config_overrides))
    origin = contents.origin or str(path)
    config = contents.config
    check_fit(_expected_state(config), contents.state_dict, origin)
    if config_overrides:
        with _about(path):
            config = config_from_values(config.to_dict(), **config_overrides)
        check_fit(_expected_state(config),
                  resize_embeddings(contents.state_dict, config, log=False), origin)
    if labels is not None:
        origin_labels = str(labels) if isinstance(labels, (str, Path)) else 'labels'
        labels = labels if not isinstance(labels, (str, Path)) else read_labels(labels)
        labels = check_labels(labels, config.num_classes, origin_labels)
    elif contents.labels is not None:
        labels = check_labels(contents.labels, config.num_classes, str(path))
    else:
        labels = default_labels(config.num_classes)
    mean, std = check_normalisation(contents.mean, contents.std, config.in_chans, str(path))
    state = contents.read() if contents.read else contents.state_dict
    check_finite(state, origin)
    model = build_model(state, config, origin)
    source = contents.extra.get('source', f'{fmt}:{path}')
    extra = {k: v for k, v in contents.extra.items() if k != 'source'}
    return Checkpoint(model=model, labels=labels, mean=mean, std=std, source=source,
                      path=str(path), extra=extra, clip_fps=contents.clip_fps)


def load_model(path: PathLike, **kwargs):
    """Load any supported checkpoint; return (model, labels)."""
    ckpt = load_checkpoint(path, **kwargs)
    return ckpt.model, ckpt.labels


def save_checkpoint(path: PathLike, model: TimeSformer, labels: Sequence[str],
                    mean: Sequence[float] = OFFICIAL_MEAN, std: Sequence[float] = OFFICIAL_STD,
                    source: str = '', clip_fps: Optional[float] = None, **extra) -> Path:
    """Write the project's own format, NAME.safetensors and NAME.json; return the JSON path.

    Labels, mean/std and the clip rate `clip_fps` (frames per second of the clips the model
    was trained on; None: unknown, not written) are checked as `load_checkpoint` checks them,
    so what is written loads.
    """
    from safetensors.torch import save_file
    path = Path(path)
    if path.suffix in ('.json', '.safetensors'):
        path = path.with_suffix('')
    weights = path.with_name(path.name + '.safetensors')
    meta_path = path.with_name(path.name + '.json')
    labels = check_labels(labels, model.config.num_classes, 'labels')
    mean, std = check_normalisation(mean, std, model.config.in_chans, 'mean/std')
    if clip_fps is not None:
        clip_fps = check_clip_fps(clip_fps, 'clip_fps')
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to('cpu').contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights), metadata={'format': FORMAT_NAME})
    meta = {
        'format': FORMAT_NAME,
        'version': FORMAT_VERSION,
        'weights': weights.name,
        'config': model.config.to_dict(),
        'labels': labels,
        'mean': list(mean),
        'std': list(std),
        **({'clip_fps': clip_fps} if clip_fps is not None else {}),
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
    """Run timesformer_convert SRC DST [--labels FILE]: write any source in the own format.

    A malformed source or argument exits with status 2 and one line saying why.
    """
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
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument('--clip-fps', type=float,
                      help='frames per second of the clips the model was trained on (the node '
                           'samples at this rate); official checkpoints: read from a name '
                           'such as ..._8x32_... when not given')
    rate.add_argument('--frame-interval', type=int,
                      help='the model was trained on every Nth frame of --camera-fps video')
    parser.add_argument('--camera-fps', type=float, default=KINETICS_FPS,
                        help='the video rate --frame-interval refers to (default: %(default)g, '
                             'as Kinetics)')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    overrides = {'num_heads': args.num_heads} if args.num_heads is not None else {}
    try:
        clip_fps = (clip_fps_from_interval(args.frame_interval, args.camera_fps,
                                           '--frame-interval')
                    if args.frame_interval is not None else
                    check_clip_fps(args.clip_fps, '--clip-fps')
                    if args.clip_fps is not None else None)
        ckpt = load_checkpoint(args.src, labels=args.labels, **overrides)
        clip_fps = clip_fps or ckpt.clip_fps
        out = save_checkpoint(args.dst, ckpt.model, ckpt.labels, mean=args.mean or ckpt.mean,
                              std=args.std or ckpt.std, source=ckpt.source, clip_fps=clip_fps)
    except CheckpointError as exc:
        print(f'timesformer_convert: error: {exc}', file=sys.stderr)
        return 2
    except OSError as exc:
        print(f'timesformer_convert: error: cannot write {args.dst}: {exc.strerror or exc}',
              file=sys.stderr)
        return 2
    cfg = ckpt.config
    rate = f'{clip_fps:g} fps clips' if clip_fps else 'clip rate unknown: give --clip-fps'
    print(f'wrote {out} ({cfg.attention_type}, {cfg.num_frames}x{cfg.img_size}, '
          f'{cfg.num_classes} classes, {rate})')
    return 0
