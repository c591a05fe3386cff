"""A topic's messages into the node's windows: one camera's intake, for evaluation and training.

`CameraIntake.take` offers one bag message to the camera's clip buffer exactly as the node takes
a frame (`pipeline.take_frame`: decode, check, sample, push) and counts what was refused. An
unreadable message (its CDR could not be deserialised) is refused as `unreadable`. Evaluation
(`evaluate`) and training from bags (`finetune`) both cut their windows here, so a model is
trained on the windows it is evaluated on and that the node gives it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from ..clips import ClipBuffer
from .base import BagMessage

# The refusals that name a message (it could not be used at all), as evaluation reports them.
SKIPPED = ('unreadable', 'decode_error', 'internal_error')


@dataclass
class CameraIntake:
    """One camera: its image topic, window buffer and preprocessing, and its counts."""

    topic: str
    buffer: ClipBuffer
    preprocess: Callable[[Any], Any]
    frames: int = 0
    refused: Counter = field(default_factory=Counter)

    def take(self, item: BagMessage):
        """Offer one message of the topic to the buffer; return the `pipeline.Intake`."""
        from ..pipeline import Intake, take_frame
        self.frames += 1
        if item.error:
            intake = Intake(refused='unreadable', message=item.error)
        else:
            intake = take_frame(self.buffer, item.msg, self.preprocess)
        if intake.refused:
            self.refused[intake.refused] += 1
        return intake
