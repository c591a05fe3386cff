"""Ground truth: a CSV of `stamp,label`, a String topic of the bag, or a CSV of segments.

One reader for every use.

Evaluation, the fleet (which reads a CSV once per run and hands the parsed `Truth` to its units)
and training take truth from here. A truth file is input from anywhere, so reading one is
bounded and every row is checked before anything is scored:

* the file: at most MAX_TRUTH_BYTES, read line by line, each line at most MAX_LINE_BYTES (a
  longer one is refused before it is parsed), UTF-8;
* a row: `stamp,label` (one header row `stamp,...` is skipped, blank lines too); the stamp
  integer nanoseconds or seconds, finite, from 0 to MAX_STAMP_NS (year 2262); the label
  non-empty, at most MAX_LABEL_CHARS, one line; at most MAX_LABELS distinct labels;
* a quoted field must close on its own line (a label never spans lines).

Any problem is a TruthError naming the file and the row. A later row for the same stamp wins.

Segments (`start,end,label`, header stamps in seconds: the form a person writes while watching
a recording; `read_segments`) are read by the same line reader and label checks, every row
checked too, and overlapping segments of different labels are refused naming both rows.
Training from bags (`finetune`) and evaluation take them.
The table is two arrays (stamps and label codes), not a dict of Python objects: a CSV of 10
million rows takes about 120 MB, not gigabytes.
"""

from __future__ import annotations

import bisect
import csv
import json
import math
from array import array
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from ..messages import STRING, dict_ns
from ..segments import Segment
from .read import iter_messages

MAX_TRUTH_BYTES = 1 << 30
MAX_LINE_BYTES = 4096
MAX_LABEL_CHARS = 256
MAX_LABELS = 10_000
MAX_STAMP_NS = (1 << 63) - 1


class TruthError(ValueError):
    """A truth file or topic that cannot be used: one line naming it and the row."""


@dataclass(frozen=True)
class Truth:
    """Labels by frame header stamp: sorted unique int64 stamps and int32 codes into `names`."""

    stamps: np.ndarray
    codes: np.ndarray
    names: tuple
    source: str = ''

    @classmethod
    def from_arrays(cls, stamps: Iterable[int], codes: Iterable[int], names: Iterable[str],
                    source: str) -> 'Truth':
        """Return the table of rows in any order; a later row for the same stamp wins."""
        stamps = np.asarray(stamps, dtype=np.int64)
        codes = np.asarray(codes, dtype=np.int32)
        order = np.argsort(stamps, kind='stable')
        stamps, codes = stamps[order], codes[order]
        last = np.ones(len(stamps), dtype=bool)      # the last row of each stamp
        last[:-1] = stamps[1:] != stamps[:-1]
        return cls(stamps[last], codes[last], tuple(names), source)

    def __len__(self) -> int:
        return len(self.stamps)

    def get(self, stamp: int) -> Optional[str]:
        """Return the label at exactly `stamp` (ns), or None."""
        i = int(np.searchsorted(self.stamps, stamp))
        if i < len(self.stamps) and self.stamps[i] == stamp:
            return self.names[self.codes[i]]
        return None

    def runs(self) -> list:
        """Segments of consecutive equal labels, in stamp order (`segments.runs`)."""
        if not len(self.stamps):
            return []
        starts = np.flatnonzero(np.r_[True, self.codes[1:] != self.codes[:-1]])
        ends = np.r_[starts[1:] - 1, len(self.codes) - 1]
        return [Segment(self.names[self.codes[s]], int(self.stamps[s]), int(self.stamps[e]))
                for s, e in zip(starts, ends)]


class _Labels:
    """Label names to codes, checked and bounded."""

    def __init__(self):
        self.codes, self.names = {}, []

    def code(self, label: object) -> int:
        """Return the code of a label, or raise ValueError saying what is wrong with it."""
        if not isinstance(label, str):
            raise ValueError(f'the label must be text, got {type(label).__name__}')
        label = label.strip()
        if label not in self.codes:
            if not label:
                raise ValueError('the label is empty')
            if len(label) > MAX_LABEL_CHARS or not label.isprintable():
                raise ValueError(f'the label must be one printable line of at most '
                                 f'{MAX_LABEL_CHARS} characters, got {label[:40]!r}...')
            if len(self.names) >= MAX_LABELS:
                raise ValueError(f'more than {MAX_LABELS} distinct labels')
            self.codes[label] = len(self.names)
            self.names.append(label)
        return self.codes[label]


def _stamp_ns(text: str) -> int:
    """Return a CSV stamp (integer ns, or seconds) in ns, or raise ValueError saying why."""
    text = text.strip()
    if text.isdigit():
        stamp = int(text)
    else:
        try:
            seconds = float(text)
        except ValueError:
            raise ValueError(f'the stamp {text[:40]!r} is not a number (integer nanoseconds '
                             f'or seconds)') from None
        if not math.isfinite(seconds) or not 0 <= seconds * 1e9 <= MAX_STAMP_NS:
            raise ValueError(f'the stamp {text[:40]!r} is out of range (0 to '
                             f'{MAX_STAMP_NS / 1e9:.0f} s)') from None
        stamp = int(round(seconds * 1e9))
    if stamp > MAX_STAMP_NS:
        raise ValueError(f'the stamp {text[:40]}... is out of range (0 to {MAX_STAMP_NS} ns)')
    return stamp


def is_truth_file(source: Optional[str]) -> bool:
    """Tell whether a `--truth` names a CSV file (else it is a topic of the bag)."""
    return bool(source) and Path(source).suffix == '.csv' and Path(source).is_file()


def _lines(path: Path, handle) -> Iterable[str]:
    """Yield the file's lines decoded, each at most MAX_LINE_BYTES (TruthError otherwise)."""
    row = 0
    while True:
        raw = handle.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        row += 1
        if len(raw) > MAX_LINE_BYTES:
            raise TruthError(f'{path}: row {row}: longer than {MAX_LINE_BYTES} bytes')
        try:
            yield raw.decode('utf-8')
        except UnicodeDecodeError as exc:
            raise TruthError(f'{path}: row {row}: not UTF-8 text (byte {exc.start + 1})') \
                from None


def read_truth_csv(path) -> Truth:
    """Read a truth CSV (module docstring for the rules); raise TruthError naming the row."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_TRUTH_BYTES:
            raise TruthError(f'{path}: {size} bytes, more than the {MAX_TRUTH_BYTES} a truth '
                             f'file may have')
        stamps, codes, labels = array('q'), array('i'), _Labels()
        with path.open('rb') as handle:
            reader = csv.reader(_lines(path, handle), strict=True)
            row = 0
            try:
                for row_fields in reader:
                    row = reader.line_num
                    if not row_fields or (row == 1 and row_fields[0].strip().lower() == 'stamp'):
                        continue
                    if len(row_fields) != 2:
                        raise ValueError(f'expected 2 fields (stamp,label), got '
                                         f'{len(row_fields)}')
                    stamps.append(_stamp_ns(row_fields[0]))
                    codes.append(labels.code(row_fields[1]))
            except ValueError as exc:
                if isinstance(exc, TruthError):
                    raise
                raise TruthError(f'{path}: row {row}: {exc}') from None
            except csv.Error as exc:
                raise TruthError(f'{path}: row {reader.line_num}: {exc} (a quoted field must '
                                 f'close on its own line)') from None
    except OSError as exc:
        raise TruthError(f'{path}: cannot read the truth ({exc.strerror or exc})') from None
    if not stamps:
        raise TruthError(f'{path}: no truth rows (stamp,label)')
    return Truth.from_arrays(np.frombuffer(stamps, dtype=np.int64),
                             np.frombuffer(codes, dtype=np.int32), labels.names, str(path))


def read_truth(source: str, bag: Path, frame_times: dict) -> Truth:
    """Return the truth of `source`: a CSV file, or a String topic of `bag`.

    On a topic, each message is the synthetic camera's JSON {"stamp", "label"}, or a plain
    label for the frame with the nearest bag time (`frame_times` maps each frame's bag time to
    its header stamp).
    """
    if is_truth_file(source):
        return read_truth_csv(source)
    stamps, codes, labels = [], [], _Labels()
    times = np.array(sorted(frame_times))
    where = f'{bag}: truth topic {source}'
    for index, (timestamp, msg) in enumerate(iter_messages(bag, source, (STRING,))):
        try:
            data = json.loads(msg.data)
            stamp, label = dict_ns(data['stamp']), data['label']
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
            if not len(times):
                continue
            nearest = times[np.abs(times - timestamp).argmin()]
            stamp, label = frame_times[int(nearest)], msg.data
        if not isinstance(stamp, int) or not 0 <= stamp <= MAX_STAMP_NS:
            raise TruthError(f'{where}: message {index}: the stamp is out of range')
        try:
            codes.append(labels.code(label))
        except ValueError as exc:
            raise TruthError(f'{where}: message {index}: {exc}') from None
        stamps.append(stamp)
    return Truth.from_arrays(stamps, codes, labels.names, f'{bag} {source}')


# -- segments: start,end,label ---------------------------------------------------------------

@dataclass(frozen=True)
class TruthSegment:
    """A stretch of header-stamp time [start_ns, end_ns) with one label, from row `row`."""

    start_ns: int
    end_ns: int
    label: str
    row: int


def _seconds_ns(text: str, name: str) -> int:
    """Return header-stamp seconds `text` as integer ns, exactly; ValueError saying why not."""
    text = text.strip()
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f'{name} {text[:40]!r} is not a number of seconds') from None
    if not value.is_finite() or not 0 <= value * 10 ** 9 <= MAX_STAMP_NS:
        raise ValueError(f'{name} {text[:40]!r} is not a header stamp in seconds (0 to '
                         f'{MAX_STAMP_NS // 10 ** 9})')
    return int(value * 10 ** 9)


def _csv_rows(path: Path):
    """Yield (row, fields) of a truth CSV, bounded as `read_truth_csv` reads one."""
    size = path.stat().st_size
    if size > MAX_TRUTH_BYTES:
        raise TruthError(f'{path}: {size} bytes, more than the {MAX_TRUTH_BYTES} a truth file '
                         f'may have')
    with path.open('rb') as handle:
        reader = csv.reader(_lines(path, handle), strict=True)
        try:
            for fields in reader:
                yield reader.line_num, fields
        except csv.Error as exc:
            raise TruthError(f'{path}: row {reader.line_num}: {exc} (a quoted field must close '
                             f'on its own line)') from None


def read_segments(path) -> list:
    """Return the TruthSegments of a CSV of `start,end,label` rows, sorted by start.

    Stamps are header stamps in seconds (decimals, read exactly); a first line
    `start,end,label` is a header, blank lines are skipped. Every row is checked: three fields,
    stamps in range with start before end, a label as `read_truth_csv` checks one. Segments of
    one label may overlap; segments of different labels may not (TruthError naming both rows).
    """
    path = Path(path)
    segments, labels = [], _Labels()
    try:
        for row, fields in _csv_rows(path):
            if not fields or (row == 1 and [f.strip().lower() for f in fields] ==
                              ['start', 'end', 'label']):
                continue
            try:
                if len(fields) != 3:
                    raise ValueError(f'expected 3 fields (start,end,label), got {len(fields)}')
                start = _seconds_ns(fields[0], 'start')
                end = _seconds_ns(fields[1], 'end')
                if end <= start:
                    raise ValueError(f'end {fields[1].strip()[:40]} is not after start '
                                     f'{fields[0].strip()[:40]}')
                label = labels.names[labels.code(fields[2])]
            except TruthError:
                raise
            except ValueError as exc:
                raise TruthError(f'{path}: row {row}: {exc}') from None
            segments.append(TruthSegment(start, end, label, row))
    except OSError as exc:
        raise TruthError(f'{path}: cannot read the truth ({exc.strerror or exc})') from None
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


def is_segments_file(source: Optional[str]) -> bool:
    """Tell whether a `--truth` is a CSV of segments: three fields in its first row.

    Checked before `is_truth_file`, which takes any CSV file for `stamp,label` rows.
    """
    if not is_truth_file(source):
        return False
    try:
        for _, fields in _csv_rows(Path(source)):
            if fields:
                return len(fields) == 3
    except (OSError, TruthError):
        return False      # left to the reader, which says what is wrong
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


def segment_truth(path, stamps: Iterable[int]) -> Truth:
    """Return the per-frame Truth of the frames at `stamps` that a segments file labels."""
    labels = SegmentLabels(read_segments(path))
    names = {name: i for i, name in enumerate(labels.labels)}
    rows = [(stamp, names[label]) for stamp in stamps if (label := labels(stamp)) is not None]
    return Truth.from_arrays([r[0] for r in rows], [r[1] for r in rows], labels.labels,
                             str(path))
