"""Starting the package's programs as processes: the tests, the demo and the benchmarks.

`console_command` finds an installed console script the way a user's shell would get it: beside
the interpreter (a pip or venv install), in the package's `lib/timesformer_ros` of a ROS prefix
on `AMENT_PREFIX_PATH` (colcon, setup.cfg's script_dir), then on PATH. It never falls back to
`python -m`: a test of a program runs what users run, or says it cannot.

`keep_dds_on_loopback` points Fast DDS at a loopback-only profile that the caller names (the
checkout's `dev/fastdds_localhost.xml`: the tests, the demo and the benchmarks run from a
checkout). Installed code never looks for the checkout itself; on a robot nothing is set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import MutableMapping, Optional

PACKAGE = 'timesformer_ros'
# Where a checkout keeps the loopback-only Fast DDS profile (not installed).
LOOPBACK_PROFILE = Path('dev') / 'fastdds_localhost.xml'


class ScriptNotFound(FileNotFoundError):
    """No installed console script of that name: the package is not installed (or not sourced)."""


def _ament_prefixes(env) -> list:
    """Return the prefixes on AMENT_PREFIX_PATH that hold this package (its index marker)."""
    marker = Path('share') / 'ament_index' / 'resource_index' / 'packages' / PACKAGE
    return [Path(p) for p in env.get('AMENT_PREFIX_PATH', '').split(os.pathsep)
            if p and (Path(p) / marker).is_file()]


def find_script(name: str, env=os.environ) -> Path:
    """Return the installed console script `name`; ScriptNotFound says where it looked."""
    places = [Path(sys.executable).parent] + \
        [prefix / 'lib' / PACKAGE for prefix in _ament_prefixes(env)]
    for place in places:
        if os.access(place / name, os.X_OK) and (place / name).is_file():
            return place / name
    on_path = shutil.which(name, path=env.get('PATH'))
    if on_path:
        return Path(on_path)
    raise ScriptNotFound(
        f'console script {name} is not installed: not beside {sys.executable}, not in '
        f'lib/{PACKAGE} of a prefix on AMENT_PREFIX_PATH, not on PATH (pip install the package, '
        f'or colcon build it and source install/setup.bash)')


def console_command(name: str, env=os.environ) -> list:
    """Return the command line that starts the installed console script `name`."""
    return [str(find_script(name, env))]


def keep_dds_on_loopback(env: MutableMapping[str, str] = os.environ,
                         checkout: Optional[Path] = None) -> MutableMapping:
    """Point Fast DDS at the loopback-only profile of `checkout` in `env`, unless set already.

    Call it before rclpy creates a participant in this process, or on the env of a child process.
    Without a checkout (an installed program) or where it has no profile, nothing is set.
    """
    profile = Path(checkout) / LOOPBACK_PROFILE if checkout is not None else None
    if profile is not None and profile.is_file():
        env.setdefault('FASTDDS_DEFAULT_PROFILES_FILE', str(profile))
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
