"""Label lists and normalisation statistics, checked."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Sequence


from .base import (
    MAX_ABS_MEAN, MAX_STD, MIN_STD, CheckpointError, PathLike, _about, _listing, _read_json,
    _read_text, _show)
from .config import _number


def _check_names(labels: object) -> list:
    """Return `labels` as a list of distinct non-empty one-line strings, else raise."""
    if not isinstance(labels, (list, tuple)):
        raise CheckpointError(f'labels must be a list of names, got {_show(labels)}')
    for index, name in enumerate(labels):
        if not isinstance(name, str):
            raise CheckpointError(f'label {index} must be a string, got {_show(name)}')
        if not name.strip():
            raise CheckpointError(f'label {index} is empty')
        if name.splitlines() != [name]:
            raise CheckpointError(f'label {index} {_show(name)} spans several lines')
    repeated = sorted(name for name, count in Counter(labels).items() if count > 1)
    if repeated:
        raise CheckpointError(f'labels must be distinct; repeated: {_listing(repeated)}')
    return list(labels)


def read_labels(path: PathLike) -> list:
    """Read labels from a text file (one label per line) or JSON (a list, or {id: label}).

    Blank lines are skipped. The names must be distinct non-empty strings.
    """
    path = Path(path)
    if path.suffix == '.json':
        data = _read_json(path, 'labels file', dict_only=False)
        if isinstance(data, dict):
            labels = labels_from_id2label(data, origin=str(path))
        elif isinstance(data, list):
            labels = data
        else:
            raise CheckpointError(f'{path}: a labels file must hold a list of names or an '
                                  f'id -> name map, got {_show(data)}')
    else:
        text = _read_text(path, 'labels file')
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    with _about(path):
        return _check_names(labels)


def labels_from_id2label(id2label: dict, origin: str = 'id2label') -> list:
    """Return the labels of an {id: label} map whose ids are 0..n-1 (as strings or ints)."""
    by_id = {}
    for key, name in id2label.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            raise CheckpointError(f'{origin}: ids must be integers, got {_show(key)}') from None
        if not isinstance(name, str):
            raise CheckpointError(f'{origin}: the name of id {index} must be a string, got '
                                  f'{_show(name)}')
        by_id[index] = name
    if sorted(by_id) != list(range(len(id2label))):
        raise CheckpointError(f'{origin}: ids must be 0..{len(id2label) - 1} without gaps')
    with _about(origin):
        return _check_names([by_id[i] for i in range(len(by_id))])


def check_labels(labels: Sequence[str], num_classes: int, origin: str) -> list:
    """Return `labels` as a list; raise `CheckpointError` unless `num_classes` valid names."""
    with _about(origin):
        labels = _check_names(labels)
    if len(labels) != num_classes:
        raise CheckpointError(
            f'{origin} has {len(labels)} labels but the model head has {num_classes} classes')
    return labels


def default_labels(num_classes: int) -> list:
    """Return placeholder labels class_0, class_1, ... for a checkpoint that names none."""
    return [f'class_{i}' for i in range(num_classes)]


def _normalisation(mean: object, std: object, channels: int) -> tuple:
    """Return (mean, std) as tuples of floats, or raise without naming the file."""
    out = []
    for name, values in (('mean', mean), ('std', std)):
        numbers = [_number(v) for v in values] if isinstance(values, (list, tuple)) else []
        if len(numbers) != channels or None in numbers:
            raise CheckpointError(f'{name} must be a list of {channels} numbers (one per '
                                  f'channel), got {_show(values)}')
        if not all(math.isfinite(v) for v in numbers):
            raise CheckpointError(f'{name} {numbers} is not finite')
        out.append(tuple(numbers))
    mean, std = out
    if not all(abs(m) <= MAX_ABS_MEAN for m in mean):
        raise CheckpointError(f'mean {list(mean)} is outside [-{MAX_ABS_MEAN:g}, '
                              f'{MAX_ABS_MEAN:g}] (pixels are normalised as RGB in [0, 1])')
    if not all(MIN_STD <= s <= MAX_STD for s in std):
        raise CheckpointError(f'std {list(std)} must lie between {MIN_STD:g} and {MAX_STD:g} '
                              f'(pixels are normalised as RGB in [0, 1])')
    return mean, std


def check_normalisation(mean: Sequence[float], std: Sequence[float], channels: int,
                        origin: str) -> tuple:
    """Return (mean, std) as tuples of floats; raise unless each holds `channels` numbers.

    The mean must be finite and within +-`MAX_ABS_MEAN`, the std within [`MIN_STD`,
    `MAX_STD`]: inputs are RGB in [0, 1], and a normalised pixel must stay finite.
    """
    with _about(origin):
        return _normalisation(mean, std, channels)
