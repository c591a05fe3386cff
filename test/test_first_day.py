"""What a robot user meets on the first day.

Ctrl-C in a terminal under launch (two SIGINTs), --help on every program, parameters files, the
input watchdog, plain output when piped.
"""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import CONSOLE_SCRIPTS, REPO, STOP_WITHIN_S, console_script
from timesformer_ros import interface
from timesformer_ros.diagnostics import OK, WARN, health, input_problem

rclpy = pytest.importorskip('rclpy')
from timesformer_ros import camera, node  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from test_node import Listener, publish_at, wait_for_subscriber  # noqa: E402

CONFIG = REPO / 'config' / 'timesformer.yaml'
ESCAPE = '\x1b['


# -- signals --------------------------------------------------------------------------------------

def catches_sigterm(pid: int) -> bool:
    """Whether the process has a SIGTERM handler.

    Python installs none by default, so this is the program's own (signals.take_signals), in place
    before its heavy imports.
    """
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('SigCgt:'):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


@pytest.mark.parametrize('moment, gap_s', [('importing', 0.0), ('start-up', 0.0),
                                           ('running', 0.0), ('running', 0.2)])
def test_two_sigints_end_the_node_cleanly(ros, start_node, small_checkpoint, moment, gap_s):
    """Ctrl-C in a terminal under launch: the terminal and launch both send SIGINT.

    The second arrives while the node shuts down (or, at start-up, while it is still being built,
    or still importing PyTorch).
    """
    node = start_node('-p', f'checkpoint:={small_checkpoint}')
    first_line = ''
    if moment == 'running':
        listener = Listener(ros)
        assert ros.spin_until(lambda: listener.diagnostics, 20.0)
    elif moment == 'start-up':
        first_line = node.proc.stdout.readline()    # the node is loading its model
        assert first_line
    else:
        assert ros.spin_until(lambda: catches_sigterm(node.proc.pid), 20.0, step=0.001)
    node.proc.send_signal(signal.SIGINT)
    time.sleep(gap_s)   # the scenario's spacing between the two signals, not a wait
    code, elapsed, output = node.stop(signal.SIGINT, timeout=10.0)
    output = first_line + output
    assert code == 0, output
    assert elapsed < STOP_WITHIN_S
    assert 'Traceback' not in output and 'KeyboardInterrupt' not in output
    assert ESCAPE not in output      # stdout is a pipe here: no terminal colour codes
    if moment == 'importing':
        assert 'listening' not in output     # asked to stop before it started: it did not


# -- --help ---------------------------------------------------------------------------------------

@pytest.mark.parametrize('script', sorted(CONSOLE_SCRIPTS))
def test_help_prints_usage_and_exits_0_without_starting(script):
    """`--help` and `-h` print usage and return at once.

    The camera would otherwise publish until killed (the timeout would expire), the node would
    listen.
    """
    for flag in ('--help', '-h'):
        result = subprocess.run(console_script(script) + [flag], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert 'usage' in result.stdout.lower()
        assert 'listening' not in result.stdout + result.stderr
    if script == 'timesformer_node':
        tables = node.PARAMETERS, node.TOPICS
    elif script == 'timesformer_synthetic_camera':
        tables = camera.PARAMETERS, camera.TOPICS
    else:
        return
    for entry in (*tables[0], *tables[1]):
        assert entry.name in result.stdout, entry.name


# -- parameters files -----------------------------------------------------------------------------

def test_the_shipped_config_is_the_declared_defaults():
    """One source of defaults: the node without a params file behaves as with the config."""
    shipped, declared = interface.read_params_file(CONFIG), interface.defaults()
    assert shipped == declared
    # Types too: rclpy refuses 15 where a float is declared.
    assert {k: type(v) for k, v in shipped.items()} == {k: type(v) for k, v in declared.items()}
    import yaml
    shipped = yaml.safe_load(CONFIG.read_text())['/**']['ros__parameters']
    assert set(shipped) == set(interface.BY_NAME)   # every parameter is listed for users
    for path in (REPO / 'config').glob('*.yaml'):
        names = set(yaml.safe_load(path.read_text())['/**']['ros__parameters'])
        assert names <= set(interface.BY_NAME), (path.name, names - set(interface.BY_NAME))


@pytest.mark.parametrize('args, message', [
    (['--params-file', 'config/no_such_file.yaml'], 'parameters file not found: config/'),
    (['-p', 'no_assignment'], 'invalid ROS arguments'),
    (['-p', 'target_fps:=15'], 'parameter target_fps (float (write 0.0'),    # an int
    (['-p', 'enter_threshold:=1.5'], 'parameter enter_threshold'),            # out of range
    (['-p', 'smoothing:=median'], "smoothing must be one of ['none', 'ema', 'vote']"),
])
def test_bad_ros_arguments_exit_2_with_one_line(ros, args, message):
    result = subprocess.run(console_script('timesformer_node') + ['--ros-args', *args],
                            env=ros.env, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert message in output and 'Traceback' not in output
    assert len([line for line in output.splitlines() if 'cannot start' in line]) == 1


# -- input watchdog -------------------------------------------------------------------------------

def snapshot(**values):
    base = {'failed_consecutive': 0, 'frames_failed': 0, 'failed_by_reason': {},
            'publish_failed': 0, 'frames_refused': 0, 'refused_by_reason': {},
            'frames_received': 0, 'input_silence_s': 0.0, 'input_rate_hz': 0.0,
            'receiving_for_s': 0.0}
    return {**base, **values}


def test_watchdog_rules():
    silent_from_start = snapshot(input_silence_s=4.0)
    problem = input_problem(silent_from_start, '/cam/image', 3.0, 0.0)
    assert '/cam/image' in problem and 'since the start' in problem
    assert 'nothing publishes on it' in problem
    # A publisher that has not sent yet is not called a QoS mismatch; one the node found
    # incompatible is, with the reason.
    waiting = input_problem(silent_from_start, '/cam/image', 3.0, 0.0, publishers=1)
    assert 'none has sent a frame yet' in waiting and 'QoS' in waiting
    assert 'cannot take' not in waiting
    refused = input_problem(silent_from_start, '/cam/image', 3.0, 0.0, publishers=2,
                            incompatible=['ERROR: Best effort publisher and reliable '
                                          'subscription;'])
    assert '1 of its 2 publisher(s) offer QoS this subscription cannot take (ERROR: Best ' \
        'effort publisher and reliable subscription)' in refused
    assert health(silent_from_start, 3, problem) == (WARN, problem)
    assert input_problem(snapshot(input_silence_s=4.0), '/cam/image', 0.0, 0.0) is None
    stopped = snapshot(frames_received=50, input_silence_s=3.5, input_rate_hz=30.0)
    assert 'no frame on /cam/image for 3.5 s' == input_problem(stopped, '/cam/image', 3.0, 0.0)
    flowing = snapshot(frames_received=50, input_silence_s=0.03, input_rate_hz=29.0,
                       receiving_for_s=10.0)
    assert input_problem(flowing, '/cam/image', 3.0, 30.0) is None
    assert health(flowing, 3, None) == (OK, 'running')
    slow = {**flowing, 'input_rate_hz': 12.0}
    assert '12.0 Hz, expected 30 Hz' in input_problem(slow, '/cam/image', 3.0, 30.0)
    assert input_problem(slow, '/cam/image', 3.0, 0.0) is None           # not checked
    assert input_problem({**slow, 'receiving_for_s': 1.0}, '/c', 3.0, 30.0) is None  # settling


def test_watchdog_over_dds_warns_names_the_topic_and_recovers(ros, start_node,
                                                              small_checkpoint):
    node = start_node('-p', f'checkpoint:={small_checkpoint}', '-p', 'input_timeout_s:=1.0',
                      '-p', 'expected_rate_hz:=30.0', '-p', 'diagnostics_period_s:=0.2',
                      '-r', 'image:=/robot/camera/image_raw')
    listener = Listener(ros)

    def latest_is(level, text=''):
        return lambda: listener.statuses and listener.statuses[-1][0] == level and \
            text in listener.statuses[-1][1]

    # A wrong remap: nothing arrives, and diagnostics say so, naming the topic.
    assert ros.spin_until(latest_is(WARN, 'no frame received on /robot/camera/image_raw'),
                          20.0), listener.statuses[-3:]
    pub = ros.node.create_publisher(Image, '/robot/camera/image_raw', qos_profile_sensor_data)
    wait_for_subscriber(ros, pub)
    publish_at(ros, pub, 75, 30.0)                      # frames flow: OK
    assert ros.spin_until(latest_is(OK, 'running'), 30.0), listener.statuses[-3:]
    publish_at(ros, pub, 40, 8.0, first_stamp_ns=2_000_000_000_000)   # far below 30 Hz
    assert ros.spin_until(latest_is(WARN, 'expected 30 Hz'), 30.0), listener.statuses[-3:]
    # The camera stops.
    assert ros.spin_until(latest_is(WARN, 'no frame on /robot/camera/image_raw for'), 30.0)
    code, _, output = node.stop()
    assert code == 0, output
    # The same, throttled, in the log; and the recovery.
    assert 'no frame received on /robot/camera/image_raw' in output
    assert 'input on /robot/camera/image_raw is fine again' in output
    assert output.count('no frame received on') <= 3


@pytest.mark.parametrize('reliability', ['best_effort', 'reliable'])
def test_watchdog_tells_a_qos_mismatch_from_a_publisher_that_has_not_sent(
        ros, start_node, small_checkpoint, reliability):
    """A reliable subscription and a best-effort camera: a mismatch, named.

    A matching camera that has not sent yet is just that (issue 25: the node called every
    silent publisher a QoS question).
    """
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    start_node('-p', f'checkpoint:={small_checkpoint}', '-p', 'qos:=reliable',
               '-p', 'input_timeout_s:=1.0', '-p', 'diagnostics_period_s:=0.2')
    listener = Listener(ros)
    ros.node.create_publisher(Image, 'image', QoSProfile(
        depth=5, reliability=getattr(ReliabilityPolicy, reliability.upper())))
    silent = 'no frame received on /image since the start'
    if reliability == 'best_effort':
        expected = ('1 of its 1 publisher(s) offer QoS this subscription cannot take',
                    'Best effort')
    else:
        expected = ('1 publisher(s) with matching QoS are on it: none has sent a frame yet',)

    def latest_says_it():
        message = listener.statuses[-1][1] if listener.statuses else ''
        return silent in message and all(text in message for text in expected)
    assert ros.spin_until(latest_says_it, 30.0), listener.statuses[-3:]


FAULTY_NODE = '''
import sys
from rclpy.node import Node
from timesformer_ros.spin import run_node


class Faulty(Node):
    def __init__(self):
        super().__init__('faulty')
        if sys.argv[1] == 'constructor':
            raise ValueError('bad value in the constructor')
        self.create_timer(0.05, self.tick)

    def tick(self):
        raise ValueError('a fault while running')


sys.exit(run_node(Faulty, 'faulty', (ValueError,), args=[]))
'''


@pytest.mark.parametrize('where, code, message', [
    ('constructor', 2, 'cannot start: bad value in the constructor'),
    ('running', 1, 'ValueError: a fault while running')])
def test_later_faults_are_not_dressed_as_start_up_errors(ros, where, code, message):
    result = subprocess.run([sys.executable, '-c', FAULTY_NODE, where], env=ros.env,
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert message in output
    assert ('cannot start' in output) == (where == 'constructor')
