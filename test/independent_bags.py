"""Bags of independent clips: what a user's 30 Hz camera recording of the 7 motions looks like.

Each clip of `independent_clips.py` (160x120 rgb8) is written at the camera rate, one after
the other, with a gap in the stamps between clips longer than the node's `max_gap_s`, so that
every window holds frames of one clip only. The truth topic says each frame's motion;
`reverse` writes every clip backwards with the reversed motion as its truth.
"""

from __future__ import annotations

from pathlib import Path

from independent_clips import clip_rng, make_clip, make_labels
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
