"""A folder of labelled clips for `timesformer_train train --data DIR`: DIR/<class>/*.npy.

Each clip a (T, H, W, 3) uint8 array. Clips are untrusted input: every one is checked from its
.npy header before training starts (`check_clip_file`), never unpickled, and loaded memory-mapped
only when drawn.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from .frames import resize_and_crop


# A clip file: at most this many bytes of pixels (1 GiB: 30 s of 1080p at 10 fps), frames at
# most MAX_SIDE a side (the node's frame limit). Checked from the .npy header, before any of it
# is read.
MAX_CLIP_BYTES = 1 << 30
MAX_SIDE = 8192


def folder_classes(root: Path, known: Sequence[str] = ()) -> list:
    """Return the classes of a clip folder: its subdirectories that hold *.npy clips.

    They come in the order of `known` (the labels of the checkpoint training starts from)
    when they are the same classes, so that its head keeps its meaning; else sorted by name.
    A folder of fewer than two classes is a ValueError: one class cannot be learnt.
    """
    root = Path(root)
    names = sorted(path.name for path in root.iterdir()
                   if path.is_dir() and any(path.glob('*.npy'))) if root.is_dir() else []
    if not names:
        raise ValueError(f'no clips found under {root}/<class>/*.npy')
    if len(names) < 2:
        raise ValueError(f'{root}: one class ({names[0]}); training needs clips of at least '
                         f'two classes, one folder each')
    return list(known) if sorted(known) == names else names


def check_clip_file(path: Path, num_frames: int) -> tuple:
    """Return the (T, H, W, 3) shape of a clip file, or raise ValueError naming it and why.

    Read from the .npy header alone, before any pixel is: a uint8 RGB array (so every value is
    finite and in range; the normalisation expects 0-255), at least `num_frames` frames of
    1..MAX_SIDE pixels a side, whose size the file really holds and at most MAX_CLIP_BYTES. No
    pickles: an object array is refused by its dtype and never loaded.
    """
    fmt = np.lib.format
    try:
        with open(path, 'rb') as handle:
            version = fmt.read_magic(handle)
            read = fmt.read_array_header_1_0 if version == (1, 0) else \
                fmt.read_array_header_2_0
            shape, fortran, dtype = read(handle)
            offset = handle.tell()
    except OSError as exc:
        raise ValueError(f'{path}: cannot read ({exc.strerror or exc})') from None
    except Exception as exc:  # noqa: BLE001 - numpy raises several types for a bad header
        raise ValueError(f'{path}: not a .npy array ({str(exc).splitlines()[0][:120]})') \
            from None
    if dtype != np.uint8:
        raise ValueError(f'{path}: clips must be uint8 RGB (0-255), got dtype {dtype}')
    if len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f'{path}: expected a (T, H, W, 3) array, got shape {shape}')
    frames, height, width, _ = shape
    if frames < num_frames:
        raise ValueError(f'{path}: {frames} frames, the model needs at least {num_frames}')
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise ValueError(f'{path}: frames of {height}x{width} pixels; each side must be 1 to '
                         f'{MAX_SIDE}')
    size = math.prod(shape)
    if size > MAX_CLIP_BYTES:
        raise ValueError(f'{path}: declares {size} bytes of pixels, more than the '
                         f'{MAX_CLIP_BYTES} a clip may hold (split it)')
    held = path.stat().st_size - offset
    if held != size:
        raise ValueError(f'{path}: the header declares {size} bytes of pixels, the file holds '
                         f'{held}')
    return tuple(shape)


class FolderClips:
    """Labelled clips from DIR/<class name>/*.npy, each (T, H, W, 3) uint8.

    Every clip is checked (`check_clip_file`) when the folder is opened, before training
    starts, so a bad clip stops the run at once instead of whenever it is first drawn.
    """

    def __init__(self, root: Path, classes: Sequence[str], size: int, num_frames: int):
        self.items = []
        for index, name in enumerate(classes):
            for path in sorted((root / name).glob('*.npy')):
                check_clip_file(path, num_frames)
                self.items.append((path, index))
        if not self.items:
            raise ValueError(f'no clips found under {root}/<class>/*.npy for classes {classes}')
        self.size, self.num_frames = size, num_frames

    def _load(self, path: Path) -> np.ndarray:
        check_clip_file(path, self.num_frames)          # it may have changed since
        return np.load(path, allow_pickle=False, mmap_mode='r')

    def _window(self, clip: np.ndarray, start: int) -> np.ndarray:
        frames = clip[start:start + self.num_frames]
        return np.stack([resize_and_crop(frame, self.size) for frame in frames])

    def batch(self, rng: np.random.Generator, count: int):
        """Draw `count` clips and a random window of each: (clips, labels)."""
        picks = rng.integers(len(self.items), size=count)
        clips, labels = [], []
        for i in picks:
            path, label = self.items[i]
            clip = self._load(path)
            start = rng.integers(clip.shape[0] - self.num_frames + 1)
            clips.append(self._window(clip, start))
            labels.append(label)
        return np.stack(clips), np.array(labels)

    def first_windows(self, count: int):
        """Return the first window of up to `count` clips, spread over the folder."""
        items = self.items[::max(1, len(self.items) // count)][:count]
        clips = [self._window(self._load(path), 0) for path, _ in items]
        return np.stack(clips), np.array([label for _, label in items])
