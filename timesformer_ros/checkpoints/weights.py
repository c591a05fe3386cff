"""Weights into a model: embedding resizing, strict loading, timm ViT weights."""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from einops import rearrange

from ..model import TimeSformer, TimeSformerConfig
from .base import CheckpointError, _listing

LOGGER = logging.getLogger('timesformer_ros.checkpoints')


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
