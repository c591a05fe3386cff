"""Many-bag throughput: windows/s of the fleet (Ray) against single-bag evaluation, same bags.

    python benchmarks/fleet_throughput.py                   # 8 bags, embedded model, CPU
    python benchmarks/fleet_throughput.py --checkpoint preset:base_8x224 --device cuda

Writes synthetic bags (sqlite3 and MCAP alternating, 640x480 rgb8, a window per frame as in
bag_throughput.py), evaluates them one after another in this process with `bags.evaluate`, then
with `fleet.evaluate_many` on a local Ray runtime (started once, on 127.0.0.1) with 1 and 2
workers and no model actor, and with 2 workers and one model actor. Each fleet run starts from
an empty output directory (nothing is reused) and its time includes hashing the bags and
starting its workers' engines. Writes benchmarks/results/fleet_throughput_<device>.json.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import report  # noqa: E402 - benchmarks/report.py, beside this script
from timesformer_ros.bags import Evaluation, evaluate, record_synthetic  # noqa: E402

TOPIC = '/camera/image_raw'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', default=None)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--bags', type=int, default=8)
    parser.add_argument('--seconds', type=float, default=10.0)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--workers', type=int, nargs='+', default=[1, 2])
    args = parser.parse_args()
    from timesformer_ros import fleet       # fleet imports ray: loopback only (start_local)
    ray = fleet.start_local(num_cpus=max(args.workers))
    import torch
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bags = []
        for i in range(args.bags):
            bags.append(tmp / f'bag_{i:02d}')
            record_synthetic(bags[-1], ('sqlite3', 'mcap')[i % 2], args.seconds, 30.0,
                             seed=i, width=args.width, height=args.height)
        # The node's default parameters file, but a window for every frame.
        params = tmp / 'params.yaml'
        params.write_text((REPO / 'config' / 'timesformer.yaml').read_text().replace(
            'sample_every: 0 ', 'sample_every: 1 '))
        config = fleet.FleetConfig(args.checkpoint, params, '/motion', args.device,
                                   args.batch_size)
        runs = []
        # One process, torch's default threads (one per core), then one thread as a Ray worker
        # has (Ray sets OMP_NUM_THREADS to a task's CPUs): the speed-ups are against the first.
        for threads in (torch.get_num_threads(), 1):
            torch.set_num_threads(threads)
            started = time.monotonic()
            windows = 0
            for bag in bags:
                summary = evaluate(Evaluation(bag, TOPIC, args.checkpoint, params, '/motion',
                                              args.device, args.batch_size, progress=False))
                windows += summary['windows']
            elapsed = time.monotonic() - started
            runs.append({'workers': f'single process (bags.evaluate, one bag after another, '
                                    f'{threads} torch threads)',
                         'model_actors': 0, 'seconds': round(elapsed, 2), 'windows': windows,
                         'windows_per_s': round(windows / elapsed, 1)})
        single_s = runs[0]['seconds']
        for workers, actors in [(w, 0) for w in args.workers] + [(max(args.workers), 1)]:
            started = time.monotonic()
            summary = fleet.evaluate_many(fleet.Fleet(
                bags, [TOPIC], tmp / f'out_{workers}_{actors}', config, workers=workers,
                model_actors=actors, progress=False))
            elapsed = time.monotonic() - started
            assert summary['windows'] == windows and not summary['failed'], summary['failed']
            runs.append({'workers': workers, 'model_actors': actors,
                         'seconds': round(elapsed, 2), 'windows': summary['windows'],
                         'windows_per_s': round(summary['windows'] / elapsed, 1),
                         'speed-up': round(single_s / elapsed, 2),
                         'server_batches': summary['server_batches']})
        model = summary['per_bag'][0]['summary']['model']
    ray.shutdown()
    result = {
        'benchmark': 'fleet_throughput', 'date': datetime.date.today().isoformat(),
        'device': args.device, 'cpus': os.cpu_count(), 'machine': platform.processor() or
        platform.machine(), 'python': platform.python_version(), 'torch': torch.__version__,
        'ray': ray.__version__, 'model': model,
        'bags': f'{args.bags} x {int(args.seconds * 30)} frames {args.width}x{args.height} '
                f'rgb8, sqlite3 and MCAP alternating',
        'batch_size': args.batch_size, 'runs': runs,
        'command': 'python ' + ' '.join(sys.argv),
    }
    report.write(f'fleet_throughput_{args.device.split(":")[0]}', result)
    return 0


if __name__ == '__main__':
    sys.exit(main())
