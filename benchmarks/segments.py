"""Action segments against the truth for a grid of decoder settings.

The trade-off between onset delay and false segments that picked the node's defaults.

    python benchmarks/segments.py                      # 3 bags x 60 s, embedded model, CPU

Records synthetic-camera bags (`timesformer_bag record-synthetic`, 30 Hz, 160x120, seeds
101-103, never used in training), then evaluates each with `timesformer_bag evaluate`'s code
path once per setting: the node's parameters file with the decoder parameters of that setting
(the checkpoint's clip rate, stride 1, as config/timesformer.yaml). Reports, summed or pooled
over the bags: true and predicted segments, segmental F1 at IoU 0.1/0.25/0.5, edit score, over-
and under-segmentation, false segments (predicted segments that match no true one at IoU 0.1),
onset delay median and p90, and label changes of the raw top-1 against the decoded label.
Writes benchmarks/results/segments_<seeds>.json (`_<setting>` added with --only).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import report  # noqa: E402 - benchmarks/report.py, beside this script
from timesformer_ros.bags import (  # noqa: E402
    Evaluation, EvaluationOutputs, evaluate, read_truth, record_synthetic)
from timesformer_ros.interface import defaults  # noqa: E402
from timesformer_ros.segments import (  # noqa: E402
    from_events, onset_delays, runs, segmental_f1)


def setting(smoothing: str, enter: float, exit: float, duration: float, gap: float,
            tau: float = 0.3, votes: int = 5) -> tuple:
    """Return (a name that states every value, the decoder parameters)."""
    how = {'ema': f'ema {tau:g} s', 'vote': f'vote {votes}', 'none': 'none'}[smoothing]
    return (f'{how}, {enter:g}/{exit:g}, {duration:g} s/{gap:g} s',
            dict(smoothing=smoothing, ema_tau_s=tau, vote_windows=votes,
                 enter_threshold=enter, exit_threshold=exit, min_duration_s=duration,
                 min_gap_s=gap))


# smoothing, enter/exit thresholds, min_duration_s/min_gap_s. The first row is no decoding:
# a class is active exactly while its window score is at least 0.5.
SETTINGS = dict([
    setting('none', 0.5, 0.5, 0.0, 0.0),
    setting('none', 0.6, 0.4, 0.2, 0.3),
    setting('vote', 0.6, 0.4, 0.2, 0.3, votes=3),
    setting('vote', 0.6, 0.4, 0.2, 0.3, votes=5),
    setting('vote', 0.5, 0.3, 0.2, 0.3, votes=5),
    setting('ema', 0.6, 0.4, 0.2, 0.3, tau=0.15),
    setting('ema', 0.6, 0.4, 0.1, 0.3, tau=0.15),
    setting('ema', 0.6, 0.4, 0.2, 0.3, tau=0.3),
    setting('ema', 0.6, 0.4, 0.2, 0.3, tau=0.6),
    setting('ema', 0.6, 0.4, 0.0, 0.3, tau=0.3),
    setting('ema', 0.6, 0.4, 0.4, 0.3, tau=0.3),
    setting('ema', 0.5, 0.3, 0.2, 0.3, tau=0.2),
    setting('ema', 0.5, 0.3, 0.1, 0.3, tau=0.3),
    setting('ema', 0.5, 0.3, 0.2, 0.5, tau=0.3),
    setting('ema', 0.5, 0.3, 0.2, 0.3, tau=0.3),      # the node's default
])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--seconds', type=float, default=60.0)
    parser.add_argument('--seeds', type=int, nargs='+', default=[101, 102, 103])
    parser.add_argument('--only', help="run only the setting of this name, e.g. the default's "
                                       "'ema 0.3 s, 0.5/0.3, 0.2 s/0.3 s' on other seeds")
    args = parser.parse_args()
    settings = {args.only: SETTINGS[args.only]} if args.only else SETTINGS
    work = Path(tempfile.mkdtemp(prefix='segments_bench_'))
    bags = []
    for seed in args.seeds:
        bag = work / f'bag_{seed}'
        record_synthetic(bag, seconds=args.seconds, seed=seed, width=160, height=120)
        bags.append(bag)
    base = {**defaults(), 'device': 'cpu'}
    rows = {}
    for name, overrides in settings.items():
        params = work / 'params.yaml'
        params.write_text(yaml.safe_dump({'/**': {'ros__parameters': {**base, **overrides}}}))
        totals = {'true': 0, 'predicted': 0, 'false': 0, 'over': 0, 'under': 0,
                  'raw_changes': 0, 'decoded_changes': 0}
        f1 = {0.1: [], 0.25: [], 0.5: []}
        edit, delays = [], []
        for bag in bags:
            segments = work / 'segments.jsonl'
            summary = evaluate(Evaluation(bag, '/camera/image_raw', params_file=params,
                                          truth='/motion', device='cpu', progress=False),
                               EvaluationOutputs(segments=segments))
            metrics = summary['segment_metrics']
            # The onset delays pooled over the bags (the summary has per-bag medians).
            predicted = from_events([json.loads(line)
                                     for line in segments.read_text().splitlines()])
            truth = runs(sorted(read_truth('/motion', bag, {}).items()))
            delays += onset_delays(predicted, truth, segmental_f1(predicted, truth, 0.1)[1])
            totals['true'] += metrics['true_segments']
            totals['predicted'] += metrics['predicted_segments']
            totals['false'] += metrics['false_segments']
            totals['over'] += metrics['over_segmented']
            totals['under'] += metrics['under_segmented']
            totals['raw_changes'] += summary['label_changes']['raw']
            totals['decoded_changes'] += summary['label_changes']['decoded']
            for iou in f1:
                f1[iou].append(metrics[f'f1@{iou:g}'])
            edit.append(metrics['edit'])
        rows[name] = {**totals, **{f'f1@{k:g}': round(float(np.mean(v)), 3)
                                   for k, v in f1.items()},
                      'edit': round(float(np.mean(edit)), 3),
                      'onset_delay_median_s': round(float(np.median(delays)), 3),
                      'onset_delay_p90_s': round(float(np.percentile(delays, 90)), 3)}
        print(name, rows[name], flush=True)
    import torch
    result = {'benchmark': 'segments', 'date': datetime.date.today().isoformat(),
              'python': platform.python_version(), 'torch': torch.__version__,
              'command': 'python ' + ' '.join(sys.argv), 'bags': len(bags),
              'seconds_per_bag': args.seconds, 'seeds': args.seeds, 'settings': rows}
    only = '_' + re.sub(r'[^0-9a-z.]+', '_', args.only) if args.only else ''
    report.write(f'segments_{"_".join(map(str, args.seeds))}{only}', result, echo=False)
    return 0


if __name__ == '__main__':
    sys.exit(main())
