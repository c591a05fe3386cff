"""Sliding-window frame buffer: sampling, stride, gaps and resets. No ROS imports.

`ClipBuffer.push` takes each incoming frame's header stamp (integer nanoseconds), a key that
must stay constant within a window (encoding and size), its frame_id, and a callable that
produces the preprocessed frame. It decides first whether the frame is sampled and whether the
window must reset, then calls the callable only for sampled frames (so a frame is converted
once, and never when sampling skips it), and only then changes its state: a callable that
raises leaves the buffer as it was.

Rules, in order:
* a stamp equal to the previous frame's is refused (`duplicate_stamp`), nothing changes;
* a stamp before the previous frame's (`backwards`, e.g. a bag loop or a restarted camera
  clock), a jump forward of more than `max_gap_s` (`gap`), or a change of key (`format_change`)
  or frame_id (`frame_id_change`) empties the window and starts a new one with this frame;
* sampling: every `sample_every`-th frame since the last reset, or, when `target_fps` > 0, the
  first frame at most half a camera frame interval (and at most a quarter period) before each
  slot of a grid anchored at the first frame after a reset: the frame nearest each slot on a
  regular camera, robust to jitter; a slower camera has every frame sampled;
* once T sampled frames are held, a window is emitted, then again every `stride` newly
  sampled frames.

`Sampling.resolve` decides the sampling from the parameters and the checkpoint's clip rate: a
model only works at the clip rate it was trained on, so that is the default.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Optional, Protocol

from .messages import NS_PER_S as NS
from .rates import rate_problem


@dataclass(frozen=True)
class Window:
    """T sampled frames in order, with their stamps (ns) and the frame_id they share.

    `epoch` counts the buffer's resets before it and `reset` names the latest one, so a consumer
    that sees only some windows still knows that the stream restarted and why.
    """

    frames: tuple
    stamps: tuple
    frame_id: str
    key: Hashable
    seq: int
    epoch: int = 0
    reset: Optional[str] = None

    @property
    def start(self) -> int:
        return self.stamps[0]

    @property
    def end(self) -> int:
        return self.stamps[-1]

    @property
    def num_frames(self) -> int:
        return len(self.frames)


@dataclass(frozen=True)
class PushResult:
    sampled: bool = False
    refused: Optional[str] = None   # reason the frame was refused (it changed nothing)
    reset: Optional[str] = None     # reason the window was emptied before this frame
    window: Optional[Window] = None


@dataclass(frozen=True)
class Sampling:
    """How frames are sampled into clips, and why (for the log and diagnostics)."""

    sample_every: int = 1
    target_fps: float = 0.0
    reason: str = ''

    @classmethod
    def resolve(cls, target_fps: float, sample_every: int,
                clip_fps: Optional[float]) -> 'Sampling':
        """Return the sampling of the parameters `target_fps` and `sample_every` (0: unset).

        The first set one wins; with neither set, the checkpoint's clip rate `clip_fps` (by
        header stamps); with no rate recorded either, every frame.
        """
        if target_fps > 0:
            return cls(target_fps=target_fps, reason='target_fps')
        if sample_every > 0:
            return cls(sample_every=sample_every, reason='sample_every')
        if clip_fps:
            return cls(target_fps=clip_fps, reason="the checkpoint's clip rate")
        return cls(reason='the checkpoint records no clip rate')

    def describe(self) -> str:
        """Return, for example, '10 fps by header stamps (the checkpoint's clip rate)'."""
        if self.target_fps > 0:
            how = f'{self.target_fps:g} fps by header stamps'
        elif self.sample_every == 1:
            how = 'every frame'
        else:
            how = f'every {self.sample_every} frames'
        return f'{how} ({self.reason})' if self.reason else how

    def buffer(self, num_frames: int, stride: int = 1, max_gap_s: float = 1.0) -> 'ClipBuffer':
        """Return a ClipBuffer that samples this way."""
        return ClipBuffer(num_frames, stride=stride, sample_every=self.sample_every,
                          target_fps=self.target_fps, max_gap_s=max_gap_s)


class ClipBuffer:

    def __init__(self, num_frames: int, stride: int = 1, sample_every: int = 1,
                 target_fps: float = 0.0, max_gap_s: float = 1.0):
        if num_frames < 1:
            raise ValueError(f'num_frames must be >= 1, got {num_frames}')
        if stride < 1:
            raise ValueError(f'stride must be >= 1, got {stride}')
        if sample_every < 1:
            raise ValueError(f'sample_every must be >= 1, got {sample_every}')
        if target_fps != 0 and rate_problem(target_fps):
            raise ValueError(f'target_fps (0 disables it) {rate_problem(target_fps)}')
        if max_gap_s <= 0:
            raise ValueError(f'max_gap_s must be > 0, got {max_gap_s}')
        self.num_frames = num_frames
        self.stride = stride
        self.sample_every = sample_every
        self.target_fps = target_fps
        self.max_gap_ns = int(max_gap_s * NS)
        self._frames = deque(maxlen=num_frames)
        self._stamps = deque(maxlen=num_frames)
        self._last_stamp: Optional[int] = None
        self._key = None
        self._frame_id = None
        self._since_reset = 0        # frames offered since the last reset (sample_every)
        self._anchor = 0             # target_fps grid origin (ns)
        self._next_slot = 0          # index of the next grid slot to fill
        self._since_window = 0       # sampled frames since the last emitted window
        self._emitted = False        # a window has been emitted since the last reset
        self._seq = 0
        self._epoch, self._epoch_reason = 0, None

    def __len__(self) -> int:
        return len(self._frames)

    def set_stride(self, stride: int):
        if stride < 1:
            raise ValueError(f'stride must be >= 1, got {stride}')
        self.stride = stride

    def reset(self, reason: str = 'requested'):
        """Empty the window; the next frame starts a new one."""
        self._frames.clear()
        self._stamps.clear()
        self._last_stamp = None
        self._key = None
        self._frame_id = None
        self._epoch, self._epoch_reason = self._epoch + 1, reason

    def _reset_reason(self, stamp: int, key, frame_id: str) -> Optional[str]:
        last = self._last_stamp
        if last is None:
            return None
        if stamp < last:
            return 'backwards'
        if stamp - last > self.max_gap_ns:
            return 'gap'
        if key != self._key:
            return 'format_change'
        if frame_id != self._frame_id:
            return 'frame_id_change'
        return None

    def _samples(self, stamp: int, fresh: bool) -> bool:
        if fresh:
            return True
        if self.target_fps > 0:
            period = NS / self.target_fps
            early = min(0.25 * period, 0.5 * (stamp - self._last_stamp))
            return stamp >= self._anchor + self._next_slot * period - early
        return self._since_reset % self.sample_every == 0

    def push(self, stamp: int, key: Hashable, frame_id: str,
             load: Callable[[], Any]) -> PushResult:
        """Offer one frame; see the module docstring for the rules."""
        stamp = int(stamp)
        if self._last_stamp is not None and stamp == self._last_stamp:
            return PushResult(refused='duplicate_stamp')
        reset = self._reset_reason(stamp, key, frame_id)
        fresh = self._last_stamp is None or reset is not None
        sampled = self._samples(stamp, fresh)
        frame = load() if sampled else None   # may raise: nothing has changed yet

        if reset is not None:
            self.reset(reset)
        if fresh:
            self._since_reset = 0
            self._anchor = stamp
            self._next_slot = 0
            self._since_window = 0
            self._emitted = False
            self._key, self._frame_id = key, frame_id
        self._last_stamp = stamp
        self._since_reset += 1
        if not sampled:
            return PushResult(reset=reset)
        if self.target_fps > 0:
            period = NS / self.target_fps
            self._next_slot = int((stamp - self._anchor) / period + 0.5) + 1
        self._frames.append(frame)
        self._stamps.append(stamp)
        self._since_window += 1
        window = None
        if len(self._frames) == self.num_frames and (
                not self._emitted or self._since_window >= self.stride):
            window = Window(tuple(self._frames), tuple(self._stamps), frame_id, key, self._seq,
                            self._epoch, self._epoch_reason)
            self._seq += 1
            self._since_window = 0
            self._emitted = True
        return PushResult(sampled=True, reset=reset, window=window)


class ClipRate(Protocol):
    """What the windowing needs to know of a model: its clip rate and clip length.

    An engine (`engine.Engine`, or `fleet.RemoteEngine` standing in for one) has both:
    `clip_fps` is the checkpoint's clip rate (None when unknown), `num_frames` its clip length.
    """

    clip_fps: Optional[float]
    num_frames: int


def model_sampling(model: ClipRate, values: dict) -> Sampling:
    """Return the sampling that the parameters `target_fps`/`sample_every` ask for of `model`.

    With neither set it is the checkpoint's clip rate: the model works at that rate.
    """
    return Sampling.resolve(values['target_fps'], values['sample_every'], model.clip_fps)


def model_clip_buffer(model: ClipRate, values: dict) -> ClipBuffer:
    """Return the window buffer of the parameters for `model`, sampling as `model_sampling`."""
    return model_sampling(model, values).buffer(model.num_frames, stride=values['stride'],
                                                max_gap_s=values['max_gap_s'])
