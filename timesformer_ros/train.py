"""Training the embedded motion model, and the quality report written into the README.

    timesformer_train train --preset tiny --out timesformer_ros/data/motion_tiny
    timesformer_train report timesformer_ros/data/motion_tiny.json

Training clips are generated on the fly from `synthetic.py` (seeded per step); a folder of
labelled clips (`--data DIR` with DIR/<class>/*.npy, each a (T, H, W, 3) uint8 array) trains
on a user's own recordings instead. Validation and the report use seeds the training never
draws from.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import synthetic
from .checkpoints import OFFICIAL_MEAN, OFFICIAL_STD, load_checkpoint, save_checkpoint
from .frames import Normaliser
from .model import ATTENTION_TYPES, TimeSformer, preset

LOGGER = logging.getLogger(__name__)

# Seed ranges: training draws from [0, 10**6), validation from VAL_SEED, the held-out report
# from REPORT_SEED; they never overlap.
VAL_SEED = 10 ** 7
REPORT_SEED = 2 * 10 ** 7


class FolderClips:
    """Labelled clips from DIR/<class name>/*.npy, each (T, H, W, 3) uint8."""

    def __init__(self, root: Path, classes: Sequence[str], size: int, num_frames: int):
        self.items = []
        for index, name in enumerate(classes):
            for path in sorted((root / name).glob('*.npy')):
                self.items.append((path, index))
        if not self.items:
            raise ValueError(f'no clips found under {root}/<class>/*.npy for classes {classes}')
        self.size, self.num_frames = size, num_frames

    def batch(self, rng: np.random.Generator, count: int):
        from .frames import resize_and_crop
        picks = rng.integers(len(self.items), size=count)
        clips, labels = [], []
        for i in picks:
            path, label = self.items[i]
            clip = np.load(path)
            if clip.ndim != 4 or clip.shape[-1] != 3 or clip.shape[0] < self.num_frames:
                raise ValueError(f'{path}: expected (T>={self.num_frames}, H, W, 3), '
                                 f'got {clip.shape}')
            start = rng.integers(clip.shape[0] - self.num_frames + 1)
            clip = clip[start:start + self.num_frames]
            clips.append(np.stack([resize_and_crop(f, self.size) for f in clip]))
            labels.append(label)
        return np.stack(clips), np.array(labels)


_INDEX = {name: i for i, name in enumerate(synthetic.CLASSES)}
_REVERSED = np.array([_INDEX[synthetic.REVERSED[c]] for c in synthetic.CLASSES])
_HFLIP = np.array([_INDEX[{'moving_left': 'moving_right', 'moving_right': 'moving_left'}
                          .get(c, c)] for c in synthetic.CLASSES])
_VFLIP = np.array([_INDEX[{'moving_up': 'moving_down', 'moving_down': 'moving_up'}.get(c, c)]
                   for c in synthetic.CLASSES])


DIRECTIONS = tuple(_INDEX[c] for c in ('moving_left', 'moving_right', 'moving_up',
                                        'moving_down'))


def synthetic_batch(rng: np.random.Generator, count: int, size: int, num_frames: int,
                    style: synthetic.Style,
                    classes: Sequence[int] = range(len(synthetic.CLASSES))):
    """`count` clips of the given class indices (uniformly drawn) and their labels."""
    labels = rng.choice(np.asarray(classes), size=count)
    clips = np.stack([synthetic.make_clip(rng, synthetic.CLASSES[i], size, num_frames, style)
                      for i in labels])
    return clips, labels


def augment(rng: np.random.Generator, clips: np.ndarray, labels: np.ndarray):
    """Label-consistent augmentation of synthetic motion (the generator's physics makes these
    exact): random horizontal and vertical flips (swapping left/right and up/down), and every
    clip paired with its time reversal (swapping each motion with its reverse). The pairs are
    what teaches a network trained from scratch to use frame order: features that ignore the
    order cannot tell a clip from its reversal, yet their labels differ."""
    clips, labels = clips.copy(), labels.copy()
    h = rng.random(len(clips)) < 0.5
    clips[h] = clips[h][:, :, :, ::-1]
    labels[h] = _HFLIP[labels[h]]
    v = rng.random(len(clips)) < 0.5
    clips[v] = clips[v][:, :, ::-1]
    labels[v] = _VFLIP[labels[v]]
    return (np.concatenate([clips, clips[:, ::-1]]),
            np.concatenate([labels, _REVERSED[labels]]))


@torch.inference_mode()
def predict(model: TimeSformer, clips: np.ndarray, normaliser: Normaliser,
            batch_size: int = 64) -> np.ndarray:
    """Top-1 class indices for uint8 clips (N, T, H, W, 3)."""
    model.eval()
    out = []
    for start in range(0, len(clips), batch_size):
        video = normaliser(torch.from_numpy(clips[start:start + batch_size]))
        out.append(model(video).argmax(-1).cpu().numpy())
    return np.concatenate(out)


def accuracy(model, clips, labels, normaliser) -> float:
    return float((predict(model, clips, normaliser) == labels).mean())


def reversal_rate(model, clips, labels, normaliser, classes=synthetic.CLASSES) -> float:
    """Share of clips whose backwards playback is classified as the reversed motion (clips of
    classes with a distinct reverse only)."""
    reversible = np.array([synthetic.REVERSED[classes[i]] != classes[i] for i in labels])
    clips, labels = clips[reversible], labels[reversible]
    expected = np.array([classes.index(synthetic.REVERSED[classes[i]]) for i in labels])
    predicted = predict(model, np.ascontiguousarray(clips[:, ::-1]), normaliser)
    return float((predicted == expected).mean())


def init_from_scratch(model: TimeSformer, embed_std: float = 1.0,
                      temporal_qkv_std: float = 0.3) -> TimeSformer:
    """Initialisation for training without pretrained weights.

    The official initialisation (0.02-std position embedding, zero time embedding, 0.02-std
    attention weights, zero temporal_fc) assumes a pretrained ViT. From scratch it leaves the
    network blind to frame order: temporal attention starts uniform (q.k ~ 0), so it returns
    the temporal mean whatever the time embedding, and its gradient is near zero. Training then
    learns order-blind motion energy (static vs translating vs scaling) and never direction.
    Measured on a small direction task (4 classes, 32 px, T=4, 1200 steps): chance with the
    official init; 93% with the embeddings at the scale of the patch content, temporal q/k/v
    large enough for time-selective attention, and temporal_fc initialised like other layers.
    """
    with torch.no_grad():
        torch.nn.init.normal_(model.pos_embed, std=embed_std)
        if model.time_embed is not None:
            torch.nn.init.normal_(model.time_embed, std=embed_std)
        for blk in model.blocks:
            if hasattr(blk, 'temporal_fc'):
                torch.nn.init.normal_(blk.temporal_attn.qkv.weight, std=temporal_qkv_std)
                torch.nn.init.trunc_normal_(blk.temporal_fc.weight, std=0.02)
    return model


def _lr(step: int, steps: int, base: float, constant: int) -> float:
    """Constant for the first `constant` steps, then a cosine decay to zero."""
    if step < constant:
        return base
    progress = (step - constant) / max(1, steps - constant)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


def curriculum_phase(step: int, steps: int, curriculum: float, directions_first: float,
                     style: synthetic.Style = synthetic.TRAIN_STYLE):
    """What training step `step` draws: (class indices, style, phase name).

    From scratch, the sign of a motion is the hard part: with all classes from the start the
    network settles on order-blind motion energy (static, translating, scaling) first. So
    the first `directions_first` share of the steps shows only the four directions (where
    every clip and its reversal differ in label), the steps up to `curriculum` all classes,
    both on plain scenes with larger motions (EASY_STYLE); the rest `style`.
    """
    if step < directions_first * steps:
        return DIRECTIONS, synthetic.EASY_STYLE, 'directions, easy scenes'
    everything = range(len(synthetic.CLASSES))
    if step < curriculum * steps:
        return everything, synthetic.EASY_STYLE, 'all classes, easy scenes'
    return everything, style, 'all classes'


def _progress(step: int, steps: int, loss: float, started: float, extra: str = ''):
    done = (step + 1) / steps
    bar = '#' * int(done * 30)
    elapsed = time.monotonic() - started
    eta = elapsed / done - elapsed
    sys.stderr.write(f'\r[{bar:<30}] {step + 1}/{steps} loss {loss:.3f} '
                     f'{elapsed:5.0f}s eta {eta:4.0f}s {extra}')
    sys.stderr.flush()


def train(preset_name: str = 'tiny', steps: int = 8000, batch_size: int = 32, lr: float = 1e-3,
          weight_decay: float = 0.01, seed: int = 0, val_every: int = 500, val_clips: int = 350,
          style: synthetic.Style = synthetic.TRAIN_STYLE, data: Optional[Path] = None,
          out: Optional[Path] = None, command: str = '', curriculum: float = 0.3,
          directions_first: float = 0.2, init: Optional[Path] = None, **overrides):
    """Train a preset (or continue from the checkpoint `init`, e.g. to fine-tune on one's own
    clips). Synthetic training follows `curriculum_phase`; the learning rate stays constant
    through the curriculum (escaping the order-blind plateau needs it) and then decays on a
    cosine. On a folder of clips it decays from the start. The checkpoint is written at every
    validation, so a run stopped early keeps its latest state."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if init:
        model = load_checkpoint(init).model
        config = model.config
        if config.num_classes != len(synthetic.CLASSES) and not data:
            raise ValueError(f'{init} has {config.num_classes} classes, the synthetic data '
                             f'{len(synthetic.CLASSES)}')
    else:
        config = preset(preset_name, num_classes=len(synthetic.CLASSES), **overrides)
        model = init_from_scratch(TimeSformer(config))
    normaliser = Normaliser(OFFICIAL_MEAN, OFFICIAL_STD)
    folder = FolderClips(data, synthetic.CLASSES, config.img_size, config.num_frames) \
        if data else None
    val_clips_arr, val_labels = synthetic.make_dataset(VAL_SEED + seed, val_clips,
                                                       config.img_size, config.num_frames,
                                                       style)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    constant = 0 if folder else int(max(curriculum, directions_first) * steps)
    started = time.monotonic()
    history = []
    val_acc = float('nan')
    phase = None
    for step in range(steps):
        model.train()
        if folder:
            clips, labels = folder.batch(rng, batch_size)
        else:
            classes, step_style, name = curriculum_phase(step, steps, curriculum,
                                                         directions_first, style)
            if name != phase:
                sys.stderr.write('\n')
                LOGGER.info('step %d: %s', step + 1, name)
                phase = name
            clips, labels = augment(rng, *synthetic_batch(
                rng, batch_size // 2, config.img_size, config.num_frames, step_style,
                classes))
        for group in optimiser.param_groups:
            group['lr'] = _lr(step, steps, lr, constant)
        logits = model(normaliser(torch.from_numpy(clips)))
        loss = F.cross_entropy(logits, torch.from_numpy(labels))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        loss = float(loss.detach())
        if (step + 1) % val_every == 0 or step + 1 == steps:
            val_acc = accuracy(model, val_clips_arr, val_labels, normaliser)
            val_rev = reversal_rate(model, val_clips_arr, val_labels, normaliser)
            history.append({'step': step + 1, 'loss': round(loss, 4),
                            'val_accuracy': round(val_acc, 4), 'val_reversal': round(val_rev, 4)})
            sys.stderr.write('\n')
            LOGGER.info('step %d: loss %.3f, validation accuracy %.3f, reversal %.3f',
                        step + 1, loss, val_acc, val_rev)
            if out:
                save_checkpoint(
                    out, model, list(synthetic.CLASSES), OFFICIAL_MEAN, OFFICIAL_STD,
                    source=f'timesformer_train ({data or "synthetic motion"})',
                    training={'command': command, 'steps': step + 1, 'of_steps': steps,
                              'batch_size': batch_size, 'lr': lr,
                              'weight_decay': weight_decay, 'seed': seed,
                              'curriculum': curriculum, 'directions_first': directions_first,
                              'init': str(init) if init else None,
                              'seconds': round(time.monotonic() - started),
                              'history': history})
        _progress(step, steps, loss, started, f'val {val_acc:.3f}')
    sys.stderr.write('\n')
    model.eval()
    if out:
        LOGGER.info('wrote %s', Path(out).with_suffix('.json'))
    return model, history


def report(checkpoint: Path, clips: int = 2100, seed: int = REPORT_SEED) -> dict:
    """Held-out accuracy, reversal rate, held-out styles and CPU time per window."""
    ckpt = load_checkpoint(checkpoint)
    model, cfg = ckpt.model, ckpt.config
    normaliser = Normaliser(ckpt.mean, ckpt.std)
    results = {'checkpoint': str(checkpoint), 'attention_type': cfg.attention_type}
    data, labels = synthetic.make_dataset(seed, clips, cfg.img_size, cfg.num_frames,
                                          synthetic.TRAIN_STYLE)
    results['accuracy'] = accuracy(model, data, labels, normaliser)
    results['reversal'] = reversal_rate(model, data, labels, normaliser)
    for name, style in (('held_out_background_clutter', synthetic.HELD_OUT_BACKGROUND),
                        ('held_out_noise_0.06_0.08', synthetic.HELD_OUT_NOISE)):
        d, lab = synthetic.make_dataset(seed + 1, clips // 3, cfg.img_size, cfg.num_frames,
                                        style)
        results[name] = accuracy(model, d, lab, normaliser)
    one = normaliser(torch.from_numpy(data[:1]))
    with torch.inference_mode():
        for _ in range(5):
            model(one)
        times = []
        for _ in range(50):
            start = time.perf_counter()
            model(one)
            times.append(time.perf_counter() - start)
    results['cpu_ms_per_window_p50'] = round(float(np.median(times)) * 1000, 2)
    results['clips'] = clips
    return results


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='timesformer_train', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    tr = sub.add_parser('train', help='train a preset on synthetic motion (or --data)')
    tr.add_argument('--preset', default='tiny')
    tr.add_argument('--attention-type', choices=ATTENTION_TYPES)
    tr.add_argument('--steps', type=int, default=8000)
    tr.add_argument('--batch-size', type=int, default=32)
    tr.add_argument('--lr', type=float, default=1e-3)
    tr.add_argument('--seed', type=int, default=0)
    tr.add_argument('--weight-decay', type=float, default=0.01)
    tr.add_argument('--val-every', type=int, default=500)
    tr.add_argument('--curriculum', type=float, default=0.3,
                    help='share of the steps on easy scenes first (0 to disable)')
    tr.add_argument('--directions-first', type=float, default=0.2,
                    help='share of the steps, at the start, on the four directions only')
    tr.add_argument('--threads', type=int, default=0, help='torch CPU threads (0: default)')
    tr.add_argument('--data', type=Path, help='DIR/<class>/*.npy clips instead of synthetic')
    tr.add_argument('--init', type=Path, help='start from this checkpoint (fine-tuning)')
    tr.add_argument('--out', type=Path, required=True, help='output checkpoint path')
    rep = sub.add_parser('report', help='quality figures of a trained motion model')
    rep.add_argument('checkpoint', type=Path)
    rep.add_argument('--clips', type=int, default=2100)
    rep.add_argument('--json', type=Path, help='also write the figures to this file')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    if args.command == 'train':
        if args.threads:
            torch.set_num_threads(args.threads)
        overrides = {'attention_type': args.attention_type} if args.attention_type else {}
        command = 'timesformer_train ' + ' '.join(shlex.quote(a) for a in
                                                  (argv if argv is not None else sys.argv[1:]))
        train(args.preset, args.steps, args.batch_size, args.lr, args.weight_decay,
              seed=args.seed, val_every=args.val_every, data=args.data, out=args.out,
              command=command, curriculum=args.curriculum,
              directions_first=args.directions_first, init=args.init, **overrides)
        return 0
    results = report(args.checkpoint, args.clips)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
