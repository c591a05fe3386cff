"""What the programs offer, as plain data: parameters and input topics.

A parameter is (name, default, rule, description). No rclpy here: the node adds ROS descriptors to
these (`spin.declare`), and the bag tools, the demo and `--help` read them without starting ROS.

`config/timesformer.yaml` restates the node's defaults for users to copy and edit; a test keeps
the two equal, so the node started without a params file behaves as the shipped config.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from .rates import MAX_FPS, MIN_FPS, rate_problem


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    read_only: bool = True
    low: Optional[float] = None
    high: Optional[float] = None
    choices: tuple = ()
    validate: Optional[Callable[[Any], Optional[str]]] = None   # a rule beyond range/choices

    def check(self, value) -> Optional[str]:
        """Return a reason why `value` is invalid, or None."""
        if self.validate is not None:
            reason = self.validate(value)
            if reason:
                return f'{self.name}: {reason}'
        if self.choices and value not in self.choices:
            return f'{self.name} must be one of {list(self.choices)}, got {value!r}'
        if self.low is not None and not (self.low <= value <= self.high):
            return f'{self.name} must be in [{self.low}, {self.high}], got {value!r}'
        return None

    def rule(self) -> str:
        """Return the rule as users read it.

        The choices or range, and whether it can change at run time.
        """
        parts = []
        if self.choices:
            parts.append('one of ' + '|'.join(self.choices))
        elif self.low is not None:
            parts.append(f'{self.low:g}..{self.high:g}')
        parts.append('read-only' if self.read_only else 'changeable')
        return ', '.join(parts)


@dataclass(frozen=True)
class Topic:
    direction: str     # 'in' or 'out'
    name: str
    type: str
    description: str


CAMERA_NAME = re.compile(r'[A-Za-z][A-Za-z0-9_]*\Z')
# ROS topic names have at most 247 characters (rmw's RMW_TOPIC_MAX_NAME_LENGTH, 255 less 8
# reserved for the middleware's prefixes). A camera's longest topic is
# /NAMESPACE/timesformer/CAMERA/attention/overlay: 200 characters of camera name leave 16 for
# a namespace. The node still checks every topic it creates against the real limit.
MAX_CAMERA_NAME = 200


def camera_problem(names) -> Optional[str]:
    """Return what is wrong with a `cameras` list, or None.

    [''] (the default) is the one unnamed camera; otherwise distinct ROS name tokens.
    """
    names = list(names or [''])
    if names == ['']:
        return None
    bad = [n for n in names if not isinstance(n, str) or not CAMERA_NAME.match(n)]
    if bad:
        return (f'camera names must be ROS name tokens (a letter, then letters, digits or _), '
                f'got {bad!r:.200}')
    long = [n for n in names if len(n) > MAX_CAMERA_NAME]
    if long:
        return (f'camera names must have at most {MAX_CAMERA_NAME} characters (ROS topic '
                f'names have at most 247), got {len(long)} longer: {long[0][:40]}... '
                f'({len(long[0])} characters)')
    if len(set(names)) != len(names):
        return f'camera names must differ, got {names!r:.200}'
    return None


def target_fps_problem(value) -> Optional[str]:
    """Return what is wrong with a `target_fps`: 0 (unset) or a rate in `rates`' range."""
    return None if value == 0 else rate_problem(value)


def camera_names(value) -> list:
    """Return the cameras of a `cameras` value: [''] (one unnamed camera) when empty."""
    return list(value) if value else ['']


# ONNX Runtime's execution providers by the short names of the `providers` parameter.
PROVIDERS = {'tensorrt': 'TensorrtExecutionProvider', 'cuda': 'CUDAExecutionProvider',
             'cpu': 'CPUExecutionProvider'}


def provider_problem(names) -> Optional[str]:
    """Return what is wrong with a `providers` list, or None."""
    names = list(names or [])
    if not names or names == ['']:
        return f'give at least one execution provider, e.g. {list(PROVIDERS)}'
    bad = [n for n in names if n not in PROVIDERS and not
           re.fullmatch(r'[A-Za-z][A-Za-z0-9]*ExecutionProvider', n)]
    if bad:
        return (f'unknown execution providers {bad!r}: use {"/".join(PROVIDERS)} or an ONNX '
                f'Runtime name such as OpenVINOExecutionProvider')
    return None


# The transformations a checkpoint may declare label-safe (`views`), by name.
SYMMETRIES = ('hflip', 'vflip', 'reverse')
# test_time_views by word: the mirrors (hflip, vflip), every symmetry, or the window alone.
VIEWS_WORDS = ('mirrors', 'all', 'none')


def views_problem(value) -> Optional[str]:
    """Return what is wrong with a `test_time_views` value, or None."""
    if not isinstance(value, str):
        return f'must be a string, got {value!r}'[:200]
    if value.strip() in VIEWS_WORDS:
        return None
    names = [n.strip() for n in value.split(',')]
    bad = [n for n in names if n not in SYMMETRIES]
    if bad or len(set(names)) != len(names):
        return (f"must be {', '.join(VIEWS_WORDS)} or a comma list of {'/'.join(SYMMETRIES)} "
                f'(each once), got {value[:80]!r}')
    return None


# Every parameter of the node, in one place. read_only: changing it needs a restart (reload).
PARAMETERS = (
    Param('checkpoint', '', 'Model checkpoint: a timesformer_ros .json/.safetensors, an '
          'official .pyth, a Hugging Face directory, or preset:NAME for random weights. Empty: '
          'the embedded motion model.'),
    Param('labels', '', 'Optional labels file (one per line, or JSON) replacing the '
          "checkpoint's labels."),
    Param('device', 'auto', 'Inference device: auto (cuda when available), cpu, cuda, cuda:N. '
          'For an .onnx checkpoint: cpu keeps only the CPU provider, cuda:N picks the GPU.'),
    Param('dtype', 'auto', 'auto (bfloat16 on a GPU, float32 on the CPU), float32, bfloat16 or '
          'float16.', choices=('auto', 'float32', 'bfloat16', 'float16')),
    Param('compile', False, 'torch.compile the model (CUDA graphs on a GPU); slower start.'),
    Param('test_time_views', 'mirrors', 'Also score copies of each window that the checkpoint '
          'declares label-safe (its symmetries: the embedded model declares hflip, vflip and '
          'reverse) and average them: mirrors (every combination of hflip and vflip: the window '
          'and 3 copies, the copies one batch), all (with reverse too: 7 copies; a reversed '
          'copy of a window across a change reads the older motion, so onsets come later), none '
          '(the window alone) or a comma list such as hflip,reverse (each named must be '
          'declared). With mirrors or all, a checkpoint declaring none runs the window alone.',
          validate=views_problem),
    Param('providers', ['tensorrt', 'cuda', 'cpu'], 'ONNX Runtime execution providers for an '
          '.onnx checkpoint, in order of preference: tensorrt, cuda, cpu or a full ONNX Runtime '
          'name (OpenVINOExecutionProvider). Those this onnxruntime lacks are left out; the '
          'choice is logged at start.', validate=provider_problem),
    Param('trt_cache_dir', '', 'TensorRT engine cache (.onnx checkpoints): engines are kept in '
          "a subdirectory named by the file's SHA-256, the TensorRT version, fp16 and "
          'max_batch, so a changed file or TensorRT builds a new one. Empty: '
          '~/.cache/timesformer_ros/tensorrt.'),
    Param('fp16', False, 'Build the TensorRT engine in FP16 (.onnx checkpoints; LayerNorm stays '
          'FP32 as one LayerNormalization). The CUDA and CPU providers run float32.'),
    Param('stride', 1, 'Run once every `stride` newly sampled frames.', read_only=False,
          low=1, high=1000),
    Param('sample_every', 0, 'Sample every k-th frame (ignored when target_fps > 0). 0 '
          "with target_fps 0: the checkpoint's clip rate.", low=0, high=1000),
    Param('target_fps', 0.0, 'Sample frames at this rate by header stamps. 0 with '
          "sample_every 0: the checkpoint's clip rate (the rate its clips were trained at; "
          f'every frame when it records none); else {MIN_FPS:g}..{MAX_FPS:g}.', low=0.0,
          high=MAX_FPS, validate=target_fps_problem),
    Param('max_gap_s', 0.5, 'A stamp gap longer than this, a stamp going backwards, or a '
          'change of size, encoding or frame_id restarts the window.', low=0.001,
          high=3600.0),
    Param('top_k', 5, 'Number of results in ~/classification.', read_only=False, low=1,
          high=1000),
    Param('score_threshold', 0.0, "~/label says 'unknown' when the active action's smoothed "
          'score is below this; reported on ~/label_info.', read_only=False, low=0.0,
          high=1.0),
    Param('cameras', [''], "The cameras this node serves with one model: [''] (the default) is "
          'one unnamed camera on image, publishing ~/label etc.; names [a, b] subscribe to '
          'a/image, b/image (remappable) and publish ~/a/label, ~/b/label etc.',
          validate=camera_problem),
    Param('max_batch', 8, 'At most this many cameras\' windows run as one batch (the worker '
          'takes the waiting window of every camera, longest waiting first).', low=1,
          high=256),
    Param('input_transport', 'raw', 'raw: subscribe to image; compressed: image/compressed.',
          choices=('raw', 'compressed')),
    Param('qos', 'sensor_data', 'Input QoS: sensor_data (best effort) or reliable.',
          choices=('sensor_data', 'reliable')),
    Param('qos_depth', 10, 'Input history depth (KEEP_LAST). With reliable QoS a deeper '
          'history rides out scheduling hiccups at high frame rates instead of losing frames '
          'inside DDS.', low=1, high=100000),
    Param('publish_overlay', False, 'Also publish ~/attention/overlay (rgb8).',
          read_only=False),
    Param('smoothing', 'none', 'Temporal smoothing of the window scores before the action '
          'decoding: none, ema (time constant ema_tau_s of stamp time) or vote (share of top-1 '
          'over the last vote_windows windows).', read_only=False,
          choices=('none', 'ema', 'vote')),
    Param('ema_tau_s', 0.3, 'Time constant of the ema smoothing, seconds of stamp time.',
          read_only=False, low=0.01, high=60.0),
    Param('vote_windows', 5, 'Windows in the vote smoothing.', read_only=False, low=1,
          high=1000),
    Param('enter_threshold', 0.6, 'An action becomes active when its smoothed score stays at '
          'or above this for min_duration_s.', read_only=False, low=0.0, high=1.0),
    Param('exit_threshold', 0.4, 'An active action ends when its smoothed score stays below '
          'this for min_gap_s (<= enter_threshold).', read_only=False, low=0.0, high=1.0),
    Param('min_duration_s', 0.25, 'Stamp time an action must hold enter_threshold before it '
          'starts.', read_only=False, low=0.0, high=3600.0),
    Param('min_gap_s', 0.65, 'Stamp time below exit_threshold that ends an action; shorter '
          'dips join.', read_only=False, low=0.0, high=3600.0),
    Param('input_timeout_s', 5.0, 'Input watchdog: diagnostics turn WARN, naming the input '
          'topic, and active actions end, when no frame has arrived for this long (steady '
          'clock; 0 disables).',
          read_only=False, low=0.0, high=3600.0),
    Param('expected_rate_hz', 0.0, 'The rate the camera should deliver; diagnostics turn WARN '
          'when frames arrive at less than half of it (0: not checked).', read_only=False,
          low=0.0, high=10000.0),
    Param('diagnostics_period_s', 1.0, 'Period of /diagnostics (steady clock).', low=0.05,
          high=60.0),
    Param('failure_error_threshold', 3, 'Consecutive failed inferences that turn diagnostics '
          'to ERROR.', low=1, high=1000),
)
BY_NAME = {p.name: p for p in PARAMETERS}

# The per-camera settings: with named cameras, `cameras.<name>.<parameter>` overrides one of
# these for that camera alone (same type and rule as the global parameter, read-only where it
# is); a camera without an override follows the global value, also when it changes at run time.
PER_CAMERA = ('stride', 'sample_every', 'target_fps', 'max_gap_s', 'top_k', 'score_threshold',
              'input_transport', 'qos', 'qos_depth', 'publish_overlay', 'smoothing',
              'ema_tau_s', 'vote_windows', 'enter_threshold', 'exit_threshold',
              'min_duration_s', 'min_gap_s', 'input_timeout_s', 'expected_rate_hz')
_OVERRIDE = re.compile(r'cameras\.([A-Za-z][A-Za-z0-9_]*)\.([a-z_]+)\Z')


def override_param(camera: str, name: str) -> Param:
    """Return the Param of camera `camera`'s override of the global parameter `name`."""
    return replace(BY_NAME[name], name=f'cameras.{camera}.{name}')


def split_override(name: str) -> Optional[tuple]:
    """Return (camera, parameter) of a per-camera override's name, None for any other name."""
    match = _OVERRIDE.match(name)
    if match is None or match.group(2) not in PER_CAMERA:
        return None
    return match.group(1), match.group(2)


# The node's inputs and its diagnostics; its outputs are `outputs.OUTPUTS` (`node.TOPICS` is
# the whole table).
INPUT_TOPICS = (
    Topic('in', 'image', 'sensor_msgs/Image', 'camera frames (input_transport raw); remap it'),
    Topic('in', 'image/compressed', 'sensor_msgs/CompressedImage',
          'instead, with input_transport compressed'),
    Topic('in', 'CAMERA/image', 'sensor_msgs/Image',
          'with cameras [CAMERA, ...]: each camera\'s frames (or CAMERA/image/compressed); '
          'its outputs are ~/CAMERA/label etc.'),
)
# The name of the node's status on /diagnostics: one per camera (the unnamed camera's is
# DIAGNOSTIC_NAME), and one for the engine that serves them all.
DIAGNOSTIC_NAME = 'timesformer: inference'
ENGINE_DIAGNOSTIC_NAME = 'timesformer: engine'


def diagnostic_name(camera: str) -> str:
    """Return the name of a camera's status on /diagnostics."""
    return f'{DIAGNOSTIC_NAME} {camera}' if camera else DIAGNOSTIC_NAME


DIAGNOSTICS_TOPIC = Topic('out', '/diagnostics', 'diagnostic_msgs/DiagnosticArray',
                          'rates, latency, counters, input watchdog; one status per camera '
                          'and one for the engine')


def defaults(params: Sequence[Param] = PARAMETERS) -> dict:
    return {p.name: p.default for p in params}


def read_params_file(path: Optional[Path], node_name: str = 'timesformer') -> dict:
    """Return the parameters a ROS 2 parameters file gives `node_name`, over the defaults.

    The file's parameters under `/**` or the node's name go over the declared defaults (all of them
    without a file).
    """
    import yaml      # here: the engine and the benchmarks import this module without PyYAML
    values = defaults()
    if not path:
        return values
    data = yaml.safe_load(Path(path).read_text()) or {}
    for key in ('/**', node_name, '/' + node_name):
        values.update((data.get(key) or {}).get('ros__parameters', {}))
    return values


def help_text(prog: str, summary: str, params: Sequence[Param],
              topics: Sequence[Topic]) -> str:
    """Usage, parameters and topics of a ROS program, for `--help`."""
    lines = [f'usage: {prog} [-h] [--ros-args -p NAME:=VALUE ... --params-file FILE '
             f'-r FROM:=TO ...]', '', summary.strip(), '', 'parameters (default; rule):']
    for p in params:
        lines.append(f'  {p.name} = {p.default!r}  ({p.rule()})')
        lines.append(f'      {p.description}')
    if params is PARAMETERS:
        lines += ['', 'per-camera overrides (with cameras [CAMERA, ...]; same rules as the global '
                  'parameter, unset: the global value):']
        lines += textwrap.wrap(', '.join(f'cameras.CAMERA.{n}' for n in PER_CAMERA), 95,
                               initial_indent='  ', subsequent_indent='  ')
    lines += ['', 'topics (relative names can be remapped; ~ is the node\'s namespace):']
    width = max(len(t.name) for t in topics)
    for t in topics:
        lines.append(f'  {t.direction:<3} {t.name:<{width}}  {t.type}: {t.description}')
    return '\n'.join(lines) + '\n'
