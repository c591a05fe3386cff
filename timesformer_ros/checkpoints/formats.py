"""The formats: detecting, reading (official, Hugging Face, own) and writing checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from ..errors import brief
from ..model import TimeSformer
from .base import (
    FORMAT_NAME, FORMAT_VERSION, MAX_TENSORS, OFFICIAL_MEAN, OFFICIAL_STD, _SAFETENSORS_DTYPES,
    Checkpoint, CheckpointContents, CheckpointError, PathLike, _about, check_clip_fps,
    clip_fps_from_name, _listing, _read_json, _show)
from .config import (
    config_from_hf, config_from_state_dict, config_from_values, _expected_state,
    hf_to_official, _number, strip_prefixes)
from .labels import (
    check_labels, _check_names, check_normalisation, default_labels, labels_from_id2label,
    _normalisation, read_labels)
from .weights import build_model, check_finite, check_fit, resize_embeddings


def _own_json_path(path: Path) -> Optional[Path]:
    if path.suffix == '.json':
        return path
    if path.suffix == '.safetensors' and path.with_suffix('.json').is_file():
        return path.with_suffix('.json')
    return None


def detect_format(path: PathLike) -> str:
    """Return the format of an existing path: 'official', 'huggingface' or 'timesformer_ros'."""
    path = Path(path)
    try:
        exists, is_dir, is_file = path.exists(), path.is_dir(), path.is_file()
    except OSError as exc:
        raise CheckpointError(f'{path}: cannot be read: {exc.strerror or exc}') from None
    if not exists:
        raise CheckpointError(f'checkpoint not found: {path}')
    if is_dir:
        if (path / 'config.json').is_file():
            return 'huggingface'
        raise CheckpointError(
            f'{path} is a directory without config.json (not a Hugging Face model directory)')
    if not is_file:
        raise CheckpointError(f'{path}: not a regular file')
    if _own_json_path(path) is not None:
        return FORMAT_NAME
    if path.suffix == '.safetensors':
        raise CheckpointError(
            f'{path} has no {path.with_suffix(".json").name} beside it: a timesformer_ros '
            f'checkpoint is NAME.safetensors plus NAME.json')
    return 'official'


def _torch_load(path: Path) -> object:
    """Load a torch file memory-mapped (nothing is read until used) where its format allows."""
    try:
        try:
            return torch.load(path, map_location='cpu', weights_only=True, mmap=True)
        except RuntimeError as exc:
            if 'mmap' not in str(exc):
                raise
            # Files from torch.save(..., _use_new_zipfile_serialization=False) cannot be mapped.
            return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling garbage raises any exception type
        raise CheckpointError(
            f'{path}: not a readable PyTorch checkpoint (truncated, corrupt or a foreign '
            f'file?): {brief(exc, with_type=False)}') from None


def _safetensors_errors() -> tuple:
    from safetensors import SafetensorError
    return SafetensorError, OSError, ValueError, RuntimeError


def _safetensors_header(path: Path) -> dict:
    """Return the tensors of a safetensors file as meta tensors: names, shapes, dtypes, no data."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework='pt') as file:
            names = list(file.keys())
            if len(names) > MAX_TENSORS:
                raise CheckpointError(f'{path}: {len(names)} tensors, more than a TimeSformer '
                                      f'has (limit {MAX_TENSORS})')
            header = {name: (file.get_slice(name).get_shape(), file.get_slice(name).get_dtype())
                      for name in names}
    except _safetensors_errors() as exc:
        raise CheckpointError(
            f'{path}: not a readable safetensors file (truncated or corrupt?): '
            f'{brief(exc, with_type=False)}') from None
    state = {}
    for name, (shape, dtype) in header.items():
        if dtype not in _SAFETENSORS_DTYPES:
            raise CheckpointError(f'{path}: tensor {_show(name)} holds {dtype}, not '
                                  f'floating-point weights')
        try:
            state[name] = torch.empty(shape, dtype=_SAFETENSORS_DTYPES[dtype], device='meta')
        except (RuntimeError, ValueError, OverflowError):
            raise CheckpointError(f'{path}: tensor {_show(name)} has an impossible shape '
                                  f'{_show(shape)}') from None
    return state


def _safetensors_load(path: Path) -> dict:
    from safetensors.torch import load_file
    try:
        return load_file(str(path))
    except _safetensors_errors() as exc:
        raise CheckpointError(
            f'{path}: not a readable safetensors file (truncated or corrupt?): '
            f'{brief(exc, with_type=False)}') from None


def _official_state_dict(obj: object, path: Path) -> dict:
    if isinstance(obj, dict):
        for key in ('model_state', 'model', 'module', 'state_dict'):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f'{path}: no state dict found (expected a dict of tensors, or one under '
            f'model_state / model / module / state_dict)')
    if len(obj) > MAX_TENSORS:
        raise CheckpointError(f'{path}: {len(obj)} tensors, more than a TimeSformer has '
                              f'(limit {MAX_TENSORS})')
    odd = [key for key, value in obj.items()
           if not isinstance(key, str) or value.layout != torch.strided]
    if odd:
        raise CheckpointError(f'{path}: not a state dict of named dense tensors: '
                              f'{_listing(odd)}')
    with _about(path):
        return strip_prefixes(obj)


def _stand_ins(state_dict: dict) -> dict:
    """Return meta tensors of the shapes and dtypes of `state_dict`'s, reading no data."""
    return {key: torch.empty(value.shape, dtype=value.dtype, device='meta')
            for key, value in state_dict.items()}


def _read_official(path: Path, overrides: dict) -> CheckpointContents:
    state = _official_state_dict(_torch_load(path), path)   # memory-mapped: nothing read yet
    shapes = _stand_ins(state)
    with _about(path):
        config = config_from_state_dict(shapes, num_heads=overrides.get('num_heads'))
    return CheckpointContents(shapes, config, read=lambda: state,
                              clip_fps=clip_fps_from_name(path, config.num_frames))


def _per_channel(value: object, channels: int) -> object:
    """Return a number repeated per channel (Hugging Face image processors allow one)."""
    return [value] * channels if _number(value) is not None else value


def _read_huggingface(path: Path, overrides: dict) -> CheckpointContents:
    config_path = path / 'config.json'
    hf_config = _read_json(config_path, 'Hugging Face config')
    with _about(config_path):
        config = config_from_hf(hf_config)
    labels = None
    if hf_config.get('id2label'):
        labels = labels_from_id2label(hf_config['id2label'], origin=str(config_path))
    if (path / 'model.safetensors').is_file():
        weights = path / 'model.safetensors'
        hf_state = _safetensors_header(weights)

        def read() -> dict:
            return _safetensors_load(weights)
    elif (path / 'pytorch_model.bin').is_file():
        weights = path / 'pytorch_model.bin'
        loaded = _official_state_dict(_torch_load(weights), weights)
        hf_state = _stand_ins(loaded)

        def read() -> dict:
            return loaded
    else:
        raise CheckpointError(f'{path}: no model.safetensors or pytorch_model.bin')
    # TimesformerForVideoClassification keeps no buffers; position_ids-style extras would be
    # reported by hf_to_official rather than dropped.
    with _about(weights):
        state = hf_to_official(hf_state, config)
    mean, std = OFFICIAL_MEAN, OFFICIAL_STD
    processor = path / 'preprocessor_config.json'
    if processor.is_file():
        pre = _read_json(processor, 'preprocessor config')
        mean, std = check_normalisation(
            _per_channel(pre.get('image_mean', mean), config.in_chans),
            _per_channel(pre.get('image_std', std), config.in_chans), config.in_chans,
            str(processor))
    return CheckpointContents(state, config, labels, mean, std,
                              read=lambda: hf_to_official(read(), config),
                              origin=f'{config_path} (weights {weights.name})')


def _weights_beside(meta_path: Path, name: object) -> Path:
    """Return the weights file `name` in the directory of `meta_path`, or raise."""
    if not isinstance(name, str) or name in ('', '.', '..') or Path(name).name != name:
        raise CheckpointError(f'weights must name a file in the same directory as the '
                              f'description, got {_show(name)}')
    weights = meta_path.parent / name
    if not weights.is_file():
        raise CheckpointError(f'its weights file {weights} is missing')
    return weights


def _read_own(path: Path, overrides: dict) -> CheckpointContents:
    meta_path = _own_json_path(path)
    meta = _read_json(meta_path, 'checkpoint description')
    with _about(meta_path):
        if meta.get('format') != FORMAT_NAME:
            raise CheckpointError(f'not a {FORMAT_NAME} checkpoint description (format is '
                                  f'{_show(meta.get("format"))})')
        version = meta.get('version', FORMAT_VERSION)
        if type(version) is not int or not 1 <= version <= FORMAT_VERSION:
            raise CheckpointError(f'format version {_show(version)} is not readable here '
                                  f'(this package reads up to version {FORMAT_VERSION})')
        weights = _weights_beside(
            meta_path, meta.get('weights', meta_path.with_suffix('.safetensors').name))
        if 'config' not in meta:
            raise CheckpointError('no config')
        config = config_from_values(meta['config'])
        labels = meta.get('labels')
        if labels is not None:
            labels = _check_names(labels)
        mean, std = _normalisation(meta.get('mean', OFFICIAL_MEAN),
                                   meta.get('std', OFFICIAL_STD), config.in_chans)
        if not isinstance(meta.get('source', ''), str):
            raise CheckpointError(f'source must be a string, got {_show(meta["source"])}')
    clip_fps = meta.get('clip_fps')
    if clip_fps is not None:
        clip_fps = check_clip_fps(clip_fps, str(meta_path))
    state = _safetensors_header(weights)
    extra = {k: v for k, v in meta.items() if k not in (
        'format', 'version', 'config', 'labels', 'mean', 'std', 'weights', 'clip_fps')}
    return CheckpointContents(state, config, labels, mean, std, extra,
                              read=lambda: _safetensors_load(weights),
                              origin=f'{meta_path} (weights {weights.name})', clip_fps=clip_fps)


_READERS = {
    'official': _read_official,
    'huggingface': _read_huggingface,
    FORMAT_NAME: _read_own,
}


def load_checkpoint(path: PathLike, labels: Union[None, PathLike, Sequence[str]] = None,
                    **config_overrides) -> Checkpoint:
    """Load any supported checkpoint into a `Checkpoint` (model in eval mode, on the CPU).

    `labels` (a list, or a labels file) replaces the checkpoint's own labels. Config overrides
    (for example `num_frames=16`) change the architecture the weights are loaded into;
    embeddings are resized to fit. Everything the checkpoint describes is checked before its
    weights are read and the model's memory allocated (see the module's docstring).
    """
    path = Path(path)
    fmt = detect_format(path)
    contents = _READERS[fmt](path, dict(config_overrides))
    origin = contents.origin or str(path)
    config = contents.config
    check_fit(_expected_state(config), contents.state_dict, origin)
    if config_overrides:
        with _about(path):
            config = config_from_values(config.to_dict(), **config_overrides)
        check_fit(_expected_state(config),
                  resize_embeddings(contents.state_dict, config, log=False), origin)
    if labels is not None:
        origin_labels = str(labels) if isinstance(labels, (str, Path)) else 'labels'
        labels = labels if not isinstance(labels, (str, Path)) else read_labels(labels)
        labels = check_labels(labels, config.num_classes, origin_labels)
    elif contents.labels is not None:
        labels = check_labels(contents.labels, config.num_classes, str(path))
    else:
        labels = default_labels(config.num_classes)
    mean, std = check_normalisation(contents.mean, contents.std, config.in_chans, str(path))
    state = contents.read() if contents.read else contents.state_dict
    check_finite(state, origin)
    model = build_model(state, config, origin)
    source = contents.extra.get('source', f'{fmt}:{path}')
    extra = {k: v for k, v in contents.extra.items() if k != 'source'}
    return Checkpoint(model=model, labels=labels, mean=mean, std=std, source=source,
                      path=str(path), extra=extra, clip_fps=contents.clip_fps)


def load_model(path: PathLike, **kwargs):
    """Load any supported checkpoint; return (model, labels)."""
    ckpt = load_checkpoint(path, **kwargs)
    return ckpt.model, ckpt.labels


def own_format_files(path: PathLike) -> tuple:
    """Return (NAME.json, NAME.safetensors) that `save_checkpoint(path)` writes."""
    path = Path(path)
    if path.suffix in ('.json', '.safetensors'):
        path = path.with_suffix('')
    return path.with_name(path.name + '.json'), path.with_name(path.name + '.safetensors')


def save_checkpoint(path: PathLike, model: TimeSformer, labels: Sequence[str],
                    mean: Sequence[float] = OFFICIAL_MEAN, std: Sequence[float] = OFFICIAL_STD,
                    source: str = '', clip_fps: Optional[float] = None, **extra) -> Path:
    """Write the project's own format, NAME.safetensors and NAME.json; return the JSON path.

    Labels, mean/std and the clip rate `clip_fps` (frames per second of the clips the model
    was trained on; None: unknown, not written) are checked as `load_checkpoint` checks them,
    so what is written loads.
    """
    from safetensors.torch import save_file
    meta_path, weights = own_format_files(path)
    labels = check_labels(labels, model.config.num_classes, 'labels')
    mean, std = check_normalisation(mean, std, model.config.in_chans, 'mean/std')
    if clip_fps is not None:
        clip_fps = check_clip_fps(clip_fps, 'clip_fps')
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to('cpu').contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights), metadata={'format': FORMAT_NAME})
    meta = {
        'format': FORMAT_NAME,
        'version': FORMAT_VERSION,
        'weights': weights.name,
        'config': model.config.to_dict(),
        'labels': labels,
        'mean': list(mean),
        'std': list(std),
        **({'clip_fps': clip_fps} if clip_fps is not None else {}),
        'source': source,
        **extra,
    }
    meta_path.write_text(json.dumps(meta, indent=2) + '\n', encoding='utf-8')
    # safetensors creates its file owner-only; give it the JSON's mode (the umask's), or an
    # install built from this file would carry weights that other users cannot read.
    weights.chmod(meta_path.stat().st_mode & 0o777)
    return meta_path
