"""What the node publishes, as plain data: the `~/classification` JSON, the `~/active` list, the
label map, the attention overlay; no rclpy here, so every field is unit-testable. The JSON
Schemas of the three JSON topics (`JSON_SCHEMA`, `EVENT_SCHEMA`, `ACTIVE_SCHEMA`) are data
here; what their fields mean is documented once, in the README ("Topics").
"""

from __future__ import annotations

import cv2
import numpy as np

UNKNOWN = 'unknown'
_STAMP = {'$ref': '#/$defs/stamp'}
_HEADER = {'type': 'object', 'required': ['stamp', 'frame_id'],
           'properties': {'stamp': _STAMP, 'frame_id': {'type': 'string'}}}
_SCORE = {'type': 'number', 'minimum': 0, 'maximum': 1}
_DEFS = {'stamp': {'type': 'object', 'required': ['sec', 'nanosec'],
                   'properties': {'sec': {'type': 'integer'}, 'nanosec': {'type': 'integer'}}}}
_DRAFT = 'https://json-schema.org/draft/2020-12/schema'
_CLASS = {'id': {'type': 'integer', 'minimum': 0}, 'class_id': {'type': 'string'},
          'class_name': {'type': 'string'}}

# `~/classification`, one object per window.
JSON_SCHEMA = {
    '$schema': _DRAFT,
    'title': 'timesformer_ros classification',
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


def stamp_dict(ns: int) -> dict:
    return {'sec': int(ns // 1_000_000_000), 'nanosec': int(ns % 1_000_000_000)}


def classification_dict(prediction, window, frame_id: str, latency_ms: float, seq: int,
                        top_k: int) -> dict:
    results = [{'class_id': str(c), 'class_name': name, 'score': round(float(s), 6)}
               for c, name, s in zip(prediction.class_ids, prediction.labels,
                                     prediction.scores)][:top_k]
    temporal = [] if prediction.temporal is None else \
        [round(float(w), 6) for w in prediction.temporal]
    return {
        'header': {'stamp': stamp_dict(window.end), 'frame_id': frame_id},
        'results': results,
        'window': {'start': stamp_dict(window.start), 'end': stamp_dict(window.end),
                   'num_frames': window.num_frames},
        'temporal_weights': temporal,
        'latency_ms': round(float(latency_ms), 3),
        'seq': int(seq),
    }


def active_dict(header: dict, active: list) -> dict:
    """`~/active`: the actions active after the window of `header`, best score first."""
    return {'header': header, 'active': active}


def label_info_dict(labels, threshold: float) -> dict:
    """vision_msgs/LabelInfo's fields: class_map [{class_id, class_name}] and threshold."""
    return {'class_map': [{'class_id': i, 'class_name': name} for i, name in enumerate(labels)],
            'threshold': float(threshold)}


def overlay(rgb: np.ndarray, saliency: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The frame's centre square (what the model saw) with the saliency map as a heat map."""
    height, width = rgb.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = np.ascontiguousarray(rgb[top:top + side, left:left + side])
    peak = float(saliency.max())
    norm = saliency / peak if peak > 0 else np.zeros_like(saliency)
    heat = cv2.resize((norm * 255).astype(np.uint8), (side, side),
                      interpolation=cv2.INTER_NEAREST)
    heat = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(square, 1 - alpha, heat, alpha, 0)
