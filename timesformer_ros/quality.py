"""Scoring a motion checkpoint on labelled clips: top-1 answers, accuracy, reversal, confusion.

One owner for the figures `timesformer_train` reports: training's validation, the held-out
synthetic report, the independent generator (`independent_report`, its file loaded by
`load_generator`) and the real-footage section (`real_report`) all score with these functions.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import synthetic
from .frames import Normaliser, resize_and_crop
from .model import TimeSformer
from .views import checkpoint_views, combine, in_time_order

# Bins of the real-footage windows (footage_labels): speed in crop sides per second (moving
# windows), size factor per second (approaching, receding), the object's longer side over the
# crop side (all windows).
REAL_SPEED_BINS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.7)
REAL_GROWTH_BINS = (1.2, 1.4, 2.0, 3.0, 6.5)
REAL_SIZE_BINS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.8)


@torch.inference_mode()
def predict(model: TimeSformer, clips: np.ndarray, normaliser: Normaliser,
            batch_size: int = 64, views: Sequence = ()) -> np.ndarray:
    """Return the top-1 class indices for uint8 clips (N, T, H, W, 3).

    `views`: test-time views (`views.checkpoint_views`) scored with each clip, as the engine
    scores them; () scores the clip alone.
    """
    model.eval()
    out = []
    for start in range(0, len(clips), batch_size):
        video = normaliser(torch.from_numpy(clips[start:start + batch_size]))
        out.append(combine(model, video, model(video), views).argmax(-1).cpu().numpy())
    return np.concatenate(out)


def accuracy(model, clips, labels, normaliser, views: Sequence = ()) -> float:
    """Return the share of clips whose top-1 class is their label."""
    return float((predict(model, clips, normaliser, views=views) == labels).mean())


def reversal_rate(model, clips, labels, normaliser, classes=synthetic.CLASSES,
                  views: Sequence = ()) -> float:
    """Return the share of clips whose backwards playback is classified as the reversed motion.

    Only clips of classes with a distinct reverse count. Reversed copies among `views` are left
    out (`views.in_time_order`): with them the figure would hold by construction.
    """
    reversible = np.array([synthetic.REVERSED[classes[i]] != classes[i] for i in labels])
    clips, labels = clips[reversible], labels[reversible]
    expected = np.array([classes.index(synthetic.REVERSED[classes[i]]) for i in labels])
    predicted = predict(model, np.ascontiguousarray(clips[:, ::-1]), normaliser,
                        views=in_time_order(views))
    return float((predicted == expected).mean())


def confusion(truth: np.ndarray, predicted: np.ndarray, classes: int) -> list:
    """Return the confusion matrix as lists: rows are the truth, columns the prediction."""
    matrix = np.zeros((classes, classes), dtype=int)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix.tolist()


def binned(values: np.ndarray, correct: np.ndarray, edges: Sequence[float]) -> dict:
    """Return accuracy and count per bin [edge, next edge) of `values`."""
    out = {}
    for low, high in zip(edges, edges[1:]):
        inside = (values >= low) & (values < high)
        if inside.any():
            out[f'{low:g}-{high:g}'] = {'accuracy': round(float(correct[inside].mean()), 4),
                                        'clips': int(inside.sum())}
    return out


def real_report(ckpt, windows, views: str = 'mirrors') -> dict:
    """Score a motion checkpoint on labelled real-footage windows (`footage_labels.Windows`).

    Forwards, and played backwards (the frames reversed, the label swapped by
    `synthetic.REVERSED`: left/right, up/down, approaching/receding; static stays): accuracy,
    accuracy by class, the confusion matrix, and accuracy by speed (moving windows), growth
    (approaching, receding) and object size; with the windows excluded by the labelling rule.
    `views`: the test-time views, as the node's `test_time_views` (mirrors, its default);
    played backwards without reversed copies (`reversal_rate`).
    """
    classes = list(ckpt.labels)
    unknown = sorted(set(windows.labels) - set(classes))
    if unknown:
        raise ValueError(f'real footage: the checkpoint has no class {unknown[0]!r} '
                         f'(its classes: {classes})')
    out = {'windows': len(windows.labels), 'clip_fps': windows.clip_fps,
           'excluded': {k: int(v) for k, v in windows.excluded.items()}}
    if not windows.labels:
        return out
    normaliser = Normaliser(ckpt.mean, ckpt.std)
    copies = checkpoint_views(ckpt, views)
    names = np.array(windows.labels)
    backwards = np.array([synthetic.REVERSED[name] for name in names])
    for direction, clips, truth in (('forwards', windows.clips, names),
                                    ('backwards', windows.clips[:, ::-1], backwards)):
        views = copies if direction == 'forwards' else in_time_order(copies)
        predicted = predict(ckpt.model, np.ascontiguousarray(clips), normaliser, views=views)
        labels = np.array([classes.index(name) for name in truth])
        correct = predicted == labels
        moving = np.char.startswith(truth.astype(str), 'moving_')
        scaling = np.isin(truth, ('approaching', 'receding'))
        out[direction] = {
            'accuracy': round(float(correct.mean()), 4),
            'by_class': {name: {'accuracy': round(float(correct[truth == name].mean()), 4),
                                'windows': int((truth == name).sum())}
                         for name in classes if (truth == name).any()},
            'confusion': {'labels': classes,
                          'matrix': confusion(labels, predicted, len(classes))},
            'by_speed_crop_sides_per_s': binned(windows.speed[moving], correct[moving],
                                                REAL_SPEED_BINS),
            'by_growth_per_s': binned(windows.growth[scaling], correct[scaling],
                                      REAL_GROWTH_BINS),
            'by_size_of_crop': binned(windows.size, correct, REAL_SIZE_BINS),
        }
    return out


# Bins of the independent generator's parameters for the operating envelope.
SPEED_BINS = (0.2, 0.3, 0.45, 0.7, 1.0, 1.6)         # short sides per second (translations)
GROWTH_BINS = (1.4, 2.0, 3.0, 4.5, 6.5)              # size factor per second (scaling)
SIZE_BINS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.35)       # diameter, fraction of the short side


def load_generator(path: Path):
    """Import an independent generator from its file, its folder importable while it loads.

    A clip generator (the tests' independent_clips.py) provides `make_set(seed, count, frames,
    fps, height, width, return_params=True)` returning (clips, label names, params with 'size',
    'speed' and 'growth'); a scene writer (independent_bags.py) `write_scene`
    (`scene_quality.scene_run`).
    """
    import importlib.util
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    if spec is None or not Path(path).is_file():
        raise FileNotFoundError(f'no generator at {path}')
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(Path(path).resolve().parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(Path(path).resolve().parent))
    return module


def independent_report(ckpt, generator, clips: int, seed: int, clip_fps: float,
                       height: int = 120, width: int = 160, views: str = 'mirrors') -> dict:
    """Score a motion checkpoint on clips of an independent generator, as the node sees them.

    The clips are rendered at the clip rate (what the node samples from a faster camera), at
    the camera's size, and centre-cropped and resized as the node does. Returns accuracy,
    reversal, the confusion matrix and accuracy by speed, growth and object size. `views` as
    in `real_report`.
    """
    cfg = ckpt.config
    normaliser = Normaliser(ckpt.mean, ckpt.std)
    copies = checkpoint_views(ckpt, views)
    data, names, params = generator.make_set(seed, clips, frames=cfg.num_frames, fps=clip_fps,
                                             height=height, width=width, return_params=True)
    data = np.stack([[resize_and_crop(frame, cfg.img_size) for frame in clip]
                     for clip in data])
    labels = np.array([list(ckpt.labels).index(name) for name in names])
    predicted = predict(ckpt.model, data, normaliser, views=copies)
    correct = predicted == labels
    translating = np.array([name.startswith('moving_') for name in names])
    scaling = np.array([name in ('approaching', 'receding') for name in names])
    speed = np.array([p['speed'] for p in params])
    growth = np.array([max(p['growth'], 1 / p['growth']) for p in params])
    size = np.array([p['size'] for p in params])
    return {
        'generator': str(getattr(generator, '__file__', generator)), 'clips': clips,
        'seed': seed, 'camera': f'{width}x{height}', 'clip_fps': clip_fps,
        'accuracy': round(float(correct.mean()), 4),
        'reversal': round(reversal_rate(ckpt.model, data, labels, normaliser,
                                        tuple(ckpt.labels), copies), 4),
        'confusion': {'labels': list(ckpt.labels),
                      'matrix': confusion(labels, predicted, len(ckpt.labels))},
        'by_speed_short_sides_per_s': binned(speed[translating], correct[translating],
                                             SPEED_BINS),
        'by_growth_per_s': binned(growth[scaling], correct[scaling], GROWTH_BINS),
        'by_size_short_side': binned(size, correct, SIZE_BINS),
    }
