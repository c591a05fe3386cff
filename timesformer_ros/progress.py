"""One progress line on stderr for the long-running tools (bag evaluation, the fleet, training).

Rewritten in place (carriage return): a bar when the total is known, the counts the caller
gives, the rate and an estimate of the time left.
"""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


class Progress:
    """A progress line: `update(done, text)` rewrites it, `close()` ends it with a newline."""

    def __init__(self, total: int, unit: str, enabled: bool = True, width: int = 30,
                 stream: Optional[TextIO] = None):
        self.total, self.unit, self.enabled, self.width = total, unit, enabled, width
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.shown = False

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self, done: int, text: str = '') -> str:
        """Return the line for `done` of `total` units and the caller's `text`.

        `text` follows the count after ', ', or directly when it starts with a space or comma.
        """
        elapsed = self.elapsed()
        fraction = min(done / self.total, 1.0) if self.total else 0.0
        of = f'/{self.total}' if self.total else ''
        head = f'[{"#" * int(self.width * fraction):<{self.width}}] {done}{of} {self.unit}'
        if text:
            head += text if text.startswith((' ', ',')) else ', ' + text
        parts = [head, f'{elapsed:5.1f}s']
        if self.total and 0 < done < self.total:
            parts.append(f'ETA {elapsed * (self.total - done) / done:4.0f}s')
        return ', '.join(parts)

    def update(self, done: int, text: str = ''):
        if not self.enabled:
            return
        self.stream.write('\r' + self.line(done, text) + '   ')
        self.stream.flush()
        self.shown = True

    def close(self):
        if self.enabled and self.shown:
            self.stream.write('\n')
            self.stream.flush()
            self.shown = False
