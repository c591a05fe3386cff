"""Hostile input against the running node, over real DDS: it stays alive, bounded and honest.

Decompression bombs of each format, NaN and inf frames, huge declared sizes on the raw and the
compressed path, and floods of costly frames. Throughout: the node's peak resident memory stays
within 300 MB of its warmed-up size (VmHWM, reset after warm-up), /diagnostics is never silent
for 2 periods, its parameter services answer within one, nothing it publishes is invalid JSON,
and good frames sent after the attack get results.
"""

import json
import time

import cv2
import numpy as np
import pytest

from conftest import reset_peak_rss, status_kib
from test_frames import jpeg_header_bomb, png_header_bomb, tiff_header_bomb

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from test_node import Listener, frame, set_parameters, wait_for_subscriber  # noqa: E402

MB = 1024 * 1024
PERIOD_S = 1.0          # diagnostics_period_s, the default


def _strict_json(text: str):
    """Parse JSON, refusing NaN and Infinity (which Python's json module accepts)."""
    def refuse(constant):
        raise ValueError(f'not JSON: {constant}')
    return json.loads(text, parse_constant=refuse)


def _compressed(fmt: str, data: bytes, stamp_ns: int) -> CompressedImage:
    msg = CompressedImage(format=fmt)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = 'camera'
    msg.data = data
    return msg


def _encoded(ext: str, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def good_frame(index: int, stamp_ns: int, transport: str):
    """Return a good 64x48 camera frame: rgb8, or as a JPEG for the compressed transport."""
    msg = frame(index, stamp_ns)
    if transport == 'compressed':
        rgb = np.frombuffer(bytes(msg.data), np.uint8).reshape(48, 64, 3)
        msg = _compressed('jpeg', _encoded('.jpg', rgb[..., ::-1]), stamp_ns)
    return msg


def compressed_attacks():
    """(name, format, data) of hostile compressed frames."""
    # A camera-like 4096x4096 frame (smooth, so a JPEG of a few MB): the largest accepted.
    small = np.random.default_rng(1).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    big = cv2.resize(small, (4096, 4096), interpolation=cv2.INTER_CUBIC)
    return [
        ('jpeg bomb 30000x30000', 'jpeg', jpeg_header_bomb(30000, 30000)),
        ('png bomb 30000x30000 gray8', 'png', png_header_bomb(30000, 30000)),
        ('png bomb 12000x12000 16-bit', 'png', png_header_bomb(12000, 12000, depth=16)),
        ('tiff declaring 30000x30000', 'tiff', tiff_header_bomb(30000, 30000)),
        ('float tiff of NaN', 'tiff', _encoded('.tiff', np.full((48, 64), np.nan, np.float32))),
        ('garbage', 'jpeg', b'\xff\xd8' + bytes(range(256)) * 4),
        ('valid 4096x4096 jpeg (costly)', 'jpeg', _encoded('.jpg', big)),
    ]


def raw_attacks(stamp_ns: int):
    """(name, message) of hostile raw frames."""
    huge = frame(0, stamp_ns)
    huge.height = huge.width = 30000          # declared; the data is 48x64
    over_pixels = frame(0, stamp_ns)
    over_pixels.height = over_pixels.width = 4097
    over_pixels.encoding, over_pixels.step = 'mono8', 4097
    over_pixels.data = bytes(4097 * 4097)     # really that large: 16.8 MB
    nan = frame(0, stamp_ns)
    nan.encoding, nan.step = '32FC1', 64 * 4
    nan.data = np.full((48, 64), np.nan, '<f4').tobytes()
    inf = frame(0, stamp_ns)
    inf.encoding, inf.step = '64FC1', 64 * 8
    inf.data = np.full((48, 64), np.inf, '<f8').tobytes()
    return [('raw declaring 30000x30000', huge), ('raw 4097x4097 mono8', over_pixels),
            ('raw 32FC1 NaN', nan), ('raw 64FC1 inf', inf)]


class Watch:
    """Everything the node publishes that must stay valid, and /diagnostics' arrival times."""

    def __init__(self, ros):
        self.listener = Listener(ros)
        self.json_topics = {}
        self.invalid = []
        self.diagnostic_times = []
        for topic in ('window', 'events', 'active'):
            self.json_topics[topic] = []
            ros.node.create_subscription(
                String, f'/timesformer/{topic}', lambda m, t=topic: self._json(t, m.data),
                QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        ros.node.create_subscription(
            DiagnosticArray, '/diagnostics',
            lambda m: self.diagnostic_times.append(time.monotonic()), 10)

    def _json(self, topic: str, text: str):
        try:
            self.json_topics[topic].append(_strict_json(text))
        except ValueError as exc:
            self.invalid.append((topic, str(exc), text[:200]))

    def longest_diagnostics_silence(self, since: float) -> float:
        times = [t for t in self.diagnostic_times if t >= since]
        return max(np.diff(times), default=float('inf'))


@pytest.mark.parametrize('transport', ['compressed', 'raw'])
def test_the_node_survives_hostile_frames(ros, start_node, small_checkpoint, transport):
    node = start_node('-p', f'checkpoint:={small_checkpoint}', '-p', 'device:=cpu',
                      '-p', f'input_transport:={transport}', '-p', 'qos:=reliable',
                      '-p', 'qos_depth:=50', '-r', 'image:=/cam/image',
                      '-r', 'image/compressed:=/cam/image/compressed')
    watch = Watch(ros)
    reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    if transport == 'compressed':
        pub = ros.node.create_publisher(CompressedImage, '/cam/image/compressed', reliable)
    else:
        from sensor_msgs.msg import Image
        pub = ros.node.create_publisher(Image, '/cam/image', reliable)
    wait_for_subscriber(ros, pub)
    stamp = [1_000_000_000_000]

    def good_frames(count: int):
        for i in range(count):
            stamp[0] += 33_333_333
            pub.publish(good_frame(i, stamp[0], transport))
            ros.spin_for(1 / 30)

    # Warm up: results flow, then the peak memory starts from here.
    good_frames(30)
    assert ros.spin_until(lambda: len(watch.listener.windows) >= 3, 20.0), 'no results'
    ros.spin_for(1.0)
    reset_peak_rss(node.proc.pid)
    warmed_kib = status_kib(node.proc.pid, 'VmRSS')
    attack_started = time.monotonic()

    # The attack: each hostile frame 5 times, as fast as DDS takes them, then a flood.
    if transport == 'compressed':
        attacks = [(name, lambda s, f=fmt, d=data: _compressed(f, d, s))
                   for name, fmt, data in compressed_attacks()]
    else:
        attacks = [(name, lambda s, m=msg: m) for name, msg in raw_attacks(stamp[0])]
    for name, make in attacks * 5:
        stamp[0] += 33_333_333
        pub.publish(make(stamp[0]))
        ros.spin_for(0.01)
    # The parameter services answer while the node works through the attack.
    asked = time.monotonic()
    assert all(r.successful for r in set_parameters(ros, top_k=2))
    assert time.monotonic() - asked < PERIOD_S
    ros.spin_for(3 * PERIOD_S)
    assert node.proc.poll() is None, node.stop()[2]

    # Good frames after the attack get results again.
    before = len(watch.listener.windows)
    stamp[0] += 5_000_000_000          # a new stream after the gap
    good_frames(30)
    assert ros.spin_until(lambda: len(watch.listener.windows) >= before + 3, 20.0), \
        'no results after the attack'

    peak_kib = status_kib(node.proc.pid, 'VmHWM')
    assert (peak_kib - warmed_kib) * 1024 < 300 * MB, (warmed_kib, peak_kib)
    assert watch.longest_diagnostics_silence(attack_started) < 2 * PERIOD_S
    assert not watch.invalid, watch.invalid
    diag = watch.listener.diagnostics[-1]
    refused = {k: int(v) for k, v in diag.items() if k.startswith('refused_')}
    expected = {'refused_too_large', 'refused_non_finite'} | (
        {'refused_decode_failed'} if transport == 'compressed' else set())
    assert expected <= set(refused), diag
    assert diag['accounted'] == 'True', diag
    code, _, output = node.stop()
    assert code == 0 and 'Traceback' not in output, output
