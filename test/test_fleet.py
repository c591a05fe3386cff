"""Many recordings on Ray (`timesformer_ros.fleet`): the single-bag numbers, faults, resuming.

One local Ray runtime of 2 CPUs for the module, bound to 127.0.0.1; 12 real bags written with
`rosbags` (sqlite3 and MCAP, 2 s of the synthetic camera at 64x48), one of them cut off; the
small checkpoint; truth from one CSV of frame stamps. Every fleet result is checked against
`bags.evaluate` run on the same bag on its own.
"""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, console_script
from timesformer_ros.bags import Evaluation, EvaluationOutputs, evaluate, record_synthetic

# Not imported here: `fleet.start_local` sets what Ray reads at its import (loopback only).
pytestmark = pytest.mark.skipif(importlib.util.find_spec('ray') is None, reason='no ray')

CONFIG = REPO / 'config' / 'timesformer.yaml'
TOPIC = '/camera/image_raw'
START_NS = 1_700_000_000_000_000_000
FPS = 30.0
SECONDS = 2.0
TIMING = ('latency_ms',)                       # per window: the only field that may differ
RUN_DEPENDENT = ('seconds', 'windows_per_s')    # per bag: wall time


@pytest.fixture(scope='module')
def ray_runtime():
    from timesformer_ros import fleet
    ray = fleet.start_local(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope='module')
def fleet_bags(tmp_path_factory):
    """11 good bags (6 sqlite3, 5 MCAP, each its own seed) and one MCAP bag cut off mid-file."""
    root = tmp_path_factory.mktemp('fleet')
    good = []
    for i in range(11):
        storage = 'mcap' if i % 2 else 'sqlite3'
        path = root / 'bags' / f'{storage}_{i:02d}'
        record_synthetic(path, storage, seconds=SECONDS, fps=FPS, seed=100 + i, width=64,
                         height=48, start_ns=START_NS)
        good.append(path)
    corrupt = root / 'bags' / 'mcap_cut_off'
    record_synthetic(corrupt, 'mcap', seconds=SECONDS, fps=FPS, seed=99, width=64, height=48,
                     start_ns=START_NS)
    mcap = next(corrupt.glob('*.mcap'))
    mcap.write_bytes(mcap.read_bytes()[:mcap.stat().st_size // 2])
    truth = root / 'truth.csv'
    frames = int(SECONDS * FPS)
    truth.write_text('stamp,label\n' + ''.join(
        f'{START_NS + round(i * 1e9 / FPS)},{("left", "right", "still")[i * 3 // frames]}\n'
        for i in range(frames)))
    return {'good': good, 'corrupt': corrupt, 'truth': truth, 'root': root}


@pytest.fixture(scope='module')
def single(fleet_bags, small_checkpoint, tmp_path_factory):
    """{bag: (records, summary)} of `bags.evaluate` on each good bag, one by one."""
    out = tmp_path_factory.mktemp('single')
    results = {}
    for bag in fleet_bags['good']:
        lines = out / f'{bag.name}.jsonl'
        summary = evaluate(Evaluation(bag, TOPIC, str(small_checkpoint), CONFIG,
                                      str(fleet_bags['truth']), 'cpu', progress=False),
                           EvaluationOutputs(jsonl=lines))
        results[str(bag.resolve())] = ([json.loads(line) for line in lines.open()], summary)
    return results


def fleet_config(fleet_bags, small_checkpoint):
    from timesformer_ros.fleet import FleetConfig
    return FleetConfig(str(small_checkpoint), CONFIG, str(fleet_bags['truth']), 'cpu')


def stored(out_dir: Path) -> dict:
    """{bag: (records without bag and topic, single-bag summary)} of an output directory."""
    results = {}
    for path in (out_dir / 'bags').glob('*.json'):
        data = json.loads(path.read_text())
        records = [json.loads(line) for line in path.with_suffix('.jsonl').open()]
        assert all(r.pop('bag') == data['bag'] and r.pop('topic') == TOPIC for r in records)
        results[data['bag']] = (records, data['summary'])
    return results


def without(record: dict, keys) -> dict:
    return {k: v for k, v in record.items() if k not in keys}


# Ray's workers and this process run the model with different thread counts, so float32 sums
# are added in another order: scores (rounded to 6 decimals) may differ in the last decimal
# (seen: 0.32672 against 0.326721). Floats agree within this; labels, ids, counts and every
# other non-float value exactly.
SCORES_WITHIN = 1e-5


def assert_close(got, expected, where: str = ''):
    """Equal structures, with floats within SCORES_WITHIN and everything else exact."""
    if isinstance(expected, float) or isinstance(got, float):
        assert isinstance(got, (int, float)) and not isinstance(got, bool), where
        assert got == pytest.approx(expected, rel=0, abs=SCORES_WITHIN), where
    elif isinstance(expected, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(expected), where
        for key in expected:
            assert_close(got[key], expected[key], f'{where}.{key}')
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), where
        for i, (a, b) in enumerate(zip(got, expected)):
            assert_close(a, b, f'{where}[{i}]')
    else:
        assert got == expected, where


def test_results_compare_with_float_noise_and_no_other_difference():
    """The comparison the fleet tests use: 0.32672 against 0.326721 agrees, a label does not."""
    window = {'results': [{'class_id': 1, 'class_name': 'right', 'score': 0.326721}], 'seq': 3}
    assert_close({**window, 'results': [{**window['results'][0], 'score': 0.32672}]}, window)
    for changed in ({'class_id': 2}, {'class_name': 'left'}, {'score': 0.3268}):
        with pytest.raises(AssertionError):
            assert_close({**window, 'results': [{**window['results'][0], **changed}]}, window)
    with pytest.raises(AssertionError):
        assert_close({**window, 'seq': 4}, window)


def assert_same(fleet: dict, single: dict):
    assert sorted(fleet) == sorted(single)
    for bag, (records, summary) in single.items():
        got, got_summary = fleet[bag]
        assert len(got) == len(records) == summary['windows'] > 0, bag
        for i, (a, b) in enumerate(zip(got, records)):
            assert_close(without(a, TIMING), without(b, TIMING), f'{bag} window {i}')
        assert_close(without(got_summary, RUN_DEPENDENT), without(summary, RUN_DEPENDENT), bag)


def test_twelve_bags_give_the_single_bag_results_and_name_the_corrupt_one(
        ray_runtime, fleet_bags, single, small_checkpoint, tmp_path):
    from timesformer_ros.fleet import Fleet, evaluate_many, find_bags
    bags = find_bags([fleet_bags['root'] / 'bags'])
    assert len(bags) == 12
    out = tmp_path / 'out'
    summary = evaluate_many(Fleet(bags, [TOPIC], out, fleet_config(fleet_bags, small_checkpoint),
                                  workers=2, model_actors=0, progress=False))
    assert summary['units'] == 12 and summary['evaluated'] == 11 and summary['reused'] == 0
    assert [f['bag'] for f in summary['failed']] == [str(fleet_bags['corrupt'].resolve())]
    assert 'breaks off' in summary['failed'][0]['error']
    assert json.loads((out / 'summary.json').read_text()) == summary
    assert_same(stored(out), single)
    # The aggregate: the single-bag confusion matrices summed, accuracy over all their windows.
    matrix = sum(np.array(s['confusion']['matrix']) for _, s in single.values())
    assert summary['confusion']['matrix'] == matrix.tolist()
    assert summary['scored_windows'] == matrix.sum() == sum(
        s['scored_windows'] for _, s in single.values()) > 200
    assert summary['accuracy'] == pytest.approx(np.trace(matrix) / matrix.sum())
    assert summary['windows'] == sum(s['windows'] for _, s in single.values())
    segments = summary['segment_metrics']
    assert segments['true_segments'] == sum(
        s['segment_metrics']['true_segments'] for _, s in single.values())
    if all(s['segment_metrics']['predicted_segments'] for _, s in single.values()):
        assert min(s['segment_metrics']['f1@0.1'] for _, s in single.values()) <= \
            segments['f1@0.1'] <= max(s['segment_metrics']['f1@0.1'] for _, s in single.values())


def test_model_actors_batch_windows_across_bags_with_the_same_results(
        ray_runtime, fleet_bags, single, small_checkpoint, tmp_path):
    from timesformer_ros.fleet import Fleet, evaluate_many
    bags = fleet_bags['good'][:4]
    summary = evaluate_many(Fleet(bags, [TOPIC], tmp_path / 'out', fleet_config(
        fleet_bags, small_checkpoint), workers=2, model_actors=1, progress=False))
    assert summary['model_actors'] == 1 and summary['evaluated'] == 4
    # Every window went through the actor. (Whether two bags' batches meet in one forward pass
    # depends on timing, so it is not asserted here; BENCHMARKS.md reports the batch sizes.)
    batches = {int(size): count for size, count in summary['server_batches'][0].items()}
    assert sum(size * count for size, count in batches.items()) == summary['windows'] > 0
    assert_same(stored(tmp_path / 'out'),
                {str(b.resolve()): single[str(b.resolve())] for b in bags})


def test_an_interrupted_run_resumes_without_redoing_finished_bags(
        ray_runtime, fleet_bags, single, small_checkpoint, tmp_path):
    """The first run covers 5 bags (an interrupted run); the CLI, on all 12, reuses them.

    The CLI runs as a process on the module's runtime (`--address`).
    """
    from timesformer_ros.fleet import Fleet, evaluate_many
    out = tmp_path / 'out'
    first = fleet_bags['good'][:5]
    evaluate_many(Fleet(first, [TOPIC], out, fleet_config(fleet_bags, small_checkpoint),
                        workers=2, progress=False))
    before = {p.name: p.stat().st_mtime_ns for p in (out / 'bags').iterdir()}
    assert len(before) == 10
    address = ray_runtime.get_runtime_context().gcs_address
    assert address.startswith('127.0.0.1:')
    result = subprocess.run(
        console_script('timesformer_bag') + [
            'evaluate', str(fleet_bags['root'] / 'bags' / '*'),
            '--topic', TOPIC, '--checkpoint', str(small_checkpoint), '--params-file', str(CONFIG),
            '--truth', str(fleet_bags['truth']), '--device', 'cpu', '--out-dir', str(out),
            '--address', address, '--workers', '2'],
        capture_output=True, text=True, timeout=240, cwd=REPO)   # the installed package, as
    assert result.returncode == 1, result.stderr                 # users run it (colcon too)
    assert '12 bags: 6 evaluated, 5 reused, 1 failed' in result.stdout, result.stdout
    assert f'error: {fleet_bags["corrupt"].resolve()}' in result.stderr.replace(
        str(next(fleet_bags['corrupt'].glob('*.mcap')).resolve()),
        str(fleet_bags['corrupt'].resolve()))
    assert '12/12 bags (1 failed, 5 reused)' in result.stderr and 'windows/s' in result.stderr
    after = {p.name: p.stat().st_mtime_ns for p in (out / 'bags').iterdir()}
    assert {name: after[name] for name in before} == before     # not written again
    assert len(after) == 22
    summary = json.loads((out / 'summary.json').read_text())
    assert [u['status'] for u in summary['per_bag']].count('reused') == 5
    assert_same(stored(out), single)


def test_the_key_is_the_checkpoint_and_parameters_not_their_paths(small_checkpoint, tmp_path):
    from timesformer_ros.fleet import FleetConfig, run_digest
    copy = tmp_path / 'copy'
    copy.mkdir()
    for part in Path(small_checkpoint).parent.glob(Path(small_checkpoint).stem + '.*'):
        shutil.copy(part, copy / part.name)
    params = tmp_path / 'params.yaml'
    params.write_text(CONFIG.read_text())
    base = run_digest(FleetConfig(str(small_checkpoint), CONFIG, None, 'cpu'), TOPIC)
    assert run_digest(FleetConfig(str(copy / Path(small_checkpoint).name), params, None, 'cpu'),
                      TOPIC) == base
    params.write_text(CONFIG.read_text().replace('stride: 1', 'stride: 2'))
    assert 'stride: 2' in params.read_text()
    assert run_digest(FleetConfig(str(small_checkpoint), params, None, 'cpu'), TOPIC) != base
    assert run_digest(FleetConfig(str(small_checkpoint), CONFIG, None, 'cpu'), '/other') != base


def started_here(line: str) -> bool:
    """Whether a socket line of `ss -p` belongs to a process this test process started.

    The machine may run other Ray runtimes (another user's suite): only this one's is judged.
    """
    for pid in map(int, re.findall(r'pid=(\d+)', line)):
        while pid > 1:
            if pid == os.getpid():
                return True
            try:
                stat = Path(f'/proc/{pid}/stat').read_text()
            except OSError:
                break
            pid = int(stat.rsplit(')', 1)[1].split()[1])      # the parent's pid
    return False


def test_ray_listens_on_loopback_only(ray_runtime):
    """Every TCP socket this Ray runtime listens on is bound to 127.0.0.1 (`ss -tlnp`)."""
    if shutil.which('ss') is None:
        pytest.skip('no ss')
    lines = subprocess.run(['ss', '-tlnpH'], capture_output=True, text=True).stdout.splitlines()
    ray_lines = [line for line in lines if started_here(line) and
                 any(name in line for name in ('gcs_server', 'raylet', 'ray::'))]
    assert ray_lines
    for line in ray_lines:
        local = line.split()[3]
        assert local.rsplit(':', 1)[0] in ('127.0.0.1', '[::ffff:127.0.0.1]'), line


def test_one_bag_evaluates_without_ray_and_many_ask_for_it(fleet_bags, small_checkpoint):
    """With `ray` hidden, single-bag evaluate runs; several bags give a one-line error."""
    code = f'''
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'ray':
            raise ImportError(f'{{name}} is hidden')
sys.meta_path.insert(0, Hide())
from timesformer_ros.bags import cli
args = ['evaluate', {str(fleet_bags['good'][0])!r}, '--topic', {TOPIC!r}, '--checkpoint',
        {str(small_checkpoint)!r}, '--device', 'cpu']
assert cli.main(args) == 0
assert cli.main(args[:2] + [{str(fleet_bags['good'][1])!r}] + args[2:] +
                 ['--out-dir', {str(fleet_bags['root'] / 'no_ray')!r}]) == 1
assert 'ray' not in sys.modules
'''
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                            text=True, timeout=120, env={**os.environ, 'PYTHONPATH': str(REPO)})
    assert result.returncode == 0, result.stderr
    assert ' windows in ' in result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        'timesformer_bag: error: evaluating several bags needs Ray: pip install -r '
        'requirements/fleet.txt (or the package\'s fleet extra)')
