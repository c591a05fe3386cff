"""Hostile bags against `timesformer_bag evaluate`: each attack's exit, peak memory and message.

    python benchmarks/hostile_bags.py             # the code of this tree
    python benchmarks/hostile_bags.py --code DIR  # another checkout's code (e.g. an old commit)

The attack files are built by test/test_hostile_bags.py's own builders into a temporary
directory. Each evaluation runs as its own process (the embedded model, config/timesformer.yaml,
CPU); its peak RSS is that process's alone. Writes benchmarks/results/hostile_bags.json.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'test'))     # the attacks are the tests' own

import report  # noqa: E402 - benchmarks/report.py, beside this script


def run(name: str, args: list, preexec=None) -> dict:
    """Evaluate once in a fresh process; return its exit code, peak RSS and last message.

    The tests' `bag_cli` starts it from a small launcher, so that the peak is the CLI's own
    (a child's ru_maxrss includes the image of the process that forked it).
    """
    from test_hostile_bags import bag_cli
    started = time.monotonic()
    code, _, stderr, peak_mb = bag_cli(*args, preexec_fn=preexec)
    lines = [line for line in stderr.replace('\r', '\n').splitlines()
             if line.strip() and not line.startswith(('[', 'WARNING'))]
    result = {'attack': name, 'exit_code': code, 'peak_rss_mb': round(peak_mb),
              'seconds': round(time.monotonic() - started, 1), 'stderr_lines': len(lines),
              'last_line': lines[-1][:300] if lines else ''}
    print(result, flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--code', type=Path, default=REPO, help='the checkout whose code runs')
    args = parser.parse_args()
    os.environ['PYTHONPATH'] = str(args.code)       # the code the evaluations run
    os.environ['CUDA_VISIBLE_DEVICES'] = ''
    import test_hostile_bags as t
    from timesformer_ros.bags import record_synthetic
    work = Path(tempfile.mkdtemp(prefix='hostile-bags-'))
    t.camera_bag(work / 'clean_sqlite', 'sqlite3')
    t.camera_bag(work / 'garbage_sqlite', 'sqlite3', replace={t.BAD: lambda _: t.GARBAGE})
    t.camera_bag(work / 'garbage_mcap', 'mcap', replace={t.BAD: lambda _: t.GARBAGE})
    t.mcap_bomb(work / 'zstd_1g.mcap', t.GIB, compression='zstd')
    t.mcap_bomb(work / 'lz4_1g.mcap', t.GIB, compression='lz4')
    t.mcap_bomb(work / 'zstd_4g.mcap', 4 * t.GIB, compression='zstd')
    t.mcap_bomb(work / 'liar.mcap', t.GIB, declared=1 << 20, frames=40)
    record_synthetic(work / 'truth_bag', 'sqlite3', seconds=3.0, seed=11, width=160, height=120)
    os.chdir(work)      # python -m puts the working directory first: not this checkout
    evaluate = ['evaluate', '--topic', '/camera/image_raw', '--params-file',
                REPO / 'config' / 'timesformer.yaml', '--device', 'cpu']
    rows = [run('clean sqlite3 bag', [*evaluate, work / 'clean_sqlite'])]
    for name, bag in [('garbage message at 1/3, sqlite3', 'garbage_sqlite'),
                      ('garbage message at 1/3, MCAP', 'garbage_mcap'),
                      ('zstd chunk inflating to 1 GiB', 'zstd_1g.mcap'),
                      ('lz4 chunk inflating to 1 GiB', 'lz4_1g.mcap'),
                      ('zstd chunk inflating to 4 GiB', 'zstd_4g.mcap'),
                      ('chunk declaring 1 MiB, holding 1 GiB', 'liar.mcap')]:
        path = work / bag
        if path.is_file():
            name += f' ({path.stat().st_size // 1024} KiB file)'
        rows.append(run(name, [*evaluate, path]))
    out_bag = [*evaluate, work / 'truth_bag', '--out-bag', work / 'out_bag']
    rows.append(run('--out-bag on a full disk', out_bag, t.full_disk(64 << 10)))
    rows[-1]['left_behind'] = sorted(p.name for p in work.iterdir() if p.name.startswith('out'))
    rows.append(run('--out-bag again after that', out_bag))
    confusion = [*evaluate, work / 'truth_bag', '--truth', '/motion', '--confusion',
                 '/proc/confusion.png']
    rows.append(run('--confusion to /proc', confusion))
    report.write('hostile_bags', {
        'benchmark': 'hostile_bags', 'date': datetime.date.today().isoformat(),
        'code': str(args.code), 'command': 'python ' + ' '.join(sys.argv), 'attacks': rows},
        echo=False)
    return 0


if __name__ == '__main__':
    sys.exit(main())
