"""Configurations: key names, checked values, and configurations read from weights or config.json.

Official <-> Hugging Face key names, a configuration's types and ranges (`CONFIG_LIMITS`), and
the configuration that a state dict or a Hugging Face config.json describes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import re
from types import MappingProxyType
from typing import Mapping, Optional, Sequence

import torch

from ..model import TimeSformer, TimeSformerConfig
from .base import (
    CONFIG_LIMITS, MAX_MLP_RATIO, MAX_PARAMETERS, MAX_PATCHES, CheckpointError, _listing, _show)

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
