"""What a hand and a camera add to a scene of the camera-like training world (camera_world.py).

A hand: a skin-toned forearm reaching in from the frame's edge to a grip on the object's edge,
the palm behind the object and the fingers over it, sized by the object's depth. The camera:
the scene's light changing as a whole (flicker) and across it (an illumination gradient that
drifts), white balance that drifts, and auto-exposure that follows the scene's brightness with
a lag; `world.finish` then adds lens blur, sensor noise and JPEG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# Skin tones (linear-ish RGB in [0, 1]), from light to dark; each hand jitters its own.
_SKIN = np.array([[0.93, 0.78, 0.67], [0.87, 0.68, 0.55], [0.76, 0.57, 0.42],
                  [0.62, 0.44, 0.31], [0.45, 0.31, 0.22], [0.32, 0.22, 0.16]], np.float32)


@dataclass
class Hand:
    """A forearm from outside the frame to a grip on the object's edge, and its fingers."""

    colour: np.ndarray
    grip: np.ndarray            # object-plane point held, in [-1, 1]
    turn: float                 # the arm's angle (rad) to the line from the centre to the grip
    width: float                # forearm width / object diameter


def sample_hand(rng: np.random.Generator) -> Hand:
    colour = _SKIN[int(rng.integers(len(_SKIN)))] * rng.uniform(0.85, 1.1, 3)
    side = rng.uniform(-1, 1)
    grip = np.array([side, 1.0]) if rng.random() < 0.6 else np.array([1.0, side])
    grip = grip * (1 if rng.random() < 0.7 else -1)
    return Hand(np.clip(colour, 0, 1).astype(np.float32), grip, rng.uniform(-0.6, 0.6),
                rng.uniform(0.3, 0.6))


def draw_hand(hand: Hand, pose, size: int) -> tuple:
    """Return the arm and palm's alpha (behind the object) and the fingers' (over its edge)."""
    scale = 16                                   # cv2's sub-pixel shift of 4 bits
    grip = pose.points(hand.grip[None, :] * 0.92)[0]
    away = grip - pose.centre
    angle = math.atan2(away[1], away[0]) + hand.turn
    direction = np.array([math.cos(angle), math.sin(angle)])
    width = hand.width * pose.diameter
    elbow = grip + direction * 3.0               # far outside the frame
    normal = np.array([-direction[1], direction[0]]) * width / 2
    arm = np.array([grip + normal * 0.8, elbow + normal * 1.2, elbow - normal * 1.2,
                    grip - normal * 0.8])
    behind = np.zeros((size, size), np.uint8)
    front = np.zeros((size, size), np.uint8)

    def pixels(points):
        return np.round((np.asarray(points) + 0.5) * size * scale).astype(np.int32)

    cv2.fillPoly(behind, [pixels(arm)], 255, cv2.LINE_AA, 4)
    palm = pixels(grip + direction * width * 0.3)
    axes = (max(1, int(width * 0.7 * size * scale)), max(1, int(width * 0.55 * size * scale)))
    cv2.ellipse(behind, tuple(int(v) for v in palm), axes,
                math.degrees(angle), 0, 360, 255, -1,
                cv2.LINE_AA, 4)
    inward = -direction
    for k in np.linspace(-0.35, 0.35, 4):
        base = grip + normal * 2 * k
        tip = base + inward * width * 0.5
        thickness = max(1, int(round(width * 0.18 * size)))
        cv2.line(front, tuple(pixels(base)), tuple(pixels(tip)), 255, thickness, cv2.LINE_AA,
                 4)
    return behind.astype(np.float32) / 255, front.astype(np.float32) / 255


@dataclass
class Light:
    """The scene's light and the camera's response to it, over the window."""

    flicker: tuple              # amplitude, frequency (Hz), phase of the whole scene's light
    gradient: tuple             # strength, angle (rad), drift (rad/s) of the illumination
    exposure_lag: float         # seconds the auto-exposure takes to follow
    balance: np.ndarray         # white-balance gains at t = 0 (3,)
    balance_drift: np.ndarray   # their change per second (3,)
    blur: float                 # world.finish's lens blur, noise and JPEG
    noise: float
    jpeg: int


def sample_light(rng: np.random.Generator, camera: bool) -> Light:
    if not camera:
        return Light((0, 0, 0), (0, 0, 0), 0.0, np.ones(3), np.zeros(3), 0.0, 0.0, 0)
    return Light((rng.uniform(0, 0.15), rng.uniform(0.2, 1.5), rng.uniform(0, 2 * math.pi)),
                 (rng.uniform(0, 0.25), rng.uniform(0, 2 * math.pi), rng.uniform(-0.4, 0.4)),
                 rng.uniform(0.15, 1.0) if rng.random() < 0.7 else 0.0,
                 rng.uniform(0.88, 1.12, 3), rng.uniform(-0.05, 0.05, 3),
                 rng.uniform(0.3, 1.0) if rng.random() < 0.3 else 0.0,
                 rng.uniform(0.0, 0.03) if rng.random() < 0.8 else 0.0,
                 int(rng.integers(25, 90)) if rng.random() < 0.6 else 0)


def lit(light: Light, frame: np.ndarray, t: float) -> np.ndarray:
    """Return the scene at `t` under the window's changing light and white balance."""
    size = frame.shape[0]
    amplitude, frequency, phase = light.flicker
    strength, angle, drift = light.gradient
    ys, xs = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size - 0.5
    angle += drift * t
    field = 1 + amplitude * math.sin(2 * math.pi * frequency * t + phase) + strength * (
        xs * math.cos(angle) + ys * math.sin(angle))
    frame = frame * field[..., None]
    balance = light.balance + light.balance_drift * t
    return (frame * balance).astype(np.float32)


def exposures(light: Light, means: list, times: np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
    """Return the auto-exposure's gain per frame: towards mid-grey, first-order lag."""
    if not light.exposure_lag:
        return np.full(len(means), rng.uniform(0.85, 1.15) if light.noise else 1.0)
    target = np.clip(0.45 / np.maximum(means, 1e-3), 0.5, 2.0)
    gain = target[0] * rng.uniform(0.85, 1.15)
    gains = []
    for k, goal in enumerate(target):
        if k:
            step = 1 - math.exp(-(times[k] - times[k - 1]) / light.exposure_lag)
            gain += (goal - gain) * step
        gains.append(gain)
    return np.array(gains)


def skin(hand: Hand, size: int) -> np.ndarray:
    """Return the hand's colour with a little shading across the frame."""
    ys = (np.arange(size, dtype=np.float32)[:, None, None] + 0.5) / size
    return hand.colour * (0.85 + 0.3 * ys)
