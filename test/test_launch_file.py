"""The launch file under launch itself: Ctrl-C, and a params_file that does not exist.

A terminal Ctrl-C (SIGINT to launch and the node at once, then launch's own SIGINT to the node)
ends everything with exit code 0, and a params_file that does not exist stops the launch instead of
starting the node on its defaults.

Runs where launch_ros is installed and the package is in the ament index (a ROS 2 workspace, or
upstream launch in a scratch tree: README, Development); skipped here, where launch cannot be
installed. test_first_day.py checks the node's side of both with the console script.
"""

import os
import signal
import subprocess
import sys

import pytest

from conftest import REPO

pytest.importorskip('launch_ros', reason='needs launch and launch_ros (a ROS 2 install)')

LAUNCH_FILE = REPO / 'launch' / 'timesformer.launch.py'
# What `ros2 launch FILE name:=value ...` does, without ros2cli.
DRIVER = '''
import sys
from launch import LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
service = LaunchService()
service.include_launch_description(IncludeLaunchDescription(
    PythonLaunchDescriptionSource(sys.argv[1]),
    launch_arguments=[tuple(a.split(':=', 1)) for a in sys.argv[2:]]))
sys.exit(service.run())
'''


def start_launch(ros, *arguments):
    # Its own session, like a terminal's foreground job: killpg reaches launch and the node.
    return subprocess.Popen([sys.executable, '-c', DRIVER, str(LAUNCH_FILE), *arguments],
                            env=ros.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def test_terminal_ctrl_c_ends_launch_and_node_with_exit_code_0(ros):
    proc = start_launch(ros, 'device:=cpu', 'image:=/launch_test/image_raw')
    try:
        output = ''
        for line in proc.stdout:
            output += line
            if 'listening on /launch_test/image_raw' in line:
                break
        assert 'listening on' in output, output
        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output += rest
    assert proc.returncode == 0, output
    assert 'process has died' not in output and 'Traceback' not in output, output
    assert 'process has finished cleanly' in output, output
    assert '\x1b[' not in output and '\r' not in output     # piped: no tty emulation


def test_a_params_file_that_does_not_exist_stops_the_launch(ros):
    proc = start_launch(ros, 'params_file:=/nonexistent/timesformer.yaml')
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0, output
    assert 'params_file not found: /nonexistent/timesformer.yaml' in output
    assert 'listening on' not in output
