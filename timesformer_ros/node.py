"""The rclpy node `timesformer`: parameters, subscriptions, publishers. Wiring only; the work
is in `pipeline.py` (frames -> windows -> worker), `engine.py` and `results.py`.

Topics (relative names can be remapped; `~/` is the node's private namespace):
  in   image                    sensor_msgs/Image            (input_transport: raw)
  in   image/compressed         sensor_msgs/CompressedImage  (input_transport: compressed)
  out  ~/label                  std_msgs/String    top-1 class, or 'unknown' below threshold
  out  ~/classification         std_msgs/String    JSON per window (results.py has the schema)
  out  ~/attention/spatial      sensor_msgs/Image  32FC1 saliency of the window's last frame
  out  ~/attention/overlay      sensor_msgs/Image  rgb8 heat map on that frame (publish_overlay)
  out  ~/label_info             std_msgs/String    JSON class map, transient-local (latched)
  out  /diagnostics             diagnostic_msgs/DiagnosticArray, every diagnostics_period_s
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult)
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from . import results
from .checkpoints import Checkpoint, CheckpointError, default_labels, load_checkpoint
from .clips import ClipBuffer
from .engine import Engine, EngineError
from .model import TimeSformer, preset
from .pipeline import Pipeline, health
from .spin import run_node

EMBEDDED_CHECKPOINT = 'motion_tiny.json'


def embedded_checkpoint() -> Path:
    """The shipped default model (package data)."""
    return Path(str(resources.files('timesformer_ros') / 'data' / EMBEDDED_CHECKPOINT))


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    read_only: bool = True
    low: Optional[float] = None
    high: Optional[float] = None
    choices: tuple = ()

    def descriptor(self) -> ParameterDescriptor:
        text = self.description
        if self.choices:
            text += f' One of: {", ".join(self.choices)}.'
        desc = ParameterDescriptor(name=self.name, description=text, read_only=self.read_only)
        if self.low is not None and isinstance(self.default, int) \
                and not isinstance(self.default, bool):
            desc.integer_range = [IntegerRange(from_value=int(self.low), to_value=int(self.high),
                                               step=1)]
        elif self.low is not None:
            desc.floating_point_range = [FloatingPointRange(from_value=float(self.low),
                                                            to_value=float(self.high), step=0.0)]
        return desc

    def check(self, value) -> Optional[str]:
        """A reason why `value` is invalid, or None."""
        if self.choices and value not in self.choices:
            return f'{self.name} must be one of {list(self.choices)}, got {value!r}'
        if self.low is not None and not (self.low <= value <= self.high):
            return f'{self.name} must be in [{self.low}, {self.high}], got {value!r}'
        return None


# Every parameter, in one place. read_only: changing it needs a restart (reload).
PARAMETERS = (
    Param('checkpoint', '', 'Model checkpoint: a timesformer_ros .json/.safetensors, an '
          'official .pyth, a Hugging Face directory, or preset:NAME for random weights. Empty: '
          'the embedded motion model.'),
    Param('labels', '', 'Optional labels file (one per line, or JSON) replacing the '
          "checkpoint's labels."),
    Param('device', 'auto', 'Inference device: auto (cuda when available), cpu, cuda, cuda:N.'),
    Param('dtype', 'auto', 'auto (bfloat16 on a GPU, float32 on the CPU), float32, bfloat16 or '
          'float16.', choices=('auto', 'float32', 'bfloat16', 'float16')),
    Param('compile', False, 'torch.compile the model (CUDA graphs on a GPU); slower start.'),
    Param('stride', 1, 'Run once every `stride` newly sampled frames.', read_only=False,
          low=1, high=1000),
    Param('sample_every', 1, 'Sample every k-th frame (ignored when target_fps > 0).',
          low=1, high=1000),
    Param('target_fps', 0.0, 'Sample frames at this rate by header stamps (0: use '
          'sample_every).', low=0.0, high=1000.0),
    Param('max_gap_s', 1.0, 'A stamp gap longer than this (or a stamp going backwards, or a '
          'change of size/encoding) restarts the window.', low=0.001, high=3600.0),
    Param('top_k', 5, 'Number of results in ~/classification.', read_only=False, low=1,
          high=1000),
    Param('score_threshold', 0.0, "~/label says 'unknown' below this top-1 score.",
          read_only=False, low=0.0, high=1.0),
    Param('input_transport', 'raw', 'raw: subscribe to image; compressed: image/compressed.',
          choices=('raw', 'compressed')),
    Param('qos', 'sensor_data', 'Input QoS: sensor_data (best effort) or reliable.',
          choices=('sensor_data', 'reliable')),
    Param('qos_depth', 10, 'Input history depth (KEEP_LAST). With reliable QoS a deeper '
          'history rides out scheduling hiccups at high frame rates instead of losing frames '
          'inside DDS.', low=1, high=100000),
    Param('publish_overlay', False, 'Also publish ~/attention/overlay (rgb8).',
          read_only=False),
    Param('diagnostics_period_s', 1.0, 'Period of /diagnostics (steady clock).', low=0.05,
          high=60.0),
    Param('failure_error_threshold', 3, 'Consecutive failed inferences that turn diagnostics '
          'to ERROR.', low=1, high=1000),
)
_BY_NAME = {p.name: p for p in PARAMETERS}


class StartupError(RuntimeError):
    """A user mistake at start (bad checkpoint, device, parameter): one line, exit 2."""


def load_engine(values: dict, logger) -> Engine:
    path = values['checkpoint'] or str(embedded_checkpoint())
    labels = values['labels'] or None
    try:
        if path.startswith('preset:'):
            model = TimeSformer(preset(path.split(':', 1)[1])).eval()
            ckpt = Checkpoint(model=model, labels=default_labels(model.config.num_classes),
                              source=path, path=path)
            logger.warning(f'checkpoint {path}: random weights, results are meaningless')
        else:
            ckpt = load_checkpoint(path, labels=labels)
        device = values['device']
        if device == 'auto' and not torch.cuda.is_available():
            logger.warning('device auto: no CUDA GPU available, running on the CPU')
        return Engine(ckpt, device=device, dtype=values['dtype'], compile=values['compile'],
                      top_k=values['top_k'], max_batch=1)
    except (CheckpointError, EngineError, ValueError) as exc:
        raise StartupError(str(exc)) from None


class TimeSformerNode(Node):

    def __init__(self, **kwargs):
        super().__init__('timesformer', **kwargs)
        for param in PARAMETERS:
            self.declare_parameter(param.name, param.default, param.descriptor())
        values = {p.name: self.get_parameter(p.name).value for p in PARAMETERS}
        for param in PARAMETERS:
            reason = param.check(values[param.name])
            if reason:
                raise StartupError(reason)
        self.values = values
        self.engine = load_engine(values, self.get_logger())
        self.get_logger().info(f'model: {self.engine.describe()}')
        buffer = ClipBuffer(self.engine.num_frames, stride=values['stride'],
                            sample_every=values['sample_every'],
                            target_fps=values['target_fps'], max_gap_s=values['max_gap_s'])
        self.pipeline = Pipeline(self.engine, buffer, self._publish, self._on_failure)
        self.seq = 0
        self._warned = {}

        self.pub_label = self.create_publisher(String, '~/label', 10)
        self.pub_classification = self.create_publisher(String, '~/classification', 10)
        self.pub_spatial = self.create_publisher(Image, '~/attention/spatial', 10)
        self.pub_overlay = self.create_publisher(Image, '~/attention/overlay', 10)
        latched = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_label_info = self.create_publisher(String, '~/label_info', latched)
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.pub_label_info.publish(String(data=json.dumps(
            results.label_info_dict(self.engine.labels, values['score_threshold']))))

        qos = QoSProfile(depth=values['qos_depth'], history=HistoryPolicy.KEEP_LAST,
                         durability=DurabilityPolicy.VOLATILE,
                         reliability=ReliabilityPolicy.RELIABLE if values['qos'] == 'reliable'
                         else ReliabilityPolicy.BEST_EFFORT)
        if values['input_transport'] == 'compressed':
            self.subscription = self.create_subscription(
                CompressedImage, 'image/compressed', self._on_image, qos)
        else:
            self.subscription = self.create_subscription(Image, 'image', self._on_image, qos)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.diagnostics_timer = self.create_timer(values['diagnostics_period_s'],
                                                   self._publish_diagnostics, clock=self.steady)
        self.pipeline.start()
        self.get_logger().info(f'listening on {self.subscription.topic_name} '
                               f'({values["input_transport"]}, qos {values["qos"]}, depth '
                               f'{values["qos_depth"]})')

    # -- callbacks ------------------------------------------------------------------------------

    def _on_image(self, msg):
        reason = self.pipeline.submit(msg)
        if reason:
            self._warn_throttled(reason, f'refused a frame ({reason}): '
                                         f'{self.pipeline.last_refusal}')

    def _warn_throttled(self, key: str, message: str, period_s: float = 5.0):
        now = time.monotonic()
        if now - self._warned.get(key, -period_s) >= period_s:
            self._warned[key] = now
            self.get_logger().warning(message)

    def _on_failure(self, job, exc):
        self._warn_throttled('inference_failed', f'inference failed for the window ending '
                                                 f'at {job.window.end} ns, skipped: {exc!r}')

    def _on_set_parameters(self, params) -> SetParametersResult:
        for param in params:
            spec = _BY_NAME.get(param.name)
            if spec is None:
                continue
            if spec.read_only:
                return SetParametersResult(successful=False,
                                           reason=f'{param.name} is read-only (restart)')
            reason = spec.check(param.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        for param in params:
            if param.name not in _BY_NAME:
                continue
            self.values[param.name] = param.value
            if param.name == 'stride':
                self.pipeline.buffer.set_stride(param.value)
            elif param.name == 'top_k':
                self.engine.top_k = param.value
            elif param.name == 'score_threshold':
                self.pub_label_info.publish(String(data=json.dumps(
                    results.label_info_dict(self.engine.labels, param.value))))
        return SetParametersResult(successful=True)

    # -- publishing (worker thread) -------------------------------------------------------------

    def _publish(self, job, prediction, latency_ms: float):
        if not self.context.ok():
            return  # shutting down: the publishers are gone
        header = job.header
        values = self.values
        payload = results.classification_dict(prediction, job.window, header.frame_id,
                                              latency_ms, self.seq, values['top_k'])
        self.seq += 1
        self.pub_classification.publish(String(data=json.dumps(payload)))
        self.pub_label.publish(String(data=results.label_text(prediction,
                                                              values['score_threshold'])))
        saliency = np.ascontiguousarray(prediction.spatial_last, dtype='<f4')
        spatial = Image(header=header, height=saliency.shape[0], width=saliency.shape[1],
                        encoding='32FC1', is_bigendian=0, step=saliency.shape[1] * 4)
        spatial.data = saliency.tobytes()
        self.pub_spatial.publish(spatial)
        if values['publish_overlay'] and job.rgb is not None:
            rgb = results.overlay(job.rgb, prediction.spatial_last)
            msg = Image(header=header, height=rgb.shape[0], width=rgb.shape[1],
                        encoding='rgb8', is_bigendian=0, step=rgb.shape[1] * 3)
            msg.data = rgb.tobytes()
            self.pub_overlay.publish(msg)

    def _publish_diagnostics(self):
        snap = self.pipeline.snapshot()
        level, message = health(snap, self.values['failure_error_threshold'])
        status = DiagnosticStatus(name='timesformer: inference', level=bytes([level]),
                                  message=message, hardware_id=str(self.engine.device))
        values = {k: v for k, v in snap.items() if not isinstance(v, dict)}
        values.update({f'refused_{k}': v for k, v in snap['refused_by_reason'].items()})
        values.update({f'resets_{k}': v for k, v in snap['resets_by_reason'].items()})
        values['device'] = str(self.engine.device)
        values['model'] = self.engine.describe()
        if self.engine.device.type == 'cuda':
            values['gpu_memory_mb'] = round(torch.cuda.memory_allocated(self.engine.device)
                                            / 2 ** 20, 1)
        status.values = [KeyValue(key=k, value=f'{v:.3f}' if isinstance(v, float) else str(v))
                         for k, v in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.pub_diagnostics.publish(array)

    def destroy_node(self):
        self.pipeline.stop()
        super().destroy_node()


def main(args=None) -> int:
    logging.basicConfig(level=logging.INFO)
    return run_node(TimeSformerNode, 'timesformer', (StartupError,), args)


if __name__ == '__main__':
    sys.exit(main())
