"""Training from labelled recordings: `timesformer_train train --bags ... --truth ...`.

    timesformer_train train --bags rec1 rec2 --topic /camera/image_raw \
        --truth segments.csv --out my_actions [--init CHECKPOINT] [--val-bags rec3]

The windows are cut from each bag by the node's own intake and sampling (`bags.dataset`), so
the model is trained on exactly the tensors the node will give it, and cached beside OUT
(OUT.windows/). Each window is labelled by the truth at its frames (a CSV of `start,end,label`
segments, a CSV of `stamp,label` per frame, or a String topic); windows across a boundary are left
out and counted. Validation is `--val-bags`, else the last 20% of each bag's time, never trained
on; its accuracy and confusion matrix are printed at the end and written beside OUT
(OUT.validation.json, OUT.confusion.txt). Training starts from `--init` (default: the embedded
model), with a new head when its classes are not the truth's. Ctrl-C saves a resumable state
(OUT.resume.pt) and `--resume` continues from it; `--workers N` or `--address` trains
data-parallel on Ray Train (`finetune_ray`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .bags.base import BagError
from .bags.dataset import (
    BOUNDARY, UNLABELLED, BagWindows, Cutting, DataError, cut_windows, found_labels,
    label_windows, say, split, truth_labeller)
from .bags.scoring import accuracy, confusion_text
from .bags.truth import TruthError
from .checkpoints import embedded_checkpoint, load_checkpoint, own_format_files, save_checkpoint
from .clips import model_sampling
from .bags.discover import find_bags
from .digests import digest
from .frames import Normaliser
from .interface import read_params_file
from .progress import Progress
from .views import KEY as SYMMETRIES_KEY, carried, declared

LOGGER = logging.getLogger(__name__)

# The defaults: a few minutes on two CPU cores for a few minutes of footage (README, "Teach it
# your own actions", and BENCHMARKS.md for what they reach).
DEFAULT_STEPS = 300
DEFAULT_BATCH = 16
DEFAULT_LR = 5e-4
VAL_SHARE = 0.2
# Validation windows run through the model this many at a time (memory stays bounded).
_VAL_BATCH = 32


@dataclass
class BagTraining:
    """A training run on recordings; the defaults are those of the command line."""

    bags: Sequence[Path]                  # bags, directories or globs
    topic: str
    truth: Sequence[str]                  # one for every bag, or one for each of `bags`
    out: Path
    init: Optional[Path] = None           # default: the embedded model
    val_bags: Sequence[Path] = ()
    val_truth: Sequence[str] = ()         # default: `truth` when it is one for every bag
    params_file: Optional[Path] = None    # the node's parameters file (its sampling)
    steps: int = DEFAULT_STEPS
    batch_size: int = DEFAULT_BATCH
    lr: float = DEFAULT_LR
    weight_decay: float = 0.01
    seed: int = 0
    augment: bool = True                  # `augment`: the camera's changes, not the action's
    val_every: int = 100                  # steps between resumable states written
    resume: bool = False
    progress: bool = True
    command: str = ''
    workers: int = 0                      # Ray Train workers (0: one process, here)
    address: Optional[str] = None         # a running Ray cluster
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ('steps', 'batch_size', 'val_every'):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'--{name.replace("_", "-")} must be a positive integer, got '
                                 f'{value!r}')
        if isinstance(self.truth, (str, Path)):
            self.truth = [str(self.truth)]
        if isinstance(self.val_truth, (str, Path)):
            self.val_truth = [str(self.val_truth)]
        if self.resume and (self.workers or self.address):
            raise ValueError('--resume continues a run of one process; a Ray Train run starts '
                             'again (its windows are cached: only the training is repeated)')
        if not math.isfinite(self.lr) or not self.lr > 0:
            raise ValueError(f'--lr must be positive, got {self.lr!r}')


@dataclass
class Start:
    """What training starts from: the model, its classes, normalisation and windowing."""

    model: torch.nn.Module
    classes: list
    mean: tuple
    std: tuple
    clip_fps: Optional[float]
    cutting: Cutting
    symmetries: dict = field(default_factory=dict)  # the start's that hold (`views.carried`)


@dataclass
class _ClipRate:
    """A checkpoint's clip rate and clip length (`clips.ClipRate`)."""

    clip_fps: Optional[float]
    num_frames: int


def starting_point(run: BagTraining, classes: Optional[Sequence[str]] = None) -> Start:
    """Load `run.init` (the embedded model by default) and the windowing the node gives it.

    With `classes` that are not its labels, the model gets a new head for them (logged);
    without, its own labels are kept.
    """
    init = run.init or embedded_checkpoint()
    start = load_checkpoint(init)
    if classes is None or sorted(start.labels) == sorted(classes):
        classes = list(start.labels)
    else:
        LOGGER.info('%s has the classes %s, the truth %s: its head is replaced by a new one '
                    'for %d classes', init, start.labels, list(classes), len(classes))
        start.model.reset_classifier(len(classes))
    params = read_params_file(run.params_file)
    cfg = start.model.config
    sampling = model_sampling(_ClipRate(start.clip_fps, cfg.num_frames), params)
    cutting = Cutting(cfg.img_size, cfg.num_frames, sampling, params['stride'],
                      params['max_gap_s'])
    clip_fps = sampling.target_fps or (start.clip_fps if sampling.sample_every <= 1 else None)
    return Start(start.model, list(classes), tuple(start.mean), tuple(start.std), clip_fps,
                 cutting, carried(declared(start), start.labels, classes))


@dataclass
class LabelledSet:
    """Windows of several bags with class indices: (bag, window) pairs and their classes."""

    bags: list                    # BagWindows
    items: np.ndarray             # (N, 2) int: bag index, window index
    classes: np.ndarray           # (N,) int

    def clips(self, picks: np.ndarray) -> np.ndarray:
        out = []
        for bag, index in self.items[picks]:
            out.append(self.bags[bag].clips([index])[0])
        return np.stack(out) if out else np.zeros((0,), np.uint8)

    def draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """Pick `count` windows, each class equally likely, then a window of it."""
        present = np.unique(self.classes)
        chosen = rng.choice(present, size=count)
        return np.array([rng.choice(np.flatnonzero(self.classes == c)) for c in chosen])


def paired(specs: Sequence, truths: Sequence[str], what: str) -> list:
    """Return (bag, truth) for every bag of `specs`: one truth for all, or one for each spec."""
    if len(truths) not in (1, len(specs)):
        raise DataError(f'give one truth for all {what}, or one for each of the {len(specs)} '
                        f'given, got {len(truths)}')
    pairs = []
    for i, spec in enumerate(specs):
        truth = str(truths[0] if len(truths) == 1 else truths[i])
        if Path(truth).is_file():
            truth = str(Path(truth).resolve())     # read elsewhere too (Ray workers)
        pairs += [(bag, truth) for bag in find_bags([spec])]
    return pairs


def cut_all(pairs: Sequence[tuple], topic: str, cutting: Cutting, cache: Path,
            progress: bool) -> tuple:
    """Return (BagWindows of the bags that could be read, the skipped bags with the reason).

    `pairs` are (bag, its truth). A bag that cannot be opened is skipped and named (as
    evaluation does); a missing topic is a DataError.
    """
    cut, skipped = [], []
    for bag, truth in pairs:
        try:
            windows = cut_windows(bag, topic, cutting, cache, digest(bag), progress)
            windows.truth = truth
        except BagError as exc:
            say(f'skipped {bag}: {exc}')
            skipped.append({'bag': str(bag), 'reason': str(exc)})
            continue
        summary = windows.summary
        if summary.get('broke_off'):
            say(f'{bag}: {summary["broke_off"]} (the windows before the break are used)')
        if summary.get('skipped_messages'):
            named = ', '.join(f'#{s["index"]}' for s in summary['skipped_messages'][:5])
            say(f'{bag}: skipped unusable messages {named} ({summary["refused"]})')
        cut.append(windows)
    return cut, skipped


def labelled(cut: Sequence[BagWindows], classes: Sequence[str],
             parts: Optional[Sequence[int]], counts: dict) -> tuple:
    """Return (training set, validation set) of `cut`'s labelled windows.

    `parts` None: each bag's time is split (`dataset.split`); `(0,)` or `(1,)`: every window of
    `cut` is training (bags trained on whole) or validation (the --val-bags). `counts` gets the
    windows left out, by reason.
    """
    index = {name: i for i, name in enumerate(classes)}
    sets = {0: ([], []), 1: ([], [])}
    for b, windows in enumerate(cut):
        labels = label_windows(windows, truth_labeller(windows.truth, windows))
        where = split(windows, VAL_SHARE) if parts is None else np.full(len(labels), parts[0])
        for w, (label, part) in enumerate(zip(labels, where)):
            if label == BOUNDARY:
                counts['across a boundary'] = counts.get('across a boundary', 0) + 1
            elif label == UNLABELLED:
                counts['unlabelled'] = counts.get('unlabelled', 0) + 1
            elif part < 0:
                counts['across the validation cut'] = counts.get('across the validation cut',
                                                                 0) + 1
            elif label not in index:
                counts[f'label {label!r} not trained'] = counts.get(
                    f'label {label!r} not trained', 0) + 1
            else:
                sets[int(part)][0].append((b, w))
                sets[int(part)][1].append(index[label])
    return tuple(LabelledSet(list(cut), np.array(items, int).reshape(-1, 2),
                             np.array(labels, int)) for items, labels in (sets[0], sets[1]))


def run_key(run: BagTraining, digests: Sequence[str], start: Start) -> str:
    """Return what a resumable state must match: the data, the truth, the settings."""
    fields = {'bags': list(digests), 'truth': [_truth_digest(t) for t in run.truth],
              'topic': run.topic, 'classes': start.classes, 'cutting': repr(start.cutting),
              'steps': run.steps, 'batch_size': run.batch_size, 'lr': run.lr,
              'weight_decay': run.weight_decay, 'seed': run.seed,
              'init': str(run.init or embedded_checkpoint())}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _truth_digest(truth: str) -> str:
    """SHA-256 of a truth file; a String topic's name as it is (the bag's hash covers it)."""
    return digest(Path(truth)) if Path(truth).is_file() else truth


def lr_at(step: int, steps: int, base: float) -> float:
    """Return the learning rate: a linear warm-up over a tenth of the steps, then a cosine."""
    warm = max(1, steps // 10)
    if step < warm:
        return base * (step + 1) / warm
    return base * 0.5 * (1 + np.cos(np.pi * (step - warm) / max(1, steps - warm)))


def augment(rng: np.random.Generator, clips: np.ndarray, shift: float = 0.1) -> np.ndarray:
    """Return uint8 clips changed in ways that keep any action's label: the camera's.

    Per clip, the same for all its frames: a shift of up to `shift` of the side (edges
    repeated), brightness, contrast and colour balance, and sensor noise. Nothing that could
    change what happens (no flips or time reversal: "moving left" stays left).
    """
    count, _, side = clips.shape[:3]
    out = np.empty_like(clips)
    most = max(1, int(round(shift * side)))
    for i in range(count):
        dy, dx = rng.integers(-most, most + 1, size=2)
        clip = np.roll(clips[i], (dy, dx), axis=(1, 2))
        if dy > 0:
            clip[:, :dy] = clip[:, dy:dy + 1]
        elif dy < 0:
            clip[:, dy:] = clip[:, dy - 1:dy]
        if dx > 0:
            clip[:, :, :dx] = clip[:, :, dx:dx + 1]
        elif dx < 0:
            clip[:, :, dx:] = clip[:, :, dx - 1:dx]
        x = clip.astype(np.float32)
        mean = x.mean()
        x = (x - mean) * rng.uniform(0.7, 1.3) + mean * rng.uniform(0.7, 1.3)
        x = x * rng.uniform(0.9, 1.1, size=3) + rng.normal(0, rng.uniform(0, 4), x.shape)
        out[i] = np.clip(x, 0, 255).astype(np.uint8)
    return out


def train_step(model, optimiser, normaliser: Normaliser, clips: np.ndarray,
               labels: np.ndarray) -> float:
    """One optimiser step on uint8 clips; return the loss."""
    model.train()
    logits = model(normaliser(torch.from_numpy(np.ascontiguousarray(clips))))
    loss = F.cross_entropy(logits, torch.from_numpy(labels).to(logits.device))
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimiser.step()
    return float(loss.detach())


@torch.inference_mode()
def validate(model, normaliser: Normaliser, data: LabelledSet, classes: Sequence[str]) -> dict:
    """Return accuracy and the confusion matrix (rows: truth) on `data`, a batch at a time."""
    model.eval()
    matrix = np.zeros((len(classes), len(classes)), int)
    for begin in range(0, len(data.classes), _VAL_BATCH):
        picks = np.arange(begin, min(begin + _VAL_BATCH, len(data.classes)))
        predicted = model(normaliser(torch.from_numpy(data.clips(picks)))).argmax(-1).numpy()
        np.add.at(matrix, (data.classes[picks], predicted), 1)
    return {'windows': int(matrix.sum()), 'accuracy': round(accuracy(matrix), 4),
            'confusion': {'labels': list(classes), 'matrix': matrix.tolist()}}


def prepare(run: BagTraining) -> dict:
    """Find and cut the bags, read the truth, label and split: what training needs.

    Raises DataError, TruthError or BagError with one line on bad input.
    """
    pairs = paired(run.bags, run.truth, '--bags')
    val_pairs = paired(run.val_bags, run.val_truth or run.truth, '--val-bags') \
        if run.val_bags else []
    cache = Path(str(run.out) + '.windows')
    probe = starting_point(run)          # the windowing, before the classes are known
    train_cut, skipped = cut_all(pairs, run.topic, probe.cutting, cache, run.progress)
    val_cut, val_skipped = cut_all(val_pairs, run.topic, probe.cutting, cache, run.progress)
    if not train_cut:
        raise DataError('no bag to train on could be read: ' +
                        '; '.join(s['reason'] for s in skipped))
    classes = found_labels(train_cut)
    if len(classes) < 2:
        raise DataError(f'{", ".join(sorted(set(run.truth)))}: training needs at least 2 '
                        f'labels, found {classes}')
    start = starting_point(run, classes)
    counts = {}
    train_set, val_set = labelled(train_cut, start.classes, None if not val_cut else (0,),
                                  counts)
    if val_cut:
        val_counts = {}
        _, val_set = labelled(val_cut, start.classes, (1,), val_counts)
        counts.update({f'validation bags: {k}': v for k, v in val_counts.items()})
    for i, name in enumerate(start.classes):
        if not (train_set.classes == i).any():
            raise DataError(f'label {name!r} of the truth has no windows to train on in '
                            f'{len(train_cut)} bag(s) (windows left out: {counts})')
    return {'start': start, 'train': train_set, 'val': val_set, 'counts': counts,
            'bags': train_cut, 'val_bags': val_cut, 'skipped': skipped + val_skipped}


def _state_path(out: Path) -> Path:
    return Path(str(out) + '.resume.pt')


def fit(run: BagTraining, data: dict) -> dict:
    """Train in this process from `data` (`prepare`); return the training record's figures.

    Writes a resumable state every `val_every` steps and on Ctrl-C, after the step under way
    (then raises KeyboardInterrupt); `run.resume` continues from it.
    """
    start, train_set = data['start'], data['train']
    key = run_key(run, [w.digest for w in data['bags']], start)
    torch.manual_seed(run.seed)
    rng = np.random.default_rng(run.seed)
    model, normaliser = start.model, Normaliser(start.mean, start.std)
    optimiser = torch.optim.AdamW(model.parameters(), lr=run.lr, weight_decay=run.weight_decay)
    step, history = 0, []
    state_path = _state_path(run.out)
    if run.resume:
        step, history = _resume(state_path, key, model, optimiser, rng)
    bar = Progress(run.steps, 'steps', run.progress)
    loss = float('nan')
    with _interruptible() as interrupted:
        while step < run.steps:
            for group in optimiser.param_groups:
                group['lr'] = lr_at(step, run.steps, run.lr)
            picks = train_set.draw(rng, run.batch_size)
            clips = train_set.clips(picks)
            if run.augment:
                clips = augment(rng, clips)
            loss = train_step(model, optimiser, normaliser, clips, train_set.classes[picks])
            step += 1
            if step % run.val_every == 0 or step == run.steps:
                history.append({'step': step, 'loss': round(loss, 4)})
                if step < run.steps:
                    _save_state(state_path, key, model, optimiser, rng, step, history)
            rate = step * run.batch_size / max(bar.elapsed(), 1e-9)
            bar.update(step, f'loss {loss:.3f}, {rate:.0f} windows/s')
            if interrupted and step < run.steps:
                bar.close()
                _save_state(state_path, key, model, optimiser, rng, step, history)
                say(f'interrupted at step {step} of {run.steps}: the state is in {state_path}; '
                    f'run the same command with --resume to continue')
                raise KeyboardInterrupt
    bar.close()
    return {'steps': step, 'seconds': round(bar.elapsed(), 1), 'history': history}


@contextlib.contextmanager
def _interruptible():
    """Note SIGINT (Ctrl-C) in the yielded list instead of raising, so a step ends whole.

    Only in the main thread (signals can be handled nowhere else); a second Ctrl-C still
    stops at once.
    """
    noted = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return

    def note(signum, frame):
        if noted:
            raise KeyboardInterrupt
        noted.append(signum)

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)


def _save_state(path: Path, key: str, model, optimiser, rng, step: int, history: list):
    partial = path.with_name(path.name + '.partial')
    torch.save({'key': key, 'step': step, 'model': model.state_dict(),
                'optimiser': optimiser.state_dict(), 'rng': rng.bit_generator.state,
                'torch_rng': torch.get_rng_state(), 'history': history}, partial)
    partial.replace(path)


def _resume(path: Path, key: str, model, optimiser, rng) -> tuple:
    if not path.is_file():
        raise DataError(f'--resume: no resumable state at {path}')
    try:
        state = torch.load(path, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a damaged file raises many types
        raise DataError(f'--resume: {path} cannot be read ({exc})') from None
    if state.get('key') != key:
        raise DataError(f'--resume: {path} was written by a run with other bags, truth or '
                        f'settings')
    model.load_state_dict(state['model'])
    optimiser.load_state_dict(state['optimiser'])
    rng.bit_generator.state = state['rng']
    torch.set_rng_state(state['torch_rng'])
    say(f'resuming at step {state["step"]} from {path}')
    return state['step'], state['history']


def finish(run: BagTraining, data: dict, model, figures: dict) -> dict:
    """Validate, write the checkpoint with its training record and the validation files."""
    start = data['start']
    normaliser = Normaliser(start.mean, start.std)
    result = validate(model, normaliser, data['val'], start.classes) \
        if len(data['val'].classes) else {'windows': 0, 'accuracy': None}
    training = {
        'command': run.command, 'bags': [str(w.bag) for w in data['bags']],
        'bag_sha256': [w.digest for w in data['bags']],
        'val_bags': [str(w.bag) for w in data['val_bags']],
        'val_bag_sha256': [w.digest for w in data['val_bags']],
        'skipped_bags': data['skipped'], 'topic': run.topic,
        'truth': [w.truth for w in data['bags']],
        'truth_sha256': [_truth_digest(w.truth) for w in data['bags']],
        'val_truth': [w.truth for w in data['val_bags']],
        'init': str(run.init or embedded_checkpoint()), 'seed': run.seed,
        'of_steps': run.steps, 'batch_size': run.batch_size, 'lr': run.lr,
        'weight_decay': run.weight_decay, 'workers': run.workers,
        'sampling': start.cutting.sampling.describe(), 'stride': start.cutting.stride,
        'train_windows': len(data['train'].classes), 'val_windows': result['windows'],
        'left_out': data['counts'], 'val_accuracy': result['accuracy'],
        'finished': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), **figures}
    save_checkpoint(run.out, model, start.classes, start.mean, start.std,
                    clip_fps=start.clip_fps, source='timesformer_train (recordings)',
                    training=training,
                    **({SYMMETRIES_KEY: start.symmetries} if start.symmetries else {}))
    out = Path(run.out)
    Path(str(out) + '.validation.json').write_text(json.dumps(
        {'training': training, **result}, indent=1) + '\n')
    if result['windows']:
        text = confusion_text(result['confusion']['matrix'], start.classes)
        Path(str(out) + '.confusion.txt').write_text(
            f'validation accuracy {100 * result["accuracy"]:.1f}% on {result["windows"]} '
            f'windows (rows: truth)\n{text}\n')
    _state_path(out).unlink(missing_ok=True)
    return {'training': training, **result}


def train_bags(run: BagTraining, on_ray: Optional[Callable] = None) -> dict:
    """Train on recordings as `run` says; return the report.

    In this process, or, with `run.workers` or `run.address`, by `on_ray(run, data)`: that is
    `finetune_ray.fit_on_ray`, which imports this module, so the command line passes it in.
    """
    data = prepare(run)
    start = data['start']
    say(f'{len(data["train"].classes)} training windows, {len(data["val"].classes)} '
        f'validation windows of {start.classes}; left out: {data["counts"] or "none"}; '
        f'sampling {start.cutting.sampling.describe()}')
    if run.workers or run.address:
        if on_ray is None:
            raise DataError('--workers and --address need Ray Train (finetune_ray.fit_on_ray)')
        model, figures = on_ray(run, data)
    else:
        figures = fit(run, data)
        model = start.model
    report = finish(run, data, model, figures)
    if report['windows']:
        say(f'validation accuracy {100 * report["accuracy"]:.1f}% on {report["windows"]} '
            f'windows (rows: truth)')
        say(confusion_text(report['confusion']['matrix'], start.classes))
    say(f'wrote {own_format_files(run.out)[0]}')
    return report


def add_arguments(parser):
    """Add the recordings' options to `timesformer_train train`."""
    group = parser.add_argument_group('training from recordings (README, "Teach it your own '
                                      'actions")')
    group.add_argument('--bags', nargs='+', help='bags, directories of bags or globs')
    group.add_argument('--topic', help='the image topic of the bags')
    group.add_argument('--truth', nargs='+',
                       help='CSV of start,end,label segments (header stamps in seconds), a CSV '
                            'of stamp,label, or a String topic: one for all the bags, or one '
                            'for each --bags argument')
    group.add_argument('--val-truth', nargs='+', default=(),
                       help="the --val-bags' truth, likewise (default: --truth)")
    group.add_argument('--val-bags', nargs='+', default=(),
                       help='validate on these (default: the last 20%% of each bag\'s time)')
    group.add_argument('--params-file', type=Path,
                       help="the node's parameters file: its sampling cuts the windows")
    group.add_argument('--resume', action='store_true',
                       help='continue from OUT.resume.pt (written on Ctrl-C)')
    group.add_argument('--workers', type=int, default=0,
                       help='train data-parallel on this many Ray Train workers (local runtime '
                            'on 127.0.0.1 unless --address)')
    group.add_argument('--address', help='a running Ray cluster to train on')


def _given(value, default):
    return default if value is None else value


def main(args, command: str, on_ray: Optional[Callable] = None) -> int:
    """Run `timesformer_train train --bags ...`; return the exit code (2: bad input)."""
    if not args.topic or not args.truth:
        print('timesformer_train: error: --bags needs --topic and --truth', file=sys.stderr)
        return 2
    if not args.threads:
        # The embedded model is tiny: a second thread costs more in synchronisation than it
        # gains (BENCHMARKS.md, "Training from recordings").
        torch.set_num_threads(1)
    try:
        run = BagTraining(
            bags=args.bags, topic=args.topic, truth=args.truth, out=args.out, init=args.init,
            val_bags=args.val_bags, val_truth=args.val_truth, params_file=args.params_file,
            steps=_given(args.steps, DEFAULT_STEPS),
            batch_size=_given(args.batch_size, DEFAULT_BATCH), lr=_given(args.lr, DEFAULT_LR),
            weight_decay=args.weight_decay, seed=args.seed,
            resume=args.resume, command=command, workers=args.workers, address=args.address)
        train_bags(run, on_ray)
    except KeyboardInterrupt:
        return 130
    except (DataError, TruthError, BagError, ValueError, OSError) as exc:
        print(f'timesformer_train: error: {exc}', file=sys.stderr)
        return 2
    return 0
