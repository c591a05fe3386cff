"""An independent generator of labelled motion clips, for validating a motion classifier.

Written apart from the package's training generator, sharing none of its drawing code or
parametrisation, so that a model trained on that one can be judged on clips it has never seen
the like of. Only numpy and OpenCV are used.

One main object per clip, shown by a fixed camera:

* static: the object stays; only sensor noise, brightness flicker and the distractors' jitter
  change the picture.
* moving_left / moving_right / moving_up / moving_down: the object translates in image
  coordinates (left: x decreases, up: y decreases), its direction within 15 degrees of the
  named axis.
* approaching / receding: the object grows / shrinks by a per-second factor, its centre
  drifting a little at most.

The look: star polygons, Fourier-contour blobs, elliptic rings, crescents and large Hershey
glyphs (cv2.putText), filled with a flat, gradient, checker, stripe or smooth-noise texture
that moves and scales with the object; backgrounds of smooth colour fields, fractal value
noise, stripes at random angles or clutter of rotated rectangles; one or two small distractors
that stay still or jitter; per-frame flicker, sensor noise and optional mild blur.

The motion: size as a fraction of the image's short side at mid-clip, speed in short sides per
second, growth as a per-second scale factor, each sampled from a range (see the constants
below), with an optional slight ease-in/out. The start position is chosen so that the object
stays inside the frame for the whole clip; where a long clip cannot hold the sampled motion,
the speed or growth is reduced to fit and the reported value is the one used.

Every random choice comes from one of several independent streams drawn from the clip's
generator, so switching a style element off (``background=False``, ``distractors=False``,
``plain=True``, ...) leaves the motion and the object's look unchanged: the same clip without
its clutter, which is how the tests measure the motion from the pixels.
"""

import math

import cv2
import numpy as np

CLASSES = ('static', 'moving_left', 'moving_right', 'moving_up', 'moving_down',
           'approaching', 'receding')

#: Object size (diameter of its enclosing circle about the centroid) at mid-clip, as a
#: fraction of the image's short side.
SIZE_RANGE = (0.1, 0.3)
#: Translation speed in short sides per second.
SPEED_RANGE = (0.2, 1.2)
#: Largest deviation of a translation from its named axis, in degrees.
MAX_DEVIATION_DEG = 15.0
#: Per-second scale factor of an approaching object (a receding one uses the inverse).
GROWTH_RANGE = (1.5, 4.0)
#: Centre drift of an approaching or receding object, in short sides per second.
DRIFT_RANGE = (0.0, 0.05)
#: Largest in-plane spin of a moving or scaling object, in degrees per second (static: none).
MAX_SPIN_DEG_S = 20.0
#: Largest ease-in/out strength (0: constant velocity).
MAX_EASE = 0.6
#: Size bounds (fractions of the short side) that a scaling object keeps over a long clip.
SCALE_BOUNDS = (0.08, 0.6)
#: Distractor size as a fraction of the short side.
DISTRACTOR_SIZE_RANGE = (0.04, 0.09)
#: Gap, in pixels, between the object's enclosing circle and the frame border.
MARGIN_PX = 2.0

SHAPES = ('star', 'blob', 'ring', 'crescent', 'glyph')
TEXTURES = ('flat', 'gradient', 'checker', 'stripes', 'noise')
BACKGROUNDS = ('smooth', 'fractal', 'stripes', 'clutter')

STYLE_DEFAULTS = {
    'plain': False,        # True: all of background, distractors, noise, flicker, blur off
    'background': True,    # False: a constant colour far from every object colour
    'distractors': True,
    'noise': True,
    'flicker': True,
    'blur': True,          # False: never blur (otherwise blurred with some probability)
    'shape': None,         # force one of SHAPES
    'texture': None,       # force one of TEXTURES
    'background_kind': None,  # force one of BACKGROUNDS
    'size': None,          # force the mid-clip size (fraction of the short side)
    'speed': None,         # force the speed (short sides per second; the drift for scaling)
    'growth': None,        # force the per-second growth factor (> 1; receding inverts it)
}

_TEMPLATE = 256            # side of the finest object template, in pixels
_ENCLOSE = 0.47            # enclosing radius of the shape, as a fraction of the template side
_CANVAS = 512              # side of the canvas the shape is first drawn on
_GLYPHS = 'ABDEFGHKMNPQRSUVWXYZ0234568&#%'
_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
          cv2.FONT_HERSHEY_TRIPLEX)
_STREAMS = ('motion', 'shape', 'texture', 'background', 'distractors', 'camera')


def _uniform(rng, bounds):
    return float(rng.uniform(bounds[0], bounds[1]))


# --------------------------------------------------------------------------------------------
# Object shape and texture templates.


def _fill(mask, points, value=255):
    """Fill a polygon given in float pixel coordinates, anti-aliased, at 1/16 pixel precision."""
    pts = np.round(np.asarray(points, dtype=np.float64) * 16).astype(np.int32)
    cv2.fillPoly(mask, [pts], value, cv2.LINE_AA, shift=4)


def _ellipse_points(cx, cy, a, b, angle, n=180):
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    x, y = a * np.cos(t), b * np.sin(t)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def _draw_shape(rng, kind):
    """Draw one shape on a square uint8 canvas; return the canvas."""
    n = _CANVAS
    canvas = np.zeros((n, n), np.uint8)
    c, radius = n / 2.0, 0.4 * n
    if kind == 'star':
        points = int(rng.integers(5, 10))
        inner = rng.uniform(0.35, 0.65)
        phase = rng.uniform(0, 2 * math.pi)
        angles = phase + math.pi * np.arange(2 * points) / points
        radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
        radii = radii * rng.uniform(0.9, 1.1, 2 * points)
        _fill(canvas, np.stack([c + radius * radii * np.cos(angles),
                                c + radius * radii * np.sin(angles)], axis=1))
    elif kind == 'blob':
        phi = np.linspace(0, 2 * math.pi, 256, endpoint=False)
        harmonics = np.arange(2, 7)
        amps = rng.uniform(0, 1, harmonics.size) / harmonics ** 1.2
        amps *= rng.uniform(0.3, 0.6) / amps.sum()
        phases = rng.uniform(0, 2 * math.pi, harmonics.size)
        r = 1 + (amps[:, None] * np.cos(harmonics[:, None] * phi + phases[:, None])).sum(0)
        r /= r.max()
        _fill(canvas, np.stack([c + radius * r * np.cos(phi), c + radius * r * np.sin(phi)], 1))
    elif kind == 'ring':
        aspect = rng.uniform(0.7, 1.0)
        angle = rng.uniform(0, math.pi)
        inner = rng.uniform(0.4, 0.65)
        _fill(canvas, _ellipse_points(c, c, radius, radius * aspect, angle))
        _fill(canvas, _ellipse_points(c, c, radius * inner, radius * aspect * inner, angle), 0)
    elif kind == 'crescent':
        bite = rng.uniform(0.6, 0.85)
        offset = rng.uniform(0.45, 0.75) * radius
        angle = rng.uniform(0, 2 * math.pi)
        _fill(canvas, _ellipse_points(c, c, radius, radius, 0.0))
        _fill(canvas, _ellipse_points(c + offset * math.cos(angle), c + offset * math.sin(angle),
                                      radius * bite, radius * bite, 0.0), 0)
    elif kind == 'glyph':
        char = _GLYPHS[int(rng.integers(len(_GLYPHS)))]
        font = _FONTS[int(rng.integers(len(_FONTS)))]
        if rng.random() < 0.3:
            font |= cv2.FONT_ITALIC
        (w, h), _ = cv2.getTextSize(char, font, 1.0, 1)
        scale = 0.5 * n / max(h, 1)
        thickness = max(1, int(round(rng.uniform(0.09, 0.16) * 0.5 * n)))
        (w, h), _ = cv2.getTextSize(char, font, scale, thickness)
        origin = (int(c - w / 2), int(c + h / 2))
        cv2.putText(canvas, char, origin, font, scale, 255, thickness, cv2.LINE_AA)
    else:
        raise ValueError(f'unknown shape {kind!r}; expected one of {SHAPES}')
    return canvas


def _normalise_shape(canvas):
    """Centre a drawn shape on its centroid, scaled so its enclosing circle fills the template.

    Return the finest template: a float32 mask in [0, 1], _TEMPLATE pixels square, whose
    centroid is the template centre and whose farthest pixel lies _ENCLOSE * _TEMPLATE away.
    """
    m = cv2.resize(canvas, (_TEMPLATE, _TEMPLATE), interpolation=cv2.INTER_AREA)
    m = m.astype(np.float32) / 255.0
    ys, xs = np.indices(m.shape, dtype=np.float64)
    total = m.sum()
    cx, cy = (m * xs).sum() / total, (m * ys).sum() / total
    on = m > 0.02
    rmax = math.sqrt(((xs[on] - cx) ** 2 + (ys[on] - cy) ** 2).max()) + 0.5
    k = _ENCLOSE * _TEMPLATE / rmax
    centre = (_TEMPLATE - 1) / 2.0
    warp = np.array([[k, 0, centre - k * cx], [0, k, centre - k * cy]], np.float64)
    return cv2.warpAffine(m, warp, (_TEMPLATE, _TEMPLATE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _texture_weights(rng, kind):
    """Return a pattern in [0, 1] on the template grid, so that it moves with the object."""
    n = _TEMPLATE
    centre = (n - 1) / 2.0
    ys, xs = np.indices((n, n), dtype=np.float32)
    u, v = (xs - centre) / (_ENCLOSE * n), (ys - centre) / (_ENCLOSE * n)
    angle = rng.uniform(0, math.pi)
    ca, sa = math.cos(angle), math.sin(angle)
    along, across = ca * u + sa * v, -sa * u + ca * v
    if kind == 'flat':
        w = 0.5 + 0.5 * along * rng.uniform(0.2, 0.6)
    elif kind == 'gradient':
        if rng.random() < 0.5:
            w = 0.5 + 0.5 * along
        else:
            w = np.sqrt(u * u + v * v)
    elif kind == 'checker':
        cell = rng.uniform(0.18, 0.45)
        w = ((np.floor(along / cell) + np.floor(across / cell)) % 2).astype(np.float32)
        w = cv2.GaussianBlur(w, (0, 0), 1.5)
    elif kind == 'stripes':
        period = rng.uniform(0.25, 0.7)
        w = 0.5 + 0.5 * np.sin(2 * math.pi * along / period + rng.uniform(0, 2 * math.pi))
    elif kind == 'noise':
        cells = int(rng.integers(4, 11))
        w = cv2.resize(rng.random((cells, cells)).astype(np.float32), (n, n),
                       interpolation=cv2.INTER_CUBIC)
        w = w + 0.15 * cv2.GaussianBlur(rng.random((n, n)).astype(np.float32), (0, 0), 2.0)
        w = (w - w.min()) / max(float(w.max() - w.min()), 1e-6)
    else:
        raise ValueError(f'unknown texture {kind!r}; expected one of {TEXTURES}')
    return np.clip(w, 0.0, 1.0).astype(np.float32)


def _object_colours(rng, kind, avoid):
    """Pick the texture's two end colours, away from the background's mean colour ``avoid``."""
    spread = (15, 40) if kind == 'flat' else (50, 140)
    best, best_gap = None, -1.0
    for _ in range(40):
        c1 = rng.uniform(0, 255, 3)
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction) + 1e-9
        c2 = np.clip(c1 + direction * rng.uniform(*spread), 0, 255)
        blend = c1 + np.linspace(0, 1, 9)[:, None] * (c2 - c1)
        gap = float(np.abs(blend - avoid).max(axis=1).min())
        if gap > best_gap:
            best, best_gap = (c1, c2), gap
        if gap >= 50:
            break
    return best


def _far_corner(c1, c2):
    """Return the RGB cube corner farthest (max-norm) from the segment c1-c2.

    A segment crosses at most four of the cube's eight octants, so some corner is at least
    127.5 away from every colour of the texture in every channel norm sense.
    """
    blend = c1 + np.linspace(0, 1, 33)[:, None] * (c2 - c1)
    corners = np.array([[r, g, b] for r in (0, 255) for g in (0, 255) for b in (0, 255)], float)
    gaps = np.abs(blend[None, :, :] - corners[:, None, :]).max(axis=2).min(axis=1)
    return corners[int(np.argmax(gaps))]


def _pyramid(image):
    """Halve an image with area averaging down to 8 pixels; finest level first."""
    levels = [image]
    while levels[-1].shape[0] > 8:
        side = levels[-1].shape[0] // 2
        levels.append(cv2.resize(levels[-1], (side, side), interpolation=cv2.INTER_AREA))
    return levels


# --------------------------------------------------------------------------------------------
# Backgrounds and distractors.


def _background(rng, kind, height, width):
    """Return a float32 (height, width, 3) background in [0, 255]."""
    short = min(height, width)
    base = rng.uniform(30, 225, 3)
    if kind == 'smooth':
        gh, gw = int(rng.integers(2, 5)), int(rng.integers(2, 6))
        grid = (base + rng.normal(0, 50, (gh, gw, 3))).astype(np.float32)
        bg = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    elif kind == 'fractal':
        field = np.zeros((height, width), np.float32)
        for octave in range(int(rng.integers(3, 6))):
            cells = 2 ** (octave + 1) + 1
            grid = rng.random((cells, max(2, int(cells * width / height)))).astype(np.float32)
            field += 0.55 ** octave * cv2.resize(grid, (width, height),
                                                 interpolation=cv2.INTER_CUBIC)
        field = (field - field.min()) / max(float(field.max() - field.min()), 1e-6)
        other = np.clip(base + rng.normal(0, 70, 3), 0, 255)
        bg = base + field[..., None] * (other - base)
    elif kind == 'stripes':
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(0.06, 0.35) * short
        sharp = rng.uniform(1.0, 6.0)
        ys, xs = np.indices((height, width), dtype=np.float32)
        phase = 2 * math.pi * (xs * math.cos(angle) + ys * math.sin(angle)) / period
        w = 0.5 + 0.5 * np.tanh(sharp * np.sin(phase + rng.uniform(0, 2 * math.pi)))
        other = np.clip(base + rng.choice([-1, 1], 3) * rng.uniform(20, 80, 3), 0, 255)
        bg = base + w[..., None] * (other - base)
    elif kind == 'clutter':
        grid = (base + rng.normal(0, 30, (2, 3, 3))).astype(np.float32)
        bg = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        for _ in range(int(rng.integers(8, 26))):
            centre = (rng.uniform(0, width), rng.uniform(0, height))
            size = (rng.uniform(0.05, 0.35) * short, rng.uniform(0.05, 0.35) * short)
            box = cv2.boxPoints((centre, size, rng.uniform(0, 180)))
            opacity = rng.uniform(0.3, 0.9)
            colour = np.clip(base + rng.normal(0, 60, 3), 0, 255)
            # Partly transparent: blend the colour over what is there.
            view = bg.copy()
            _paste(view, box, colour.astype(np.float32))
            bg += np.float32(opacity) * (view - bg)
    else:
        raise ValueError(f'unknown background {kind!r}; expected one of {BACKGROUNDS}')
    # A gentle illumination slope across the view.
    ys, xs = np.indices((height, width), dtype=np.float32)
    tilt = rng.uniform(-0.15, 0.15, 2) / short
    light = 1 + tilt[0] * (xs - width / 2) + tilt[1] * (ys - height / 2)
    return np.clip(bg * light[..., None], 0, 255).astype(np.float32)


def _paste(frame, points, colour):
    """Blend a filled anti-aliased polygon of one colour into a float frame, in place."""
    height, width = frame.shape[:2]
    x0, y0 = np.maximum(np.floor(points.min(axis=0)).astype(int) - 1, 0)
    x1, y1 = np.ceil(points.max(axis=0)).astype(int) + 2
    x1, y1 = min(x1, width), min(y1, height)
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    _fill(mask, points - np.array([x0, y0]))
    alpha = mask.astype(np.float32)[..., None] / np.float32(255)
    view = frame[y0:y1, x0:x1]
    view += alpha * (colour - view)


def _distractors(rng, frames, height, width):
    """Sample one or two small distractors: outline points and per-frame offsets."""
    short = min(height, width)
    items = []
    for _ in range(int(rng.integers(1, 3))):
        radius = 0.5 * _uniform(rng, DISTRACTOR_SIZE_RANGE) * short
        sides = int(rng.choice([3, 4, 5, 6, 24]))
        angles = rng.uniform(0, 2 * math.pi) + 2 * math.pi * np.arange(sides) / sides
        outline = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        centre = np.array([rng.uniform(radius, width - radius),
                           rng.uniform(radius, height - radius)])
        mode = rng.choice(['still', 'jitter', 'wobble'])
        if mode == 'jitter':
            offsets = rng.normal(0, rng.uniform(0.2, 0.8), (frames, 2))
        elif mode == 'wobble':
            amp = rng.uniform(0.3, 1.5)
            freq = rng.uniform(0.5, 3.0)
            t = np.arange(frames)[:, None]
            offsets = amp * np.sin(freq * t + rng.uniform(0, 2 * math.pi, 2))
        else:
            offsets = np.zeros((frames, 2))
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        items.append((outline, centre + offsets, colour, str(mode)))
    return items


# --------------------------------------------------------------------------------------------
# Motion.


def _ease(tau, strength):
    """Map clip time in [0, 1] to progress in [0, 1]; monotone, slower at both ends."""
    return (1 - strength) * tau + strength * (tau - np.sin(2 * math.pi * tau) / (2 * math.pi))


def _place(rng, travel, radius, height, width):
    """Choose a start centre so that the start and start + travel both keep ``radius`` inside."""
    lo = np.array([MARGIN_PX + radius, MARGIN_PX + radius]) - np.minimum(travel, 0)
    hi = np.array([width - 1 - MARGIN_PX - radius, height - 1 - MARGIN_PX - radius])
    hi = hi - np.maximum(travel, 0)
    u = rng.random(2)
    return lo + u * np.maximum(hi - lo, 0)


def _room(direction, radius, height, width):
    """Return the longest travel along a unit direction that fits with the given radius."""
    spans = np.array([width - 1, height - 1]) - 2 * (MARGIN_PX + radius)
    spans = np.maximum(spans, 0)
    with np.errstate(divide='ignore'):
        limits = np.where(np.abs(direction) > 1e-9, spans / np.abs(direction), np.inf)
    return float(limits.min())


def _motion(rng, label, frames, fps, height, width, style):
    """Sample the motion; return per-frame centres, diameters, spins and the reported params."""
    short = min(height, width)
    duration = (frames - 1) / fps
    # Every value is drawn whatever the label, so one seed gives the same draws for every label.
    size = _uniform(rng, SIZE_RANGE)
    speed = _uniform(rng, SPEED_RANGE)
    deviation = _uniform(rng, (-MAX_DEVIATION_DEG, MAX_DEVIATION_DEG))
    growth = _uniform(rng, GROWTH_RANGE)
    drift = _uniform(rng, DRIFT_RANGE)
    drift_angle = rng.uniform(0, 360)
    ease = rng.uniform(0, MAX_EASE) if rng.random() < 0.5 else 0.0
    spin = _uniform(rng, (-MAX_SPIN_DEG_S, MAX_SPIN_DEG_S))
    spin0 = rng.uniform(0, 360)
    place_rng = np.random.default_rng(rng.integers(2 ** 62))
    if style['size'] is not None:
        size = float(style['size'])
    if style['speed'] is not None:
        speed = drift = float(style['speed'])
    if style['growth'] is not None:
        growth = float(style['growth'])

    tau = np.arange(frames) / (frames - 1)
    progress = _ease(tau, ease)
    total_growth = 1.0
    clamped = False
    if label in ('approaching', 'receding'):
        lo, hi = SCALE_BOUNDS
        cap = min((hi / size) ** 2, (size / lo) ** 2)
        total_growth = growth ** duration
        if total_growth > cap:
            total_growth, clamped = cap, True
        if label == 'receding':
            total_growth = 1.0 / total_growth
    diameters = size * short * total_growth ** (progress - 0.5)
    radius = diameters.max() / 2

    if label.startswith('moving_'):
        base = {'moving_right': 0.0, 'moving_down': 90.0,
                'moving_left': 180.0, 'moving_up': 270.0}[label]
        angle, rate = base + deviation, speed
    elif label in ('approaching', 'receding'):
        angle, rate, deviation = drift_angle, drift, 0.0
    else:
        angle, rate, deviation = 0.0, 0.0, 0.0
    direction = np.array([math.cos(math.radians(angle)), math.sin(math.radians(angle))])
    travel_len = rate * short * duration
    room = _room(direction, radius, height, width)
    if travel_len > room:
        travel_len, clamped = room, True
    travel = travel_len * direction
    start = _place(place_rng, travel, radius, height, width)
    centres = start + progress[:, None] * travel
    if label == 'static':
        spin = 0.0   # a static object does not turn either
    spins = spin0 + spin * tau * duration

    actual_speed = travel_len / (short * duration)
    params = {
        'label': label,
        'frames': frames,
        'fps': fps,
        'duration_s': duration,
        'height': height,
        'width': width,
        'size': size,
        'speed': actual_speed,
        'speed_sizes': actual_speed / size,
        'growth': total_growth ** (1.0 / duration),
        'direction_deg': angle % 360.0 if rate > 0 else None,
        'deviation_deg': deviation,
        'ease': ease,
        'spin_deg_s': spin,
        'clamped': clamped,
        'centres': centres.tolist(),
        'diameters_px': diameters.tolist(),
    }
    return centres, diameters, spins, params


# --------------------------------------------------------------------------------------------
# Rendering.


def _warp(levels, diameter, angle_deg, centre, height, width):
    """Place a template pyramid at a centre, scaled to a diameter and rotated; return the image."""
    for image in levels[::-1]:
        if 2 * _ENCLOSE * image.shape[0] >= diameter:
            break
    else:
        image = levels[0]
    side = image.shape[0]
    k = diameter / (2 * _ENCLOSE * side)
    a = math.radians(angle_deg)
    lin = k * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    c = (side - 1) / 2.0
    offset = np.asarray(centre) - lin @ np.array([c, c])
    warp = np.hstack([lin, offset[:, None]])
    return cv2.warpAffine(image, warp, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _style(style):
    unknown = set(style) - set(STYLE_DEFAULTS)
    if unknown:
        raise TypeError(f'unknown style keys {sorted(unknown)}; known: {sorted(STYLE_DEFAULTS)}')
    merged = dict(STYLE_DEFAULTS, **style)
    if merged['plain']:
        for key in ('background', 'distractors', 'noise', 'flicker', 'blur'):
            merged[key] = False
    for key, options in (('shape', SHAPES), ('texture', TEXTURES),
                         ('background_kind', BACKGROUNDS)):
        if merged[key] is not None and merged[key] not in options:
            raise ValueError(f'unknown {key} {merged[key]!r}; expected one of {options}')
    if merged['size'] is not None and not 0 < merged['size'] < 1:
        raise ValueError('size must be a fraction of the short side, in (0, 1)')
    if merged['speed'] is not None and not merged['speed'] >= 0:
        raise ValueError('speed must be at least 0')
    if merged['growth'] is not None and not merged['growth'] > 1:
        raise ValueError('growth must be above 1 (receding clips use its inverse)')
    return merged


def make_clip(rng, label, frames=8, fps=15.0, height=120, width=160, return_params=False,
              **style):
    """Render one clip of the given label.

    rng: a numpy Generator (or a seed for one). Return a uint8 array (frames, height, width, 3),
    RGB; with return_params=True, a pair (clip, params), params a dict holding among others
    'size' (mid-clip size, fraction of the short side), 'speed' (short sides per second: the
    translation, or the drift of a scaling object, 0 for static), 'speed_sizes' (object sizes
    per second), 'growth' (per-second scale factor: > 1 approaching, < 1 receding, 1 otherwise),
    the per-frame 'centres' and 'diameters_px', and the look that was drawn. style: see
    STYLE_DEFAULTS.
    """
    if label not in CLASSES:
        raise ValueError(f'unknown label {label!r}; expected one of {CLASSES}')
    if int(frames) < 2:
        raise ValueError('a clip needs at least 2 frames to show motion')
    if not fps > 0:
        raise ValueError('fps must be positive')
    if min(height, width) < 16:
        raise ValueError('height and width must be at least 16 pixels')
    frames, height, width, fps = int(frames), int(height), int(width), float(fps)
    style = _style(style)
    rng = np.random.default_rng(rng)
    streams = dict(zip(_STREAMS, (np.random.default_rng(s)
                                  for s in rng.integers(0, 2 ** 62, len(_STREAMS)))))

    centres, diameters, spins, params = _motion(streams['motion'], label, frames, fps,
                                                height, width, style)

    srng = streams['shape']
    shape = SHAPES[int(srng.integers(len(SHAPES)))]
    shape = style['shape'] or shape
    mask_levels = _pyramid(_normalise_shape(_draw_shape(srng, shape)))

    brng = streams['background']
    bg_kind = BACKGROUNDS[int(brng.integers(len(BACKGROUNDS)))]
    bg_kind = style['background_kind'] or bg_kind
    background = _background(brng, bg_kind, height, width)

    trng = streams['texture']
    texture = TEXTURES[int(trng.integers(len(TEXTURES)))]
    texture = style['texture'] or texture
    weights = _texture_weights(trng, texture)
    c1, c2 = _object_colours(trng, texture, background.reshape(-1, 3).mean(0))
    tex = c1.astype(np.float32) + weights[..., None] * (c2 - c1).astype(np.float32)
    tex_levels = _pyramid(tex)

    distractors = _distractors(streams['distractors'], frames, height, width)

    crng = streams['camera']
    blur_sigma = crng.uniform(0.4, 1.1)
    if crng.random() >= 0.4 or not style['blur']:
        blur_sigma = 0.0
    noise_sigma = crng.uniform(1.0, 5.0)
    flicker_amp = crng.uniform(0.0, 0.04)
    flicker_jitter = crng.uniform(0.0, 0.015)
    flicker_freq = crng.uniform(0.5, 4.0)        # Hz
    flicker_phase = crng.uniform(0, 2 * math.pi)
    gains = (1 + flicker_amp * np.sin(2 * math.pi * flicker_freq * np.arange(frames) / fps
                                      + flicker_phase)
             + crng.normal(0, flicker_jitter, frames))
    if not style['flicker']:
        gains[:] = 1.0

    if style['background']:
        plate = background
    else:
        plate = np.empty((height, width, 3), np.float32)
        plate[:] = _far_corner(c1, c2)
        bg_kind = None

    clip = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        frame = plate.copy()
        if style['distractors']:
            for outline, positions, colour, _ in distractors:
                _paste(frame, outline + positions[t], colour)
        alpha = _warp(mask_levels, diameters[t], spins[t], centres[t], height, width)
        paint = _warp(tex_levels, diameters[t], spins[t], centres[t], height, width)
        alpha = np.clip(alpha, 0.0, 1.0)[..., None]
        frame += alpha * (paint - frame)
        frame *= float(gains[t])
        if blur_sigma > 0:
            frame = cv2.GaussianBlur(frame, (0, 0), float(blur_sigma))
        if style['noise']:
            # Sum of two uniforms: a triangular law of the given deviation, near enough to a
            # Gaussian for sensor noise and several times cheaper to draw.
            noise = crng.random(frame.shape, dtype=np.float32)
            noise += crng.random(frame.shape, dtype=np.float32)
            noise -= np.float32(1)
            noise *= np.float32(noise_sigma * math.sqrt(6))
            frame += noise
        clip[t] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)

    if not return_params:
        return clip
    params.update({
        'shape': shape,
        'texture': texture,
        'object_colours': (c1.tolist(), c2.tolist()),
        'background': bg_kind,
        'distractors': [mode for *_, mode in distractors] if style['distractors'] else [],
        'blur_sigma': float(blur_sigma),
        'noise_sigma': float(noise_sigma) if style['noise'] else 0.0,
        'flicker_amp': float(flicker_amp) if style['flicker'] else 0.0,
    })
    return clip, params


def clip_rng(seed, index):
    """Return the generator make_set uses for its clip number ``index``."""
    return np.random.default_rng([int(seed), 1, int(index)])


def make_labels(seed, count):
    """Return ``count`` labels, balanced over CLASSES (counts differ by at most one), shuffled."""
    labels = [CLASSES[i % len(CLASSES)] for i in range(count)]
    order = np.random.default_rng([int(seed), 0]).permutation(count)
    return [labels[i] for i in order]


def make_set(seed, count, frames=8, fps=15.0, height=120, width=160, return_params=False,
             **style):
    """Render a balanced set of clips.

    Return (clips, labels): clips a uint8 array (count, frames, height, width, 3), labels a list
    of class names; with return_params=True, (clips, labels, params). Clip i depends only on
    (seed, i), so any one clip can be rendered again alone with
    make_clip(clip_rng(seed, i), labels[i], ...).
    """
    labels = make_labels(seed, count)
    clips = np.empty((count, frames, height, width, 3), np.uint8)
    params = []
    for i, label in enumerate(labels):
        clips[i], p = make_clip(clip_rng(seed, i), label, frames, fps,
                                height, width, return_params=True, **style)
        params.append(p)
    if return_params:
        return clips, labels, params
    return clips, labels
