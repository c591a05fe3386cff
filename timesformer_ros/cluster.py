"""Ray for the fleet: a local runtime on 127.0.0.1, or a cluster that must answer in time.

Also the fleet's own handling of SIGINT and SIGTERM (`StopRequest`): noted by the handler,
acted on between Ray calls, so a run stops cleanly at any moment. Ray is imported here, lazily:
the single-bag path never imports it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Optional

from .errors import brief


class Stopped(Exception):
    """SIGINT or SIGTERM during a fleet run: the run ends cleanly (Ray shut down)."""

    def __init__(self, signum: int):
        self.signum, self.name = signum, signal.Signals(signum).name
        super().__init__(f'stopped by {self.name}')


class StopRequest:
    """The SIGINT/SIGTERM handler of a fleet run: it notes the first signal, nothing more.

    The run acts on it between Ray calls (`check_stop`). Raising from the handler would land
    inside Ray's own calls (a Cython `wait` then fails with 'returned a result with an
    exception set') or in its start-up, and later signals (the terminal's and a supervisor's
    together) would cut the clean-up short.
    """

    def __init__(self):
        self.signum = None

    def __call__(self, signum, frame):
        if self.signum is None:
            self.signum = signum


def check_stop(stop: Optional[StopRequest]):
    if stop is not None and stop.signum is not None:
        raise Stopped(stop.signum)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError('evaluating several bags needs Ray: pip install -r '
                         'requirements/fleet.txt (or the package\'s fleet extra)') from None
    return ray


def _is_loopback(address: Optional[str]) -> bool:
    host = (address or '').split('://')[-1].rsplit(':', 1)[0]
    return host in ('127.0.0.1', 'localhost', '[::1]')


@contextlib.contextmanager
def _own_sigterm(ray):
    """Keep the SIGTERM handler that is set while `ray.init` starts a local runtime.

    `ray.init` replaces it with one that exits (sys.exit) from wherever the main thread is,
    in the middle of its own start-up; the command's handler only notes the signal and stops
    the run when the runtime is up (and can be shut down). It must run in the main thread:
    Ray's processes die with the thread that started them (PR_SET_PDEATHSIG).
    """
    utils = getattr(getattr(ray, '_private', None), 'utils', None)
    original = getattr(utils, 'set_sigterm_handler', None)
    handler = signal.getsignal(signal.SIGTERM)
    if original is not None:
        utils.set_sigterm_handler = lambda _: None
    try:
        yield
    finally:
        if original is not None:
            utils.set_sigterm_handler = original
        if threading.current_thread() is threading.main_thread() and handler is not None:
            signal.signal(signal.SIGTERM, handler)


def start_local(num_cpus: Optional[int] = None, num_gpus: Optional[int] = None):
    """Start a local Ray runtime on 127.0.0.1 only; return the `ray` module.

    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes Ray take the loopback address as the node's (as it
    does on a laptop), so the GCS, raylet, object manager and worker servers all listen on
    127.0.0.1; it is read when `ray` is imported, hence set before. The dashboard is off, and so
    is usage-statistics reporting.
    """
    os.environ['RAY_USAGE_STATS_ENABLED'] = '0'
    if 'ray' not in sys.modules:
        os.environ['RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'] = '0'
    ray = _import_ray()
    if not ray.is_initialized():
        from ray._private import ray_constants      # what the variable above set
        if ray_constants.ENABLE_RAY_CLUSTER:
            raise RuntimeError('ray was imported before timesformer_ros.fleet could set '
                               'RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: a local runtime would '
                               'listen on every interface, so none is started')
        with _own_sigterm(ray):
            ray.init(num_cpus=num_cpus or os.cpu_count(), num_gpus=num_gpus,
                     _node_ip_address='127.0.0.1', include_dashboard=False,
                     configure_logging=False, log_to_driver=False)
    address = ray.util.get_node_ip_address()
    if address != '127.0.0.1':
        raise RuntimeError(f'the local Ray runtime took node address {address}, not 127.0.0.1: '
                           f'ray was imported before timesformer_ros.fleet could set '
                           f'RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0')
    return ray


# A cluster address must answer within this: a TCP connection to it at once (refused or
# unreachable is said then), the whole Ray handshake within CONNECT_TIMEOUT_S.
CONNECT_TIMEOUT_S = 30.0
PROBE_TIMEOUT_S = 10.0


def _host_port(address: str) -> Optional[tuple]:
    """Return (host, port) of a Ray address ('HOST:PORT', 'ray://HOST:PORT'), else None."""
    host, _, port = address.split('://')[-1].rpartition(':')
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip('[]'), int(port)


def _probe(address: str, timeout: float = PROBE_TIMEOUT_S):
    """Raise ValueError (one line) when nothing listens at the address's host and port."""
    target = _host_port(address)
    if target is None:
        return          # 'auto' and other forms: Ray resolves them, within the deadline
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError as exc:
        reason = f'no answer within {timeout:g} s' if isinstance(exc, socket.timeout) \
            else (exc.strerror or str(exc)).lower()
        raise ValueError(f'--address {address}: no Ray cluster answers there ({reason}); is '
                         f'`ray start --head` running there?') from None


@contextlib.contextmanager
def _stderr_silenced():
    """Send file descriptor 2 (Python's and C++'s stderr) to /dev/null for a while."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, 'w') as sink:
            os.dup2(sink.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _in_thread(call, timeout: float, stop: Optional['StopRequest']):
    """Return `call()` run in a thread, waited for at most `timeout` s.

    For a handshake with a cluster (it starts no process here): with a silent address Ray
    retries it for minutes. A stop request ends the wait at once. Raises Stopped, or
    TimeoutError past `timeout`, or what `call` raised.
    """
    outcome = {}

    def attempt():
        try:
            outcome['value'] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome['error'] = exc

    thread = threading.Thread(target=attempt, name='ray-connect', daemon=True)
    deadline = time.monotonic() + timeout
    thread.start()
    while thread.is_alive() and time.monotonic() < deadline:
        check_stop(stop)
        thread.join(0.1)
    if thread.is_alive():
        check_stop(stop)
        raise TimeoutError
    if 'error' in outcome:
        raise outcome['error']
    return outcome['value']


class _NotMainThread(logging.Filter):
    """Drop Ray's warning that it set no SIGTERM handler: the command has its own."""

    def filter(self, record) -> bool:
        return 'SIGTERM handler is not set' not in record.getMessage()


def connect(address: Optional[str], workers: Optional[int],
            stop: Optional['StopRequest'] = None) -> tuple:
    """(ray, started here): a running runtime, the cluster at `address`, or a local one.

    An address that does not answer is a ValueError (one line) within CONNECT_TIMEOUT_S; a
    stop request while connecting to it is Stopped at once. A local runtime that is starting
    is waited for (the caller then shuts it down).
    """
    os.environ['RAY_USAGE_STATS_ENABLED'] = '0'
    if 'ray' in sys.modules and sys.modules['ray'].is_initialized():
        return sys.modules['ray'], False
    logging.getLogger('ray._private.worker').addFilter(_NotMainThread())
    if address is None:
        return start_local(workers), True
    _probe(address)
    if _is_loopback(address) and 'ray' not in sys.modules:
        os.environ['RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'] = '0'
    ray = _import_ray()
    # Only the one line: not Ray's own warnings (from its C++ core, on file descriptor 2)
    # that the handshake is slow, each a line with its own time stamp, while it is attempted.
    try:
        with _stderr_silenced():
            _in_thread(lambda: ray.init(address=address, configure_logging=False,
                                        log_to_driver=False), CONNECT_TIMEOUT_S, stop)
    except TimeoutError:
        raise ValueError(f'--address {address}: no Ray cluster answered within '
                         f'{CONNECT_TIMEOUT_S:g} s') from None
    except Stopped:
        raise
    except Exception as exc:  # noqa: BLE001 - Ray raises many types; one line says it
        raise ValueError(f'--address {address}: {one_line(exc)}') from None
    return ray, True


def one_line(exc: BaseException, limit: int = 300) -> str:
    """Return an exception as one plain line: the cause of a Ray task error.

    Ray wraps what a task raised in a RayTaskError whose text is a coloured traceback
    ('RayTaskError(IndexError): ESC[36mray::evaluate_unit()...'); the line is the cause's
    own type and message (`errors.brief`: no escape codes).
    """
    while getattr(exc, 'cause', None) is not None and exc.cause is not exc:
        exc = exc.cause
    return brief(exc, limit)
