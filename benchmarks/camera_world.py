"""The embedded motion model on the camera-like training world, each part switched off in turn.

    python benchmarks/camera_world.py --checkpoint C --clips 700    # ~2 min per model

Scores a checkpoint on windows of `camera_world.py` (seeds training never draws from: the
report's), with all its parts, and with each part switched off (`Options.without`): how much
each part changes what the model faces. Also accuracy by speed, growth and size on the full
world (the envelope), and the same for world.py as a reference. Inference only: what a part
brings to *training* needs a training run per part, which this script does not do. Writes
benchmarks/results/camera_world.json (and --json OUT).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import report  # noqa: E402 - benchmarks/report.py, beside this script

from timesformer_ros import camera_world, world  # noqa: E402
from timesformer_ros.checkpoints import embedded_checkpoint, load_checkpoint  # noqa: E402
from timesformer_ros.frames import Normaliser  # noqa: E402
from timesformer_ros.synthetic import CLASSES  # noqa: E402
from timesformer_ros.quality import binned, confusion, predict  # noqa: E402
from timesformer_ros.views import checkpoint_views  # noqa: E402
from timesformer_ros.train import REPORT_SEED  # noqa: E402

SPEEDS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
GROWTHS = (1.2, 1.5, 2.0, 3.0, 6.5)
SIZES = (0.07, 0.1, 0.2, 0.3, 0.5)


def windows(seed: int, count: int, cfg, clip_fps: float, options) -> list:
    """Draw `count` windows with balanced classes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % len(CLASSES)
    rng.shuffle(labels)
    return [camera_world.make_window(rng, CLASSES[i], cfg.img_size, cfg.num_frames, clip_fps,
                                     options) for i in labels]


def score(ckpt, drawn: list, views=()) -> dict:
    """Accuracy, confusion and the envelope's bins of a checkpoint on drawn windows."""
    clips = np.stack([w.clip for w in drawn])
    labels = np.array([CLASSES.index(w.label) for w in drawn])
    predicted = predict(ckpt.model, clips, Normaliser(ckpt.mean, ckpt.std), views=views)
    correct = predicted == labels
    moving = np.array([w.label.startswith('moving_') for w in drawn])
    scaling = np.array([w.label in ('approaching', 'receding') for w in drawn])
    speed = np.array([w.speed for w in drawn])
    growth = np.array([max(w.growth, 1 / w.growth) for w in drawn])
    size = np.array([w.size for w in drawn])
    straddles = np.array([len(w.phases) > 1 for w in drawn])
    hand = np.array([w.hand for w in drawn])
    return {'accuracy': round(float(correct.mean()), 4), 'windows': len(drawn),
            'confusion': confusion(labels, predicted, len(CLASSES)),
            'by_speed_short_sides_per_s': binned(speed[moving], correct[moving], SPEEDS),
            'by_growth_per_s': binned(growth[scaling], correct[scaling], GROWTHS),
            'by_size_short_side': binned(size, correct, SIZES),
            'two_phases': round(float(correct[straddles].mean()), 4) if straddles.any() else None,
            'with_hand': round(float(correct[hand].mean()), 4) if hand.any() else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', default='', help='default: the embedded model')
    parser.add_argument('--clips', type=int, default=700)
    parser.add_argument('--seed', type=int, default=REPORT_SEED)
    parser.add_argument('--json', type=Path)
    parser.add_argument('--real-footage', type=float, default=0.0,
                        help="share of scenes over real video (the videos' training parts), "
                             'half of those with a real mover, as train --real-footage')
    parser.add_argument('--no-ablation', action='store_true',
                        help='only the world with all its parts')
    parser.add_argument('--views', default='mirrors', help="test-time views, as the node's "
                        'test_time_views: mirrors (default), all, none or a list: hflip,reverse')
    args = parser.parse_args()
    ckpt = load_checkpoint(args.checkpoint or embedded_checkpoint())
    views = checkpoint_views(ckpt, args.views)
    cfg, clip_fps = ckpt.config, ckpt.clip_fps or 10.0
    started = time.monotonic()
    result = {'benchmark': 'camera_world', 'date': datetime.date.today().isoformat(),
              'checkpoint': args.checkpoint or 'embedded', 'clips': args.clips,
              'seed': args.seed, 'real_footage': args.real_footage,
              'test_time_views': 1 + len(views)}
    full = camera_world.Options(footage=args.real_footage, movers=args.real_footage / 2)
    result['all_parts'] = score(ckpt, windows(args.seed, args.clips, cfg, clip_fps, full), views)
    print(f"all parts: {result['all_parts']['accuracy']:.3f}", flush=True)
    for name in () if args.no_ablation else (
            'perspective', 'hand', 'shadow', 'camera', 'blur', 'continuous', 'envelope',
            'distractors', 'footage', 'movers'):
        if getattr(full, name) in (0, False):
            continue
        found = score(ckpt, windows(args.seed, args.clips, cfg, clip_fps, full.without(name)),
                      views)
        result[f'without_{name}'] = {'accuracy': found['accuracy']}
        print(f'without {name}: {found["accuracy"]:.3f}', flush=True)
    data, labels = world.make_dataset(args.seed, args.clips, cfg.img_size, cfg.num_frames,
                                      clip_fps)
    result['world_py'] = round(float(
        (predict(ckpt.model, data, Normaliser(ckpt.mean, ckpt.std), views=views) == labels)
        .mean()), 4)
    print(f"world.py: {result['world_py']:.3f}")
    result['seconds'] = round(time.monotonic() - started)
    report.write('camera_world', result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
