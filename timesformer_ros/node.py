"""The rclpy node `timesformer`: parameters, subscriptions, publishers.

Wiring only; the work is in `pipeline.py` (camera streams -> one batch worker), `engine.py` and
`outputs.py`; the parameters and topics are tables (`interface.PARAMETERS`, `outputs.OUTPUTS`;
`timesformer_node --help` prints them). One `Camera` per name of the `cameras` parameter: its
subscription, its `pipeline.Stream`, its action decoder and its outputs (the per-window rows of
`OUTPUTS`, under `~/CAMERA/`; the unnamed camera's directly under `~/`). Node-wide outputs (the
rows without a per-window builder: `~/label_info`) exist once.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Optional

import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_service import ParameterService
from rclpy.qos import (
    DurabilityPolicy, HistoryPolicy, QoSCompatibility, QoSProfile, ReliabilityPolicy,
    qos_check_compatible)
from sensor_msgs.msg import CompressedImage, Image

from .checkpoints import CheckpointError
from .clips import model_clip_buffer, model_sampling
from .engine import Engine, EngineError, engine_from_values
from .interface import (
    BY_NAME, DIAGNOSTICS_TOPIC, ENGINE_DIAGNOSTIC_NAME, INPUT_TOPICS, PARAMETERS, Topic,
    camera_names, diagnostic_name, help_text, override_param, split_override)
from .messages import rclpy_types
from .outputs import BY_OUTPUT, OUTPUTS, Reporter
from .diagnostics import OK, health, input_problem
from .pipeline import BatchWorker, Stream
from .segments import ActionDecoder, DecoderConfig
from .spin import StartupError, declare, declare_overrides, run_node

SUMMARY = """Video action recognition: buffers camera frames in a sliding window, runs a
TimeSformer on each window and publishes labels, scores and attention summaries."""
WATCHDOG_LOG_PERIOD_S = 10.0
MAX_TOPIC_NAME = 247        # rmw's RMW_TOPIC_MAX_NAME_LENGTH: 255 less 8 for DDS prefixes
DECODER_PARAMETERS = frozenset(DecoderConfig.__dataclass_fields__)


def load_engine(values: dict, logger, max_batch: int = 1) -> Engine:
    """Build the engine of the parameters; a mistake is a StartupError (one line, exit 2)."""
    try:
        return engine_from_values(values, max_batch=max_batch, logger=logger)
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


@dataclass
class Camera:
    """One camera's ROS side: its name, stream, reporter (under its lock) and publishers."""

    name: str
    reporter: Reporter
    values: dict                                      # its settings: the globals, overridden
    overrides: dict = field(default_factory=dict)    # its own (cameras.NAME.PARAM)
    stream: Optional[Stream] = None
    subscription: object = None
    outputs: dict = field(default_factory=dict)       # output name -> publisher
    # The worker's windows and the watchdog's ends: each is built and published under it,
    # so ~/events and the latched ~/active never go out of order.
    lock: threading.Lock = field(default_factory=threading.Lock)
    input_problem: Optional[str] = None
    sampling: object = None                           # its clips.Sampling

    @property
    def prefix(self) -> str:
        return f'{self.name}/' if self.name else ''

    @property
    def where(self) -> str:
        return f' on camera {self.name}' if self.name else ''


def _dict_text(values: dict) -> str:
    return ' '.join(f'{k}:{v}' for k, v in sorted(values.items()))


class WholeSetParameterService(ParameterService):
    """rclpy's parameter services, with a SetParameters request judged as a whole.

    rclpy applies the parameters of a (non-atomic) SetParameters request one at a time, each
    through the on-set callback alone. A rule between two parameters (exit_threshold <=
    enter_threshold) would then be judged halfway through the set, on values that no one asked
    for, and whether a set works would depend on its order: [enter 0.5, exit 0.3] from enter
    1.0 / exit 1.0 refused enter and applied exit, leaving 1.0 / 0.3. Here the node is told the
    whole request first, and the on-set callback judges such rules on the values after it
    (`TimeSformerNode.values_after`). The roles stay those of ROS 2's parameter callback design
    (rclcpp's "Proposed node parameters callback Design", rclpy alike): on-set validates with
    no side effects, post-set applies, and what is validated is the state a request leaves.
    """

    def _set_parameters_callback(self, request, response):
        node = self._get_node()
        node.whole_set = [Parameter.from_parameter_msg(p) for p in request.parameters]
        try:
            return super()._set_parameters_callback(request, response)
        finally:
            node.whole_set = []


class TimeSformerNode(Node):

    def __init__(self, **kwargs):
        # The parameters of the request being set, if any (WholeSetParameterService): rules
        # between parameters are judged on the values after all of them.
        self.whole_set = []
        super().__init__('timesformer', start_parameter_services=False, **kwargs)
        self._parameter_service = WholeSetParameterService(self)
        self.values = values = declare(self, PARAMETERS)
        names = camera_names(values['cameras'])
        overrides = declare_overrides(self, names)
        self.engine = load_engine(values, self.get_logger(),
                                  max_batch=min(values['max_batch'], len(names)))
        locator = getattr(self.engine, 'locator', None)
        self.get_logger().info(f'model: {self.engine.describe()} (region: '
                               f'{locator.method if locator else "none"})')
        self.cameras = []
        for name in names:
            own = {**values, **overrides[name]}
            try:
                decoder = ActionDecoder(self.engine.labels, DecoderConfig.from_values(own))
            except ValueError as exc:
                raise StartupError(f'{exc}{" (camera " + name + ")" if name else ""}') \
                    from None
            self.cameras.append(Camera(name, Reporter(decoder), own, overrides[name]))
        for camera in self.cameras:
            camera.sampling = model_sampling(self.engine, camera.values)
            self.get_logger().info(f'sampling{camera.where}: {camera.sampling.describe()}'
                                   + (f' (overrides: {_dict_text(camera.overrides)})'
                                      if camera.overrides else ''))
            camera.stream = Stream(camera.name, model_clip_buffer(self.engine, camera.values),
                                   self.engine.preprocessor.frame,
                                   partial(self._publish, camera),
                                   partial(self._on_failure, camera),
                                   partial(self._on_publish_failure, camera),
                                   partial(self._on_refusal, camera))
        self.worker = BatchWorker(self.engine, [c.stream for c in self.cameras],
                                  values['max_batch'])
        self._warned = {}

        self._check_topic_names(values)
        self._create_topics(values)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.diagnostics_timer = self.create_timer(values['diagnostics_period_s'],
                                                   self._publish_diagnostics, clock=self.steady)
        topics = ', '.join(f'{c.subscription.topic_name} ({c.values["input_transport"]}, qos '
                           f'{c.values["qos"]}, depth {c.values["qos_depth"]})'
                           for c in self.cameras)
        self.get_logger().info(f'listening on {topics}; batches of at most '
                               f'{self.worker.max_batch}')
        self.worker.start()       # last: a constructor that fails leaves no thread behind

    def _check_topic_names(self, values: dict):
        """Refuse at start (one line) a topic that the namespace and camera make too long."""
        namespace = self.get_namespace().rstrip('/')
        for camera in self.cameras:
            image = 'image/compressed' if camera.values['input_transport'] == 'compressed' \
                else 'image'
            names = [f'{namespace}/{camera.prefix}{image}'] + [
                f'{namespace}/{self.get_name()}/{camera.prefix}{o.name}'
                for o in OUTPUTS if o.per_camera]
            longest = max(names, key=len)
            if len(longest) > MAX_TOPIC_NAME:
                where = f' of camera {camera.name[:40]}...' if len(camera.name) > 40 \
                    else camera.where
                raise StartupError(f'topic {longest[:50]}...{longest[-30:]}{where} has '
                                   f'{len(longest)} characters, ROS allows '
                                   f'{MAX_TOPIC_NAME}: shorten the camera name or the '
                                   f'namespace ({namespace or "/"})')

    def _create_topics(self, values: dict):
        """Create every publisher and subscription of the cameras and the node."""
        self.types = rclpy_types()
        self.output_qos = _qos_profiles()
        self.outputs = {}                   # node-wide outputs (label_info)
        for output in OUTPUTS:
            if not output.per_camera:
                self.outputs[output.name] = self.create_publisher(
                    self.types.classes(output.msgtype), '~/' + output.name,
                    self.output_qos[output.qos])
                continue
            for camera in self.cameras:
                self._advertise(camera, output)
        for output in OUTPUTS:
            if output.latched:
                self._send_latched(output)
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)

        for camera in self.cameras:
            own = camera.values
            qos = QoSProfile(depth=own['qos_depth'], history=HistoryPolicy.KEEP_LAST,
                             durability=DurabilityPolicy.VOLATILE,
                             reliability=ReliabilityPolicy.RELIABLE if own['qos'] == 'reliable'
                             else ReliabilityPolicy.BEST_EFFORT)
            compressed = own['input_transport'] == 'compressed'
            # Frames lost inside DDS (a full history queue while a large frame decodes) are
            # counted.
            events = SubscriptionEventCallbacks(message_lost=partial(self._on_lost, camera))
            camera.subscription = self.create_subscription(
                CompressedImage if compressed else Image,
                camera.prefix + ('image/compressed' if compressed else 'image'),
                camera.stream.offer, qos, event_callbacks=events)

    # -- callbacks ------------------------------------------------------------------------------

    def _on_refusal(self, camera: Camera, reason: str, message: str):
        self._warn_throttled((camera.name, reason),
                             f'refused a frame{camera.where} ({reason}): {message}')

    def _warn_throttled(self, key, message: str, period_s: float = 5.0):
        now = time.monotonic()
        if now - self._warned.get(key, -period_s) >= period_s:
            self._warned[key] = now
            self.get_logger().warning(message)

    def _on_failure(self, camera: Camera, job, exc):
        self._warn_throttled((camera.name, 'inference_failed'),
                             f'inference failed for the window ending at {job.window.end} ns'
                             f'{camera.where}, skipped: {exc!r}')

    def _on_publish_failure(self, camera: Camera, job, exc):
        self._warn_throttled((camera.name, 'publish_failed'),
                             f'publishing the results of the window ending at '
                             f'{job.window.end} ns{camera.where} failed: {exc!r}')

    def _on_lost(self, camera: Camera, info):
        camera.stream.count_lost(info.total_count_change)

    def set_parameters(self, parameter_list):
        """Set parameters as rclpy does, with rules between them judged after the whole list."""
        self.whole_set = list(parameter_list)
        try:
            return super().set_parameters(parameter_list)
        finally:
            self.whole_set = []

    def _own_problem(self, param) -> Optional[str]:
        """Return why `param` alone would be refused (read-only, type, range), or None.

        A camera's override (`cameras.NAME.PARAM`) follows the rules of its global parameter.
        """
        override = split_override(param.name)
        spec = override_param(*override) if override else BY_NAME.get(param.name)
        if spec is None:
            return None
        if spec.read_only:
            return f'{param.name} is read-only (restart)'
        if type(param.value) is not type(spec.default):
            return f'{param.name} must be a {type(spec.default).__name__}'
        return spec.check(param.value)

    def values_after(self, params) -> dict:
        """Return the parameter values after the whole set that `params` belong to.

        The request being set (`whole_set`, in its order; each parameter that would be refused
        on its own left out, as rclpy will refuse it) and then `params` over the current values.
        """
        values = dict(self.values)
        for param in [*self.whole_set, *params]:
            if param.name in BY_NAME and not self._own_problem(param):
                values[param.name] = param.value
        return values

    def _camera_values_after(self, camera: Camera, params) -> dict:
        """Return a camera's settings after the whole set that `params` belong to."""
        values = dict(camera.values)
        for changed_camera, changed in self._changes(
                [p for p in [*self.whole_set, *params] if not self._own_problem(p)]):
            if changed_camera is camera:
                values.update(changed)
        return values

    def _validate_parameters(self, params) -> SetParametersResult:
        """On-set: refuse with a reason, no side effects.

        rclpy itself refuses read-only ones and values outside the descriptors' ranges. Rules
        between parameters (the decoder's: exit_threshold <= enter_threshold) are judged on the
        values after the whole request (`values_after`), not after this one parameter.
        """
        for param in params:
            reason = self._own_problem(param)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        if DECODER_PARAMETERS & {p.name for p in params}:
            try:   # the thresholds are checked together (exit <= enter)
                DecoderConfig.from_values(self.values_after(params))
            except ValueError as exc:
                return SetParametersResult(successful=False,
                                           reason=f'{exc} (after the whole set)')
        for camera, changes in self._changes(params):
            if DECODER_PARAMETERS & set(changes):
                try:   # and for each camera, with its own overrides
                    DecoderConfig.from_values(self._camera_values_after(camera, params))
                except ValueError as exc:
                    return SetParametersResult(
                        successful=False, reason=f'{exc}{camera.where} (after the whole set)')
        return SetParametersResult(successful=True)

    def _changes(self, params) -> list:
        """[(camera, {parameter: new value})]: what `params` change in each camera's settings.

        A global parameter changes the cameras without their own override of it; an override
        changes its camera alone.
        """
        changes = {camera.name: {} for camera in self.cameras}
        for param in params:
            override = split_override(param.name)
            if override and override[0] in changes and param.value is not None:
                changes[override[0]][override[1]] = param.value
            elif param.name in BY_NAME:
                for camera in self.cameras:
                    if param.name not in camera.overrides:
                        changes[camera.name].setdefault(param.name, param.value)
        return [(camera, changes[camera.name]) for camera in self.cameras
                if changes[camera.name]]

    def _apply_parameters(self, params):
        """Post-set: the accepted values take effect (on the next window), each change logged.

        A global parameter reaches the cameras without their own override of it; an override
        (`cameras.NAME.PARAM`) its camera alone.
        """
        changes = self._changes(params)
        names = {p.name for p in params if p.name in BY_NAME}
        for param in params:
            if param.name in names and param.value != self.values[param.name]:
                self.get_logger().info(
                    f'parameter {param.name}: {self.values[param.name]!r} -> {param.value!r}')
            elif split_override(param.name):
                self.get_logger().info(f'parameter {param.name}: {param.value!r}')
        self.values.update({p.name: p.value for p in params if p.name in names})
        for camera, changed in changes:
            for param in params:
                override = split_override(param.name)
                if override and override[0] == camera.name:
                    camera.overrides[override[1]] = param.value
            with camera.lock:           # not while the worker publishes
                camera.values.update(changed)
                if DECODER_PARAMETERS & set(changed):
                    # Halfway through a set the values may break a rule that the whole set
                    # keeps: the decoder takes the values after the whole set at once.
                    camera.reporter.decoder.config = DecoderConfig.from_values(
                        self._camera_values_after(camera, []))
                for output in OUTPUTS:
                    if output.enabled_by in changed:
                        self._advertise(camera, output)
            if 'stride' in changed:
                camera.stream.set_stride(camera.values['stride'])
        if 'score_threshold' in names:
            self._send_latched(BY_OUTPUT['label_info'])

    def _advertise(self, camera: Camera, output):
        """Create the camera's publisher of `output` where it is enabled; destroy it where not.

        An output switched off by its parameter (`publish_overlay`) is not advertised at all.
        """
        enabled, publisher = output.enabled(camera.values), camera.outputs.get(output.name)
        if enabled and publisher is None:
            camera.outputs[output.name] = self.create_publisher(
                self.types.classes(output.msgtype), f'~/{camera.prefix}{output.name}',
                self.output_qos[output.qos])
        elif not enabled and publisher is not None:
            self.destroy_publisher(camera.outputs.pop(output.name))

    # -- publishing (worker thread) -------------------------------------------------------------

    def _send_latched(self, output):
        stamp = self.get_clock().now().nanoseconds
        messages = output.latched(self.types, self.engine.labels, self.values, stamp)
        publishers = [c.outputs[output.name] for c in self.cameras] if output.per_camera \
            else [self.outputs[output.name]]
        for publisher in publishers:
            for msg in messages:
                publisher.publish(msg)

    def _publish_result(self, camera: Camera, result):
        """Every per-camera output's messages for `result`, in the order of `OUTPUTS`."""
        for output in OUTPUTS:
            publisher = camera.outputs.get(output.name)     # None: not enabled
            if output.per_window and publisher is not None:
                for msg in output.per_window(self.types, result, camera.values):
                    publisher.publish(msg)

    def _publish(self, camera: Camera, job, prediction, latency_ms: float):
        if not self.context.ok():
            return  # shutting down: the publishers are gone
        try:
            with camera.lock:   # built and published in one go: events stay in order
                result = camera.reporter.window(job.window, prediction, job.header.frame_id,
                                                latency_ms, camera.values, job.rgb)
                self._publish_result(camera, result)
        except Exception:  # noqa: BLE001 - a signal may shut the context down mid-publish
            if self.context.ok():
                raise

    def _end_actions_on_silence(self, camera: Camera, snap: dict):
        """No frame for input_timeout_s: what was active has ended as far as anyone can tell.

        It ends (reason input_timeout) instead of staying active until frames come back.
        """
        timeout = camera.values['input_timeout_s']
        if not timeout or snap['input_silence_s'] < timeout:
            return
        with camera.lock:
            result = camera.reporter.close('input_timeout')
            if result is not None:
                self._publish_result(camera, result)

    def _camera_status(self, camera: Camera) -> DiagnosticStatus:
        snap = camera.stream.snapshot()
        topic = camera.subscription.topic_name
        publishers = self.get_publishers_info_by_topic(topic) if not snap['frames_received'] \
            else []                 # only asked while no frame has come
        problem = input_problem(snap, topic, camera.values['input_timeout_s'],
                                camera.values['expected_rate_hz'], len(publishers),
                                self._incompatible(camera, publishers))
        self._log_input_problem(camera, problem)
        self._end_actions_on_silence(camera, snap)
        level, message = health(snap, self.values['failure_error_threshold'], problem)
        values = {k: v for k, v in snap.items() if not isinstance(v, dict)}
        values.update({f'refused_{k}': v for k, v in snap['refused_by_reason'].items()})
        values.update({f'failed_{k}': v for k, v in snap['failed_by_reason'].items()})
        values.update({f'resets_{k}': v for k, v in snap['resets_by_reason'].items()})
        values['batch_sizes'] = _dict_text(snap['batch_sizes'])
        values['camera'] = camera.name
        values['topic'] = topic
        values['sampling'] = camera.sampling.describe()
        values['overrides'] = _dict_text(camera.overrides)
        values.update(self._engine_values())
        return self._status(diagnostic_name(camera.name), level, message, values)

    @staticmethod
    def _incompatible(camera: Camera, publishers) -> list:
        """Return why the camera's subscription cannot take each refused publisher's QoS."""
        checks = (qos_check_compatible(p.qos_profile, camera.subscription.qos_profile)
                  for p in publishers)
        return [reason for verdict, reason in checks if verdict == QoSCompatibility.ERROR]

    def _engine_values(self) -> dict:
        values = {'device': str(self.engine.device), 'model': self.engine.describe()}
        if self.engine.device.type == 'cuda':
            values['gpu_memory_mb'] = round(torch.cuda.memory_allocated(self.engine.device)
                                            / 2 ** 20, 1)
        return values

    def _engine_status(self) -> DiagnosticStatus:
        snap = self.worker.snapshot()
        values = {k: v for k, v in snap.items() if not isinstance(v, dict)}
        values['batch_sizes'] = _dict_text(snap['batch_sizes'])
        values.update(self._engine_values())
        message = (f'{snap["batches"]} batches for {snap["streams"]} camera(s), mean size '
                   f'{snap["mean_batch_size"]:.2f}, inference p50 '
                   f'{snap["inference_p50_ms"]:.1f} ms')
        return self._status(ENGINE_DIAGNOSTIC_NAME, OK, message, values)

    def _status(self, name: str, level: int, message: str, values: dict) -> DiagnosticStatus:
        status = DiagnosticStatus(name=name, level=bytes([level]), message=message,
                                  hardware_id=str(self.engine.device))
        status.values = [KeyValue(key=k, value=f'{v:.3f}' if isinstance(v, float) else str(v))
                         for k, v in values.items()]
        return status

    def _publish_diagnostics(self):
        statuses = [self._camera_status(camera) for camera in self.cameras]
        array = DiagnosticArray(status=statuses + [self._engine_status()])
        array.header.stamp = self.get_clock().now().to_msg()
        self.pub_diagnostics.publish(array)

    def _log_input_problem(self, camera: Camera, problem):
        if problem:
            self._warn_throttled((camera.name, 'input'), problem, WATCHDOG_LOG_PERIOD_S)
        elif camera.input_problem:
            self._warned.pop((camera.name, 'input'), None)
            self.get_logger().info(f'input on {camera.subscription.topic_name} is fine again')
        camera.input_problem = problem

    def destroy_node(self):
        if hasattr(self, 'worker'):      # not when the constructor failed before it
            self.worker.stop()
        super().destroy_node()


def main(args=None) -> int:
    logging.basicConfig(level=logging.INFO)
    return run_node(TimeSformerNode, 'timesformer', (StartupError,), args,
                    help_text('timesformer_node', SUMMARY, PARAMETERS, TOPICS))


if __name__ == '__main__':
    sys.exit(main())
