"""Where the action is: one box per window, in the model's input pixels. No ROS imports.

Two methods, picked by the checkpoint (`Locator.for_checkpoint`):

* `head`: a checkpoint that carries a localisation head (`LocatorHead`) points at the moving
  object. The head reads the frozen model's patch embeddings over the window
  (`head_features`) and gives, for every patch, a logit that the object's centre lies in it and
  the object's box relative to that patch (CenterNet-like: sub-patch centre offset, log size).
  The box is that of the most likely patch; the confidence its softmax probability. It is
  trained on the boxes the training world knows, with the classifier frozen
  (`train.train_locator`), so the classification is unchanged.
* `motion`: any other checkpoint (Kinetics included): `motion_region`. Where the newest frame
  differs from the window's per-pixel median (what stayed put over the window: the
  background, for a moving thing), on the window's whole frames in gray (`frames.Frame`, so
  the strips the centre crop leaves out count too), each divided by its mean (exposure and
  light drift), smoothed (sigma = the short side / 32), weighted by where the model looked in
  the newest frame (the last block's CLS attention, which the node computes for
  `~/attention/spatial` anyway, upsampled over the central square): `change * (1 + look /
  max)`, `change` alone outside the square. Thresholded at 0.35 of its range
  (`MOTION_LEVEL`); the box encloses every connected part holding at least 0.1 of the largest
  part's mass (`MOTION_PARTS`: a slow or growing object changes at its edges, in a crescent
  or a ring, and the box must hold all of it). The confidence is the change's `contrast`,
  1 - median / peak: near 1 when one thing moves against a still scene, lower when nothing
  moves and the map is noise (a stream's `RegionHold` then keeps its last confident region,
  method `held`). Chosen by measurement (`benchmarks/roi_quality.py`, README): rollout or
  attention alone says where the model looked, which is rarely the object's extent; the
  change says where something moved, and the attention weight favours the mover the model
  attends to among several.
* `rollout` (not used by the node, kept for comparison in the benchmark): attention rollout
  through every block, thresholded at half its range.

Boxes are (x_min, y_min, x_max, y_max) in the S x S input's pixels (edges at 0..S; a `motion`
box may reach beyond, into the rest of the frame); `frames.to_source` maps them to the
camera's pixels (undoing the resize and the centre crop).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn

from .model import TimeSformer

LOGGER = logging.getLogger(__name__)
METHODS = ('head', 'motion', 'held')         # what the node publishes as a region's method
MOTION_LEVEL = 0.35              # `motion`'s threshold, of the map's range
MOTION_FLOOR = 1.0               # `motion`: the weight of a pixel the model did not look at
MOTION_PARTS = 0.1               # `motion`: parts of at least this share of the largest's mass
HOLD_BELOW = 0.6                 # a `motion` region less confident than this: nothing moved
HOLD_S = 3.0                     # how long a stream keeps its last confident region (s)
LOCATOR_KEY = 'locator'          # the checkpoint description's entry for the head
FEATURES = 4                     # head_features per patch, in embedding dimensions
HEAD_KINDS = ('mlp', 'conv')


class LocatorHead(nn.Module):
    """Per patch of the newest frame: a centre logit, a sub-patch centre offset and a log size.

    Takes final-norm tokens (B, N, D) of one frame's N patches (row-major, `grid` rows and
    columns); `decode` turns the outputs into boxes in input pixels.
    """

    def __init__(self, dim: int, patch_size: int, hidden: int = 64, kind: str = 'mlp'):
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ValueError(f'head kind must be one of {HEAD_KINDS}, got {kind!r}')
        self.patch_size = patch_size
        self.hidden = hidden
        self.kind = kind
        if kind == 'mlp':      # each patch alone
            self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 5))
        else:                  # each patch with its neighbours (two 3x3 convolutions)
            self.net = nn.Sequential(nn.Conv2d(dim, hidden, 3, padding=1), nn.GELU(),
                                     nn.Conv2d(hidden, hidden, 3, padding=1), nn.GELU(),
                                     nn.Conv2d(hidden, 5, 1))

    def forward(self, tokens: torch.Tensor) -> tuple:
        """Return (logits (B, N), offsets (B, N, 2) in patches, log sizes (B, N, 2) in patches).

        `tokens` (B, N, F) are a square grid of patches, row-major.
        """
        if self.kind == 'mlp':
            out = self.net(tokens)
        else:
            side = math.isqrt(tokens.shape[1])
            grid = rearrange(tokens, 'b (gh gw) f -> b f gh gw', gh=side)
            out = rearrange(self.net(grid), 'b f gh gw -> b (gh gw) f')
        return out[..., 0], out[..., 1:3], out[..., 3:5]

    def decode(self, tokens: torch.Tensor, grid: tuple) -> tuple:
        """Return (boxes (B, 4) in input pixels, confidences (B,)) for tokens (B, N, D)."""
        logits, offsets, log_sizes = self(tokens)
        probs = logits.float().softmax(-1)
        confidence, index = probs.max(-1)
        take = index[:, None, None].expand(-1, 1, 2)
        offset = offsets.float().gather(1, take)[:, 0]
        size = log_sizes.float().gather(1, take)[:, 0].clamp(-4.0, 4.0).exp()
        row = torch.div(index, grid[1], rounding_mode='floor')
        col = index - row * grid[1]
        centre = torch.stack([col + 0.5, row + 0.5], -1).float() + offset
        p = self.patch_size
        boxes = torch.cat([(centre - size / 2) * p, (centre + size / 2) * p], -1)
        return boxes, confidence

    def targets(self, boxes: torch.Tensor, grid: tuple) -> tuple:
        """Return (patch index (B,), offset (B, 2), log size (B, 2)) of boxes in input pixels."""
        p = self.patch_size
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2 / p
        size = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0.5) / p
        col = centre[:, 0].floor().clamp(0, grid[1] - 1)
        row = centre[:, 1].floor().clamp(0, grid[0] - 1)
        index = (row * grid[1] + col).long()
        offset = centre - torch.stack([col + 0.5, row + 0.5], -1)
        return index, offset, size.log()

    def loss(self, tokens: torch.Tensor, boxes: torch.Tensor, grid: tuple) -> torch.Tensor:
        """Cross-entropy on the centre patch, L1 on its offset and log size."""
        logits, offsets, log_sizes = self(tokens)
        index, offset, log_size = self.targets(boxes, grid)
        rows = torch.arange(len(index))
        return (F.cross_entropy(logits, index) + F.l1_loss(offsets[rows, index], offset)
                + F.l1_loss(log_sizes[rows, index], log_size))


def head_features(model: TimeSformer, video: torch.Tensor) -> torch.Tensor:
    """Return what the head reads per patch: (B, N, 4D) from the model's patch embeddings.

    For each patch position, its embedding (content, position and time embedding) in the newest
    frame, its mean over the window, the newest minus the oldest, and the mean absolute change
    between consecutive frames; layer-normalised without weights. Measured on the training
    world's validation clips, these locate the object better than the final tokens of the
    newest frame, which the classifier has pooled towards the class (README, "Where the action
    is").
    """
    frames = video.shape[1]
    x = model.embed(video)[:, 1:]
    pattern = '(b t) n d -> b t n d' if model.time_embed is None else 'b (t n) d -> b t n d'
    x = rearrange(x, pattern, t=frames)
    feats = torch.cat([x[:, -1], x.mean(1), x[:, -1] - x[:, 0],
                       (x[:, 1:] - x[:, :-1]).abs().mean(1)], -1)
    return F.layer_norm(feats, feats.shape[-1:])


def rollout(model: TimeSformer, weights: dict, frames: int, grid: tuple) -> torch.Tensor:
    """Return the CLS token's rolled-out relevance over the newest frame's patches (B, gh, gw).

    Each block's attention (heads averaged) is mixed with the identity (the residual path),
    rows renormalised, and the blocks' matrices multiplied in order. Divided and space-only
    blocks: the newest frame's spatial attention (temporal attention keeps a patch's position,
    so it leaves the spatial map as it is); joint blocks: the whole attention, then the newest
    frame's patches.
    """
    kind = model.config.attention_type
    relevance = None
    for index in sorted(weights):
        attn = weights[index].spatial.float()
        if kind == 'joint_space_time':
            attn = reduce(attn, 'b h q k -> b q k', 'mean')
        else:
            attn = reduce(attn, '(b t) h q k -> b t q k', 'mean', t=frames)[:, -1]
        eye = torch.eye(attn.shape[-1], device=attn.device)
        step = 0.5 * attn + 0.5 * eye
        step = step / step.sum(-1, keepdim=True)
        relevance = step if relevance is None else step @ relevance
    cls = relevance[:, 0, 1:]
    n = grid[0] * grid[1]
    return rearrange(cls[:, -n:], 'b (gh gw) -> b gh gw', gh=grid[0], gw=grid[1])


def map_box(relevance: np.ndarray, size: int, level: float = 0.5,
            parts: Optional[float] = None) -> tuple:
    """Return (box in input pixels, confidence) of a relevance map (gh, gw).

    The map is upsampled (bilinear, pixel centres aligned) to size x size and boxed by
    `threshold_box`.
    """
    up = cv2.resize(np.ascontiguousarray(relevance, np.float32), (size, size),
                    interpolation=cv2.INTER_LINEAR)
    return threshold_box(up, level, parts)


def threshold_box(up: np.ndarray, level: float = 0.5, parts: Optional[float] = None) -> tuple:
    """Return (box in the map's pixels, confidence) of a map (H, W), the whole map when flat.

    Thresholded at `level` of its range above its minimum, boxed around the connected part
    holding the peak, or with `parts`, around every connected part holding at least that share
    of the largest part's mass. The confidence is the share of the (minimum-subtracted) map
    inside the box.
    """
    up = up - up.min()
    peak = float(up.max())
    if not peak > 0 or not math.isfinite(peak):
        return (0.0, 0.0, float(up.shape[1]), float(up.shape[0])), 0.0
    mask = (up >= level * peak).astype(np.uint8)
    count, labels = cv2.connectedComponents(mask, connectivity=8)
    if parts is None:
        y, x = np.unravel_index(int(np.argmax(up)), up.shape)
        keep = labels == labels[y, x]
    else:
        mass = np.bincount(labels.ravel(), weights=up.ravel(), minlength=count)
        mass[0] = 0.0                                             # the part below the threshold
        keep = np.isin(labels, np.nonzero(mass >= parts * mass.max())[0])
    ys, xs = np.nonzero(keep)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    inside = float(up[ys.min():ys.max() + 1, xs.min():xs.max() + 1].sum())
    return box, inside / float(up.sum())


def contrast(change: np.ndarray) -> float:
    """Return 1 - median / peak of a change map: how clearly something moved, 0..1."""
    peak = float(change.max())
    if not peak > 0 or not math.isfinite(peak):
        return 0.0
    return min(max(1.0 - float(np.median(change)) / peak, 0.0), 1.0)


def input_thumbs(video: torch.Tensor) -> np.ndarray:
    """Return windows (B, T, C, S, S) of model input as gray thumbs (B, T, S, S).

    What `motion_region` looks at when a window came without its whole frames (`frames.Frame`):
    the model's input, summed over channels and shifted to be positive (normalised input is
    centred on 0; `motion_region` divides each frame by its mean).
    """
    gray = video.float().sum(2)
    return (gray - gray.amin(dim=(1, 2, 3), keepdim=True) + 1.0).cpu().numpy()


def motion_region(thumbs: np.ndarray, look: np.ndarray, size: int) -> tuple:
    """Return (box in input pixels, confidence) of the `motion` method for one window.

    `thumbs` (T, h, w): the window's frames in gray, whole (`frames.thumb_of`) or the model's
    input alone (`input_thumbs`); `look` (gh, gw): the last block's CLS attention over the
    newest frame, which covers the thumbs' central square; `size`: the model's input side. Each
    frame divided by its mean (the camera's exposure and the scene's light drift apart from
    what moved), the newest frame's change from the window's per-pixel median, smoothed
    (sigma = the short side / 32), weighted by `MOTION_FLOOR + look / max` inside the central
    square and by `MOTION_FLOOR` outside it, and boxed by `threshold_box` at `MOTION_LEVEL`
    over parts of `MOTION_PARTS`. The box may reach beyond the input (`frames.to_source` maps
    it into the frame); the confidence is the change's `contrast`.
    """
    thumbs = np.asarray(thumbs, np.float32)
    thumbs = thumbs / np.maximum(thumbs.mean(axis=(1, 2), keepdims=True), 1e-6)
    height, width = thumbs.shape[1:]
    side = min(height, width)
    change = np.abs(thumbs[-1] - np.median(thumbs, axis=0))
    change = cv2.GaussianBlur(change, (0, 0), side / 32, borderType=cv2.BORDER_REPLICATE)
    top, left = (height - side) // 2, (width - side) // 2
    look = cv2.resize(np.ascontiguousarray(look, np.float32), (side, side),
                      interpolation=cv2.INTER_LINEAR)
    look = (look - look.min()) / max(float(look.max() - look.min()), 1e-12)
    weight = np.full_like(change, MOTION_FLOOR)
    weight[top:top + side, left:left + side] += look
    box, _ = threshold_box(change * weight, MOTION_LEVEL, MOTION_PARTS)
    scale = size / side
    x0, y0, x1, y1 = box
    return ((x0 - left) * scale, (y0 - top) * scale, (x1 - left) * scale,
            (y1 - top) * scale), contrast(change)


def motion_boxes(looks: torch.Tensor, video: torch.Tensor, thumbs: Optional[list] = None) -> tuple:
    """Return `motion` box corners (B, 4) in input pixels and confidences (B,), numpy.

    `looks` (B, gh, gw): the last block's CLS maps of the newest frames; `video`
    (B, T, C, S, S): the windows; `thumbs`: their whole frames in gray, one (T, h, w) array
    each (`predictions.clip_thumbs`), or None to look in `video` alone. Every engine that has
    the last block's attention (PyTorch, ONNX Runtime) finds its regions here.
    """
    looks = looks.float().cpu().numpy()
    if thumbs is None:
        thumbs = input_thumbs(video)
    found = [motion_region(t, look, video.shape[-1]) for t, look in zip(thumbs, looks)]
    return (np.array([b for b, _ in found], np.float32).reshape(-1, 4),
            np.array([c for _, c in found], np.float32))


class Locator:
    """Boxes for a batch of windows, by `method`: 'head' (with `head`), else 'motion'."""

    def __init__(self, model: TimeSformer, head: Optional[LocatorHead] = None):
        self.model = model
        self.head = head
        self.method = 'head' if head is not None else 'motion'

    @classmethod
    def for_checkpoint(cls, checkpoint) -> 'Locator':
        """Return a locator with the checkpoint's head (`load_head`), else by motion."""
        return cls(checkpoint.model, load_head(checkpoint))

    def to(self, device, dtype) -> 'Locator':
        if self.head is not None:
            self.head.to(device, dtype).eval()
        return self

    def evidence(self, video: torch.Tensor, spatial: torch.Tensor, grid: tuple) -> torch.Tensor:
        """Tensors only (it runs inside a compiled forward): what `boxes` turns into boxes.

        `spatial`: the last block's CLS maps (B, T, gh, gw) (`engine.attention_summary`). With
        a head, (B, 5) boxes in input pixels and confidences; else the newest frame's CLS maps
        (B, gh, gw), which `motion_region` weights the change by.
        """
        if self.head is not None:
            boxes, confidence = self.head.decode(head_features(self.model, video), grid)
            return torch.cat([boxes, confidence[:, None]], -1)
        return spatial[:, -1]

    def boxes(self, evidence: torch.Tensor, video: torch.Tensor,
              thumbs: Optional[list] = None) -> tuple:
        """Return box corners (B, 4) in input pixels and confidences (B,) as numpy arrays.

        `video` (B, T, C, S, S): the windows; `thumbs`: their whole frames in gray, one
        (T, h, w) array each (`predictions.clip_thumbs`), or None to look in `video` alone.
        """
        if self.head is not None:
            evidence = evidence.float().cpu().numpy()
            return evidence[:, :4], evidence[:, 4]
        return motion_boxes(evidence, video, thumbs)


class RegionHold:
    """One stream's memory of its last confident `motion` region.

    When nothing moves in a window (its region's confidence is below `HOLD_BELOW`), the thing
    that moved last is most likely still where it stopped: the window gets the last confident
    region, for at most `HOLD_S` seconds of stream time after it and within one epoch of the
    stream's window buffer (a reset forgets it), method `held`, its confidence fading linearly
    to 0 over `HOLD_S`. Regions of other methods pass unchanged.
    """

    def __init__(self):
        self._last = None          # (box, confidence, window end ns, epoch)

    def apply(self, prediction, window):
        """Return `prediction`, or a copy with the held region (`window`: a clips.Window)."""
        if prediction.box is None or prediction.box_method != 'motion':
            return prediction
        if prediction.box_confidence >= HOLD_BELOW:
            self._last = (prediction.box, prediction.box_confidence, window.end, window.epoch)
            return prediction
        if self._last is None or self._last[3] != window.epoch:
            return prediction
        box, confidence, end, _ = self._last
        age = (window.end - end) / 1e9
        if not 0 <= age < HOLD_S:
            return prediction
        return replace(prediction, box=box, box_confidence=confidence * (1 - age / HOLD_S),
                       box_method='held')


def head_path(checkpoint) -> Optional[Path]:
    """Return the head's weights file that a checkpoint's description names, or None."""
    entry = (checkpoint.extra or {}).get(LOCATOR_KEY)
    if not entry or not checkpoint.path:
        return None
    from .checkpoints import CheckpointError
    from .checkpoints.formats import _weights_beside
    if not isinstance(entry, dict) or not isinstance(entry.get('hidden'), int):
        raise CheckpointError(f'{checkpoint.path}: {LOCATOR_KEY} must be an object with '
                              f'weights and hidden, got {entry!r}'[:300])
    return _weights_beside(Path(checkpoint.path).with_suffix('.json'), entry.get('weights'))


def load_head(checkpoint) -> Optional[LocatorHead]:
    """Return the localisation head a checkpoint carries, or None (it has none)."""
    path = head_path(checkpoint)
    if path is None:
        return None
    from safetensors.torch import load_file

    from .checkpoints import CheckpointError
    cfg = checkpoint.config
    entry = checkpoint.extra[LOCATOR_KEY]
    head = LocatorHead(FEATURES * cfg.embed_dim, cfg.patch_size, entry['hidden'],
                       entry.get('kind', 'mlp'))
    try:
        head.load_state_dict(load_file(str(path)))
    except Exception as exc:  # noqa: BLE001 - any unreadable or unfitting file: one line
        raise CheckpointError(f'{path}: not the localisation head of a {cfg.embed_dim}-dim '
                              f'model ({str(exc).splitlines()[0][:200]})') from None
    return head.eval()


def save_head(checkpoint_json: Path, head: LocatorHead, training: dict) -> Path:
    """Write the head beside a checkpoint and name it in its description; return the file."""
    from safetensors.torch import save_file
    from .checkpoints import own_format_files
    checkpoint_json = own_format_files(checkpoint_json)[0]
    weights = checkpoint_json.with_name(checkpoint_json.stem + '.locator.safetensors')
    save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()},
              str(weights))
    meta = json.loads(checkpoint_json.read_text())
    meta[LOCATOR_KEY] = {'weights': weights.name, 'hidden': head.hidden, 'kind': head.kind,
                         'training': training}
    checkpoint_json.write_text(json.dumps(meta, indent=2) + '\n', encoding='utf-8')
    return weights


# -- scoring and training ---------------------------------------------------------------------

def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes (..., 4) (x_min, y_min, x_max, y_max)."""
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def holds_centre(box: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Whether each box holds the centre of its true box."""
    cx, cy = (truth[..., 0] + truth[..., 2]) / 2, (truth[..., 1] + truth[..., 3]) / 2
    return (box[..., 0] <= cx) & (cx <= box[..., 2]) & (box[..., 1] <= cy) & (cy <= box[..., 3])
