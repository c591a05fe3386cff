"""Procedural motion video: labelled clips for training and tests, endless camera streams.

A scene is one main object moving in one of the motion classes over a background, with small
distractor objects that drift on their own, camera noise and a brightness change. Everything
that must not matter varies: shape, colour, texture, size, position, speed, background style,
distractors, noise, brightness, and partial occlusion at the border.

Geometry is resolution-independent: positions and sizes are in units of the frame's shorter
side, origin at the centre. A square frame rendered at the model's size therefore shows the same
content as the centre crop of a wider camera frame, which is what the node feeds the model.
Everything is deterministic given a seed (`numpy.random.Generator`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

import cv2
import numpy as np

CLASSES = ('static', 'moving_left', 'moving_right', 'moving_up', 'moving_down', 'approaching',
           'receding')
# The class a clip shows when played backwards.
REVERSED = {'static': 'static', 'moving_left': 'moving_right', 'moving_right': 'moving_left',
            'moving_up': 'moving_down', 'moving_down': 'moving_up',
            'approaching': 'receding', 'receding': 'approaching'}
_DIRECTIONS = {'moving_left': (-1.0, 0.0), 'moving_right': (1.0, 0.0),
               'moving_up': (0.0, -1.0), 'moving_down': (0.0, 1.0)}

BACKGROUNDS = ('flat', 'gradient', 'texture', 'clutter')
SHAPES = ('circle', 'square', 'triangle', 'diamond', 'cross')


@dataclass(frozen=True)
class Style:
    """What a scene may look like. Hold a value out of training by leaving it out here."""

    backgrounds: Sequence[str] = BACKGROUNDS
    shapes: Sequence[str] = SHAPES
    noise: tuple = (0.0, 0.04)          # std of Gaussian camera noise, in [0, 1] intensity
    distractors: tuple = (0, 2)         # inclusive range of distractor objects
    # Speed of the main object, in frame units per second, and growth rate per second.
    speed: tuple = (0.4, 1.2)
    growth: tuple = (2.0, 5.0)

    def __post_init__(self):
        unknown = set(self.backgrounds) - set(BACKGROUNDS) or set(self.shapes) - set(SHAPES)
        if unknown:
            raise ValueError(f'unknown style values {sorted(unknown)}')


TRAIN_STYLE = Style(backgrounds=('flat', 'gradient', 'texture'))   # 'clutter' held out
# The start of a curriculum: plain scenes with larger motions, where a model trained from
# scratch first finds what distinguishes frame orders (the network is order-blind at
# initialisation: zero time embedding, zero temporal_fc).
EASY_STYLE = Style(backgrounds=('flat',), noise=(0.0, 0.0), distractors=(0, 0),
                   speed=(1.0, 2.0), growth=(4.0, 8.0))
HELD_OUT_BACKGROUND = Style(backgrounds=('clutter',))
HELD_OUT_NOISE = Style(noise=(0.06, 0.08))


@dataclass
class _Object:
    shape: str
    colour: np.ndarray                  # RGB in [0, 1]
    stripes: Optional[np.ndarray]       # second colour for a striped texture, or None
    angle: float
    pos: np.ndarray                     # (x, y) at t = 0, frame units
    size: float                         # radius at t = 0, frame units
    velocity: np.ndarray                # frame units per second
    growth: float                       # size multiplier per second

    def at(self, t: float):
        return self.pos + self.velocity * t, self.size * self.growth ** t


@dataclass
class Scene:
    """One motion segment: everything needed to render it at any time and resolution."""

    label: str
    background: str
    bg_seed: int
    bg_colours: np.ndarray
    main: _Object
    distractors: list = field(default_factory=list)
    noise: float = 0.0
    brightness: tuple = (1.0, 1.0)      # multiplier at t = 0 and at t = duration
    duration: float = 1.0
    noise_seed: int = 0


def _colour(rng: np.random.Generator, avoid: Optional[np.ndarray] = None) -> np.ndarray:
    for _ in range(20):
        colour = rng.uniform(0.0, 1.0, 3)
        if avoid is None or np.abs(colour - avoid).sum() > 0.6:
            return colour
    return 1.0 - avoid


def sample_scene(rng: np.random.Generator, label: str, style: Style = Style(),
                 max_duration: float = 3.0) -> Scene:
    """Sample a random scene of class `label` that keeps its main object largely in view."""
    if label not in CLASSES:
        raise ValueError(f'unknown motion class {label!r}; known: {CLASSES}')
    bg_colours = np.stack([_colour(rng), _colour(rng)])
    speed = rng.uniform(*style.speed)
    growth = rng.uniform(*style.growth)
    velocity = np.zeros(2)
    rate = 1.0
    duration = max_duration
    if label in _DIRECTIONS:
        direction = np.array(_DIRECTIONS[label])
        side = np.array([direction[1], direction[0]]) * rng.uniform(-0.25, 0.25)
        velocity = (direction + side) * speed
        duration = min(max_duration, 1.0 / speed)
        size = rng.uniform(0.1, 0.2)
        pos = -velocity * duration / 2 + rng.uniform(-0.15, 0.15, 2)
    elif label == 'approaching':
        size = rng.uniform(0.05, 0.1)
        rate = growth
        duration = min(max_duration, math.log(0.45 / size) / math.log(rate))
        pos = rng.uniform(-0.2, 0.2, 2)
    elif label == 'receding':
        size = rng.uniform(0.3, 0.45)
        rate = 1.0 / growth
        duration = min(max_duration, math.log(size / 0.05) / math.log(growth))
        pos = rng.uniform(-0.2, 0.2, 2)
    else:
        size = rng.uniform(0.1, 0.2)
        pos = rng.uniform(-0.3, 0.3, 2)
    colour = _colour(rng, avoid=bg_colours.mean(0))
    main = _Object(shape=str(rng.choice(style.shapes)), colour=colour,
                   stripes=_colour(rng, colour) if rng.random() < 0.3 else None,
                   angle=rng.uniform(0, 360), pos=pos, size=size, velocity=velocity,
                   growth=rate)
    distractors = []
    for _ in range(rng.integers(style.distractors[0], style.distractors[1] + 1)):
        distractors.append(_Object(
            shape=str(rng.choice(SHAPES)), colour=_colour(rng), stripes=None,
            angle=rng.uniform(0, 360), pos=rng.uniform(-0.6, 0.6, 2),
            size=rng.uniform(0.015, 0.035), velocity=rng.uniform(-0.06, 0.06, 2),
            growth=1.0))
    start = rng.uniform(0.75, 1.25)
    return Scene(label=label, background=str(rng.choice(style.backgrounds)),
                 bg_seed=int(rng.integers(2 ** 31)), bg_colours=bg_colours, main=main,
                 distractors=distractors, noise=rng.uniform(*style.noise),
                 brightness=(start, start * rng.uniform(0.9, 1.1)), duration=duration,
                 noise_seed=int(rng.integers(2 ** 31)))


def _background(scene: Scene, height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(scene.bg_seed)
    a, b = scene.bg_colours
    if scene.background == 'flat':
        return np.broadcast_to(a, (height, width, 3)).astype(np.float32)
    if scene.background == 'gradient':
        angle = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        ramp = (xs * math.cos(angle) + ys * math.sin(angle))
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
        return (a * (1 - ramp[..., None]) + b * ramp[..., None]).astype(np.float32)
    if scene.background == 'texture':
        cells = rng.uniform(0, 1, (int(rng.integers(4, 12)), int(rng.integers(4, 12))))
        noise = cv2.resize(cells.astype(np.float32), (width, height),
                           interpolation=cv2.INTER_CUBIC)
        # Half contrast: a texture is a background, not a field of object-like blobs.
        noise = 0.25 + 0.5 * np.clip(noise, 0, 1)[..., None]
        return (a * (1 - noise) + b * noise).astype(np.float32)
    # clutter: a flat background with many small static shapes
    image = np.ascontiguousarray(np.broadcast_to(a, (height, width, 3)), dtype=np.float32)
    unit = min(height, width)
    for _ in range(int(rng.integers(8, 20))):
        obj = _Object(shape=str(rng.choice(SHAPES)), colour=rng.uniform(0, 1, 3), stripes=None,
                      angle=rng.uniform(0, 360), pos=rng.uniform(-0.7, 0.7, 2),
                      size=rng.uniform(0.015, 0.06), velocity=np.zeros(2), growth=1.0)
        _draw(image, obj, obj.pos, obj.size, unit)
    return image


def _polygon(shape: str, centre: np.ndarray, radius: float, angle: float) -> np.ndarray:
    if shape == 'square':
        corners = [45, 135, 225, 315]
    elif shape == 'triangle':
        corners = [90, 210, 330]
    elif shape == 'diamond':
        corners = [0, 90, 180, 270]
    else:  # cross: twelve corners
        r, w = radius, radius * 0.35
        pts = np.array([(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r),
                        (-w, w), (-r, w), (-r, -w), (-w, -w)])
        rot = np.deg2rad(angle)
        rotation = np.array([[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]])
        return pts @ rotation.T + centre
    rad = np.deg2rad(np.array(corners) + angle)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1) * radius + centre


def _draw(image: np.ndarray, obj: _Object, pos: np.ndarray, size: float, unit: int):
    """Blend the object into `image` (float32 RGB), touching only its bounding box."""
    height, width = image.shape[:2]
    centre = np.array([width / 2, height / 2]) + pos * unit
    radius = max(size * unit, 0.75)
    reach = radius * 1.5 + 2
    x0, y0 = max(int(centre[0] - reach), 0), max(int(centre[1] - reach), 0)
    x1, y1 = min(int(centre[0] + reach) + 1, width), min(int(centre[1] + reach) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return
    local = centre - (x0, y0)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    shift = 4  # sub-pixel precision for smooth motion at low resolution
    if obj.shape == 'circle':
        cv2.circle(mask, tuple(int(v * 16) for v in local), int(radius * 16), 255, -1,
                   cv2.LINE_AA, shift)
    else:
        pts = (_polygon(obj.shape, local, radius, obj.angle) * 16).astype(np.int32)
        cv2.fillPoly(mask, [pts], 255, cv2.LINE_AA, shift)
    alpha = mask.astype(np.float32)[..., None] / 255.0
    colour = obj.colour.astype(np.float32)
    if obj.stripes is not None:
        period = max(radius / 1.5, 2.0)
        xs = np.arange(x0, x1, dtype=np.float32)[None, :] - centre[0]
        band = ((xs // period) % 2).astype(np.float32)[..., None]
        colour = colour * (1 - band) + obj.stripes.astype(np.float32) * band
    roi = image[y0:y1, x0:x1]
    roi *= 1 - alpha
    roi += alpha * colour


# Distinct noise frames per scene, cycled (drawing fresh noise is the costliest part of a large
# frame).
NOISE_BANK = 4


def _noise_bank(scene: Scene, height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(scene.noise_seed)
    return rng.normal(0, scene.noise, (NOISE_BANK, height, width, 3)).astype(np.float32)


def render(scene: Scene, t: float, height: int, width: int,
           background: Optional[np.ndarray] = None, noise: Optional[np.ndarray] = None,
           index: int = 0) -> np.ndarray:
    """Render the scene at time `t` (seconds) as an RGB uint8 (height, width, 3) image.

    `background` and `noise` (from `_background` / `_noise_bank`) may be passed in to reuse
    them across the frames of a scene; `index` picks the noise frame.
    """
    image = (background if background is not None
             else _background(scene, height, width)).copy()
    unit = min(height, width)
    for obj in scene.distractors:
        _draw(image, obj, *obj.at(t), unit)
    _draw(image, scene.main, *scene.main.at(t), unit)
    lo, hi = scene.brightness
    image *= lo + (hi - lo) * min(max(t / max(scene.duration, 1e-6), 0.0), 1.0)
    if scene.noise > 0:
        bank = noise if noise is not None else _noise_bank(scene, height, width)
        image += bank[index % len(bank)]
    np.clip(image, 0.0, 1.0, out=image)
    image *= 255.0
    return image.astype(np.uint8)


def make_clip(rng: np.random.Generator, label: str, size: int = 64, num_frames: int = 8,
              style: Style = Style(), fps: tuple = (12.0, 20.0)) -> np.ndarray:
    """Make a (T, size, size, 3) uint8 clip of class `label` sampled at a random frame rate."""
    scene = sample_scene(rng, label, style)
    rate = rng.uniform(*fps)
    span = (num_frames - 1) / rate
    start = rng.uniform(0.0, max(scene.duration - span, 0.0))
    background = _background(scene, size, size)
    noise = _noise_bank(scene, size, size) if scene.noise > 0 else None
    return np.stack([render(scene, start + k / rate, size, size, background, noise, k)
                     for k in range(num_frames)])


def balanced_clips(seed: int, count: int, classes: Sequence[str], draw) -> tuple:
    """`count` clips with balanced classes: (clips (N, T, H, W, 3) uint8, labels (N,) int).

    `draw(rng, label)` makes one clip; the labels are shuffled, then drawn in order, by one
    generator seeded with `seed`. Every training world's `make_dataset` is this.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % len(classes)
    rng.shuffle(labels)
    return np.stack([draw(rng, classes[i]) for i in labels]), labels


def make_dataset(seed: int, count: int, size: int = 64, num_frames: int = 8,
                 style: Style = Style(), classes: Sequence[str] = CLASSES,
                 fps: tuple = (12.0, 20.0)):
    """`count` clips with balanced classes (`balanced_clips`) of this module's scenes."""
    return balanced_clips(seed, count, classes,
                          lambda rng, label: make_clip(rng, label, size, num_frames, style, fps))


class SyntheticStream:
    """An endless camera: frames at `fps` with the true motion class of each frame.

    Motion segments follow `script` (a list of class names, cycled) or are drawn at random;
    each segment is a new scene that lasts as long as its object stays in view.
    """

    def __init__(self, seed: int = 0, width: int = 640, height: int = 480, fps: float = 30.0,
                 style: Style = Style(), script: Optional[Sequence[str]] = None,
                 max_segment_s: float = 3.0):
        for label in script or ():
            if label not in CLASSES:
                raise ValueError(f'unknown motion class {label!r} in script; known: {CLASSES}')
        self.rng = np.random.default_rng(seed)
        self.width, self.height, self.fps = width, height, fps
        self.style = style
        self.script = list(script) if script else None
        self.max_segment_s = max_segment_s
        self._segment = 0

    def segments(self) -> Iterator[Scene]:
        while True:
            if self.script:
                label = self.script[self._segment % len(self.script)]
            else:
                label = CLASSES[int(self.rng.integers(len(CLASSES)))]
            self._segment += 1
            yield sample_scene(self.rng, label, self.style, self.max_segment_s)

    def frames(self) -> Iterator[tuple]:
        """Yield (rgb uint8 (H, W, 3), label) forever."""
        for scene in self.segments():
            background = _background(scene, self.height, self.width)
            noise = _noise_bank(scene, self.height, self.width) if scene.noise > 0 else None
            count = max(1, int(round(scene.duration * self.fps)))
            for k in range(count):
                yield render(scene, k / self.fps, self.height, self.width, background, noise,
                             k), scene.label
