"""Several cameras, one node: real DDS between the test and the node's process.

Three cameras at 30, 15 and 5 Hz with different sizes and encodings each get their own results
at their own sampled rate, with their own headers; a camera flooded with bad frames changes
nothing for the others.
"""

import numpy as np
import pytest

from conftest import STOP_WITHIN_S
from test_node import TOP1_LABEL, Listener, header_ns, wait_for_subscriber
from timesformer_ros.interface import ENGINE_DIAGNOSTIC_NAME, diagnostic_name
from timesformer_ros.messages import dict_ns as stamp_of

pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

CHANNELS = {'rgb8': 3, 'bgr8': 3, 'mono8': 1}
FIRST_STAMP = 1_000_000_000_000
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)


def image(index: int, stamp_ns: int, frame_id: str, encoding: str, height: int,
          width: int) -> Image:
    channels = CHANNELS[encoding]
    rng = np.random.default_rng(index)
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=0,
                step=width * channels)
    msg.data = rng.integers(0, 256, height * width * channels, dtype=np.uint8).tobytes()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame_id
    return msg


class Camera:
    """A test camera: publishes on its topic every `every`-th tick of the test's clock."""

    def __init__(self, ros, name, topic, rate_hz, encoding, height, width, seed):
        self.name, self.rate_hz, self.seed = name, rate_hz, seed
        self.encoding, self.height, self.width = encoding, height, width
        self.publisher = ros.node.create_publisher(Image, topic, RELIABLE)
        self.stamps = []
        self.results = Listener(ros, f'/timesformer/{name}')

    def frame(self, i: int):
        stamp = FIRST_STAMP + i * int(1e9 / self.rate_hz)
        self.stamps.append(stamp)
        return image(self.seed * 100_000 + i, stamp, f'{self.name}_optical', self.encoding,
                     self.height, self.width)


def run_cameras(ros, cameras, seconds, tick_hz, extra=None):
    """Publish every camera at its rate for `seconds`, paced by a `tick_hz` clock.

    `extra(tick)` may publish more (a flood) at each tick.
    """
    import time
    start = time.monotonic()
    counts = {camera.name: 0 for camera in cameras}
    for tick in range(int(seconds * tick_hz)):
        for camera in cameras:
            every = round(tick_hz / camera.rate_hz)
            if tick % every == 0:
                camera.publisher.publish(camera.frame(counts[camera.name]))
                counts[camera.name] += 1
        if extra:
            extra(tick)
        ros.spin_for(max(0.0, start + (tick + 1) / tick_hz - time.monotonic()))


class Diagnostics:
    def __init__(self, ros):
        self.statuses = {}      # name -> the latest values
        ros.node.create_subscription(DiagnosticArray, '/diagnostics', self._on, 10)

    def _on(self, msg):
        for status in msg.status:
            self.statuses[status.name] = {kv.key: kv.value for kv in status.values}


def start_cameras_node(start_node, checkpoint, names, *extra):
    return start_node('-p', f'checkpoint:={checkpoint}', '-p', f'cameras:=[{",".join(names)}]',
                      '-p', 'qos:=reliable', '-p', 'qos_depth:=50', *TOP1_LABEL, *extra)


def settle(ros, diagnostics, cameras, timeout=15.0):
    """Wait until the node has received every published frame and has nothing pending."""
    def done():
        return all(
            int(diagnostics.statuses.get(diagnostic_name(c.name), {}).get(
                'frames_received', -1)) == len(c.stamps) and
            diagnostics.statuses[diagnostic_name(c.name)]['windows_pending'] == '0' and
            diagnostics.statuses[diagnostic_name(c.name)]['frames_waiting_decode'] == '0'
            for c in cameras)
    assert ros.spin_until(done, timeout), diagnostics.statuses
    # The results of the last windows may still be on their way: every processed window's.
    ros.spin_until(lambda: all(len(c.results.windows) >= int(diagnostics.statuses[
        diagnostic_name(c.name)]['frames_processed']) for c in cameras), 5.0)


def test_three_cameras_at_their_own_rates_sizes_and_encodings(ros, start_node,
                                                              small_checkpoint):
    node = start_cameras_node(start_node, small_checkpoint, ['front', 'left', 'rear'],
                              '-r', 'front/image:=/robot/front/image_raw')
    diagnostics = Diagnostics(ros)
    cameras = [Camera(ros, 'front', '/robot/front/image_raw', 30.0, 'rgb8', 48, 64, 1),
               Camera(ros, 'left', '/left/image', 15.0, 'bgr8', 60, 80, 2),
               Camera(ros, 'rear', '/rear/image', 5.0, 'mono8', 30, 40, 3)]
    for camera in cameras:
        wait_for_subscriber(ros, camera.publisher)
    run_cameras(ros, cameras, 3.0, 30.0)
    settle(ros, diagnostics, cameras)

    # The checkpoint's 15 fps clip rate (default config): the 30 Hz camera is sampled at 15 Hz,
    # the others take every frame; one window per sampled frame once T=4 are held (stride 1).
    sampled_period = {'front': 2 * 33_333_333, 'left': 66_666_666, 'rear': 200_000_000}
    for camera in cameras:
        status = diagnostics.statuses[diagnostic_name(camera.name)]
        windows = camera.results.windows
        # Nothing is refused, except that a machine busy elsewhere (these 2 cores are shared)
        # may shed a frame as backlog now and then.
        refused = {k: v for k, v in status.items() if k.startswith('refused_')}
        assert status['accounted'] == 'True' and set(refused) <= {'refused_backlog'}, refused
        backlog = int(refused.get('refused_backlog', 0))
        assert backlog <= 2, refused
        assert status['topic'] == ('/robot/front/image_raw' if camera.name == 'front'
                                   else f'/{camera.name}/image')
        sampled = len(camera.stamps) // (2 if camera.name == 'front' else 1)
        expected = sampled - 3
        processed, dropped = int(status['frames_processed']), int(status['frames_dropped'])
        assert expected - backlog <= processed + dropped <= expected, (camera.name, status)
        assert len(windows) == processed and processed >= 0.8 * expected, (camera.name, status)
        # Every result is this camera's: its frames' stamps and frame_id, on every output.
        mine = set(camera.stamps)
        ends = [stamp_of(w['window']['end']) for w in windows]
        assert all(w['header']['frame_id'] == f'{camera.name}_optical' for w in windows)
        assert set(ends) <= mine and all(stamp_of(w['window']['start']) in mine
                                         for w in windows)
        assert ends == sorted(ends)
        gaps = np.diff(ends)
        assert abs(np.median(gaps) - sampled_period[camera.name]) < 2_000_000, \
            (camera.name, gaps)
        ros.spin_until(lambda: len(camera.results.classifications) >= len(windows) and
                       len(camera.results.spatial) >= len(windows), 5.0)
        for msg in camera.results.classifications + camera.results.spatial:
            assert msg.header.frame_id == f'{camera.name}_optical' and header_ns(msg) in mine
        assert len(camera.results.labels) == len(windows)
        assert set(camera.results.labels) <= {'left', 'right', 'still'}
    engine = diagnostics.statuses[ENGINE_DIAGNOSTIC_NAME]
    assert engine['streams'] == '3' and int(engine['batches']) > 0
    sizes = dict(item.split(':') for item in engine['batch_sizes'].split())
    assert sum(int(k) * int(v) for k, v in sizes.items()) == \
        sum(len(c.results.windows) for c in cameras)
    # One label map for all cameras; no unnamed camera's outputs.
    topics = dict(ros.node.get_topic_names_and_types())
    assert '/timesformer/label_info' in topics and '/timesformer/label' not in topics
    assert '/timesformer/rear/active' in topics
    code, elapsed, output = node.stop()
    assert code == 0 and elapsed < STOP_WITHIN_S, output


def bad_frame(kind: str, i: int, stamp_ns: int) -> Image:
    msg = image(900_000 + i, stamp_ns, 'bad_optical', 'rgb8', 48, 64)
    if kind == 'encoding':
        msg.encoding = 'yuv444_planar'
    elif kind == 'short':
        msg.data = bytes(msg.data)[:100]
    return msg


def windows_by_end(camera):
    """{window end: (window start, [(class id, score), ...])} of a camera's results."""
    return {stamp_of(w['window']['end']): (
        stamp_of(w['window']['start']), [(r['class_id'], r['score']) for r in w['results']])
        for w in camera.results.windows}


def run_pair(ros, start_node, checkpoint, flood: bool):
    names = ['bad', 'left', 'rear'] if flood else ['left', 'rear']
    node = start_cameras_node(start_node, checkpoint, names)
    diagnostics = Diagnostics(ros)
    cameras = [Camera(ros, 'left', '/left/image', 15.0, 'bgr8', 60, 80, 2),
               Camera(ros, 'rear', '/rear/image', 5.0, 'mono8', 30, 40, 3)]
    flood_publisher = ros.node.create_publisher(Image, '/bad/image', RELIABLE)
    for camera in cameras:
        wait_for_subscriber(ros, camera.publisher)

    def flood_tick(tick):
        # 60 Hz of garbage: wrong encodings, short data, duplicate stamps, stamps jumping
        # back and forth (each a reset), and runs of valid frames that complete windows.
        stamp = FIRST_STAMP + tick * 16_666_666 + (tick // 28 % 2) * 3_000_000_000
        kind = ('encoding', 'short', 'ok', 'ok', 'ok', 'ok', 'ok')[tick % 7]
        flood_publisher.publish(bad_frame(kind, tick, stamp))
        if tick % 5 == 0:
            flood_publisher.publish(bad_frame('ok', tick, stamp))    # a duplicate stamp

    if flood:
        wait_for_subscriber(ros, flood_publisher)
    run_cameras(ros, cameras, 3.0, 60.0, flood_tick if flood else None)
    settle(ros, diagnostics, cameras)
    code, _, output = node.stop()
    assert code == 0, output
    # Taken now: the next run publishes on the same topics, which these listeners still hear.
    return ({c.name: (windows_by_end(c), list(c.stamps)) for c in cameras},
            dict(diagnostics.statuses))


def test_a_camera_flooded_with_bad_frames_changes_nothing_for_the_others(ros, start_node,
                                                                         small_checkpoint):
    quiet, _ = run_pair(ros, start_node, small_checkpoint, flood=False)
    flooded, statuses = run_pair(ros, start_node, small_checkpoint, flood=True)
    bad = statuses[diagnostic_name('bad')]
    assert int(bad['refused_unsupported_encoding']) > 0 and int(bad['refused_short_data']) > 0
    assert int(bad['refused_duplicate_stamp']) > 0 and int(bad['resets_backwards']) > 0
    assert int(bad['frames_processed']) > 0        # its windows shared batches with the others
    for name in ('left', 'rear'):
        (a, stamps), (b, flooded_stamps) = quiet[name], flooded[name]
        assert stamps == flooded_stamps
        status = statuses[diagnostic_name(name)]
        # Nothing of the good camera refused, but for `backlog`: on a machine busy with other
        # work its decoder thread can fall INTAKE_DEPTH frames behind, which is load, not the
        # flood's frames (seen in 2 of about 10 runs).
        backlog = int(status.get('refused_backlog', 0))
        assert status['frames_refused'] == str(backlog) and not any(
            k.startswith('resets_') for k in status), \
            {k: v for k, v in status.items() if k.startswith(('camera', 'frames', 'refused',
                                                              'resets'))}
        assert len(a) >= 0.8 * (len(stamps) - 3)
        length = max(sum(a[end][0] <= s <= end for s in stamps) for end in a)
        common = {end for end in set(a) & set(b) if a[end][0] == b[end][0]}
        # The same windows, up to a window dropped as stale on a busy machine in either run
        # and the windows holding a frame lost to the backlog...
        lost = int(status['frames_dropped']) + backlog * length
        assert len(common) >= len(a) - lost - 1, (name, a, b)
        assert set(b) <= set(stamps)
        for end in common:
            (_, results_a), (_, results_b) = a[end], b[end]
            # ... with the same span, classes and scores (JSON rounds to 6 digits).
            assert [c for c, _ in results_a] == [c for c, _ in results_b], end
            assert np.allclose([s for _, s in results_a], [s for _, s in results_b],
                               atol=2e-6), end


@pytest.mark.parametrize('cameras, message', [
    ('[front,front]', "camera names must differ, got ['front', 'front']"),
    ('[front,2nd]', "camera names must be ROS name tokens"),
    ("[front,'']", "camera names must be ROS name tokens"),
])
def test_bad_camera_lists_exit_2_with_one_line(ros, small_checkpoint, cameras, message):
    import subprocess
    from conftest import console_script
    result = subprocess.run(console_script('timesformer_node') + [
        '--ros-args', '-p', f'checkpoint:={small_checkpoint}', '-p', f'cameras:={cameras}'],
        env=ros.env, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and message in output, output
    assert 'Traceback' not in output
    assert len([line for line in output.splitlines() if 'cannot start' in line]) == 1


def test_compressed_cameras_take_their_own_compressed_topics(ros, start_node,
                                                             small_checkpoint):
    from sensor_msgs.msg import CompressedImage
    from test_frames import compressed
    start_cameras_node(start_node, small_checkpoint, ['a', 'b'], '-p',
                       'input_transport:=compressed', '-p', 'sample_every:=1')
    listeners = {name: Listener(ros, f'/timesformer/{name}') for name in ('a', 'b')}
    publishers = {name: ros.node.create_publisher(
        CompressedImage, f'/{name}/image/compressed', RELIABLE) for name in ('a', 'b')}
    for publisher in publishers.values():
        wait_for_subscriber(ros, publisher)
    rng = np.random.default_rng(0)
    stamps = {name: [] for name in publishers}

    def ends(name):
        return [stamp_of(w['window']['end']) for w in listeners[name].windows]
    # 8 frames, each sampled (sample_every 1): windows end at frames 4..8 of each camera. The test
    # waits for each window before it sends the next frame, so none is replaced as stale however
    # busy the machine is, and every one must come back.
    for i in range(8):
        for name, fmt in (('a', 'jpg'), ('b', 'png')):
            msg = compressed(fmt, rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
            stamp = FIRST_STAMP + i * 50_000_000 + (name == 'b') * 7_000_000
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            msg.header.frame_id = f'{name}_optical'
            publishers[name].publish(msg)
            stamps[name].append(stamp)
        if i >= 3:
            assert ros.spin_until(lambda: all(stamps[n][-1] in ends(n) for n in listeners),
                                  15.0), {name: ends(name) for name in listeners}
        else:
            ros.spin_for(0.05)
    for name, listener in listeners.items():
        assert ends(name) == stamps[name][3:]
        assert {w['header']['frame_id'] for w in listener.windows} == {f'{name}_optical'}


def test_per_camera_overrides_take_effect_for_that_camera_only(ros, start_node,
                                                               small_checkpoint):
    """Two 30 Hz cameras: `a` samples at its own 5 fps and keeps its own top_k.

    `b` follows the globals (the checkpoint's 15 fps), also when one changes at run time; a
    runtime change of `a`'s override changes `a` alone.
    """
    from test_node import set_parameters
    start_cameras_node(start_node, small_checkpoint, ['a', 'b'], '-p',
                       'cameras.a.target_fps:=5.0', '-p', 'cameras.a.top_k:=2')
    diagnostics = Diagnostics(ros)
    cameras = [Camera(ros, 'a', '/a/image', 30.0, 'rgb8', 48, 64, 1),
               Camera(ros, 'b', '/b/image', 30.0, 'rgb8', 48, 64, 2)]
    for camera in cameras:
        wait_for_subscriber(ros, camera.publisher)
    run_cameras(ros, cameras, 2.0, 30.0)
    settle(ros, diagnostics, cameras)
    a, b = (camera.results.windows for camera in cameras)
    gaps = {camera.name: np.median(np.diff([stamp_of(w['window']['end'])
                                            for w in camera.results.windows]))
            for camera in cameras}
    assert abs(gaps['a'] - 6 * 33_333_333) < 2_000_000, gaps       # 5 fps of a 30 Hz camera
    assert abs(gaps['b'] - 2 * 33_333_333) < 2_000_000, gaps       # 15 fps
    assert len(a) >= 2 and len(b) >= 3 * len(a)
    assert {len(w['results']) for w in a} == {2} and {len(w['results']) for w in b} == {3}
    status = diagnostics.statuses[diagnostic_name('a')]
    assert 'target_fps:5.0' in status['overrides'] and 'top_k:2' in status['overrides']
    assert diagnostics.statuses[diagnostic_name('b')]['overrides'] == ''

    # At run time: the global top_k reaches b only (a has its own); a's override, a only.
    assert all(r.successful for r in set_parameters(ros, top_k=1))
    assert all(r.successful for r in set_parameters(ros, **{'cameras.a.top_k': 3}))
    refused = set_parameters(ros, **{'cameras.a.top_k': 0})
    assert not refused[0].successful and 'cameras.a.top_k' in refused[0].reason
    seen = {camera.name: len(camera.results.windows) for camera in cameras}
    for camera in cameras:
        camera.stamps.clear()
    for camera, first in zip(cameras, (5_000, 5_000)):
        camera.frame = _shifted(camera.frame, first)
    run_cameras(ros, cameras, 1.5, 30.0)
    assert ros.spin_until(lambda: all(len(c.results.windows) >= seen[c.name] + 2
                                      for c in cameras), 10.0)
    later = {camera.name: camera.results.windows[seen[camera.name] + 1:] for camera in cameras}
    assert {len(w['results']) for w in later['a']} == {3}
    assert {len(w['results']) for w in later['b']} == {1}


def _shifted(frame, offset):
    """Continue a camera's frame source `offset` frames on (the stamps keep increasing)."""
    return lambda i: frame(i + offset)


@pytest.mark.parametrize('override, message', [
    ('cameras.front.qos:=bogus', "cameras.front.qos must be one of ['sensor_data', 'reliable']"),
    ('cameras.front.target_fps:=5', 'parameter cameras.front.target_fps (float'),
    ('cameras.rear.top_k:=0', 'parameter cameras.rear.top_k (int): '),
    ('cameras.rear.exit_threshold:=0.9', 'exit_threshold'),
])
def test_bad_camera_overrides_exit_2_with_one_line(ros, small_checkpoint, override, message):
    import subprocess
    from conftest import console_script
    result = subprocess.run(console_script('timesformer_node') + [
        '--ros-args', '-p', f'checkpoint:={small_checkpoint}', '-p', 'cameras:=[front,rear]',
        '-p', override], env=ros.env, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and message in output, output
    assert 'Traceback' not in output
    assert len([line for line in output.splitlines() if 'cannot start' in line]) == 1


def test_help_lists_the_per_camera_overrides():
    import subprocess
    from conftest import console_script
    from timesformer_ros.interface import PER_CAMERA
    result = subprocess.run(console_script('timesformer_node') + ['--help'],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    flat = ' '.join(result.stdout.split())
    assert 'per-camera overrides' in flat
    assert all(f'cameras.CAMERA.{name}' in flat for name in PER_CAMERA)
