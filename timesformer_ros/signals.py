"""SIGINT and SIGTERM taken over before anything heavy is imported.

Imports nothing of the package, so the console entry points (`entry`) and the node runner
(`spin`) can both use it without importing each other.
"""

from __future__ import annotations

import os
import signal


class StopRequests:
    """The Python SIGINT/SIGTERM handler.

    Once rclpy is initialised, its own handler does the stopping (it shuts the context down, which
    wakes and ends the executor) and then calls this one, which only notes the request: raising
    KeyboardInterrupt here could land anywhere, in a constructor whose node then cannot be
    destroyed, or in the middle of the cleanup, and a second signal (the terminal's and launch's
    SIGINT arrive together) would do it again.

    While a console entry point still imports (`importing`: PyTorch alone takes 1.5 s, many
    more on a loaded machine) nothing has started that needs stopping or releasing, so a signal
    ends the process at once, exit code 0, instead of after the imports (launch sends SIGTERM
    5 s after SIGINT). `spin.run_node` takes the signals over again before it starts anything.
    """

    def __init__(self):
        self.requested = False
        self.importing = False

    def __call__(self, signum, frame):
        self.requested = True
        if self.importing:
            os._exit(0)


STOPS = StopRequests()


def take_signals(importing: bool = False) -> StopRequests:
    STOPS.importing = importing
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not STOPS:
            signal.signal(signum, STOPS)
    return STOPS
