"""Training the embedded motion model, and the quality report written into the README.

    timesformer_train train --threads 1 --seed 0 --out timesformer_ros/data/motion
    timesformer_train report timesformer_ros/data/motion.json \
        --independent test/independent_clips.py --scenes test/independent_bags.py --real

Training clips are generated on the fly (seeded per step) from `world.py`, a wide world of real
photographs and many shapes, `camera_world.py`, a world that looks like a camera (perspective,
a hand, continuous scenes, the camera's own changes; `--camera-world SHARE`), and
`synthetic.py`, after a curriculum on easy synthetic scenes;
a folder of labelled clips (`--data DIR` with DIR/<class>/*.npy, each a (T, H, W, 3) uint8
array) trains on a user's own clips instead, with the folder's classes; `--bags` trains on
labelled rosbags, windowed as the node windows them (`finetune`). Validation and the
report use seeds the training never draws from; the report also scores an independent clip
generator that training never sees (the tests' `independent_clips.py`), continuous scenes of
its sibling (`independent_bags.py`, as bags through `evaluate`) and real footage.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import camera_world, finetune, footage, synthetic, world
from .checkpoints import (
    OFFICIAL_MEAN, OFFICIAL_STD, CheckpointError, load_checkpoint, own_format_files,
    save_checkpoint)
from .clip_folder import FolderClips, folder_classes
from .errors import brief
from .footage import FootageError, footage_dir
from .footage_labels import validation_windows
from .frames import Normaliser
from .model import ATTENTION_TYPES, TimeSformer, preset
from .progress import Progress
from .quality import (accuracy, confusion, independent_report, load_generator, predict,
                      real_report, reversal_rate)
from .rates import rate_problem
from .scene_quality import scene_report
from .views import KEY as SYMMETRIES_KEY, checkpoint_views, combine

LOGGER = logging.getLogger(__name__)

# Seed ranges: training draws from [0, 10**6), validation from VAL_SEED, the held-out report
# from REPORT_SEED; they never overlap.
VAL_SEED = 10 ** 7
REPORT_SEED = 2 * 10 ** 7
# The clip rate a preset is trained for when none is given (frames per second of the sampled
# clip): 8 frames span 0.7 s. The embedded model's first stages were trained at it and its last
# at 7.5 fps (0.93 s, so that a slow motion moves more input pixels: README), recorded in its
# checkpoint, which is the rate the node samples at.
DEFAULT_CLIP_FPS = 10.0
EMBEDDED_CLIP_FPS = 7.5
# The architecture fields a fine-tune may change (`TimeSformer.resized`).
RESIZABLE = ('img_size', 'patch_size')


_INDEX = {name: i for i, name in enumerate(synthetic.CLASSES)}
_REVERSED = np.array([_INDEX[synthetic.REVERSED[c]] for c in synthetic.CLASSES])
_HFLIP = np.array([_INDEX[{'moving_left': 'moving_right', 'moving_right': 'moving_left'}
                          .get(c, c)] for c in synthetic.CLASSES])
_VFLIP = np.array([_INDEX[{'moving_up': 'moving_down', 'moving_down': 'moving_up'}.get(c, c)]
                   for c in synthetic.CLASSES])
# What `augment` relies on, declared in every checkpoint trained on synthetic motion: the
# engine's test-time views (`views`) score the same copies of each window.
MOTION_SYMMETRIES = {'hflip': _HFLIP.tolist(), 'vflip': _VFLIP.tolist(),
                     'reverse': _REVERSED.tolist()}


DIRECTIONS = tuple(_INDEX[c] for c in ('moving_left', 'moving_right', 'moving_up',
                                       'moving_down'))


def synthetic_batch(rng: np.random.Generator, count: int, size: int, num_frames: int,
                    style: synthetic.Style,
                    classes: Sequence[int] = range(len(synthetic.CLASSES)),
                    clip_fps: float = DEFAULT_CLIP_FPS, wide: float = 0.0,
                    camera: float = 0.0,
                    camera_options: camera_world.Options = camera_world.Options()):
    """Draw `count` clips of the given class indices (uniformly): (clips, labels).

    A share `camera` of them comes from the camera-like world (`camera_world.py`, drawn
    with `camera_options`), a share
    `wide` from the wide training world (`world.py`), the rest from `synthetic.py` in `style`;
    all at clip rates drawn around `clip_fps`.
    """
    labels = rng.choice(np.asarray(classes), size=count)
    rates = clip_rates(clip_fps)
    clips = []
    for i in labels:
        draw = rng.random()
        if draw < camera:
            clips.append(camera_world.make_clip(rng, synthetic.CLASSES[i], size, num_frames,
                                                clip_fps, camera_options))
        elif draw < camera + wide:
            clips.append(world.make_clip(rng, synthetic.CLASSES[i], size, num_frames, clip_fps))
        else:
            clips.append(synthetic.make_clip(rng, synthetic.CLASSES[i], size, num_frames, style,
                                             rates))
    return np.stack(clips), labels


def augment(rng: np.random.Generator, clips: np.ndarray, labels: np.ndarray):
    """Augment synthetic motion clips with labels that stay true.

    The generator's physics makes these exact: random horizontal and vertical flips (swapping
    left/right and up/down), and every clip paired with its time reversal (swapping each
    motion with its reverse). The pairs are what teaches a network trained from scratch to use
    frame order: features that ignore the order cannot tell a clip from its reversal, yet
    their labels differ.
    """
    clips, labels = clips.copy(), labels.copy()
    h = rng.random(len(clips)) < 0.5
    clips[h] = clips[h][:, :, :, ::-1]
    labels[h] = _HFLIP[labels[h]]
    v = rng.random(len(clips)) < 0.5
    clips[v] = clips[v][:, :, ::-1]
    labels[v] = _VFLIP[labels[v]]
    return (np.concatenate([clips, clips[:, ::-1]]),
            np.concatenate([labels, _REVERSED[labels]]))


def _lr(step: int, steps: int, base: float, constant: int) -> float:
    """Return the learning rate: constant for `constant` steps, then a cosine decay to zero."""
    if step < constant:
        return base
    progress = (step - constant) / max(1, steps - constant)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


def clip_rates(clip_fps: float) -> tuple:
    """Return the range of clip rates drawn in training around `clip_fps`."""
    return clip_fps * world.RATE_SPREAD[0], clip_fps * world.RATE_SPREAD[1]


def curriculum_phase(step: int, steps: int, curriculum: float, directions_first: float,
                     style: synthetic.Style = synthetic.TRAIN_STYLE):
    """Return what training step `step` draws: (class indices, style, phase name).

    From scratch, the sign of a motion is the hard part: with all classes from the start the
    network settles on order-blind motion energy (static, translating, scaling) first. So the
    curriculum, the first `curriculum` share of the steps, shows plain scenes with larger
    motions (EASY_STYLE): in its first `directions_first` share of all steps only the four
    directions (where every clip and its reversal differ in label), then all classes. The
    steps after it draw all classes in `style`. `curriculum` 0 means no curriculum at all.
    """
    if step < min(directions_first, curriculum) * steps:
        return DIRECTIONS, synthetic.EASY_STYLE, 'directions, easy scenes'
    everything = range(len(synthetic.CLASSES))
    if step < curriculum * steps:
        return everything, synthetic.EASY_STYLE, 'all classes, easy scenes'
    return everything, style, 'all classes'


@dataclass(frozen=True)
class TrainConfig:
    """A training run; the defaults are the embedded model's recipe."""

    preset_name: str = 'motion'         # the architecture when not starting from `init`
    overrides: dict = field(default_factory=dict)   # TimeSformerConfig fields over the preset's
    steps: int = 12000
    batch_size: int = 32                # synthetic: half drawn, half their time reversals
    # The clip rate (frames per second) trained for, recorded in the checkpoint. Synthetic
    # clips are drawn around it; a folder's clips are taken as they are, at their own rate,
    # which only the user knows (None: the starting checkpoint's, else not recorded).
    clip_fps: Optional[float] = DEFAULT_CLIP_FPS
    wide: float = 0.8                   # share of clips from world.py after the curriculum
    camera: float = 0.0                 # share of clips from camera_world.py, likewise
    footage: float = 0.0                # share of those over real video, half with real movers
    camera_speed: tuple = camera_world.SPEED    # its translation speeds, short sides/s (low, high)
    camera_growth: tuple = camera_world.GROWTH  # its approaching/receding rates, x/s (low, high)
    camera_recent: float = 0.0          # its newest phase labels a window from this share on
    lr: float = 1e-3                    # AdamW
    weight_decay: float = 0.01
    seed: int = 0
    val_every: int = 500                # steps between validations (and checkpoint writes)
    val_clips: int = 350
    style: synthetic.Style = synthetic.TRAIN_STYLE
    curriculum: float = 0.2             # share of the steps on easy scenes first; 0: none
    directions_first: float = 0.12      # share of the steps, within those, on directions only
    data: Optional[Path] = None         # DIR/<class>/*.npy clips instead of synthetic motion
    init: Optional[Path] = None         # start from this checkpoint (fine-tuning)
    out: Optional[Path] = None          # the checkpoint, written at every validation
    command: str = ''                   # the command line, recorded in the checkpoint

    def __post_init__(self):
        for name in ('steps', 'batch_size', 'val_every', 'val_clips'):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'{name} must be a positive integer, got {value!r}')
        if self.data is None and self.batch_size < 2:
            raise ValueError(f'batch_size must be at least 2 on synthetic motion (clips and '
                             f'their reversals), got {self.batch_size}')
        if self.clip_fps is None and self.data is None:
            raise ValueError('clip_fps is needed for synthetic motion (the rate its clips are '
                             'drawn around)')
        if self.clip_fps is not None and rate_problem(self.clip_fps):
            raise ValueError(f'clip_fps {rate_problem(self.clip_fps)}')
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f'lr must be a finite number > 0, got {self.lr!r}')
        for name in ('curriculum', 'directions_first', 'wide', 'camera', 'footage'):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f'{name} must be a share in [0, 1], got {value!r}')
        self.camera_options        # raises on a bad speed or growth range
        if self.wide + self.camera > 1.0:
            raise ValueError(f'wide + camera must be at most 1 (shares of the clips), got '
                             f'{self.wide} + {self.camera}')
        if self.footage and self.camera and not footage.installed():
            raise ValueError(f'real footage is not in {footage.footage_dir()}: '
                             f'{footage.INSTALL_HINT}')

    @property
    def camera_options(self) -> camera_world.Options:
        """Return what the camera world draws for this run (its shares and ranges)."""
        return camera_world.Options(footage=self.footage, movers=self.footage / 2,
                                    speed=tuple(self.camera_speed),
                                    growth=tuple(self.camera_growth),
                                    recent=self.camera_recent)


def _starting_model(config: TrainConfig) -> tuple:
    """Return (model, classes, mean, std, clip_fps) that training starts from.

    The classes are the data's: the synthetic motions, or the clip folder's. A checkpoint
    `init` whose labels are not those classes gets a new head for them (logged); one whose
    input size or patch size is overridden is resized (`TimeSformer.resized`).
    """
    start = load_checkpoint(config.init) if config.init else None
    known = start.labels if start else synthetic.CLASSES
    classes = folder_classes(config.data, known) if config.data else list(synthetic.CLASSES)
    if start is None:
        architecture = preset(config.preset_name, num_classes=len(classes), **config.overrides)
        return (TimeSformer(architecture, weight_init='scratch'), classes, OFFICIAL_MEAN,
                OFFICIAL_STD, config.clip_fps)
    model = start.model
    fixed = sorted(set(config.overrides) - set(RESIZABLE))
    if fixed:
        raise ValueError(f'{", ".join(fixed)} cannot change when starting from {config.init}; '
                         f'only {" and ".join(RESIZABLE)} can')
    if config.overrides:
        size = {name: config.overrides.get(name, getattr(model.config, name))
                for name in RESIZABLE}
        model = model.resized(**size)
        LOGGER.info('%s resized to %d px in patches of %d (its weights carried over)',
                    config.init, size['img_size'], size['patch_size'])
    if start.labels != classes:
        LOGGER.info('%s has the classes %s, the data %s: its head is replaced by a new one '
                    'for %d classes', config.init, start.labels, classes, len(classes))
        model.reset_classifier(len(classes))
    return (model, classes, start.mean, start.std,
            config.clip_fps if config.clip_fps is not None else start.clip_fps)


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss): one line, exit 1, nothing more written."""


def _stop_unless_finite(value: torch.Tensor, what: str, step: int):
    """Stop training before a non-finite `value` reaches the weights or a checkpoint."""
    if not torch.isfinite(value):
        shown = float(value.detach())
        raise TrainingError(f'step {step + 1}: the {what} is {shown}; training stopped '
                            f'before it reached the weights, no checkpoint written at this step '
                            f'(try a lower --lr)')


def train(config: TrainConfig = TrainConfig()):
    """Train a preset, or continue from the checkpoint `config.init`; return (model, history).

    Synthetic training follows `curriculum_phase`; the learning rate stays constant through
    the curriculum (escaping the order-blind plateau needs it) and then decays on a cosine. On
    a folder of clips it decays from the start, and the accuracy reported at each validation
    is on the first window of the folder's own clips (a check of the fit, not a held-out
    score). The checkpoint is written at every validation, so a run stopped early keeps its
    latest state.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model, classes, mean, std, clip_fps = _starting_model(config)
    size, frames = model.config.img_size, model.config.num_frames
    normaliser = Normaliser(mean, std)
    folder = FolderClips(config.data, classes, size, frames) if config.data else None
    if folder:
        val_clips_arr, val_labels = folder.first_windows(config.val_clips)
    else:
        val_clips_arr, val_labels = synthetic.make_dataset(
            VAL_SEED + config.seed, config.val_clips, size, frames, config.style,
            fps=clip_rates(config.clip_fps))
        val_world = world.make_dataset(VAL_SEED + config.seed, config.val_clips, size, frames,
                                       config.clip_fps)
        val_camera = camera_world.make_dataset(VAL_SEED + config.seed, config.val_clips, size,
                                               frames, config.clip_fps) if config.camera else None
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    constant = 0 if folder else int(config.curriculum * config.steps)
    camera_options = config.camera_options
    started = time.monotonic()
    history = []
    score = ''
    phase = None
    bar = Progress(config.steps, 'steps')
    for step in range(config.steps):
        model.train()
        if folder:
            clips, labels = folder.batch(rng, config.batch_size)
        else:
            step_classes, step_style, name = curriculum_phase(
                step, config.steps, config.curriculum, config.directions_first, config.style)
            if name != phase:
                sys.stderr.write('\n')
                LOGGER.info('step %d: %s', step + 1, name)
                phase = name
            wide, camera = (config.wide, config.camera) if name == 'all classes' else (0, 0)
            clips, labels = augment(rng, *synthetic_batch(
                rng, config.batch_size // 2, size, frames, step_style, step_classes,
                config.clip_fps, wide, camera, camera_options))
        for group in optimiser.param_groups:
            group['lr'] = _lr(step, config.steps, config.lr, constant)
        logits = model(normaliser(torch.from_numpy(np.ascontiguousarray(clips))))
        loss = F.cross_entropy(logits, torch.from_numpy(labels))
        _stop_unless_finite(loss, 'loss', step)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        _stop_unless_finite(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0),
                            'gradient norm', step)
        try:
            optimiser.step()
        except RuntimeError as exc:     # a step past float range (a huge --lr)
            raise TrainingError(f'step {step + 1}: the optimiser step failed ({brief(exc)}); '
                                f'training stopped, no checkpoint written at this step (try a '
                                f'lower --lr)') from None
        loss = float(loss.detach())
        if (step + 1) % config.val_every == 0 or step + 1 == config.steps:
            acc = accuracy(model, val_clips_arr, val_labels, normaliser)
            sys.stderr.write('\n')
            if folder:
                history.append({'step': step + 1, 'loss': round(loss, 4),
                                'train_accuracy': round(acc, 4)})
                LOGGER.info('step %d: loss %.3f, accuracy on the training clips %.3f',
                            step + 1, loss, acc)
                score = f'train {acc:.3f}'
            else:
                rev = reversal_rate(model, val_clips_arr, val_labels, normaliser)
                wide_acc = accuracy(model, *val_world, normaliser)
                history.append({'step': step + 1, 'loss': round(loss, 4),
                                'val_accuracy': round(acc, 4), 'val_reversal': round(rev, 4),
                                'val_world_accuracy': round(wide_acc, 4)})
                LOGGER.info('step %d: loss %.3f, validation accuracy %.3f, reversal %.3f, '
                            'world %.3f', step + 1, loss, acc, rev, wide_acc)
                score = f'val {acc:.3f} world {wide_acc:.3f}'
                if val_camera is not None:
                    camera_acc = accuracy(model, *val_camera, normaliser)
                    history[-1]['val_camera_world_accuracy'] = round(camera_acc, 4)
                    LOGGER.info('step %d: camera world %.3f', step + 1, camera_acc)
                    score += f' camera {camera_acc:.3f}'
            if config.out:
                _save(config, model, classes, mean, std, clip_fps, step + 1, started, history)
        bar.update(step + 1, f'loss {loss:.3f} {score}'.strip())
    bar.close()
    model.eval()
    if config.out:
        LOGGER.info('wrote %s', own_format_files(config.out)[0])
    return model, history


def _save(config: TrainConfig, model: TimeSformer, classes: list, mean, std,
          clip_fps: Optional[float], steps: int, started: float, history: list):
    """Write the checkpoint with what the run was and how far it got."""
    save_checkpoint(
        config.out, model, classes, mean, std, clip_fps=clip_fps,
        source=f'timesformer_train ({config.data or "synthetic motion"})',
        **({} if config.data else {SYMMETRIES_KEY: MOTION_SYMMETRIES}),
        training={'command': config.command, 'steps': steps, 'of_steps': config.steps,
                  'batch_size': config.batch_size, 'lr': config.lr,
                  'weight_decay': config.weight_decay, 'seed': config.seed,
                  'curriculum': config.curriculum, 'directions_first': config.directions_first,
                  'clip_fps': config.clip_fps, 'wide': config.wide, 'camera': config.camera,
                  'footage': config.footage, 'camera_speed': list(config.camera_speed),
                  'camera_growth': list(config.camera_growth),
                  'camera_recent': config.camera_recent,
                  'init': str(config.init) if config.init else None,
                  'seconds': round(time.monotonic() - started),
                  'history': history})


def report(checkpoint: Path, clips: int = 2100, seed: int = REPORT_SEED,
           independent: Optional[Path] = None, independent_clips: int = 700,
           real: Optional[Path] = None, scenes: Optional[Path] = None,
           scene_count: int = 6, views: str = 'mirrors') -> dict:
    """Measure a motion checkpoint on held-out synthetic clips and an independent generator.

    Synthetic: accuracy, reversal, confusion matrix and held-out styles, at the checkpoint's
    clip rate; the generator (`independent`, a file): `quality.independent_report`; real
    footage (`real`, the footage folder): `quality.real_report` on the validation windows of
    `footage_labels`; continuous scenes (`scenes`, a scene writer's file):
    `scene_quality.scene_report`; and CPU time per window at batch 1 on one thread. `views`: the
    test-time views of the clip figures and the time (the node's `test_time_views`).
    """
    ckpt = load_checkpoint(checkpoint)
    model, cfg = ckpt.model, ckpt.config
    normaliser = Normaliser(ckpt.mean, ckpt.std)
    clip_fps = ckpt.clip_fps or DEFAULT_CLIP_FPS
    copies = checkpoint_views(ckpt, views)
    results = {'checkpoint': str(checkpoint), 'attention_type': cfg.attention_type,
               'clip_fps': ckpt.clip_fps, 'test_time_views': 1 + len(copies)}
    data, labels = synthetic.make_dataset(seed, clips, cfg.img_size, cfg.num_frames,
                                          synthetic.TRAIN_STYLE, fps=clip_rates(clip_fps))
    predicted = predict(model, data, normaliser, views=copies)
    results['accuracy'] = round(float((predicted == labels).mean()), 4)
    results['reversal'] = round(reversal_rate(model, data, labels, normaliser, views=copies), 4)
    results['confusion'] = {'labels': list(ckpt.labels),
                            'matrix': confusion(labels, predicted, len(ckpt.labels))}
    for name, style in (('held_out_background_clutter', synthetic.HELD_OUT_BACKGROUND),
                        ('held_out_noise_0.06_0.08', synthetic.HELD_OUT_NOISE)):
        d, lab = synthetic.make_dataset(seed + 1, clips // 3, cfg.img_size, cfg.num_frames,
                                        style, fps=clip_rates(clip_fps))
        results[name] = round(accuracy(model, d, lab, normaliser, copies), 4)
    results['clips'] = clips
    if independent is not None:
        generator = load_generator(independent)
        results['independent'] = independent_report(
            ckpt, generator, independent_clips, seed, clip_fps, views=views)
    if scenes is not None:
        results['continuous_scenes'] = scene_report(
            str(checkpoint), load_generator(scenes).write_scene, scene_count, seed)
    if real is not None:
        results['real_footage'] = real_report(ckpt, validation_windows(
            cfg.num_frames, clip_fps, cfg.img_size, folder=real), views)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    one = normaliser(torch.from_numpy(data[:1]))
    with torch.inference_mode():
        for _ in range(5):
            combine(model, one, model(one), copies)
        times = []
        for _ in range(50):
            start = time.perf_counter()
            combine(model, one, model(one), copies)
            times.append(time.perf_counter() - start)
    torch.set_num_threads(threads)
    results['cpu_ms_per_window_p50_one_thread'] = round(float(np.median(times)) * 1000, 2)
    return results


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the timesformer_train console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ['locator']:
        from .train_locator import main as train_locator
        return train_locator(argv[1:], DEFAULT_CLIP_FPS, VAL_SEED)
    if argv[:1] == ['average']:
        from .average import main as average
        return average(argv[1:])
    parser = argparse.ArgumentParser(prog='timesformer_train', description=__doc__.strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    tr = sub.add_parser('train', help='train a preset on synthetic motion (or --data)')
    tr.add_argument('--preset', default='motion')
    tr.add_argument('--attention-type', choices=ATTENTION_TYPES)
    tr.add_argument('--img-size', type=int,
                    help="the input size in pixels (default the preset's or --init's); with "
                         '--init the model is resized, its weights carried over')
    tr.add_argument('--patch-size', type=int,
                    help="the patch size in pixels, likewise (the patch embedding resampled)")
    tr.add_argument('--steps', type=int, help='default 12000 (--bags: 300)')
    tr.add_argument('--clip-fps', type=float,
                    help='the clip rate (frames per second of the sampled clip) to train for, '
                         'recorded in the checkpoint: the node samples at it (synthetic: '
                         f'default {DEFAULT_CLIP_FPS:g}; --data: the rate of your clips)')
    tr.add_argument('--wide', type=float, default=0.8,
                    help="share of the clips from the wide world (world.py) after the "
                         "curriculum; the rest from synthetic.py")
    tr.add_argument('--camera-world', type=float, default=0.0,
                    help='share of the clips from the camera-like world (camera_world.py: '
                         'perspective, a hand, continuous scenes, slow motions) after the '
                         'curriculum; with --wide, at most 1 together')
    tr.add_argument('--real-footage', type=float, default=0.0,
                    help='share of the camera-world scenes over real video (footage.py, the '
                         "videos' training parts; make footage installs them), half of those "
                         'with a real tracked mover as the object')
    tr.add_argument('--camera-speed', type=float, nargs=2, metavar=('LOW', 'HIGH'),
                    default=camera_world.SPEED,
                    help='the camera world\'s translation speeds, short sides per second '
                         '(default %(default)s; the embedded model\'s last stage: 0.05 0.6)')
    tr.add_argument('--camera-growth', type=float, nargs=2, metavar=('LOW', 'HIGH'),
                    default=camera_world.GROWTH,
                    help='the camera world\'s approaching/receding rates, size factor per second '
                         '(default %(default)s; the embedded model\'s last stages: 1.2 2)')
    tr.add_argument('--camera-recent', type=float, default=0.0, metavar='SHARE',
                    help='label a camera-world window across a change by its newest phase once '
                         'that covers SHARE of it (default 0: the phase covering 0.7 of it; '
                         'otherwise 0.12 < SHARE < 0.7; the embedded model\'s last stage: 0.3); '
                         'a model taught so announces a change sooner')
    tr.add_argument('--batch-size', type=int, help='default 32 (--bags: 16)')
    tr.add_argument('--lr', type=float, help='default 1e-3 (--bags: 5e-4)')
    tr.add_argument('--seed', type=int, default=0)
    tr.add_argument('--weight-decay', type=float, default=0.01)
    tr.add_argument('--val-every', type=int, default=500)
    tr.add_argument('--curriculum', type=float, default=0.2,
                    help='share of the steps on easy scenes first (0: no curriculum)')
    tr.add_argument('--directions-first', type=float, default=0.12,
                    help='share of the steps, at the start of the curriculum, on the four '
                         'directions only')
    tr.add_argument('--threads', type=int, default=0, help='torch CPU threads (0: default)')
    tr.add_argument('--data', type=Path,
                    help='DIR/<class>/*.npy clips instead of synthetic; the classes are '
                         "DIR's subdirectories")
    tr.add_argument('--init', type=Path,
                    help='start from this checkpoint (fine-tuning); a new head when its '
                         'classes are not those of the data')
    tr.add_argument('--out', type=Path, required=True, help='output checkpoint path')
    finetune.add_arguments(tr)
    sub.add_parser('locator', add_help=False,
                   help='train the localisation head of a checkpoint, its classifier frozen '
                        '(timesformer_train locator --help)')
    sub.add_parser('average', add_help=False,
                   help='the mean of the weights of fine-tunes of one model '
                        '(timesformer_train average --help)')
    rep = sub.add_parser('report', help='quality figures of a trained motion model')
    rep.add_argument('checkpoint', type=Path)
    rep.add_argument('--clips', type=int, default=2100)
    rep.add_argument('--independent', type=Path,
                     help="an independent clip generator's file (test/independent_clips.py) "
                          'to score the model on as well')
    rep.add_argument('--independent-clips', type=int, default=700)
    rep.add_argument('--scenes', type=Path,
                     help="an independent scene writer's file (test/independent_bags.py): "
                          'score the model on its continuous scenes as well, as bags through '
                          'timesformer_bag evaluate')
    rep.add_argument('--scene-count', type=int, default=6, help='scenes of 60 s (default 6)')
    rep.add_argument('--real', type=Path, nargs='?', const=footage_dir(), metavar='DIR',
                     help='also score labelled windows of real footage (the validation parts, '
                          f'README "Real footage"); DIR default {footage_dir()}, installed by '
                          '`make footage`')
    rep.add_argument('--views', default='mirrors', help='test-time views of the clip figures: '
                     'mirrors (default), all, none or a list (--scenes: the node\'s defaults)')
    rep.add_argument('--json', type=Path, help='also write the figures to this file')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    if args.command == 'train':
        if args.threads:
            torch.set_num_threads(args.threads)
        overrides = {name: getattr(args, name) for name in ('attention_type',) + RESIZABLE
                     if getattr(args, name) is not None}
        command = 'timesformer_train ' + ' '.join(shlex.quote(a) for a in argv)
        if args.bags:
            from .finetune_ray import fit_on_ray
            return finetune.main(args, command, fit_on_ray)
        try:
            train(TrainConfig(
                preset_name=args.preset, overrides=overrides,
                steps=12000 if args.steps is None else args.steps,
                batch_size=32 if args.batch_size is None else args.batch_size,
                lr=1e-3 if args.lr is None else args.lr, weight_decay=args.weight_decay,
                seed=args.seed, val_every=args.val_every, curriculum=args.curriculum,
                directions_first=args.directions_first, wide=args.wide,
                camera=args.camera_world, footage=args.real_footage,
                camera_speed=tuple(args.camera_speed), camera_growth=tuple(args.camera_growth),
                camera_recent=args.camera_recent,
                clip_fps=args.clip_fps if args.clip_fps is not None else
                None if args.data else DEFAULT_CLIP_FPS,
                data=args.data, init=args.init,
                out=args.out, command=command))
        except (ValueError, CheckpointError) as exc:
            print(f'timesformer_train: error: {exc}', file=sys.stderr)
            return 2
        except TrainingError as exc:
            sys.stderr.write('\n')
            print(f'timesformer_train: error: {exc}', file=sys.stderr)
            return 1
        return 0
    try:
        results = report(args.checkpoint, args.clips, independent=args.independent,
                         independent_clips=args.independent_clips, real=args.real,
                         scenes=args.scenes, scene_count=args.scene_count, views=args.views)
    except (FootageError, ValueError, FileNotFoundError) as exc:
        print(f'timesformer_train: error: {brief(exc, with_type=False)}', file=sys.stderr)
        return 2
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
