"""Which bags a command line names: paths, directories searched for bags, and globs.

Discovery is bounded: directory symlinks are never followed while searching (a link to a
parent would make the tree endless; a link given as it is, or matched by one glob component, is
taken), and at most MAX_PATHS_VISITED directory entries are looked at in all.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from pathlib import Path
from typing import Sequence

BAG_SUFFIXES = ('.mcap', '.bag', '.db3')


def is_bag(path: Path) -> bool:
    """Tell whether `path` is a bag: a rosbag2 directory (metadata.yaml or MCAP files) or file."""
    path = Path(path)
    if path.is_dir():
        return (path / 'metadata.yaml').is_file() or any(path.glob('*.mcap'))
    return path.is_file() and path.suffix in BAG_SUFFIXES


# Bag discovery visits at most this many paths (directory entries, whole run): a tree that
# holds more, or a symlink loop, is a one-line error instead of a search without end.
MAX_PATHS_VISITED = 200_000


class _Visits:
    """Counts the paths a discovery looks at; past MAX_PATHS_VISITED it is a ValueError."""

    def __init__(self, spec: str, limit: int):
        self.spec, self.limit, self.count = spec, limit, 0

    def scan(self, directory: Path) -> list:
        """Return a directory's entries (sorted; none when it cannot be read), counting them."""
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return []
        self.count += len(entries)
        if self.count > self.limit:
            raise ValueError(f'{self.spec}: more than {self.limit} paths looked at without '
                             f'finishing; name the bags, or a directory that holds fewer '
                             f'files')
        return entries


def find_bags(specs: Sequence, limit: int = MAX_PATHS_VISITED) -> list:
    """Expand paths, directories and globs into bags, each once, in the order given.

    A directory that is not itself a bag is searched for bags; a pattern (`*`, `?`, `[`) that
    names no existing path is expanded (`**`: any number of directories). Directory symlinks
    are never followed while searching (a link to a parent would make the tree endless): a
    path given as it is is taken even when it is a link, and a glob component may match a
    link, but `**` and the search of a directory do not descend into one. At most `limit`
    paths are looked at. Raises ValueError naming a spec that gives no bag, or that needs
    more than `limit` paths.
    """
    found = []
    for spec in map(str, specs):
        visits = _Visits(spec, limit)
        if not Path(spec).exists() and any(c in spec for c in '*?['):
            paths = sorted(set(_glob(spec, visits)))
        else:
            paths = [Path(spec)]
        bags = []
        for path in paths:
            if is_bag(path) or not path.is_dir():
                bags.append(path)
            elif path == Path(spec) or not path.is_symlink():
                bags += _bags_under(path, visits)
        if not bags:
            raise ValueError(f'{spec}: no bag there (a rosbag2 directory, or a .mcap, .bag or '
                             f'.db3 file)')
        found += [b.resolve() for b in bags]
    return list(dict.fromkeys(found))


def _bags_under(root: Path, visits: _Visits) -> list:
    bags = []
    for entry in visits.scan(root):
        path = Path(entry.path)
        if is_bag(path):
            bags.append(path)
        elif entry.is_dir(follow_symlinks=False):
            bags += _bags_under(path, visits)
    return bags


def _glob(pattern: str, visits: _Visits):
    """Yield the paths a glob pattern matches, never descending into a directory symlink.

    As `glob.glob(pattern, recursive=True)` (hidden names only where the pattern component
    starts with '.'), but `**` does not follow links and every entry looked at is counted.
    """
    parts = Path(pattern).parts
    literal = 0
    while literal < len(parts) and not glob.has_magic(parts[literal]):
        literal += 1
    base = Path(*parts[:literal]) if literal else Path('.')
    yield from _match(base, parts[literal:], visits, literal == 0)


def _match(base: Path, parts: tuple, visits: _Visits, relative: bool):
    if not parts:
        yield base
        return
    head, rest = parts[0], parts[1:]
    show = (lambda entry: Path(entry.name) if relative else Path(entry.path))
    if head == '**':
        yield from _match(base, rest, visits, relative)      # no directory at all
        for entry in visits.scan(base):
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith('.'):
                yield from _match(show(entry), parts, visits, False)
    elif glob.has_magic(head):
        for entry in visits.scan(base):
            if fnmatch.fnmatchcase(entry.name, head) and (
                    head.startswith('.') or not entry.name.startswith('.')):
                if rest and not entry.is_dir():
                    continue
                yield from _match(show(entry), rest, visits, False)
    else:
        path = base / head
        if os.path.lexists(path):
            yield from _match(path, rest, visits, False)
