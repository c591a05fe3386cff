"""What the node publishes, as plain data: the classification JSON, the label, the label map,
the attention overlay. No rclpy here, so every field is unit-testable.

The `~/classification` JSON (one object per window) follows vision_msgs/Classification field
names so that a typed version can replace it without changing subscribers' logic:

    {
      "header": {"stamp": {"sec": int, "nanosec": int}, "frame_id": str},
      "results": [{"class_id": str, "class_name": str, "score": float}, ...],
      "window": {"start": {"sec": int, "nanosec": int}, "end": {"sec": int, "nanosec": int},
                 "num_frames": int},
      "temporal_weights": [float, ...],
      "latency_ms": float,
      "seq": int
    }

`header` is the header of the window's last frame, `window.end` its stamp; `results` is the
top-k, best first, scores are softmax probabilities; `class_id` is the class index as a string
(vision_msgs' ObjectHypothesis.class_id) and `class_name` its label (also in `~/label_info`);
`temporal_weights` has one weight per frame of the window, oldest first, summing to 1;
`latency_ms` runs from the arrival of the window's last frame to the publication; `seq`
counts published windows from 0.
"""

from __future__ import annotations

import cv2
import numpy as np

UNKNOWN = 'unknown'
JSON_SCHEMA = {
    '$schema': 'https://json-schema.org/draft/2020-12/schema',
    'title': 'timesformer_ros classification',
    'type': 'object',
    'required': ['header', 'results', 'window', 'temporal_weights', 'latency_ms', 'seq'],
    'properties': {
        'header': {'type': 'object', 'required': ['stamp', 'frame_id'],
                   'properties': {'stamp': {'$ref': '#/$defs/stamp'},
                                  'frame_id': {'type': 'string'}}},
        'results': {'type': 'array', 'items': {
            'type': 'object', 'required': ['class_id', 'class_name', 'score'],
            'properties': {'class_id': {'type': 'string'}, 'class_name': {'type': 'string'},
                           'score': {'type': 'number', 'minimum': 0, 'maximum': 1}}}},
        'window': {'type': 'object', 'required': ['start', 'end', 'num_frames'],
                   'properties': {'start': {'$ref': '#/$defs/stamp'},
                                  'end': {'$ref': '#/$defs/stamp'},
                                  'num_frames': {'type': 'integer', 'minimum': 1}}},
        'temporal_weights': {'type': 'array', 'items': {'type': 'number'}},
        'latency_ms': {'type': 'number'},
        'seq': {'type': 'integer', 'minimum': 0},
    },
    '$defs': {'stamp': {'type': 'object', 'required': ['sec', 'nanosec'],
                        'properties': {'sec': {'type': 'integer'},
                                       'nanosec': {'type': 'integer'}}}},
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
