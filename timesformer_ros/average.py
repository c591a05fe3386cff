"""`timesformer_train average OUT A B [...]`: one model from the mean of fine-tunes' weights.

Fine-tunes of one starting model that differ only in their seed or learning rate end in one
basin of the loss, and the uniform mean of their weights (a "model soup", Wortsman et al.,
ICML 2022) is often better than each of them, at no cost when it runs: the same architecture,
one forward pass. The embedded model's twelfth stage is the mean of two such fine-tunes
(BENCHMARKS.md). The checkpoints must agree on architecture, classes, normalisation and clip
rate, which is checked; that they start from one model is the user's to ensure (the mean of
models trained apart is noise). The result records each part's training.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch
from safetensors import SafetensorError

from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint


def _what_differs(first, other) -> Optional[str]:
    for what, a, b in (('configuration', first.config.to_dict(), other.config.to_dict()),
                       ('classes', first.labels, other.labels),
                       ('normalisation mean', list(first.mean), list(other.mean)),
                       ('normalisation std', list(first.std), list(other.std)),
                       ('clip rate', first.clip_fps, other.clip_fps)):
        if a != b:
            if isinstance(a, dict):
                names = sorted(k for k in a if a[k] != b.get(k))
                a, b = ({k: d.get(k) for k in names} for d in (a, b))
            return f'{what} {b} against {a}'
    return None


def average_checkpoints(paths: Sequence[Path], out: Path, command: str = '') -> Path:
    """Write the uniform mean of the checkpoints' weights to `out`; return its JSON path.

    Raises CheckpointError when fewer than two are given or one differs from the first in
    what the model is (its configuration, classes, normalisation or clip rate).
    """
    if len(paths) < 2:
        raise CheckpointError(f'averaging needs at least two checkpoints, got {len(paths)}')
    parts = [load_checkpoint(path) for path in paths]
    first = parts[0]
    for path, part in zip(paths[1:], parts[1:]):
        difference = _what_differs(first, part)
        if difference:
            raise CheckpointError(f'{path}: not a fine-tune of the same model as {paths[0]} '
                                  f'({difference}); only such checkpoints can be averaged')
    states = [part.model.state_dict() for part in parts]
    mean = {}
    for name, tensor in states[0].items():
        if tensor.is_floating_point():
            stacked = torch.stack([state[name].double() for state in states])
            mean[name] = stacked.mean(0).to(tensor.dtype)
        elif all(torch.equal(state[name], tensor) for state in states):
            mean[name] = tensor
        else:
            raise CheckpointError(f'{name} is not a floating-point tensor and differs between '
                                  f'the checkpoints: they cannot be averaged')
    first.model.load_state_dict(mean)
    training = {'command': command,
                'average_of': [{'checkpoint': str(path), 'training': part.extra.get('training')}
                               for path, part in zip(paths, parts)]}
    return save_checkpoint(out, first.model, first.labels, first.mean, first.std,
                           source='timesformer_train average', clip_fps=first.clip_fps,
                           training=training)


def main(argv: Sequence[str]) -> int:
    """Run `timesformer_train average`; a bad checkpoint exits 2 with one line saying why."""
    parser = argparse.ArgumentParser(
        prog='timesformer_train average',
        description='Write the uniform mean of the weights of fine-tunes of one model (same '
                    'architecture, classes, normalisation and clip rate): often better than '
                    'each, and no slower.')
    parser.add_argument('out', type=Path, help='the output checkpoint (OUT.json and '
                                               'OUT.safetensors)')
    parser.add_argument('checkpoints', type=Path, nargs='+', help='two or more checkpoints')
    args = parser.parse_args(argv)
    command = 'timesformer_train average ' + ' '.join(shlex.quote(a) for a in argv)
    try:
        written = average_checkpoints(args.checkpoints, args.out, command)
    except CheckpointError as exc:
        print(f'timesformer_train average: error: {exc}', file=sys.stderr)
        return 2
    except (OSError, SafetensorError) as exc:
        print(f'timesformer_train average: error: cannot write {args.out}: '
              f'{getattr(exc, "strerror", None) or exc}', file=sys.stderr)
        return 2
    print(f'wrote {written}: the mean of {len(args.checkpoints)} checkpoints')
    return 0
