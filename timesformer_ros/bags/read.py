"""Reading a topic of a bag, message by message, whatever its storage.

MCAP files (a .mcap file, or a rosbag2 directory of them) are read by `mcap` (this package's,
bounded), other bags (rosbag2 in sqlite3, ROS 1) by rosbags. A message whose CDR cannot be read is
yielded with its error and reading goes on; a bag that breaks off raises BagError after what came
before.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import brief
from .base import BagError, BagMessage, deserialized, typestore
from .mcap import mcap_files, mcap_topics, read_mcap_topic

LOGGER = logging.getLogger(__name__)


def open_reader(path: Path):
    """Open a bag with rosbags' AnyReader (rosbag2 sqlite3, ROS 1); BagError if it cannot."""
    from rosbags.highlevel import AnyReader
    path = Path(path)
    if not path.exists():
        raise BagError(f'bag not found: {path}')
    try:
        reader = AnyReader([path], default_typestore=typestore())
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises several types for broken bags
        raise BagError(f'{path}: cannot open as a bag ({brief(exc)})') from None
    return reader


def list_topics(path: Path) -> dict:
    """{topic: (message type, message count)}.

    MCAP files are read from their summaries (`mcap.mcap_topics`): rosbags would inflate the chunks
    of a file without one, whatever their size.
    """
    files = mcap_files(path)
    if files:
        return mcap_topics(files)
    reader = open_reader(path)
    try:
        return {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
    finally:
        reader.close()


def check_topic(topics: dict, topic: str, types: Sequence[str], path: Path) -> int:
    """Raise BagError unless `topic` is in `topics` with one of `types`; return its count.

    `topics` is {topic: (type, count)}; the count returned is the message count.
    """
    if topic not in topics:
        raise BagError(f'{path}: no topic {topic!r} (topics: {sorted(topics)})')
    msgtype, count = topics[topic]
    if msgtype not in types:
        raise BagError(f'{path}: topic {topic!r} holds {msgtype}, expected one of {list(types)}')
    return count


def _connections(reader, topic: str, types: Sequence[str], path: Path):
    check_topic({c.topic: (c.msgtype, c.msgcount) for c in reader.connections}, topic, types,
                path)
    return [c for c in reader.connections if c.topic == topic]


def read_topic(path: Path, topic: str, types: Sequence[str]) -> Iterator[BagMessage]:
    """Yield every message of `topic` in bag order, each deserialised on its own.

    A message whose CDR cannot be read comes with its `error`, and reading goes on with the
    next. A bag that breaks off part-way raises BagError after yielding everything before the
    break, with the count in `read`. MCAP files are read by `mcap` ( bounded
    inflation, file order, which is time order for a recorder's file), other bags by rosbags.
    """
    files = mcap_files(path)
    if files:
        yield from read_mcap_topic(files, topic, types, path)
        return
    reader = open_reader(path)
    index = 0
    try:
        connections = _connections(reader, topic, types, path)
        messages = reader.messages(connections=connections)
        while True:
            try:
                connection, timestamp, raw = next(messages)
            except StopIteration:
                break
            except Exception as exc:  # noqa: BLE001 - a truncated bag raises from deep inside
                raise BagError(f'{path}: the bag breaks off after {index} messages of {topic} '
                               f'({brief(exc)})', read=index) from None
            yield deserialized(index, timestamp, raw, connection.msgtype, reader.deserialize)
            index += 1
    finally:
        try:
            reader.close()
        except Exception:  # noqa: BLE001 - closing a broken bag may fail again
            pass


def iter_messages(path: Path, topic: str, types: Sequence[str]) -> Iterator[tuple]:
    """(bag time ns, message) of `topic` in bag order; unreadable messages are left out.

    Each one left out is logged (`read_topic` yields them too). A bag that breaks off part-way
    raises BagError after yielding everything that could be read, with the count in `read`.
    """
    for item in read_topic(path, topic, types):
        if item.error:
            LOGGER.warning('%s: skipped message #%d of %s at bag time %d ns: %s', path,
                           item.index, topic, item.bag_time_ns, item.error)
            continue
        yield item.bag_time_ns, item.msg
