"""The node as users run it: the console script as a process, real DDS on loopback.

Its own ROS_DOMAIN_ID per test, signals and exit codes.
"""

import json
import signal
import subprocess
import time
from functools import partial

import jsonschema
import numpy as np
import pytest

from conftest import REPO, STOP_WITHIN_S, console_script
from test_vision_msgs import VISION_MSGS_4_1_1
from timesformer_ros.interface import DIAGNOSTIC_NAME
from timesformer_ros.messages import CLASSIFICATION, DETECTION_2D, LABEL_INFO, stamp_ns
from timesformer_ros.messages import dict_ns as stamp_of
from timesformer_ros.outputs import OUTPUTS, WINDOW_SCHEMA

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import (  # noqa: E402
    DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data)
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from vision_msgs.msg import Classification, Detection2D, LabelInfo  # noqa: E402

CONFIG = REPO / 'config' / 'timesformer.yaml'
# The decoder settings that make ~/label the per-window top-1 (every class active, the best
# current score wins): for tests of the label's plumbing with random models, whose scores
# never hold the default enter threshold.
TOP1_LABEL = ('-p', 'smoothing:=none', '-p', 'enter_threshold:=0.0', '-p',
              'exit_threshold:=0.0', '-p', 'min_duration_s:=0.0')


class Listener:
    """Subscribes to everything the node publishes."""

    def __init__(self, ros, ns='/timesformer'):
        node = ros.node
        self.labels, self.windows, self.spatial, self.overlay = [], [], [], []
        self.classifications = []      # vision_msgs/Classification
        self.detections = []           # vision_msgs/Detection2D
        self.diagnostics, self.label_info = [], []
        self.statuses = []             # (level, message) of each of the node's statuses
        node.create_subscription(String, f'{ns}/label', lambda m: self.labels.append(m.data),
                                 50)
        node.create_subscription(String, f'{ns}/window',
                                 lambda m: self.windows.append(json.loads(m.data)), 50)
        node.create_subscription(Classification, f'{ns}/classification',
                                 self.classifications.append, 50)
        node.create_subscription(Detection2D, f'{ns}/detection', self.detections.append, 50)
        node.create_subscription(Image, f'{ns}/attention/spatial', self.spatial.append, 50)
        node.create_subscription(Image, f'{ns}/attention/overlay', self.overlay.append, 50)
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)

    def _on_diag(self, msg):
        for status in msg.status:
            if status.name == DIAGNOSTIC_NAME:
                self.diagnostics.append({kv.key: kv.value for kv in status.values})
                self.statuses.append((status.level[0], status.message))

    def subscribe_label_info(self, ros, ns='/timesformer'):
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        ros.node.create_subscription(LabelInfo, f'{ns}/label_info', self.label_info.append,
                                     latched)


def frame(index: int, stamp_ns: int, frame_id='camera', height=48, width=64) -> Image:
    rng = np.random.default_rng(index)
    msg = Image(height=height, width=width, encoding='rgb8', is_bigendian=0, step=width * 3)
    msg.data = rng.integers(0, 256, (height, width, 3), dtype=np.uint8).tobytes()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame_id
    return msg


def header_ns(msg) -> int:
    return stamp_ns(msg.header)


def caught_up(listener, frames=None, after: int = 0, steady: bool = False):
    """Return a condition: the node has worked through its input, and its results are all here.

    Its latest diagnostics (newer than the first `after`) say it took `frames` frames (received,
    or reported lost by DDS; any number when None; with `steady`, as many as the diagnostics
    before said: nothing more arrives), no window waits, and every window it processed has
    reached `listener`. Wait on it instead of a fixed time for the last results.
    """
    def taken(status: dict) -> int:
        return int(status['frames_received']) + int(status.get('frames_lost_in_dds', 0))

    def done() -> bool:
        if len(listener.diagnostics) <= after + steady:
            return False
        status = listener.diagnostics[-1]
        return ((frames is None or taken(status) == frames) and
                (not steady or taken(status) == taken(listener.diagnostics[-2])) and
                status['windows_pending'] == '0' and
                len(listener.windows) == int(status['frames_processed']))
    return done


def wait_for_subscriber(ros, publisher, timeout=20.0):
    assert ros.spin_until(lambda: publisher.get_subscription_count() > 0, timeout), \
        'the node did not subscribe to the image topic in time'


def publish_at(ros, publisher, count, rate_hz, first_stamp_ns=1_000_000_000_000,
               period_ns=None, **frame_kwargs) -> list:
    """Publish `count` frames at `rate_hz` (paced by serving callbacks); returns stamps."""
    period_ns = period_ns or int(1e9 / rate_hz)
    stamps = []
    start = time.monotonic()
    for i in range(count):
        stamp = first_stamp_ns + i * period_ns
        publisher.publish(frame(i, stamp, **frame_kwargs))
        stamps.append(stamp)
        ros.spin_for(max(0.0, start + (i + 1) / rate_hz - time.monotonic()))
    return stamps


def test_node_end_to_end_at_30hz(ros, start_node, small_checkpoint):
    node = start_node('-p', f'checkpoint:={small_checkpoint}', '-p', 'publish_overlay:=true',
                      '-r', 'image:=/camera/image_raw', *TOP1_LABEL)
    listener = Listener(ros)
    pub = ros.node.create_publisher(Image, '/camera/image_raw', qos_profile_sensor_data)
    wait_for_subscriber(ros, pub)
    stamps = publish_at(ros, pub, 90, 30.0, frame_id='camera_optical')
    assert ros.spin_until(lambda: len(listener.windows) >= 20, 30.0), \
        f'only {len(listener.windows)} results'
    ros.spin_until(lambda: len(listener.spatial) >= len(listener.windows), 30.0)
    published = set(stamps)
    for result in listener.windows:
        end = stamp_of(result['window']['end'])
        assert stamp_of(result['header']['stamp']) == end
        assert end in published and stamp_of(result['window']['start']) in published
        assert result['header']['frame_id'] == 'camera_optical'
        assert result['window']['num_frames'] == 4
        assert len(result['temporal_weights']) == 4
        assert abs(sum(result['temporal_weights']) - 1) < 1e-3
        assert [r['class_name'] for r in result['results']] and \
            result['results'][0]['score'] >= result['results'][-1]['score']
        # The checkpoint's 15 fps (the default config): a window spans 3 periods of 1/15 s.
        span = end - stamp_of(result['window']['start'])
        assert abs(span - 3 * 2 * 33_333_333) < 2_000_000
    seqs = [r['seq'] for r in listener.windows]
    assert seqs == sorted(seqs)
    for result in listener.windows:
        jsonschema.validate(result, WINDOW_SCHEMA)
        assert len(result['results']) == 3        # top_k 5 of 3 classes
    # One vision_msgs/Classification per window, with the header of the window's last frame
    # and the same top-k class ids and scores as the JSON.
    ros.spin_until(lambda: len(listener.classifications) >= len(listener.windows), 30.0)
    typed = {header_ns(m): m for m in listener.classifications}
    assert len(typed) == len(listener.classifications) >= len(listener.windows) - 2
    for result in listener.windows:
        msg = typed.get(stamp_of(result['header']['stamp']))
        if msg is None:
            continue        # the last window's may still be on its way
        assert msg.header.frame_id == 'camera_optical'
        assert [(h.class_id, h.score) for h in msg.results] == \
            [(r['class_id'], r['score']) for r in result['results']]
    # One vision_msgs/Detection2D per window: the same header and hypotheses as
    # ~/classification, and the window's roi (in the 64x48 frame's pixels: the region is
    # looked for over the whole frame, the strips the model's centre crop leaves out included)
    # as its box.
    ros.spin_until(lambda: len(listener.detections) >= len(listener.windows), 5.0)
    detections = {header_ns(m): m for m in listener.detections}
    assert len(detections) >= len(listener.windows) - 2
    for result in listener.windows:
        roi = result['roi']
        assert 0 <= roi['x_min'] < roi['x_max'] <= 64 and 0 <= roi['y_min'] < roi['y_max'] <= 48
        assert roi['method'] in ('motion', 'held')      # the fixture's checkpoint has no head
        stamp = stamp_of(result['header']['stamp'])
        msg, typed_msg = detections.get(stamp), typed.get(stamp)
        if msg is None or typed_msg is None:
            continue
        assert (msg.header.frame_id, header_ns(msg)) == \
            (typed_msg.header.frame_id, header_ns(typed_msg))
        assert [(h.hypothesis.class_id, h.hypothesis.score) for h in msg.results] == \
            [(h.class_id, h.score) for h in typed_msg.results]
        box = msg.bbox
        assert np.allclose([box.center.position.x, box.center.position.y, box.size_x,
                            box.size_y],
                           [(roi['x_min'] + roi['x_max']) / 2, (roi['y_min'] + roi['y_max']) / 2,
                            roi['x_max'] - roi['x_min'], roi['y_max'] - roi['y_min']],
                           atol=1e-9)
    # The node publishes exactly the rows of outputs.OUTPUTS, each with its type, and DDS
    # carries the type hashes of vision_msgs 4.1.1.
    published_types = dict(ros.node.get_topic_names_and_types())
    for output in OUTPUTS:
        assert published_types.get(f'/timesformer/{output.name}') == [output.msgtype], output
    for topic, typename in [('classification', CLASSIFICATION), ('label_info', LABEL_INFO),
                            ('detection', DETECTION_2D)]:
        (info,) = ros.node.get_publishers_info_by_topic(f'/timesformer/{topic}')
        assert str(info.topic_type_hash) == VISION_MSGS_4_1_1[typename]
    assert len(listener.labels) >= len(listener.windows) - 2
    assert set(listener.labels) <= {'left', 'right', 'still'}
    classified = {stamp_of(r['header']['stamp']) for r in listener.windows}
    spatial = {header_ns(m) for m in listener.spatial}
    assert classified & spatial and spatial <= published
    image = listener.spatial[0]
    assert (image.encoding, image.height, image.width) == ('32FC1', 4, 4)
    saliency = np.frombuffer(bytes(image.data), '<f4')
    assert np.isfinite(saliency).all() and (saliency >= 0).all()
    assert listener.overlay and listener.overlay[0].encoding == 'rgb8'
    assert (listener.overlay[0].height, listener.overlay[0].width) == (48, 48)  # centre square
    assert {header_ns(m) for m in listener.overlay} <= published

    # A subscriber that joins late still gets the latched label map.
    listener.subscribe_label_info(ros)
    assert ros.spin_until(lambda: listener.label_info, 30.0)
    (info,) = listener.label_info
    assert [(c.class_id, c.class_name) for c in info.class_map] == \
        [(0, 'left'), (1, 'right'), (2, 'still')]
    assert info.threshold == 0.0

    assert ros.spin_until(lambda: listener.diagnostics, 30.0)
    diag = listener.diagnostics[-1]
    assert diag['device'] == 'cpu' and int(diag['frames_received']) > 0
    assert diag['accounted'] == 'True'
    # The sampling it uses, and why: the checkpoint's clip rate, as the start-up log said.
    sampling = "15 fps by header stamps (the checkpoint's clip rate)"
    assert diag['sampling'] == sampling

    code, elapsed, output = node.stop(signal.SIGINT)
    assert code == 0, output
    assert elapsed < STOP_WITHIN_S
    assert 'Traceback' not in output
    assert f'sampling: {sampling}' in output


def test_sigterm_ends_the_node_with_exit_code_0(ros, start_node, small_checkpoint):
    node = start_node('-p', f'checkpoint:={small_checkpoint}')
    listener = Listener(ros)
    assert ros.spin_until(lambda: listener.diagnostics, 20.0)
    code, elapsed, output = node.stop(signal.SIGTERM)
    assert code == 0 and elapsed < STOP_WITHIN_S, output


def test_backpressure_drops_stale_windows_and_accounts_for_every_frame(ros, start_node,
                                                                       tmp_path):
    """A model far slower than the camera: windows are dropped (latest wins), nothing queues.

    Latency and memory stay bounded, and every frame ends in exactly one counter.
    """
    from timesformer_ros.checkpoints import save_checkpoint
    from timesformer_ros.model import TimeSformer, TimeSformerConfig
    slow = TimeSformerConfig(img_size=96, patch_size=8, num_frames=8, embed_dim=128, depth=6,
                             num_heads=4, num_classes=3)
    ckpt = save_checkpoint(tmp_path / 'slow', TimeSformer(slow), ['a', 'b', 'c'])
    node = start_node('-p', f'checkpoint:={ckpt}', '-p', 'sample_every:=1', '-p',
                      'qos:=reliable', '-p', 'max_gap_s:=5.0')
    listener = Listener(ros)
    pub = ros.node.create_publisher(Image, 'image', QoSProfile(
        depth=50, reliability=ReliabilityPolicy.RELIABLE))
    wait_for_subscriber(ros, pub)
    assert ros.spin_until(lambda: listener.diagnostics, 20.0)
    # Measure what the model can serve: frames at a slow rate, one result per frame.
    publish_at(ros, pub, 12, 4.0, period_ns=250_000_000)
    ros.spin_until(lambda: len(listener.windows) >= 4, 30.0)
    latencies = [r['latency_ms'] for r in listener.windows]
    infer_ms = float(np.median(latencies))
    rate = min(120.0, 4 * 1000.0 / infer_ms)
    rss_before = node.rss_mb()
    count = int(rate * 6)
    stamps = publish_at(ros, pub, count, rate, first_stamp_ns=2_000_000_000_000,
                        period_ns=int(1e9 / rate))
    assert ros.spin_until(lambda: listener.diagnostics and int(
        listener.diagnostics[-1]['frames_received']) >= 12 + count and
        listener.diagnostics[-1]['windows_pending'] == '0', 60.0), listener.diagnostics[-1:]
    diag = listener.diagnostics[-1]
    received = int(diag['frames_received'])
    assert received == 12 + count                      # reliable QoS: every frame arrived
    assert int(diag['frames_dropped']) > count / 3      # 4x too fast: most windows dropped
    assert diag['accounted'] == 'True'
    assert received == sum(int(diag[k]) for k in (
        'frames_refused', 'frames_skipped_by_sampling', 'frames_buffered', 'frames_processed',
        'frames_dropped', 'frames_failed'))
    late = [r['latency_ms'] for r in listener.windows
            if stamp_of(r['header']['stamp']) >= stamps[len(stamps) // 2]]
    assert late and max(late) < 3 * infer_ms + 500, (infer_ms, late)
    assert node.rss_mb() - rss_before < 100
    code, elapsed, output = node.stop()
    assert code == 0 and elapsed < STOP_WITHIN_S, output


def set_parameters(ros, **values):
    client = ros.node.create_client(SetParameters, '/timesformer/set_parameters')
    assert client.wait_for_service(timeout_sec=20.0)
    request = SetParameters.Request()
    request.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
    future = client.call_async(request)
    assert ros.spin_until(future.done, 30.0)
    return future.result().results


def test_runtime_parameters_take_effect_and_invalid_ones_are_refused(ros, start_node,
                                                                     small_checkpoint):
    node = start_node('-p', f'checkpoint:={small_checkpoint}', '-p', 'sample_every:=1',
                      *TOP1_LABEL)
    listener = Listener(ros)
    pub = ros.node.create_publisher(Image, 'image', qos_profile_sensor_data)
    wait_for_subscriber(ros, pub)
    # publish_overlay is false: ~/attention/overlay is not advertised at all (issue 25).
    overlays = partial(ros.node.count_publishers, '/timesformer/attention/overlay')
    assert ros.spin_until(lambda: ros.node.count_publishers('/timesformer/attention/spatial'),
                          30.0)
    assert overlays() == 0

    (ok,) = set_parameters(ros, top_k=2)
    assert ok.successful
    assert all(r.successful for r in set_parameters(ros, score_threshold=1.0,
                                                    publish_overlay=True))
    assert ros.spin_until(lambda: overlays() == 1, 30.0)       # advertised once switched on
    publish_at(ros, pub, 12, 30.0)
    assert ros.spin_until(lambda: len(listener.windows) >= 3, 30.0)
    assert all(len(r['results']) == 2 for r in listener.windows)
    assert ros.spin_until(lambda: listener.overlay, 30.0)
    assert ros.spin_until(lambda: listener.labels, 30.0)
    assert set(listener.labels) == {'unknown'}  # no softmax score reaches 1.0

    # Ranges are refused by rclpy from the descriptors, read-only parameters too; the
    # reason names the parameter and the rule.
    for values, reason in [({'top_k': 0}, 'top_k out of range'),
                           ({'score_threshold': 1.5}, 'score_threshold out of range'),
                           ({'device': 'cuda'}, 'read-only parameter: device')]:
        (result,) = set_parameters(ros, **values)
        assert not result.successful and reason in result.reason, result.reason

    assert all(r.successful for r in set_parameters(ros, stride=3, score_threshold=0.0))
    before = len(listener.windows)
    publish_at(ros, pub, 12, 30.0, first_stamp_ns=3_000_000_000_000)
    ros.spin_until(lambda: len(listener.windows) >= before + 3, 30.0)
    later = listener.windows[before:]
    # stride 3 after a reset (the stamps jumped): first window after 4 frames, then every 3.
    assert len(later) == 3, [r['seq'] for r in later]
    assert all(label != 'unknown' for label in listener.labels[-2:])

    # Each change the node applied is one line of its log, old -> new; refused ones are not;
    # a value set again unchanged is no change.
    assert all(r.successful for r in set_parameters(ros, stride=3, publish_overlay=False))
    assert ros.spin_until(lambda: overlays() == 0, 30.0)       # and gone once switched off
    code, _, output = node.stop()
    assert code == 0, output
    changes = [line.split(']: ')[-1] for line in output.splitlines() if ']: parameter ' in line]
    assert changes == ['parameter top_k: 5 -> 2', 'parameter score_threshold: 0.0 -> 1.0',
                       'parameter publish_overlay: False -> True', 'parameter stride: 1 -> 3',
                       'parameter score_threshold: 1.0 -> 0.0',
                       'parameter publish_overlay: True -> False'], changes


@pytest.mark.parametrize('args, message', [
    (('-p', 'checkpoint:=/nonexistent/model.pyth'), 'checkpoint not found: /nonexistent'),
    (('-p', 'checkpoint:=preset:huge'), "unknown preset 'huge'"),
    (('-p', 'device:=cuda'), 'no CUDA GPU is available'),
    (('-p', 'input_transport:=ffmpeg'), 'input_transport must be one of'),
])
def test_startup_faults_exit_non_zero_with_one_clear_line(ros, args, message, small_checkpoint):
    import torch
    if 'device:=cuda' in args and torch.cuda.is_available():
        pytest.skip('this machine has a GPU')
    extra = () if 'checkpoint' in args[1] else ('-p', f'checkpoint:={small_checkpoint}')
    started = time.monotonic()
    result = subprocess.run(console_script('timesformer_node') + [
        '--ros-args', '--params-file', str(CONFIG), *extra, *args],
        env=ros.env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert time.monotonic() - started < 10
    output = result.stdout + result.stderr
    assert message in output and 'Traceback' not in output
    fatal = [line for line in output.splitlines() if 'cannot start' in line]
    assert len(fatal) == 1
