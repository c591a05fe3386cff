"""How well the region (`~/window` roi, `~/detection`) finds the moving object, per method.

Scenes of one object moving over a 160x120 camera frame, rendered at the checkpoint's clip
rate (what the node samples) and run as sliding windows (one per frame) the way the node runs
them: each frame centre-cropped and resized for the model, its whole frame in gray beside it
(`frames.Frame`), the region mapped back into the camera's pixels. Scored against the object's
true box in the window's newest frame: whether the region holds the object's centre, and its
IoU with the box; by object size (the true box's longer side as a share of the frame's short
side). Three scene sources:

* `independent`: test/independent_clips.py (written apart from the training world, sharing
  none of its code): 3 s clips of any motion class; the true box comes from the same clip
  rendered plain (constant background, no noise), where the object's pixels are exact;
* `synthetic_held_out`: synthetic.py's continuous camera (`SyntheticStream`) in its held-out
  clutter style, the true box from the object's geometry;
* `continuous`: test/independent_scenes.py (written apart from both, by another engineer):
  30 s scenes where one object wanders over the whole frame, strips outside the central
  square included, changing what it does every 1.5-3 s without a cut, with still phases,
  slow motions, moving light, distractors and a camera of its own; the true box is that of
  the object's drawn pixels.

Methods: `lastblock` (the last block's CLS attention of the newest frame, upsampled and
thresholded as `locate.map_box` does), `rollout`, `motion (crop)` (the `motion` method on the
model's input alone), `motion` (the default, over the whole frame), `motion+hold` (the same
as a stream's `RegionHold` leaves it: what the node publishes) and `head` (when the checkpoint
has one). `motion`'s settings were chosen on seed 31000000 of all three sources; report it on
another seed (`--seed 33000000`). Also the share of windows whose object centre lies inside the
central square the model sees (`visible`), and the figures on those windows alone.

    .venv/bin/python benchmarks/roi_quality.py [--scenes 42] [--continuous 10] [--seed N]
        [--checkpoint PATH] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'test'))       # independent_scenes.py imports its sibling

from timesformer_ros import synthetic  # noqa: E402
from timesformer_ros.checkpoints import embedded_checkpoint, load_checkpoint  # noqa: E402
from timesformer_ros.engine import attention_summary  # noqa: E402
from timesformer_ros.frames import (  # noqa: E402
    Normaliser, resize_and_crop, square_of, thumb_of, to_source)
from timesformer_ros.clips import Window  # noqa: E402
from timesformer_ros.locate import (  # noqa: E402
    Locator, RegionHold, head_features, holds_centre, iou, load_head, map_box, rollout)
from timesformer_ros.predictions import Prediction  # noqa: E402
from timesformer_ros.quality import load_generator  # noqa: E402
from timesformer_ros.world import mask_box  # noqa: E402

WIDTH, HEIGHT = 160, 120
SIZE_BINS = (0.0, 0.1, 0.15, 0.2, 0.3, 0.7)


def independent_scenes(count: int, seed: int, fps: float, frames: int):
    """Yield (frames (F, H, W, 3), true boxes (F, 4)) of the independent generator."""
    gen = load_generator(REPO / 'test' / 'independent_clips.py')
    for i in range(count):
        label = gen.CLASSES[i % len(gen.CLASSES)]
        clip = gen.make_clip(gen.clip_rng(seed, i), label, frames, fps, HEIGHT, WIDTH)
        plain = gen.make_clip(gen.clip_rng(seed, i), label, frames, fps, HEIGHT, WIDTH,
                              plain=True)
        boxes = []
        for frame in plain.astype(np.int16):
            plate = np.median(frame.reshape(-1, 3), axis=0)
            boxes.append(mask_box(np.abs(frame - plate).sum(-1) > 24))
        yield clip, np.stack(boxes)


def continuous_scenes(count: int, seed: int, fps: float, seconds: float):
    """Yield (frames, true boxes) of test/independent_scenes.py, wandering over the whole frame.

    One object changing what it does every 1.5-3 s without a cut (still phases between, slow
    motions from 0.05 short sides/s, sizes 0.1-0.5), a camera of its own; NaN boxes where
    nothing of the object is in the frame.
    """
    import independent_scenes as scenes
    for i in range(count):
        scene = scenes.Scene(scenes.scene_rng(seed, i), seconds=seconds, fps=fps,
                             height=HEIGHT, width=WIDTH, wander='whole')
        frames, boxes = [], []
        for _, rgb, truth in scene:
            frames.append(rgb)
            boxes.append(truth['box'] if truth['box'] is not None else (np.nan,) * 4)
        yield np.stack(frames), np.array(boxes, np.float32)


def _object_box(obj, t: float, unit: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH, 3), np.float32)
    shape = synthetic._Object(obj.shape, np.ones(3), None, obj.angle, obj.pos, obj.size,
                              obj.velocity, obj.growth)
    synthetic._draw(mask, shape, *shape.at(t), unit)
    return mask_box(mask[..., 0] >= 0.5)


def synthetic_scenes(count: int, seed: int, fps: float, frames: int):
    """Yield (frames, true boxes) of synthetic.py's continuous camera, held-out clutter style."""
    stream = synthetic.SyntheticStream(seed=seed, width=WIDTH, height=HEIGHT, fps=fps,
                                       style=synthetic.HELD_OUT_BACKGROUND)
    unit = min(HEIGHT, WIDTH)
    segments = stream.segments()
    made = 0
    while made < count:
        scene = next(segments)
        n = int(round(scene.duration * fps))
        if n < frames:
            continue
        background = synthetic._background(scene, HEIGHT, WIDTH)
        noise = synthetic._noise_bank(scene, HEIGHT, WIDTH) if scene.noise > 0 else None
        rgb = np.stack([synthetic.render(scene, k / fps, HEIGHT, WIDTH, background, noise, k)
                        for k in range(n)])
        yield rgb, np.stack([_object_box(scene.main, k / fps, unit) for k in range(n)])
        made += 1


def windows_of(clip: np.ndarray, boxes: np.ndarray, size: int, frames: int):
    """Return sliding windows (one per frame once T are held) of a clip.

    As (inputs (W, T, S, S, 3), whole frames in gray as streams buffer them (W, T, h, w),
    true boxes (W, 4)).
    """
    small = np.stack([resize_and_crop(f, size) for f in clip])
    thumbs = np.stack([thumb_of(f, size) for f in clip])
    starts = [s for s in range(len(clip) - frames + 1)
              if not np.isnan(boxes[s + frames - 1]).any()]
    return (np.stack([small[s:s + frames] for s in starts]),
            np.stack([thumbs[s:s + frames] for s in starts]),
            np.stack([boxes[s + frames - 1] for s in starts]))


def predict(ckpt, head, inputs: np.ndarray, thumbs: np.ndarray, normaliser) -> tuple:
    """Boxes in input pixels per method for a batch of windows, and `motion`'s confidences.

    `motion` looks at the whole frames, as the node does; `motion (crop)` at the model's input
    alone.
    """
    model, cfg = ckpt.model, ckpt.config
    grid = (cfg.grid_size, cfg.grid_size)
    video = normaliser(torch.from_numpy(inputs))
    with torch.inference_mode():
        tokens, weights = model.forward_features_with_attention(video, set(range(cfg.depth)))
        spatial, _ = attention_summary(model, weights[cfg.depth - 1], cfg.num_frames, grid)
        relevance = rollout(model, weights, cfg.num_frames, grid)
        maps = {'lastblock': spatial[:, -1].numpy(), 'rollout': relevance.numpy()}
        found = {name: np.array([map_box(m, cfg.img_size)[0] for m in value], np.float32)
                 for name, value in maps.items()}
        locator = Locator(model)
        found['motion'], confidence = locator.boxes(spatial[:, -1], video, list(thumbs))
        found['motion (crop)'], _ = locator.boxes(spatial[:, -1], video)
        if head is not None:
            boxes, _ = head.decode(head_features(model, video), grid)
            found['head'] = boxes.numpy()
    return found, confidence


def held(boxes: np.ndarray, confidence: np.ndarray, fps: float) -> np.ndarray:
    """`motion` boxes of one scene's windows in order, as a stream's `RegionHold` leaves them."""
    hold, out = RegionHold(), []
    for k, (box, conf) in enumerate(zip(boxes, confidence)):
        prediction = Prediction([], [], [], np.zeros(1), box=box, box_confidence=float(conf),
                                box_method='motion')
        out.append(hold.apply(prediction, Window((), (int(k * 1e9 / fps),), '', None, k)).box)
    return np.array(out, np.float32).reshape(-1, 4)


def summary(hit: np.ndarray, overlap: np.ndarray) -> dict:
    return {'windows': int(len(hit)), 'centre_hit': round(float(hit.mean()), 4),
            'median_iou': round(float(np.median(overlap)), 4),
            'mean_iou': round(float(overlap.mean()), 4)}


def evaluate(ckpt, head, scenes, frames: int, fps: float) -> dict:
    cfg = ckpt.config
    normaliser = Normaliser(ckpt.mean, ckpt.std)
    top, left, side = square_of(HEIGHT, WIDTH)
    per_method, truths = {}, []
    for clip, boxes in scenes:
        inputs, thumbs, truth = windows_of(clip, boxes, cfg.img_size, frames)
        truths.append(truth)
        found_all, confidence = predict(ckpt, head, inputs, thumbs, normaliser)
        found_all['motion+hold'] = held(found_all['motion'], confidence, fps)
        for name, found in found_all.items():
            mapped = np.array([to_source(b, cfg.img_size, HEIGHT, WIDTH) for b in found])
            per_method.setdefault(name, []).append(mapped)
    truth = np.concatenate(truths)
    centre = (truth[:, :2] + truth[:, 2:]) / 2
    visible = ((centre[:, 0] >= left) & (centre[:, 0] <= left + side)
               & (centre[:, 1] >= top) & (centre[:, 1] <= top + side))
    size = (truth[:, 2:] - truth[:, :2]).max(1) / min(HEIGHT, WIDTH)
    out = {'windows': int(len(truth)), 'visible_share': round(float(visible.mean()), 4)}
    for name, parts in per_method.items():
        found = np.concatenate(parts)
        hit, overlap = holds_centre(found, truth), iou(found, truth)
        by_size = {}
        for low, high in zip(SIZE_BINS, SIZE_BINS[1:]):
            inside = (size >= low) & (size < high)
            if inside.any():
                by_size[f'{low:g}-{high:g}'] = summary(hit[inside], overlap[inside])
        out[name] = {'all': summary(hit, overlap),
                     'visible': summary(hit[visible], overlap[visible]),
                     'by_size_all': by_size}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--checkpoint', type=Path, default=embedded_checkpoint())
    parser.add_argument('--scenes', type=int, default=42)
    parser.add_argument('--seconds', type=float, default=3.0)
    parser.add_argument('--seed', type=int, default=31 * 10 ** 6)
    parser.add_argument('--continuous', type=int, default=10,
                        help='continuous scenes of test/independent_scenes.py (0: none)')
    parser.add_argument('--continuous-seconds', type=float, default=30.0)
    parser.add_argument('--json', type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ckpt = load_checkpoint(args.checkpoint)
    head = load_head(ckpt)
    fps = ckpt.clip_fps or 10.0
    frames = ckpt.config.num_frames
    length = max(frames, int(round(args.seconds * fps)))
    started = time.monotonic()
    results = {'checkpoint': str(args.checkpoint), 'camera': f'{WIDTH}x{HEIGHT}',
               'clip_fps': fps, 'scenes': args.scenes, 'seed': args.seed,
               'independent': evaluate(ckpt, head, independent_scenes(
                   args.scenes, args.seed, fps, length), frames, fps),
               'synthetic_held_out': evaluate(ckpt, head, synthetic_scenes(
                   args.scenes, args.seed, fps, frames), frames, fps)}
    if args.continuous:
        results['continuous'] = evaluate(ckpt, head, continuous_scenes(
            args.continuous, args.seed, fps, args.continuous_seconds), frames, fps)
    results['seconds'] = round(time.monotonic() - started, 1)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
