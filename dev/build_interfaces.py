"""Build the message packages in dev/interfaces into this Python's venv (machines without ROS).

`make` runs it once per fresh .venv, after the ROS 2 wheels of requirements/ros-wheels.txt and
requirements/ros-build.txt are installed. The wheels lay out a ROS prefix in the venv root, so
the venv is both where CMake finds ament and rosidl and where the built package goes. A robot
never runs this: its distribution provides vision_msgs.

One fix to the installed wheels comes first: their rosidl Python export files name the include
directories of the interpreter that built them (/opt/python/...), which CMake refuses as
non-existent paths; they are pointed at this interpreter's and numpy's include directories.
"""

import os
import re
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ['vision_msgs']
_PYTHON_INCLUDE = re.compile(r'/opt/python/[^;"]*/include/python3\.\d+')
_NUMPY_INCLUDE = re.compile(r'/opt/python/[^;"]*/numpy/_core/include')


def fix_wheel_exports(prefix: Path) -> int:
    """Point the wheels' rosidl Python exports at this interpreter; return the files changed."""
    changed = 0
    for path in prefix.glob('share/*/cmake/export_*__rosidl_generator_pyExport.cmake'):
        text = path.read_text()
        fixed = _PYTHON_INCLUDE.sub(sysconfig.get_paths()['include'], text)
        fixed = _NUMPY_INCLUDE.sub(numpy.get_include(), fixed)
        if fixed != text:
            path.write_text(fixed)
            changed += 1
    return changed


def build(package: str, prefix: Path, build_root: Path):
    """Configure, build and install one package of dev/interfaces into `prefix`."""
    env = dict(os.environ, AMENT_PREFIX_PATH=str(prefix), CMAKE_PREFIX_PATH=str(prefix))
    build_dir = build_root / package
    subprocess.run(['cmake', '-S', str(REPO / 'dev' / 'interfaces' / package), '-B',
                    str(build_dir), f'-DCMAKE_INSTALL_PREFIX={prefix}', '-DBUILD_TESTING=OFF',
                    f'-DPython3_EXECUTABLE={sys.executable}', '-DCMAKE_BUILD_TYPE=Release'],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(['cmake', '--build', str(build_dir), '--parallel', str(os.cpu_count() or 1)],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(['cmake', '--install', str(build_dir)], env=env, check=True,
                   stdout=subprocess.DEVNULL)


def main() -> int:
    prefix = Path(sys.prefix)
    if prefix == Path(sys.base_prefix):
        print('build_interfaces: run this with the venv\'s python (make does)', file=sys.stderr)
        return 2
    started = time.monotonic()
    fix_wheel_exports(prefix)
    for package in PACKAGES:
        build(package, prefix, REPO / 'build' / 'interfaces')
    # A fresh interpreter finds the package only after the venv's library path is set up,
    # which the wheels' bootstrap does at start: import there, not here.
    subprocess.run([sys.executable, '-c', 'from vision_msgs.msg import Classification'],
                   check=True)
    print(f'built {", ".join(PACKAGES)} into {prefix} in {time.monotonic() - started:.0f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
