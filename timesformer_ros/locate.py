"""Where the action is: one box per window, in the model's input pixels. No ROS imports.

Two methods, picked by the checkpoint (`Locator.for_checkpoint`):

* `head`: a checkpoint that carries a localisation head (`LocatorHead`) points at the moving
  object. The head reads the frozen model's patch embeddings over the window
  (`head_features`) and gives, for every patch, a logit that the object's centre lies in it and
  the object's box relative to that patch (CenterNet-like: sub-patch centre offset, log size).
  The box is that of the most likely patch; the confidence its softmax probability. It is
  trained on the boxes the training world knows, with the classifier frozen
  (`train.train_locator`), so the classification is unchanged.
* `rollout`: any other checkpoint (Kinetics included). Attention rollout (Abnar & Zuidema,
  2020) of the newest frame's spatial attention through every block, the CLS token's row as a
  relevance map, upsampled (bilinear) to the input size and thresholded at half its peak; the
  box encloses the connected part around the peak. The confidence is the share of relevance
  inside the box. It says where the model looked, which is not always where an object is.

Boxes are (x_min, y_min, x_max, y_max) with pixel edges at 0..S in the S x S input;
`frames.to_source` maps them to the camera's pixels (undoing the resize and the centre crop).
"""

from __future__ import annotations

import json
import logging
import math
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
METHODS = ('head', 'rollout')
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


def map_box(relevance: np.ndarray, size: int, level: float = 0.5) -> tuple:
    """Return (box in input pixels, confidence) of a relevance map (gh, gw).

    The map is upsampled (bilinear, pixel centres aligned) to size x size, thresholded at
    `level` of its range above its minimum, and boxed around the connected part holding the
    peak; the confidence is the share of the (minimum-subtracted) relevance inside the box.
    """
    up = cv2.resize(np.ascontiguousarray(relevance, np.float32), (size, size),
                    interpolation=cv2.INTER_LINEAR)
    up = up - up.min()
    peak = float(up.max())
    if not peak > 0 or not math.isfinite(peak):
        return (0.0, 0.0, float(size), float(size)), 0.0
    mask = (up >= level * peak).astype(np.uint8)
    _, labels = cv2.connectedComponents(mask, connectivity=8)
    y, x = np.unravel_index(int(np.argmax(up)), up.shape)
    ys, xs = np.nonzero(labels == labels[y, x])
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    inside = float(up[ys.min():ys.max() + 1, xs.min():xs.max() + 1].sum())
    return box, inside / float(up.sum())


class Locator:
    """Boxes for a batch of windows, by `method`: 'head' (with `head`) or 'rollout'."""

    def __init__(self, model: TimeSformer, head: Optional[LocatorHead] = None):
        self.model = model
        self.head = head
        self.method = 'head' if head is not None else 'rollout'

    @classmethod
    def for_checkpoint(cls, checkpoint) -> 'Locator':
        """Return a locator with the checkpoint's head (`load_head`), else by rollout."""
        return cls(checkpoint.model, load_head(checkpoint))

    def to(self, device, dtype) -> 'Locator':
        if self.head is not None:
            self.head.to(device, dtype).eval()
        return self

    @property
    def blocks(self) -> set:
        """The blocks whose attention weights the method needs."""
        depth = len(self.model.blocks)
        return {depth - 1} if self.head is not None else set(range(depth))

    def evidence(self, video: torch.Tensor, weights: dict, grid: tuple) -> torch.Tensor:
        """Tensors only (it runs inside a compiled forward): what `boxes` turns into boxes.

        With a head, (B, 5) boxes in input pixels and confidences; else the rolled-out
        relevance maps (B, gh, gw).
        """
        if self.head is not None:
            boxes, confidence = self.head.decode(head_features(self.model, video), grid)
            return torch.cat([boxes, confidence[:, None]], -1)
        return rollout(self.model, weights, video.shape[1], grid)

    def boxes(self, evidence: torch.Tensor, size: int) -> tuple:
        """Turn `evidence` into numpy box corners (B, 4) in input pixels, confidences (B,)."""
        evidence = evidence.float().cpu().numpy()
        if self.head is not None:
            return evidence[:, :4], evidence[:, 4]
        found = [map_box(m, size) for m in evidence]
        return (np.array([b for b, _ in found], np.float32).reshape(-1, 4),
                np.array([c for _, c in found], np.float32))


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
    checkpoint_json = Path(checkpoint_json).with_suffix('.json')
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
