"""Labelled windows of recordings for training: cut as the node cuts them, cached on disk.

`cut_windows` runs one bag's image topic through the node's intake (`intake.CameraIntake`:
decode, check, the clip-rate rule) and keeps each sampled frame's centre crop, the uint8 array
the node's preprocessing normalises (`frames.Preprocessor.crop`), in a file beside the training
output; a window is the rows of its T frames. So a window costs T integers in memory whatever
the recording's length, and normalising its rows gives exactly the tensor the node feeds the
model. The cache is keyed by the bag's hash and everything the cutting depends on (topic, crop
size, clip length, sampling, stride, gap), written under a partial name and renamed when done:
a run stopped part-way cuts only the bags it had not finished.

`label_windows` labels each window by the truth at its frames' header stamps: the label they all
share, `BOUNDARY` when they differ (a window across the edge of a segment) and `UNLABELLED` when
none has one; `split` sets the last share of each bag's time aside for validation.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ..clips import Sampling
from ..progress import Progress
from .base import IMAGE_TYPES, BagError
from .intake import SKIPPED, CameraIntake
from .mcap import check_mcap_chunks
from .read import list_topics, read_topic
from .truth import SegmentLabels, is_segments_file, read_segments, read_truth

# Bumped when what the cache holds changes: older caches are cut again.
CACHE_FORMAT = 1
# How many skipped messages a bag's summary names (all are counted).
MAX_NAMED_SKIPS = 20
BOUNDARY, UNLABELLED = '<boundary>', '<unlabelled>'


class DataError(ValueError):
    """Training data that cannot be used as asked (a missing topic, a label without windows)."""


@dataclass(frozen=True)
class Cutting:
    """How windows are cut: the crop size, the clip length, the node's sampling parameters."""

    size: int
    num_frames: int
    sampling: Sampling
    stride: int = 1
    max_gap_s: float = 0.5

    def key(self, topic: str, bag_digest: str) -> str:
        fields = {'format': CACHE_FORMAT, 'bag': bag_digest, 'topic': topic, 'size': self.size,
                  'num_frames': self.num_frames, 'sample_every': self.sampling.sample_every,
                  'target_fps': self.sampling.target_fps, 'stride': self.stride,
                  'max_gap_s': self.max_gap_s}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


@dataclass
class BagWindows:
    """One bag's cut windows: frame crops on disk, window rows and stamps in memory."""

    bag: Path
    digest: str
    directory: Path
    frames: np.ndarray        # (rows, S, S, 3) uint8, a read-only memmap
    stamps: np.ndarray        # (rows,) int64 header stamps of the sampled frames
    windows: np.ndarray       # (N, T) int32 rows of each window's frames
    summary: dict             # frames, refused, skipped messages, broke off
    truth: str = ''           # the truth of this bag (a file or a String topic)

    def clips(self, indices: Sequence[int]) -> np.ndarray:
        """Return the windows at `indices` as uint8 clips, (len, T, S, S, 3)."""
        return self.frames[self.windows[np.asarray(indices)]]

    def frame_times(self) -> dict:
        """{bag time ns: header stamp ns} of every decoded frame (for plain String truth)."""
        times = np.load(self.directory / 'frame_times.npy')
        return dict(zip(times[0].tolist(), times[1].tolist()))


def _load(bag: Path, digest: str, directory: Path, size: int) -> BagWindows:
    summary = json.loads((directory / 'summary.json').read_text())
    stamps = np.load(directory / 'stamps.npy')
    shape = (len(stamps), size, size, 3)
    frames = np.memmap(directory / 'frames.u8', np.uint8, 'r', shape=shape) if len(stamps) \
        else np.zeros(shape, np.uint8)
    return BagWindows(Path(bag), digest, directory, frames, stamps,
                      np.load(directory / 'windows.npy'), summary)


def check_image_topic(bag: Path, topic: str) -> int:
    """Return the message count of `topic`; DataError when the bag has no such image topic.

    BagError when the bag cannot be read at all (a corrupt bag: the caller skips it).
    """
    check_mcap_chunks(bag)
    topics = list_topics(bag)
    if topic not in topics:
        raise DataError(f'{bag}: no topic {topic!r} (topics: {sorted(topics)})')
    if topics[topic][0] not in IMAGE_TYPES:
        raise DataError(f'{bag}: topic {topic!r} holds {topics[topic][0]}, expected one of '
                        f'{list(IMAGE_TYPES)}')
    return topics[topic][1]


def cut_windows(bag: Path, topic: str, cutting: Cutting, cache: Path, digest: str,
                progress: bool = True) -> BagWindows:
    """Return the windows of `bag`'s `topic`, cut now or read from the cache under `cache`.

    See the module docstring. DataError when the topic is missing, BagError when the bag
    cannot be opened; a bag that breaks off part-way keeps the windows before the break and
    says so in its summary (`broke_off`), as evaluation does.
    """
    directory = Path(cache) / cutting.key(topic, digest)
    if (directory / 'summary.json').is_file():
        return _load(bag, digest, directory, cutting.size)
    total = check_image_topic(bag, topic)
    partial = directory.with_name(directory.name + '.partial')
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    from ..frames import resize_and_crop
    stamps, bag_times, frame_stamps, windows = array('q'), array('q'), array('q'), []
    summary = {'bag': str(bag), 'topic': topic, 'frames': 0, 'windows': 0, 'refused': {},
               'skipped_messages': [], 'broke_off': None}
    with open(partial / 'frames.u8', 'wb') as out:
        def store(rgb):
            """Write a sampled frame's crop; return its row (its stamp is appended next)."""
            out.write(np.ascontiguousarray(resize_and_crop(rgb, cutting.size)).tobytes())
            return len(stamps)

        intake = CameraIntake(topic, cutting.sampling.buffer(
            cutting.num_frames, cutting.stride, cutting.max_gap_s), store)
        bar = Progress(total, 'frames', progress)
        try:
            for item in read_topic(bag, topic, IMAGE_TYPES):
                taken = intake.take(item)
                if taken.stamp is not None:
                    bag_times.append(item.bag_time_ns)
                    frame_stamps.append(taken.stamp)
                if taken.push is not None and taken.push.sampled:
                    stamps.append(taken.stamp)
                if taken.refused in SKIPPED and \
                        len(summary['skipped_messages']) < MAX_NAMED_SKIPS:
                    summary['skipped_messages'].append(
                        {'index': item.index, 'bag_time_ns': item.bag_time_ns,
                         'reason': taken.message})
                if taken.push is not None and taken.push.window is not None:
                    windows.append(taken.push.window.frames)
                if intake.frames % 50 == 0:
                    rate = len(windows) / max(bar.elapsed(), 1e-9)
                    bar.update(intake.frames, f'{len(windows)} windows, {rate:.0f} windows/s')
        except BagError as exc:
            summary['broke_off'] = str(exc)
        finally:
            bar.update(intake.frames, f'{len(windows)} windows')
            bar.close()
    summary.update(frames=intake.frames, windows=len(windows), refused=dict(intake.refused))
    np.save(partial / 'stamps.npy', np.frombuffer(stamps, np.int64) if stamps
            else np.zeros(0, np.int64))
    np.save(partial / 'windows.npy', np.array(windows, np.int32).reshape(
        len(windows), cutting.num_frames))
    np.save(partial / 'frame_times.npy', np.stack([np.array(bag_times, np.int64),
                                                   np.array(frame_stamps, np.int64)]))
    (partial / 'summary.json').write_text(json.dumps(summary, indent=1))
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)
    return _load(bag, digest, directory, cutting.size)


def truth_labeller(source: str, windows: BagWindows) -> Callable[[int], Optional[str]]:
    """Return header stamp ns -> label (None: no label) for `windows`' bag from `source`.

    A CSV of segments (`truth.read_segments`), a CSV of `stamp,label` or a String topic of the
    bag (`truth.read_truth`, per frame).
    """
    if is_segments_file(source):
        return SegmentLabels(read_segments(Path(source)))
    per_frame = read_truth(source, windows.bag, windows.frame_times())
    return per_frame.get


def found_labels(cut: Sequence[BagWindows]) -> list:
    """Return the labels of `cut`'s truth: all a segments file names, else all at the windows."""
    found = set()
    for windows in cut:
        if is_segments_file(windows.truth):
            found.update(SegmentLabels(read_segments(Path(windows.truth))).labels)
        else:
            found.update(label_windows(windows, truth_labeller(windows.truth, windows)))
    return sorted(found - {BOUNDARY, UNLABELLED})


def label_windows(windows: BagWindows, labeller: Callable[[int], Optional[str]]) -> list:
    """Return each window's label: shared by all its frames, else BOUNDARY or UNLABELLED."""
    labels = [labeller(int(stamp)) for stamp in windows.stamps]
    out = []
    for rows in windows.windows:
        found = {labels[row] for row in rows}
        if len(found) == 1:
            out.append(found.pop() or UNLABELLED)
        else:
            out.append(BOUNDARY)
    return out


def split(windows: BagWindows, share: float) -> np.ndarray:
    """Return each window's part: 0 training, 1 validation, -1 across the cut.

    Validation is the bag's last `share` of time; a window across the cut is left out, so that
    no frame is in both.
    """
    parts = np.zeros(len(windows.windows), np.int8)
    if not len(windows.stamps) or share <= 0:
        return parts
    first, last = int(windows.stamps.min()), int(windows.stamps.max())
    cut = last - share * (last - first)
    starts = windows.stamps[windows.windows[:, 0]]
    ends = windows.stamps[windows.windows[:, -1]]
    parts[starts >= cut] = 1
    parts[(starts < cut) & (ends >= cut)] = -1
    return parts


def say(text: str):
    """One line on stderr (the progress line's stream)."""
    sys.stderr.write(text + '\n')
