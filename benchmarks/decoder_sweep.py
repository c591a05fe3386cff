"""The action decoder's parameters chosen by measurement on continuous independent scenes.

    .venv/bin/python benchmarks/decoder_sweep.py --threads 1                    # embedded model
    .venv/bin/python benchmarks/decoder_sweep.py --checkpoint C --tune-seed 24100 \
        --report-seed 24200

The scenes and the model's windows are `continuous_scenes.py`'s (`timesformer_bag evaluate`'s
code path, default parameters, every class's score in the rows). The decoder
(`segments.ActionDecoder`, the node's and evaluate's) is then replayed over each scene's window
scores once per setting of a grid over `smoothing`, `ema_tau_s`, `vote_windows`,
`enter_threshold`/`exit_threshold`, `min_duration_s` and `min_gap_s`, and its segments scored
against the truth runs as `scene_quality.segment_figures` does (the package's scoring). The
replay of the node's current defaults must give evaluate's own segments: the report says in how
many scenes it did.

The best setting on the tuning seed: the highest pooled F1@0.5 among those with a median onset
delay of at most MAX_ONSET_S (the issue's target), the lower onset delay on a tie; it is then
reported on the report seed beside the current defaults and the next best of the tuning seed.
`--confident 0.95 0.9` adds an experiment for the onset: the defaults, but a candidate whose
score reaches that value is announced at once (`ConfidentDecoder`, not a node setting).
Nothing is changed in the package. Writes benchmarks/results/decoder_sweep_<seeds>.json.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Optional, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402 - benchmarks/report.py, beside this script
from continuous_scenes import common_arguments, evaluate_seed, machine  # noqa: E402
from timesformer_ros.interface import defaults  # noqa: E402
from timesformer_ros.messages import dict_ns  # noqa: E402
from timesformer_ros.scene_quality import segment_figures  # noqa: E402
from timesformer_ros.segments import ActionDecoder, DecoderConfig, from_events  # noqa: E402

MAX_ONSET_S = 1.0
SMOOTHINGS = ([('ema', {'ema_tau_s': tau}) for tau in (0.2, 0.3, 0.5, 0.8, 1.2)]
              + [('vote', {'vote_windows': n}) for n in (5, 9, 15)] + [('none', {})])
THRESHOLDS = ((0.4, 0.2), (0.5, 0.3), (0.6, 0.3), (0.6, 0.4), (0.7, 0.4))
MIN_DURATIONS = (0.0, 0.2, 0.35)
MIN_GAPS = (0.35, 0.6, 1.0)


def name(config: DecoderConfig) -> str:
    """Return a name that states every value that matters for this smoothing."""
    how = {'ema': f'ema {config.ema_tau_s:g} s', 'vote': f'vote {config.vote_windows}',
           'none': 'none'}[config.smoothing]
    return (f'{how}, {config.enter_threshold:g}/{config.exit_threshold:g}, '
            f'{config.min_duration_s:g} s/{config.min_gap_s:g} s')


def grid() -> list:
    """Every DecoderConfig of the sweep, the node's defaults first."""
    base = DecoderConfig.from_values(defaults()).__dict__
    configs = [DecoderConfig(**base)]
    for (smoothing, extra), (enter, exit_), duration, gap in itertools.product(
            SMOOTHINGS, THRESHOLDS, MIN_DURATIONS, MIN_GAPS):
        config = DecoderConfig(**{**base, 'smoothing': smoothing, **extra,
                                  'enter_threshold': enter, 'exit_threshold': exit_,
                                  'min_duration_s': duration, 'min_gap_s': gap})
        if config not in configs:
            configs.append(config)
    return configs


def windows_of(run: dict, labels: list) -> list:
    """Return (window, scores, frame_id) of a scene's rows, for replaying the decoder."""
    out = []
    for record in run['records']:
        scores = np.zeros(len(labels))
        for result in record['results']:
            scores[int(result['class_id'])] = result['score']
        window = SimpleNamespace(start=dict_ns(record['window']['start']),
                                 end=dict_ns(record['window']['end']), epoch=0, reset=None)
        out.append((window, scores, record['header']['frame_id']))
    return out


class ConfidentDecoder(ActionDecoder):
    """The decoder that also announces a candidate at once when its score reaches `confident`.

    An experiment for the onset (`--confident`), not a node setting: one confident window is
    enough, without waiting `min_duration_s`.
    """

    def __init__(self, labels: list, config: DecoderConfig, confident: float):
        super().__init__(labels, config)
        self.confident = confident

    def _announce_due(self, track, end: int, score: float, config: DecoderConfig) -> bool:
        return score >= self.confident or super()._announce_due(track, end, score, config)


def replay(windows: list, labels: list, config: DecoderConfig,
           confident: Optional[float] = None) -> list:
    """Return the Segments the decoder gives over a scene's windows (closed at the end)."""
    decoder = (ActionDecoder(labels, config) if confident is None
               else ConfidentDecoder(labels, config, confident))
    events = []
    for window, scores, frame_id in windows:
        events += decoder.update(window, scores, frame_id)
    events += decoder.close_all('end_of_bag')
    return from_events(events)


def sweep(runs: list, configs: list, confident: Sequence[float] = ()) -> dict:
    """Return {setting name: segment figures} over one seed's scenes, and the replay check.

    Each of `confident` adds a row of the defaults with `ConfidentDecoder` at that score.
    """
    labels = list(runs[0]['summary']['confusion']['labels'])
    scenes = [(windows_of(run, labels), run['truth']) for run in runs]
    default = DecoderConfig.from_values(defaults())
    rows = {}
    for config, score in [(c, None) for c in configs] + [(default, s) for s in confident]:
        pairs = [(replay(windows, labels, config, score), truth) for windows, truth in scenes]
        setting = name(config) + (f', confident {score:g}' if score is not None else '')
        rows[setting] = {**segment_figures(pairs), 'config': config.__dict__,
                         'confident': score}
        if config == default and score is None:
            same = sum(p == run['predicted'] for (p, _), run in zip(pairs, runs))
            rows[setting]['replay_equals_evaluate'] = f'{same} of {len(runs)} scenes'
    return rows


def best(rows: dict) -> str:
    """Return the setting of highest pooled F1@0.5 with median onset <= MAX_ONSET_S.

    Only the node's own settings compete (not the `--confident` experiment's rows).
    """
    def key(item):
        figures = item[1]
        onset = figures['onset_delay_median_s']
        fast = onset is not None and onset <= MAX_ONSET_S
        return (fast, figures['f1@0.5'], -(onset if onset is not None else 99.0))
    return max(((s, r) for s, r in rows.items() if r['confident'] is None), key=key)[0]


def table(rows: dict, names: list) -> str:
    """Markdown rows: setting, segments, false, F1@0.1, F1@0.5 (pooled, scene mean), onset."""
    lines = []
    for setting in names:
        r = rows[setting]
        lines.append(f"| {setting} | {r['predicted_segments']} / {r['true_segments']} | "
                     f"{r['false_segments']} | {r['f1@0.1']:.3f} | {r['f1@0.5']:.3f} | "
                     f"{r['f1@0.5_scene_mean']:.3f} | {r['edit_scene_mean']:.3f} | "
                     f"{r['onset_delay_median_s']} / {r['onset_delay_p90_s']} s |")
    return '\n'.join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser)
    parser.add_argument('--tune-seed', type=int, default=24100)
    parser.add_argument('--report-seed', type=int, default=24200)
    parser.add_argument('--top', type=int, default=12, help='settings in the printed tables')
    parser.add_argument('--confident', type=float, nargs='*', default=(),
                        help='also replay the defaults announcing a candidate at once when its '
                             'score reaches each of these (an experiment for the onset)')
    args = parser.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    configs = grid()
    default = name(configs[0])
    result = {'benchmark': 'decoder_sweep', 'command': 'python ' + ' '.join(sys.argv),
              'checkpoint': args.checkpoint or 'embedded', 'scenes_per_seed': args.scenes,
              'seconds_per_scene': args.seconds, 'settings': len(configs),
              'max_onset_s': MAX_ONSET_S, 'default': default, 'machine_before': machine()}
    with tempfile.TemporaryDirectory(prefix='decoder_sweep_') as tmp:
        work = args.work or Path(tmp)
        began = time.perf_counter()
        tune = sweep(evaluate_seed(work, args.tune_seed, args.scenes, args.seconds,
                                   args.checkpoint), configs, args.confident)
        chosen = best(tune)
        ranked = sorted((s for s in tune if tune[s]['confident'] is None),
                        key=lambda s: -tune[s]['f1@0.5'])
        experiment = [s for s in tune if tune[s]['confident'] is not None]
        shown = list(dict.fromkeys([chosen, default] + ranked[:args.top] + experiment))
        print(f'tuning seed {args.tune_seed}, {len(configs)} settings '
              f'({time.perf_counter() - began:.0f} s); best: {chosen}\n' + table(tune, shown),
              flush=True)
        picked = [DecoderConfig(**tune[s]['config']) for s in shown if s not in experiment]
        began = time.perf_counter()
        held = sweep(evaluate_seed(work, args.report_seed, args.scenes, args.seconds,
                                   args.checkpoint), picked, args.confident)
        print(f'report seed {args.report_seed} ({time.perf_counter() - began:.0f} s)\n'
              + table(held, shown), flush=True)
    result.update({'best': chosen, 'tune_seed': args.tune_seed, 'tune': tune,
                   'report_seed': args.report_seed, 'report': held,
                   'tune_table': table(tune, shown), 'report_table': table(held, shown),
                   'machine_after': machine()})
    report.write(f'decoder_sweep_{args.tune_seed}_{args.report_seed}', result, echo=False)
    return 0


if __name__ == '__main__':
    sys.exit(main())
