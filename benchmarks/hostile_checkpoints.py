"""Malformed checkpoints against `timesformer_convert`: exit code, lines, peak memory, time.

    python benchmarks/hostile_checkpoints.py                    # every case, this tree's code
    python benchmarks/hostile_checkpoints.py --code DIR CASE ...  # another checkout, some cases

The cases are test/test_hostile_checkpoints.py's (built as real files in each format the
package reads). Each conversion runs as its own process with PYTHONPATH=DIR, its address space
capped at 14 GiB (so a model claiming 51 GB fails instead of swapping) and a 180 s timeout; its
peak RSS comes from os.wait4 (it includes the image of this process, which forked it: compare
with the `baseline` row, a valid tiny checkpoint). Writes
benchmarks/results/hostile_checkpoints.json.
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'test'))     # the cases are the tests' own

import report  # noqa: E402 - benchmarks/report.py, beside this script

ADDRESS_SPACE = 14 << 30


def convert(argv: list, code: Path, timeout: float = 180.0) -> tuple:
    """Run timesformer_convert ARGV; return (exit code, output, peak RSS MB, seconds)."""
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    env = {**os.environ, 'PYTHONPATH': str(code), 'CUDA_VISIBLE_DEVICES': ''}
    with tempfile.TemporaryFile('w+') as out:
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, '-m', 'timesformer_ros.convert', *argv],
                                stdout=out, stderr=subprocess.STDOUT, preexec_fn=cap, env=env,
                                cwd=tempfile.gettempdir())
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        timer.cancel()
        out.seek(0)
        return (os.waitstatus_to_exitcode(status), out.read(), usage.ru_maxrss / 1024,
                time.monotonic() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--code', type=Path, default=REPO, help='the checkout whose code runs')
    parser.add_argument('cases', nargs='*', help='case names (default: all)')
    args = parser.parse_args()
    import test_hostile_checkpoints as t
    rows = []
    for name in args.cases or ['baseline', *sorted(t.CASES)]:
        work = Path(tempfile.mkdtemp(prefix='hostile-ckpt-'))
        attack = t.own()(work) if name == 'baseline' else t.CASES[name][0](work)
        code, output, peak, seconds = convert(attack.argv(work / 'out'), args.code)
        lines = output.strip().splitlines()
        rows.append({'case': name, 'exit_code': code, 'lines': len(lines),
                     'traceback': 'Traceback' in output, 'peak_rss_mb': round(peak),
                     'seconds': round(seconds, 1),
                     'last_line': (lines[-1] if lines else '').replace(str(work), '$D')[:300]})
        print(rows[-1], flush=True)
    report.write('hostile_checkpoints', {
        'benchmark': 'hostile_checkpoints', 'date': datetime.date.today().isoformat(),
        'code': str(args.code), 'command': 'python ' + ' '.join(sys.argv), 'cases': rows},
        echo=False)
    return 0


if __name__ == '__main__':
    sys.exit(main())
