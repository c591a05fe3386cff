"""The second backend: an exported `.onnx` file (`timesformer_export`) on ONNX Runtime.

An `.onnx` file written by `timesformer_export` is a checkpoint on its own: one input `video`
(B, T, 3, S, S) float32 with a dynamic batch, three outputs `logits` (B, classes), `spatial`
(B, T, S/p, S/p) and `temporal` (B, T), the attention summaries as `engine.Engine` computes them,
and in its metadata (key `timesformer_ros`, JSON) what the node needs to feed it and name its
outputs: the config, labels, mean/std, clip rate, the source checkpoint and its SHA-256.

`OnnxEngine` has the interface of `engine.Engine` (`infer`, `infer_tensor`, `warm_up`,
`describe`, `labels`, `preprocessor`, and the `clip_fps` and `num_frames` of a
`clips.ClipRate`) and ends in the same `predictions.predictions`, so the node, `timesformer_bag
evaluate` and the fleet run it through the same code as a PyTorch checkpoint.

The file is untrusted input, checked by `check_onnx` before any runtime sees it: its size, the
protobuf, the opset, the input and outputs the node needs (names, element types, ranks, the
sizes the metadata states), the metadata (by the checks `checkpoints` applies to every format)
and every tensor stored outside it (external data only in files inside the file's own
directory, no absolute paths, no `..`, within those files' sizes). Every problem is a
`CheckpointError` of one line naming the file.

onnx and onnxruntime are imported only here and only for an `.onnx` file (requirements/onnx.txt):
without them everything else runs, and an `.onnx` checkpoint is an `EngineError` of one line.
"""

from __future__ import annotations

import ctypes.util
import dataclasses
import importlib
import json
import logging
import os
import re
import stat
import time
from importlib import metadata as distributions
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Optional, Sequence

import torch

from .checkpoints import (
    MAX_PARAMETERS, CheckpointError, check_clip_fps, check_labels, check_normalisation,
    config_from_values, read_labels)
from .digests import digest_of
from .predictions import ClipInference, EngineError, predictions
from .errors import brief
from .frames import Preprocessor
from .interface import PROVIDERS, provider_problem
from .locate import motion_boxes
from .model import TimeSformerConfig
from .views import KEY as SYMMETRIES_KEY, check_symmetries, combine, select

LOGGER = logging.getLogger(__name__)

METADATA_KEY = 'timesformer_ros'
FORMAT = 'timesformer_ros-onnx'
FORMAT_VERSION = 1
OPSET = 18                  # >= 17: LayerNorm is one LayerNormalization (TensorRT FP16 keeps it)
MIN_OPSET = 17
INPUT = 'video'
OUTPUTS = ('logits', 'spatial', 'temporal')
# A protobuf cannot exceed 2 GiB; larger models keep their weights in external data files,
# at most a float32 model of MAX_PARAMETERS.
MAX_ONNX_BYTES = 2 ** 31 - 1
MAX_EXTERNAL_BYTES = 4 * MAX_PARAMETERS
MAX_METADATA_BYTES = 32 * 2 ** 20
_FLOAT = 1                  # onnx.TensorProto.FLOAT
_EXTERNAL = 1               # onnx.TensorProto.EXTERNAL

DEFAULT_PROVIDERS = tuple(PROVIDERS)           # tensorrt, cuda, cpu
REQUIREMENTS = 'pip install -r requirements/onnx.txt'


def runtime(module: str, path: object = 'an .onnx checkpoint'):
    """Import onnx or onnxruntime, or raise an EngineError of one line saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EngineError(f'{path}: running an .onnx checkpoint needs {module}, which cannot be '
                          f'imported here ({exc}); {REQUIREMENTS}') from None


# -- the metadata: written by timesformer_export, read back here ------------------------------

@dataclasses.dataclass(frozen=True)
class OnnxCheckpoint:
    """What an `.onnx` file describes, checked: the engine's `checkpoint`."""

    config: TimeSformerConfig
    labels: list
    mean: tuple
    std: tuple
    clip_fps: Optional[float]
    source: str
    source_sha256: str
    path: str
    files: tuple            # the file and its external data files, for the cache key
    symmetries: dict = dataclasses.field(default_factory=dict)     # `views`

    def sha256(self) -> str:
        """SHA-256 of the file and its external data (the TensorRT cache key)."""
        return digest_of(self.files)


def metadata(config: TimeSformerConfig, labels: Sequence[str], mean: Sequence[float],
             std: Sequence[float], clip_fps: Optional[float], source: str,
             source_sha256: str, symmetries: Optional[dict] = None) -> dict:
    """Return the ONNX metadata_props of an exported model ({key: text})."""
    return {METADATA_KEY: json.dumps({
        'format': FORMAT, 'version': FORMAT_VERSION, 'config': config.to_dict(),
        'labels': list(labels), 'mean': list(mean), 'std': list(std), 'clip_fps': clip_fps,
        'source': source, 'source_sha256': source_sha256,
        **({SYMMETRIES_KEY: symmetries} if symmetries else {})})}


def _about(path: Path, what: str, exc: Optional[CheckpointError] = None) -> CheckpointError:
    return CheckpointError(f'{path}: {what}' + (f': {exc}' if exc else ''))


def _metadata(props: dict, path: Path) -> dict:
    if METADATA_KEY not in props:
        raise _about(path, f'no {METADATA_KEY!r} metadata (the config, labels, mean/std and '
                           f'clip rate the node needs): export it with timesformer_export')
    text = props[METADATA_KEY]
    if len(text) > MAX_METADATA_BYTES:
        raise _about(path, f'the {METADATA_KEY} metadata has {len(text)} bytes, more than the '
                           f'{MAX_METADATA_BYTES} allowed')
    try:
        meta = json.loads(text)
    except RecursionError:
        raise _about(path, f'the {METADATA_KEY} metadata is not readable JSON: nested too '
                           f'deeply') from None
    except ValueError as exc:
        raise _about(path, f'the {METADATA_KEY} metadata is not readable JSON: '
                           f'{brief(exc, with_type=False)}') from None
    if not isinstance(meta, dict) or meta.get('format') != FORMAT:
        raise _about(path, f'the {METADATA_KEY} metadata is not a {FORMAT} description')
    if meta.get('version') != FORMAT_VERSION:
        raise _about(path, f'{FORMAT} version {meta.get("version")!r} is not readable here '
                           f'(this package reads version {FORMAT_VERSION})')
    return meta


def describe_metadata(meta: dict, path: Path, files: tuple,
                      labels: Optional[Sequence[str]] = None) -> OnnxCheckpoint:
    """Check the metadata as `checkpoints` checks every format; `labels` replaces its labels."""
    origin = f'{path} (metadata)'
    if 'config' not in meta:
        raise _about(path, 'the metadata has no config')
    try:
        config = config_from_values(meta['config'])
    except CheckpointError as exc:
        raise _about(path, 'metadata', exc) from None
    labels = check_labels(meta.get('labels') if labels is None else labels, config.num_classes,
                          origin if labels is None else 'labels')
    mean, std = check_normalisation(meta.get('mean'), meta.get('std'), config.in_chans, origin)
    clip_fps = meta.get('clip_fps')
    if clip_fps is not None:
        clip_fps = check_clip_fps(clip_fps, origin)
    source, sha = meta.get('source', ''), meta.get('source_sha256', '')
    if not isinstance(source, str):
        raise _about(path, f'metadata source must be a string, got {type(source).__name__}')
    if not isinstance(sha, str) or not re.fullmatch(r'[0-9a-f]{64}', sha):
        raise _about(path, 'metadata source_sha256 must be 64 hexadecimal digits')
    symmetries = check_symmetries(meta.get(SYMMETRIES_KEY), config.num_classes, origin)
    return OnnxCheckpoint(config, labels, mean, std, clip_fps, source, sha, str(path), files,
                          symmetries)


# -- the file: size, protobuf, graph, external data ----------------------------------------------

def _tensors(graph) -> list:
    """Every TensorProto of a graph and its subgraphs (initializers and attribute tensors)."""
    found = list(graph.initializer)
    for sparse in graph.sparse_initializer:
        found += [sparse.values, sparse.indices]
    for node in graph.node:
        found += _attribute_tensors(node)
    return found


def _attribute_tensors(node) -> list:
    found = []
    for attribute in node.attribute:
        if attribute.HasField('t'):
            found.append(attribute.t)
        found += list(attribute.tensors)
        if attribute.HasField('sparse_tensor'):
            found += [attribute.sparse_tensor.values, attribute.sparse_tensor.indices]
        if attribute.HasField('g'):
            found += _tensors(attribute.g)
        for graph in attribute.graphs:
            found += _tensors(graph)
    return found


def _external_file(location: str, directory: Path, path: Path) -> Path:
    """Return the external data file `location` names, if it lies inside `directory`."""
    posix, windows = PurePosixPath(location), PureWindowsPath(location)
    if (not location or '\0' in location or posix.is_absolute() or windows.is_absolute()
            or windows.drive or '..' in posix.parts or '..' in windows.parts):
        raise _about(path, f'external data must be a relative path inside its directory, '
                           f'without "..": got {location[:200]!r}')
    file = directory / location
    try:
        resolved, status = file.resolve(), file.stat()
    except OSError as exc:
        raise _about(path, f'external data {location[:200]!r} cannot be read: '
                           f'{exc.strerror or exc}') from None
    if resolved.parent != directory.resolve() and directory.resolve() not in resolved.parents:
        raise _about(path, f'external data {location[:200]!r} leads outside its directory '
                           f'(to {resolved})')
    if not stat.S_ISREG(status.st_mode):
        raise _about(path, f'external data {location[:200]!r} is not a regular file')
    return file


def _check_external(model, path: Path) -> tuple:
    """Check every tensor stored outside the file; return the files they are in."""
    tensors = _tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            tensors += _attribute_tensors(node)
    files, total = {}, 0
    for tensor in tensors:
        if tensor.data_location != _EXTERNAL:
            continue
        entries = {entry.key: entry.value for entry in tensor.external_data}
        file = _external_file(entries.get('location', ''), path.parent, path)
        size = files.setdefault(file, file.stat().st_size)
        try:
            offset, length = int(entries.get('offset', 0)), int(entries.get('length', -1))
        except ValueError:
            raise _about(path, f'external data of {tensor.name[:100]!r} has a non-numeric '
                               f'offset or length') from None
        if length < 0:
            length = size - offset
        if offset < 0 or offset + length > size:
            raise _about(path, f'external data of {tensor.name[:100]!r} lies beyond the end of '
                               f'{file.name} ({offset} + {length} > {size} bytes)')
        total += length
        if total > MAX_EXTERNAL_BYTES:
            raise _about(path, f'external data of more than {MAX_EXTERNAL_BYTES} bytes (a '
                               f'float32 model of {MAX_PARAMETERS:,} parameters)')
    return tuple(files)


def _value_info(values, path: Path, what: str) -> dict:
    out = {}
    for value in values:
        kind = value.type.WhichOneof('value')
        if kind != 'tensor_type':
            raise _about(path, f'{what} {value.name[:100]!r} is not a tensor ({kind})')
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField('dim_value') else None for d in tensor.shape.dim] \
            if tensor.HasField('shape') else None
        out[value.name] = (tensor.elem_type, dims)
    return out


def _check_graph(model, config: TimeSformerConfig, path: Path):
    """Check the input and outputs the node needs: names, float32, ranks, the metadata's sizes."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = _value_info([v for v in model.graph.input if v.name not in initializers], path,
                         'input')
    if list(inputs) != [INPUT]:
        raise _about(path, f'the model must take one input {INPUT!r}, it takes '
                           f'{sorted(inputs)[:8]}')
    grid = config.grid_size
    wanted = {INPUT: [None, config.num_frames, config.in_chans, config.img_size,
                      config.img_size],
              'logits': [None, config.num_classes], 'spatial': [None, config.num_frames, grid,
                                                                grid],
              'temporal': [None, config.num_frames]}
    outputs = _value_info(model.graph.output, path, 'output')
    missing = [name for name in OUTPUTS if name not in outputs]
    if missing:
        raise _about(path, f'the model lacks the outputs {missing} (it has '
                           f'{sorted(outputs)[:8]}): export it with timesformer_export')
    for name, (elem_type, dims) in {**inputs, **{k: outputs[k] for k in OUTPUTS}}.items():
        expected = wanted[name]
        if elem_type != _FLOAT:
            raise _about(path, f'{name} must be float32 (ONNX element type 1), it is element '
                               f'type {elem_type}')
        if dims is None or len(dims) != len(expected):
            raise _about(path, f'{name} must have rank {len(expected)}, it has '
                               f'{"no shape" if dims is None else f"rank {len(dims)}"}')
        for axis, (got, want) in enumerate(zip(dims, expected)):
            if want is not None and got not in (None, 0, want):
                raise _about(path, f'{name} has size {got} on axis {axis} where the metadata '
                                   f'says {want} (shape {dims})')


def check_onnx(path, labels: Optional[Sequence[str]] = None) -> OnnxCheckpoint:
    """Check an untrusted `.onnx` file before anything runs it; return what it describes.

    Raises `CheckpointError` (one line naming the file) for every problem, `EngineError` when
    onnx is not installed.
    """
    onnx = runtime('onnx', path)
    path = Path(path)
    try:
        status = path.stat()
    except OSError as exc:
        raise CheckpointError(f'checkpoint not found: {path}' if isinstance(
            exc, FileNotFoundError) else f'{path}: cannot be read: {exc.strerror or exc}') \
            from None
    if not stat.S_ISREG(status.st_mode):
        raise _about(path, 'not a regular file')
    if status.st_size > MAX_ONNX_BYTES:
        raise _about(path, f'{status.st_size} bytes, more than an ONNX protobuf can hold '
                           f'({MAX_ONNX_BYTES}); larger models keep weights in external data')
    try:
        with open(path, 'rb') as handle:
            data = handle.read(MAX_ONNX_BYTES + 1)
        model = onnx.load_model_from_string(data)
    except OSError as exc:
        raise _about(path, f'cannot be read: {exc.strerror or exc}') from None
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for garbage
        raise _about(path, f'not a readable ONNX file (truncated, corrupt or a foreign file?): '
                           f'{type(exc).__name__}') from None
    props = {}
    for prop in model.metadata_props:
        props[prop.key] = prop.value
    meta = _metadata(props, path)
    described = describe_metadata(meta, path, (), labels)
    opsets = {entry.domain: entry.version for entry in model.opset_import}
    opset = opsets.get('', opsets.get('ai.onnx'))
    if opset is None or opset < MIN_OPSET:
        raise _about(path, f'opset {opset} is below {MIN_OPSET} (LayerNorm must be one '
                           f'LayerNormalization): export it again with timesformer_export')
    _check_graph(model, described.config, path)
    files = (path, *_check_external(model, path))
    return dataclasses.replace(described, files=files)


# -- execution providers -------------------------------------------------------------------------

def tensorrt_version() -> str:
    """Return the version of the TensorRT that ONNX Runtime would load ('none' without one)."""
    for name in ('tensorrt', 'tensorrt-libs', 'tensorrt-cu13-libs', 'tensorrt-cu12-libs',
                 'tensorrt_cu13_libs', 'tensorrt_cu12_libs'):
        try:
            return distributions.version(name)
        except distributions.PackageNotFoundError:
            continue
    library = ctypes.util.find_library('nvinfer')       # e.g. libnvinfer.so.10
    return library.rsplit('.so.', 1)[-1] if library and '.so.' in library else 'none'


def trt_cache_directory(root: str, checkpoint: OnnxCheckpoint, fp16: bool,
                        max_batch: int) -> Path:
    """Return where the TensorRT engines of this file, TensorRT and precision are cached.

    Keyed on the file's SHA-256 (and its external data's), the TensorRT version, the precision
    and the largest batch of the optimisation profile: any change builds a new engine instead
    of loading a stale one.
    """
    base = Path(root).expanduser() if root else \
        Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'timesformer_ros' / \
        'tensorrt'
    version = re.sub(r'[^A-Za-z0-9.]', '_', tensorrt_version())
    key = (f'{checkpoint.sha256()[:24]}-trt{version}-{"fp16" if fp16 else "fp32"}-'
           f'b{max_batch}')
    return base / key


def resolve_providers(names: Sequence[str], available: Sequence[str]) -> list:
    """Return the ONNX Runtime names of `names` that `available` has, in order, or raise."""
    problem = provider_problem(names)
    if problem:
        raise EngineError(f'providers: {problem}')
    chosen = [PROVIDERS.get(name, name) for name in names]
    chosen = [name for i, name in enumerate(chosen) if name in available and
              name not in chosen[:i]]
    if not chosen:
        raise EngineError(f'providers {list(names)}: none is available in this onnxruntime '
                          f'(it has {list(available)})')
    return chosen


class OnnxEngine(ClipInference):
    """Runs an exported `.onnx` file on ONNX Runtime, behind the interface of `engine.Engine`.

    Clips are preprocessed on the CPU in float32 (`device` is where the inputs are made; the
    providers decide where the model runs, see `describe`).
    """

    def __init__(self, path, providers: Sequence[str] = DEFAULT_PROVIDERS,
                 trt_cache_dir: str = '', fp16: bool = False, labels=None,
                 warmup: bool = True, max_batch: int = 8, threads: int = 0, device_id: int = 0,
                 logger=LOGGER, views: str = 'mirrors'):
        ort = runtime('onnxruntime', path)
        self.checkpoint = check_onnx(path, labels)
        self.path = Path(path)
        self.config = self.checkpoint.config
        self.labels = list(self.checkpoint.labels)
        self.views = select(views, self.checkpoint.symmetries, str(path))
        self.device = torch.device('cpu')
        self.dtype = torch.float32
        self.compiled = False
        self.fp16 = fp16
        self.max_batch = max(1, max_batch)
        self.device_id = device_id
        self.providers = resolve_providers(providers, ort.get_available_providers())
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        self.trt_cache: Optional[Path] = None
        session_providers = [(name, self._provider_options(name, trt_cache_dir))
                             for name in self.providers]
        logger.info(f'{self.path}: ONNX Runtime {ort.__version__}, providers '
                    f'{self.providers} (of {ort.get_available_providers()})'
                    + (f', TensorRT engine cache {self.trt_cache}' if self.trt_cache else ''))
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=session_providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
            raise CheckpointError(f'{self.path}: ONNX Runtime cannot load it: '
                                  f'{brief(exc, limit=500)}') from None
        self.running = self.session.get_providers()
        if self.running != self.providers:
            logger.warning(f'{self.path}: ONNX Runtime runs on {self.running}, not all of '
                           f'{self.providers} (a provider failed to start; its log says why)')
        self.preprocessor = Preprocessor(self.config.img_size, self.checkpoint.mean,
                                         self.checkpoint.std, self.device, self.dtype)
        if warmup:
            self.warm_up(self.max_batch)

    @classmethod
    def from_values(cls, values: dict, max_batch: int = 1, logger=LOGGER) -> 'OnnxEngine':
        """Build the engine of the node's parameters (`engine.engine_from_values`).

        `device` cpu keeps only the CPU provider; cuda:N runs the GPU providers on GPU N.
        """
        for name, default in (('dtype', 'auto'), ('compile', False)):
            if values.get(name, default) != default:
                logger.warning(f'{name} {values[name]!r} applies to PyTorch checkpoints only: '
                               f'an .onnx checkpoint runs in float32 (FP16 on TensorRT with '
                               f'fp16)')
        providers = list(values.get('providers', DEFAULT_PROVIDERS))
        device = values.get('device', 'auto')
        if device == 'cpu':
            providers = ['cpu']
        elif not re.fullmatch(r'auto|cuda(:\d+)?', device):
            raise EngineError(f'unknown device {device!r} (use auto, cpu, cuda or cuda:N)')
        labels = read_labels(values['labels']) if values.get('labels') else None
        return cls(values['checkpoint'], providers=providers,
                   trt_cache_dir=values.get('trt_cache_dir', ''),
                   fp16=values.get('fp16', False), labels=labels, max_batch=max_batch,
                   device_id=int(device.split(':')[1]) if ':' in device else 0, logger=logger,
                   views=values.get('test_time_views', 'mirrors'))

    def _provider_options(self, name: str, cache_root: str) -> dict:
        if name == PROVIDERS['tensorrt']:
            self.trt_cache = trt_cache_directory(cache_root, self.checkpoint, self.fp16,
                                                 self.max_batch)
            try:
                self.trt_cache.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise EngineError(f'trt_cache_dir: cannot create {self.trt_cache}: '
                                  f'{exc.strerror or exc}') from None
            cfg = self.config
            clip = f'{cfg.num_frames}x{cfg.in_chans}x{cfg.img_size}x{cfg.img_size}'
            return {'device_id': self.device_id, 'trt_fp16_enable': self.fp16,
                    'trt_engine_cache_enable': True,
                    'trt_engine_cache_path': str(self.trt_cache),
                    'trt_timing_cache_enable': True,
                    'trt_timing_cache_path': str(self.trt_cache),
                    'trt_profile_min_shapes': f'{INPUT}:1x{clip}',
                    'trt_profile_opt_shapes': f'{INPUT}:{self.max_batch}x{clip}',
                    'trt_profile_max_shapes': f'{INPUT}:{self.max_batch}x{clip}'}
        if name == PROVIDERS['cuda']:
            return {'device_id': self.device_id}
        return {}

    @property
    def num_frames(self) -> int:
        return self.config.num_frames

    @property
    def clip_fps(self) -> Optional[float]:
        return self.checkpoint.clip_fps

    def warm_up(self, max_batch: int = 1):
        """Run dummy clips once (TensorRT builds or loads its engine here)."""
        cfg = self.config
        for batch in sorted({1, max_batch}):
            self.infer_tensor(torch.zeros(batch, cfg.num_frames, cfg.in_chans, cfg.img_size,
                                          cfg.img_size))

    def infer_tensor(self, video: torch.Tensor, with_attention: bool = True,
                     thumbs: Optional[list] = None) -> list:
        """Predictions for a (B, T, C, S, S) tensor of preprocessed frames.

        With attention, each window gets the `motion` region (`locate.motion_boxes`) from the
        last block's map the file returns and `thumbs`, the windows' whole frames in gray
        (`Engine.infer_tensor`); a localisation head is not exported, so it is never `head`.
        """
        started = time.perf_counter()
        feed = {INPUT: video.detach().to('cpu', torch.float32).contiguous().numpy()}
        names = list(OUTPUTS) if with_attention else ['logits']
        outputs = [torch.from_numpy(out) for out in self.session.run(names, feed)]
        spatial, temporal, regions = None, None, None
        if with_attention:
            spatial, temporal = outputs[1], outputs[2]
            boxes, confidences = motion_boxes(spatial[:, -1], video, thumbs)
            regions = (boxes / video.shape[-1], confidences, 'motion')
        logits = combine(self._logits, video, outputs[0], self.views)
        return predictions(logits, spatial, temporal, self.labels, started, regions)

    def _logits(self, video: torch.Tensor) -> torch.Tensor:
        """Return the file's logits of a batch of any size, run `max_batch` windows at a time."""
        video = video.detach().to('cpu', torch.float32)
        return torch.cat([torch.from_numpy(self.session.run(['logits'], {
            INPUT: video[i:i + self.max_batch].contiguous().numpy()})[0])
            for i in range(0, len(video), self.max_batch)])

    def describe(self) -> str:
        cfg = self.config
        short = {v: k for k, v in PROVIDERS.items()}
        running = '+'.join(short.get(p, p) for p in self.running)
        precision = 'fp16' if self.fp16 and PROVIDERS['tensorrt'] in self.running else 'float32'
        return (f'{cfg.attention_type} {cfg.num_frames}x{cfg.img_size} '
                f'({cfg.depth} blocks, dim {cfg.embed_dim}, {len(self.labels)} classes) on '
                f'onnxruntime {running} in {precision}'
                f'{f", {1 + len(self.views)} test-time views" if self.views else ""}')
