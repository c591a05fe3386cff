"""Training from labelled recordings: segments, the node's windows, the command, bad input.

Real rosbag2 files written by rosbags, real checkpoints, the real command line.
"""

import json
import os
import subprocess
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from timesformer_ros.bags import Evaluation, evaluate, typestore, write_camera_bag
from timesformer_ros.bags.dataset import (
    BOUNDARY, UNLABELLED, cut_windows, label_windows, split)
from timesformer_ros.bags.truth import (
    SegmentLabels, TruthError, read_segments, segment_truth)
from timesformer_ros.checkpoints import embedded_checkpoint, load_checkpoint
from timesformer_ros.engine import Engine, stack_clips
from timesformer_ros.finetune import BagTraining, starting_point
from timesformer_ros.digests import digest
from timesformer_ros.messages import COMPRESSED_IMAGE, IMAGE, bag_types
from timesformer_ros.synthetic import SyntheticStream
from timesformer_ros.train import main as train_main

START = 1_700_000_000_000_000_000
FPS = 30.0
SCRIPT = ('moving_left', 'moving_right', 'static')


def seconds(ns: int) -> str:
    """Header stamp ns as exact decimal seconds."""
    return f'{ns // 10 ** 9}.{ns % 10 ** 9:09d}'


def motion_bag(path: Path, seed: int, frames: int = 240, start: int = START,
               width: int = 160, height: int = 120) -> Path:
    """Write a bag of the synthetic camera (SCRIPT's motions) and its segments CSV; return it."""
    stream = SyntheticStream(seed=seed, width=width, height=height, fps=FPS,
                             script=SCRIPT).frames()
    rows = [(start + int(round(i * 1e9 / FPS)), *next(stream)) for i in range(frames)]
    write_camera_bag(path, rows)
    lines, first = ['start,end,label'], 0
    for i in range(1, frames + 1):
        if i == frames or rows[i][2] != rows[first][2]:
            end = rows[i][0] if i < frames else rows[-1][0] + int(1e9 / FPS)
            lines.append(f'{seconds(rows[first][0])},{seconds(end)},{rows[first][2]}')
            first = i
    csv = path.with_name(path.name + '.csv')
    csv.write_text('\n'.join(lines) + '\n')
    return csv


@pytest.fixture(scope='module')
def recordings(tmp_path_factory):
    """Two recordings of the same motions (other seeds, other times) with their segments."""
    root = tmp_path_factory.mktemp('recordings')
    return [(root / f'rec{i}', motion_bag(root / f'rec{i}', seed=10 + i,
                                          start=START + i * 10 ** 12)) for i in range(3)]


# -- segments ---------------------------------------------------------------------------------

def write(tmp_path, text: str, name: str = 'truth.csv') -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_segments_are_read_exactly_with_a_header_and_same_label_overlaps(tmp_path):
    path = write(tmp_path, 'start,end,label\n1700000000.5,1700000002.25,wave\n'
                           '1700000002.000000001,1700000003,wave\n\n'
                           '1700000003,1700000004.000000001,still\n')
    segments = read_segments(path)
    assert [(s.start_ns, s.end_ns, s.label, s.row) for s in segments] == [
        (1_700_000_000_500_000_000, 1_700_000_002_250_000_000, 'wave', 2),
        (1_700_000_002_000_000_001, 1_700_000_003_000_000_000, 'wave', 3),
        (1_700_000_003_000_000_000, 1_700_000_004_000_000_001, 'still', 5)]
    labels = SegmentLabels(segments)
    assert labels(1_700_000_000_499_999_999) is None
    assert labels(1_700_000_002_900_000_000) == 'wave'
    assert labels(1_700_000_003_000_000_000) == 'still'       # half open: [start, end)
    assert labels(1_700_000_004_000_000_001) is None
    per_frame = segment_truth(path, [1_700_000_001_000_000_000, 5])
    assert len(per_frame) == 1 and per_frame.get(1_700_000_001_000_000_000) == 'wave'
    assert per_frame.get(5) is None


@pytest.mark.parametrize('text, expected', [
    ('1,3,wave\n5,6,still\n2,4,still\n', 'rows 1 and 3 overlap with different labels'),
    ('start,end,label\n1,2\n', 'row 2: expected 3 fields (start,end,label), got 2'),
    ('1,nan,wave\n', "row 1: end 'nan' is not a header stamp"),
    ('1,inf,wave\n', "row 1: end 'inf' is not a header stamp"),
    ('-1,2,wave\n', "row 1: start '-1' is not a header stamp"),
    ('1,1e30,wave\n', "row 1: end '1e30' is not a header stamp"),
    ('1,x,wave\n', "row 1: end 'x' is not a number of seconds"),
    ('3,2,wave\n', 'row 1: end 2 is not after start 3'),
    ('1,2,\n', 'row 1: the label is empty'),
    ('1,2,' + 'a' * 5000 + '\n', 'row 1: longer than 4096 bytes'),
    ('start,end,label\n', 'no segments'),
])
def test_bad_segments_are_refused_naming_the_file_and_row(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(TruthError) as error:
        read_segments(path)
    assert str(error.value).startswith(f'{path}: ')
    assert expected in str(error.value)
    assert '\n' not in str(error.value)


# -- windows ----------------------------------------------------------------------------------

class RecordingEngine(Engine):
    """The real engine, keeping every clip tensor it is given (in order)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.clips = []

    def infer(self, clips, with_attention=True):
        self.clips += [clip.clone() for clip in stack_clips(clips)]
        return super().infer(clips, with_attention)


def encoded_bag(path: Path, frames: int = 150):
    """Write a bag: a camera in changing encodings (rgb8, bgr8, mono8), one of JPEG frames."""
    from rosbags.rosbag2 import Writer
    store = typestore()
    types = bag_types(store)
    stream = SyntheticStream(seed=3, width=160, height=120, fps=FPS, script=SCRIPT).frames()
    with Writer(path, version=9) as writer:
        raw = writer.add_connection('/camera/image_raw', IMAGE, typestore=store)
        jpeg = writer.add_connection('/camera/image_raw/compressed', COMPRESSED_IMAGE,
                                     typestore=store)
        for i in range(frames):
            stamp = START + int(round(i * 1e9 / FPS))
            rgb, _ = next(stream)
            header = types.header(stamp, 'camera')
            kind = ('rgb8', 'bgr8', 'mono8')[i // 50]
            pixels = {'rgb8': rgb, 'bgr8': rgb[..., ::-1],
                      'mono8': cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)}[kind]
            writer.write(raw, stamp, store.serialize_cdr(types.image(header, pixels, kind),
                                                         IMAGE))
            ok, data = cv2.imencode('.jpg', rgb[..., ::-1])
            msg = types.classes(COMPRESSED_IMAGE)(header=header, format='jpeg',
                                                  data=data.reshape(-1))
            writer.write(jpeg, stamp, store.serialize_cdr(msg, COMPRESSED_IMAGE))


@pytest.mark.parametrize('topic', ['/camera/image_raw', '/camera/image_raw/compressed'])
def test_training_windows_are_exactly_the_tensors_evaluation_gives_the_model(tmp_path, topic):
    bag = tmp_path / 'encoded'
    encoded_bag(bag)
    run = BagTraining(bags=[bag], topic=topic, truth='unused', out=tmp_path / 'out')
    start = starting_point(run)
    windows = cut_windows(bag, topic, start.cutting, tmp_path / 'cache', digest(bag),
                          progress=False)
    engine = RecordingEngine(load_checkpoint(run.init or embedded_checkpoint()), device='cpu',
                             warmup=False)
    summary = evaluate(Evaluation(bag, topic, progress=False, device='cpu'), engine=engine)
    assert summary['windows'] == len(windows.windows) == len(engine.clips) >= 15
    from timesformer_ros.frames import Normaliser
    normaliser = Normaliser(start.mean, start.std)
    for i, expected in enumerate(engine.clips):
        got = normaliser(torch.from_numpy(windows.clips([i])[0]))
        assert torch.equal(got, expected), f'window {i} differs'
    # and again from the cache, without reading the bag
    again = cut_windows(bag, topic, start.cutting, tmp_path / 'cache', digest(bag),
                        progress=False)
    assert np.array_equal(again.windows, windows.windows)
    assert np.array_equal(again.clips([3]), windows.clips([3]))


def test_windows_across_a_boundary_are_left_out_and_the_split_keeps_frames_apart(
        tmp_path, recordings):
    bag, csv = recordings[0]
    start = starting_point(BagTraining(bags=[bag], topic='/camera/image_raw', truth=str(csv),
                                       out=tmp_path / 'out'))
    windows = cut_windows(bag, '/camera/image_raw', start.cutting, tmp_path / 'cache',
                          digest(bag), progress=False)
    labels = label_windows(windows, SegmentLabels(read_segments(csv)))
    segments = read_segments(csv)
    for rows, label in zip(windows.windows, labels):
        stamps = windows.stamps[rows]
        inside = [s.label for s in segments if s.start_ns <= stamps[0] and
                  stamps[-1] < s.end_ns]
        assert label == (inside[0] if inside else BOUNDARY)
    assert labels.count(BOUNDARY) >= len(segments) - 1
    assert UNLABELLED not in labels
    parts = split(windows, 0.2)
    train_rows = set(windows.windows[parts == 0].ravel())
    val_rows = set(windows.windows[parts == 1].ravel())
    assert train_rows and val_rows and not train_rows & val_rows
    assert windows.stamps[list(val_rows)].min() > windows.stamps[list(train_rows)].max()


# -- the command ------------------------------------------------------------------------------

def train(*args) -> int:
    return train_main(['train', '--topic', '/camera/image_raw', *map(str, args)])


def test_train_on_recordings_writes_a_checkpoint_with_its_record(tmp_path, recordings, capsys):
    (bag, csv), (other, other_csv), _ = recordings
    out = tmp_path / 'mine'
    assert train('--bags', bag, '--truth', csv, '--out', out, '--steps', 8,
                 '--batch-size', 4, '--seed', 1) == 0
    ckpt = load_checkpoint(out.with_suffix('.json'))
    assert sorted(ckpt.labels) == sorted(SCRIPT)
    assert ckpt.clip_fps == load_checkpoint(embedded_checkpoint()).clip_fps   # inherited
    # A new head for three of the seven classes: the mirror and the reversal still swap left
    # and right, which are both in it; top-bottom leaves all three as they are.
    index = {label: i for i, label in enumerate(ckpt.labels)}
    swap = [index[{'moving_left': 'moving_right', 'moving_right': 'moving_left'}.get(c, c)]
            for c in ckpt.labels]
    assert ckpt.extra['symmetries'] == {'hflip': swap, 'vflip': [0, 1, 2], 'reverse': swap}
    record = json.loads(out.with_suffix('.json').read_text())['training']
    assert record['bags'] == [str(bag.resolve())] and record['bag_sha256'] == [digest(bag)]
    assert record['truth_sha256'] == [digest(csv)] and record['steps'] == 8
    assert record['seed'] == 1 and record['train_windows'] > 0 and record['val_windows'] > 0
    assert record['left_out']['across a boundary'] > 0
    validation = json.loads(Path(f'{out}.validation.json').read_text())
    assert validation['windows'] == record['val_windows']
    assert np.sum(validation['confusion']['matrix']) == validation['windows']
    assert 'validation accuracy' in Path(f'{out}.confusion.txt').read_text()
    err = capsys.readouterr().err
    assert 'validation accuracy' in err and 'across a boundary' in err
    # validation bags with their own truth: every labelled window of them is validation
    assert train('--bags', bag, '--truth', csv, '--val-bags', other, '--val-truth', other_csv,
                 '--out', out, '--steps', 2, '--batch-size', 4) == 0
    record = json.loads(out.with_suffix('.json').read_text())['training']
    # 33 of the other bag's 53 windows at the embedded model's 7.5 fps (20 span a boundary)
    assert record['val_bags'] == [str(other.resolve())] and record['val_windows'] > 25


def test_per_frame_truth_from_the_bag_trains_too(tmp_path, recordings, capsys):
    bag, _ = recordings[0]
    out = tmp_path / 'topic.v2'     # a dotted name keeps its dot: topic.v2.json
    assert train('--bags', bag, '--truth', '/motion', '--out', out, '--steps', 2,
                 '--batch-size', 4) == 0
    assert f'wrote {out}.json' in capsys.readouterr().err
    assert sorted(load_checkpoint(f'{out}.json').labels) == sorted(SCRIPT)


def test_bad_input_is_one_line_and_exit_2(tmp_path, recordings, capsys):
    bag, csv = recordings[0]
    out = tmp_path / 'bad'
    cases = []
    ghost = write(tmp_path, csv.read_text() + f'{seconds(START + 10 ** 12)},'
                                              f'{seconds(START + 10 ** 12 + 10 ** 9)},waving\n',
                  'ghost.csv')
    cases.append((['--truth', ghost], "label 'waving' of the truth has no windows"))
    overlap = write(tmp_path, 'start,end,label\n1700000000,1700000002,a\n'
                              '1700000001,1700000003,b\n', 'overlap.csv')
    cases.append((['--truth', overlap], 'rows 2 and 3 overlap with different labels'))
    for extra, expected in cases:
        assert train('--bags', bag, '--out', out, '--steps', 1, *extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert expected in err[-1] and err[-1].startswith('timesformer_train: error: ')
    assert train_main(['train', '--topic', '/nothing', '--bags', str(bag), '--truth', str(csv),
                       '--out', str(out)]) == 2
    assert "no topic '/nothing'" in capsys.readouterr().err
    broken = tmp_path / 'broken.mcap'
    broken.write_bytes(b'\x89MCAP0\r\n' + b'\x00' * 64)
    assert train('--bags', broken, '--truth', csv, '--out', out, '--steps', 1) == 2
    err = capsys.readouterr().err
    assert f'skipped {broken.resolve()}' in err and 'no bag to train on' in err
    # a corrupt bag beside a good one is skipped, named, and recorded
    assert train('--bags', broken, bag, '--truth', csv, '--out', out, '--steps', 1,
                 '--batch-size', 2) == 0
    record = json.loads(out.with_suffix('.json').read_text())['training']
    assert [s['bag'] for s in record['skipped_bags']] == [str(broken.resolve())]


# -- Ray Train ---------------------------------------------------------------------------------

def test_two_ray_train_workers_give_a_checkpoint_that_scores_like_one_process(
        tmp_path, recordings, monkeypatch):
    """2 CPU workers (gloo) on the local runtime on 127.0.0.1, each reading its own bag.

    While they train, every socket a Ray process listens on is bound to 127.0.0.1 (`ss`).

    Same seed, same steps and global batch: the two checkpoints' validation accuracies agree
    within 0.15 (the workers draw other windows than the one process, so not exactly).
    """
    (bag, csv), (other, other_csv), (held, held_csv) = recordings
    common = ['--bags', bag, other, '--truth', csv, other_csv, '--val-bags', held,
              '--val-truth', held_csv, '--steps', 30, '--batch-size', 8, '--seed', 3]
    assert train(*common, '--out', tmp_path / 'one') == 0
    # relative paths: the workers run in a directory of Ray's
    monkeypatch.chdir(bag.parent)
    relative = [Path(a).name if isinstance(a, Path) else a for a in common]
    listening, watching = set(), threading.Event()

    def watch():          # every TCP socket a Ray process listens on while it trains
        while not watching.is_set():
            lines = subprocess.run(['ss', '-tlnpH'], capture_output=True, text=True).stdout
            listening.update(line for line in lines.splitlines() if 'ray::' in line)
            watching.wait(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        assert train(*relative, '--out', os.path.relpath(tmp_path / 'ray'), '--workers', 2) == 0
    finally:
        watching.set()
        watcher.join(10)
    assert any('RayTrainWo' in line for line in listening)      # the workers were seen
    for line in listening:
        assert line.split()[3].rsplit(':', 1)[0] in ('127.0.0.1', '[::ffff:127.0.0.1]'), line
    one = json.loads((tmp_path / 'one.validation.json').read_text())
    ray = json.loads((tmp_path / 'ray.validation.json').read_text())
    assert ray['training']['ray_workers'] == 2 and ray['training']['steps'] == 30
    assert not (tmp_path / 'ray.ray').exists()          # Ray Train's storage is cleaned up
    assert ray['windows'] == one['windows'] > 25
    assert load_checkpoint(tmp_path / 'ray.json').labels == \
        load_checkpoint(tmp_path / 'one.json').labels
    assert abs(ray['accuracy'] - one['accuracy']) <= 0.15, (one['accuracy'], ray['accuracy'])
    assert one['accuracy'] > 0.6


# -- Ctrl-C and --resume ------------------------------------------------------------------------

def test_ctrl_c_saves_a_state_that_resume_continues(tmp_path, recordings):
    """The real command in its own process: SIGINT mid-training, exit 130, then --resume."""
    import signal
    import sys
    bag, csv = recordings[0]
    out = tmp_path / 'stopped'
    args = [sys.executable, '-m', 'timesformer_ros.train', 'train', '--bags', str(bag),
            '--topic', '/camera/image_raw', '--truth', str(csv), '--out', str(out),
            '--steps', '60', '--batch-size', '2', '--seed', '5']
    process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, 'PYTHONUNBUFFERED': '1'})
    seen, stepping = [], threading.Event()

    def read():
        for chunk in iter(lambda: process.stderr.read(64), ''):
            seen.append(chunk)
            if ' 3/60 steps' in ''.join(seen[-3:]):
                stepping.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert stepping.wait(120), ''.join(seen)[-2000:]
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 130
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(10)
    text = ''.join(seen)
    assert 'interrupted at step' in text and '--resume' in text
    stopped_at = int(text.split('interrupted at step ')[1].split()[0])
    assert 3 <= stopped_at < 60
    state = torch.load(Path(f'{out}.resume.pt'), weights_only=False)
    assert state['step'] == stopped_at
    assert not out.with_suffix('.json').exists()
    # the same command with other settings is refused, with --resume it continues
    assert train('--bags', bag, '--truth', csv, '--out', out, '--steps', 61, '--batch-size', 2,
                 '--seed', 5, '--resume') == 2
    assert train('--bags', bag, '--truth', csv, '--out', out, '--steps', 60, '--batch-size', 2,
                 '--seed', 5, '--resume') == 0
    record = json.loads(out.with_suffix('.json').read_text())['training']
    assert record['steps'] == 60 and not Path(f'{out}.resume.pt').exists()


# -- memory -----------------------------------------------------------------------------------

PEAK_RSS_MARGIN_MB = 25


def test_peak_memory_does_not_grow_with_the_recording(tmp_path):
    """Peak RSS of a run on a recording 10 times longer stays within 25 MB of the short one's.

    The long recording's ~2000 windows would hold 110 MB as uint8 clips (440 MB as the model's
    float32 tensors): were they kept in memory, the difference would show. Both have more
    validation windows than one validation batch (32), so that batch is the same size.
    """
    import sys
    peaks = {}
    for name, frames in (('short', 900), ('long', 9000)):
        bag = tmp_path / name
        csv = motion_bag(bag, seed=20, frames=frames, width=64, height=48)
        code = ('import resource, sys\n'
                'from timesformer_ros.train import main\n'
                f'rc = main(["train", "--bags", {str(bag)!r}, "--topic", "/camera/image_raw", '
                f'"--truth", {str(csv)!r}, "--out", {str(tmp_path / name)!r} + "_out", '
                '"--steps", "3", "--batch-size", "4"])\n'
                'print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n'
                'sys.exit(rc)\n')
        done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                              timeout=240)
        assert done.returncode == 0, done.stderr[-2000:]
        peaks[name] = int(done.stdout.split()[-1]) / 1024
        record = json.loads((tmp_path / f'{name}_out.json').read_text())['training']
        peaks[name + '_windows'] = record['train_windows'] + record['val_windows']
    print('peak RSS MB and windows:', peaks)
    assert peaks['long_windows'] > 8 * peaks['short_windows']
    assert peaks['long'] < peaks['short'] + PEAK_RSS_MARGIN_MB, peaks


def test_evaluate_scores_against_a_segments_csv(recordings):
    bag, csv = recordings[0]
    summary = evaluate(Evaluation(bag, '/camera/image_raw', truth=str(csv), progress=False,
                                  device='cpu'))
    assert summary['scored_windows'] == summary['windows'] > 50
    assert 0.0 <= summary['accuracy'] <= 1.0
