"""Test-time views: the mirrored (and time-reversed) copies of a window, scored with it.

A checkpoint may declare under `symmetries` which transformations of a clip map each class
onto a known class: {'hflip': [...], 'vflip': [...], 'reverse': [...]}, each list giving, for
class i, the class the transformed clip shows (a permutation of the class indices). The
embedded motion model declares all three: mirroring left-right swaps moving_left and
moving_right, top-bottom swaps moving_up and moving_down, and playing the clip backwards swaps
each motion with its reverse. Its training drew exactly these transformations as augmentation
(`train.augment`), so each copy is a clip the model knows. A fine-tune on recordings keeps the
symmetries that still hold for its classes (`carried`) but does not flip its clips, so there
the copies are clips the starting model knew.

The engine (`test_time_views`) runs the window and every combination of the symmetries chosen (the
copies as one batch after the window; by default the 3 mirrors, with the reversal 7) and averages
their log-probabilities, each copy's put back in the window's class order: the scores are the
normalised geometric mean of the copies', and follow a mirror of the input exactly. A model read
several ways disagrees with itself less than it errs, so this gains most where one reading is least
sure (slow motion, slow growth). The reversal is not in the default: a window across a change of
motion, played backwards, shows the older motion last, and a model that labels a window by its
newest phase then reads the past. The attention summaries and the region come from the window as it
is.
"""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

import torch

from .checkpoints.base import CheckpointError
from .interface import SYMMETRIES, views_problem

KEY = 'symmetries'                                  # the checkpoint description's key
MIRRORS = ('hflip', 'vflip')                        # the symmetries that keep time's order
_AXES = {'hflip': -1, 'vflip': -2, 'reverse': 1}    # of a (B, T, C, H, W) clip


def check_symmetries(value, num_classes: int, origin: str) -> dict:
    """Return a checkpoint's `symmetries` ({name: permutation}) checked, or CheckpointError.

    Each is a permutation of the class indices that undoes itself (a mirror or a reversal done
    twice is the clip itself), and any two commute (the transformations do), so that the views'
    scores follow a mirror or a reversal of the input exactly.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CheckpointError(f'{origin}: {KEY} must be an object such as '
                              f'{{"hflip": [0, 2, 1]}}, got {type(value).__name__}')
    checked = {}
    for name, perm in value.items():
        if name not in SYMMETRIES:
            raise CheckpointError(f'{origin}: {KEY} names {str(name)[:40]!r}; known: '
                                  f'{", ".join(SYMMETRIES)}')
        if (not isinstance(perm, list) or not all(type(i) is int for i in perm)
                or sorted(perm) != list(range(num_classes))):
            raise CheckpointError(f'{origin}: {KEY} {name} must list each of the {num_classes} '
                                  f'class indices once, got {str(perm)[:120]}')
        if any(perm[perm[i]] != i for i in range(num_classes)):
            raise CheckpointError(f'{origin}: {KEY} {name} must undo itself (swaps only: class '
                                  f'i becomes perm[i] and perm[i] becomes i), got '
                                  f'{str(perm)[:120]}')
        for other, known in checked.items():
            if any(perm[known[i]] != known[perm[i]] for i in range(num_classes)):
                raise CheckpointError(f'{origin}: {KEY} {name} and {other} must commute, as '
                                      f'the transformations do')
        checked[name] = perm
    return checked


def carried(symmetries: dict, labels: Sequence[str], classes: Sequence[str]) -> dict:
    """Return the symmetries of `labels` that hold for `classes` (a new head), re-indexed.

    A symmetry carries over when it maps every one of `classes` onto one of them (moving_left
    and moving_right without the other motions keep hflip and reverse); one that maps a class
    elsewhere, or a class the old labels lack, is left out.
    """
    kept = {}
    for name, perm in (symmetries or {}).items():
        image = {labels[i]: labels[j] for i, j in enumerate(perm)}
        if all(image.get(c) in classes for c in classes):
            kept[name] = [list(classes).index(image[c]) for c in classes]
    return kept


def select(value: str, symmetries: dict, origin: str) -> list:
    """Return the extra views of a `test_time_views` value: [(names, permutation)].

    'mirrors': every combination of the declared mirrors (hflip, vflip); 'all': of every
    declared symmetry; 'none': no extra view; a list: the combinations of those named, each of
    which the checkpoint must declare.
    """
    problem = views_problem(value)
    if problem:
        raise ValueError(f'test_time_views {problem}')
    value = value.strip()
    if value == 'none':
        return []
    words = {'all': list(symmetries), 'mirrors': [n for n in MIRRORS if n in symmetries]}
    chosen = words[value] if value in words else [n.strip() for n in value.split(',')]
    missing = [n for n in chosen if n not in symmetries]
    if missing:
        declared = ', '.join(symmetries) or 'none'
        raise ValueError(f'test_time_views names {", ".join(missing)}, which {origin} does not '
                         f'declare label-safe (it declares: {declared}); use none or those')
    chosen = [n for n in SYMMETRIES if n in chosen]
    views = []
    for count in range(1, len(chosen) + 1):
        for names in combinations(chosen, count):
            perm = list(range(len(symmetries[names[0]])))
            for name in names:
                perm = [symmetries[name][i] for i in perm]
            views.append((names, perm))
    return views


def _origin(checkpoint) -> str:
    return checkpoint.path or checkpoint.source or 'the checkpoint'


def declared(checkpoint) -> dict:
    """Return a loaded checkpoint's `symmetries` checked (`check_symmetries`); {} for none."""
    return check_symmetries(checkpoint.extra.get(KEY), len(checkpoint.labels), _origin(checkpoint))


def checkpoint_views(checkpoint, value: str = 'mirrors') -> list:
    """Return the views of `value` for a loaded checkpoint (`select`), its symmetries checked."""
    return select(value, declared(checkpoint), _origin(checkpoint))


def in_time_order(views: list) -> list:
    """Return the views that keep time's order: for figures that play clips backwards.

    Averaged over the reversed copies too, the scores follow a reversal exactly, so a figure
    that compares a clip with its reversal would measure nothing.
    """
    return [(names, perm) for names, perm in views if 'reverse' not in names]


def transform(video: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    """Return a (B, T, C, H, W) clip mirrored and/or reversed as `names` say."""
    return video.flip([_AXES[n] for n in names])


def combine(model, video: torch.Tensor, logits: torch.Tensor, views: list) -> torch.Tensor:
    """Mean log-probabilities of the window (`logits`) and its `views`, in the window's order."""
    if not views:
        return logits
    copies = model(torch.cat([transform(video, names) for names, _ in views]))
    total = torch.log_softmax(logits.float(), -1)
    for index, (_, perm) in enumerate(views):
        part = copies[index * len(video):(index + 1) * len(video)]
        total = total + torch.log_softmax(part.float(), -1)[:, perm]
    return total / (1 + len(views))          # float32: `predictions` takes any float
