"""How a motion model reads continuous scenes, through the bag path a user takes.

A scene writer (`test/independent_bags.py`'s `write_scene`: one object that changes what it
does every 1.5-3 s without a cut, its truth as the bag's `/motion` topic, per-frame boxes and
the phases) writes each scene as a bag; `timesformer_bag evaluate` (`bags.evaluate`, what the
command calls) runs the model over it with the given parameters. Scored:

* the windows whose whole span lies inside one phase, against that phase: accuracy by class,
  by speed (translations), by growth (approaching, receding), by object size at the window's
  last frame (short sides) and by whether the object was partly outside the frame, and the
  confusion matrix (rows: truth);
* evaluate's own accuracy over every window (truth at its last frame);
* the decoded segments against the truth runs with the package's scoring (`segments.py`).

`timesformer_train report --scenes` and `benchmarks/continuous_scenes.py` both score here.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .bags import Evaluation, EvaluationOutputs, evaluate, read_truth
from .messages import dict_ns
from .segments import edit_score, from_events, onset_delays, segmental_f1

SPEED_BINS = (0.05, 0.1, 0.2, 0.3, 0.4)     # short sides per second (translations)
GROWTH_BINS = (1.2, 1.4, 1.6, 1.8)          # size factor per second (approaching, receding)
SIZE_BINS = (0.0, 0.2, 0.3, 0.4, 0.6)       # enclosing circle's diameter, short sides
TOPIC, TRUTH = '/camera/image_raw', '/motion'


def bin_name(value: float, edges) -> str:
    """Return the name of the bin of `edges` that holds `value` ('0.05-0.1'), the last closed."""
    for low, high in zip(edges[:-1], edges[1:]):
        if low <= value < high or (high == edges[-1] and value == high):
            return f'{low:g}-{high:g}'
    return f'outside {edges[0]:g}-{edges[-1]:g}'


def scene_run(work: Path, write_scene: Callable, seed: int, index: int, seconds: float,
              checkpoint: Optional[str], params: Optional[Path] = None,
              wander: str = 'centre') -> dict:
    """Write scene `index` of `seed` under `work` and evaluate its bag; return what scoring needs.

    {'scene': its description, 'summary': evaluate's summary, 'records': the window rows,
    'predicted': the decoded Segments, 'truth': the truth runs, 'diameters': {stamp: (px,
    visible share)}, 'boxes': {stamp: the object's box in source pixels, or None}}.
    `checkpoint` None: the embedded model; `params`: a parameters file (None: the defaults).
    """
    folder = Path(work) / f'scene_{seed}_{index}'
    scene = write_scene(folder, seed, index, seconds, wander=wander)
    summary = evaluate(Evaluation(folder / 'bag', TOPIC, checkpoint or None, params, TRUTH,
                                  progress=False),
                       EvaluationOutputs(jsonl=folder / 'windows.jsonl',
                                         segments=folder / 'segments.jsonl'))
    records = [json.loads(line) for line in (folder / 'windows.jsonl').read_text().splitlines()]
    events = [json.loads(line) for line in (folder / 'segments.jsonl').read_text().splitlines()]
    diameters, boxes = {}, {}
    with (folder / 'boxes.csv').open(newline='') as handle:
        for row in csv.DictReader(handle):
            stamp = int(row['stamp'])
            diameters[stamp] = (float(row['diameter']), float(row['visible']))
            boxes[stamp] = (tuple(float(row[k]) for k in ('x_min', 'y_min', 'x_max', 'y_max'))
                            if row['x_min'] else None)
    return {'scene': scene, 'summary': summary, 'records': records,
            'predicted': from_events(events),
            'truth': read_truth(TRUTH, folder / 'bag', {}).runs(), 'diameters': diameters,
            'boxes': boxes}


def inside_windows(run: dict):
    """Yield (record, phase) for the windows whose span lies inside one phase."""
    phases = run['scene']['phases']
    starts = np.array([p['first_stamp_ns'] for p in phases])
    for record in run['records']:
        start, end = dict_ns(record['window']['start']), dict_ns(record['window']['end'])
        i = int(np.searchsorted(starts, start, side='right')) - 1
        if i >= 0 and end <= phases[i]['last_stamp_ns']:
            yield record, phases[i]


def window_figures(runs: list, labels: list) -> dict:
    """Accuracy of the windows inside a phase, by class, speed, growth, size and visibility."""
    index = {name: i for i, name in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    bins = defaultdict(lambda: [0, 0])       # (kind, bin) -> [right, windows]
    short = min(runs[0]['scene']['height'], runs[0]['scene']['width'])
    for run in runs:
        for record, phase in inside_windows(run):
            truth, guess = phase['label'], record['results'][0]['class_name']
            matrix[index[truth], index[guess]] += 1
            right = truth == guess
            diameter, visible = run['diameters'][dict_ns(record['window']['end'])]
            keys = [('class', truth), ('size', bin_name(diameter / short, SIZE_BINS)),
                    ('frame', 'whole object in frame' if visible >= 0.99
                     else 'partly outside the frame')]
            if truth.startswith('moving_'):
                keys.append(('speed', bin_name(phase['speed'], SPEED_BINS)))
            elif truth in ('approaching', 'receding'):
                growth = max(phase['growth'], 1 / phase['growth'])
                keys.append(('growth', bin_name(round(growth, 6), GROWTH_BINS)))
            for key in keys:
                bins[key][0] += right
                bins[key][1] += 1
    by = defaultdict(dict)
    for (kind, name), (right, total) in sorted(bins.items()):
        by[kind][name] = {'accuracy': round(right / total, 4), 'windows': total}
    total = int(matrix.sum())
    return {'windows': total, 'accuracy': round(float(np.trace(matrix)) / max(total, 1), 4),
            'by': dict(by), 'confusion': {'labels': labels, 'matrix': matrix.tolist()}}


def segment_figures(pairs: list) -> dict:
    """Segment scores pooled over scenes; `pairs` holds (predicted, truth) Segments per scene.

    With the package's scoring (`segments.py`): F1 at IoU 0.1 and 0.5 over all the scenes'
    segments at once, the per-scene mean F1@0.5 and edit score, false segments (no true one at
    IoU 0.1), and the onset delays (IoU 0.1 matches, as `segment_metrics`) pooled.
    """
    hits = {0.1: 0, 0.5: 0}
    per_scene, edits, delays = [], [], []
    predicted_total = sum(len(p) for p, _ in pairs)
    true_total = sum(len(t) for _, t in pairs)
    for predicted, truth in pairs:
        for iou in hits:
            f1, matches = segmental_f1(predicted, truth, iou)
            hits[iou] += len(matches)
            if iou == 0.5:
                per_scene.append(f1)
            else:
                delays += onset_delays(predicted, truth, matches)
        edits.append(edit_score(predicted, truth))
    pooled = {f'f1@{iou:g}': round(2 * hit / max(predicted_total + true_total, 1), 4)
              for iou, hit in hits.items()}
    return {'true_segments': true_total, 'predicted_segments': predicted_total,
            'false_segments': predicted_total - hits[0.1], **pooled,
            'f1@0.5_scene_mean': round(float(np.mean(per_scene)), 4),
            'edit_scene_mean': round(float(np.mean(edits)), 4),
            'onset_delay_median_s': round(float(np.median(delays)), 3) if delays else None,
            'onset_delay_p90_s': round(float(np.percentile(delays, 90)), 3) if delays else None}


def first_switches(runs: list) -> list:
    """Seconds from each change of phase to the first window whose top-1 is the new phase.

    The window's end stamp, within the new phase; the model's own latency, before the decoder
    (changes whose phase no window reads right are left out).
    """
    delays = []
    for run in runs:
        ends = [(dict_ns(r['window']['end']), r['results'][0]['class_name'])
                for r in run['records']]
        for phase in run['scene']['phases'][1:]:
            first, last = phase['first_stamp_ns'], phase['last_stamp_ns']
            hits = [end for end, label in ends if first <= end <= last and label == phase['label']]
            if hits:
                delays.append((hits[0] - first) / 1e9)
    return delays


def scene_figures(runs: list) -> dict:
    """Every motion figure of some scene runs (`scene_run`): inside, all windows, segments."""
    labels = list(runs[0]['summary']['confusion']['labels'])
    right = sum(r['summary']['accuracy'] * r['summary']['scored_windows'] for r in runs)
    scored = sum(r['summary']['scored_windows'] for r in runs)
    phases = [p for r in runs for p in r['scene']['phases']]
    switches = first_switches(runs)
    return {'scenes': len(runs), 'phases': len(phases),
            'phase_labels': {c: sum(p['label'] == c for p in phases) for c in labels},
            'inside': window_figures(runs, labels),
            'all_windows': {'accuracy': round(right / max(scored, 1), 4), 'windows': scored},
            'segments': segment_figures([(r['predicted'], r['truth']) for r in runs]),
            'first_switch_median_s': round(float(np.median(switches)), 3) if switches else None}


def scene_report(checkpoint: Optional[str], write_scene: Callable, count: int, seed: int,
                 seconds: float = 60.0) -> dict:
    """Score a checkpoint on `count` scenes of `seed` (default parameters); `scene_figures`."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix='scene_quality_') as work:
        runs = [scene_run(Path(work), write_scene, seed, index, seconds, checkpoint)
                for index in range(count)]
        return {'seed': seed, 'seconds_per_scene': seconds, **scene_figures(runs)}
