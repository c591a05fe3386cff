"""Offline evaluation throughput: windows/s of `timesformer_bag evaluate` on a synthetic bag.

Measured next to reading + decoding alone (the bound when the model is not the bottleneck).

    python benchmarks/bag_throughput.py                          # embedded motion model, CPU
    python benchmarks/bag_throughput.py --checkpoint preset:base_8x224 --device cuda

Writes benchmarks/results/bag_throughput_<device>.json.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import report  # noqa: E402 - benchmarks/report.py, beside this script
from timesformer_ros.bags import (  # noqa: E402
    IMAGE_TYPES, Evaluation, evaluate, iter_messages, record_synthetic)
from timesformer_ros.frames import decode  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', default=None)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--seconds', type=float, default=30.0)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--storage', default='mcap', choices=('mcap', 'sqlite3'))
    parser.add_argument('--batch-size', type=int, default=8)
    args = parser.parse_args()
    import torch
    with tempfile.TemporaryDirectory() as tmp:
        bag = Path(tmp) / 'bench_bag'
        frames = record_synthetic(bag, args.storage, args.seconds, 30.0, seed=3,
                                  width=args.width, height=args.height)
        started = time.monotonic()
        for _, msg in iter_messages(bag, '/camera/image_raw', IMAGE_TYPES):
            decode(msg)
        decode_s = time.monotonic() - started
        # The node's default parameters file, but a window for every frame.
        params = Path(tmp) / 'params.yaml'
        params.write_text((REPO / 'config' / 'timesformer.yaml').read_text().replace(
            'sample_every: 0 ', 'sample_every: 1 '))
        summary = evaluate(Evaluation(bag, '/camera/image_raw', checkpoint=args.checkpoint,
                                      params_file=params, device=args.device,
                                      batch_size=args.batch_size, progress=False))
    result = {
        'benchmark': 'bag_throughput', 'date': datetime.date.today().isoformat(),
        'device': args.device, 'torch': torch.__version__, 'model': summary['model'],
        'bag': f'{frames} frames {args.width}x{args.height} rgb8, {args.storage}',
        'batch_size': args.batch_size, 'windows': summary['windows'],
        'evaluate_s': summary['seconds'], 'windows_per_s': summary['windows_per_s'],
        'read_and_decode_frames_per_s': round(frames / decode_s, 1),
        'command': 'python ' + ' '.join(sys.argv),
    }
    report.write(f'bag_throughput_{args.device.split(":")[0]}', result)
    return 0


if __name__ == '__main__':
    sys.exit(main())
