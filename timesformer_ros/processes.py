"""Starting the package's programs as processes from a checkout.

The console script beside the interpreter (or `python -m` where it is not installed), with DDS kept
on loopback by the checkout's Fast DDS profile. Used by the demo, the tests and the benchmarks; on
a robot none of this applies (the profile is not installed, and nothing is set when it is absent).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import MutableMapping, Optional

LOOPBACK_PROFILE = Path(__file__).resolve().parents[1] / 'dev' / 'fastdds_localhost.xml'
# Every console script of setup.py and the module that runs it as `python -m`.
MODULES = {'timesformer_node': 'timesformer_ros.node',
           'timesformer_synthetic_camera': 'timesformer_ros.camera',
           'timesformer_convert': 'timesformer_ros.convert',
           'timesformer_train': 'timesformer_ros.train',
           'timesformer_bench': 'timesformer_ros.bench',
           'timesformer_export': 'timesformer_ros.export',
           'timesformer_bag': 'timesformer_ros.bags'}


def console_command(name: str) -> list:
    """Return the installed console script `name`, or `python -m` of its module."""
    script = Path(sys.executable).parent / name
    return [str(script)] if script.exists() else [sys.executable, '-m', MODULES[name]]


def keep_dds_on_loopback(env: MutableMapping[str, str] = os.environ) -> MutableMapping:
    """Point Fast DDS at the loopback-only profile in `env` unless it is set already.

    Call it before rclpy creates a participant in this process, or on the env of a child process.
    """
    if LOOPBACK_PROFILE.is_file():
        env.setdefault('FASTDDS_DEFAULT_PROFILES_FILE', str(LOOPBACK_PROFILE))
        env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    return env


def finish(proc: subprocess.Popen, timeout: float) -> tuple:
    """Wait up to `timeout` s for `proc` to exit, reading its piped output; then kill it.

    Return (its exit code, or None when it had to be killed; the rest of its output, '' when
    it is not piped).
    """
    code: Optional[int] = None
    try:
        output, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    return code, output or ''
