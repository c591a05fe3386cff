"""Bags of independent clips and scenes: what a user's 30 Hz camera recording looks like.

Each clip of `independent_clips.py` (160x120 rgb8) is written at the camera rate, one after
the other, with a gap in the stamps between clips longer than the node's `max_gap_s`, so that
every window holds frames of one clip only. The truth topic says each frame's motion;
`reverse` writes every clip backwards with the reversed motion as its truth.

A continuous scene of `independent_scenes.py` is one bag with no gap (`write_scene`), and its
truth three ways: the bag's truth topic, a CSV of segments, and the object's box per frame.
From the command line (the benchmarks' and the region benchmark's scenes)::

    .venv/bin/python test/independent_bags.py OUT --seed 24000 --scenes 4 [--seconds 60]
        [--width 640 --height 480] [--wander whole] [--storage mcap]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from independent_clips import clip_rng, make_clip, make_labels
from independent_scenes import WANDER, Scene, scene_rng
from timesformer_ros.bags import write_camera_bag
from timesformer_ros.synthetic import REVERSED

START_NS = 1_750_000_000_000_000_000
GAP_S = 1.0


def independent_frames(seed: int, count: int, seconds: float = 2.0, fps: float = 30.0,
                       reverse: bool = False, height: int = 120, width: int = 160):
    """Yield (stamp ns, rgb, label) for `count` balanced clips of `seconds` at `fps`."""
    frames = int(round(seconds * fps))
    stamp = START_NS
    for index, label in enumerate(make_labels(seed, count)):
        clip = make_clip(clip_rng(seed, index), label, frames=frames, fps=fps, height=height,
                         width=width)
        if reverse:
            clip, label = clip[::-1], REVERSED[label]
        for rgb in clip:
            yield stamp, rgb, label
            stamp += int(round(1e9 / fps))
        stamp += int(GAP_S * 1e9)


def write_independent_bag(path: Path, seed: int, count: int, reverse: bool = False,
                          seconds: float = 2.0, storage: str = 'sqlite3') -> int:
    """Write the clips as a 30 Hz camera bag (/camera/image_raw, truth /motion)."""
    return write_camera_bag(path, independent_frames(seed, count, seconds, reverse=reverse),
                            storage)


# -- continuous scenes ---------------------------------------------------------------------------

BOX_FIELDS = ('stamp', 'label', 'x_min', 'y_min', 'x_max', 'y_max', 'visible', 'centre_x',
              'centre_y', 'diameter')


def seconds_text(ns: int) -> str:
    """Return integer nanoseconds as exact decimal seconds (the segments CSV's stamps)."""
    return f'{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}'


def scene_stamp(k: int, fps: float) -> int:
    """Return the header stamp (ns) of frame k of a scene."""
    return START_NS + int(round(k * 1e9 / fps))


def write_scene(out: Path, seed: int, index: int, seconds: float = 60.0, fps: float = 30.0,
                height: int = 120, width: int = 160, wander: str = 'centre',
                storage: str = 'sqlite3') -> dict:
    """Write scene `index` of `seed` into the directory `out`; return its description.

    out/bag: a rosbag2 of the camera (/camera/image_raw, rgb8) and the truth topic (/motion,
    the synthetic camera's JSON per frame: what `timesformer_bag evaluate --truth /motion`
    reads); out/segments.csv: the phases as `start,end,label` in header-stamp seconds, each from
    its first frame's stamp to the next phase's (`evaluate --truth out/segments.csv`);
    out/boxes.csv: per frame its stamp (ns), label and the object's box in source pixels
    (edges; empty when nothing of it is in the frame), visible share, centre and diameter;
    out/scene.json: the scene's look and phases, with each phase's first and last frame stamps.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scene = Scene(scene_rng(seed, index), seconds, fps, height, width, wander)
    rows = []

    def frames():
        for k, rgb, truth in scene:
            stamp = scene_stamp(k, fps)
            box = truth['box'] or ('', '', '', '')
            rows.append((stamp, truth['label'], *box, truth['visible'], *truth['centre'],
                         truth['diameter']))
            yield stamp, rgb, truth['label']

    write_camera_bag(out / 'bag', frames(), storage)
    with (out / 'boxes.csv').open('w', newline='') as handle:
        writer = csv.writer(handle)
        writer.writerow(BOX_FIELDS)
        writer.writerows(rows)
    spans = scene.phase_frames()
    with (out / 'segments.csv').open('w', newline='') as handle:
        writer = csv.writer(handle)
        writer.writerow(('start', 'end', 'label'))
        for phase, first, last in spans:
            writer.writerow((seconds_text(scene_stamp(first, fps)),
                             seconds_text(scene_stamp(last + 1, fps)), phase.label))
    description = {'seed': seed, 'index': index, **scene.describe()}
    description['phases'] = [
        {**row, 'first_stamp_ns': scene_stamp(first, fps), 'last_stamp_ns': scene_stamp(last, fps)}
        for row, (_, first, last) in zip(description['phases'], spans)]
    (out / 'scene.json').write_text(json.dumps(description, indent=1))
    return description


def main(argv=None) -> int:
    """Write scenes from the command line (module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('out', type=Path, help='a directory; scene_<seed>_<index> go in it')
    parser.add_argument('--seed', type=int, required=True)
    parser.add_argument('--scenes', type=int, default=1)
    parser.add_argument('--first', type=int, default=0, help='index of the first scene')
    parser.add_argument('--seconds', type=float, default=60.0)
    parser.add_argument('--fps', type=float, default=30.0)
    parser.add_argument('--width', type=int, default=160)
    parser.add_argument('--height', type=int, default=120)
    parser.add_argument('--wander', choices=WANDER, default='centre',
                        help="centre: the object's centre stays in the central square; "
                             'whole: anywhere in the frame')
    parser.add_argument('--storage', choices=('sqlite3', 'mcap'), default='sqlite3')
    args = parser.parse_args(argv)
    for index in range(args.first, args.first + args.scenes):
        target = args.out / f'scene_{args.seed}_{index}'
        if target.exists():
            print(f'independent_bags: error: {target} exists; give another OUT', file=sys.stderr)
            return 2
        described = write_scene(target, args.seed, index, args.seconds, args.fps, args.height,
                                args.width, args.wander, args.storage)
        print(f'wrote {target}: {len(described["phases"])} phases, '
              f'{int(round(args.seconds * args.fps))} frames')
    return 0


if __name__ == '__main__':
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
