"""The sliding window: exact window sequences, sampling, resets, never mixed windows."""

import pytest

from conftest import REPO
from timesformer_ros.checkpoints import clip_fps_from_name
from timesformer_ros.clips import NS, ClipBuffer, Sampling
from timesformer_ros.interface import read_params_file

MS = 1_000_000
KEY = ('rgb8', 480, 640)


def feed(buffer, stamps, key=KEY, frame_id='cam'):
    """Push frames whose payload is their stamp; return (windows as stamp tuples, results)."""
    windows, results = [], []
    for stamp in stamps:
        result = buffer.push(stamp, key, frame_id, lambda s=stamp: s)
        results.append(result)
        if result.window:
            windows.append(result.window.frames)
            assert result.window.frames == result.window.stamps
    return windows, results


def test_stride_and_sample_every_give_the_exact_windows():
    buffer = ClipBuffer(num_frames=3, stride=2, sample_every=2, max_gap_s=1.0)
    stamps = [i * 33 * MS for i in range(14)]
    windows, results = feed(buffer, stamps)
    # Sampled: frames 0, 2, 4, ..., 12. First window at the 3rd sampled frame, then every 2.
    s = [i * 33 * MS for i in range(0, 14, 2)]
    assert windows == [(s[0], s[1], s[2]), (s[2], s[3], s[4]), (s[4], s[5], s[6])]
    assert sum(r.sampled for r in results) == 7 and sum(not r.sampled for r in results) == 7


def test_stride_larger_than_the_window():
    buffer = ClipBuffer(num_frames=2, stride=3)
    windows, _ = feed(buffer, [i * MS for i in range(1, 10)])
    assert windows == [(1 * MS, 2 * MS), (4 * MS, 5 * MS), (7 * MS, 8 * MS)]


def test_window_carries_stamps_frame_id_and_sequence():
    buffer = ClipBuffer(num_frames=2)
    _, results = feed(buffer, [10, 20, 30], frame_id='camera_optical')
    windows = [r.window for r in results if r.window]
    assert [(w.start, w.end, w.frame_id, w.seq) for w in windows] == \
        [(10, 20, 'camera_optical', 0), (20, 30, 'camera_optical', 1)]


def test_target_fps_samples_a_jittery_30hz_stream_at_15hz():
    buffer = ClipBuffer(num_frames=4, target_fps=15.0)
    jitter = [0, 4, -3, 5, -5, 2, 0, -4, 3, 1, -2, 5, -1, 0, 4, -3]
    stamps = [int((i / 30) * NS) + j * MS for i, j in enumerate(jitter)]
    windows, results = feed(buffer, stamps)
    sampled = [stamps[i] for i, r in enumerate(results) if r.sampled]
    assert sampled == stamps[0::2]
    assert windows[0] == tuple(stamps[0:8:2])


def test_target_fps_above_the_camera_rate_samples_every_frame():
    buffer = ClipBuffer(num_frames=3, target_fps=30.0)
    stamps = [i * 100 * MS for i in range(6)]  # a 10 Hz camera
    _, results = feed(buffer, stamps)
    assert all(r.sampled for r in results)


@pytest.mark.parametrize('bad_stamp, reason', [(150 * MS, 'backwards'), (2000 * MS, 'gap')])
def test_backwards_stamps_and_gaps_reset_the_window(bad_stamp, reason):
    buffer = ClipBuffer(num_frames=3, max_gap_s=0.5)
    stamps = [100 * MS, 200 * MS, 300 * MS, 400 * MS, bad_stamp]
    follow = [bad_stamp + k * 100 * MS for k in (1, 2, 3)]
    windows, results = feed(buffer, stamps + follow)
    assert results[4].reset == reason and results[4].sampled
    assert [r.reset for r in results].count(reason) == 1
    # After the reset a new window needs 3 fresh frames: no window mixes old and new frames.
    assert windows[-1] == (bad_stamp, follow[0], follow[1]) or windows[-1] == tuple(follow)
    assert all(w[0] >= bad_stamp or w[-1] <= 400 * MS for w in windows)


def test_size_or_encoding_change_resets_never_mixing_sizes():
    buffer = ClipBuffer(num_frames=2)
    out = []
    keys = [KEY, KEY, ('rgb8', 240, 320), ('rgb8', 240, 320), ('mono8', 240, 320), KEY]
    for i, key in enumerate(keys):
        result = buffer.push(i * MS, key, 'cam', lambda k=key: k)
        out.append(result)
    windows = [r.window for r in out if r.window]
    assert [w.key for w in windows] == [KEY, ('rgb8', 240, 320)]
    assert all(len(set(w.frames)) == 1 for w in windows)
    assert [r.reset for r in out] == [None, None, 'format_change', None, 'format_change',
                                      'format_change']


def test_duplicate_stamp_is_refused_without_changing_anything():
    buffer = ClipBuffer(num_frames=2)
    feed(buffer, [10])
    result = buffer.push(10, KEY, 'cam', lambda: pytest.fail('must not load'))
    assert result.refused == 'duplicate_stamp' and not result.sampled
    windows, _ = feed(buffer, [20])
    assert windows == [(10, 20)]


def test_a_frame_that_fails_to_load_leaves_the_buffer_unchanged():
    buffer = ClipBuffer(num_frames=2, max_gap_s=0.5)
    feed(buffer, [100 * MS])

    def broken():
        raise ValueError('bad pixels')

    with pytest.raises(ValueError):
        buffer.push(5000 * MS, ('other', 1, 1), 'cam', broken)  # would have reset
    windows, results = feed(buffer, [200 * MS])
    assert windows == [(100 * MS, 200 * MS)] and results[0].reset is None


def test_invalid_parameters_raise():
    for kwargs, message in [({'stride': 0}, 'stride'), ({'sample_every': 0}, 'sample_every'),
                            ({'target_fps': -1}, 'target_fps'), ({'max_gap_s': 0}, 'max_gap_s'),
                            ({'num_frames': 0}, 'num_frames')]:
        with pytest.raises(ValueError, match=message):
            ClipBuffer(**{'num_frames': 2, **kwargs})


def test_the_kinetics_config_samples_as_the_official_8x32_models_were_trained():
    """config/kinetics400_gpu.yaml on a 30 Hz camera: 8 frames 32 frames apart.

    One window per sampled frame (0.94 windows/s), as its comment says (it once sampled every 8th).
    """
    params = read_params_file(REPO / 'config' / 'kinetics400_gpu.yaml')
    sampling = Sampling.resolve(params['target_fps'], params['sample_every'],
                                clip_fps_from_name(params['checkpoint'], 8))
    assert sampling.reason == "the checkpoint's clip rate"
    buffer = sampling.buffer(8, stride=params['stride'], max_gap_s=params['max_gap_s'])
    frame = NS // 30
    windows, _ = feed(buffer, [i * frame for i in range(30 * 60)])   # a minute at 30 Hz
    assert {b - a for w in windows for a, b in zip(w, w[1:])} == {32 * frame}
    span_s = (windows[-1][-1] - windows[0][-1]) / NS
    assert (len(windows) - 1) / span_s == pytest.approx(0.94, abs=0.01)


def test_sampling_is_the_parameters_else_the_checkpoints_clip_rate():
    cases = [((0.0, 0, 10.0), (1, 10.0), "10 fps by header stamps (the checkpoint's clip rate)"),
             ((0.0, 0, None), (1, 0.0), 'every frame (the checkpoint records no clip rate)'),
             ((15.0, 0, 10.0), (1, 15.0), '15 fps by header stamps (target_fps)'),
             ((0.0, 3, 10.0), (3, 0.0), 'every 3 frames (sample_every)'),
             ((0.0, 1, 10.0), (1, 0.0), 'every frame (sample_every)'),
             ((12.0, 3, None), (1, 12.0), '12 fps by header stamps (target_fps)')]
    for args, (every, fps), text in cases:
        sampling = Sampling.resolve(*args)
        assert (sampling.sample_every, sampling.target_fps) == (every, fps), args
        assert sampling.describe() == text
        buffer = sampling.buffer(4, stride=2, max_gap_s=0.5)
        assert (buffer.sample_every, buffer.target_fps, buffer.stride) == (every, fps, 2)
