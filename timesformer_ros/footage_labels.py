"""Labelled windows of real footage: the labelling rule, for validation training cannot shape.

    windows = validation_windows(num_frames=8, clip_fps=10.0, size=48)
    windows.clips, windows.labels, windows.excluded

The movers of a fixed-camera video's VALIDATION part (`footage.split`) are found and tracked in
that part alone (`footage.detect`, `footage.track`). Each track gives windows of the model's
length at the model's clip rate; each window is cropped to a fixed square around the track
(1.5-2.5 times the object's longer side), so one object is in view in the centre square that
the model sees, and labelled from the track over the window's own span by `label_window` (the
rule, with its thresholds below). Windows the rule cannot label with confidence are excluded
and counted by reason (`EXCLUSIONS`). The thresholds were set by looking at the windows and
their tracks, never at a model's answers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from .footage import (
    OBJECT_VIDEOS, FootageError, clip_indices, detect, read_part, read_video, track)

MOVE = 0.05                 # crop sides per second: a translation at least this fast ...
DOMINANCE = 2.0             # ... and this many times the other axis' speed
GROW = 1.2                  # size factor per second: approaching at least, receding 1/GROW at most
STILL = 0.02                # crop sides per second: static below this on both axes ...
STILL_GROWTH = 1.06         # ... with a size factor per second within [1/this, this]
CROP_FACTORS = (1.5, 2.0, 2.5)  # the crop's side over the object's longer side, in turn
MIN_CROP = 24               # pixels: the smallest crop side
BORDER = 0.004              # short sides: a box this close to the frame's edge is partly outside
# Another mover at least CROWDED of the object's box area with CROWDED of its box inside the
# crop: excluded.
CROWDED = 0.5
STRIDE = 4                  # frames at the clip rate between the starts of a track's windows
JITTER = 0.15               # log size: a box deviating more from its fitted line jumped
MIN_OBJECT = 0.07           # short sides: a smaller object is too far to label (vtest: 40 px)
EXCLUSIONS = ('jumpy box', 'two motions', 'unclear', 'short track', 'track lost',
              'too small', 'at the border', 'crowded')


@dataclass(frozen=True)
class WindowMotion:
    """What a track does over one window, in the window's crop (the rule's measurements)."""

    velocity: tuple             # (vx, vy) crop sides per second, +x right, +y down
    growth: float               # size factor per second
    size: float                 # the object's mean longer side over the crop side
    jitter: float = 0.0         # largest deviation of the log size from its straight-line fit


def measure(boxes: np.ndarray, times: np.ndarray, side: float) -> WindowMotion:
    """Fit a track's boxes over a window: least-squares lines of centre and log size in time.

    The centre's slope is divided by the crop `side` (crop sides per second); the size is
    sqrt(width * height) and its log's slope gives the growth factor per second. Fitting all
    frames, not the ends, keeps a walker's swinging limbs from deciding; `jitter` is the log
    size's largest deviation from the line (a box that jumps: a merge, an occlusion).
    """
    boxes = np.asarray(boxes, float)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    extent = boxes[:, 2:] - boxes[:, :2]
    log_size = np.log(np.sqrt(extent.prod(1)))
    slope, intercept = np.polyfit(times, np.column_stack([centre, log_size]), 1)
    jitter = np.abs(log_size - (intercept[2] + slope[2] * times)).max()
    return WindowMotion((float(slope[0] / side), float(slope[1] / side)),
                        float(np.exp(slope[2])), float(extent.max(1).mean() / side),
                        float(jitter))


def label_window(motion: WindowMotion) -> tuple:
    """Return (label, None) or (None, why excluded) for one window: THE LABELLING RULE.

    With (vx, vy) the box centre's speed in crop sides per second, g the size factor per second
    and j the log size's largest deviation from its fit (see `measure`):
    - j above JITTER -> excluded ('jumpy box': a merge, a split or an occlusion);
    - moving: the larger of |vx|, |vy| is at least MOVE (0.05); scaling: g >= GROW (1.2) or
      g <= 1 / GROW; both -> excluded ('two motions');
    - moving alone: moving_left / moving_right / moving_up / moving_down by the faster axis and
      its sign, if it is at least DOMINANCE (2) times the other axis, else excluded ('unclear':
      diagonal);
    - scaling alone: approaching (g > 1) or receding;
    - static: |vx| and |vy| below STILL (0.02) and g within [1 / STILL_GROWTH, STILL_GROWTH]
      (1.06);
    - anything else (between the thresholds) -> excluded ('unclear').
    """
    vx, vy = motion.velocity
    fast, slow = max(abs(vx), abs(vy)), min(abs(vx), abs(vy))
    moving = fast >= MOVE
    scaling = motion.growth >= GROW or motion.growth <= 1 / GROW
    if motion.jitter > JITTER:
        return None, 'jumpy box'
    if moving and scaling:
        return None, 'two motions'
    if moving:
        if fast < DOMINANCE * slow:
            return None, 'unclear'
        if abs(vx) >= abs(vy):
            return ('moving_right' if vx > 0 else 'moving_left'), None
        return ('moving_down' if vy > 0 else 'moving_up'), None
    if scaling:
        return ('approaching' if motion.growth > 1 else 'receding'), None
    if fast < STILL and 1 / STILL_GROWTH <= motion.growth <= STILL_GROWTH:
        return 'static', None
    return None, 'unclear'


def crop_square(boxes: np.ndarray, factor: float, width: int, height: int) -> np.ndarray:
    """Return the window's fixed crop (x0, y0, x1, y1): a square around the track's boxes.

    Side: `factor` times the object's longest side over the window (at least MIN_CROP, at most
    the frame's short side), centred on the boxes' mean centre and shifted inside the frame.
    """
    boxes = np.asarray(boxes, float)
    side = int(round(min(max(factor * (boxes[:, 2:] - boxes[:, :2]).max(), MIN_CROP),
                         min(width, height))))
    centre = ((boxes[:, :2] + boxes[:, 2:]) / 2).mean(0)
    x0 = int(np.clip(round(centre[0] - side / 2), 0, width - side))
    y0 = int(np.clip(round(centre[1] - side / 2), 0, height - side))
    return np.array([x0, y0, x0 + side, y0 + side])


@dataclass
class Windows:
    """Labelled windows of real footage, and how many were excluded and why."""

    clips: np.ndarray           # (N, T, size, size, 3) uint8 RGB, the crops the model sees
    labels: list                # N class names
    speed: np.ndarray           # (N,) the faster axis' speed, crop sides per second
    growth: np.ndarray          # (N,) size factor per second, >= 1 (max(g, 1 / g))
    size: np.ndarray            # (N,) the object's longer side over the crop side
    sources: list               # N dicts: video, part, frames (video indices), crop, track
    excluded: dict              # reason: count
    clip_fps: float = 10.0


def windows_of(frames: np.ndarray, fps: float, offset: int, num_frames: int, clip_fps: float,
               size: int, video: str = '', part: str = 'validation') -> Windows:
    """Find the movers in `frames` (one part of a fixed-camera video) and label their windows.

    Every track gets a window starting at its first frame and then every STRIDE clip frames;
    each window's frames are the nearest at `clip_fps`, its crop is `crop_square` (factors
    CROP_FACTORS in turn, so one object is in view and object sizes vary), and its label is
    `label_window`'s. Excluded: a track shorter than one window ('short track': mostly
    speckle), a track that ends inside a window ('track lost': once per track that had a
    window), an object whose longer side is below MIN_OBJECT short sides on average ('too
    small': far away, often half hidden), a box within BORDER short sides of the frame's edge
    ('at the border'), another mover at least CROWDED of the object's box area with CROWDED of
    its box inside the crop ('crowded'), and the rule's own exclusions. `offset` is the part's
    first frame in the video (for the sources).
    """
    found = detect(frames)
    height, width = frames.shape[1:3]
    short = min(height, width)
    border = BORDER * short
    times = np.arange(num_frames) / clip_fps
    excluded = dict.fromkeys(EXCLUSIONS, 0)
    out = {'clips': [], 'labels': [], 'speed': [], 'growth': [], 'size': [], 'sources': []}
    for number, (first, indices) in enumerate(track(found.boxes)):
        boxes = np.array([found.boxes[first + k][j] for k, j in enumerate(indices)])
        start = 0
        while True:
            index = clip_indices(start, num_frames, fps, clip_fps)
            if index[-1] >= len(boxes):
                excluded['short track' if start == 0 else 'track lost'] += 1
                break
            start += round(STRIDE * fps / clip_fps)
            window = boxes[index]
            factor = CROP_FACTORS[len(out['labels']) % len(CROP_FACTORS)]
            crop = crop_square(window, factor, width, height)
            if (window[:, 2:] - window[:, :2]).max(1).mean() < MIN_OBJECT * short:
                excluded['too small'] += 1
                continue
            if (window[:, :2].min() < border or window[:, 2].max() > width - border
                    or window[:, 3].max() > height - border):
                excluded['at the border'] += 1
                continue
            if _crowded(found.boxes, first + index, indices, index, crop, window):
                excluded['crowded'] += 1
                continue
            motion = measure(window, times, crop[2] - crop[0])
            label, why = label_window(motion)
            if why:
                excluded[why] += 1
                continue
            x0, y0, x1, y1 = crop
            out['clips'].append([cv2.resize(frames[first + i, y0:y1, x0:x1], (size, size),
                                            interpolation=cv2.INTER_AREA) for i in index])
            out['labels'].append(label)
            out['speed'].append(max(map(abs, motion.velocity)))
            out['growth'].append(max(motion.growth, 1 / motion.growth))
            out['size'].append(motion.size)
            out['sources'].append({'video': video, 'part': part, 'track': number,
                                   'frames': (offset + first + index).tolist(),
                                   'crop': crop.tolist()})
    clips = np.array(out['clips'], np.uint8).reshape(-1, num_frames, size, size, 3)
    return Windows(clips, out['labels'], np.array(out['speed']), np.array(out['growth']),
                   np.array(out['size']), out['sources'], excluded, clip_fps)


def _crowded(boxes: list, frames: np.ndarray, indices: list, index: np.ndarray,
             crop: np.ndarray, window: np.ndarray) -> bool:
    """Return whether another mover (see `windows_of`) is inside `crop` in one of `frames`."""
    x0, y0, x1, y1 = crop
    for frame, k, own in zip(frames, index, window):
        others = np.delete(boxes[frame], indices[k], axis=0).astype(float)
        if not len(others):
            continue
        w = (np.minimum(others[:, 2], x1) - np.maximum(others[:, 0], x0)).clip(0)
        h = (np.minimum(others[:, 3], y1) - np.maximum(others[:, 1], y0)).clip(0)
        area = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
        big = area >= CROWDED * (own[2] - own[0]) * (own[3] - own[1])
        if (big & (w * h >= CROWDED * area)).any():
            return True
    return False


def validation_windows(num_frames: int, clip_fps: float, size: int,
                       videos: Sequence[str] = OBJECT_VIDEOS,
                       folder: Optional[os.PathLike] = None) -> Windows:
    """Return the labelled windows of the VALIDATION parts of `videos` (see `windows_of`)."""
    parts = []
    for name in videos:
        frames, fps, offset = read_part(name, 'validation', folder)
        parts.append(windows_of(frames, fps, offset, num_frames, clip_fps, size, name))
    return join(parts)


def join(parts: Sequence[Windows]) -> Windows:
    """Return one Windows of several."""
    first = parts[0]
    return Windows(np.concatenate([p.clips for p in parts]),
                   [label for p in parts for label in p.labels],
                   np.concatenate([p.speed for p in parts]),
                   np.concatenate([p.growth for p in parts]),
                   np.concatenate([p.size for p in parts]),
                   [s for p in parts for s in p.sources],
                   {k: sum(p.excluded[k] for p in parts) for k in first.excluded},
                   first.clip_fps)


def file_windows(path: os.PathLike, num_frames: int, clip_fps: float, size: int) -> Windows:
    """Return the labelled windows of a whole video file (a committed validation excerpt).

    The file is taken as one part: it must already be validation footage (the excerpt in
    test/data/footage is cut from vtest.avi's validation part).
    """
    path = Path(path)
    if not path.is_file():
        raise FootageError(f'real footage: no video at {path}')
    frames, fps = read_video(path)
    return windows_of(frames, fps, 0, num_frames, clip_fps, size, path.name, 'excerpt')
