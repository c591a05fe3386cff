"""Console entry points of the ROS programs.

They take SIGINT and SIGTERM over before anything heavy is imported (PyTorch alone takes about
1.5 s), so a Ctrl-C at any moment of the start ends the program cleanly; `spin.run_node` sees the
request and does not start.
"""

from __future__ import annotations

from .signals import take_signals


def node() -> int:
    take_signals(importing=True)
    from .node import main
    return main()


def camera() -> int:
    take_signals(importing=True)
    from .camera import main
    return main()
