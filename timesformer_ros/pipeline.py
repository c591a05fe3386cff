"""Frames in, results out, on two threads: what the node runs, without ROS.

`Pipeline.offer(msg)` runs in the subscription callback and only queues the message (at most
`INTAKE_DEPTH` wait; beyond, the oldest is refused as `backlog`), so no frame, however costly to
decode, holds up the executor: diagnostics and parameter services keep their pace. The decoder
thread decodes and checks each message, offers it to the clip buffer (which preprocesses it
only when sampled), and hands a completed window to a one-slot mailbox (`submit` does the same
at once, for callers without threads). The worker thread takes the newest window, runs the
engine and calls `on_result`. When inference is slower than the camera, a window still waiting
in the mailbox is replaced by the newer one and counted as dropped: nothing queues, latency
never accumulates.

Every received frame ends in exactly one counter (`Counters.accounted` checks the sum):
refused (by reason), skipped by sampling, buffered (sampled, but completed no window: the
window was still filling, or `stride` > 1), or it completed a window that was processed,
dropped as stale, or failed; at most one window is pending at a time, and at most
`INTAKE_DEPTH` + 1 frames wait for or are in the decoder.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from . import frames
from .clips import ClipBuffer, PushResult, Window
from .engine import Engine, Prediction
from .frames import FrameError
from .messages import stamp_ns

LOGGER = logging.getLogger(__name__)


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
                      message=f'decoding failed ({type(exc).__name__}: {exc})')
    stamp = stamp_ns(msg.header)
    try:
        result = buffer.push(stamp, key, msg.header.frame_id, lambda: preprocess(rgb))
    except FrameError as exc:
        return Intake(rgb, stamp, refused=exc.reason, message=str(exc))
    except Exception as exc:  # noqa: BLE001 - see above
        return Intake(rgb, stamp, refused='internal_error',
                      message=f'preprocessing failed ({type(exc).__name__}: {exc})')
    if result.refused:
        return Intake(rgb, stamp, result, result.refused,
                      f"stamp {stamp} ns repeats the previous frame's")
    return Intake(rgb, stamp, result)


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


class Pipeline:

    def __init__(self, engine: Engine, buffer: ClipBuffer,
                 on_result: Callable[[Job, Prediction, float], None],
                 on_failure: Callable[[Job, BaseException], None] = lambda job, exc: None,
                 on_publish_failure: Optional[Callable[[Job, BaseException], None]] = None,
                 on_refusal: Callable[[str, str], None] = lambda reason, message: None):
        self.engine = engine
        self.buffer = buffer
        self.on_result = on_result
        self.on_failure = on_failure
        self.on_publish_failure = on_publish_failure or _log_publish_failure
        self.counters = Counters()
        self.input_rate = RateMeter()
        self.inference_rate = RateMeter()
        self.latencies = deque(maxlen=200)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._mailbox: Optional[Job] = None
        self._in_flight = 0
        self._decoding = 0                     # a frame taken from the intake, being decoded
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name='timesformer-worker')
        self._intake: deque = deque()          # (message, arrival) waiting to be decoded
        self._intake_thread = threading.Thread(target=self._decode_loop,
                                               name='timesformer-decoder')
        self._buffer_lock = threading.Lock()   # the decoder's push, a parameter's stride
        self.on_refusal = on_refusal
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
            tensor = self.engine.preprocessor(rgb)
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
            self._mailbox = job
            self._wake.notify()
        return None

    def count_lost(self, count: int):
        """Count frames the middleware reports lost before they reached the subscription."""
        with self._lock:
            self.counters.lost_in_dds += count

    def _refuse(self, reason: str, message: str) -> str:
        with self._lock:
            self.counters.refused[reason] += 1
        LOGGER.debug('refused frame: %s', message)
        self.last_refusal = message
        return reason

    def set_stride(self, stride: int):
        """Run once every `stride` newly sampled frames, from the next frame on."""
        with self._buffer_lock:
            self.buffer.set_stride(stride)

    # -- worker ---------------------------------------------------------------------------------

    def start(self):
        self._thread.start()
        self._intake_thread.start()

    def stop(self, timeout: float = 2.0):
        self._stop.set()
        with self._lock:
            self._wake.notify_all()
        for thread in (self._intake_thread, self._thread):
            if thread.is_alive():
                thread.join(timeout)

    @property
    def pending(self) -> int:
        with self._lock:
            return (self._mailbox is not None) + self._in_flight

    def _take(self) -> Optional[Job]:
        with self._lock:
            while self._mailbox is None and not self._stop.is_set():
                self._wake.wait(0.5)
            if self._stop.is_set():
                return None             # stopping: no new inference (the window is dropped)
            job, self._mailbox = self._mailbox, None
            if job is not None:
                self._in_flight = 1
            return job

    def _work(self):
        while not self._stop.is_set():
            job = self._take()
            if job is None:
                continue
            try:
                (prediction,) = self.engine.infer([job.window.frames])
                if not np.isfinite(prediction.probabilities).all():
                    raise NonFiniteResult('the model gave non-finite scores (NaN or inf)')
            except Exception as exc:  # noqa: BLE001 - one bad inference must not end the node
                reason = 'non_finite' if isinstance(exc, NonFiniteResult) else 'error'
                with self._lock:
                    self.counters.failed += 1
                    self.counters.failed_consecutive += 1
                    self.counters.failed_by_reason[reason] += 1
                    self._in_flight = 0
                self.on_failure(job, exc)
                continue
            # Latency: from the arrival of the window's last frame to its result, before
            # publishing; the JSON's latency_ms and the diagnostics' percentiles are this.
            latency = (time.perf_counter() - job.arrival) * 1000.0
            prediction.timings['preprocess_ms'] = job.preprocess_ms
            try:
                self.on_result(job, prediction, latency)
            except Exception as exc:  # noqa: BLE001 - a failed publish must not end the worker
                if not self._stop.is_set():
                    with self._lock:
                        self.counters.publish_failed += 1
                    self.on_publish_failure(job, exc)
            with self._lock:
                self.counters.processed += 1
                self.counters.failed_consecutive = 0
                self.latencies.append(latency)
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
                'input_rate_hz': self.input_rate.rate(now),
                'input_silence_s': now - (self._last_arrival or self._started),
                'receiving_for_s': 0.0 if self._first_arrival is None else
                now - self._first_arrival,
                'inference_rate_hz': self.inference_rate.rate(),
                'latency_p50_ms': float(np.percentile(latencies, 50)),
                'latency_p95_ms': float(np.percentile(latencies, 95)),
                'frames_waiting_decode': undecoded,
                'accounted': c.accounted(pending + undecoded),
            }


OK, WARN, ERROR = 0, 1, 2
INTAKE_DEPTH = 4          # frames waiting for the decoder thread; more: the oldest is dropped
RATE_SETTLE_S = 2.0       # receive this long before judging the input rate


def input_problem(snapshot: dict, topic: str, timeout_s: float, expected_rate_hz: float,
                  publishers: int = 0) -> Optional[str]:
    """Return what is wrong with the input, for the watchdog.

    No frame for `timeout_s` (0: not checked), or frames arriving at less than half of
    `expected_rate_hz` (0: not checked). `publishers` on the topic tell a wrong remap (none) from a
    QoS mismatch (some).
    """
    silence = snapshot['input_silence_s']
    if timeout_s and silence >= timeout_s:
        if snapshot['frames_received']:
            return f'no frame on {topic} for {silence:.1f} s'
        if publishers:
            return (f'no frame received on {topic} since the start {silence:.1f} s ago, '
                    f'though {publishers} publisher(s) are on it: do their QoS settings '
                    f'match the qos parameter (a reliable subscription gets nothing from a '
                    f'best-effort publisher)?')
        return (f'no frame received on {topic} since the start {silence:.1f} s ago, and '
                f'nothing publishes on it (is the topic remapped to the camera?)')
    rate = snapshot['input_rate_hz']
    if expected_rate_hz and snapshot['receiving_for_s'] >= RATE_SETTLE_S \
            and rate < expected_rate_hz / 2:
        return f'frames on {topic} arrive at {rate:.1f} Hz, expected {expected_rate_hz:g} Hz'
    return None


def health(snapshot: dict, error_after: int, input_problem: Optional[str] = None) -> tuple:
    """(level, message) for diagnostics.

    ERROR after `error_after` consecutive failed inferences, WARN while the input has a problem,
    frames are being refused or inferences fail, else OK.
    """
    if snapshot['failed_consecutive'] >= error_after:
        return ERROR, f'inference failed {snapshot["failed_consecutive"]} times in a row'
    if input_problem:
        return WARN, input_problem
    if snapshot['frames_failed']:
        reasons = ', '.join(f'{k}: {v}' for k, v in sorted(snapshot['failed_by_reason'].items()))
        return WARN, f'{snapshot["frames_failed"]} inferences failed ({reasons})'
    if snapshot['publish_failed']:
        return WARN, f'publishing failed for {snapshot["publish_failed"]} windows'
    if snapshot['frames_refused']:
        reasons = ', '.join(f'{k}: {v}' for k, v in sorted(snapshot['refused_by_reason'].items()))
        return WARN, f'frames refused ({reasons})'
    return OK, 'running'
