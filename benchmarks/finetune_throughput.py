"""Training from recordings: window extraction windows/s, training steps/s, one process and Ray.

    .venv/bin/python benchmarks/finetune_throughput.py BAG SEGMENTS.csv [--steps 60] \
        [--workers 2] [--json benchmarks/results/finetune_throughput.json]

Extraction: `bags.dataset.cut_windows` on BAG into a fresh cache (reading, decoding, the node's
sampling, crops written to disk), as windows/s. Training: `timesformer_train train --bags BAG`
with the default settings and --steps, in one process and on --workers Ray Train workers (the
local runtime on 127.0.0.1, started by the command), as steps/s from the training time the run
records (the single process's steps only; the Ray figure includes starting the workers, each
cutting its windows from the cache, since that is what a user waits for), and the command's
whole wall time.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from timesformer_ros.bags.dataset import cut_windows  # noqa: E402
from timesformer_ros.finetune import BagTraining, starting_point  # noqa: E402
from timesformer_ros.digests import digest  # noqa: E402
from timesformer_ros.train import main as train_main  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('bag', type=Path)
    parser.add_argument('truth', type=Path)
    parser.add_argument('--topic', default='/camera/image_raw')
    parser.add_argument('--steps', type=int, default=60)
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--json', type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {'bag': str(args.bag), 'date': time.strftime('%Y-%m-%d'),
               'python': platform.python_version(), 'torch': torch.__version__,
               'cpus': __import__('os').cpu_count()}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        start = starting_point(BagTraining(bags=[args.bag], topic=args.topic,
                                           truth=str(args.truth), out=scratch / 'x'))
        began = time.perf_counter()
        windows = cut_windows(args.bag, args.topic, start.cutting, scratch / 'cache',
                              digest(args.bag), progress=False)
        seconds = time.perf_counter() - began
        results['extraction'] = {'frames': windows.summary['frames'],
                                 'windows': len(windows.windows),
                                 'seconds': round(seconds, 2),
                                 'windows_per_s': round(len(windows.windows) / seconds, 1)}
        for workers in (0, args.workers):
            out = scratch / f'run{workers}'
            shutil.copytree(scratch / 'cache', Path(f'{out}.windows'))
            command = ['train', '--bags', str(args.bag), '--topic', args.topic, '--truth',
                       str(args.truth), '--out', str(out), '--steps', str(args.steps)]
            if workers:
                command += ['--workers', str(workers)]
            began = time.perf_counter()
            assert train_main(command) == 0
            wall = time.perf_counter() - began
            record = json.loads(out.with_suffix('.json').read_text())['training']
            results[f'train_workers_{workers}'] = {
                'steps': record['steps'], 'training_seconds': record['seconds'],
                'steps_per_s': round(record['steps'] / record['seconds'], 2),
                'windows_per_s': round(record['steps'] * record['batch_size'] /
                                       record['seconds'], 1),
                'command_wall_s': round(wall, 1), 'val_accuracy': record['val_accuracy']}
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
