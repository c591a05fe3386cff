"""What the package publishes, as data: output topics, the `Reporter` and the topics' JSON.

One row per output topic (`OUTPUTS`: name, type, QoS, builder), the `Reporter` that turns each
window's prediction into a `WindowResult`, and the JSON the topics carry. No rclpy here: the node
and `timesformer_bag evaluate --out-bag` both walk `OUTPUTS` with their own message classes
(`messages.MessageTypes`), so a new output is one row, one builder and one test.

The JSON Schemas of the three JSON topics (`WINDOW_SCHEMA`, `EVENT_SCHEMA`, `ACTIVE_SCHEMA`) are
data here; what their fields mean is documented once, in the README ("Topics").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Optional

import cv2
import numpy as np

from .frames import centre_square, to_source
from .locate import METHODS, RegionHold
from .messages import (
    CLASSIFICATION, DETECTION_2D, IMAGE, LABEL_INFO, STRING, MessageTypes, dict_ns, stamp_dict)
from .segments import stable_label

_STAMP = {'$ref': '#/$defs/stamp'}
_HEADER = {'type': 'object', 'required': ['stamp', 'frame_id'],
           'properties': {'stamp': _STAMP, 'frame_id': {'type': 'string'}}}
_SCORE = {'type': 'number', 'minimum': 0, 'maximum': 1}
_DEFS = {'stamp': {'type': 'object', 'required': ['sec', 'nanosec'],
                   'properties': {'sec': {'type': 'integer'}, 'nanosec': {'type': 'integer'}}}}
_DRAFT = 'https://json-schema.org/draft/2020-12/schema'
_CLASS = {'id': {'type': 'integer', 'minimum': 0}, 'class_id': {'type': 'string'},
          'class_name': {'type': 'string'}}

# `~/window`, one object per window.
WINDOW_SCHEMA = {
    '$schema': _DRAFT,
    'title': 'timesformer_ros window',
    'type': 'object',
    'required': ['header', 'results', 'window', 'temporal_weights', 'latency_ms', 'seq'],
    'properties': {
        'header': _HEADER,
        'results': {'type': 'array', 'items': {
            'type': 'object', 'required': ['class_id', 'class_name', 'score'],
            'properties': {'class_id': {'type': 'string'}, 'class_name': {'type': 'string'},
                           'score': _SCORE}}},
        'window': {'type': 'object', 'required': ['start', 'end', 'num_frames'],
                   'properties': {'start': _STAMP, 'end': _STAMP,
                                  'num_frames': {'type': 'integer', 'minimum': 1}}},
        'temporal_weights': {'type': 'array', 'items': {'type': 'number'}},
        'latency_ms': {'type': 'number'},
        'seq': {'type': 'integer', 'minimum': 0},
        'roi': {'type': 'object',
                'required': ['x_min', 'y_min', 'x_max', 'y_max', 'confidence', 'method'],
                'properties': {'x_min': {'type': 'number', 'minimum': 0},
                               'y_min': {'type': 'number', 'minimum': 0},
                               'x_max': {'type': 'number', 'minimum': 0},
                               'y_max': {'type': 'number', 'minimum': 0},
                               'confidence': _SCORE,
                               'method': {'enum': list(METHODS)}}},
    },
    '$defs': _DEFS,
}

# `~/events`: an action started, or ended (segments.py says when).
EVENT_SCHEMA = {
    '$schema': _DRAFT,
    'title': 'timesformer_ros action event',
    'type': 'object',
    'required': ['event', 'id', 'class_id', 'class_name', 'header', 'start'],
    'properties': {
        'event': {'enum': ['start', 'end']}, **_CLASS, 'header': _HEADER,
        'start': _STAMP, 'score': _SCORE, 'end': _STAMP, 'announced': _STAMP,
        'duration_s': {'type': 'number', 'minimum': 0}, 'mean_score': _SCORE,
        'peak_score': _SCORE, 'reason': {'type': 'string'},
    },
    'if': {'properties': {'event': {'const': 'end'}}},
    'then': {'required': ['end', 'announced', 'duration_s', 'mean_score', 'peak_score',
                          'reason']},
    'else': {'required': ['score']},
    '$defs': _DEFS,
}

# `~/active` (latched): the actions active now.
ACTIVE_SCHEMA = {
    '$schema': _DRAFT,
    'title': 'timesformer_ros active actions',
    'type': 'object',
    'required': ['header', 'active'],
    'properties': {
        'header': _HEADER,
        'active': {'type': 'array', 'items': {
            'type': 'object', 'required': ['id', 'class_id', 'class_name', 'start', 'score'],
            'properties': {**_CLASS, 'start': _STAMP, 'score': _SCORE}}},
    },
    '$defs': _DEFS,
}


def window_dict(prediction, window, frame_id: str, latency_ms: float, seq: int,
                top_k: int) -> dict:
    results = [{'class_id': str(c), 'class_name': name, 'score': round(float(s), 6)}
               for c, name, s in zip(prediction.class_ids, prediction.labels,
                                     prediction.scores)][:top_k]
    temporal = [] if prediction.temporal is None else \
        [round(float(w), 6) for w in prediction.temporal]
    record = {
        'header': {'stamp': stamp_dict(window.end), 'frame_id': frame_id},
        'results': results,
        'window': {'start': stamp_dict(window.start), 'end': stamp_dict(window.end),
                   'num_frames': window.num_frames},
        'temporal_weights': temporal,
        'latency_ms': round(float(latency_ms), 3),
        'seq': int(seq),
    }
    roi = roi_dict(prediction, window.key)
    if roi is not None:
        record['roi'] = roi
    return record


def roi_dict(prediction, key) -> Optional[dict]:
    """Return the window's region in the camera's pixels (`~/window`'s roi), None without a box.

    `key` is the window's `frames.FrameKey` (the source size the box is mapped back into).
    """
    if prediction.box is None or not hasattr(key, 'height'):
        return None
    box = to_source(prediction.box, 1, key.height, key.width)
    return {**{name: round(v, 2) for name, v in zip(('x_min', 'y_min', 'x_max', 'y_max'), box)},
            'confidence': round(min(max(float(prediction.box_confidence), 0.0), 1.0), 4),
            'method': prediction.box_method}


def active_dict(header: dict, active: list) -> dict:
    """`~/active`: the actions active after the window of `header`, best score first."""
    return {'header': header, 'active': active}


def overlay(rgb: np.ndarray, saliency: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Overlay the saliency map as a heat map on the frame's centre square (what the model saw)."""
    square = np.ascontiguousarray(centre_square(rgb))
    side = square.shape[0]
    peak = float(saliency.max())
    norm = saliency / peak if peak > 0 else np.zeros_like(saliency)
    heat = cv2.resize((norm * 255).astype(np.uint8), (side, side),
                      interpolation=cv2.INTER_NEAREST)
    heat = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(square, 1 - alpha, heat, alpha, 0)


# -- one window's results, and the outputs built from them ---------------------------------------

@dataclass
class WindowResult:
    """Everything the outputs are built from after one window, or after the input stopped.

    After the input stopped, only `events`, the actions it ended.
    """

    stamp_ns: int                          # the window's last frame (or the last window's)
    frame_id: str
    record: Optional[dict] = None          # the `~/window` JSON (None: no window)
    label: Optional[str] = None            # the decoded stable label
    events: list = field(default_factory=list)
    active: list = field(default_factory=list)   # the active actions after `events`
    saliency: Optional[np.ndarray] = None  # (H/p, W/p) spatial attention of the last frame
    rgb: Optional[np.ndarray] = None       # the last frame, for the overlay

    @property
    def header(self) -> dict:
        return {'stamp': stamp_dict(self.stamp_ns), 'frame_id': self.frame_id}


class Reporter:
    """Turns each window's prediction into a `WindowResult`.

    The result holds the JSON record (top_k results), the action decoder's events, active list and
    stable label. One `Reporter` per stream; the node holds a lock around it because its watchdog
    closes actions from another thread.
    """

    def __init__(self, decoder):
        self.decoder = decoder
        self.hold = RegionHold()
        self.seq = 0

    def window(self, window, prediction, frame_id: str, latency_ms: float, values: dict,
               rgb: Optional[np.ndarray] = None) -> WindowResult:
        """`values`: the parameters `top_k` and `score_threshold` (read at each window)."""
        prediction = self.hold.apply(prediction, window)
        record = window_dict(prediction, window, frame_id, latency_ms, self.seq,
                             values['top_k'])
        self.seq += 1
        events = self.decoder.update(window, prediction.probabilities, frame_id)
        active = self.decoder.active()
        return WindowResult(window.end, frame_id, record,
                            stable_label(active, values['score_threshold']), events, active,
                            prediction.spatial_last, rgb)

    def close(self, reason: str) -> Optional[WindowResult]:
        """End every active action (`reason`); None when none was active."""
        events = self.decoder.close_all(reason)
        if not events:
            return None
        header = events[-1]['header']
        return WindowResult(dict_ns(header['stamp']), header['frame_id'], events=events)


def _json(types: MessageTypes, data) -> object:
    return types.string(json.dumps(data, allow_nan=False))    # strict JSON: no NaN, no inf


def _label(types, result, values):
    return [] if result.label is None else [types.string(result.label)]


def _classification(types, result, values):
    if result.record is None:
        return []
    return [types.classification(types.header(result.stamp_ns, result.frame_id),
                                 [(r['class_id'], r['score']) for r in result.record['results']])]


def _detection(types, result, values):
    if result.record is None or 'roi' not in result.record:
        return []
    roi = result.record['roi']
    return [types.detection(types.header(result.stamp_ns, result.frame_id),
                            (roi['x_min'], roi['y_min'], roi['x_max'], roi['y_max']),
                            [(r['class_id'], r['score']) for r in result.record['results']])]


def _window(types, result, values):
    return [] if result.record is None else [_json(types, result.record)]


def _spatial(types, result, values):
    if result.saliency is None:
        return []
    return [types.image(types.header(result.stamp_ns, result.frame_id),
                        result.saliency.astype('<f4'), '32FC1')]


def _overlay(types, result, values):
    if not values['publish_overlay'] or result.rgb is None or result.saliency is None:
        return []
    return [types.image(types.header(result.stamp_ns, result.frame_id),
                        overlay(result.rgb, result.saliency), 'rgb8')]


def _events(types, result, values):
    return [_json(types, event) for event in result.events]


def _active(types, result, values):
    return [_json(types, active_dict(result.header, result.active))] if result.events else []


def _active_at_start(types, labels, values, stamp_ns):
    return [_json(types, active_dict({'stamp': stamp_dict(0), 'frame_id': ''}, []))]


def _label_info(types, labels, values, stamp_ns):
    return [types.label_info(types.header(stamp_ns, ''), labels, values['score_threshold'])]


@dataclass(frozen=True)
class Output:
    """One output topic.

    `per_window(types, result, values)` gives the messages a `WindowResult` causes (in publishing
    order); `latched(types, labels, values, stamp_ns)`, for latched topics, the message a
    subscriber finds before any window (`stamp_ns`: when it is published). `enabled_by` names the
    boolean parameter without which the output does not exist (the node does not advertise it).
    """

    name: str               # relative to the node: published as ~/name
    msgtype: str            # ROS type name
    qos: str                # one of QOS
    description: str
    per_window: Optional[Callable] = None
    latched: Optional[Callable] = None
    enabled_by: Optional[str] = None

    def enabled(self, values: dict) -> bool:
        """Whether the output exists with the parameter `values`."""
        return self.enabled_by is None or bool(values[self.enabled_by])

    @property
    def per_camera(self) -> bool:
        """Each camera has its own (under ~/CAMERA/ with named cameras): a per-window output.

        Outputs without a per-window builder (`label_info`) are the node's, one for all cameras.
        """
        return self.per_window is not None


# QoS of the outputs (the node turns these into profiles): `results` keep the last 10, reliable,
# volatile; `events` keep the last 100, reliable (none may be lost); `latched` keep the last
# one for late subscribers (transient local).
QOS = ('results', 'events', 'latched')

# Published in this order after each window.
OUTPUTS = (
    Output('classification', CLASSIFICATION, 'results', "top_k class ids and scores per "
           "window, the header of the window's last frame", _classification),
    Output('detection', DETECTION_2D, 'results', "where the action is: a box in the camera's "
           'pixels with the same top_k hypotheses, the header of the window\'s last frame',
           _detection),
    Output('window', STRING, 'results', 'JSON per window: span, class names and scores, '
           'temporal weights, latency, seq, roi', _window),
    Output('label', STRING, 'results', "the stable (decoded) action, 'unknown' when none is "
           'active or below score_threshold', _label),
    Output('events', STRING, 'events', 'JSON: an action started or ended', _events),
    Output('active', STRING, 'latched', 'JSON: the active actions, latched', _active,
           _active_at_start),
    Output('attention/spatial', IMAGE, 'results', "32FC1 saliency of the window's last frame",
           _spatial),
    Output('attention/overlay', IMAGE, 'results', 'rgb8 heat map on that frame '
           '(publish_overlay)', _overlay, enabled_by='publish_overlay'),
    Output('label_info', LABEL_INFO, 'latched', 'class map and score_threshold, latched',
           latched=_label_info),
)
BY_OUTPUT = {o.name: o for o in OUTPUTS}
