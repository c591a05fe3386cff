"""What every part of the bag tools shares: the error, one message of a topic, the type store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from ..errors import brief
from ..messages import COMPRESSED_IMAGE, IMAGE, register_vision_types

IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)


class BagError(RuntimeError):
    """A bag that cannot be used as asked.

    `read` says how many messages were read before; `summary` is what evaluation made of the
    part it could read (None when it evaluated nothing), kept and written by `evaluate`.
    """

    def __init__(self, message: str, read: int = 0, summary: Optional[dict] = None):
        super().__init__(message)
        self.read = read
        self.summary = summary


class NoSummary(BagError):
    """An MCAP file without a readable summary (a cut-off recording): only its stream tells."""


def typestore(vision: bool = False):
    """Return the ROS 2 Kilted type store, with the vision_msgs types when `vision` is set."""
    from rosbags.typesys import Stores, get_typestore
    store = get_typestore(Stores.ROS2_KILTED)
    if vision:
        register_vision_types(store)
    return store


@dataclass(frozen=True)
class BagMessage:
    """One message of a topic: where it is in the bag, and the message or why it is unusable.

    `index` counts the topic's messages from 0 in bag order, unreadable ones included; `error`
    says why the message could not be deserialised ('' when `msg` holds it).
    """

    index: int
    bag_time_ns: int
    msg: Any = None
    error: str = ''


def deserialized(index: int, bag_time_ns: int, raw, msgtype: str,
                 deserialize: Callable) -> BagMessage:
    """Return the message `raw` deserialised, or a BagMessage that says why it could not be."""
    try:
        return BagMessage(index, bag_time_ns, deserialize(raw, msgtype))
    except Exception as exc:  # noqa: BLE001 - corrupt CDR raises many types
        return BagMessage(index, bag_time_ns,
                          error=f'cannot deserialise {msgtype} ({brief(exc)})')
