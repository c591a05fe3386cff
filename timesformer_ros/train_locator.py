"""Training the localisation head of a checkpoint (`locate.LocatorHead`), its classifier frozen.

    timesformer_train locator timesformer_ros/data/motion.json --threads 1

The head learns the moving object's box in a window's newest frame from clips of the training
world (`world.py`), which knows where it drew the object; the checkpoint's own weights are not
touched, so its classification stays as it was. The head is written beside the checkpoint
(NAME.locator.safetensors) and named in its description (NAME.json, key `locator`).
"""

from __future__ import annotations

import argparse
import logging
import math
import shlex
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import synthetic, world
from .checkpoints import CheckpointError, load_checkpoint
from .frames import Normaliser
from .locate import HEAD_KINDS, LocatorHead, head_features, holds_centre, iou, save_head
from .model import TimeSformer

LOGGER = logging.getLogger(__name__)


def located_batch(rng: np.random.Generator, count: int, size: int, frames: int,
                  clip_fps: float) -> tuple:
    """`count` training-world clips of random classes and the object's box in the newest frame.

    (clips (N, T, S, S, 3) uint8, boxes (N, 4) in input pixels); half are mirrored (the box
    with them); clips whose object has left the view by the newest frame are drawn again.
    """
    clips, boxes = [], []
    while len(clips) < count:
        label = synthetic.CLASSES[int(rng.integers(len(synthetic.CLASSES)))]
        clip, box = world.make_clip_and_boxes(rng, label, size, frames, clip_fps)
        if np.isnan(box[-1]).any():
            continue
        if rng.random() < 0.5:
            clip, box = clip[:, :, ::-1], np.array([size, 0, size, 0]) + \
                box[:, [2, 1, 0, 3]] * np.array([-1, 1, -1, 1])
        clips.append(clip)
        boxes.append(box[-1])
    return np.ascontiguousarray(np.stack(clips)), np.stack(boxes).astype(np.float32)


@torch.no_grad()
def _features(model: TimeSformer, clips: np.ndarray, normaliser: Normaliser,
              batch_size: int = 64) -> torch.Tensor:
    return torch.cat([head_features(model, normaliser(torch.from_numpy(clips[i:i + batch_size])))
                      for i in range(0, len(clips), batch_size)])


def train_locator(checkpoint, clips: int = 6000, steps: int = 4000, batch_size: int = 64,
                  lr: float = 3e-3, seed: int = 0, hidden: int = 64,
                  val_clips: int = 400, kind: str = 'mlp', default_clip_fps: float = 10.0,
                  val_seed: int = 10 ** 7) -> tuple:
    """Train a `locate.LocatorHead` for a checkpoint whose weights stay frozen.

    The head learns from `clips` training-world clips (seeds `seed`..., their boxes known),
    whose features (`locate.head_features`) are computed once, for `steps` steps of
    `batch_size`; it is validated on the world's validation seeds (`val_seed`, never drawn for
    training). Clips are drawn around the checkpoint's clip rate (`default_clip_fps` when it
    records none). Returns (head, history).
    """
    torch.manual_seed(seed)
    model = checkpoint.model.eval()
    cfg = model.config
    grid = (cfg.grid_size, cfg.grid_size)
    clip_fps = checkpoint.clip_fps or default_clip_fps
    normaliser = Normaliser(checkpoint.mean, checkpoint.std)
    started = time.monotonic()
    data, boxes = located_batch(np.random.default_rng(seed), clips, cfg.img_size,
                                cfg.num_frames, clip_fps)
    features, boxes = _features(model, data, normaliser), torch.from_numpy(boxes)
    val, val_boxes = located_batch(np.random.default_rng(val_seed + seed), val_clips,
                                   cfg.img_size, cfg.num_frames, clip_fps)
    val = _features(model, val, normaliser)
    LOGGER.info('locator: features of %d clips in %.0f s', clips, time.monotonic() - started)
    head = LocatorHead(features.shape[-1], cfg.patch_size, hidden, kind)
    optimiser = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    rng = torch.Generator().manual_seed(seed)
    history = []
    for step in range(steps):
        head.train()
        take = torch.randint(0, len(features), (batch_size,), generator=rng)
        for group in optimiser.param_groups:
            group['lr'] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        loss = head.loss(features[take], boxes[take], grid)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if (step + 1) % 500 == 0 or step + 1 == steps:
            head.eval()
            with torch.no_grad():
                found = head.decode(val, grid)[0].numpy()
            entry = {'step': step + 1, 'loss': round(float(loss.detach()), 4),
                     'val_centre_hit': round(float(holds_centre(found, val_boxes).mean()), 4),
                     'val_median_iou': round(float(np.median(iou(found, val_boxes))), 4)}
            history.append(entry)
            LOGGER.info('locator %s', entry)
    return head.eval(), history


def main(argv: Sequence[str], default_clip_fps: float, val_seed: int) -> int:
    """`timesformer_train locator CHECKPOINT`: train its localisation head, write it beside."""
    parser = argparse.ArgumentParser(
        prog='timesformer_train locator',
        description='Train the localisation head of a timesformer_ros checkpoint on the '
                    "training world's boxes, its classifier frozen; the head is written beside "
                    'the checkpoint (NAME.locator.safetensors) and named in NAME.json.')
    parser.add_argument('checkpoint', type=Path)
    parser.add_argument('--clips', type=int, default=6000)
    parser.add_argument('--steps', type=int, default=4000)
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--lr', type=float, default=3e-3)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--hidden', type=int, default=64)
    parser.add_argument('--kind', choices=HEAD_KINDS, default='mlp',
                        help='mlp: each patch alone; conv: each patch with its neighbours')
    parser.add_argument('--threads', type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.monotonic()
    try:
        checkpoint = load_checkpoint(args.checkpoint)
    except CheckpointError as exc:
        parser.exit(2, f'timesformer_train locator: error: {exc}\n')
    head, history = train_locator(checkpoint, args.clips, args.steps, args.batch_size, args.lr,
                                  args.seed, args.hidden, kind=args.kind,
                                  default_clip_fps=default_clip_fps, val_seed=val_seed)
    path = save_head(args.checkpoint, head, {
        'command': 'timesformer_train locator ' + ' '.join(shlex.quote(a) for a in argv),
        'clips': args.clips, 'steps': args.steps, 'batch_size': args.batch_size,
        'lr': args.lr, 'seed': args.seed, 'kind': args.kind,
        'data': "world.py, the newest frame's box",
        'classifier': 'frozen', 'seconds': round(time.monotonic() - started),
        'history': history})
    LOGGER.info('wrote %s', path)
    return 0
