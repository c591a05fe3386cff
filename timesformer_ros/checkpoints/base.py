"""What every part of checkpoint reading shares: the error, the limits, the clip rate, messages."""

from __future__ import annotations

import json
import logging
import re
import reprlib
import stat
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch

from ..errors import brief
from ..model import TimeSformer, TimeSformerConfig
from ..rates import MAX_FPS, MIN_FPS, rate_problem

LOGGER = logging.getLogger('timesformer_ros.checkpoints')

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
