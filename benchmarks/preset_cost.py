"""What a motion preset costs per window at batch 1 on one CPU thread, and on disk (issue 24).

The embedded model's preset (`motion`: 48 px, patch 8, 8 frames) against the candidates that
see more of a slow motion: more pixels (56 or 64 px at patch 8, 60 px at patch 10) or more
frames (12, 16). The clip rate costs nothing here (the same window, sampled more sparsely), so
it is not a row. Each preset is timed as `roi_cost.py` times the embedded model: the engine's
whole inference with the `motion` region over a 160x120 camera's frame, random weights (the
cost is the same), medians over `--reps` windows. Size: the float32 weights' bytes (what the
checkpoint's safetensors file holds, less its short header). The issue's budget: <= 5 ms per
window and <= 10 MB.

    .venv/bin/python benchmarks/preset_cost.py [--reps 200]
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import report  # noqa: E402 - benchmarks/report.py, beside this script
from roi_cost import measure  # noqa: E402
from timesformer_ros.checkpoints import Checkpoint, default_labels  # noqa: E402
from timesformer_ros.engine import Engine  # noqa: E402
from timesformer_ros.model import TimeSformer, preset  # noqa: E402

CANDIDATES = {
    'motion (48 px, 8 frames)': {},
    '56 px': {'img_size': 56},
    '64 px': {'img_size': 64},
    '60 px, patch 10': {'img_size': 60, 'patch_size': 10},
    '12 frames': {'num_frames': 12},
    '16 frames': {'num_frames': 16},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--reps', type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {'torch': torch.__version__, 'cpu': platform.processor() or platform.machine(),
               'threads': 1, 'command': 'python ' + ' '.join(sys.argv), 'presets': {}}
    for name, overrides in CANDIDATES.items():
        model = TimeSformer(preset('motion', num_classes=7, **overrides)).eval()
        engine = Engine(Checkpoint(model=model, labels=default_labels(7), source='preset'),
                        device='cpu', warmup=False)
        row = measure(engine, args.reps, (120, 160))
        row['weights_mb'] = round(sum(p.numel() for p in model.state_dict().values()) * 4
                                  / 1e6, 3)
        row['overrides'] = overrides
        results['presets'][name] = row
        print(name, row['window_ms_with_region'], 'ms', row['weights_mb'], 'MB', flush=True)
    report.write('preset_cost', results)
    return 0


if __name__ == '__main__':
    sys.exit(main())
