"""Action segments live: the node and the synthetic camera as processes over real DDS.

The truth from the camera's `motion` topic; `~/events`, the latched `~/active`, the stable
`~/label` against the raw per-window top-1.
"""

import json
import signal
import subprocess

import pytest

from conftest import console_script
from timesformer_ros.messages import dict_ns as ns
from timesformer_ros.segments import from_events, runs, segment_metrics

rclpy = pytest.importorskip('rclpy')
from rclpy.qos import (  # noqa: E402
    DurabilityPolicy, QoSProfile, ReliabilityPolicy)
from std_msgs.msg import String  # noqa: E402
from test_node import Listener, caught_up, set_parameters  # noqa: E402

SECONDS = 60
RATE = 30.0
RELIABLE = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


def changes(sequence):
    return sum(a != b for a, b in zip(sequence, sequence[1:]))


def test_a_60s_stream_gives_ordered_events_at_about_the_offline_quality(ros, start_node):
    """The live chain (camera, DDS, sampling, decoder, events) on a 60 s synthetic stream.

    Offline, `timesformer_bag evaluate` of `record-synthetic --seed 2 --seconds 60` (160x120) reads
    its 36 true segments with a segmental F1@0.1 of 0.737 (40 predicted, 12 false, with the default
    test-time views and decoder; the twelfth stage 0.747, the eleventh 0.761, the ninth 0.704, the
    seventh 0.657, the 60 px model 0.688, the 10 fps model before the 7.5 fps ones 0.838). The
    embedded model's 0.93 s windows (7.5 fps) straddle most of the stream's 0.8-2.5 s segments, and
    the shortest are not announced at all (README, "The embedded motion model"). Live, the same
    stream must give events in order on real frames and about the offline quality.

    Live runs gave 0.60 to 0.73 (0.586 once in CI) while `min_duration_s` was 0.4 s, exactly
    three 7.5 fps window steps: the camera's jittered stamps decided whether three or four were
    needed. The defaults are off that grid now (0.35 s, the same decisions on exact stamps), and
    live gives offline's figure run after run (the seventh stage: 0.657 in 4 of 4 runs).
    The camera also waits for its subscribers, so the node's first window starts at its first
    frame as the offline run's does (offline, starting 0 to 120 frames later gives 0.613 to
    0.706).
    """
    # Reliable QoS and max_gap_s 2: no frame lost and no window restarted when a loaded
    # machine stalls a process, so the node sees the stream as a recording of it would give.
    node = start_node('-p', 'device:=cpu', '-p', 'max_gap_s:=2.0', '-p', 'qos:=reliable',
                      '-p', 'qos_depth:=100')
    listener = Listener(ros)
    truth, events, frames = [], [], set()

    def on_motion(msg):
        data = json.loads(msg.data)
        truth.append((ns(data['stamp']), data['label']))
        frames.add(ns(data['stamp']))

    ros.node.create_subscription(String, 'motion', on_motion, RELIABLE)
    ros.node.create_subscription(String, '/timesformer/events',
                                 lambda m: events.append(json.loads(m.data)), RELIABLE)
    assert ros.spin_until(lambda: listener.diagnostics, 30.0), 'the node did not come up'
    camera = subprocess.Popen(console_script('timesformer_synthetic_camera') + [
        '--ros-args', '-p', f'rate:={RATE}', '-p', 'width:=160', '-p', 'height:=120',
        '-p', 'seed:=2', '-p', f'max_frames:={int(SECONDS * RATE)}', '-p', 'reliable:=true',
        '-p', 'wait_for_subscribers:=1'], env=ros.env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        assert ros.spin_until(lambda: camera.poll() is not None, SECONDS + 60.0)
        assert camera.returncode == 0, camera.stdout.read()
        # The last windows' results.
        assert ros.spin_until(caught_up(listener, after=len(listener.diagnostics), steady=True),
                              60.0), listener.diagnostics[-2:]
    finally:
        if camera.poll() is None:
            camera.kill()
    code, _, output = node.stop()
    assert code == 0, output

    # Events in order, each segment's start before its end, every stamp a real frame's.
    starts = {e['id']: e for e in events if e['event'] == 'start'}
    ends = {e['id']: e for e in events if e['event'] == 'end'}
    assert list(starts) == sorted(starts) and set(ends) <= set(starts)
    order = [(e['event'], e['id']) for e in events]
    assert all(order.index(('start', i)) < order.index(('end', i)) for i in ends)
    stamps = [ns(e['header']['stamp']) for e in events]
    assert stamps == sorted(stamps)
    # The camera waited for this test's truth subscription and the node's image one: the truth
    # is whole and the node's first window starts at the first frame.
    assert len(frames) == SECONDS * RATE
    for event in events:
        for key in ('start', 'end', 'announced'):
            if key in event:
                assert ns(event[key]) in frames, (key, event)
        assert ns(event['header']['stamp']) in frames
    assert all(e['reason'] == 'score' for e in ends.values())

    # The events against the true segments: about the offline quality.
    results = listener.windows
    assert ns(results[0]['window']['start']) == min(frames), results[0]
    metrics = segment_metrics(from_events(events, open_until=2 ** 62), runs(sorted(truth)))
    assert metrics['true_segments'] == 36, metrics
    assert metrics['f1@0.1'] >= 0.6, metrics         # 0.737 live and offline
    assert metrics['false_segments'] <= 14, metrics  # 12 live and offline

    # The raw per-window top-1 flickers; the stable label does not.
    raw = [r['results'][0]['class_name'] for r in results]
    assert changes(raw) >= 1.5 * changes(listener.labels), (changes(raw),
                                                            changes(listener.labels))


def test_late_subscribers_get_the_active_actions_and_bad_thresholds_are_refused(ros,
                                                                                start_node):
    """A planner that joins late reads the segments started and not ended from ~/active.

    The latched ~/active gives it what one subscribed all along derived from ~/events. When the
    camera stops, the input watchdog ends them (reason input_timeout) instead of leaving them
    active.
    """
    start_node('-p', 'device:=cpu', '-p', 'input_timeout_s:=4.0')
    listener = Listener(ros)
    events = []
    ros.node.create_subscription(String, '/timesformer/events',
                                 lambda m: events.append(json.loads(m.data)), RELIABLE)
    assert ros.spin_until(lambda: listener.diagnostics, 30.0)
    camera = subprocess.Popen(console_script('timesformer_synthetic_camera') + [
        '--ros-args', '-p', f'rate:={RATE}', '-p', 'width:=160', '-p', 'height:=120',
        '-p', 'script:=[moving_left]', '-p', 'max_frames:=900'],
        env=ros.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # The camera stops while an action is active: once the scripted motion has started,
        # and 0.3 s more. (Between two moving_left segments the object jumps back to the right:
        # windows across that jump may start other actions.)
        assert ros.spin_until(lambda: any(e['event'] == 'start' and
                                          e['class_name'] == 'moving_left' for e in events),
                              30.0), events
        ros.spin_for(0.3)
        camera.send_signal(signal.SIGINT)
        assert ros.spin_until(lambda: camera.poll() is not None, 30.0)
        # The last windows' events: the node's first diagnostics after the camera ended say
        # it is through (before input_timeout_s ends what is active).
        assert ros.spin_until(caught_up(listener, after=len(listener.diagnostics)), 30.0)
    finally:
        if camera.poll() is None:
            camera.kill()
    started = {e['id']: e['class_name'] for e in events if e['event'] == 'start'}
    for event in events:
        if event['event'] == 'end':
            del started[event['id']]
    assert started, events          # the camera stopped during a motion
    active = []
    ros.node.create_subscription(String, '/timesformer/active',
                                 lambda m: active.append(json.loads(m.data)), LATCHED)
    assert ros.spin_until(lambda: active, 30.0)
    assert {a['id']: a['class_name'] for a in active[-1]['active']} == started
    assert active[-1]['header']['frame_id'] == 'camera'
    assert 'moving_left' in started.values()

    # No frame for input_timeout_s: every active action ends, and ~/active says none is.
    assert ros.spin_until(lambda: active[-1]['active'] == [], 30.0), active[-1]
    timeouts = [e for e in events if e['event'] == 'end' and e['reason'] == 'input_timeout']
    assert {e['id'] for e in timeouts} == set(started)

    (result,) = set_parameters(ros, exit_threshold=0.9)          # above enter (0.6)
    assert not result.successful and 'exit_threshold' in result.reason
    assert all(r.successful for r in set_parameters(ros, enter_threshold=0.95,
                                                    exit_threshold=0.9))
