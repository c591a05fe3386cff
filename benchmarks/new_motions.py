"""Recordings of motions the embedded model never saw, with their segments: the fine-tune check.

    .venv/bin/python benchmarks/new_motions.py OUT_BAG --seed 0 --seconds 120 [--set train]

Writes a rosbag2 (rgb8 at 30 Hz on /camera/image_raw, `bags.write_camera_bag`) of a textured
object over a real photograph, in stretches of 3-8 s, each one of: `circling` (its centre runs
round a circle, 0.6-1.3 turns a second, either way), `shaking` (side to side, 1.5-3 Hz) and
`still` (at rest, a pixel of jitter at most); and OUT_BAG.segments.csv, the `start,end,label`
segments a person would write, in header-stamp seconds. `--set train` draws backgrounds and
object textures from the even scikit-image photographs, `--set test` from the odd ones, so a
model fine-tuned on one set is evaluated on scenes it never saw. Deterministic given the seed.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timesformer_ros.bags import write_camera_bag  # noqa: E402
from timesformer_ros.world import photographs  # noqa: E402

LABELS = ('circling', 'shaking', 'still')
FPS = 30.0
START_NS = 1_700_000_000_000_000_000


def _crop(rng, photo: np.ndarray, height: int, width: int) -> np.ndarray:
    """Return a random crop of a photograph resized to (height, width), uint8 RGB."""
    h, w = photo.shape[:2]
    scale = rng.uniform(0.4, 1.0)
    ch, cw = int(h * scale), int(min(w, h * scale * width / height))
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    crop = cv2.resize(photo[y:y + ch, x:x + cw], (width, height), interpolation=cv2.INTER_AREA)
    return np.clip(crop * 255, 0, 255).astype(np.uint8)


def _object(rng, photos, side: int) -> tuple:
    """Return (RGB patch, alpha mask): a disc, square or ellipse of a photograph's texture."""
    texture = _crop(rng, photos[rng.integers(len(photos))], side, side)
    texture = np.clip(texture.astype(np.float32) * rng.uniform(0.6, 1.4, 3), 0, 255)
    mask = np.zeros((side, side), np.float32)
    kind = rng.integers(3)
    c = side // 2
    if kind == 0:
        cv2.circle(mask, (c, c), c - 1, 1.0, -1)
    elif kind == 1:
        m = side // 8
        mask[m:side - m, m:side - m] = 1.0
    else:
        cv2.ellipse(mask, (c, c), (c - 1, int(c * rng.uniform(0.5, 0.9))),
                    float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    return texture.astype(np.uint8), cv2.GaussianBlur(mask, (3, 3), 0)[..., None]


def _paste(frame: np.ndarray, patch: np.ndarray, alpha: np.ndarray, cx: float, cy: float):
    """Blend the object into the frame centred at (cx, cy), sub-pixel by warping."""
    side = patch.shape[0]
    shift = np.float32([[1, 0, cx - side / 2], [0, 1, cy - side / 2]])
    size = (frame.shape[1], frame.shape[0])
    a = cv2.warpAffine(alpha, shift, size, flags=cv2.INTER_LINEAR)[..., None]
    p = cv2.warpAffine(patch, shift, size, flags=cv2.INTER_LINEAR)
    frame[:] = (frame * (1 - a) + p * a).astype(np.uint8)


def _stretch(rng, photos, label: str, count: int, height: int, width: int):
    """Yield the frames of one stretch of `label`, `count` frames long."""
    background = _crop(rng, photos[rng.integers(len(photos))], height, width)
    short = min(height, width)
    side = int(short * rng.uniform(0.18, 0.3))
    patch, alpha = _object(rng, photos, side)
    cx0 = width / 2 + rng.uniform(-0.1, 0.1) * short
    cy0 = height / 2 + rng.uniform(-0.1, 0.1) * short
    radius = rng.uniform(0.12, 0.22) * short
    turns = rng.uniform(0.6, 1.3) * rng.choice((-1, 1))
    amplitude = rng.uniform(0.08, 0.18) * short
    hertz = rng.uniform(1.5, 3.0)
    phase = rng.uniform(0, 2 * math.pi)
    for i in range(count):
        t = i / FPS
        if label == 'circling':
            angle = phase + 2 * math.pi * turns * t
            cx, cy = cx0 + radius * math.cos(angle), cy0 + radius * math.sin(angle)
        elif label == 'shaking':
            cx, cy = cx0 + amplitude * math.sin(phase + 2 * math.pi * hertz * t), cy0
        else:
            cx, cy = cx0 + rng.uniform(-0.5, 0.5), cy0 + rng.uniform(-0.5, 0.5)
        frame = background.copy()
        _paste(frame, patch, alpha, cx, cy)
        noise = rng.normal(0, 2.0, frame.shape)
        yield np.clip(frame + noise, 0, 255).astype(np.uint8)


def record(out: Path, seed: int, seconds: float, part: str, height: int = 120,
           width: int = 160) -> Path:
    """Write the bag and its segments CSV; return the CSV's path."""
    rng = np.random.default_rng(seed)
    photos = photographs()[0 if part == 'train' else 1::2]
    total = int(round(seconds * FPS))
    plan, done, previous = [], 0, None
    while done < total:
        label = rng.choice([name for name in LABELS if name != previous])
        count = min(int(rng.uniform(3, 8) * FPS), total - done)
        plan.append((done, count, str(label)))
        done, previous = done + count, label

    def stamp(index: int) -> int:
        return START_NS + int(round(index * 1e9 / FPS))

    def frames():
        for first, count, label in plan:
            for i, rgb in enumerate(_stretch(rng, photos, label, count, height, width)):
                yield stamp(first + i), rgb, label

    write_camera_bag(out, frames())
    csv = Path(str(out) + '.segments.csv')
    lines = ['start,end,label']
    for first, count, label in plan:
        # a segment runs from its first frame to the next one's stamp (half open)
        start, end = stamp(first), stamp(first + count)
        lines.append(f'{start // 10 ** 9}.{start % 10 ** 9:09d},'
                     f'{end // 10 ** 9}.{end % 10 ** 9:09d},{label}')
    csv.write_text('\n'.join(lines) + '\n')
    return csv


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('out', type=Path)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--seconds', type=float, default=120.0)
    parser.add_argument('--set', dest='part', choices=('train', 'test'), default='train')
    args = parser.parse_args()
    csv = record(args.out, args.seed, args.seconds, args.part)
    print(f'wrote {args.out} and {csv}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
