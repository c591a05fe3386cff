"""Training from labelled recordings: segments, the node's windows, the command, bad input.

Real rosbag2 files written by rosbags, real checkpoints, the real command line.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from timesformer_ros.bags import Evaluation, evaluate, typestore, write_camera_bag
from timesformer_ros.bags.dataset import (
    BOUNDARY, UNLABELLED, Cutting, cut_windows, label_windows, split)
from timesformer_ros.bags.truth import (
    SegmentLabels, TruthError, read_segments, segment_truth)
from timesformer_ros.checkpoints import load_checkpoint
from timesformer_ros.engine import Engine
from timesformer_ros.finetune import BagTraining, starting_point
from timesformer_ros.fleet import digest
from timesformer_ros.messages import COMPRESSED_IMAGE, IMAGE, bag_types
from timesformer_ros.synthetic import SyntheticStream
from timesformer_ros.train import main as train_main

START = 1_700_000_000_000_000_000
FPS = 30.0
SCRIPT = ('moving_left', 'moving_right', 'static')


def seconds(ns: int) -> str:
    """Header stamp ns as exact decimal seconds."""
    return f'{ns // 10 ** 9}.{ns % 10 ** 9:09d}'


def motion_bag(path: Path, seed: int, frames: int = 240, start: int = START) -> Path:
    """Write a bag of the synthetic camera (SCRIPT's motions) and its segments CSV; return it."""
    stream = SyntheticStream(seed=seed, width=160, height=120, fps=FPS, script=SCRIPT).frames()
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
                                          start=START + i * 10 ** 12)) for i in range(2)]


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
    assert segment_truth(path, [1_700_000_001_000_000_000, 5]) == \
        {1_700_000_001_000_000_000: 'wave'}


@pytest.mark.parametrize('text, expected', [
    ('1,3,wave\n5,6,still\n2,4,still\n', 'rows 1 and 3 overlap with different labels'),
    ('start,end,label\n1,2\n', 'row 2: expected start,end,label, got 2 field(s)'),
    ('1,nan,wave\n', "row 1: end 'nan' is not a header stamp"),
    ('1,inf,wave\n', "row 1: end 'inf' is not a header stamp"),
    ('-1,2,wave\n', "row 1: start '-1' is not a header stamp"),
    ('1,1e30,wave\n', "row 1: end '1e30' is not a header stamp"),
    ('1,x,wave\n', "row 1: end 'x' is not a number of seconds"),
    ('3,2,wave\n', 'row 1: end 2 is not after start 3'),
    ('1,2,\n', 'row 1: a label of 1 to 200 characters is needed'),
    ('1,2,' + 'a' * 5000 + '\n', 'row 1: longer than 4096 characters'),
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
        self.clips += [torch.stack(list(frames)).clone() for frames in clips]
        return super().infer(clips, with_attention)


def encoded_bag(path: Path, frames: int = 150):
    """A bag with one camera in changing encodings (rgb8, bgr8, mono8) and one of JPEG frames."""
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
    engine = RecordingEngine(load_checkpoint(run.init or
                                             __import__('timesformer_ros').checkpoints
                                             .embedded_checkpoint()), device='cpu',
                             warmup=False)
    summary = evaluate(Evaluation(bag, topic, progress=False, device='cpu'), engine=engine)
    assert summary['windows'] == len(windows.windows) == len(engine.clips) >= 25
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
    (bag, csv), (other, other_csv) = recordings
    out = tmp_path / 'mine'
    assert train('--bags', bag, '--truth', csv, '--out', out, '--steps', 8,
                 '--batch-size', 4, '--seed', 1) == 0
    ckpt = load_checkpoint(out.with_suffix('.json'))
    assert sorted(ckpt.labels) == sorted(SCRIPT) and ckpt.clip_fps == 10.0
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
    assert record['val_bags'] == [str(other.resolve())] and record['val_windows'] > 100


def test_per_frame_truth_from_the_bag_trains_too(tmp_path, recordings):
    bag, _ = recordings[0]
    out = tmp_path / 'topic'
    assert train('--bags', bag, '--truth', '/motion', '--out', out, '--steps', 2,
                 '--batch-size', 4) == 0
    assert sorted(load_checkpoint(out.with_suffix('.json')).labels) == sorted(SCRIPT)


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
