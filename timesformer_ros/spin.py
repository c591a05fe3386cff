"""Running an rclpy node as a program: exit code 0 on SIGINT/SIGTERM, 2 with one fatal line
for a user mistake at start (no traceback wall)."""

from __future__ import annotations

from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException


def run_node(make_node: Callable[[], rclpy.node.Node], name: str,
             startup_errors: tuple = (), args=None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        rclpy.spin(node)
    except startup_errors as exc:
        rclpy.logging.get_logger(name).fatal(f'cannot start: {exc}')
        return 2
    except (KeyboardInterrupt, ExternalShutdownException, SystemExit):
        pass
    except Exception:
        # A signal shuts the context down while the executor may be inside a callback; rclpy
        # then fails in that callback's plumbing (seen: pybind11 "Unable to convert call
        # argument" under a flood of frames). That is the shutdown, not a fault.
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
    return 0
