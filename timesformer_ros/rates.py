"""The range of frame rates the package accepts, wherever a rate enters.

A clip rate (frames per second of the sampled clip) comes from a checkpoint's sidecar, an
official file name, `timesformer_convert --clip-fps/--frame-interval`, `timesformer_train
--clip-fps` and the node's `target_fps`. One range for all of them: 0.01 fps (a frame every
100 s, slower than any action a window of a few frames can show) to 1000 fps (faster than any
camera the node keeps up with). Outside it a rate is a mistake or an attack: 1e-300 fps once
made `evaluate` run without a single window and say nothing.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

MIN_FPS = 0.01
MAX_FPS = 1000.0


def rate_problem(value: object) -> Optional[str]:
    """Return why `value` is not a frame rate in [MIN_FPS, MAX_FPS], or None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f'must be a number of frames per second, got {value!r:.60}'
    try:
        number = float(value)
    except OverflowError:           # an integer beyond float range
        number = math.inf
    if not MIN_FPS <= number <= MAX_FPS:
        return (f'must be a rate in [{MIN_FPS:g}, {MAX_FPS:g}] frames per second, '
                f'got {value!r:.60}')
    return None
