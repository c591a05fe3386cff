"""The rclpy node `timesformer`: parameters, subscriptions, publishers.

Wiring only; the work is in `pipeline.py` (frames -> windows -> worker), `engine.py` and
`outputs.py`; the parameters and topics are tables (`interface.PARAMETERS`, `outputs.OUTPUTS`;
`timesformer_node --help` prints them).
"""

from __future__ import annotations

import logging
import sys
import threading
import time

import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)
from sensor_msgs.msg import CompressedImage, Image

from .checkpoints import CheckpointError
from .engine import Engine, EngineError, engine_from_values
from .interface import (
    BY_NAME, DIAGNOSTIC_NAME, DIAGNOSTICS_TOPIC, INPUT_TOPICS, PARAMETERS, Topic, help_text)
from .messages import rclpy_types
from .outputs import BY_OUTPUT, OUTPUTS, Reporter
from .pipeline import Pipeline, health, input_problem
from .segments import ActionDecoder, DecoderConfig
from .spin import StartupError, declare, run_node

SUMMARY = """Video action recognition: buffers camera frames in a sliding window, runs a
TimeSformer on each window and publishes labels, scores and attention summaries."""
WATCHDOG_LOG_PERIOD_S = 10.0
DECODER_PARAMETERS = frozenset(DecoderConfig.__dataclass_fields__)


def load_engine(values: dict, logger) -> Engine:
    """Build the engine of the parameters; a mistake is a StartupError (one line, exit 2)."""
    try:
        return engine_from_values(values, logger=logger)
    except (CheckpointError, EngineError, ValueError) as exc:
        raise StartupError(str(exc)) from None


def _qos_profiles() -> dict:
    """Return the QoS of each kind of output (`outputs.QOS`)."""
    latched = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    return {'results': QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST,
                                  reliability=ReliabilityPolicy.RELIABLE),
            'events': QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST,
                                 reliability=ReliabilityPolicy.RELIABLE),
            'latched': latched}


TOPICS = INPUT_TOPICS + tuple(
    Topic('out', '~/' + o.name, o.msgtype.replace('/msg/', '/'), o.description)
    for o in OUTPUTS) + (DIAGNOSTICS_TOPIC,)


class TimeSformerNode(Node):

    def __init__(self, **kwargs):
        super().__init__('timesformer', **kwargs)
        self.values = values = declare(self, PARAMETERS)
        self.engine = load_engine(values, self.get_logger())
        self.get_logger().info(f'model: {self.engine.describe()}')
        self.sampling = self.engine.sampling(values)
        self.get_logger().info(f'sampling: {self.sampling.describe()}')
        buffer = self.engine.clip_buffer(values)
        try:
            self.decoder = ActionDecoder(self.engine.labels, DecoderConfig.from_values(values))
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        self.reporter = Reporter(self.decoder)
        # The worker's windows and the watchdog's ends: each is built and published under it,
        # so ~/events and the latched ~/active never go out of order.
        self._reporter_lock = threading.Lock()
        self.pipeline = Pipeline(self.engine, buffer, self._publish, self._on_failure,
                                 self._on_publish_failure, self._on_refusal)
        self._warned = {}
        self._input_problem = None

        self.types = rclpy_types()
        qos = _qos_profiles()
        self.outputs = {o.name: self.create_publisher(self.types.classes(o.msgtype),
                                                      '~/' + o.name, qos[o.qos])
                        for o in OUTPUTS}
        for output in OUTPUTS:
            if output.latched:
                self._send(output, output.latched(self.types, self.engine.labels, values,
                                                  self.get_clock().now().nanoseconds))
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)

        qos = QoSProfile(depth=values['qos_depth'], history=HistoryPolicy.KEEP_LAST,
                         durability=DurabilityPolicy.VOLATILE,
                         reliability=ReliabilityPolicy.RELIABLE if values['qos'] == 'reliable'
                         else ReliabilityPolicy.BEST_EFFORT)
        # Frames lost inside DDS (a full history queue while a large frame decodes) are counted.
        events = SubscriptionEventCallbacks(message_lost=self._on_lost)
        if values['input_transport'] == 'compressed':
            self.subscription = self.create_subscription(
                CompressedImage, 'image/compressed', self.pipeline.offer, qos,
                event_callbacks=events)
        else:
            self.subscription = self.create_subscription(Image, 'image', self.pipeline.offer,
                                                         qos, event_callbacks=events)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.diagnostics_timer = self.create_timer(values['diagnostics_period_s'],
                                                   self._publish_diagnostics, clock=self.steady)
        self.get_logger().info(f'listening on {self.subscription.topic_name} '
                               f'({values["input_transport"]}, qos {values["qos"]}, depth '
                               f'{values["qos_depth"]})')
        self.pipeline.start()       # last: a constructor that fails leaves no thread behind

    # -- callbacks ------------------------------------------------------------------------------

    def _on_refusal(self, reason: str, message: str):
        self._warn_throttled(reason, f'refused a frame ({reason}): {message}')

    def _warn_throttled(self, key: str, message: str, period_s: float = 5.0):
        now = time.monotonic()
        if now - self._warned.get(key, -period_s) >= period_s:
            self._warned[key] = now
            self.get_logger().warning(message)

    def _on_failure(self, job, exc):
        self._warn_throttled('inference_failed', f'inference failed for the window ending '
                                                 f'at {job.window.end} ns, skipped: {exc!r}')

    def _on_publish_failure(self, job, exc):
        self._warn_throttled('publish_failed', f'publishing the results of the window ending '
                                               f'at {job.window.end} ns failed: {exc!r}')

    def _on_lost(self, info):
        self.pipeline.count_lost(info.total_count_change)

    def _validate_parameters(self, params) -> SetParametersResult:
        """On-set: refuse with a reason, no side effects.

        rclpy itself refuses read-only ones and values outside the descriptors' ranges.
        """
        for param in params:
            spec = BY_NAME.get(param.name)
            if spec is None:
                continue
            reason = f'{param.name} is read-only (restart)' if spec.read_only \
                else spec.check(param.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        if DECODER_PARAMETERS & {p.name for p in params}:
            try:   # the thresholds are checked together (exit <= enter)
                DecoderConfig.from_values({**self.values, **{p.name: p.value for p in params}})
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params):
        """Post-set: the accepted values take effect (on the next window)."""
        names = {p.name for p in params if p.name in BY_NAME}
        self.values.update({p.name: p.value for p in params if p.name in names})
        if 'stride' in names:
            self.pipeline.set_stride(self.values['stride'])
        if 'score_threshold' in names:
            output = BY_OUTPUT['label_info']
            self._send(output, output.latched(self.types, self.engine.labels, self.values,
                                              self.get_clock().now().nanoseconds))
        if DECODER_PARAMETERS & names:
            self.decoder.config = DecoderConfig.from_values(self.values)   # the next window

    # -- publishing (worker thread) -------------------------------------------------------------

    def _send(self, output, messages: list):
        publisher = self.outputs[output.name]
        for msg in messages:
            publisher.publish(msg)

    def _publish_result(self, result):
        """Every output's messages for `result`, in the order of `OUTPUTS`."""
        for output in OUTPUTS:
            if output.per_window:
                self._send(output, output.per_window(self.types, result, self.values))

    def _publish(self, job, prediction, latency_ms: float):
        if not self.context.ok():
            return  # shutting down: the publishers are gone
        try:
            with self._reporter_lock:   # built and published in one go: events stay in order
                result = self.reporter.window(job.window, prediction, job.header.frame_id,
                                              latency_ms, self.values, job.rgb)
                self._publish_result(result)
        except Exception:  # noqa: BLE001 - a signal may shut the context down mid-publish
            if self.context.ok():
                raise

    def _end_actions_on_silence(self, snap: dict):
        """No frame for input_timeout_s: what was active has ended as far as anyone can tell.

        It ends (reason input_timeout) instead of staying active until frames come back.
        """
        timeout = self.values['input_timeout_s']
        if not timeout or snap['input_silence_s'] < timeout:
            return
        with self._reporter_lock:
            result = self.reporter.close('input_timeout')
            if result is not None:
                self._publish_result(result)

    def _publish_diagnostics(self):
        snap = self.pipeline.snapshot()
        topic = self.subscription.topic_name
        problem = input_problem(snap, topic, self.values['input_timeout_s'],
                                self.values['expected_rate_hz'], self.count_publishers(topic))
        self._log_input_problem(problem)
        self._end_actions_on_silence(snap)
        level, message = health(snap, self.values['failure_error_threshold'], problem)
        status = DiagnosticStatus(name=DIAGNOSTIC_NAME, level=bytes([level]),
                                  message=message, hardware_id=str(self.engine.device))
        values = {k: v for k, v in snap.items() if not isinstance(v, dict)}
        values.update({f'refused_{k}': v for k, v in snap['refused_by_reason'].items()})
        values.update({f'failed_{k}': v for k, v in snap['failed_by_reason'].items()})
        values.update({f'resets_{k}': v for k, v in snap['resets_by_reason'].items()})
        values['device'] = str(self.engine.device)
        values['model'] = self.engine.describe()
        values['sampling'] = self.sampling.describe()
        if self.engine.device.type == 'cuda':
            values['gpu_memory_mb'] = round(torch.cuda.memory_allocated(self.engine.device)
                                            / 2 ** 20, 1)
        status.values = [KeyValue(key=k, value=f'{v:.3f}' if isinstance(v, float) else str(v))
                         for k, v in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.pub_diagnostics.publish(array)

    def _log_input_problem(self, problem):
        if problem:
            self._warn_throttled('input', problem, WATCHDOG_LOG_PERIOD_S)
        elif self._input_problem:
            self._warned.pop('input', None)
            self.get_logger().info(f'input on {self.subscription.topic_name} is fine again')
        self._input_problem = problem

    def destroy_node(self):
        if hasattr(self, 'pipeline'):      # not when the constructor failed before it
            self.pipeline.stop()
        super().destroy_node()


def main(args=None) -> int:
    logging.basicConfig(level=logging.INFO)
    return run_node(TimeSformerNode, 'timesformer', (StartupError,), args,
                    help_text('timesformer_node', SUMMARY, PARAMETERS, TOPICS))


if __name__ == '__main__':
    sys.exit(main())
