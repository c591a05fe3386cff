"""Frames in, results out: camera `Stream`s and one `BatchWorker`, without ROS.

A `Stream` is one camera. `Stream.offer(msg)` runs in the subscription callback and only queues
the message (at most `INTAKE_DEPTH` wait; beyond, the oldest is refused as `backlog`), so no
frame, however costly to decode, holds up the executor: diagnostics and parameter services keep
their pace. The stream's decoder thread decodes and checks each message, offers it to the
stream's clip buffer (which preprocesses it only when sampled), and hands a completed window to
the stream's one-slot mailbox (`submit` does the same at once, for callers without threads).
Each stream has its own buffer, sampling state, gap resets, counters and mailbox, so a camera
that floods, sends bad frames or jumps its stamps changes nothing for the others.

The `BatchWorker` is the one thread that runs the model. It takes the waiting window of every
stream that has one, up to `max_batch`, runs them as one `Engine.infer` call (`run_batch`) and
hands each result back to its stream's `on_result`. It never waits to fill a batch: when
inference keeps up, batches are small and latency is one inference; when it falls behind,
windows gather in the mailboxes while the model runs, and the next batch takes them all. When
more streams wait than `max_batch`, the ones waiting longest go first (`pick`): a stream's wait
starts when its mailbox fills and does not restart when a newer window replaces the waiting one,
so a 60 Hz camera cannot crowd out a 5 Hz one, and every waiting stream is served within
ceil(streams / max_batch) batches. A window still waiting when its stream's next one completes
is replaced by the newer one and counted as dropped on that stream: nothing queues, latency
never accumulates.

Every received frame ends in exactly one of its stream's counters (`Counters.accounted` checks
the sum): refused (by reason), skipped by sampling, buffered (sampled, but completed no window:
the window was still filling, or `stride` > 1), or it completed a window that was processed,
dropped as stale, or failed; at most one window per stream is pending at a time, and at most
`INTAKE_DEPTH` + 1 frames per stream wait for or are in its decoder.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from . import frames
from .clips import ClipBuffer, PushResult, Window
from .engine import Engine, Prediction
from .errors import brief
from .frames import FrameError
from .messages import stamp_ns

LOGGER = logging.getLogger(__name__)

INTAKE_DEPTH = 4          # frames waiting for the decoder thread; more: the oldest is dropped
RATE_SETTLE_S = 2.0       # receive this long before judging the input rate


class NonFiniteResult(ValueError):
    """The model gave NaN or inf scores: a failed inference, never published."""


@dataclass
class Intake:
    """What became of one image message offered to a clip buffer (`take_frame`)."""

    rgb: Optional[np.ndarray] = None       # decoded, when it could be
    stamp: Optional[int] = None            # its header stamp (ns), when decoded
    push: Optional[PushResult] = None      # the buffer's answer, when pushed
    refused: Optional[str] = None          # the refusal reason, or None
    message: str = ''                      # what was wrong, for logs and summaries


def take_frame(buffer: ClipBuffer, msg, preprocess: Callable[[np.ndarray], object]) -> Intake:
    """Decode and check one image message and push it into `buffer`; never raises for a frame.

    The node's decoder thread and `timesformer_bag evaluate` both take frames this way, so a
    frame is refused for the same reasons on both. `preprocess(rgb)` runs only for frames the
    buffer samples. Anything a decoder raises besides FrameError is refused as `decode_error`
    (one frame never ends the node or an evaluation), anything preprocessing raises as
    `internal_error`.
    """
    try:
        rgb, key = frames.decode(msg)
    except FrameError as exc:
        return Intake(refused=exc.reason, message=str(exc))
    except Exception as exc:  # noqa: BLE001 - see above
        return Intake(refused='decode_error',
                      message=f'decoding failed ({brief(exc, limit=500)})')
    stamp = stamp_ns(msg.header)
    try:
        result = buffer.push(stamp, key, msg.header.frame_id, lambda: preprocess(rgb))
    except FrameError as exc:
        return Intake(rgb, stamp, refused=exc.reason, message=str(exc))
    except Exception as exc:  # noqa: BLE001 - see above
        return Intake(rgb, stamp, refused='internal_error',
                      message=f'preprocessing failed ({brief(exc, limit=500)})')
    if result.refused:
        return Intake(rgb, stamp, result, result.refused,
                      f"stamp {stamp} ns repeats the previous frame's")
    return Intake(rgb, stamp, result)


def failure_reason(outcome: BaseException) -> str:
    """Return why a window failed, as counted: 'non_finite' (NaN or inf scores) or 'error'."""
    return 'non_finite' if isinstance(outcome, NonFiniteResult) else 'error'


def _log_publish_failure(job, exc: BaseException):
    LOGGER.error('publishing the result of window %d failed: %r', job.window.seq, exc)


@dataclass
class Counters:
    """Frame and window outcomes; `refused` and `resets` are by reason."""

    received: int = 0
    refused: Counter = field(default_factory=Counter)
    skipped_by_sampling: int = 0
    buffered: int = 0
    processed: int = 0
    dropped: int = 0
    failed: int = 0
    failed_consecutive: int = 0
    failed_by_reason: Counter = field(default_factory=Counter)
    publish_failed: int = 0          # windows processed whose results could not all be published
    lost_in_dds: int = 0             # frames DDS reported lost before they reached the node
    resets: Counter = field(default_factory=Counter)

    def accounted(self, pending: int) -> bool:
        return self.received == (sum(self.refused.values()) + self.skipped_by_sampling +
                                 self.buffered + self.processed + self.dropped + self.failed +
                                 pending)


@dataclass
class Job:
    window: Window
    arrival: float                 # perf_counter() when the window's last frame arrived
    header: object                 # the last frame's header (stamp, frame_id)
    rgb: Optional[np.ndarray]      # the last frame's decoded RGB (for the overlay)
    preprocess_ms: float


class RateMeter:
    """Events per second over a sliding interval of the steady clock.

    Ticked by one thread (the worker, the subscription) and read by another (diagnostics): both
    hold its lock.
    """

    def __init__(self, horizon_s: float = 5.0):
        self.horizon = horizon_s
        self.times = deque()
        self._lock = threading.Lock()

    def _forget(self, now: float):
        while self.times and now - self.times[0] > self.horizon:
            self.times.popleft()

    def tick(self, now: Optional[float] = None):
        now = time.monotonic() if now is None else now
        with self._lock:
            self.times.append(now)
            self._forget(now)

    def rate(self, now: Optional[float] = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._forget(now)
            if len(self.times) < 2:
                return 0.0
            return (len(self.times) - 1) / max(now - self.times[0], 1e-9)


def run_batch(engine: Engine, windows: Sequence[Window]) -> list:
    """Run `windows` (of any streams) as one `Engine.infer` batch.

    Return, for each window in order, its Prediction or the exception that failed it. A batch
    that raises is run again one window at a time (a window the model cannot take, or a batch too
    large for the device's memory, then fails alone, not with its batch); a prediction with
    NaN or inf scores is a `NonFiniteResult`. The node's worker and `timesformer_bag evaluate`
    both infer this way.
    """
    try:
        predictions = engine.infer([window.frames for window in windows])
    except Exception as exc:  # noqa: BLE001 - one bad inference must not end the node
        if len(windows) == 1:
            return [exc]
        return [run_batch(engine, [window])[0] for window in windows]
    return [p if np.isfinite(p.probabilities).all()
            else NonFiniteResult('the model gave non-finite scores (NaN or inf)')
            for p in predictions]


class Stream:
    """One camera: intake, decoder thread, clip buffer, mailbox, counters and callbacks.

    `name` is the camera's name ('' for the node's one unnamed camera). `preprocess(rgb)` turns
    a sampled frame into the model's input (`Engine.preprocessor`). The callbacks run on the
    `BatchWorker`'s thread (`on_result(job, prediction, latency_ms)`, `on_failure(job, exc)`,
    `on_publish_failure(job, exc)`) and on the decoder thread (`on_refusal(reason, message)`).
    """

    def __init__(self, name: str, buffer: ClipBuffer, preprocess: Callable[[np.ndarray], object],
                 on_result: Callable[[Job, Prediction, float], None],
                 on_failure: Callable[[Job, BaseException], None] = lambda job, exc: None,
                 on_publish_failure: Optional[Callable[[Job, BaseException], None]] = None,
                 on_refusal: Callable[[str, str], None] = lambda reason, message: None):
        self.name = name
        self.buffer = buffer
        self.preprocess = preprocess
        self.on_result = on_result
        self.on_failure = on_failure
        self.on_publish_failure = on_publish_failure or _log_publish_failure
        self.on_refusal = on_refusal
        self.counters = Counters()
        self.input_rate = RateMeter()
        self.inference_rate = RateMeter()
        self.latencies = deque(maxlen=200)
        self.batch_sizes = Counter()           # the size of each batch its windows ran in
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._mailbox: Optional[Job] = None
        self._waiting_since: Optional[float] = None   # since when a window waits (unserved)
        self._in_flight = 0
        self._decoding = 0                     # a frame taken from the intake, being decoded
        self._stop = threading.Event()
        self._intake: deque = deque()          # (message, arrival) waiting to be decoded
        self._intake_thread = threading.Thread(
            target=self._decode_loop, name=f'timesformer-decoder-{name}'.rstrip('-'))
        self._buffer_lock = threading.Lock()   # the decoder's push, a parameter's stride
        self._on_window: Callable[[], None] = lambda: None   # `on_window`: one waits
        self.last_refusal = ''       # the message of the latest refused frame
        self._started = time.monotonic()
        self._first_arrival: Optional[float] = None   # steady clock, for the input watchdog
        self._last_arrival: Optional[float] = None

    # -- producer side (subscription callback) ------------------------------------------------

    def offer(self, msg):
        """Take one image message for the decoder thread; never decodes (the callback returns).

        At most `INTAKE_DEPTH` frames wait: when frames arrive faster than they decode, the
        oldest waiting one is dropped and refused as `backlog`. Refusals reach `on_refusal`.
        """
        arrival = self._arrived()
        with self._lock:
            full = len(self._intake) >= INTAKE_DEPTH
            if full:
                self._intake.popleft()
            self._intake.append((msg, arrival))
            self._wake.notify_all()
        if full:
            message = (f'frames arrive faster than they decode: the oldest of {INTAKE_DEPTH} '
                       f'waiting frames was dropped')
            self._refuse('backlog', message)
            self.on_refusal('backlog', message)

    def submit(self, msg, arrival: Optional[float] = None) -> Optional[str]:
        """Decode and take one image message now; return the refusal reason, or None."""
        arrival = self._arrived() if arrival is None else arrival
        refusal = self._accept(msg, arrival)
        return refusal[0] if refusal else None

    def _arrived(self) -> float:
        """Count a received frame; return its arrival time (perf_counter)."""
        arrival = time.perf_counter()
        now = time.monotonic()
        self.input_rate.tick(now)
        with self._lock:
            self.counters.received += 1
            if self._last_arrival is None or now - self._last_arrival > RATE_SETTLE_S:
                self._first_arrival = now       # (again) receiving: let the rate settle
            self._last_arrival = now
        return arrival

    def _decode_loop(self):
        while not self._stop.is_set():
            with self._lock:
                while not self._intake and not self._stop.is_set():
                    self._wake.wait(0.5)
                if not self._intake:
                    continue
                msg, arrival = self._intake.popleft()
                self._decoding = 1
            try:
                refusal = self._accept(msg, arrival)
            finally:
                with self._lock:
                    self._decoding = 0
            if refusal:
                self.on_refusal(*refusal)

    def _accept(self, msg, arrival: float) -> Optional[tuple]:
        """Take one message; return (reason, message) when it is refused, else None."""
        timing = {}

        def preprocess(rgb):
            started = time.perf_counter()
            tensor = self.preprocess(rgb)
            timing['ms'] = (time.perf_counter() - started) * 1000.0
            return tensor

        with self._buffer_lock:
            intake = take_frame(self.buffer, msg, preprocess)
        if intake.refused:
            self._refuse(intake.refused, intake.message)
            return intake.refused, intake.message
        result, header, rgb = intake.push, msg.header, intake.rgb
        with self._lock:
            if result.reset:
                self.counters.resets[result.reset] += 1
            if not result.sampled:
                self.counters.skipped_by_sampling += 1
                return None
            if result.window is None:
                self.counters.buffered += 1
                return None
            job = Job(result.window, arrival, header, rgb, timing.get('ms', 0.0))
            if self._mailbox is not None:
                self.counters.dropped += 1
            else:
                self._waiting_since = time.monotonic()
            self._mailbox = job
        self._on_window()
        return None

    def on_window(self, wake: Callable[[], None]):
        """Call `wake()` whenever a window starts waiting (the worker's, to wake its thread)."""
        self._on_window = wake

    def count_lost(self, count: int):
        """Count frames the middleware reports lost before they reached the subscription."""
        with self._lock:
            self.counters.lost_in_dds += count

    def _refuse(self, reason: str, message: str) -> str:
        with self._lock:
            self.counters.refused[reason] += 1
        LOGGER.debug('refused frame%s: %s', f' on camera {self.name}' if self.name else '',
                     message)
        self.last_refusal = message
        return reason

    def set_stride(self, stride: int):
        """Run once every `stride` newly sampled frames, from the next frame on."""
        with self._buffer_lock:
            self.buffer.set_stride(stride)

    # -- the worker's side ----------------------------------------------------------------------

    def start(self):
        self._intake_thread.start()

    def stop(self, timeout: float = 2.0):
        self._stop.set()
        with self._lock:
            self._wake.notify_all()
        if self._intake_thread.is_alive():
            self._intake_thread.join(timeout)

    @property
    def pending(self) -> int:
        with self._lock:
            return (self._mailbox is not None) + self._in_flight

    def waiting_since(self) -> Optional[float]:
        """Since when (steady clock) a window of this stream waits for the worker, or None."""
        with self._lock:
            return self._waiting_since

    def take(self) -> Optional[Job]:
        """Take the waiting window for inference (the worker's); None when none waits."""
        with self._lock:
            job, self._mailbox, self._waiting_since = self._mailbox, None, None
            if job is not None:
                self._in_flight = 1
            return job

    def finish(self, job: Job, outcome, batch_size: int = 1, stopping: bool = False):
        """Hand the window's Prediction (or the exception that failed it) to the callbacks."""
        if isinstance(outcome, BaseException):
            reason = failure_reason(outcome)
            with self._lock:
                self.counters.failed += 1
                self.counters.failed_consecutive += 1
                self.counters.failed_by_reason[reason] += 1
                self._in_flight = 0
            self.on_failure(job, outcome)
            return
        # Latency: from the arrival of the window's last frame to its result, before
        # publishing; the JSON's latency_ms and the diagnostics' percentiles are this.
        latency = (time.perf_counter() - job.arrival) * 1000.0
        outcome.timings['preprocess_ms'] = job.preprocess_ms
        try:
            self.on_result(job, outcome, latency)
        except Exception as exc:  # noqa: BLE001 - a failed publish must not end the worker
            if not stopping:
                with self._lock:
                    self.counters.publish_failed += 1
                self.on_publish_failure(job, exc)
        with self._lock:
            self.counters.processed += 1
            self.counters.failed_consecutive = 0
            self.latencies.append(latency)
            self.batch_sizes[batch_size] += 1
            self._in_flight = 0
        self.inference_rate.tick()

    def snapshot(self) -> dict:
        """Counters and rates for diagnostics."""
        now = time.monotonic()
        with self._lock:
            c = self.counters
            latencies = np.array(self.latencies) if self.latencies else np.zeros(1)
            waiting = int(self._mailbox is not None)
            pending = waiting + self._in_flight
            undecoded = len(self._intake) + self._decoding
            return {
                'frames_received': c.received,
                'frames_refused': sum(c.refused.values()),
                'refused_by_reason': dict(c.refused),
                'frames_skipped_by_sampling': c.skipped_by_sampling,
                'frames_buffered': c.buffered,
                'frames_processed': c.processed,
                'frames_dropped': c.dropped,
                'frames_failed': c.failed,
                'failed_consecutive': c.failed_consecutive,
                'failed_by_reason': dict(c.failed_by_reason),
                'publish_failed': c.publish_failed,
                'frames_lost_in_dds': c.lost_in_dds,
                'windows_pending': pending,
                'windows_waiting': waiting,
                'windows_in_flight': self._in_flight,
                'resets_by_reason': dict(c.resets),
                'batch_sizes': dict(self.batch_sizes),
                'input_rate_hz': self.input_rate.rate(now),
                'input_silence_s': now - (self._last_arrival or self._started),
                'receiving_for_s': 0.0 if self._first_arrival is None else
                now - self._first_arrival,
                'inference_rate_hz': self.inference_rate.rate(),
                'latency_p50_ms': float(np.percentile(latencies, 50)),
                'latency_p95_ms': float(np.percentile(latencies, 95)),
                'latency_p99_ms': float(np.percentile(latencies, 99)),
                'frames_waiting_decode': undecoded,
                'accounted': c.accounted(pending + undecoded),
            }


class BatchWorker:
    """The one thread that runs the engine for every `Stream` (see the module docstring)."""

    def __init__(self, engine: Engine, streams: Sequence[Stream], max_batch: int = 8):
        if max_batch < 1:
            raise ValueError(f'max_batch must be >= 1, got {max_batch}')
        if len({s.name for s in streams}) != len(streams):
            raise ValueError(f'stream names must differ, got {[s.name for s in streams]}')
        self.engine = engine
        self.streams = list(streams)
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name='timesformer-worker')
        self.batch_sizes = Counter()
        self.inference_ms = deque(maxlen=200)    # per batch
        self.batch_rate = RateMeter()
        for stream in self.streams:
            stream.on_window(self._notify)

    def _notify(self):
        with self._lock:
            self._wake.notify()

    def start(self):
        for stream in self.streams:
            stream.start()
        self._thread.start()

    def stop(self, timeout: float = 2.0):
        self._stop.set()
        with self._lock:
            self._wake.notify_all()
        for stream in self.streams:
            stream.stop(timeout)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def pick(self) -> list:
        """Take the next batch: (stream, job) of the streams waiting longest, at most max_batch.

        Called with the worker's lock held, or by a caller that owns the streams.
        """
        waiting = []
        for index, stream in enumerate(self.streams):
            since = stream.waiting_since()
            if since is not None:
                waiting.append((since, index, stream))
        waiting.sort(key=lambda item: item[:2])
        batch = []
        for _, _, stream in waiting[:self.max_batch]:
            job = stream.take()
            if job is not None:
                batch.append((stream, job))
        return batch

    def _next_batch(self) -> list:
        with self._lock:
            while not self._stop.is_set():
                batch = self.pick()
                if batch:
                    return batch
                self._wake.wait(0.5)
            return []                   # stopping: no new inference (the windows are dropped)

    def run(self, batch: list):
        """Infer one batch of (stream, job) and hand each result to its stream."""
        started = time.perf_counter()
        outcomes = run_batch(self.engine, [job.window for _, job in batch])
        elapsed = (time.perf_counter() - started) * 1000.0
        with self._lock:
            self.batch_sizes[len(batch)] += 1
            self.inference_ms.append(elapsed)
        self.batch_rate.tick()
        for (stream, job), outcome in zip(batch, outcomes):
            stream.finish(job, outcome, len(batch), self._stop.is_set())

    def _work(self):
        while not self._stop.is_set():
            batch = self._next_batch()
            if batch:
                self.run(batch)

    def snapshot(self) -> dict:
        """Batch sizes, inference time and rate, for the engine's diagnostics."""
        with self._lock:
            times = np.array(self.inference_ms) if self.inference_ms else np.zeros(1)
            sizes = dict(self.batch_sizes)
        batches = sum(sizes.values())
        return {
            'streams': len(self.streams),
            'max_batch': self.max_batch,
            'batches': batches,
            'batch_sizes': sizes,
            'mean_batch_size': (sum(k * v for k, v in sizes.items()) / batches) if batches
            else 0.0,
            'batch_rate_hz': self.batch_rate.rate(),
            'inference_p50_ms': float(np.percentile(times, 50)),
            'inference_p95_ms': float(np.percentile(times, 95)),
        }
