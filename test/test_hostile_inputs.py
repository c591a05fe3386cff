"""Hostile input, round two (issue 29): each row of the issue's table as a test.

Truth files, training clips, bag discovery, a cluster address that does not answer, clip rates,
camera names, parameter sets, outputs on a full disk. Each attack is the issue's exact input,
run where it matters as the user runs it (the console script as a process, its exit code, its
one error line, no traceback) on real files. Row numbers are the issue's table.
`benchmarks/hostile_inputs.py` runs the costly ones (10 million truth rows, a silent cluster
address, a symlink loop with a `**` glob) against any checkout.
"""

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, console_script
from test_hostile_bags import LAUNCHER, START_NS, TOPIC, bag_cli
from timesformer_ros import synthetic
from timesformer_ros.bags import record_synthetic
from timesformer_ros.bags.discover import find_bags
from timesformer_ros.bags.truth import MAX_LINE_BYTES, TruthError, read_truth_csv

CONFIG = REPO / 'test' / 'params_15fps.yaml'
FPS = 30.0


def frame_stamp(i: int) -> int:
    return START_NS + round(i * 1e9 / FPS)


@pytest.fixture(scope='module')
def bag(tmp_path_factory):
    """Record the synthetic camera, 3 s of 160x120 at 30 fps from START_NS, truth on /motion."""
    path = tmp_path_factory.mktemp('bag') / 'bag'
    record_synthetic(path, 'sqlite3', seconds=3.0, seed=11, width=160, height=120,
                     start_ns=START_NS)
    return path


def one_error(stderr: str, prog: str = 'timesformer_bag') -> str:
    """Return the one error line of a run's stderr; no traceback, no escape code."""
    assert 'Traceback' not in stderr and '\x1b' not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith(f'{prog}: error:')]
    assert len(lines) == 1, stderr
    return lines[0]


# -- rows 1 and 11: a truth CSV, row by row ---------------------------------------------------

TRUTH_ATTACKS = {
    'one_column': (b'stamp,label\n1700000000.0\n', 'row 2: expected 2 fields'),
    'inf': (b'inf,static\n', "row 1: the stamp 'inf' is out of range"),
    '1e300': (b'1700000000.0,static\n1e300,static\n', "row 2: the stamp '1e300' is out of"),
    'field_200_kib': (b'1700000000.0,' + b'a' * (200 << 10) + b'\n',
                      f'row 1: longer than {MAX_LINE_BYTES} bytes'),
    'abc': (b'abc,static\n', "row 1: the stamp 'abc' is not a number"),
    'nan': (b'1.0,static\nnan,static\n', "row 2: the stamp 'nan' is out of range"),
    'not_utf8': (b'1.0,static\n2.0,\xff\xfe\n', 'row 2: not UTF-8 text'),
    'open_quote': (b'1.0,"static\n2.0,static\n', 'row 2: unexpected end of data'),
    'empty_label': (b'1.0,static\n2.0, \n', 'row 2: the label is empty'),
    'no_rows': (b'stamp,label\n\n', 'no truth rows'),
}


@pytest.mark.parametrize('name', TRUTH_ATTACKS)
def test_every_truth_row_is_checked_and_an_error_names_the_file_and_the_row(name, tmp_path):
    data, message = TRUTH_ATTACKS[name]
    path = tmp_path / f'{name}.csv'
    path.write_bytes(data)
    with pytest.raises(TruthError) as caught:
        read_truth_csv(path)
    text = str(caught.value)
    assert text.startswith(f'{path}: ') and message in text, text
    assert '\n' not in text and len(text) < 300


@pytest.mark.parametrize('name', ['one_column', 'inf', 'field_200_kib'])
def test_a_bad_truth_csv_is_one_line_and_exit_2_before_the_model_loads(name, bag, tmp_path):
    """The issue's tracebacks (IndexError, OverflowError, _csv.Error), through the CLI."""
    data, message = TRUTH_ATTACKS[name]
    truth = tmp_path / 'truth.csv'
    truth.write_bytes(data)
    out = tmp_path / 'windows.jsonl'
    code, _, err, _ = bag_cli('evaluate', bag, '--topic', TOPIC, '--truth', truth,
                              '--params-file', CONFIG, '--out', out, timeout=120)
    assert code == 2, err
    line = one_error(err)
    assert str(truth) in line and message in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ['truth.csv']   # nothing written


def test_a_later_row_for_the_same_stamp_wins_and_runs_follow_the_stamps(tmp_path):
    path = tmp_path / 'truth.csv'
    path.write_text('stamp,label\n3.0,b\n1.0,a\n2,x\n2.0,a\n"4.0","b"\n')
    truth = read_truth_csv(path)
    assert truth.get(1_000_000_000) == 'a' and truth.get(2_000_000_000) == 'a'
    assert truth.get(2) == 'x' and truth.get(5) is None
    assert [(s.label, s.start, s.end) for s in truth.runs()] == [
        ('x', 2, 2), ('a', 1_000_000_000, 2_000_000_000), ('b', 3_000_000_000, 4_000_000_000)]


# -- row 6: a truth CSV of many rows -----------------------------------------------------------

def truth_rows(path: Path, rows: int, frames: int = 90):
    """Write `rows` truth rows: every frame of the bag, then filler at stamps before it."""
    with path.open('w') as handle:
        handle.write('stamp,label\n')
        handle.writelines(f'{frame_stamp(i)},static\n' for i in range(frames))
        handle.writelines(f'{i},moving_left\n' for i in range(rows - frames))


def test_a_large_truth_file_costs_memory_in_proportion_to_its_rows(bag, tmp_path):
    """500 k rows (14 MB): at most 60 MB more peak memory than 90 rows (12 bytes a row kept).

    The issue's 10 M rows (320 MB) took 3.0 GB against 0.98 GB without: about 200 bytes a
    row. `benchmarks/hostile_inputs.py truth_10m` measures that file.
    """
    small, large = tmp_path / 'small.csv', tmp_path / 'large.csv'
    truth_rows(small, 90)
    truth_rows(large, 500_000)
    peaks = {}
    for path in (small, large):
        code, out, err, peaks[path.name] = bag_cli(
            'evaluate', bag, '--topic', TOPIC, '--truth', path, '--params-file', CONFIG,
            '--device', 'cpu', timeout=240)
        assert code == 0, err
        assert 'accuracy' in out and 'Traceback' not in err
    assert peaks['large.csv'] - peaks['small.csv'] < 60, peaks


def test_fleet_units_share_the_truth_read_once(bag, tmp_path):
    """A unit is given the parsed truth: it never opens the file (here gone) again."""
    from timesformer_ros.fleet import FleetConfig, evaluate_unit
    path = tmp_path / 'truth.csv'
    truth_rows(path, 200)
    truth = read_truth_csv(path)
    path.unlink()
    config = FleetConfig(params_file=CONFIG, truth=str(path), device='cpu')
    result = evaluate_unit(str(bag), TOPIC, 'k' * 20, config, set(), truth=truth)
    assert result['status'] == 'done', result
    assert result['summary']['scored_windows'] > 0


# -- row 12: a truth that matches no window ------------------------------------------------------

def test_a_truth_that_matches_no_window_warns_and_fails_with_strict(bag, tmp_path):
    truth = tmp_path / 'elsewhere.csv'
    truth.write_text('1.0,static\n2.0,moving_left\n')          # 1970: no frame of the bag
    args = ('evaluate', bag, '--topic', TOPIC, '--truth', truth, '--params-file', CONFIG,
            '--device', 'cpu')
    code, out, err, _ = bag_cli(*args, timeout=120)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith('timesformer_bag: warning')]
    assert len(warnings) == 1 and 'matches none of the' in warnings[0], err
    assert str(truth) in warnings[0] and 'Traceback' not in err
    code, _, err, _ = bag_cli(*args, '--strict', timeout=120)
    assert code == 1
    assert 'matches none of the' in one_error(err)


# -- row 13: an MCAP record length of 2^62 -----------------------------------------------------

def test_an_mcap_record_length_of_2_62_is_one_line_naming_file_and_reason(tmp_path):
    record_synthetic(tmp_path / 'bag', 'mcap', seconds=0.5, width=64, height=48)
    [file] = (tmp_path / 'bag').glob('*.mcap')
    data = bytearray(file.read_bytes())
    struct.pack_into('<Q', data, 8 + 1, 1 << 62)     # the first record after the magic
    file.write_bytes(bytes(data))
    code, _, err, _ = bag_cli('evaluate', tmp_path / 'bag', '--topic', TOPIC, timeout=120)
    assert code == 1
    line = one_error(err)
    assert str(file) in line and f'declares {1 << 62} bytes' in line, line
    assert 'Errno' not in line


# -- row 9: --out-bag on a disk that is really full (ENOSPC) -------------------------------------

@pytest.fixture
def small_tmpfs(tmp_path):
    """Mount a tmpfs of a given size (root only): writes fail with ENOSPC, as on a full disk."""
    mounted = []

    def mount(size: str) -> Path:
        place = tmp_path / f'disk_{size}'
        place.mkdir()
        result = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs',
                                 str(place)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f'cannot mount a tmpfs here (needs root): {result.stderr.strip()}')
        mounted.append(place)
        return place

    yield mount
    for place in mounted:
        subprocess.run(['umount', str(place)], check=False)


@pytest.mark.parametrize('size', ['24k', '48k', '64k'])
def test_out_bag_on_a_full_disk_leaves_nothing_behind(size, bag, small_tmpfs):
    """The disk fills while the bag opens (24k), while windows are written (48k), at the end.

    The issue's case was the first: the staging directory of a bag that never opened stayed.
    """
    disk = small_tmpfs(size)
    code, _, err, _ = bag_cli('evaluate', bag, '--topic', TOPIC, '--params-file', CONFIG,
                              '--device', 'cpu', '--out-bag', disk / 'outbag', '--out',
                              disk / 'windows.jsonl', '--segments', disk / 'segments.jsonl',
                              timeout=120)
    assert code == 1, err
    line = one_error(err)
    assert str(disk) in line and 'no output was left behind' in line, line
    assert list(disk.iterdir()) == []


# -- row 4: bag discovery and symlink loops -------------------------------------------------------

def looped_tree(root: Path, bag_dir: Path = None) -> Path:
    """Make a directory with two symlinks to itself (and a bag, if given): 2^40 paths to follow."""
    root.mkdir()
    if bag_dir is not None:
        os.symlink(bag_dir, root / 'recording')       # a bag given by a link: taken
    os.symlink(root, root / 'loop_a')
    os.symlink(root, root / 'loop_b')
    return root


def test_discovery_never_follows_a_directory_symlink_while_searching(bag, tmp_path):
    root = looped_tree(tmp_path / 'tree', bag)
    started = time.monotonic()
    assert find_bags([root]) == [bag.resolve()]
    assert find_bags([f'{root}/**']) == [bag.resolve()]
    assert find_bags([f'{root}/*']) == [bag.resolve()]
    assert time.monotonic() - started < 5.0


def test_discovery_looks_at_a_bounded_number_of_paths(tmp_path):
    root = tmp_path / 'many'
    for i in range(30):
        (root / f'd{i}').mkdir(parents=True)
        (root / f'd{i}' / 'note.txt').write_text('not a bag')
    with pytest.raises(ValueError, match=r'many: more than 40 paths looked at'):
        find_bags([root], limit=40)
    with pytest.raises(ValueError, match=r'\*\*/\*\.mcap: more than 40 paths looked at'):
        find_bags([f'{root}/**/*.mcap'], limit=40)


def test_a_looped_directory_without_bags_is_one_line_at_once(tmp_path):
    root = looped_tree(tmp_path / 'tree')
    started = time.monotonic()
    code, _, err, _ = bag_cli('evaluate', root, f'{root}/**', '--topic', TOPIC, '--out-dir',
                              tmp_path / 'out', timeout=60)
    assert code == 1
    assert 'no bag there' in one_error(err)
    assert time.monotonic() - started < 30.0
    assert not (tmp_path / 'out').exists()


# -- rows 5 and 10: the cluster address, signals, Ray's errors ------------------------------------

def fleet_cli(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(console_script('timesformer_bag') + list(map(str, args)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)


def test_an_address_where_nothing_listens_is_one_line_within_30_s(bag, tmp_path):
    started = time.monotonic()
    process = fleet_cli('evaluate', bag, '--topic', TOPIC, '--out-dir', tmp_path / 'out',
                        '--address', '127.0.0.1:1')
    _, err = process.communicate(timeout=60)
    elapsed = time.monotonic() - started
    assert process.returncode == 1
    line = one_error(err)
    assert '--address 127.0.0.1:1' in line and 'connection refused' in line, line
    assert elapsed < 30.0, elapsed
    assert not (tmp_path / 'out').exists()


class SilentListener:
    """A TCP port that accepts connections and never says a word (not a Ray cluster)."""

    def __init__(self):
        self.socket = socket.create_server(('127.0.0.1', 0))
        self.port = self.socket.getsockname()[1]
        self.accepted = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                self.accepted.append(self.socket.accept()[0])
            except OSError:
                return

    def close(self):
        for conn in self.accepted:
            conn.close()
        self.socket.close()


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_sigterm_while_a_silent_address_is_tried_ends_at_once(bag, tmp_path):
    """The handshake with a port that never answers: SIGTERM ends it in well under a second.

    (Waiting it out takes CONNECT_TIMEOUT_S, 30 s: `benchmarks/hostile_inputs.py`.)
    """
    listener = SilentListener()
    try:
        process = fleet_cli('evaluate', bag, '--topic', TOPIC, '--out-dir', tmp_path / 'out',
                            '--address', f'127.0.0.1:{listener.port}')
        # The probe's connection, then Ray's own: the command is in the handshake.
        assert wait_for(lambda: len(listener.accepted) >= 2, 60.0), listener.accepted
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
        elapsed = time.monotonic() - started
    finally:
        listener.close()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert elapsed < 5.0, elapsed
    assert 'Traceback' not in err and '\x1b' not in err
    [line] = [x for x in err.splitlines() if x.startswith('timesformer_bag:')]
    assert 'stopped by SIGTERM: nothing was written' in line, line
    assert not (tmp_path / 'out').exists()


def ray_processes_in(directory: Path) -> list:
    """Return the Ray processes whose working directory is `directory` (a run's runtime)."""
    found = []
    for proc in Path('/proc').iterdir():
        try:
            if proc.name.isdigit() and os.readlink(proc / 'cwd') == str(directory) \
                    and b'ray' in (proc / 'cmdline').read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_sigint_during_a_local_fleet_run_stops_it_cleanly(bag, tmp_path):
    """SIGINT once the local runtime runs units: exit 130, one line, Ray gone, nothing partial."""
    work = tmp_path / 'work'
    work.mkdir()
    out = work / 'out'
    shutil.copytree(bag, work / 'second_bag')
    process = fleet_cli('evaluate', bag, work / 'second_bag', '--topic', TOPIC,
                        '--params-file', CONFIG, '--out-dir', out, '--workers', '1', cwd=work)
    try:
        assert wait_for(lambda: (out / 'bags').is_dir(), 120.0), process.poll()
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        elapsed = time.monotonic() - started
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signal.SIGINT, err
    assert elapsed < 20.0, elapsed
    assert 'Traceback' not in err and '\x1b' not in err
    [line] = [x for x in err.splitlines() if x.startswith('timesformer_bag:')]
    assert 'stopped by SIGINT' in line, line
    assert not list(out.rglob('*.partial')) and not (out / 'summary.json').exists()
    assert wait_for(lambda: not ray_processes_in(work), 10.0), ray_processes_in(work)


def test_a_ray_task_error_is_reduced_to_its_cause_without_escape_codes():
    """What a unit raised, as Ray hands it back: a RayTaskError, a coloured traceback.

    Built in a fresh process (importing Ray here would fix its settings for the fleet tests).
    """
    code = '''
import ray.exceptions
from timesformer_ros.cluster import one_line
cause = IndexError('list index out of range')
error = ray.exceptions.RayTaskError(
    'evaluate_unit', '\\x1b[36mray::evaluate_unit()\\x1b[39m (pid=1)\\n  File "x", line 1', cause)
print(repr(one_line(error)))
print(repr(one_line(error.as_instanceof_cause())))
'''
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["'IndexError: list index out of range'"] * 2


def test_a_bad_truth_in_fleet_mode_is_one_line_before_ray_starts(bag, tmp_path):
    """The issue's row 10 input: a truth error with several bags (once: RayTaskError, ANSI)."""
    truth = tmp_path / 'truth.csv'
    truth.write_bytes(TRUTH_ATTACKS['one_column'][0])
    started = time.monotonic()
    process = fleet_cli('evaluate', bag, bag, '--topic', TOPIC, '--truth', truth, '--out-dir',
                        tmp_path / 'out')
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2, err
    line = one_error(err)
    assert f'{truth}: row 2: expected 2 fields' in line, line
    assert time.monotonic() - started < 30.0
    assert not (tmp_path / 'out').exists()


# -- rows 3 and 7: training clips ----------------------------------------------------------------

def npy_header(path: Path, shape: tuple, dtype: str = '|u1', payload: bytes = b''):
    """Write a .npy file whose header declares `shape` of `dtype`, followed by `payload`."""
    header = repr({'descr': dtype, 'fortran_order': False, 'shape': shape}).encode()
    header += b' ' * (63 - (len(header) + 10) % 64) + b'\n'
    path.write_bytes(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(header)) + header + payload)


def good_clip(rng, name: str = 'moving_left') -> np.ndarray:
    return synthetic.make_clip(rng, name, 40, 10)


CLIP_ATTACKS = {
    'wrong_shape': (lambda p, rng: np.save(p, good_clip(rng)[..., 0]),
                    'expected a (T, H, W, 3) array, got shape (10, 40, 40)'),
    'zero_by_zero': (lambda p, rng: np.save(p, np.zeros((10, 0, 0, 3), np.uint8)),
                     'frames of 0x0 pixels'),
    'too_few_frames': (lambda p, rng: np.save(p, good_clip(rng)[:3]), '3 frames, the model'),
    'header_82_gib': (lambda p, rng: npy_header(p, (1760, 4096, 4096, 3)),
                      'declares 88583700480 bytes of pixels, more than the 1073741824'),
    'header_huge_side': (lambda p, rng: npy_header(p, (10, 40, 1 << 40, 3)),
                         'each side must be 1 to 8192'),
    'header_10_gb_short': (lambda p, rng: npy_header(p, (400, 2880, 2880, 3),
                                                     payload=b'x' * 99),
                           'declares 9953280000 bytes of pixels, more than the'),
    'header_short': (lambda p, rng: npy_header(p, (10, 40, 40, 3), payload=b'x' * 99),
                     'the header declares 48000 bytes of pixels, the file holds 99'),
    'pickled_object': (lambda p, rng: np.save(p, np.array([{'a': 1}], dtype=object)),
                       'clips must be uint8 RGB (0-255), got dtype object'),
    'garbage': (lambda p, rng: p.write_bytes(b'\x00garbage' * 100), 'not a .npy array'),
    'nan_floats': (lambda p, rng: np.save(p, np.full((10, 40, 40, 3), np.nan, np.float32)),
                   'got dtype float32'),
    'huge_floats': (lambda p, rng: np.save(p, np.full((10, 40, 40, 3), 1e30)),
                    'got dtype float64'),
    'complex': (lambda p, rng: np.save(p, good_clip(rng).astype(np.complex64)),
                'got dtype complex64'),
    'bool': (lambda p, rng: np.save(p, good_clip(rng) > 128), 'got dtype bool'),
}


def clip_folder(root: Path, bad_name: str = None) -> Path:
    """Two classes of two good clips each; with `bad_name`, one of CLIP_ATTACKS among them."""
    rng = np.random.default_rng(0)
    for label, motion in (('left', 'moving_left'), ('still', 'static')):
        (root / label).mkdir(parents=True)
        for i in range(2):
            np.save(root / label / f'{i}.npy', good_clip(rng, motion))
    if bad_name:
        CLIP_ATTACKS[bad_name][0](root / 'still' / 'zz_bad.npy', rng)
    return root


def train(*args) -> list:
    return ['train', '--preset', 'tiny', '--steps', '2', '--batch-size', '4', '--val-every',
            '2', *map(str, args)]


@pytest.mark.parametrize('name', CLIP_ATTACKS)
def test_a_bad_training_clip_stops_the_run_before_it_starts(name, tmp_path, capsys):
    from timesformer_ros.train import main
    data = clip_folder(tmp_path / 'clips', name)
    out = tmp_path / 'model'
    assert main(train('--data', data, '--out', out)) == 2
    line = one_error(capsys.readouterr().err, 'timesformer_train')
    bad = data / 'still' / 'zz_bad.npy'
    assert f'{bad}: ' in line and CLIP_ATTACKS[name][1] in line, line
    assert not list(tmp_path.glob('model*'))


def test_a_one_class_folder_is_refused(tmp_path, capsys):
    from timesformer_ros.train import main
    data = clip_folder(tmp_path / 'clips')
    for path in (data / 'still').iterdir():
        path.unlink()
    (data / 'still').rmdir()
    assert main(train('--data', data, '--out', tmp_path / 'model')) == 2
    line = one_error(capsys.readouterr().err, 'timesformer_train')
    assert 'one class (left)' in line and 'at least two classes' in line, line


def test_a_non_finite_loss_stops_training_and_writes_nothing(tmp_path, capsys):
    from timesformer_ros.train import main
    data = clip_folder(tmp_path / 'clips')
    for lr in ('1e20', '1e30'):     # NaN from the second step; past float range at the first
        assert main(train('--data', data, '--out', tmp_path / 'model', '--lr', lr,
                          '--steps', '4', '--val-every', '4')) == 1
        line = one_error(capsys.readouterr().err, 'timesformer_train')
        assert 'training stopped' in line and 'no checkpoint written' in line, line
        assert not list(tmp_path.glob('model*'))


def test_an_82_gib_header_is_refused_without_allocating(tmp_path):
    """As a process: the whole run's peak memory stays that of loading torch (< 1 GiB)."""
    data = clip_folder(tmp_path / 'clips', 'header_82_gib')
    peak = tmp_path / 'peak'
    result = subprocess.run(
        [sys.executable, '-c', LAUNCHER, str(peak), sys.executable, '-m',
         'timesformer_ros.train', *train('--data', data, '--out', tmp_path / 'model')],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert 'declares 88583700480 bytes' in one_error(result.stderr, 'timesformer_train')
    assert int(peak.read_text()) / 1024 < 1024


# -- row 8: clip rates ----------------------------------------------------------------------------

@pytest.mark.parametrize('flags, message', [
    (('--frame-interval', '99999999999999999999'), 'clip rates must be in [0.01, 1000]'),
    (('--clip-fps', '1e-320'), 'clip_fps must be a rate in [0.01, 1000]'),
    (('--clip-fps', '1e-9'), 'clip_fps must be a rate in [0.01, 1000]'),
    (('--clip-fps', '5000'), 'clip_fps must be a rate in [0.01, 1000]'),
    (('--frame-interval', '4', '--camera-fps', '1e-300'), 'the camera rate must be a rate'),
])
def test_convert_refuses_a_clip_rate_out_of_range(flags, message, tmp_path, capsys):
    from timesformer_ros.convert import convert_main
    assert convert_main(['preset:tiny', str(tmp_path / 'out'), *flags]) == 2
    line = one_error(capsys.readouterr().err, 'timesformer_convert')
    assert message in line, line
    assert not list(tmp_path.iterdir())


def test_a_target_fps_out_of_range_is_refused_everywhere():
    from timesformer_ros.clips import ClipBuffer
    from timesformer_ros.interface import BY_NAME
    for bad in (1e-9, 1e-300, 0.001):
        assert 'must be a rate in [0.01, 1000]' in BY_NAME['target_fps'].check(bad)
        with pytest.raises(ValueError, match='target_fps'):
            ClipBuffer(8, target_fps=bad)
    assert BY_NAME['target_fps'].check(0.0) is None       # unset
    assert BY_NAME['target_fps'].check(0.01) is None


# -- rows 2, 8 and 14: the node -------------------------------------------------------------------

@pytest.mark.parametrize('args, message', [
    (['-p', f"cameras:=[{'a' * 300}]"], 'camera names must have at most 200 characters'),
    (['-p', f"cameras:=[{'b' * 200}]", '-r', '__ns:=/a_rather_long_robot_namespace'],
     'characters, ROS allows 247: shorten the camera name or the namespace'),
    (['-p', 'target_fps:=0.000000001'], 'target_fps: must be a rate in [0.01, 1000]'),
])
def test_the_node_refuses_at_start_with_one_line(ros, args, message):
    result = subprocess.run(console_script('timesformer_node') + ['--ros-args', *args],
                            env=ros.env, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert message in output and 'Traceback' not in output, output
    assert len([line for line in output.splitlines() if 'cannot start' in line]) == 1


def get_parameters(ros, *names) -> list:
    from rcl_interfaces.srv import GetParameters
    client = ros.node.create_client(GetParameters, '/timesformer/get_parameters')
    assert client.wait_for_service(timeout_sec=20.0)
    future = client.call_async(GetParameters.Request(names=list(names)))
    assert ros.spin_until(future.done, 10.0)
    return [v.double_value for v in future.result().values]


def test_a_parameter_set_is_judged_on_the_values_after_it(ros, start_node, small_checkpoint):
    """[enter 0.5, exit 0.3] while exit is 1.0 once applied exit alone: 1.0 / 0.3, forever."""
    from test_node import set_parameters
    start_node('-p', f'checkpoint:={small_checkpoint}')
    assert all(r.successful for r in set_parameters(ros, enter_threshold=1.0,
                                                    exit_threshold=1.0))
    results = set_parameters(ros, enter_threshold=0.5, exit_threshold=0.3)
    assert all(r.successful for r in results), [r.reason for r in results]
    assert get_parameters(ros, 'enter_threshold', 'exit_threshold') == [0.5, 0.3]
    # The other order gives the same.
    set_parameters(ros, enter_threshold=1.0, exit_threshold=1.0)
    assert all(r.successful for r in set_parameters(ros, exit_threshold=0.3,
                                                    enter_threshold=0.5))
    assert get_parameters(ros, 'enter_threshold', 'exit_threshold') == [0.5, 0.3]
    # A set whose end state breaks the rule is refused whole, whatever its order.
    for values in ({'enter_threshold': 0.2, 'exit_threshold': 0.25},
                   {'exit_threshold': 0.9}):
        results = set_parameters(ros, **values)
        assert not any(r.successful for r in results)
        assert all('after the whole set' in r.reason for r in results), results
        assert get_parameters(ros, 'enter_threshold', 'exit_threshold') == [0.5, 0.3]
    # A value refused on its own does not count towards the set's end state.
    results = set_parameters(ros, enter_threshold=1.5, exit_threshold=0.6)
    assert [r.successful for r in results] == [False, False]
    assert get_parameters(ros, 'enter_threshold', 'exit_threshold') == [0.5, 0.3]


def test_no_json_anywhere_holds_escape_codes():
    """The summary text of a unit failure is one line (the fleet writes it to summary.json)."""
    from timesformer_ros.errors import brief
    text = brief(RuntimeError('\x1b[31mred\x1b[0m\nsecond line'))
    assert json.dumps(text) == '"RuntimeError: red"'
