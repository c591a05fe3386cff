"""Ground truth: a CSV of `stamp,label`, a String topic of the bag, or a CSV of segments.

Segments (`start,end,label`, header stamps in seconds) are the form a person writes while
watching a recording; training from bags (`finetune`) takes them, and the per-frame forms too.
"""

from __future__ import annotations

import bisect
import csv
import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..messages import STRING, dict_ns
from .read import iter_messages


def read_truth(source: str, bag: Path, frame_times: dict) -> dict:
    """{frame header stamp ns: label} from a CSV file or a String topic of `bag`.

    `frame_times` maps each frame's bag time to its header stamp, for plain-label topics.
    """
    path = Path(source)
    if path.suffix == '.csv' and path.is_file():
        truth = {}
        with path.open(newline='') as handle:
            for row in csv.reader(handle):
                if not row or row[0].strip().lower() == 'stamp':
                    continue
                text = row[0].strip()
                stamp = int(text) if text.isdigit() else int(round(float(text) * 1e9))
                truth[stamp] = row[1].strip()
        return truth
    truth = {}
    times = np.array(sorted(frame_times))
    for timestamp, msg in iter_messages(bag, source, (STRING,)):
        try:
            data = json.loads(msg.data)
            truth[dict_ns(data['stamp'])] = data['label']
        except (ValueError, KeyError, TypeError):
            if len(times):
                nearest = times[np.abs(times - timestamp).argmin()]
                truth[frame_times[int(nearest)]] = msg.data
    return truth


# -- segments: start,end,label ---------------------------------------------------------------

# A segments file is written by a person: bounded all the same (any file may be handed in).
MAX_TRUTH_BYTES = 16 << 20
MAX_LINE_CHARS = 4096
MAX_LABEL_CHARS = 200
# Header stamps are non-negative and fit a signed 64-bit count of nanoseconds.
MAX_STAMP_S = (2 ** 63 - 1) // 10 ** 9


class TruthError(ValueError):
    """A truth file that cannot be used; the message names the file and the row."""


@dataclass(frozen=True)
class TruthSegment:
    """A stretch of header-stamp time [start_ns, end_ns) with one label, from row `row`."""

    start_ns: int
    end_ns: int
    label: str
    row: int


def _seconds_ns(text: str, path: Path, row: int, name: str) -> int:
    """Return header-stamp seconds `text` as integer nanoseconds, exactly; TruthError if absurd."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise TruthError(f'{path}: row {row}: {name} {text.strip()[:40]!r} is not a number of '
                         f'seconds') from None
    if not value.is_finite() or not 0 <= value <= MAX_STAMP_S:
        raise TruthError(f'{path}: row {row}: {name} {text.strip()[:40]!r} is not a header '
                         f'stamp in seconds (0 to {MAX_STAMP_S})')
    return int(value * 10 ** 9)


def _bounded_rows(path: Path):
    """(row number from 1, fields) of every non-blank line of a small CSV file; TruthError else."""
    path = Path(path)
    if not path.is_file():
        raise TruthError(f'{path}: no such truth file')
    size = path.stat().st_size
    if size > MAX_TRUTH_BYTES:
        raise TruthError(f'{path}: {size} bytes, more than a truth file may hold '
                         f'({MAX_TRUTH_BYTES})')
    with path.open(newline='', encoding='utf-8', errors='replace') as handle:
        for row, line in enumerate(handle, 1):
            if len(line) > MAX_LINE_CHARS:
                raise TruthError(f'{path}: row {row}: longer than {MAX_LINE_CHARS} characters')
            if line.strip():
                yield row, next(csv.reader([line]))


def read_segments(path: Path) -> list:
    """Return the TruthSegments of a CSV of `start,end,label` rows, sorted by start.

    Stamps are header stamps in seconds (decimals, read exactly); a first line
    `start,end,label` is a header. Every row is checked: three fields, stamps that are numbers
    of seconds in range with start before end, a label. Segments of one label may overlap;
    segments of different labels may not (TruthError naming both rows).
    """
    path = Path(path)
    segments = []
    for row, fields in _bounded_rows(path):
        if not segments and row == 1 and [f.strip().lower() for f in fields] == \
                ['start', 'end', 'label']:
            continue
        if len(fields) != 3:
            raise TruthError(f'{path}: row {row}: expected start,end,label, got {len(fields)} '
                             f'field(s)')
        start = _seconds_ns(fields[0], path, row, 'start')
        end = _seconds_ns(fields[1], path, row, 'end')
        label = fields[2].strip()
        if end <= start:
            raise TruthError(f'{path}: row {row}: end {fields[1].strip()} is not after start '
                             f'{fields[0].strip()}')
        if not label or len(label) > MAX_LABEL_CHARS:
            raise TruthError(f'{path}: row {row}: a label of 1 to {MAX_LABEL_CHARS} characters '
                             f'is needed, got {label[:40]!r}')
        segments.append(TruthSegment(start, end, label, row))
    if not segments:
        raise TruthError(f'{path}: no segments (rows of start,end,label)')
    segments.sort(key=lambda s: (s.start_ns, s.end_ns))
    reach = {}       # label -> the segment of that label reaching furthest so far
    for segment in segments:
        for label, other in reach.items():
            if label != segment.label and other.end_ns > segment.start_ns:
                first, second = sorted((other.row, segment.row))
                raise TruthError(f'{path}: rows {first} and {second} overlap with different '
                                 f'labels ({other.label!r} and {segment.label!r})')
        if segment.label not in reach or reach[segment.label].end_ns < segment.end_ns:
            reach[segment.label] = segment
    return segments


def is_segments_file(source: str) -> bool:
    """Tell whether a truth source is a CSV file of segments (three fields in its first row)."""
    path = Path(source)
    if path.suffix != '.csv' or not path.is_file():
        return False
    for _, fields in _bounded_rows(path):
        return len(fields) == 3
    return False


class SegmentLabels:
    """The label at a header stamp: of the segment that contains it, or None."""

    def __init__(self, segments: Sequence[TruthSegment]):
        merged = []       # disjoint [start, end) runs, same-label overlaps joined
        for segment in sorted(segments, key=lambda s: s.start_ns):
            if merged and merged[-1][2] == segment.label and segment.start_ns <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], segment.end_ns)
            else:
                merged.append([segment.start_ns, segment.end_ns, segment.label])
        self.starts = [start for start, _, _ in merged]
        self.runs = merged
        self.labels = sorted({s.label for s in segments})

    def __call__(self, stamp: int) -> Optional[str]:
        i = bisect.bisect_right(self.starts, stamp) - 1
        if i >= 0 and stamp < self.runs[i][1]:
            return self.runs[i][2]
        return None


def segment_truth(path: Path, stamps) -> dict:
    """{header stamp ns: label} of the frames at `stamps` that a segments file labels."""
    labels = SegmentLabels(read_segments(path))
    return {stamp: label for stamp in stamps if (label := labels(stamp)) is not None}
