"""From window scores to stable labels and action segments, and the metrics that judge them.

No ROS here; all timing uses header stamps (integer ns), never a clock, so a bag replay, a
`use_sim_time` run and a live run give the same segments.

`ActionDecoder.update(window, probabilities, frame_id)`, once per window in stamp order:

1. Smoothing of the class scores. `none`: the window's softmax scores. `ema`: an exponential
   moving average with time constant `ema_tau_s` of stamp time (a window dt after the previous
   one weighs 1 - exp(-dt / tau)). `vote`: the fraction of the last `vote_windows` windows whose
   top-1 is the class (a majority vote when compared with 0.5).
2. Hysteresis per class. A class whose smoothed score reaches `enter_threshold` becomes a
   candidate; it becomes active (a `start` event) once it has stayed at or above
   `enter_threshold` for `min_duration_s` of stamp time. An active class ends (an `end` event)
   once its smoothed score has stayed below `exit_threshold` for `min_gap_s`; a return to
   `exit_threshold` before that keeps it, so a short dip does not split a segment.
3. A reset of the clip buffer (a stamp gap, stamps going backwards, a change of format or
   frame_id: `Window.epoch` changes), or a window whose stamp is not after the previous one,
   ends every active segment with that reason and clears the smoothing.

A segment starts at the first frame of the first window that supported it (its score reached
`enter_threshold`) and ends at the last frame of the last window whose score was at or above
`exit_threshold`. Events are plain dicts (schema in the README, "`~/events`") with stamps as
`{sec, nanosec}` (`messages.stamp_dict`), as everywhere else in the package.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .interface import BY_NAME
from .messages import NS_PER_S as NS, dict_ns, stamp_dict

UNKNOWN = 'unknown'
SMOOTHING = BY_NAME['smoothing'].choices


@dataclass(frozen=True)
class DecoderConfig:
    """The decoder's parameters; the defaults are the node's (interface.PARAMETERS)."""

    smoothing: str = BY_NAME['smoothing'].default
    ema_tau_s: float = BY_NAME['ema_tau_s'].default
    vote_windows: int = BY_NAME['vote_windows'].default
    enter_threshold: float = BY_NAME['enter_threshold'].default
    exit_threshold: float = BY_NAME['exit_threshold'].default
    min_duration_s: float = BY_NAME['min_duration_s'].default
    min_gap_s: float = BY_NAME['min_gap_s'].default

    def __post_init__(self):
        if self.smoothing not in SMOOTHING:
            raise ValueError(f'smoothing must be one of {list(SMOOTHING)}, got '
                             f'{self.smoothing!r}')
        if self.ema_tau_s <= 0:
            raise ValueError(f'ema_tau_s must be > 0, got {self.ema_tau_s}')
        if self.vote_windows < 1:
            raise ValueError(f'vote_windows must be >= 1, got {self.vote_windows}')
        if not 0.0 <= self.exit_threshold <= self.enter_threshold <= 1.0:
            raise ValueError(f'need 0 <= exit_threshold <= enter_threshold <= 1, got exit '
                             f'{self.exit_threshold} and enter {self.enter_threshold}')
        if self.min_duration_s < 0 or self.min_gap_s < 0:
            raise ValueError(f'min_duration_s and min_gap_s must be >= 0, got '
                             f'{self.min_duration_s} and {self.min_gap_s}')

    @classmethod
    def from_values(cls, values: dict) -> 'DecoderConfig':
        """Return the decoder's fields from a parameter dict (the node's, or a params file's)."""
        return cls(**{name: values[name] for name in cls.__dataclass_fields__})


@dataclass
class _Track:
    """One class's hysteresis state: a candidate, or an active segment."""

    id: Optional[int]               # set once active
    first_start: int                # start stamp of the first supporting window
    first_end: int                  # end stamp of that window (min_duration runs from here)
    last_support: int               # end stamp of the last window at or above exit
    below_since: Optional[int] = None   # end stamp of the first window below exit
    announced: Optional[int] = None
    supported: int = 0              # supporting windows, their score sum and peak
    score_sum: float = 0.0
    peak: float = 0.0

    def support(self, end: int, score: float):
        self.last_support, self.below_since = end, None
        self.supported += 1
        self.score_sum += score
        self.peak = max(self.peak, score)


class ActionDecoder:

    def __init__(self, labels: Sequence[str], config: DecoderConfig = DecoderConfig()):
        self.labels = list(labels)
        self.config = config
        self._next_id = 0
        self._frame_id = ''
        self._clear()

    def _clear(self):
        self._smoothing_used = None
        self._smoothed: Optional[np.ndarray] = None
        self._votes = deque()
        self._tracks: dict = {}
        self._last_end: Optional[int] = None
        self._epoch = None
        self.smoothed: Optional[np.ndarray] = None     # the latest smoothed scores

    # -- per window ---------------------------------------------------------------------------

    def update(self, window, probabilities: np.ndarray, frame_id: str) -> list:
        """Return the events this window causes (end events first, then start events)."""
        config = self.config        # read once: the executor thread may replace it
        events = []
        stale = self._last_end is not None and window.end <= self._last_end
        if self._epoch is not None and (window.epoch != self._epoch or stale):
            reason = 'backwards' if stale and window.epoch == self._epoch else \
                (window.reset or 'reset')
            events += self.close_all(reason)     # stamped as the old stream's last window
        smoothing = (config.smoothing, config.ema_tau_s, config.vote_windows)
        if smoothing != self._smoothing_used:       # changed at run time: start it afresh
            self._smoothing_used = smoothing
            self._smoothed, self._votes = None, deque()
        self._epoch, self._frame_id = window.epoch, frame_id
        smoothed = self._smooth(config, window.end, np.asarray(probabilities, dtype=np.float64))
        self._last_end = window.end
        self.smoothed = smoothed
        header = {'stamp': stamp_dict(window.end), 'frame_id': frame_id}
        started = []        # start events go after the end events of the same window
        for class_id, score in enumerate(smoothed):
            track = self._tracks.get(class_id)
            if track is None:
                if score >= config.enter_threshold:
                    track = _Track(None, window.start, window.end, window.end)
                    self._tracks[class_id] = track
                else:
                    continue
            if track.id is None:                         # a candidate
                if score < config.enter_threshold:
                    del self._tracks[class_id]
                    continue
                track.support(window.end, float(score))
                if self._announce_due(track, window.end, float(score), config):
                    track.id, track.announced = self._next_id, window.end
                    self._next_id += 1
                    started.append(self._start_event(class_id, track, header, score))
                continue
            if score >= config.exit_threshold:           # active, supported
                track.support(window.end, float(score))
            else:
                if track.below_since is None:
                    track.below_since = window.end
                if window.end - track.below_since >= config.min_gap_s * NS:
                    events.append(self._end_event(class_id, header, 'score'))
        return events + started

    def _announce_due(self, track: _Track, end: int, score: float, config: DecoderConfig) -> bool:
        """Return whether a candidate supported up to `end` (ns) is announced now."""
        return end - track.first_end >= config.min_duration_s * NS

    def _smooth(self, config: DecoderConfig, end: int, probs: np.ndarray) -> np.ndarray:
        if config.smoothing == 'ema':
            if self._smoothed is None:
                self._smoothed = probs
            else:
                dt = (end - self._last_end) / NS
                weight = 1.0 - math.exp(-dt / config.ema_tau_s)
                self._smoothed = self._smoothed + weight * (probs - self._smoothed)
            return self._smoothed
        if config.smoothing == 'vote':
            self._votes.append(int(np.argmax(probs)))
            while len(self._votes) > config.vote_windows:
                self._votes.popleft()
            return np.bincount(self._votes, minlength=len(probs)) / len(self._votes)
        return probs

    # -- events ---------------------------------------------------------------------------------

    def _start_event(self, class_id: int, track: _Track, header: dict, score: float) -> dict:
        return {'event': 'start', 'id': track.id, 'class_id': str(class_id),
                'class_name': self.labels[class_id], 'header': header,
                'start': stamp_dict(track.first_start), 'score': round(float(score), 6)}

    def _end_event(self, class_id: int, header: dict, reason: str) -> dict:
        track = self._tracks.pop(class_id)
        return {'event': 'end', 'id': track.id, 'class_id': str(class_id),
                'class_name': self.labels[class_id], 'header': header,
                'start': stamp_dict(track.first_start), 'end': stamp_dict(track.last_support),
                'duration_s': round((track.last_support - track.first_start) / NS, 6),
                'announced': stamp_dict(track.announced),
                'mean_score': round(track.score_sum / max(track.supported, 1), 6),
                'peak_score': round(track.peak, 6), 'reason': reason}

    def close_all(self, reason: str, frame_id: Optional[str] = None) -> list:
        """End every active segment (a reset, the end of a bag); forget the candidates.

        The events carry the last window's stamp and, unless given, its frame_id.
        """
        header = {'stamp': stamp_dict(self._last_end or 0),
                  'frame_id': self._frame_id if frame_id is None else frame_id}
        events = [self._end_event(c, header, reason)
                  for c, t in sorted(self._tracks.items()) if t.id is not None]
        self._clear()
        return events

    # -- state ----------------------------------------------------------------------------------

    def active(self) -> list:
        """Return the active segments, best current score first."""
        smoothed = self.smoothed
        rows = [{'id': t.id, 'class_id': str(c), 'class_name': self.labels[c],
                 'start': stamp_dict(t.first_start),
                 'score': round(float(smoothed[c]), 6) if smoothed is not None else 0.0}
                for c, t in self._tracks.items() if t.id is not None]
        return sorted(rows, key=lambda r: -r['score'])

    def label(self, threshold: float = 0.0) -> str:
        """Return the stable label, `stable_label` of the active segments."""
        return stable_label(self.active(), threshold)


def stable_label(active: Sequence[dict], threshold: float = 0.0) -> str:
    """Return the active class with the best current score, or 'unknown'.

    The result is 'unknown' when none is active or its score is below `threshold`.
    """
    if not active or active[0]['score'] < threshold:
        return UNKNOWN
    return active[0]['class_name']


# -- metrics (action segmentation, as in Lea et al. 2017 and MS-TCN) -----------------------------

@dataclass(frozen=True)
class Segment:
    label: str
    start: int          # ns
    end: int            # ns
    announced: Optional[int] = None   # ns, the stamp of the event that announced it


def runs(stamped_labels: Sequence[tuple]) -> list:
    """Segments of consecutive equal labels from (stamp, label) pairs in stamp order."""
    out = []
    for stamp, label in stamped_labels:
        if out and out[-1].label == label:
            out[-1] = Segment(label, out[-1].start, stamp)
        else:
            out.append(Segment(label, stamp, stamp))
    return out


def from_events(events: Sequence[dict], open_until: Optional[int] = None) -> list:
    """Segments from `~/events` (or a segments file).

    Every end event, and, with `open_until` (ns), every start event not ended yet, as running until
    then.
    """
    ns = dict_ns
    ended = {e['id'] for e in events if e['event'] == 'end'}
    segments = [Segment(e['class_name'], ns(e['start']), ns(e['end']), ns(e['announced']))
                for e in events if e['event'] == 'end']
    if open_until is not None:
        segments += [Segment(e['class_name'], ns(e['start']), open_until,
                             ns(e['header']['stamp']))
                     for e in events if e['event'] == 'start' and e['id'] not in ended]
    return sorted(segments, key=lambda s: s.start)


def _iou(a: Segment, b: Segment) -> float:
    inter = min(a.end, b.end) - max(a.start, b.start)
    union = max(a.end, b.end) - min(a.start, b.start)
    return max(inter, 0) / union if union > 0 else float(a == b)


def _overlap(a: Segment, b: Segment) -> int:
    return max(0, min(a.end, b.end) - max(a.start, b.start))


def segmental_f1(predicted: Sequence[Segment], truth: Sequence[Segment], iou: float) -> tuple:
    """(F1, matches {true index: predicted index}) at an IoU threshold, as MS-TCN's f_score.

    Each predicted segment, in order, takes the true segment of its label with the best IoU; it is
    a hit when that IoU reaches `iou` and the true segment was not hit before.
    """
    matches = {}
    for i, p in enumerate(predicted):
        best, best_j = 0.0, None
        for j, t in enumerate(truth):
            if t.label == p.label:
                value = _iou(p, t)
                if value > best:
                    best, best_j = value, j
        if best_j is not None and best >= iou and best_j not in matches:
            matches[best_j] = i
    tp = len(matches)
    fp, fn = len(predicted) - tp, len(truth) - tp
    precision = tp / (tp + fp) if predicted else 0.0
    recall = tp / (tp + fn) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return f1, matches


def edit_score(predicted: Sequence[Segment], truth: Sequence[Segment]) -> float:
    """1 - normalised Levenshtein distance between the label sequences, in [0, 1]."""
    a, b = [s.label for s in predicted], [s.label for s in truth]
    if not a and not b:
        return 1.0
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return 1.0 - row[len(b)] / max(len(a), len(b))


def onset_delays(predicted: Sequence[Segment], truth: Sequence[Segment],
                 matches: dict) -> list:
    """Seconds from each matched true segment's start to its predicted segment's announcement."""
    return [(predicted[i].announced - truth[j].start) / NS for j, i in matches.items()
            if predicted[i].announced is not None]


def segment_metrics(predicted: Sequence[Segment], truth: Sequence[Segment]) -> dict:
    """Segmental F1 at IoU 0.1/0.25/0.5, edit score, over- and under-segmentation counts.

    Also false segments (predicted ones matching no true segment at IoU 0.1) and the onset delay
    (from the true start to the stamp of the event that announced the matched segment, IoU >= 0.1).
    """
    result = {'true_segments': len(truth), 'predicted_segments': len(predicted)}
    for iou in (0.1, 0.25, 0.5):
        result[f'f1@{iou:g}'], matches = segmental_f1(predicted, truth, iou)
        if iou == 0.1:
            delays = onset_delays(predicted, truth, matches)
            result['false_segments'] = len(predicted) - len(matches)
    result['edit'] = edit_score(predicted, truth)
    # A true segment split into several predicted ones of its label; a predicted segment that
    # covers most of two or more true segments.
    result['over_segmented'] = sum(
        max(0, sum(p.label == t.label and _overlap(p, t) > 0 for p in predicted) - 1)
        for t in truth)
    result['under_segmented'] = sum(
        sum(_overlap(p, t) > 0.5 * (t.end - t.start) for t in truth if t.end > t.start) > 1
        for p in predicted)
    result['onset_delay_s'] = {
        'median': round(float(np.median(delays)), 3) if delays else None,
        'p90': round(float(np.percentile(delays, 90)), 3) if delays else None}
    return result
