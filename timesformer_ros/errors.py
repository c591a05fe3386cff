"""Errors as one line: what a command line, a summary file or a log record says of a failure."""

from __future__ import annotations

import re

# Terminal colour and cursor codes (ESC [ ... letter), as Ray and others put in their messages.
_ESCAPES = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]')


def first_line(text: str) -> str:
    """Return the first non-empty line of `text` without terminal escape codes ('' if none)."""
    for line in _ESCAPES.sub('', text).splitlines():
        if line.strip():
            return line.strip()
    return ''


def brief(exc: BaseException, limit: int = 200, with_type: bool = True) -> str:
    """Return an exception as one short line: its type and the first line of its message.

    Without `with_type`, the message alone (the type's name when the message is empty).
    """
    line = first_line(str(exc))
    name = type(exc).__name__
    text = (f'{name}: {line}' if with_type else line) if line else name
    return text if len(text) <= limit else text[:limit - 3] + '...'
