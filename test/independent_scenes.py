"""Continuous scenes from the independent generator: one object that changes what it does.

A fixed camera watches one object for a whole scene (60 s by default). Every 1.5-3 s the object
changes what it does, without a cut: the next motion starts where the last one left it.

* static: a still phase; the object does not move, turn or change size at all (the picture
  still changes: camera noise, exposure, the background's moving light and distractors).
* moving_left / moving_right / moving_up / moving_down: a translation at 0.05-0.4 short sides
  per second, within 10 degrees of the named axis, turning at most 10 degrees per second.
* approaching / receding: growth / shrinking by 1.2-1.8x per second; a receding object keeps
  its centre, an approaching one drifts (at most 0.05 short sides per second) only where it
  needs the room to grow inside the bounds.

After a motion, a still phase follows with probability STILL_AFTER_MOTION; otherwise any other
class, approaching more often when the object is small and receding when it is large, so that
sizes spread. Sizes stay within 0.1-0.5 of the short side (the enclosing circle's diameter). A
motion that the scene's bounds cannot hold is slowed to fit (never below the range), or another
class is drawn; the reported speed or growth is the one drawn on the screen.

Where the object may go (`wander`): `centre` keeps its centre within the central square of the
frame (what a centre-cropping model sees), `whole` anywhere in the frame (the strips at the
sides included: a region benchmark). Per scene, the object either stays wholly inside those
bounds or may cross them by up to about 40% of its radius (then partly outside the frame).

The look reuses the object templates, textures and backgrounds of `independent_clips.py` (this
generator's sibling, written apart from the training world); on top: a background that is
either only textured or also moving (drifting soft light and shade, small jittering
distractors), and a camera of its own: auto-exposure that follows the scene's brightness with a
lag, exposure and white-balance drift, signal-dependent sensor noise, optional defocus and
JPEG compression at a per-scene quality.

The truth of every frame: the phase's label, the object's box in source pixels (the tight box of
its drawn pixels, alpha >= 0.5, edges: a full 160x120 frame is 0..160 x 0..120; None when
nothing of it is in the frame), its centre and diameter (which may lie outside the frame) and
the visible share of its area. Deterministic given (seed, index); random choices come from
independent streams, so `plain=True` (constant background far from the object's colours, no
camera effects) draws the same object doing the same things: the tests find its pixels there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from independent_clips import (
    _ENCLOSE, _TEMPLATE, BACKGROUNDS, CLASSES, SHAPES, TEXTURES, _background, _distractors,
    _draw_shape, _far_corner, _normalise_shape, _object_colours, _paste, _pyramid,
    _texture_weights, _warp)

#: Object size (enclosing circle's diameter) as a fraction of the short side, at all times.
SCENE_SIZE_RANGE = (0.1, 0.5)
#: Translation speed in short sides per second.
SCENE_SPEED_RANGE = (0.05, 0.4)
#: Per-second growth of an approaching object (a receding one shrinks by its inverse).
SCENE_GROWTH_RANGE = (1.2, 1.8)
#: Largest drift of an approaching object's centre, short sides per second (only as far as it
#: needs to keep inside the bounds while it grows).
SCENE_DRIFT = 0.05
#: Duration of one phase, in seconds.
PHASE_RANGE_S = (1.5, 3.0)
#: Largest deviation of a translation from its named axis, in degrees.
SCENE_DEVIATION_DEG = 10.0
#: Largest in-plane turn of a moving object, degrees per second (none while still).
SCENE_SPIN_DEG_S = 10.0
#: Probability that a still phase follows a motion.
STILL_AFTER_MOTION = 0.35
#: How far the centre may go past the bounds, as a share of the radius (scenes that allow it).
OUTSIDE_RANGE = (0.6, 1.0)
#: Where the object's centre may go: the central square, or the whole frame.
WANDER = ('centre', 'whole')
#: The alpha at which a pixel counts as the object's (for its box and visible share).
BOX_ALPHA = 0.5

_MOTIONS = CLASSES[1:]
_DIRECTIONS = {'moving_right': 0.0, 'moving_down': 90.0, 'moving_left': 180.0,
               'moving_up': 270.0}
_STREAMS = ('program', 'shape', 'texture', 'background', 'distractors', 'camera', 'light')


@dataclass(frozen=True)
class Phase:
    """One stretch of the scene with one label: from start_s, for duration_s seconds.

    centre (x, y) and diameter (px) at the start; velocity in px/s; growth per second; spin in
    degrees per second; speed in short sides per second (0 unless translating).
    """

    label: str
    start_s: float
    duration_s: float
    centre: tuple
    diameter: float
    velocity: tuple
    growth: float
    spin: float
    angle: float
    speed: float

    def at(self, t: float) -> tuple:
        """Return (centre, diameter, angle) at scene time t (seconds) inside this phase."""
        dt = t - self.start_s
        centre = (self.centre[0] + self.velocity[0] * dt, self.centre[1] + self.velocity[1] * dt)
        return centre, self.diameter * self.growth ** dt, self.angle + self.spin * dt

    def row(self, short: int) -> dict:
        """Return the phase as a JSON-ready dict (sizes as fractions of the short side)."""
        end_diameter = self.at(self.start_s + self.duration_s)[1]
        return {'label': self.label, 'start_s': round(self.start_s, 6),
                'duration_s': round(self.duration_s, 6), 'speed': round(self.speed, 4),
                'growth': round(self.growth, 4), 'size_start': round(self.diameter / short, 4),
                'size_end': round(end_diameter / short, 4)}


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """Return the generator of scene number `index` of `seed` (apart from make_set's clips)."""
    return np.random.default_rng([int(seed), 2, int(index)])


def bounds(wander: str, height: int, width: int) -> tuple:
    """Return (x0, y0, x1, y1): where the object's centre may go, before its radius is taken."""
    if wander == 'whole':
        return 0.0, 0.0, float(width), float(height)
    short = min(height, width)
    x0, y0 = (width - short) / 2.0, (height - short) / 2.0
    return x0, y0, x0 + short, y0 + short


def _room(centre, radius, inset, box):
    """Return how far the centre may go (px) towards -x, +x, -y, +y with this radius."""
    x0, y0, x1, y1 = box
    pad = inset * radius
    return (centre[0] - x0 - pad, x1 - pad - centre[0], centre[1] - y0 - pad,
            y1 - pad - centre[1])


def _translation(rng, label, centre, diameter, inset, box, short, duration):
    """Return (velocity px/s, speed) of a feasible translation, or None."""
    speed = float(rng.uniform(*SCENE_SPEED_RANGE))
    deviation = rng.uniform(-SCENE_DEVIATION_DEG, SCENE_DEVIATION_DEG)
    angle = math.radians(_DIRECTIONS[label] + deviation)
    direction = np.array([math.cos(angle), math.sin(angle)])
    left, right, up, down = _room(centre, diameter / 2, inset, box)
    limits = []
    for component, low, high in ((direction[0], left, right), (direction[1], up, down)):
        if component > 1e-9:
            limits.append(high / component)
        elif component < -1e-9:
            limits.append(low / -component)
    room = max(min(limits), 0.0) / (short * duration)       # short sides per second
    speed = min(speed, room)
    if speed < SCENE_SPEED_RANGE[0]:
        return None
    return tuple(direction * speed * short), speed


def _scaling(rng, label, centre, diameter, inset, box, short, duration):
    """Return (growth per second, velocity px/s) of a feasible approach or recession, or None.

    A receding object keeps its centre; an approaching one drifts towards the middle of the
    bounds where it needs the room to grow, at most SCENE_DRIFT short sides per second.
    """
    growth = float(rng.uniform(*SCENE_GROWTH_RANGE))
    if label == 'receding':
        top = (diameter / (SCENE_SIZE_RANGE[0] * short)) ** (1.0 / duration)
        growth = min(growth, top)
        return (1.0 / growth, (0.0, 0.0)) if growth >= SCENE_GROWTH_RANGE[0] else None
    top = (SCENE_SIZE_RANGE[1] * short / diameter) ** (1.0 / duration)
    x0, y0, x1, y1 = box
    reach = SCENE_DRIFT * short * duration
    for growth in np.linspace(min(growth, top), SCENE_GROWTH_RANGE[0], 13):
        if growth < SCENE_GROWTH_RANGE[0]:
            break
        pad = inset * diameter * growth ** duration / 2
        if x1 - x0 < 2 * pad or y1 - y0 < 2 * pad:
            continue
        end = np.clip(centre, (x0 + pad, y0 + pad), (x1 - pad, y1 - pad))
        shift = end - np.asarray(centre)
        if float(np.hypot(*shift)) <= reach + 1e-9:
            return float(growth), tuple(float(v) for v in shift / duration)
    return None


def plan(rng, seconds: float, height: int, width: int, wander: str = 'centre') -> tuple:
    """Draw a scene's phases; return (phases, inset) (module docstring for the rules)."""
    if wander not in WANDER:
        raise ValueError(f'unknown wander {wander!r}; expected one of {WANDER}')
    short = min(height, width)
    box = bounds(wander, height, width)
    inset = 1.0 if rng.random() < 0.5 else float(rng.uniform(*OUTSIDE_RANGE))
    diameter = float(rng.uniform(*SCENE_SIZE_RANGE)) * short
    x0, y0, x1, y1 = box
    pad = inset * diameter / 2
    centre = (float(rng.uniform(x0 + pad, x1 - pad)), float(rng.uniform(y0 + pad, y1 - pad)))
    angle = float(rng.uniform(0, 360))
    phases, t, label = [], 0.0, None
    while seconds - t > 1e-9:
        remaining = seconds - t
        duration = float(rng.uniform(*PHASE_RANGE_S))
        if remaining <= PHASE_RANGE_S[1]:
            duration = remaining
        elif remaining - duration < PHASE_RANGE_S[0]:
            duration = remaining - PHASE_RANGE_S[0]
        if label in _MOTIONS and rng.random() < STILL_AFTER_MOTION:
            order = ['static']
        else:
            order = [c for c in rng.permutation(CLASSES) if c != label] + ['static']
            # Approach more often when small, recede more often when large, so that sizes
            # spread over the range instead of gathering where receding stops.
            low, high = (math.log(s * short) for s in SCENE_SIZE_RANGE)
            grow = (high - math.log(diameter)) / (high - low)
            if 'approaching' in order and 'receding' in order:
                i, j = sorted((order.index('approaching'), order.index('receding')))
                order[i], order[j] = (('approaching', 'receding') if rng.random() < grow
                                      else ('receding', 'approaching'))
        for candidate in order:
            velocity, growth, spin, speed = (0.0, 0.0), 1.0, 0.0, 0.0
            if candidate.startswith('moving_'):
                found = _translation(rng, candidate, centre, diameter, inset, box, short,
                                     duration)
                if found is None:
                    continue
                velocity, speed = found
            elif candidate != 'static':
                found = _scaling(rng, candidate, centre, diameter, inset, box, short,
                                 duration)
                if found is None:
                    continue
                growth, velocity = found
            if candidate != 'static':
                spin = float(rng.uniform(-SCENE_SPIN_DEG_S, SCENE_SPIN_DEG_S))
            break
        label = str(candidate)
        phase = Phase(label, t, duration, centre, diameter, velocity, growth, spin, angle,
                      speed)
        phases.append(phase)
        centre, diameter, angle = phase.at(t + duration)
        t += duration
    return phases, inset


def _light_field(rng, height, width):
    """Return (a soft light/shade pattern twice the frame's size, its drift in px/s)."""
    cells = int(rng.integers(3, 6))
    grid = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    field = cv2.resize(grid, (2 * width, 2 * height), interpolation=cv2.INTER_CUBIC)
    angle = rng.uniform(0, 2 * math.pi)
    speed = rng.uniform(0.02, 0.06) * min(height, width)
    return field, (speed * math.cos(angle), speed * math.sin(angle))


def _box(alpha: np.ndarray):
    """Return the tight box (x_min, y_min, x_max, y_max, edges) of alpha >= BOX_ALPHA, or None."""
    on = alpha >= BOX_ALPHA
    cols, rows = np.flatnonzero(on.any(axis=0)), np.flatnonzero(on.any(axis=1))
    if not len(cols):
        return None
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


class Scene:
    """One continuous scene: its phases, its look, and its frames rendered one at a time."""

    def __init__(self, rng, seconds: float = 60.0, fps: float = 30.0, height: int = 120,
                 width: int = 160, wander: str = 'centre', plain: bool = False):
        if not seconds > 0 or not fps > 0:
            raise ValueError('seconds and fps must be positive')
        if min(height, width) < 32:
            raise ValueError('height and width must be at least 32 pixels')
        self.seconds, self.fps = float(seconds), float(fps)
        self.height, self.width, self.wander, self.plain = int(height), int(width), wander, plain
        self.frames = int(round(seconds * fps))
        rng = np.random.default_rng(rng)
        streams = dict(zip(_STREAMS, (np.random.default_rng(s)
                                      for s in rng.integers(0, 2 ** 62, len(_STREAMS)))))
        self.phases, self.inset = plan(streams['program'], self.seconds, self.height,
                                       self.width, wander)
        self._starts = np.array([p.start_s for p in self.phases])
        srng, trng, brng = streams['shape'], streams['texture'], streams['background']
        self.shape = SHAPES[int(srng.integers(len(SHAPES)))]
        mask = _normalise_shape(_draw_shape(srng, self.shape))
        self._mask_levels = _pyramid(mask)
        # The template's area at unit scale: the visible share divides by it, scaled.
        self._mask_area = float(mask.sum())
        self.background_kind = BACKGROUNDS[int(brng.integers(len(BACKGROUNDS)))]
        self.moving_background = bool(brng.random() < 0.5)
        self._plate = _background(brng, self.background_kind, self.height, self.width)
        flat = trng.random() < 0.3
        self.texture = 'flat' if flat else TEXTURES[1 + int(trng.integers(len(TEXTURES) - 1))]
        weights = _texture_weights(trng, self.texture)
        c1, c2 = _object_colours(trng, self.texture, self._plate.reshape(-1, 3).mean(0))
        self._tex_levels = _pyramid(c1.astype(np.float32)
                                    + weights[..., None] * (c2 - c1).astype(np.float32))
        if plain:
            self._plate = np.empty_like(self._plate)
            self._plate[:] = _far_corner(c1, c2)
            self.moving_background = False
        self._distractors = _distractors(streams['distractors'], self.frames, self.height,
                                         self.width) if self.moving_background else []
        self._light, self._light_drift = _light_field(streams['light'], self.height, self.width)
        self._light_depth = float(streams['light'].uniform(0.05, 0.15))
        self._camera(streams['camera'])

    def _camera(self, crng):
        """Draw the camera: exposure, white balance, noise, defocus, JPEG."""
        n = self.frames
        self.ae_target = float(crng.uniform(95, 140))
        self.ae_lag_s = float(crng.uniform(0.3, 1.5))
        self.read_noise = float(crng.uniform(1.0, 4.0))
        self.shot_noise = float(crng.uniform(0.02, 0.15))
        self.defocus = float(crng.uniform(0.4, 1.0)) if crng.random() < 0.3 else 0.0
        self.jpeg = int(crng.integers(35, 91)) if crng.random() < 0.7 else 0

        def drift(depth, tau_s, channels):
            # A first-order random walk of about `depth` deviation with time constant tau_s.
            k = math.exp(-1.0 / (tau_s * self.fps))
            steps = crng.normal(0, depth * math.sqrt(1 - k * k), (n, channels))
            out = np.empty((n, channels))
            out[0] = crng.normal(0, depth, channels)
            for i in range(1, n):
                out[i] = k * out[i - 1] + steps[i]
            return out

        self._exposure_drift = np.exp(drift(float(crng.uniform(0.03, 0.1)), 2.0, 1))[:, 0]
        self._white_balance = 1.0 + drift(float(crng.uniform(0.01, 0.04)), 3.0, 3)
        self._noise_rng = np.random.default_rng(crng.integers(2 ** 62))

    # -- truth ----------------------------------------------------------------------------------

    def stamp_s(self, k: int) -> float:
        """Return frame k's time in the scene, seconds."""
        return k / self.fps

    def phase_of(self, k: int) -> Phase:
        """Return the phase that frame k belongs to."""
        i = int(np.searchsorted(self._starts, self.stamp_s(k) + 1e-9, side='right')) - 1
        return self.phases[max(i, 0)]

    def phase_frames(self) -> list:
        """Return (phase, first frame, last frame) of every phase that holds a frame."""
        out = []
        for k in range(self.frames):
            phase = self.phase_of(k)
            if out and out[-1][0] is phase:
                out[-1][2] = k
            else:
                out.append([phase, k, k])
        return [tuple(row) for row in out]

    def describe(self) -> dict:
        """Return the scene's look and phases, JSON-ready."""
        short = min(self.height, self.width)
        return {'seconds': self.seconds, 'fps': self.fps, 'width': self.width,
                'height': self.height, 'wander': self.wander, 'inset': round(self.inset, 3),
                'shape': self.shape, 'texture': self.texture,
                'background': self.background_kind,
                'moving_background': self.moving_background,
                'distractors': [mode for *_, mode in self._distractors],
                'ae_target': round(self.ae_target, 1), 'ae_lag_s': round(self.ae_lag_s, 2),
                'read_noise': round(self.read_noise, 2),
                'shot_noise': round(self.shot_noise, 3), 'defocus': round(self.defocus, 2),
                'jpeg_quality': self.jpeg, 'plain': self.plain,
                'phases': [p.row(short) for p in self.phases]}

    # -- frames ---------------------------------------------------------------------------------

    def _object(self, k: int) -> tuple:
        """Return (alpha (H, W), paint (H, W, 3), truth dict) of the object at frame k."""
        phase = self.phase_of(k)
        centre, diameter, angle = phase.at(self.stamp_s(k))
        alpha = np.clip(_warp(self._mask_levels, diameter, angle, centre, self.height,
                              self.width), 0.0, 1.0)
        paint = _warp(self._tex_levels, diameter, angle, centre, self.height, self.width)
        scale = diameter / (2 * _ENCLOSE * _TEMPLATE)
        visible = float(alpha.sum()) / max(self._mask_area * scale * scale, 1e-9)
        truth = {'label': phase.label, 'box': _box(alpha),
                 'centre': (round(centre[0], 3), round(centre[1], 3)),
                 'diameter': round(diameter, 3), 'visible': round(min(visible, 1.0), 4)}
        return alpha, paint, truth

    def scene_frame(self, k: int) -> tuple:
        """Return (float32 (H, W, 3) frame before the camera, truth dict) of frame k."""
        alpha, paint, truth = self._object(k)
        frame = self._plate.copy()
        if self.moving_background:
            t = self.stamp_s(k)
            dx = int(round(self._light_drift[0] * t)) % self.width
            dy = int(round(self._light_drift[1] * t)) % self.height
            shade = self._light[dy:dy + self.height, dx:dx + self.width]
            frame *= (1.0 + self._light_depth * shade)[..., None]
            for outline, positions, colour, _ in self._distractors:
                _paste(frame, outline + positions[k], colour)
        frame += alpha[..., None] * (paint - frame)
        return frame, truth

    def _camera_frame(self, frame: np.ndarray, k: int, gain: float) -> np.ndarray:
        """Exposure gain, drift and white balance, defocus, sensor noise and JPEG."""
        frame = frame * (gain * self._exposure_drift[k] * self._white_balance[k]).astype(
            np.float32)
        if self.defocus > 0:
            frame = cv2.GaussianBlur(frame, (0, 0), self.defocus)
        sigma = np.sqrt(self.read_noise ** 2 + self.shot_noise * np.clip(frame, 0, 255))
        frame = frame + sigma * self._noise_rng.standard_normal(frame.shape, dtype=np.float32)
        if self.jpeg:
            rgb = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
            _, data = cv2.imencode('.jpg', rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, self.jpeg])
            frame = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32)
        return frame

    def __iter__(self):
        """Yield (frame index, rgb uint8 (H, W, 3), truth dict) of every frame, in order.

        The auto-exposure runs forward: its gain moves towards the one that brings the frame's
        mean to `ae_target`, by a first-order lag of `ae_lag_s`.
        """
        follow = 1 - math.exp(-1 / (self.ae_lag_s * self.fps))
        gain = None
        for k in range(self.frames):
            frame, truth = self.scene_frame(k)
            if not self.plain:
                target = min(max(self.ae_target / max(float(frame.mean()), 1.0), 0.6), 1.6)
                gain = target if gain is None else gain + follow * (target - gain)
                frame = self._camera_frame(frame, k, gain)
            yield k, np.clip(np.rint(frame), 0, 255).astype(np.uint8), truth
