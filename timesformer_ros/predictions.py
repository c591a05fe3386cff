"""What every engine returns, and how: `Prediction`s built by `predictions`, `EngineError`.

The PyTorch engine (`engine.Engine`) and the ONNX Runtime engine (`onnx_engine.OnnxEngine`) both
take clips through `ClipInference.infer` (`stack_clips`, `clip_thumbs`) and end in `predictions`,
so their results are built by one piece of code. `engine` re-exports the names, where the
rest of the package imports them from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch


class EngineError(RuntimeError):
    """The engine cannot run as configured (device, dtype); the message says why."""


@dataclass
class Prediction:
    """One window's result. Scores are softmax probabilities."""

    class_ids: list                    # every class index, best first (outputs keep top_k)
    labels: list                       # their names
    scores: list                       # their probabilities
    probabilities: np.ndarray          # (num_classes,)
    spatial: Optional[np.ndarray] = None        # (T, H/p, W/p)
    spatial_last: Optional[np.ndarray] = None   # (H/p, W/p)
    temporal: Optional[np.ndarray] = None       # (T,), sums to 1
    timings: dict = field(default_factory=dict)  # milliseconds
    # Where the action is (`locate.py`): (x_min, y_min, x_max, y_max) as shares of the model's
    # square input (0..1; `frames.to_source` maps them to the camera's pixels), how sure, how.
    # None from an engine that finds no region (the ONNX Runtime engine).
    box: Optional[np.ndarray] = None
    box_confidence: float = 0.0
    box_method: str = ''

    @property
    def label(self) -> str:
        return self.labels[0]

    @property
    def score(self) -> float:
        return self.scores[0]


def stack_clips(clips: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """Return clips given as sequences of T preprocessed frames (3, S, S) as (B, T, 3, S, S).

    A frame may also be a `frames.Frame` (what streams buffer): its `pixels` are taken.
    """
    return torch.stack([torch.stack([getattr(f, 'pixels', f) for f in frames])
                        for frames in clips])


def clip_thumbs(clips: Sequence[Sequence]) -> Optional[list]:
    """Return each clip's whole-frame thumbs (T, H', W') when its frames are `frames.Frame`s.

    None when any clip holds bare tensors (the region is then found in the model's input).
    """
    if not all(frames and hasattr(frames[0], 'thumb') for frames in clips):
        return None
    return [np.stack([f.thumb for f in frames]) for frames in clips]


class ClipInference:
    """`infer` over `infer_tensor`, one for both engines (`Engine`, `OnnxEngine`)."""

    def infer(self, clips: Sequence[Sequence[torch.Tensor]], with_attention: bool = True) -> list:
        """Predictions for clips given as sequences of T preprocessed frames (3, S, S).

        A clip is e.g. `Window.frames`; several clips (cameras) run as one batch. Frames that
        are `frames.Frame`s bring the whole frame, where the region is looked for.
        """
        return self.infer_tensor(stack_clips(clips), with_attention, clip_thumbs(clips))


def predictions(logits: torch.Tensor, spatial: Optional[torch.Tensor],
                temporal: Optional[torch.Tensor], labels: Sequence[str],
                started: float, regions: Optional[tuple] = None) -> list:
    """Return a `Prediction` per row of `logits`, with the attention summaries when given.

    `started` is the `time.perf_counter()` at which the inference began: copying the results to
    the host waits for the device, so `inference_ms` is the whole inference. Every engine
    (PyTorch, ONNX Runtime) ends here. `regions`, when given: (boxes (B, 4) as shares of the
    input, confidences (B,), the method's name), `Prediction.box` and its companions.
    """
    probs = logits.float().softmax(-1)
    top_scores, top_ids = probs.sort(dim=-1, descending=True)
    probs = probs.cpu().numpy()
    top_scores, top_ids = top_scores.cpu().numpy(), top_ids.cpu().numpy()
    with_attention = spatial is not None
    if with_attention:
        spatial = spatial.float().cpu().numpy()
        temporal = temporal.float().cpu().numpy()
    elapsed = (time.perf_counter() - started) * 1000.0
    out = []
    for i in range(len(probs)):
        ids = [int(c) for c in top_ids[i]]
        out.append(Prediction(
            class_ids=ids, labels=[labels[c] for c in ids],
            scores=[float(s) for s in top_scores[i]], probabilities=probs[i],
            spatial=spatial[i] if with_attention else None,
            spatial_last=spatial[i][-1] if with_attention else None,
            temporal=temporal[i] if with_attention else None,
            timings={'inference_ms': elapsed}))
        if regions is not None:
            out[-1].box, out[-1].box_confidence = regions[0][i], float(regions[1][i])
            out[-1].box_method = regions[2]
    return out
