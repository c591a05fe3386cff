"""Property tests (hypothesis) of the clip buffer and the frame decoder.

The clip buffer never mixes or reorders frames, and the frame decoder returns RGB or a FrameError
for any message. They skip, with the reason, where hypothesis is not installed (a robot's
`colcon test` without python3-hypothesis); the deterministic tests of the same modules run
everywhere.
"""

import resource

import numpy as np
import pytest

from timesformer_ros.clips import NS, ClipBuffer
from timesformer_ros.frames import MAX_PIXELS, MAX_SIDE, FrameError, decode

hypothesis = pytest.importorskip('hypothesis', reason='property tests need hypothesis '
                                 '(requirements/test.txt; python3-hypothesis on a robot)')
sensor_msgs = pytest.importorskip('sensor_msgs.msg')
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(stamps=st.lists(st.integers(min_value=0, max_value=5 * NS), min_size=1, max_size=60),
       keys=st.lists(st.sampled_from(['a', 'b']), min_size=60, max_size=60),
       num_frames=st.integers(1, 5), stride=st.integers(1, 4), sample_every=st.integers(1, 3),
       target_fps=st.sampled_from([0.0, 10.0, 30.0]))
def test_windows_are_never_mixed_or_out_of_order(stamps, keys, num_frames, stride, sample_every,
                                                 target_fps):
    buffer = ClipBuffer(num_frames=num_frames, stride=stride, sample_every=sample_every,
                        target_fps=target_fps, max_gap_s=1.0)
    for stamp, key in zip(stamps, keys):
        result = buffer.push(stamp, key, 'cam', lambda s=stamp, k=key: (s, k))
        window = result.window
        if window is None:
            continue
        assert len(window.frames) == num_frames
        assert len({k for _, k in window.frames}) == 1 and window.key == window.frames[0][1]
        window_stamps = [s for s, _ in window.frames]
        assert window_stamps == sorted(set(window_stamps)) == list(window.stamps)
        assert all(b - a <= NS for a, b in zip(window_stamps, window_stamps[1:]))
        assert window.end == stamp


ENCODINGS = ['mono8', 'mono16', 'rgb8', 'bgr8', 'rgba8', 'bgra8', 'yuv422', 'bayer_rggb8',
             'rgb16', '32FC1', '64FC1', 'nv12', '8UC3', '16UC1', 'bogus', '', '8UC7']


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(encoding=st.sampled_from(ENCODINGS), height=st.integers(0, 12),
       width=st.integers(0, 12), extra_step=st.integers(-3, 5),
       data_len=st.one_of(st.none(), st.integers(0, 2000)),
       bigendian=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_decoder_returns_rgb_or_a_frame_error_for_any_message(encoding, height, width,
                                                              extra_step, data_len, bigendian,
                                                              seed):
    rng = np.random.default_rng(seed)
    msg = sensor_msgs.Image(height=height, width=width, encoding=encoding,
                            is_bigendian=int(bigendian))
    msg.step = max(0, width * 4 + extra_step)
    size = msg.step * height * 2 if data_len is None else data_len
    raw = rng.integers(0, 256, size, dtype=np.uint8)
    if encoding in ('32FC1', '64FC1') and seed % 3 == 0 and size:
        raw[:8] = 0xFF  # NaN patterns
    msg.data = raw.tobytes()
    try:
        rgb, key = decode(msg)
    except FrameError as exc:
        assert exc.reason and str(exc)
        return
    assert rgb.dtype == np.uint8 and rgb.shape == (height, width, 3)
    assert (key.height, key.width) == (height, width)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=300), fmt=st.sampled_from(['jpeg', 'png', 'bmp', '']))
def test_decoder_never_crashes_on_garbage_compressed_images(data, fmt):
    msg = sensor_msgs.CompressedImage(format=fmt)
    msg.data = data
    try:
        rgb, _ = decode(msg)
    except FrameError as exc:
        assert exc.reason in ('empty', 'decode_failed', 'too_large')
    else:
        assert rgb.ndim == 3 and rgb.shape[2] == 3


_PEAK_AT_START = []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(['png', 'jpeg']), width=st.integers(1, 65535),
       height=st.integers(1, 65535), depth=st.sampled_from([8, 16]),
       colour=st.sampled_from([0, 2, 6]), tail=st.binary(max_size=64))
def test_compressed_decoder_memory_is_bounded_whatever_the_header_declares(
        fmt, width, height, depth, colour, tail):
    """Decode or refuse headers declaring any size up to 65535 a side, in bounded memory.

    A frame within the limits or a refusal, and the process's peak memory never more than
    300 MB above where the test started.
    """
    from test_frames import jpeg_header_bomb, png_header_bomb
    if not _PEAK_AT_START:
        _PEAK_AT_START.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    data = png_header_bomb(width, height, depth, colour) if fmt == 'png' \
        else jpeg_header_bomb(width, height)
    msg = sensor_msgs.CompressedImage(format=fmt)
    msg.data = data + tail
    try:
        rgb, _ = decode(msg)
    except FrameError as exc:
        assert exc.reason in ('decode_failed', 'too_large')
        if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
            assert exc.reason == 'too_large'
    else:
        assert rgb.shape[:2] == (height, width)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - _PEAK_AT_START[0]
    assert grown_kib < 300 * 1024
