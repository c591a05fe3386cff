"""Running an rclpy node as a program.

`--help` without ROS, exit code 0 on SIGINT/SIGTERM (a second signal during shutdown is part of
shutting down), 2 with one fatal line for a user mistake at start (no traceback wall). Also the ROS
side of the parameter table in `interface.py`: descriptors, declaration and start-up validation.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.parameter import Parameter
from rclpy.signals import uninstall_signal_handlers

from .signals import take_signals
from .errors import brief
from .interface import PER_CAMERA, Param, override_param


class StartupError(RuntimeError):
    """A user mistake at start (bad checkpoint, device, parameter): one line, exit 2."""


def descriptor(param: Param) -> ParameterDescriptor:
    desc = ParameterDescriptor(name=param.name, description=param.description,
                               read_only=param.read_only)
    if param.choices:
        desc.additional_constraints = f'One of: {", ".join(param.choices)}.'
    if param.low is not None and isinstance(param.default, int) \
            and not isinstance(param.default, bool):
        desc.integer_range = [IntegerRange(from_value=int(param.low), to_value=int(param.high),
                                           step=1)]
    elif param.low is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(param.low),
                                                        to_value=float(param.high), step=0.0)]
    return desc


def declare(node: rclpy.node.Node, params: Sequence[Param]) -> dict:
    """Declare `params` on `node` with their descriptors; return the values.

    A value of the wrong type or out of range (rclpy checks both on declare) or not among the
    choices is a StartupError naming the parameter.
    """
    values = {}
    for param in params:
        try:
            values[param.name] = node.declare_parameter(param.name, param.default,
                                                        descriptor(param)).value
        except ParameterException as exc:
            raise StartupError(_declare_problem(param, exc)) from None
        reason = param.check(values[param.name])
        if reason:
            raise StartupError(reason)
    return values


_TYPES = {bool: Parameter.Type.BOOL, int: Parameter.Type.INTEGER,
          float: Parameter.Type.DOUBLE, str: Parameter.Type.STRING}


def declare_overrides(node: rclpy.node.Node, cameras: Sequence[str]) -> dict:
    """Declare every named camera's overrides (`interface.PER_CAMERA`); return those set.

    {camera: {parameter: value}} for the overrides the node was started with. Declared
    without a value (typed, uninitialised) so that an unset one is told apart from one set to
    the global's value; checked as the global parameter is (a StartupError naming it).
    """
    found = {}
    for camera in cameras:
        found[camera] = {}
        if not camera:
            continue
        for name in PER_CAMERA:
            param = override_param(camera, name)
            try:
                value = node.declare_parameter(param.name, _TYPES[type(param.default)],
                                               descriptor(param)).value
            except ParameterException as exc:
                raise StartupError(_declare_problem(param, exc)) from None
            if value is None:
                continue
            reason = param.check(value)
            if reason:
                raise StartupError(reason)
            found[camera][name] = value
    return found


def _declare_problem(param: Param, exc: Exception) -> str:
    kind = type(param.default).__name__
    hint = f' (write {float(param.default)!r}, not an integer)' \
        if isinstance(param.default, float) else ''
    return f'parameter {param.name} ({kind}{hint}): {brief(exc, with_type=False)}'


def _ros_args(argv: Sequence[str]) -> tuple:
    """Split `argv` into (the program's own arguments, the arguments inside --ros-args ... --)."""
    own, ros, inside = [], [], False
    for arg in argv:
        if arg == '--ros-args':
            inside = True
        elif inside and arg == '--':
            inside = False
        elif inside:
            ros.append(arg)
        else:
            own.append(arg)
    return own, ros


def _missing_params_file(ros_args: Sequence[str]) -> Optional[str]:
    for flag, value in zip(ros_args, ros_args[1:]):
        if flag == '--params-file' and not Path(value).is_file():
            return (f'parameters file not found: {value} (relative paths start at '
                    f'{Path.cwd()})')
    return None


def run_node(make_node: Callable[[], rclpy.node.Node], name: str,
             startup_errors: tuple = (), args=None, help_text: str = '') -> int:
    argv = list(sys.argv[1:] if args is None else args)
    own, ros_args = _ros_args(argv)
    if help_text and ({'-h', '--help'} & set(own)):
        print(help_text, end='')
        return 0
    logger = rclpy.logging.get_logger(name)
    problem = _missing_params_file(ros_args)
    if problem:
        logger.fatal(f'cannot start: {problem}')
        return 2
    stops = take_signals()
    if stops.requested:             # a Ctrl-C while the program was still importing
        return 0
    try:
        rclpy.init(args=[sys.argv[0], *argv])
    except _rclpy.RCLError as exc:
        logger.fatal(f'cannot start: invalid ROS arguments: {str(exc).split(", at /")[0]}')
        return 2
    node = None
    try:
        if stops.requested:         # a signal between the check above and rclpy's handler
            return 0
        try:
            node = make_node()
        except startup_errors as exc:   # only while starting: later it is a fault, not a
            logger.fatal(f'cannot start: {exc}')      # user mistake
            return 2
        if not stops.requested:     # a signal during start-up: stop without spinning
            rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException, SystemExit):
        pass
    except Exception:
        # A signal shuts the context down while the executor or the node's constructor may be
        # using it; rclpy then fails in that call's plumbing (seen: pybind11 "Unable to convert
        # call argument" under a flood of frames). That is the shutdown, not a fault.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            try:
                node.destroy_node()
            except Exception:
                if rclpy.ok():
                    raise
        if rclpy.ok():
            rclpy.shutdown()
        uninstall_signal_handlers()
        # Only the process exit is left. Python resets its signal handlers to the default
        # (die by the signal) while it finalises, which takes a while after DDS: a late Ctrl-C
        # from the terminal or launch would then kill the process with -2, so SIGINT is
        # ignored. SIGTERM gets its default back, for a process that does not end (a worker
        # still busy: launch escalates to SIGTERM).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return 0
