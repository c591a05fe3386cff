"""Hostile input, round two (issue 29): the costly attacks, each as its own process.

    python benchmarks/hostile_inputs.py                  # every attack, the code of this tree
    python benchmarks/hostile_inputs.py --code DIR       # another checkout's code (an old commit)
    python benchmarks/hostile_inputs.py truth_10m loop_glob   # some of them

Attacks (the issue's rows): `loop_dir` and `loop_glob` (row 4: a directory holding two symlinks
to itself and a bag, given as a directory and as a `**` glob, with --out-dir); `address_refused`
and `address_silent` (row 5: --address 127.0.0.1:1, and a port that accepts and never answers;
then SIGTERM where the run did not end by itself); `truth_none`, `truth_10m` (row 6: the 3 s
camera bag with no truth, and with a truth CSV of 10 million rows, 320 MB). Each runs under a
wall-clock limit (--limit, default 120 s; past it the process group is killed and the row says
so) and its peak RSS is its own (`test_hostile_bags.LAUNCHER`). The attack files are built by
test/test_hostile_inputs.py's builders. Writes benchmarks/results/hostile_inputs.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'test'))     # the attacks are the tests' own

import report  # noqa: E402 - benchmarks/report.py, beside this script

TOPIC = '/camera/image_raw'


def _children(pid: int) -> list:
    """Return the process ids of `pid`'s children (Linux /proc)."""
    found = []
    for task in Path(f'/proc/{pid}/task').iterdir():
        found += [int(c) for c in (task / 'children').read_text().split()]
    return found


def run(name: str, args: list, limit: float, then_sigterm: bool = False) -> dict:
    """Run `timesformer_bag ARGS` once; its exit, seconds, peak RSS and last line.

    Past `limit` s: with `then_sigterm`, SIGTERM and the seconds it takes to end (at most 60
    more, then SIGKILL); else SIGKILL at once.
    """
    from test_hostile_bags import LAUNCHER
    with tempfile.TemporaryDirectory() as scratch:
        peak, err_path = Path(scratch) / 'peak', Path(scratch) / 'err'
        with err_path.open('wb') as err:
            started = time.monotonic()
            process = subprocess.Popen(
                [sys.executable, '-c', LAUNCHER, peak, sys.executable, '-m',
                 'timesformer_ros.bags', *map(str, args)],
                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
            outcome, sigterm_s = 'ended by itself', None
            try:
                process.wait(limit)
            except subprocess.TimeoutExpired:
                if then_sigterm:       # to the CLI alone (the launcher waits for it)
                    for child in _children(process.pid):
                        os.kill(child, signal.SIGTERM)
                    term = time.monotonic()
                    try:
                        process.wait(60)
                        sigterm_s = round(time.monotonic() - term, 1)
                        outcome = f'no end in {limit:g} s; SIGTERM ended it'
                    except subprocess.TimeoutExpired:
                        outcome = f'no end in {limit:g} s, nor 60 s after SIGTERM: killed'
                else:
                    outcome = f'no end in {limit:g} s: killed'
                with contextlib.suppress(ProcessLookupError):   # what is left of the group
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            seconds = time.monotonic() - started
        text = err_path.read_text(errors='replace')
        peak_mb = round(int(peak.read_text()) / 1024) if peak.exists() and \
            peak.read_text() else None
    lines = [line for line in text.replace('\r', '\n').splitlines()
             if line.strip() and not line.startswith('[')]
    result = {'attack': name, 'exit_code': process.returncode, 'outcome': outcome,
              'seconds': round(seconds, 1), 'sigterm_s': sigterm_s, 'peak_rss_mb': peak_mb,
              'stderr_lines': len(lines), 'traceback': 'Traceback' in text,
              'escape_codes': '\x1b' in text, 'last_line': lines[-1][:300] if lines else ''}
    print(result, flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('attacks', nargs='*', help='the attacks to run (default: all)')
    parser.add_argument('--code', type=Path, default=REPO, help='the checkout whose code runs')
    parser.add_argument('--limit', type=float, default=120.0, help='seconds an attack may run')
    args = parser.parse_args()
    os.environ['PYTHONPATH'] = str(args.code)       # the code the evaluations run
    os.environ['CUDA_VISIBLE_DEVICES'] = ''
    import test_hostile_inputs as t
    from test_hostile_bags import START_NS
    from timesformer_ros.bags import record_synthetic
    work = Path(tempfile.mkdtemp(prefix='hostile-inputs-'))
    bag = work / 'bag'
    record_synthetic(bag, 'sqlite3', seconds=3.0, seed=11, width=160, height=120,
                     start_ns=START_NS)
    os.chdir(work)      # python -m puts the working directory first: not this checkout
    evaluate = ['evaluate', '--topic', TOPIC, '--params-file',
                REPO / 'test' / 'params_15fps.yaml', '--device', 'cpu']
    chosen = set(args.attacks)
    rows = []

    def wanted(name: str) -> bool:
        return not chosen or name in chosen

    if wanted('loop_dir') or wanted('loop_glob'):
        tree = t.looped_tree(work / 'tree', bag)
        if wanted('loop_dir'):
            rows.append(run('loop_dir: a directory with 2 symlinks to itself and a bag',
                            [*evaluate, tree, '--out-dir', work / 'out_loop_dir'], args.limit))
        if wanted('loop_glob'):
            rows.append(run('loop_glob: the same as TREE/**',
                            [*evaluate, f'{tree}/**', '--out-dir', work / 'out_loop_glob'],
                            args.limit))
    if wanted('address_refused'):
        rows.append(run('address_refused: --address 127.0.0.1:1',
                        [*evaluate, bag, '--out-dir', work / 'out_refused', '--address',
                         '127.0.0.1:1'], args.limit, then_sigterm=True))
    if wanted('address_silent'):
        listener = t.SilentListener()
        try:
            rows.append(run('address_silent: a port that accepts and never answers',
                            [*evaluate, bag, '--out-dir', work / 'out_silent', '--address',
                             f'127.0.0.1:{listener.port}'], args.limit, then_sigterm=True))
        finally:
            listener.close()
    if wanted('truth_none'):
        rows.append(run('truth_none: the 3 s bag, no truth', [*evaluate, bag], args.limit))
    if wanted('truth_10m'):
        csv = work / 'truth_10m.csv'
        t.truth_rows(csv, 10_000_000)
        name = f'truth_10m: a truth CSV of 10 M rows ({csv.stat().st_size >> 20} MB)'
        rows.append(run(name, [*evaluate, bag, '--truth', csv], args.limit))
        csv.unlink()
    report.write('hostile_inputs', {
        'benchmark': 'hostile_inputs', 'date': datetime.date.today().isoformat(),
        'code': str(args.code), 'command': 'python ' + ' '.join(sys.argv), 'attacks': rows},
        echo=False)
    return 0


if __name__ == '__main__':
    sys.exit(main())
