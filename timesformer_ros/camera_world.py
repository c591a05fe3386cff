"""The training world that looks like a camera (issue 24): 2.5D objects in continuous scenes.

`world.py` composites flat objects over photographs; a model trained on it has never seen what a
robot's camera shows. This world adds, each part switchable (`Options`) so that what it brings
can be measured:

- **perspective**: the object is a textured plane with a 3D pose (tilted, turning a little
  while it moves), at a depth, projected through a pinhole camera (a homography per frame);
  approaching and receding change its depth, so its size and its perspective change as they do
  in front of a lens, not by scaling a sprite;
- **hand**: a skin-toned forearm reaching in from the frame's edge and a hand holding the
  object, moving (and approaching) with it, the fingers over the object's edge;
- **shadow**: a soft shadow of the object and the arm on the background;
- **camera**: rolling brightness of the whole scene (light that changes, an illumination
  gradient that drifts), auto-exposure that follows the scene's brightness with a lag,
  white-balance drift, then `world.finish`'s lens blur, sensor noise and JPEG;
- **blur**: motion blur along the motion (sub-frames over the exposure time);
- **continuous**: windows cut from a scene whose object changes what it does without a cut,
  often from or into a still phase; the window's label is the phase that covers at least
  `DOMINANT` of its span, and windows without one are not drawn. With `Options.recent` the
  newest part decides sooner: the phase at the window's last frame is its label once it covers
  `recent` of the span, and a later phase is drawn over at most `TAIL` of it (what a robot
  wants to know is what happens now: a model taught so announces a change sooner);
- **envelope**: speeds from 0.05 short sides/s, growth from 1.2x/s, objects up to half the
  short side, often partly outside the frame (off: world.py's envelope).

Labels stay honest: after drawing a scene, the motion the window shows is measured from the
projected geometry at the model's input size (`visible_label`): the object's centre must travel
at least `MIN_TRAVEL_PX` input pixels for a translation, its edges as far for a change of depth,
one clearly more than the other, and a static object less than `MAX_STILL_PX`. A window that
shows something else than its phase, or too little of the object, is drawn again.

Geometry is in short sides from the frame's centre (x right, y down), as in synthetic.py.
Deterministic given a `numpy.random.Generator`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Optional

import cv2
import numpy as np

from . import camera_effects as effects, synthetic, world
from .synthetic import CLASSES

SIZE = (0.07, 0.5)              # the object's diameter at mid-window, short sides
SPEED = (0.05, 1.5)             # short sides per second (the default of Options.speed)
GROWTH = (1.2, 6.0)             # size factor per second (the default of Options.growth)
MIN_TRAVEL_PX = 1.0             # a motion must move the object this far over the window...
MAX_STILL_PX = 0.35             # ...and a static one less than this (input pixels)
DOMINANCE = 2.0                 # the label's travel at least this times the other kind's
MAX_AXIS_DEG = 30.0             # a translation's angle to its named axis, as measured
DOMINANT = 0.7                  # share of the window its label's phase must cover
TAIL = 0.12                     # with Options.recent: the most a later phase covers (< 1 step)
MIN_VISIBLE = 0.35              # share of the object in view in every frame
# Scenes drawn for a window before giving up. Slow growth is often not honest (the edges move
# less than a pixel): at 1.2-1.6x/s about 1 scene in 5 is, and 40 tries gave up once in
# about 5000 windows, which ended a training run at step 4357 of 5000.
ATTEMPTS = 400
_DIRECTIONS = {'moving_left': (-1.0, 0.0), 'moving_right': (1.0, 0.0),
               'moving_up': (0.0, -1.0), 'moving_down': (0.0, 1.0)}


@dataclass(frozen=True)
class Options:
    """What the world draws; each part can be switched off to measure what it brings."""

    perspective: bool = True    # 3D pose and depth through a pinhole; off: flat, scaled sprite
    hand: float = 0.5           # share of scenes with a hand and forearm holding the object
    shadow: float = 0.4         # share of scenes with a soft shadow
    camera: bool = True         # rolling brightness, auto-exposure, white balance, noise, JPEG
    blur: bool = True           # motion blur along the motion
    continuous: float = 0.5     # share of windows with a second phase in them
    envelope: bool = True       # SIZE, SPEED, GROWTH above, partly outside; off: world.py's
    distractors: bool = True    # world.py's small still or jittering objects
    footage: float = 0.0        # share of scenes over real video (footage.py, training parts)
    movers: float = 0.0         # share whose object is a real tracked mover (a pedestrian)
    recent: float = 0.0         # 0, or TAIL < recent < DOMINANT: the newest phase is the label
    #                             once it covers this share
    # The envelope's translation speeds (short sides per second) and growth rates of
    # approaching and receding (size factor per second), drawn log-uniformly: the embedded
    # model's last stages narrowed them towards the slow end a robot sees, leaving faster
    # motion to world.py and synthetic.py.
    speed: tuple = SPEED
    growth: tuple = GROWTH

    def __post_init__(self):
        low, high = self.speed
        if not 0.0 < low < high:
            raise ValueError(f'the camera world\'s speed must be (low, high) short sides per '
                             f'second with 0 < low < high, got {tuple(self.speed)}')
        low, high = self.growth
        if not 1.0 < low < high:
            raise ValueError(f'the camera world\'s growth must be (low, high) size factors per '
                             f'second with 1 < low < high, got {tuple(self.growth)}')
        if self.recent and not TAIL < self.recent < DOMINANT:
            raise ValueError(f'the camera world\'s recent share must be 0 (off) or between '
                             f'{TAIL} and {DOMINANT} (exclusive), got {self.recent}')

    def without(self, name: str) -> 'Options':
        """Return these options with the part `name` switched off."""
        known = [f.name for f in fields(self) if f.name not in ('speed', 'growth')]
        if name not in known:
            raise ValueError(f'unknown part {name!r} of the camera world; known: {known}')
        value = getattr(self, name)
        return replace(self, **{name: False if isinstance(value, bool) else 0.0})


@dataclass
class Phase:
    """What the object does from `start` (seconds from the window's first frame) on."""

    label: str
    start: float
    velocity: np.ndarray        # image-plane centre, short sides per second
    log_growth: float           # d ln(size) / dt, from depth (approaching > 0)
    turn: np.ndarray            # pitch, yaw, roll rates, degrees per second


def _phase(rng: np.random.Generator, label: str, start: float, options: Options,
           max_speed: float) -> Phase:
    speeds, growths = ((options.speed, options.growth) if options.envelope
                       else (world.SPEED, world.GROWTH))
    velocity = np.zeros(2)
    log_growth = 0.0
    if label in _DIRECTIONS:
        high = min(speeds[1], max(max_speed, speeds[0] * 1.01))
        speed = math.exp(rng.uniform(math.log(speeds[0]), math.log(high)))
        angle = math.radians(rng.uniform(-world.MAX_DEVIATION_DEG, world.MAX_DEVIATION_DEG))
        x, y = _DIRECTIONS[label]
        velocity = speed * np.array([x * math.cos(angle) - y * math.sin(angle),
                                     x * math.sin(angle) + y * math.cos(angle)])
        log_growth = rng.uniform(-0.05, 0.05)
    elif label in ('approaching', 'receding'):
        log_growth = rng.uniform(*np.log(growths)) * (1 if label == 'approaching' else -1)
        velocity = rng.uniform(-0.04, 0.04, 2)
    turn_limit = 5.0 if label == 'static' else 20.0
    return Phase(label, start, velocity, log_growth, rng.uniform(-turn_limit, turn_limit, 3))


def _phases(rng: np.random.Generator, label: str, span: float, options: Options) -> list:
    """Return the window's phases: its label's, and maybe one before or after it."""
    max_speed = 1.6 / max(span, 1e-3)          # travel of at most ~1.6 short sides
    main = _phase(rng, label, -1e9, options, max_speed)
    if rng.random() >= options.continuous:
        return [main]
    other_label = 'static' if rng.random() < 0.5 or label != 'static' and rng.random() < 0.2 \
        else str(rng.choice([c for c in CLASSES if c != label]))
    if other_label == label:
        other_label = 'static'
    other = _phase(rng, other_label, 0.0, options, max_speed)
    share = rng.uniform(0.05, 1.0 - DOMINANT)   # the other phase's share of the span
    before = after = share
    if options.recent:      # rescaled: up to 1 - recent before the label's phase, TAIL after
        scale = share / (1.0 - DOMINANT)
        before, after = scale * (1.0 - options.recent), scale * TAIL
    if rng.random() < 0.5:                      # the other phase first, then the label's
        other.start, main.start = -1e9, before * span
        return [other, main]
    other.start = span - after * span
    return [main, other]


def _integrate(phases: list, times: np.ndarray, ramp: float, wobble: tuple) -> tuple:
    """Return offsets (T, 2), log sizes (T,) and angles (T, 3) at `times` (any order).

    Velocities change between phases over `ramp` seconds (no jumps); within a phase the speed
    wobbles by a factor 1 + a sin(2 pi t / period + phase) (a hand is not a motor).
    """
    grid = np.arange(times.min() - 0.05, times.max() + 0.05, 1 / 200.0)
    pick = np.zeros(len(grid), int)
    for index, phase in enumerate(phases):
        pick[grid >= phase.start] = index
    rates = np.array([np.r_[p.velocity, p.log_growth, p.turn] for p in phases])[pick]
    width = max(1, int(ramp * 200))
    kernel = np.ones(width) / width
    padded = np.pad(rates, ((width, width), (0, 0)), mode='edge')
    rates = np.stack([np.convolve(padded[:, i], kernel, 'same')[width:-width]
                      for i in range(rates.shape[1])], axis=1)
    amplitude, period, shift = wobble
    rates[:, :3] *= 1 + amplitude * np.sin(2 * math.pi * grid / period + shift)[:, None]
    state = np.cumsum(rates, axis=0) / 200.0
    state = np.stack([np.interp(times, grid, state[:, i]) for i in range(state.shape[1])], 1)
    return state[:, :2], state[:, 2], state[:, 3:]


def _rotation(angles_deg: np.ndarray) -> np.ndarray:
    pitch, yaw, roll = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)],
                   [0, math.sin(pitch), math.cos(pitch)]])
    ry = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0],
                   [-math.sin(yaw), 0, math.cos(yaw)]])
    rz = np.array([[math.cos(roll), -math.sin(roll), 0], [math.sin(roll), math.cos(roll), 0],
                   [0, 0, 1]])
    return rz @ ry @ rx


@dataclass
class Pose:
    """The object in one frame: its centre in the image, its size and its plane's corners."""

    centre: np.ndarray          # short sides from the frame's centre
    diameter: float             # short sides, from depth alone (a frontal plane's)
    corners: np.ndarray         # (4, 2) projected corners of the object's square, short sides
    points: callable = None     # object-plane points (N, 2) in [-1, 1] -> image, short sides


def _poses(centres: np.ndarray, diameters: np.ndarray, angles: np.ndarray, focal: float,
           perspective: bool) -> list:
    """Project the object's square in each frame through a pinhole at `focal` (short sides).

    The object keeps its physical size; its depth (1 at the first diameter) sets the diameter
    it shows, so a change of size is a change of depth, with the perspective that goes with it.
    """
    found = []
    half = diameters[0] / 2 / focal
    for centre, diameter, angle in zip(centres, diameters, angles):
        if perspective:
            depth = diameters[0] / diameter
            origin = np.array([centre[0] * depth / focal, centre[1] * depth / focal, depth])
            rotation = _rotation(angle) * half

            def points(uv, origin=origin, rotation=rotation):
                local = np.c_[uv, np.zeros(len(uv))] @ rotation.T + origin
                return focal * local[:, :2] / local[:, 2:3]
        else:
            roll = math.radians(angle[2])
            flat = np.array([[math.cos(roll), -math.sin(roll)],
                             [math.sin(roll), math.cos(roll)]]) * diameter / 2

            def points(uv, centre=centre, flat=flat):
                return uv @ flat.T + centre
        square = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
        found.append(Pose(centre, float(diameter), points(square), points))
    return found


def visible_label(poses: list, size: int) -> str:
    """Return the motion the window's poses show at `size` input pixels, or '' if unclear.

    The centre's travel, first to last frame, against the edges' travel from the change of
    depth (half the change of the diameter); each in input pixels.
    """
    shift = (poses[-1].centre - poses[0].centre) * size
    travel = float(np.hypot(*shift))
    depth = abs(poses[-1].diameter - poses[0].diameter) / 2 * size
    if travel < MAX_STILL_PX and depth < MAX_STILL_PX:
        return 'static'
    if depth >= MIN_TRAVEL_PX and depth >= DOMINANCE * travel:
        return 'approaching' if poses[-1].diameter > poses[0].diameter else 'receding'
    if travel >= MIN_TRAVEL_PX and travel >= DOMINANCE * depth:
        angle = math.degrees(math.atan2(shift[1], shift[0]))
        for name, (x, y) in _DIRECTIONS.items():
            axis = math.degrees(math.atan2(y, x))
            if abs((angle - axis + 180) % 360 - 180) <= MAX_AXIS_DEG:
                return name
    return ''


def _homography(level: np.ndarray, corners: np.ndarray, size: int) -> np.ndarray:
    side = level.shape[0]
    source = np.float32([[0, 0], [side, 0], [side, side], [0, side]])
    target = np.float32((corners + 0.5) * size)
    return cv2.getPerspectiveTransform(source, target)


def _draw_object(levels: list, pose: Pose, size: int) -> np.ndarray:
    """Warp the template pyramid's level nearest above the object's size into the frame."""
    pixels = float(np.ptp(pose.corners, axis=0).max()) * size
    image = levels[0]
    for level in levels:
        if level.shape[0] >= pixels:
            image = level
    return cv2.warpPerspective(image, _homography(image, pose.corners, size), (size, size),
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=0)


def _place(rng: np.random.Generator, offsets: np.ndarray, diameters: np.ndarray,
           partly: bool) -> np.ndarray:
    """Return the centres (T, 2): the offsets placed so the object stays (mostly) in view."""
    reach = 0.5 - diameters.max() / 2
    if partly:
        reach += diameters.max() * rng.uniform(0.15, 0.4)
    low, high = -reach - offsets.min(0), reach - offsets.max(0)
    centre = np.where(low < high, rng.uniform(np.minimum(low, high), np.maximum(low, high)),
                      (low + high) / 2)
    return centre[None, :] + offsets


def _scene(rng: np.random.Generator, label: str, times: np.ndarray, options: Options):
    """Draw one window's phases and geometry: (phases, poses (T,), blur poses, focal)."""
    span = times[-1] - times[0]
    phases = _phases(rng, label, span, options)
    exposure = rng.uniform(0.004, 0.033) if options.blur else 0.0
    ramp = rng.uniform(0.05, 0.25)
    wobble = (rng.uniform(0, 0.3), rng.uniform(0.8, 3.0), rng.uniform(0, 2 * math.pi))
    # Sub-frames at 0, 1/3 and 2/3 of the exposure before each frame, for motion blur.
    steps = np.array((0.0, exposure / 3, exposure * 2 / 3) if exposure else (0.0,))
    every = (times[:, None] - steps[None, :]).ravel()
    offsets, log_sizes, turned = _integrate(phases, every, ramp, wobble)
    sizes = SIZE if options.envelope else world.SIZE
    middle = len(times) // 2 * len(steps)
    diameter = math.exp(rng.uniform(*np.log(sizes)))
    diameters = diameter * np.exp(log_sizes - log_sizes[middle])
    partly = rng.random() < (0.3 if options.envelope else 0.15)
    centres = _place(rng, offsets - offsets[middle], diameters, partly)
    tilt = rng.uniform(-35, 35, 3) * np.array([1, 1, 0]) + np.array([0, 0, rng.uniform(0, 360)])
    focal = 1 / (2 * math.tan(math.radians(rng.uniform(40, 75)) / 2))
    poses = _poses(centres, diameters, turned + tilt, focal, options.perspective)
    frames = [poses[k:k + len(steps)] for k in range(0, len(poses), len(steps))]
    return phases, [group[0] for group in frames], frames


def _dominant(phases: list, times: np.ndarray, recent: float = 0.0) -> str:
    """Return the window's label: the phase covering at least DOMINANT of it, else ''.

    With `recent` > 0, also the phase at its last frame once it covers `recent` of it.
    """
    span = times[-1] - times[0]
    for index, phase in enumerate(phases):
        end = phases[index + 1].start if index + 1 < len(phases) else math.inf
        cover = min(end, times[-1]) - max(phase.start, times[0])
        newest = end > times[-1]
        if cover >= DOMINANT * span or recent and newest and cover >= recent * span:
            return phase.label
    return ''


@dataclass
class Window:
    """A drawn window, its object's boxes and what it shows (for tests and the envelope)."""

    clip: np.ndarray            # (T, size, size, 3) uint8
    boxes: np.ndarray           # (T, 4) float32, the object's own pixels (world.mask_box)
    label: str
    speed: float                # the centre's travel over the window, short sides per second
    growth: float               # the diameter's factor per second (< 1: shrinking)
    size: float                 # the diameter at mid-window, short sides
    diameters: np.ndarray       # per frame, short sides, from depth
    centres: np.ndarray         # (T, 2) the object's centre per frame, short sides
    corners: np.ndarray         # (T, 4, 2) its square's projected corners, short sides
    phases: list
    hand: bool


def honest_scene(rng: np.random.Generator, label: str, size: int, num_frames: int,
                 clip_fps: float, options: Options) -> Optional[tuple]:
    """Draw one scene; return (times, phases, poses, blurred) if it shows `label` honestly.

    None when it does not (its label's phase does not dominate the window, or what is visible
    at `size` px reads as another motion).
    """
    rate = clip_fps * rng.uniform(*world.RATE_SPREAD)
    times = np.arange(num_frames) / rate
    phases, poses, blurred = _scene(rng, label, times, options)
    if _dominant(phases, times, options.recent) != label or visible_label(poses, size) != label:
        return None
    return times, phases, poses, blurred


def make_window(rng: np.random.Generator, label: str, size: int = 48, num_frames: int = 8,
                clip_fps: float = 10.0, options: Options = Options()) -> Window:
    """Draw scenes until one shows `label` honestly (module docstring); return its window.

    RuntimeError after ATTEMPTS scenes.
    """
    if label not in CLASSES:
        raise ValueError(f'unknown motion class {label!r}; known: {CLASSES}')
    for _ in range(ATTEMPTS):
        scene = honest_scene(rng, label, size, num_frames, clip_fps, options)
        if scene is None:
            continue
        times, phases, poses, blurred = scene
        drawn = _render(rng, size, times, blurred, options)
        if drawn is None:
            continue
        span = times[-1] - times[0]
        diameters = np.array([pose.diameter for pose in poses])
        travel = float(np.hypot(*(poses[-1].centre - poses[0].centre)))
        return Window(drawn[0], drawn[1], label, travel / span,
                      float((diameters[-1] / diameters[0]) ** (1 / span)),
                      float(diameters[len(diameters) // 2]), diameters,
                      np.array([pose.centre for pose in poses]),
                      np.array([pose.corners for pose in poses]), phases, drawn[2])
    raise RuntimeError(f'no honest {label} window in {ATTEMPTS} scenes at {size} px (speed '
                       f'{options.speed[0]:g}-{options.speed[1]:g} short sides/s, growth '
                       f'{options.growth[0]:g}-{options.growth[1]:g}x/s): too slow to move '
                       f'the object\'s edges a pixel in a window; widen the range')


def make_clip_and_boxes(rng: np.random.Generator, label: str, size: int = 48,
                        num_frames: int = 8, clip_fps: float = 10.0,
                        options: Options = Options()) -> tuple:
    """Make a (T, size, size, 3) uint8 window of class `label`, and the object's boxes (T, 4).

    A box is (x_min, y_min, x_max, y_max) in pixels around the object's own drawn pixels (not
    the hand's) of at least half opacity, NaN where none is in view.
    """
    window = make_window(rng, label, size, num_frames, clip_fps, options)
    return window.clip, window.boxes


def make_clip(rng: np.random.Generator, label: str, size: int = 48, num_frames: int = 8,
              clip_fps: float = 10.0, options: Options = Options()) -> np.ndarray:
    """Make a (T, size, size, 3) uint8 clip of class `label` (`make_clip_and_boxes`)."""
    return make_clip_and_boxes(rng, label, size, num_frames, clip_fps, options)[0]


def _render(rng: np.random.Generator, size: int, times: np.ndarray, blurred: list,
            options: Options):
    """Draw the window; None when too little of the object is in view in some frame."""
    if rng.random() < options.footage:
        rate = 1 / (times[1] - times[0])
        backgrounds = _footage().backgrounds(rng, 1, size, len(times), rate)[0]
        backgrounds = backgrounds.astype(np.float32) / 255
    else:
        backgrounds = [world._background(rng, size)] * len(times)
    real = rng.random() < options.movers
    if real:
        templates = _real_mover(rng, times, _footage().object_tracks())
    else:
        mask = world._shape_mask(rng)
        paint = world._fill(rng, backgrounds[0].reshape(-1, 3).mean(0))
        templates = [np.dstack([paint, mask])] * len(times)
    pyramids = [world._pyramid(template) for template in templates]
    hand = effects.sample_hand(rng) if rng.random() < options.hand and not real else None
    shadow = (rng.uniform(0.2, 0.5), rng.uniform(-0.08, 0.08, 2), rng.uniform(0.02, 0.06)) \
        if rng.random() < options.shadow else None
    count = int(rng.integers(0, 3)) if options.distractors else 0
    distractors = world._distractors(rng, count, len(times))
    light = effects.sample_light(rng, options.camera)
    scenes, boxes = [], np.full((len(times), 4), np.nan, np.float32)
    for k, group in enumerate(blurred):
        frame = backgrounds[k].copy()
        levels, fill = pyramids[k], float(templates[k][..., 3].mean())
        for rgba, centres, diameter in distractors:
            drawn = world._warp(rgba, centres[k], diameter, 0.0, size)
            frame += np.clip(drawn[..., 3:], 0, 1) * (drawn[..., :3] - frame)
        layers = [_layers(levels, hand, pose, size) for pose in group]
        obj = sum(layer[0] for layer in layers) / len(layers)
        behind = sum(layer[1] for layer in layers) / len(layers)
        front = sum(layer[2] for layer in layers) / len(layers)
        alpha = obj[..., 3:]
        area = _area(group[0].corners) * size * size * fill
        if alpha.sum() < MIN_VISIBLE * area:
            return None
        if shadow:
            strength, offset, soft = shadow
            shade = np.clip(alpha[..., 0] + behind, 0, 1)
            shift = np.float32([[1, 0, offset[0] * size], [0, 1, offset[1] * size]])
            shade = cv2.warpAffine(shade, shift, (size, size))
            shade = cv2.GaussianBlur(shade, (0, 0), max(soft * size, 0.5))
            frame *= (1 - strength * shade)[..., None]
        if hand is not None:
            frame += behind[..., None] * (effects.skin(hand, size) - frame)
        frame = frame * (1 - alpha) + obj[..., :3]
        if hand is not None:
            frame += front[..., None] * (effects.skin(hand, size) - frame)
        boxes[k] = world.mask_box(alpha[..., 0] >= 0.5)
        scenes.append(frame)
    scenes = [effects.lit(light, frame, t) for frame, t in zip(scenes, times)]
    exposures = effects.exposures(light, [float(s.mean()) for s in scenes], times, rng)
    clip = np.empty((len(times), size, size, 3), np.uint8)
    for k, frame in enumerate(scenes):
        frame *= np.float32(exposures[k])
        clip[k] = world.finish(rng, frame, light.blur, light.noise, light.jpeg)
    return clip, boxes, hand is not None


def _footage():
    from . import footage              # reads video files: only when real footage is asked for
    return footage


def _real_mover(rng: np.random.Generator, times: np.ndarray, tracks: tuple) -> list:
    """Return a real mover's RGBA templates (float32) for the window's frames.

    A track long enough for the window (footage.ObjectTrack; training uses the videos'
    training parts), its cut-outs at the window's times (at the video's
    rate), each centred at its own scale on a square the size of the window's largest, so the
    mover's limbs move as they did and its size changes only as its box did.
    """
    tracks = [t for t in tracks if len(t.boxes) > round(times[-1] * t.fps)]
    track = tracks[int(rng.integers(len(tracks)))]
    last = len(track.boxes) - 1 - round(times[-1] * track.fps)
    index = int(rng.integers(0, last + 1)) + np.round(times * track.fps).astype(int)
    cutouts = [track.cutouts[i] for i in index]
    side = max(max(c.shape[:2]) for c in cutouts)
    flip = rng.random() < 0.5
    templates = []
    for cutout in cutouts:
        square = np.zeros((side, side, 4), np.float32)
        height, width = cutout.shape[:2]
        y, x = (side - height) // 2, (side - width) // 2
        square[y:y + height, x:x + width] = cutout.astype(np.float32) / 255
        square = square[:, ::-1] if flip else square
        templates.append(cv2.resize(square, (world._TEMPLATE, world._TEMPLATE),
                                    interpolation=cv2.INTER_AREA))
    return templates


def _layers(levels: list, hand, pose: Pose, size: int) -> tuple:
    """Return the object's premultiplied RGBA, and the hand's alphas behind and in front."""
    drawn = _draw_object(levels, pose, size)
    drawn[..., :3] *= drawn[..., 3:]
    if hand is None:
        empty = np.zeros((size, size), np.float32)
        return drawn, empty, empty
    behind, front = effects.draw_hand(hand, pose, size)
    return drawn, behind, front


def _area(corners: np.ndarray) -> float:
    x, y = corners[:, 0], corners[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def make_dataset(seed: int, count: int, size: int = 48, num_frames: int = 8,
                 clip_fps: float = 10.0, options: Options = Options()):
    """`count` clips with balanced classes (`synthetic.balanced_clips`) of this world."""
    return synthetic.balanced_clips(
        seed, count, CLASSES,
        lambda rng, label: make_clip(rng, label, size, num_frames, clip_fps, options))
