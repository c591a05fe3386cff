"""Model + device + dtype + compile: clips in, `Prediction`s out.

A prediction carries every class's probability, best first, and the attention summaries of
the last block (`attention_summary`): `spatial` (T, H/p, W/p), `spatial_last` (the newest
frame's map) and `temporal` (T,). What they mean, for each attention type, is documented once:
the README, "Attention summaries: what the numbers mean".
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from typing import Optional, Union

import torch
from einops import rearrange, reduce

from .checkpoints import Checkpoint, default_labels, embedded_checkpoint, load_checkpoint
from .frames import Preprocessor
from .locate import Locator
from .model import TimeSformer, preset
from .predictions import (  # noqa: F401 - re-exported: the package imports them from here
    ClipInference, EngineError, Prediction, predictions, stack_clips)
from .views import checkpoint_views, combine

LOGGER = logging.getLogger(__name__)

_DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3     # glibc <malloc.h>


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Make glibc keep freed activation buffers for the next inference.

    Linux/glibc only; elsewhere a no-op returning False. Process-wide; resident memory then stays
    at its peak instead of breathing.

    By default glibc serves blocks above its mmap threshold with fresh mmaps and trims the
    heap after frees, so every CPU forward pass page-faults its activations in again. Tiny
    preset, batch 32, 2 cores: 67,505 minor page faults over 20 inferences and 19.5 ms each;
    none and 13.3 ms with the thresholds raised (and batch-32 p99 14 ms instead of 55-68 ms).
    """
    name = ctypes.util.find_library('c')
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda when available, else cpu. 'cuda' without a GPU is an error."""
    if device == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise EngineError(f'unknown device {device!r} (use auto, cpu, cuda or cuda:N)') from None
    if resolved.type == 'cuda' and not torch.cuda.is_available():
        raise EngineError(f'device {device!r} requested but no CUDA GPU is available')
    if resolved.type not in ('cpu', 'cuda'):
        raise EngineError(f'unsupported device {device!r} (use auto, cpu, cuda or cuda:N)')
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """'auto' -> bfloat16 on a GPU, float32 on the CPU."""
    if dtype == 'auto':
        return torch.bfloat16 if device.type == 'cuda' else torch.float32
    if dtype not in _DTYPES:
        raise EngineError(f'unknown dtype {dtype!r}; use auto or one of {sorted(_DTYPES)}')
    return _DTYPES[dtype]


def attention_summary(model: TimeSformer, weights, frames: int, grid: tuple):
    """(spatial (B, T, gh, gw), temporal (B, T)) from the last block's `BlockWeights`."""
    kind = model.config.attention_type
    gh, gw = grid
    if kind == 'joint_space_time':
        heads_mean = reduce(weights.spatial[:, :, 0, 1:], 'b h (t n) -> b t n', 'mean', t=frames)
        spatial = heads_mean
        per_frame = heads_mean.sum(-1)
        temporal = per_frame / per_frame.sum(-1, keepdim=True)
    else:
        spatial = reduce(weights.spatial[:, :, 0, 1:], '(b t) h n -> b t n', 'mean', t=frames)
        if kind == 'divided_space_time':
            batch = spatial.shape[0]
            temporal = reduce(weights.temporal, '(b n) h q k -> b k', 'mean', b=batch)
        else:
            temporal = torch.full(spatial.shape[:2], 1.0 / frames, device=spatial.device)
    return rearrange(spatial, 'b t (gh gw) -> b t gh gw', gh=gh, gw=gw), temporal


def forward_with_summaries(model: TimeSformer, video: torch.Tensor) -> tuple:
    """(logits (B, classes), spatial (B, T, gh, gw), temporal (B, T)) of video (B, T, C, H, W).

    What the node publishes, from the last block's attention; the engine runs it, and
    `timesformer_export` writes it into ONNX files as it is.
    """
    logits, weights = model.forward_with_attention(video)
    grid = model.patch_embed.grid(*video.shape[-2:])
    spatial, temporal = attention_summary(model, weights[len(model.blocks) - 1], video.shape[1],
                                          grid)
    return logits, spatial, temporal


class Engine(ClipInference):
    """Runs a checkpoint on clips of preprocessed frames (T, 3, S, S) from `preprocessor`."""

    def __init__(self, checkpoint: Union[str, Checkpoint], device: str = 'auto',
                 dtype: str = 'auto', compile: bool = False, warmup: bool = True,
                 max_batch: int = 8, views: str = 'mirrors'):
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.checkpoint = checkpoint if isinstance(checkpoint, Checkpoint) \
            else load_checkpoint(checkpoint)
        self.labels = list(self.checkpoint.labels)
        self.config = self.checkpoint.config
        self.model = self.checkpoint.model.to(self.device, self.dtype).eval()
        self.locator = Locator.for_checkpoint(self.checkpoint).to(self.device, self.dtype)
        self.views = checkpoint_views(self.checkpoint, views)
        if self.device.type == 'cpu' and not keep_freed_memory():
            LOGGER.debug('mallopt unavailable: CPU inference re-faults its buffers each call')
        self.preprocessor = Preprocessor(self.config.img_size, self.checkpoint.mean,
                                         self.checkpoint.std, self.device, self.dtype)
        self._run = self._forward
        if compile:
            mode = 'reduce-overhead' if self.device.type == 'cuda' else 'default'
            self._run = torch.compile(self._forward, mode=mode, dynamic=False)
        self.compiled = compile
        if warmup:
            self.warm_up(max_batch)

    @property
    def num_frames(self) -> int:
        return self.config.num_frames

    def _forward(self, video: torch.Tensor, with_attention: bool):
        """Logits, and with attention its summaries and the locator's evidence (`locate`).

        With test-time views (`views`) the logits are the mean log-probabilities of the window
        and its copies; the summaries and evidence are the window's own.
        """
        if not with_attention:
            return combine(self.model, video, self.model(video), self.views), None, None, None
        last = len(self.model.blocks) - 1
        tokens, weights = self.model.forward_features_with_attention(video, {last})
        grid = (video.shape[-2] // self.config.patch_size,
                video.shape[-1] // self.config.patch_size)
        spatial, temporal = attention_summary(self.model, weights[last], video.shape[1], grid)
        evidence = self.locator.evidence(video, spatial, grid)
        logits = combine(self.model, video, self.model.forward_head(tokens), self.views)
        return logits, spatial, temporal, evidence

    def warm_up(self, max_batch: int = 1):
        """Run dummy clips once (and compile, when asked) so the first real window is fast."""
        cfg = self.config
        for batch in sorted({1, max_batch}):
            dummy = torch.zeros(batch, cfg.num_frames, cfg.in_chans, cfg.img_size, cfg.img_size,
                                device=self.device, dtype=self.dtype)
            for _ in range(3 if self.compiled else 1):
                self.infer_tensor(dummy)

    def infer_tensor(self, video: torch.Tensor, with_attention: bool = True,
                     thumbs: Optional[list] = None) -> list:
        """Predictions for a (B, T, C, S, S) tensor of preprocessed frames.

        `thumbs`: the windows' whole frames in gray, for the region (`Locator.boxes`).
        """
        started = time.perf_counter()
        with torch.inference_mode():
            logits, spatial, temporal, evidence = self._run(
                video.to(self.device, self.dtype), with_attention)
            regions = None
            if with_attention:
                boxes, confidences = self.locator.boxes(evidence, video, thumbs)
                regions = (boxes / video.shape[-1], confidences, self.locator.method)
            return predictions(logits, spatial, temporal, self.labels, started, regions)

    @property
    def clip_fps(self) -> Optional[float]:
        return self.checkpoint.clip_fps

    def describe(self) -> str:
        cfg = self.config
        return (f'{cfg.attention_type} {cfg.num_frames}x{cfg.img_size} '
                f'({cfg.depth} blocks, dim {cfg.embed_dim}, {len(self.labels)} classes) on '
                f'{self.device} in {str(self.dtype).replace("torch.", "")}'
                f'{" compiled" if self.compiled else ""}'
                f'{f", {1 + len(self.views)} test-time views" if self.views else ""}')


def checkpoint_of(path: str, labels=None, logger=LOGGER) -> Checkpoint:
    """Load the checkpoint of a `checkpoint` value (a path, or `preset:NAME`: random weights)."""
    if path.startswith('preset:'):
        model = TimeSformer(preset(path.split(':', 1)[1])).eval()
        logger.warning(f'checkpoint {path}: random weights, results are meaningless')
        return Checkpoint(model=model, labels=default_labels(model.config.num_classes),
                          source=path, path=path)
    return load_checkpoint(path, labels=labels)


def engine_from_values(values: dict, max_batch: int = 1, logger=LOGGER):
    """Build the engine the node's parameters describe (`interface.PARAMETERS` values).

    `checkpoint` (empty: the embedded model; `preset:NAME`: random weights, logged), `labels`,
    `device`, `dtype` and `compile`; an `.onnx` checkpoint runs on ONNX Runtime instead
    (`onnx_engine.OnnxEngine`: `providers`, `trt_cache_dir`, `fp16`), behind the same
    interface. The node and `timesformer_bag evaluate` both build theirs here. Raises
    CheckpointError, EngineError or ValueError with a one-line message.
    """
    path = values['checkpoint'] or str(embedded_checkpoint())
    if path.endswith('.onnx'):
        from .onnx_engine import OnnxEngine
        return OnnxEngine.from_values(values, max_batch=max_batch, logger=logger)
    checkpoint = checkpoint_of(path, values['labels'] or None, logger)
    if values['device'] == 'auto' and not torch.cuda.is_available():
        logger.info('device auto: no CUDA GPU available, running on the CPU')
    return Engine(checkpoint, device=values['device'], dtype=values['dtype'],
                  compile=values['compile'], max_batch=max_batch,
                  views=values.get('test_time_views', 'mirrors'))
