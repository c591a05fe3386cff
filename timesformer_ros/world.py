"""The embedded model's training world: real photographs, many shapes, the whole envelope.

`synthetic.py` draws one family of scenes (its own shapes over flat, gradient or blotchy
backgrounds); a model trained only on it learns that look. This world varies everything that
must not decide the label, far beyond any one test set:

- backgrounds: crops of real photographs (the scikit-image sample images, shipped in its
  wheel: people, animals, rockets, bricks, grass, galaxies, microscopy...), at random scale,
  colour and contrast, or synthetic.py's backgrounds;
- objects: irregular and regular polygons, stars, ellipses, rings, smooth blobs, the horse
  silhouette and cut-outs of photographs, filled with a flat colour, a gradient, stripes, a
  checkerboard or a patch of another photograph, spinning a little;
- motion: size (enclosing diameter) 0.07-0.3 of the short side at mid-clip, speed 0.2-1.5 short
  sides per second within 20 degrees of an axis, growth 1.5x-6x per second (log-uniform, so
  the slow end is as common as the fast), ease-in/out, and sometimes a partly hidden object;
- the camera: distractors that stay or jitter, brightness flicker, sensor noise, blur, JPEG
  artefacts, and a clip rate drawn around the rate the model is trained for.

The object is drawn once per clip as an RGBA template at high resolution and warped into each
frame (sub-pixel position and scale, area-averaged), so slow motions move smoothly at the
model's small input size. Deterministic given a `numpy.random.Generator`.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from . import synthetic
from .synthetic import CLASSES

SIZE = (0.07, 0.3)              # enclosing diameter at mid-clip, fraction of the short side
SPEED = (0.2, 1.5)              # short sides per second
GROWTH = (1.5, 6.0)             # size factor per second
MAX_DEVIATION_DEG = 20.0        # a translation's angle to its named axis
RATE_SPREAD = (0.8, 1.25)       # clip rates drawn around the trained one, as factors
_TEMPLATE = 64                  # side of the object template, pixels
_AXES = {'moving_left': (-1.0, 0.0), 'moving_right': (1.0, 0.0),
         'moving_up': (0.0, -1.0), 'moving_down': (0.0, 1.0)}


@lru_cache(maxsize=1)
def photographs() -> tuple:
    """Return the real photographs this world draws from, as float32 RGB in [0, 1].

    They are the sample images that scikit-image ships in its wheel (no download). Training
    needs scikit-image (requirements/test.txt, or the `train` extra); nothing else does.
    """
    try:
        import skimage
    except ImportError as error:   # pragma: no cover - the set-up installs it
        raise RuntimeError('training the embedded model needs scikit-image for its real '
                           'photographs: pip install "timesformer_ros[train]"') from error
    folder = Path(skimage.__file__).parent / 'data'
    names = ('astronaut.png', 'brick.png', 'camera.png', 'chelsea.png', 'coffee.png',
             'coins.png', 'grass.png', 'gravel.png', 'hubble_deep_field.jpg', 'ihc.png',
             'moon.png', 'motorcycle_left.png', 'motorcycle_right.png', 'page.png',
             'retina.jpg', 'rocket.jpg', 'text.png', 'cell.png', 'color.png')
    images = []
    for name in names:
        image = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
        if image is None:
            continue
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        scale = 384 / min(image.shape[:2])        # keep crops cheap: short side 384 px
        if scale < 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        images.append(np.ascontiguousarray(image))
    if len(images) < 10:
        raise RuntimeError(f'found only {len(images)} photographs under {folder}')
    return tuple(images)


@lru_cache(maxsize=1)
def _horse() -> np.ndarray:
    import skimage
    mask = cv2.imread(str(Path(skimage.__file__).parent / 'data' / 'horse.png'),
                      cv2.IMREAD_GRAYSCALE)
    return (mask < 128).astype(np.float32)


def _photo_crop(rng: np.random.Generator, side_h: int, side_w: int) -> np.ndarray:
    """Return a (side_h, side_w, 3) crop of a random photograph, rescaled and colour-jittered."""
    photo = photographs()[int(rng.integers(len(photographs())))]
    height, width = photo.shape[:2]
    zoom = rng.uniform(0.25, 1.0)              # share of the photo's short side shown
    crop_h = max(8, int(min(height, width) * zoom))
    crop_w = min(width, max(8, int(crop_h * side_w / side_h)))
    y = int(rng.integers(0, height - crop_h + 1))
    x = int(rng.integers(0, width - crop_w + 1))
    patch = cv2.resize(photo[y:y + crop_h, x:x + crop_w], (side_w, side_h),
                       interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    if rng.random() < 0.2:
        patch = np.repeat(patch.mean(-1, keepdims=True), 3, axis=-1)
    gain = rng.uniform(0.6, 1.3, 3).astype(np.float32) * rng.uniform(0.7, 1.2)
    return np.clip(patch * gain + rng.uniform(-0.15, 0.15), 0, 1).astype(np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    kind = rng.random()
    if kind < 0.55:
        return _photo_crop(rng, size, size)
    if kind < 0.75:                            # smooth colour noise
        cells = int(rng.integers(2, 9))
        field = rng.uniform(0, 1, (cells, cells, 3)).astype(np.float32)
        return cv2.resize(field, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    style = synthetic.Style(backgrounds=synthetic.BACKGROUNDS)
    scene = synthetic.sample_scene(rng, 'static', style)
    return synthetic._background(scene, size, size).copy()


def _polygon(rng: np.random.Generator) -> np.ndarray:
    count = int(rng.integers(3, 11))
    angles = np.sort(rng.uniform(0, 2 * math.pi, count)) if rng.random() < 0.5 else \
        np.linspace(0, 2 * math.pi, count, endpoint=False) + rng.uniform(0, math.pi)
    radii = rng.uniform(0.45, 1.0, count) if rng.random() < 0.6 else np.ones(count)
    if rng.random() < 0.25 and count >= 5:     # a star
        angles = np.linspace(0, 2 * math.pi, 2 * count, endpoint=False)
        radii = np.tile([1.0, rng.uniform(0.35, 0.65)], count)
    return np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)


def _shape_mask(rng: np.random.Generator) -> np.ndarray:
    """Return a (_TEMPLATE, _TEMPLATE) float32 mask, its enclosing circle the template's."""
    side = _TEMPLATE
    mask = np.zeros((side * 2, side * 2), np.uint8)
    centre, radius = side, side * 0.95
    kind = rng.random()
    if kind < 0.4:
        points = _polygon(rng) * radius + centre
        cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 255, cv2.LINE_AA)
    elif kind < 0.6:
        axes = (int(radius), int(radius * rng.uniform(0.35, 1.0)))
        cv2.ellipse(mask, (centre, centre), axes, rng.uniform(0, 180), 0, 360, 255, -1,
                    cv2.LINE_AA)
        if rng.random() < 0.3:                 # a ring
            inner = (int(axes[0] * rng.uniform(0.4, 0.7)), int(axes[1] * rng.uniform(0.4, 0.7)))
            cv2.ellipse(mask, (centre, centre), inner, 0, 0, 360, 0, -1, cv2.LINE_AA)
    elif kind < 0.8:                           # a smooth blob
        cells = rng.uniform(0, 1, (5, 5)).astype(np.float32)
        field = cv2.resize(cells, (side * 2, side * 2), interpolation=cv2.INTER_CUBIC)
        ys, xs = np.mgrid[-1:1:side * 2j, -1:1:side * 2j]
        field = field - 1.2 * (xs ** 2 + ys ** 2)
        mask = ((field > np.quantile(field, 0.8)) * 255).astype(np.uint8)
    elif kind < 0.9:
        horse = _horse()
        scale = side * 1.8 / max(horse.shape)
        small = cv2.resize(horse, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        y0, x0 = (side * 2 - small.shape[0]) // 2, (side * 2 - small.shape[1]) // 2
        mask[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = (small * 255).astype(np.uint8)
    else:                                      # a glyph
        text = chr(int(rng.choice([rng.integers(65, 91), rng.integers(48, 58)])))
        font = int(rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_TRIPLEX]))
        cv2.putText(mask, text, (side // 2, side * 3 // 2), font, side / 22, 255,
                    int(side / 6), cv2.LINE_AA)
    if rng.random() < 0.5:
        mask = mask[:, ::-1]
    return _fit(mask.astype(np.float32) / 255.0)


def _fit(mask: np.ndarray) -> np.ndarray:
    """Centre the mask's pixels, scaled so that their enclosing circle fills the template."""
    ys, xs = np.nonzero(mask > 0.5)
    if len(xs) == 0:
        mask = np.zeros_like(mask)
        cv2.circle(mask, (mask.shape[1] // 2, mask.shape[0] // 2), mask.shape[0] // 3, 1.0, -1)
        ys, xs = np.nonzero(mask > 0.5)
    cy, cx = ys.mean(), xs.mean()
    reach = max(np.sqrt((ys - cy) ** 2 + (xs - cx) ** 2).max(), 1.0)
    scale = (_TEMPLATE / 2 - 1) / reach
    matrix = np.array([[scale, 0, _TEMPLATE / 2 - cx * scale],
                       [0, scale, _TEMPLATE / 2 - cy * scale]], np.float32)
    return cv2.warpAffine(mask, matrix, (_TEMPLATE, _TEMPLATE), flags=cv2.INTER_AREA)


def _fill(rng: np.random.Generator, avoid: np.ndarray) -> np.ndarray:
    """Return the object's (_TEMPLATE, _TEMPLATE, 3) paint, far enough from `avoid` on average."""
    side = _TEMPLATE
    kind = rng.random()
    if kind < 0.35:
        return _photo_crop(rng, side, side)
    first = rng.uniform(0, 1, 3).astype(np.float32)
    if np.abs(first - avoid).sum() < 0.5:
        first = (1.0 - avoid).astype(np.float32)
    second = rng.uniform(0, 1, 3).astype(np.float32)
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32) / side
    angle = rng.uniform(0, math.pi)
    along = xs * math.cos(angle) + ys * math.sin(angle)
    if kind < 0.6:
        weight = np.zeros_like(xs)
    elif kind < 0.75:
        weight = along
    elif kind < 0.9:
        weight = (np.floor(along * rng.integers(3, 9)) % 2).astype(np.float32)
    else:
        cells = int(rng.integers(3, 8))
        weight = ((np.floor(xs * cells) + np.floor(ys * cells)) % 2).astype(np.float32)
    return first + weight[..., None] * (second - first)


def _positions(rng: np.random.Generator, label: str, times: np.ndarray, size: float):
    """Return per-frame centres (T, 2) in short sides from the frame centre, and diameters."""
    span = times[-1] - times[0]
    ease = rng.uniform(0, 0.5) if rng.random() < 0.4 else 0.0
    tau = (times - times[0]) / max(span, 1e-6)
    tau = tau - ease * np.sin(2 * math.pi * tau) / (2 * math.pi)     # ease-in/out
    progress = (tau - 0.5) * span                                     # seconds from mid-clip
    diameters = np.full(len(times), size)
    velocity = np.zeros(2)
    if label in _AXES:
        speed = math.exp(rng.uniform(*np.log(SPEED)))
        angle = math.radians(rng.uniform(-MAX_DEVIATION_DEG, MAX_DEVIATION_DEG))
        x, y = _AXES[label]
        velocity = speed * np.array([x * math.cos(angle) - y * math.sin(angle),
                                     x * math.sin(angle) + y * math.cos(angle)])
    elif label in ('approaching', 'receding'):
        growth = math.exp(rng.uniform(*np.log(GROWTH)))
        growth = growth if label == 'approaching' else 1.0 / growth
        diameters = size * growth ** progress
        velocity = rng.uniform(-0.05, 0.05, 2)
    offsets = velocity[None, :] * progress[:, None]
    reach = 0.5 - diameters.max() / 2                 # the object stays in view...
    if rng.random() < 0.15:                           # ...except sometimes, partly
        reach += diameters.max() * rng.uniform(0.2, 0.45)
    low = -reach - offsets.min(0)
    high = reach - offsets.max(0)
    centre = np.where(low < high, rng.uniform(np.minimum(low, high), np.maximum(low, high)),
                      (low + high) / 2)
    return centre[None, :] + offsets, diameters


def _pyramid(template: np.ndarray) -> list:
    """Return the template area-averaged to halving sides, down to 4 pixels."""
    levels = [template]
    while levels[-1].shape[0] > 4:
        side = levels[-1].shape[0] // 2
        levels.append(cv2.resize(levels[-1], (side, side), interpolation=cv2.INTER_AREA))
    return levels


def _warp(levels: list, centre: np.ndarray, diameter: float, angle: float,
          size: int) -> np.ndarray:
    """Draw the template pyramid's level nearest above the diameter, warped into the frame."""
    pixels = diameter * size
    image = levels[0]
    for level in levels:
        if level.shape[0] >= pixels:
            image = level
    side = image.shape[0]
    matrix = cv2.getRotationMatrix2D((side / 2, side / 2), angle, pixels / side)
    matrix[:, 2] += (centre + 0.5) * size - side / 2
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _distractors(rng: np.random.Generator, count: int, frames: int) -> list:
    """Return small static or jittering objects: (template RGBA, centres (T, 2), diameter)."""
    found = []
    for _ in range(count):
        mask = _shape_mask(rng)
        paint = _fill(rng, rng.uniform(0, 1, 3))
        centre = rng.uniform(-0.45, 0.45, 2)
        jitter = rng.uniform(0, 0.006) if rng.random() < 0.5 else 0.0
        centres = centre[None, :] + rng.normal(0, jitter, (frames, 2))
        found.append((_pyramid(np.dstack([paint, mask])), centres, rng.uniform(0.03, 0.09)))
    return found


def make_clip(rng: np.random.Generator, label: str, size: int = 48, num_frames: int = 8,
              clip_fps: float = 10.0) -> np.ndarray:
    """Make a (T, size, size, 3) uint8 clip of class `label` at a rate around `clip_fps`."""
    return make_clip_and_boxes(rng, label, size, num_frames, clip_fps)[0]


def make_clip_and_boxes(rng: np.random.Generator, label: str, size: int = 48,
                        num_frames: int = 8, clip_fps: float = 10.0) -> tuple:
    """`make_clip`, and the main object's box in each frame: (clip, boxes (T, 4) float32).

    A box is (x_min, y_min, x_max, y_max) in pixels (edges: 0..size) around the object's
    drawn pixels of at least half opacity, NaN where none is in view. The random draws are
    `make_clip`'s, so a seed gives the same clip either way.
    """
    if label not in CLASSES:
        raise ValueError(f'unknown motion class {label!r}; known: {CLASSES}')
    rate = clip_fps * rng.uniform(*RATE_SPREAD)
    times = np.arange(num_frames) / rate
    background = _background(rng, size)
    mask = _shape_mask(rng)
    paint = _fill(rng, background.reshape(-1, 3).mean(0))
    template = _pyramid(np.dstack([paint, mask]))
    diameter = math.exp(rng.uniform(*np.log(SIZE)))
    centres, diameters = _positions(rng, label, times, diameter)
    spin = rng.uniform(-30, 30) if label != 'static' and rng.random() < 0.5 else 0.0
    angle0 = rng.uniform(0, 360)
    distractors = _distractors(rng, int(rng.integers(0, 3)), num_frames)
    gains = rng.uniform(0.75, 1.2) * (1 + rng.normal(0, rng.uniform(0, 0.03), num_frames))
    noise = rng.uniform(0, 0.05) if rng.random() < 0.7 else 0.0
    blur = rng.uniform(0.3, 1.2) if rng.random() < 0.3 else 0.0
    jpeg = int(rng.integers(30, 90)) if rng.random() < 0.3 else 0
    clip = np.empty((num_frames, size, size, 3), np.uint8)
    boxes = np.full((num_frames, 4), np.nan, np.float32)
    for k in range(num_frames):
        frame = background.copy()
        layers = [(t, c[k], d, 0.0) for t, c, d in distractors]
        layers.append((template, centres[k], diameters[k], angle0 + spin * times[k]))
        for rgba, centre, dia, angle in layers:
            drawn = _warp(rgba, centre, dia, angle, size)
            alpha = np.clip(drawn[..., 3:], 0, 1)
            frame += alpha * (drawn[..., :3] - frame)
        boxes[k] = mask_box(alpha[..., 0] >= 0.5)      # the main object: drawn last
        frame *= gains[k]
        clip[k] = finish(rng, frame, blur, noise, jpeg)
    return clip, boxes


def finish(rng: np.random.Generator, frame: np.ndarray, blur: float, noise: float,
           jpeg: int) -> np.ndarray:
    """Return the camera's uint8 frame of a float32 RGB scene in [0, 1].

    Lens blur (Gaussian sigma in pixels, 0: none), sensor noise of std `noise` (0: none) and
    JPEG at quality `jpeg` (0: none), in that order.
    """
    if blur:
        frame = cv2.GaussianBlur(frame, (0, 0), blur)
    if noise:
        frame = frame + rng.normal(0, noise, frame.shape).astype(np.float32)
    frame = (np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8)
    if jpeg:
        encoded = cv2.imencode('.jpg', frame, [cv2.IMWRITE_JPEG_QUALITY, jpeg])[1]
        frame = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    return frame


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Return the box (x_min, y_min, x_max, y_max) around a mask's pixels (edges), NaN if none."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return np.full(4, np.nan, np.float32)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def make_dataset(seed: int, count: int, size: int = 48, num_frames: int = 8,
                 clip_fps: float = 10.0):
    """`count` clips with balanced classes (`synthetic.balanced_clips`) of this world."""
    return synthetic.balanced_clips(
        seed, count, CLASSES, lambda rng, label: make_clip(rng, label, size, num_frames, clip_fps))
