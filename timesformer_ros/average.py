"""`timesformer_train average OUT A B [...]`: one model from the mean of fine-tunes' weights.

Fine-tunes of one starting model that differ only in their seed or learning rate end in one
basin of the loss, and the uniform mean of their weights (a "model soup", Wortsman et al.,
ICML 2022) is often better than each of them, at the same cost when it runs: the same
architecture, one forward pass (the embedded motion model was made so: README, "How it was
trained"). The checkpoints must agree on architecture, classes, normalisation and clip rate,
which is checked; that they start from one model is the user's to ensure (the mean of models
trained apart is noise), and a warning says when their records do not name one. The result
records each part's source and training, and the common starting checkpoint; the parts'
label-safe transformations (`symmetries`, for the engine's test-time views) when all declare the
same.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from safetensors import SafetensorError

from .checkpoints import (CheckpointError, load_checkpoint, own_format_files,
                          save_checkpoint)
from .views import KEY as SYMMETRIES_KEY, declared

log = logging.getLogger(__name__)


def _what_differs(first, other) -> Optional[str]:
    """Say what of the model `other` describes differs from `first`, or None."""
    for what, a, b in (('configuration', first.config.to_dict(), other.config.to_dict()),
                       ('classes', first.labels, other.labels),
                       ('normalisation mean', list(first.mean), list(other.mean)),
                       ('normalisation std', list(first.std), list(other.std)),
                       ('clip rate', first.clip_fps, other.clip_fps)):
        if a == b:
            continue
        if isinstance(a, dict):
            names = sorted(k for k in a if a[k] != b.get(k))
            return f'{what} {({k: b.get(k) for k in names})} against {({k: a[k] for k in names})}'
        if isinstance(a, list) and len(a) > 4:
            i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            shown = [repr(v[i]) if i < len(v) else 'nothing' for v in (b, a)]
            return (f'{what} differ at index {i}: {shown[0]} against {shown[1]} ({len(b)} and '
                    f'{len(a)} classes)')
        return f'{what} {b} against {a}'
    return None


def _check_names(paths: Sequence[Path], out: Path):
    """Refuse fewer than two parts, a part named twice, and an OUT that would overwrite one."""
    if len(paths) < 2:
        raise CheckpointError(f'averaging needs at least two checkpoints, got {len(paths)}')
    if out.name in ('', '.', '..') or out.is_dir():
        raise CheckpointError(f'OUT {str(out)!r} is not a checkpoint name: give a file path '
                              f'without its suffix, such as models/soup')
    written = {path.resolve() for path in own_format_files(out)}
    seen = set()
    for path in paths:
        resolved = Path(path).resolve()
        if resolved in seen:
            raise CheckpointError(f'{path} is named twice: each part counts once')
        seen.add(resolved)
        if resolved in written or resolved.with_suffix('.safetensors') in written:
            raise CheckpointError(f'OUT {out} would overwrite the part {path}: choose another '
                                  f'name')


def average_checkpoints(paths: Sequence[Path], out: Path, command: str = '',
                        warn: Callable[[str], None] = log.warning) -> Path:
    """Write the uniform mean of the checkpoints' weights to `out`; return its JSON path.

    Raises CheckpointError when fewer than two are given, one is named twice, OUT would
    overwrite one, one cannot be read, or one differs from the first in what the model is
    (its configuration, classes, normalisation or clip rate), or OUT cannot be written.
    `warn` gets a line when the parts' records name no one starting checkpoint.
    """
    paths = [Path(p) for p in paths]
    _check_names(paths, Path(out))
    first = load_checkpoint(paths[0])
    total = {name: tensor.double() for name, tensor in first.model.state_dict().items()}
    parts = [{'checkpoint': str(paths[0]), 'source': first.source,
              'training': first.extra.get('training')}]
    symmetries = [declared(first)]
    for path in paths[1:]:
        part = load_checkpoint(path)
        difference = _what_differs(first, part)
        if difference:
            raise CheckpointError(f'{path}: not a fine-tune of the same model as {paths[0]} '
                                  f'({difference}); only such checkpoints can be averaged')
        for name, tensor in part.model.state_dict().items():   # all floating point (check_fit)
            total[name] += tensor.double()
        parts.append({'checkpoint': str(path), 'source': part.source,
                      'training': part.extra.get('training')})
        symmetries.append(declared(part))
        del part
    state = first.model.state_dict()
    first.model.load_state_dict({name: (total[name] / len(paths)).to(state[name].dtype)
                                 for name in state})
    starts = {str(p['training'].get('init') if isinstance(p['training'], dict) else None)
              for p in parts}
    if len(starts) != 1 or starts == {'None'}:
        warn(f'the parts do not record one starting checkpoint (init: '
             f'{", ".join(sorted(starts))}); the mean of models trained apart is noise')
    training = {'command': command,
                **({'init': starts.pop()} if len(starts) == 1 and starts != {'None'} else {}),
                'average_of': parts}
    kept = symmetries[0] if all(s == symmetries[0] for s in symmetries) else {}
    if any(symmetries) and not kept:
        warn(f'the parts declare different {SYMMETRIES_KEY} (or some none): the average '
             f'declares none, so the node scores each window alone')
    try:
        return save_checkpoint(out, first.model, first.labels, first.mean, first.std,
                               source='timesformer_train average', clip_fps=first.clip_fps,
                               training=training,
                               **({SYMMETRIES_KEY: kept} if kept else {}))
    except (OSError, SafetensorError) as exc:
        where = getattr(exc, 'filename', None) or out
        raise CheckpointError(f'cannot write {where}: '
                              f'{getattr(exc, "strerror", None) or exc}') from exc


def main(argv: Sequence[str]) -> int:
    """Run `timesformer_train average`; bad input exits 2 with one line saying why."""
    parser = argparse.ArgumentParser(
        prog='timesformer_train average',
        description='Write the uniform mean of the weights of fine-tunes of one model (same '
                    'architecture, classes, normalisation and clip rate): often better than '
                    'each, at the same cost per window.')
    parser.add_argument('out', type=Path, help='the output checkpoint (OUT.json and '
                                               'OUT.safetensors)')
    parser.add_argument('checkpoints', type=Path, nargs='+', help='two or more checkpoints')
    args = parser.parse_args(argv)
    command = 'timesformer_train average ' + ' '.join(shlex.quote(a) for a in argv)
    try:
        written = average_checkpoints(
            args.checkpoints, args.out, command,
            warn=lambda line: print(f'timesformer_train average: warning: {line}',
                                    file=sys.stderr))
    except CheckpointError as exc:
        print(f'timesformer_train average: error: {exc}', file=sys.stderr)
        return 2
    print(f'wrote {written}: the mean of {len(args.checkpoints)} checkpoints')
    return 0
