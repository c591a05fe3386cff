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
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
