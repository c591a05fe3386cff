"""SHA-256 of checkpoint files and recordings: what a result or an exported file came from.

No torch here: the fleet's driver hashes bags and checkpoints without loading a model.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence


def digest(path: Path) -> str:
    """SHA-256 of a file, or of a directory's files (their relative names and bytes)."""
    path = Path(path)
    sha = hashlib.sha256()
    files = sorted(p for p in path.rglob('*') if p.is_file()) if path.is_dir() else [path]
    for file in files:
        sha.update(str(file.relative_to(path) if path.is_dir() else '').encode() + b'\0')
        with open(file, 'rb') as handle:
            for block in iter(lambda: handle.read(1 << 20), b''):
                sha.update(block)
    return sha.hexdigest()


def checkpoint_files(path: Path) -> list:
    """Return the files a checkpoint is made of: both of the own format's, else `path`."""
    path = Path(path)
    if path.suffix in ('.json', '.safetensors'):
        files = [path.with_suffix('.json'), path.with_suffix('.safetensors')]
        return [f for f in files if f.exists()]
    return [path]


def digest_of(files: Sequence[Path]) -> str:
    """SHA-256 of several files in order (a single file: its own `digest`)."""
    digests = [digest(f) for f in files]
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256(' '.join(digests).encode()).hexdigest()
