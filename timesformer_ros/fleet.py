"""Many recordings: `timesformer_bag evaluate` over many bags on Ray, one machine by default.

    timesformer_bag evaluate BAG|DIR|GLOB ... --topic /camera/image_raw --out-dir DIR
        [--truth /motion] [--params-file config/timesformer.yaml] [--checkpoint C]
        [--address HOST:PORT] [--workers N] [--model-actors N] [--device auto]

One unit of work is one (bag, camera topic). Each unit is a Ray task that runs `bags.evaluate`,
the single-bag evaluation itself (the same parameters file, ClipBuffer, Reporter, scoring and
JSON schema), so both paths are one piece of code and give the same numbers. What differs is
only where `evaluate`'s engine runs:

- `--model-actors 0` (the default without a GPU): the engine is built once in each worker
  process and a bag's windows are inferred where they were decoded. On the CPU, decoding and
  inference share the same cores, so a separate model actor would only add a copy of every
  window through the object store (T x 3 x S x S float32: 4.8 MB for 8 frames at 224) and take
  a core away from decoding; batching across bags buys nothing there, as a bag already fills
  the batch (`--batch-size`) on its own. Throughput scales with workers (BENCHMARKS.md).
- `--model-actors N` (the default with GPUs: one per GPU): N `ModelServer` actors hold the
  engine; the bag tasks, on CPU workers, decode and window the frames and send each batch of
  windows to an actor, which runs every request that arrived while the previous batch ran as
  one batch: windows of many bags share a GPU forward pass, with no timer.

Why Ray tasks and actors rather than Ray Data `map_batches`: a bag's windows must go through
its own stateful `Reporter` and action decoder in order, and a corrupt bag must end as one
named failure in the summary, not as a failed block of a dataset; a task per unit keeps both as
they are in `evaluate`, and Ray retries it (`max_retries`) when its worker dies. Model actors
are restarted by Ray (`max_restarts`, `max_task_retries`) when they die.

Results go to `--out-dir`: `bags/KEY.jsonl` (the unit's windows in the `~/window` schema, each
with `bag` and `topic` added) and `bags/KEY.json` (the unit's single-bag summary), where KEY is
the SHA-256 of the bag's bytes and of the run (checkpoint bytes, parameters, topic, truth,
device). A unit whose KEY is there already is not evaluated again, so an interrupted run started
again with the same checkpoint and parameters resumes. `summary.json` aggregates every unit
(`aggregate`) and names the failed ones; progress for the whole run goes to stderr.

Without `--address` a local Ray runtime is started with this machine's cores (and GPUs),
bound to 127.0.0.1 only, with usage statistics and the dashboard off (`start_local`).
Ray is imported here, lazily: the single-bag path never imports it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fnmatch
import glob
import hashlib
import json
import logging
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from .bags import (
    BagError, Evaluation, EvaluationOutputs, OutputError, _brief, engine_values, evaluate)
from .clips import ClipRate
from .interface import read_params_file

BAG_SUFFIXES = ('.mcap', '.bag', '.db3')
RETRIES = 3         # Ray retries a unit whose worker died, restarts a model actor that died
_ENGINES = {}       # engines built in this worker process, by their values


# -- which bags ---------------------------------------------------------------------------------

def is_bag(path: Path) -> bool:
    """Tell whether `path` is a bag: a rosbag2 directory (metadata.yaml or MCAP files) or file."""
    path = Path(path)
    if path.is_dir():
        return (path / 'metadata.yaml').is_file() or any(path.glob('*.mcap'))
    return path.is_file() and path.suffix in BAG_SUFFIXES


# Bag discovery visits at most this many paths (directory entries, whole run): a tree that
# holds more, or a symlink loop, is a one-line error instead of a search without end.
MAX_PATHS_VISITED = 200_000


class _Visits:
    """Counts the paths a discovery looks at; past MAX_PATHS_VISITED it is a ValueError."""

    def __init__(self, spec: str, limit: int):
        self.spec, self.limit, self.count = spec, limit, 0

    def scan(self, directory: Path) -> list:
        """Return a directory's entries (sorted; none when it cannot be read), counting them."""
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return []
        self.count += len(entries)
        if self.count > self.limit:
            raise ValueError(f'{self.spec}: more than {self.limit} paths looked at without '
                             f'finishing; name the bags, or a directory that holds fewer '
                             f'files')
        return entries


def find_bags(specs: Sequence, limit: int = MAX_PATHS_VISITED) -> list:
    """Expand paths, directories and globs into bags, each once, in the order given.

    A directory that is not itself a bag is searched for bags; a pattern (`*`, `?`, `[`) that
    names no existing path is expanded (`**`: any number of directories). Directory symlinks
    are never followed while searching (a link to a parent would make the tree endless): a
    path given as it is is taken even when it is a link, and a glob component may match a
    link, but `**` and the search of a directory do not descend into one. At most `limit`
    paths are looked at. Raises ValueError naming a spec that gives no bag, or that needs
    more than `limit` paths.
    """
    found = []
    for spec in map(str, specs):
        visits = _Visits(spec, limit)
        if not Path(spec).exists() and any(c in spec for c in '*?['):
            paths = sorted(set(_glob(spec, visits)))
        else:
            paths = [Path(spec)]
        bags = []
        for path in paths:
            if is_bag(path) or not path.is_dir():
                bags.append(path)
            elif path == Path(spec) or not path.is_symlink():
                bags += _bags_under(path, visits)
        if not bags:
            raise ValueError(f'{spec}: no bag there (a rosbag2 directory, or a .mcap, .bag or '
                             f'.db3 file)')
        found += [b.resolve() for b in bags]
    return list(dict.fromkeys(found))


def _bags_under(root: Path, visits: _Visits) -> list:
    bags = []
    for entry in visits.scan(root):
        path = Path(entry.path)
        if is_bag(path):
            bags.append(path)
        elif entry.is_dir(follow_symlinks=False):
            bags += _bags_under(path, visits)
    return bags


def _glob(pattern: str, visits: _Visits):
    """Yield the paths a glob pattern matches, never descending into a directory symlink.

    As `glob.glob(pattern, recursive=True)` (hidden names only where the pattern component
    starts with '.'), but `**` does not follow links and every entry looked at is counted.
    """
    parts = Path(pattern).parts
    literal = 0
    while literal < len(parts) and not glob.has_magic(parts[literal]):
        literal += 1
    base = Path(*parts[:literal]) if literal else Path('.')
    yield from _match(base, parts[literal:], visits, literal == 0)


def _match(base: Path, parts: tuple, visits: _Visits, relative: bool):
    if not parts:
        yield base
        return
    head, rest = parts[0], parts[1:]
    show = (lambda entry: Path(entry.name) if relative else Path(entry.path))
    if head == '**':
        yield from _match(base, rest, visits, relative)      # no directory at all
        for entry in visits.scan(base):
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith('.'):
                yield from _match(show(entry), parts, visits, False)
    elif glob.has_magic(head):
        for entry in visits.scan(base):
            if fnmatch.fnmatchcase(entry.name, head) and (
                    head.startswith('.') or not entry.name.startswith('.')):
                if rest and not entry.is_dir():
                    continue
                yield from _match(show(entry), rest, visits, False)
    else:
        path = base / head
        if os.path.lexists(path):
            yield from _match(path, rest, visits, False)


# -- keys: what a result was computed from --------------------------------------------------------

def digest(path: Path) -> str:
    """SHA-256 of a file, or of a directory's files (their relative names and bytes)."""
    path = Path(path)
    sha = hashlib.sha256()
    files = sorted(p for p in path.rglob('*') if p.is_file()) if path.is_dir() else [path]
    for file in files:
        sha.update(str(file.relative_to(path) if path.is_dir() else '').encode() + b'\0')
        with open(file, 'rb') as handle:
            for block in iter(lambda: handle.read(1 << 20), b''):
                sha.update(block)
    return sha.hexdigest()


def run_digest(config: 'FleetConfig', topic: str) -> str:
    """SHA-256 of everything besides the bag that a unit's results depend on.

    The checkpoint's bytes (not its path), the parameters the file gives, the topic, the truth
    (a CSV's bytes) and the device. The batch size is left out: it changes no result.
    """
    from .checkpoints import embedded_checkpoint
    values = engine_values(config.evaluation(None, topic), read_params_file(config.params_file))
    checkpoint = Path(values['checkpoint'] or str(embedded_checkpoint()))
    if checkpoint.suffix in ('.json', '.safetensors'):     # the own format: both files
        files = [checkpoint.with_suffix('.json'), checkpoint.with_suffix('.safetensors')]
        values['checkpoint'] = [digest(f) for f in files if f.exists()] or str(checkpoint)
    elif checkpoint.exists():
        values['checkpoint'] = digest(checkpoint)
    truth = config.truth or ''
    if truth and Path(truth).is_file():
        truth = digest(Path(truth))
    text = json.dumps({'values': values, 'topic': topic, 'truth': truth}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# -- the unit of work, in a Ray worker ------------------------------------------------------------

@dataclass
class FleetConfig:
    """What every unit shares: `bags.Evaluation` without the bag and topic."""

    checkpoint: Optional[str] = None
    params_file: Optional[Path] = None
    truth: Optional[str] = None
    device: str = 'auto'
    batch_size: int = 8

    def evaluation(self, bag: Optional[Path], topic: str) -> Evaluation:
        return Evaluation(bag, topic, self.checkpoint, self.params_file, self.truth,
                          self.device, self.batch_size, progress=False)


def local_engine(config: FleetConfig):
    """Return the engine of `config`, built once per worker process (`engine_from_values`)."""
    from .engine import engine_from_values
    values = engine_values(config.evaluation(None, ''), read_params_file(config.params_file))
    key = json.dumps(values, sort_keys=True, default=str), config.batch_size
    if key not in _ENGINES:
        _ENGINES[key] = engine_from_values(values, max_batch=config.batch_size)
    return _ENGINES[key]


class RemoteEngine(ClipRate):
    """What `evaluate` uses of an engine, with `infer` run by a `ModelServer` actor.

    Frames are preprocessed here, on the worker's CPU, in float32 (the server casts them to its
    dtype on its device), and a batch goes to the server as one array.
    """

    def __init__(self, server, spec: dict):
        from .frames import Preprocessor
        self.server = server
        self.labels = spec['labels']
        self.num_frames = spec['num_frames']
        self.clip_fps = spec['clip_fps']
        self.model = spec['describe']
        self.preprocessor = Preprocessor(spec['img_size'], spec['mean'], spec['std'])

    def infer(self, clips) -> list:
        import ray
        import torch
        video = torch.stack([torch.stack(list(frames)) for frames in clips]).float()
        return ray.get(self.server.infer.remote(video.numpy()))

    def describe(self) -> str:
        return self.model


class ModelServer:
    """A Ray actor holding the engine; it batches the windows of every bag that asks.

    Requests wait in a queue while a batch runs (in one inference thread, so the event loop keeps
    taking them); the next batch is everything that waited, up to `max_batch` windows.
    """

    def __init__(self, config: FleetConfig, max_batch: int):
        self.engine = local_engine(config)
        self.max_batch = max_batch
        self.queue = []
        self.busy = False
        self.thread = concurrent.futures.ThreadPoolExecutor(1)
        self.batches = Counter()       # batch size -> count

    def spec(self) -> dict:
        engine = self.engine
        return {'labels': engine.labels, 'num_frames': engine.num_frames,
                'clip_fps': engine.clip_fps,
                'img_size': engine.config.img_size, 'mean': list(engine.checkpoint.mean),
                'std': list(engine.checkpoint.std), 'describe': engine.describe()}

    def batch_sizes(self) -> dict:
        return dict(self.batches)

    async def infer(self, video) -> list:
        future = asyncio.get_running_loop().create_future()
        self.queue.append((video, future))
        if not self.busy:
            self.busy = True
            asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self):
        import numpy as np
        import torch
        loop = asyncio.get_running_loop()
        try:
            while self.queue:
                taken, size = [], 0
                while self.queue and (not taken or size + len(self.queue[0][0]) <=
                                      self.max_batch):
                    taken.append(self.queue.pop(0))
                    size += len(taken[-1][0])
                video = torch.from_numpy(np.concatenate([v for v, _ in taken]))
                self.batches[size] += 1
                try:
                    predictions = await loop.run_in_executor(
                        self.thread, self.engine.infer_tensor, video)
                except Exception as exc:  # noqa: BLE001 - every waiting bag hears of it
                    for _, future in taken:
                        future.set_exception(exc)
                    continue
                start = 0
                for v, future in taken:
                    future.set_result(predictions[start:start + len(v)])
                    start += len(v)
        finally:
            self.busy = False


def evaluate_unit(bag: str, topic: str, run_key: str, config: FleetConfig, done,
                  server=None, spec: Optional[dict] = None) -> dict:
    """Evaluate one (bag, topic) as `timesformer_bag evaluate` does; the Ray task of a unit.

    Returns {'key', 'status': 'reused' | 'done' | 'failed', ...}: for 'done' the single-bag
    summary and the window JSON lines, for 'failed' the one-line error. `done` holds the keys
    already in the output directory.
    """
    started = time.monotonic()
    unit = {'bag': bag, 'topic': topic}
    try:
        key = f'{digest(Path(bag))[:20]}-{run_key[:20]}'
    except OSError as exc:
        return {**unit, 'key': None, 'status': 'failed',
                'error': f'{bag}: cannot read ({exc.strerror or _brief(exc)})'}
    if key in done:
        return {**unit, 'key': key, 'status': 'reused'}
    engine = local_engine(config) if server is None else RemoteEngine(server, spec)
    with tempfile.TemporaryDirectory(prefix='timesformer_fleet_') as tmp:
        lines = Path(tmp) / 'windows.jsonl'
        try:
            summary = evaluate(config.evaluation(Path(bag), topic),
                               EvaluationOutputs(jsonl=lines), engine=engine)
        except (BagError, OutputError, ValueError, OSError) as exc:
            windows = (getattr(exc, 'summary', None) or {}).get('windows', 0)
            return {**unit, 'key': key, 'status': 'failed',
                    'error': _ESCAPES.sub('', str(exc)), 'windows': windows}
        except Exception as exc:  # noqa: BLE001 - a fault fails this unit, with its cause
            return {**unit, 'key': key, 'status': 'failed', 'error': f'{bag}: {one_line(exc)}'}
        text = lines.read_text()
    return {**unit, 'key': key, 'status': 'done', 'summary': summary, 'lines': text,
            'seconds': time.monotonic() - started}


# -- the driver -----------------------------------------------------------------------------------

@dataclass
class Fleet:
    """A run over many bags: the units (bags x topics), where results go, how Ray runs it."""

    bags: list
    topics: list
    out_dir: Path
    config: FleetConfig = field(default_factory=FleetConfig)
    address: Optional[str] = None
    workers: Optional[int] = None       # concurrent units; default: the cluster's free CPUs
    model_actors: Optional[int] = None  # default: one per GPU of the cluster (0 without)
    progress: bool = True


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
        _check(stop)
        thread.join(0.1)
    if thread.is_alive():
        _check(stop)
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


_ESCAPES = re.compile(r'\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]')


def one_line(exc: BaseException, limit: int = 300) -> str:
    """Return an exception as one plain line: the cause of a Ray task error, no escape codes.

    Ray wraps what a task raised in a RayTaskError whose text is a coloured traceback
    ('RayTaskError(IndexError): \\x1b[36mray::evaluate_unit()...'); the line is the cause's
    own type and message.
    """
    while getattr(exc, 'cause', None) is not None and exc.cause is not exc:
        exc = exc.cause
    text = _ESCAPES.sub('', _brief(exc, limit))
    return text.replace('\n', ' ').replace('\r', ' ')


class _Progress:
    """The whole run's progress on stderr: units done, windows/s, ETA."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled = total, enabled
        self.started = time.monotonic()
        self.counts = Counter()
        self.windows = 0

    def add(self, result: dict):
        self.counts[result['status']] += 1
        self.windows += result.get('summary', {}).get('windows', 0)
        if not self.enabled:
            return
        done = sum(self.counts.values())
        elapsed = time.monotonic() - self.started
        evaluated = self.counts['done'] + self.counts['failed']
        left = self.total - done
        eta = f'{left * elapsed / evaluated:.0f} s' if evaluated else '?'
        sys.stderr.write(f'\r{done}/{self.total} bags ({self.counts["failed"]} failed, '
                         f'{self.counts["reused"]} reused), {self.windows} windows, '
                         f'{self.windows / elapsed if elapsed else 0.0:.1f} windows/s, '
                         f'ETA {eta}   ')
        if done == self.total:
            sys.stderr.write('\n')
        sys.stderr.flush()


def evaluate_many(fleet: Fleet, stop: Optional['StopRequest'] = None) -> dict:
    """Evaluate every (bag, topic) of `fleet` on Ray; return (and write) the summary.

    See the module docstring for the layout of `out_dir` and how work is spread. `stop`: a
    signal noted there ends the run between Ray calls (Stopped), Ray shut down, the units
    finished kept, nothing partial left.
    """
    units = [(str(bag), topic) for bag in fleet.bags for topic in fleet.topics]
    results_dir = Path(fleet.out_dir) / 'bags'
    done = {p.stem for p in results_dir.glob('*.json') if p.with_suffix('.jsonl').is_file()}
    run_keys = {topic: run_digest(fleet.config, topic) for topic in fleet.topics}
    created = [d for d in (results_dir, *results_dir.parents) if not d.exists()]
    started_here = False
    try:
        ray, started_here = connect(fleet.address, fleet.workers, stop)
        _check(stop)
        results_dir.mkdir(parents=True, exist_ok=True)
        resources = ray.available_resources()
        actors = fleet.model_actors if fleet.model_actors is not None \
            else int(resources.get('GPU', 0))
        servers, spec = _start_servers(ray, fleet.config, actors, int(resources.get('GPU', 0)))
        workers = fleet.workers or max(1, int(resources.get('CPU', 1)))
        task = ray.remote(num_cpus=1, max_retries=RETRIES)(evaluate_unit)
        done_ref = ray.put(done)
        progress = _Progress(len(units), fleet.progress)
        pending, results, queue = {}, [], list(enumerate(units))
        started = time.monotonic()
        while queue or pending:
            while queue and len(pending) < workers:
                index, (bag, topic) = queue.pop(0)
                server = servers[index % len(servers)] if servers else None
                ref = task.remote(bag, topic, run_keys[topic], fleet.config, done_ref, server,
                                  spec)
                pending[ref] = (bag, topic)
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.25)
            _check(stop)
            for ref in ready:
                bag, topic = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:     # the worker died RETRIES + 1 times
                    result = {'bag': bag, 'topic': topic, 'key': None, 'status': 'failed',
                              'error': f'{bag}: {one_line(exc)}'}
                if result['status'] == 'done':
                    _store(results_dir, result)
                results.append(result)
                progress.add(result)
        batches = ray.get([s.batch_sizes.remote() for s in servers])
    except BaseException:
        for directory in created:        # what this run made and left empty (a failed start)
            try:
                directory.rmdir()
            except OSError:
                break
        raise
    finally:
        if started_here:
            ray.shutdown()
    summary = _summary(fleet, results, results_dir, time.monotonic() - started)
    summary['model_actors'] = len(servers)
    summary['workers'] = workers
    summary['server_batches'] = [{str(k): v for k, v in sorted(b.items())} for b in batches]
    _write_json(Path(fleet.out_dir) / 'summary.json', summary)
    return summary


def _start_servers(ray, config: FleetConfig, count: int, gpus: int) -> tuple:
    if not count:
        return [], None
    # No CPU reserved: with a GPU the actor mostly waits on it; on CPUs it shares the cores with
    # the decoding workers (which is why the CPU default is no actor).
    server = ray.remote(num_cpus=0, num_gpus=gpus / count if gpus else 0,
                        max_restarts=RETRIES, max_task_retries=RETRIES)(ModelServer)
    servers = [server.remote(config, max(config.batch_size, 4 * config.batch_size))
               for _ in range(count)]
    specs = ray.get([s.spec.remote() for s in servers])
    return servers, specs[0]


def _write_json(path: Path, data, lines: Optional[str] = None):
    """Write JSON (or `lines` as they are) under a partial name, then rename it into place.

    A write that fails or is interrupted leaves no partial file.
    """
    partial = path.with_name(path.name + '.partial')
    try:
        partial.write_text(lines if lines is not None else json.dumps(data, indent=1) + '\n')
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _store(results_dir: Path, result: dict):
    """Write a unit's window lines (with its bag and topic), then its summary: then it is done."""
    tagged = ''.join(json.dumps({**json.loads(line), 'bag': result['bag'],
                                 'topic': result['topic']}) + '\n'
                     for line in result['lines'].splitlines())
    _write_json(results_dir / f'{result["key"]}.jsonl', None, tagged)
    _write_json(results_dir / f'{result["key"]}.json',
                {'bag': result['bag'], 'topic': result['topic'], 'key': result['key'],
                 'summary': result['summary']})


def _summary(fleet: Fleet, results: list, results_dir: Path, seconds: float) -> dict:
    counts = Counter(r['status'] for r in results)
    finished = [r for r in results if r['status'] != 'failed']
    per_unit = []
    for result in finished:
        stored = json.loads((results_dir / f'{result["key"]}.json').read_text())
        per_unit.append({'bag': result['bag'], 'topic': result['topic'], 'key': result['key'],
                         'status': result['status'], 'summary': stored['summary']})
    evaluated = [r for r in results if r['status'] == 'done']
    windows = sum(r['summary']['windows'] for r in evaluated)
    summary = {'units': len(results), 'evaluated': counts['done'], 'reused': counts['reused'],
               'failed': [{'bag': r['bag'], 'topic': r['topic'], 'error': r['error']}
                          for r in results if r['status'] == 'failed'],
               'seconds': round(seconds, 3), 'windows_evaluated': windows,
               'windows_per_s': round(windows / seconds, 2) if seconds else 0.0}
    summary.update(aggregate([u['summary'] for u in per_unit]))
    summary['per_bag'] = per_unit
    return summary


def aggregate(summaries: Sequence[dict]) -> dict:
    """Pool single-bag summaries: counts summed, one confusion matrix, pooled segment metrics.

    Accuracy is over every scored window of every bag (the summed confusion matrix's trace over
    its total). Segmental F1 at each IoU is pooled as 2 TP / (predicted + true) over all bags (a
    bag's TP is recovered exactly from its F1, 2 TP / (P + T)); the edit score is the mean over
    bags; onset delays stay per bag (a median does not pool).
    """
    import numpy as np
    total = {'bags': len(summaries),
             'frames': sum(s['frames'] for s in summaries),
             'windows': sum(s['windows'] for s in summaries),
             'refused': dict(sum((Counter(s['refused']) for s in summaries), Counter())),
             'skipped': sum(s['skipped'] for s in summaries),
             'segments': sum(s['segments'] for s in summaries),
             'label_changes': {k: sum(s['label_changes'][k] for s in summaries)
                               for k in ('raw', 'decoded')}}
    scored = [s for s in summaries if 'confusion' in s]
    if not scored:
        return total
    labels = scored[0]['confusion']['labels']
    matrix = sum(np.array(s['confusion']['matrix']) for s in scored)
    windows = int(matrix.sum())
    total.update({'scored_windows': windows,
                  'accuracy': float(np.trace(matrix) / windows) if windows else 0.0,
                  'confusion': {'labels': labels, 'matrix': matrix.tolist()}})
    metrics = [s['segment_metrics'] for s in scored]
    pooled = {k: sum(m[k] for m in metrics) for k in (
        'true_segments', 'predicted_segments', 'false_segments', 'over_segmented',
        'under_segmented')}
    both = pooled['true_segments'] + pooled['predicted_segments']
    for iou in ('0.1', '0.25', '0.5'):
        hits = sum(round(m[f'f1@{iou}'] * (m['true_segments'] + m['predicted_segments']) / 2)
                   for m in metrics)
        pooled[f'f1@{iou}'] = 2 * hits / both if both else 0.0
    pooled['edit'] = float(np.mean([m['edit'] for m in metrics]))
    total['segment_metrics'] = pooled
    return total


# -- command line (`timesformer_bag evaluate` with several bags) -------------------------------

class Stopped(Exception):
    """SIGINT or SIGTERM during a fleet run: the run ends cleanly (Ray shut down)."""

    def __init__(self, signum: int):
        self.signum, self.name = signum, signal.Signals(signum).name
        super().__init__(f'stopped by {self.name}')


class StopRequest:
    """The SIGINT/SIGTERM handler of a fleet run: it notes the first signal, nothing more.

    The run acts on it between Ray calls (`_check`). Raising from the handler would land
    inside Ray's own calls (a Cython `wait` then fails with 'returned a result with an
    exception set') or in its start-up, and later signals (the terminal's and a supervisor's
    together) would cut the clean-up short.
    """

    def __init__(self):
        self.signum = None

    def __call__(self, signum, frame):
        if self.signum is None:
            self.signum = signum


def _check(stop: Optional[StopRequest]):
    if stop is not None and stop.signum is not None:
        raise Stopped(stop.signum)


def add_arguments(parser):
    """Add the many-bag options to `timesformer_bag evaluate`."""
    group = parser.add_argument_group('many bags (on Ray; README, "Many recordings")')
    group.add_argument('--out-dir', type=Path, help='results of every bag, kept between runs: '
                                                    'a run started again skips finished bags')
    group.add_argument('--address', help='a running Ray cluster (default: a local runtime '
                                         'on 127.0.0.1 with this machine\'s cores and GPUs)')
    group.add_argument('--workers', type=int, help='bags evaluated at once (default: the '
                                                   'free CPUs)')
    group.add_argument('--model-actors', type=int, help='model actors that batch windows '
                                                        'across bags (default: one per GPU, '
                                                        'none on CPUs)')


def wants_fleet(args) -> bool:
    """Tell whether `evaluate` was given several bags, a directory of bags, or Ray options."""
    return (len(args.bag) > 1 or args.out_dir is not None or args.address is not None
            or not is_bag(args.bag[0]))


def main(args) -> int:
    """Run `timesformer_bag evaluate` over many bags; print the summary; 1 if any failed."""
    for option in ('out', 'out_bag', 'segments', 'confusion'):
        if getattr(args, option) is not None:
            raise ValueError(f'--{option.replace("_", "-")} is for one bag; with several, '
                             f'results go to --out-dir')
    if args.out_dir is None:
        raise ValueError('several bags need --out-dir (results of each bag, and summary.json)')
    for name, value in (('--workers', args.workers), ('--model-actors', args.model_actors)):
        if value is not None and value < (1 if name == '--workers' else 0):
            raise ValueError(f'{name} must be at least {1 if name == "--workers" else 0}, '
                             f'got {value}')
    topics = args.topic if isinstance(args.topic, list) else [args.topic]
    absolute = (lambda p: str(Path(p).resolve()) if p and Path(p).exists() else p)
    config = FleetConfig(absolute(args.checkpoint), absolute(args.params_file),
                         absolute(args.truth), args.device, args.batch_size)
    stop = StopRequest()
    previous = {signum: signal.signal(signum, stop)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        fleet = Fleet(find_bags(args.bag), topics, args.out_dir, config, args.address,
                      args.workers, args.model_actors)
        _check(stop)
        summary = evaluate_many(fleet, stop)
    except Stopped as exc:
        results = Path(args.out_dir) / 'bags'
        kept = f'the bags finished are kept in {results} (a run started again resumes)' \
            if results.is_dir() else 'nothing was written'
        print(f'\ntimesformer_bag: stopped by {exc.name}: {kept}; no summary written',
              file=sys.stderr)
        return 128 + exc.signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print(f'{summary["units"]} bags: {summary["evaluated"]} evaluated, {summary["reused"]} '
          f'reused, {len(summary["failed"])} failed; {summary["windows"]} windows; '
          f'{summary["windows_evaluated"]} evaluated at {summary["windows_per_s"]} windows/s')
    if 'accuracy' in summary:
        print(f'accuracy {100 * summary["accuracy"]:.1f}% on {summary["scored_windows"]} '
              f'windows')
    print(f'summary: {Path(args.out_dir) / "summary.json"}')
    for failed in summary['failed']:
        print(f'timesformer_bag: error: {failed["error"]}', file=sys.stderr)
    return 1 if summary['failed'] else 0
