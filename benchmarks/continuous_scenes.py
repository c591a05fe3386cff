"""A motion model on continuous independent scenes, through the bag path a user takes.

    .venv/bin/python benchmarks/continuous_scenes.py --threads 1                 # embedded model
    .venv/bin/python benchmarks/continuous_scenes.py --checkpoint C --seeds 24100 24200

Writes N scenes per seed of `test/independent_scenes.py` (written apart from world.py and
synthetic.py, never trained or tuned on: one object that changes what it does every 1.5-3 s
without a cut, still phases between, 0.05-0.4 short sides/s, growth 1.2-1.8x/s, objects of
0.1-0.5 of the short side, sometimes partly outside the frame, a textured or moving background,
auto-exposure, noise and JPEG) as 30 Hz 160x120 bags (`test/independent_bags.py`), and runs each
through `timesformer_bag evaluate BAG --topic /camera/image_raw --truth /motion` with default
parameters, in process (`bags.evaluate`, what the command calls). One parameter differs:
`top_k` covers every class, so that the rows carry every score (`decoder_sweep.py` replays the
decoder from them); it changes nothing else.

Reported per seed, pooled over its scenes:

* `inside`: accuracy of the windows whose whole span lies inside one phase (one true segment),
  by class, by speed (translations), by growth (approaching, receding), by object size (the
  enclosing circle at the window's last frame, short sides), by whether the object was partly
  outside the frame, and the confusion matrix (rows: truth);
* `all_windows`: evaluate's own accuracy (every window, truth at its last frame);
* `segments`: the decoder's segments against the truth runs with the package's scoring
  (`segments.segmental_f1`, `onset_delays`, as `segment_metrics`): F1 at IoU 0.1/0.5 pooled
  over the scenes (true positives over all predicted and true segments), the mean of the
  per-scene F1@0.5, and the onset delay median and p90 pooled over the scenes;
* `first_switch_median_s`: the model's own latency, before the decoder: from each change of
  phase to the end of the first window whose top-1 is the new phase (median);
* `region`: the rows' `roi` (the node's region, README "Where the action is") against the
  object's true box at each window's last frame: the share of windows whose region holds the
  box's centre and the median IoU, by object size and by whether the object's centre is in the
  central square the model sees. `--wander whole` lets the object go anywhere in the frame
  (issue 28's "an object wandering over the whole frame").

Writes benchmarks/results/continuous_scenes_<seeds>[_whole].json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'test'))

import report  # noqa: E402 - benchmarks/report.py, beside this script
from independent_bags import write_scene  # noqa: E402
from independent_scenes import WANDER  # noqa: E402
from timesformer_ros import scene_quality  # noqa: E402
from timesformer_ros.messages import dict_ns  # noqa: E402
from timesformer_ros.scene_quality import (  # noqa: E402
    SIZE_BINS, bin_name, scene_figures)

SEEDS = (24100, 24200)      # the tuning seed, then the report seed


def scene_run(work: Path, seed: int, index: int, seconds: float, checkpoint: str,
              wander: str = 'centre') -> dict:
    """Write one scene and evaluate its bag (`scene_quality.scene_run`), every class scored.

    One parameter differs from the defaults: `top_k` covers every class, so that the rows
    carry every score (`decoder_sweep.py` replays the decoder from them).
    """
    params = work / 'params.yaml'
    if not params.exists():
        params.write_text("/**:\n  ros__parameters:\n    top_k: 1000\n")
    return scene_quality.scene_run(work, write_scene, seed, index, seconds, checkpoint, params,
                                   wander)


def region_figures(runs: list) -> dict:
    """How well the rows' `roi` finds the object's box at the window's last frame.

    Over the windows whose last frame shows some of the object: the share whose region holds
    the box's centre and the median IoU (`locate.holds_centre`, `locate.iou`), by object size
    and by whether the box's centre lies in the central square the model sees.
    """
    from timesformer_ros.locate import holds_centre, iou
    scene = runs[0]['scene']
    height, width = scene['height'], scene['width']
    short = min(height, width)
    groups = defaultdict(list)        # (kind, bin) -> [(holds, iou)]
    for run in runs:
        for record in run['records']:
            end = dict_ns(record['window']['end'])
            truth, roi = run['boxes'].get(end), record.get('roi')
            if truth is None or roi is None:
                continue
            found = np.array([roi[k] for k in ('x_min', 'y_min', 'x_max', 'y_max')])
            truth = np.array(truth)
            centre = (truth[:2] + truth[2:]) / 2
            seen = abs(centre[0] - width / 2) <= short / 2 and abs(centre[1] - height / 2) \
                <= short / 2
            size = run['diameters'][end][0] / short
            score = (bool(holds_centre(found, truth)), float(iou(found, truth)))
            for key in (('all', 'all'), ('size', bin_name(size, SIZE_BINS)),
                        ('centre', 'in the central square' if seen else 'outside it')):
                groups[key].append(score)
    by = defaultdict(dict)
    for (kind, name), scores in sorted(groups.items()):
        holds, ious = zip(*scores)
        by[kind][name] = {'holds_centre': round(float(np.mean(holds)), 4),
                          'median_iou': round(float(np.median(ious)), 4),
                          'windows': len(scores)}
    return dict(by)


def evaluate_seed(work: Path, seed: int, scenes: int, seconds: float, checkpoint: str,
                  wander: str = 'centre', log=print) -> list:
    """Return the scene runs of one seed (`scene_run`), logging one line per scene."""
    runs = []
    for index in range(scenes):
        began = time.perf_counter()
        runs.append(scene_run(work, seed, index, seconds, checkpoint, wander))
        summary = runs[-1]['summary']
        log(f'seed {seed} scene {index}: {summary["windows"]} windows, accuracy '
            f'{summary["accuracy"]:.3f}, segments {summary["segment_metrics"]["f1@0.5"]:.3f} '
            f'F1@0.5 ({time.perf_counter() - began:.1f} s)')
    return runs


def seed_figures(runs: list) -> dict:
    """Every figure of one seed's runs: the motion figures and the region's."""
    return {**scene_figures(runs), 'region': region_figures(runs)}


def machine() -> dict:
    """Return the date, versions and the machine's load, for the report."""
    import torch
    return {'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='minutes'),
            'python': platform.python_version(), 'torch': torch.__version__,
            'cpus': os.cpu_count(), 'load_average': [round(x, 2) for x in os.getloadavg()],
            'torch_threads': torch.get_num_threads()}


def common_arguments(parser: argparse.ArgumentParser):
    """Add the arguments this benchmark and the decoder sweep share."""
    parser.add_argument('--checkpoint', default='', help='default: the embedded motion model')
    parser.add_argument('--scenes', type=int, default=12, help='scenes per seed')
    parser.add_argument('--seconds', type=float, default=60.0, help='length of each scene')
    parser.add_argument('--threads', type=int, default=1, help='torch threads')
    parser.add_argument('--work', type=Path, help='keep the scenes, bags and rows here '
                                                  '(default: a temporary folder)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser)
    parser.add_argument('--seeds', type=int, nargs='+', default=list(SEEDS))
    parser.add_argument('--wander', choices=WANDER, default='centre',
                        help="where the object goes: 'whole' for the region's figures over the "
                             'whole frame (the motion figures then include windows where the '
                             'object is outside what the model sees)')
    args = parser.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    result = {'benchmark': 'continuous_scenes', 'command': 'python ' + ' '.join(sys.argv),
              'checkpoint': args.checkpoint or 'embedded', 'seconds_per_scene': args.seconds,
              'wander': args.wander,
              'machine_before': machine(), 'seeds': {}}
    with tempfile.TemporaryDirectory(prefix='continuous_scenes_') as tmp:
        work = args.work or Path(tmp)
        for seed in args.seeds:
            began = time.perf_counter()
            figures = seed_figures(evaluate_seed(work, seed, args.scenes, args.seconds,
                                                 args.checkpoint, args.wander))
            figures['seconds'] = round(time.perf_counter() - began, 1)
            result['seeds'][str(seed)] = figures
            shown = ('all_windows', 'segments', 'region')
            print(json.dumps({seed: {k: figures[k] for k in shown}}),
                  flush=True)
    result['machine_after'] = machine()
    wander = '' if args.wander == 'centre' else f'_{args.wander}'
    report.write(f'continuous_scenes_{"_".join(map(str, args.seeds))}{wander}', result)
    return 0


if __name__ == '__main__':
    sys.exit(main())
