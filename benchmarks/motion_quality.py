"""The embedded motion model on clips training could not shape, through the real bag path.

    python benchmarks/motion_quality.py                       # 350 clips each way, ~4 min
    python benchmarks/motion_quality.py --checkpoint C --clips 700

Writes a 30 Hz 160x120 camera bag of clips from the tests' independent generator
(test/independent_clips.py, written apart from synthetic.py and world.py and never trained or
tuned on; test/independent_bags.py), 2 s per clip, and runs `timesformer_bag evaluate BAG
--topic /camera/image_raw --truth /motion` on it with default parameters, as a user would: the
node's windowing at the checkpoint's clip rate. Then the same clips played backwards (truth:
the reversed motion), which only an order-aware model gets right. Also `timesformer_train
report` on the held-out synthetic clips and the generator's clips binned by speed, growth and
size (the operating envelope). Writes benchmarks/results/motion_quality.json.
"""

from __future__ import annotations

import argparse
import datetime
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'test'))

import report  # noqa: E402 - benchmarks/report.py, beside this script
from independent_bags import write_independent_bag  # noqa: E402
from timesformer_ros.checkpoints import embedded_checkpoint  # noqa: E402
from timesformer_ros.train import report as model_report  # noqa: E402

SEED = 7001      # the test suite uses other seeds of the generator


def evaluate_bag(bag: Path, checkpoint: str) -> dict:
    """Run `timesformer_bag evaluate` with default parameters; return accuracy and windows."""
    command = [sys.executable, '-m', 'timesformer_ros.bags', 'evaluate', str(bag), '--topic',
               '/camera/image_raw', '--truth', '/motion', '--out', str(bag) + '.jsonl']
    if checkpoint:
        command += ['--checkpoint', checkpoint]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.search(r'accuracy ([\d.]+)% on (\d+)', result.stdout)
    sampling = re.search(r'sampling (.*)', result.stdout)
    return {'accuracy': float(found.group(1)) / 100, 'scored_windows': int(found.group(2)),
            'sampling': sampling.group(1) if sampling else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', default='', help='default: the embedded model')
    parser.add_argument('--clips', type=int, default=350, help='clips each way (balanced)')
    parser.add_argument('--report-clips', type=int, default=2100)
    args = parser.parse_args()
    import torch
    result = {'benchmark': 'motion_quality', 'date': datetime.date.today().isoformat(),
              'torch': torch.__version__, 'checkpoint': args.checkpoint or 'embedded',
              'clips_each_way': args.clips, 'seed': SEED}
    with tempfile.TemporaryDirectory() as tmp:
        for name, reverse in (('forward', False), ('backwards', True)):
            bag = Path(tmp) / name
            frames = write_independent_bag(bag, SEED, args.clips, reverse=reverse)
            result[f'bag_{name}'] = {'frames': frames, **evaluate_bag(bag, args.checkpoint)}
    result['report'] = model_report(Path(args.checkpoint or embedded_checkpoint()),
                                    args.report_clips,
                                    independent=REPO / 'test' / 'independent_clips.py',
                                    independent_clips=args.clips)
    result['command'] = 'python ' + ' '.join(sys.argv)
    report.write('motion_quality', result)
    return 0


if __name__ == '__main__':
    sys.exit(main())
