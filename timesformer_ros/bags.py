"""Rosbag reading and writing, offline evaluation, replay (`timesformer_bag`).

    timesformer_bag topics BAG
    timesformer_bag evaluate BAG --topic /camera/image_raw [--topic /rear/image_raw ...]
                             [--checkpoint C] [--truth T]
                             [--params-file config/timesformer.yaml] [--out results.jsonl]
                             [--out-bag results_bag] [--confusion confusion.png]
    timesformer_bag evaluate BAG|DIR|GLOB ... --topic T --out-dir DIR [--address A]  (`fleet`)
    timesformer_bag play BAG --topic /camera/image_raw [--rate 1.0] [--loop] [--clock]
    timesformer_bag record-synthetic OUT [--storage sqlite3|mcap] [--seconds 20]

Bags are read with `rosbags` (rosbag2 in sqlite3 storage, ROS 1 bags) and `mcap` (MCAP files and
rosbag2 in MCAP storage), so none of this needs a ROS install. `evaluate` runs exactly the
node's windowing (the same ClipBuffer, fed the same parameters file) over the bag as fast as the
engine allows, batching windows, and writes one JSON line per window in the node's `~/window`
schema. Several `--topic`s are several cameras, as the node's `cameras` parameter serves them:
each has its own windows and action decoder, their windows share batches, and each row (and
segment) carries its `camera` (`camera_name`), the bag's output topics go under
`/timesformer/CAMERA/`. Ground truth is a std_msgs/String topic (the synthetic camera's JSON
{"stamp", "label"}, or a plain label per message matched to the frame with the nearest bag time)
or a CSV of `stamp,label` (stamp in seconds or integer nanoseconds).

A bag is input from anywhere, so reading it is bounded: a message whose CDR cannot be read is
skipped and named (`BagMessage.error`, the summary's `skipped_messages`) and the rest of the bag
is read; an MCAP chunk is inflated piece by piece, never past the size it declares nor past
`MAX_CHUNK_BYTES`, and `evaluate` refuses a chunk that declares more before the model (and
torch, half a gigabyte of it) is loaded. Outputs are written under partial names and renamed
into place at the end (`ResultWriter` says why).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import heapq
import io
import json
import logging
import os
import re
import shutil
import struct
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from .clips import ClipBuffer
from .interface import read_params_file
from .messages import (
    COMPRESSED_IMAGE, IMAGE, STRING, bag_types, convert_image, dict_ns, rclpy_types,
    register_vision_types, split_ns, stamp_dict)
from .segments import ActionDecoder, DecoderConfig, from_events, runs, segment_metrics

LOGGER = logging.getLogger(__name__)

IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)

# The largest uncompressed size an MCAP chunk may declare: twice the largest frame that
# `frames.decode` accepts (the package's MAX_PIXELS, 2**24, at 8 bytes a pixel, rgba16 or 64FC1:
# 128 MiB), so 256 MiB (a test keeps the two tied).
# Recorders close a chunk after a few MiB (rosbags after 1 MiB) and put a larger message in a
# chunk of its own, so no chunk of a frame the node would take comes near it, and a chunk that
# declares more is refused before anything is inflated. Reading inflates piece by piece and
# holds one record at a time, so a chunk that lies about its size costs at most what it declares.
MAX_CHUNK_BYTES = 256 << 20
# Largest top-level MCAP record read into memory (a chunk's compressed data, a message outside
# chunks): a chunk's compressed data is at most about its declared size.
MAX_RECORD_BYTES = MAX_CHUNK_BYTES + (1 << 20)
# How many skipped messages the summary names (all of them are counted).
MAX_NAMED_SKIPS = 100

_MCAP_MAGIC = b'\x89MCAP0\r\n'
_OP_FOOTER, _OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK = 0x02, 0x03, 0x04, 0x05, 0x06


class BagError(RuntimeError):
    """A bag that cannot be used as asked; `read` says how many messages were read before."""

    def __init__(self, message: str, read: int = 0):
        super().__init__(message)
        self.read = read


class _NoSummary(BagError):
    """An MCAP file without a readable summary (a cut-off recording): only its stream tells."""


class _McapError(ValueError):
    """What is wrong with an MCAP chunk; the reader adds the file and the count read."""


def _brief(exc: BaseException, limit: int = 200) -> str:
    """Return an exception as one short line: its type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    text = f'{type(exc).__name__}: {lines[0]}' if lines else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + '...'


def _typestore(vision: bool = False):
    """Return the ROS 2 Kilted type store, with the vision_msgs types when `vision` is set."""
    from rosbags.typesys import Stores, get_typestore
    store = get_typestore(Stores.ROS2_KILTED)
    if vision:
        register_vision_types(store)
    return store


def open_reader(path: Path):
    from rosbags.highlevel import AnyReader
    path = Path(path)
    if not path.exists():
        raise BagError(f'bag not found: {path}')
    try:
        reader = AnyReader([path], default_typestore=_typestore())
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises several types for broken bags
        raise BagError(f'{path}: cannot open as a bag ({type(exc).__name__}: {exc})') from None
    return reader


def list_topics(path: Path) -> dict:
    """{topic: (message type, message count)}.

    MCAP files are read from their summaries (`_mcap_topics`): rosbags would inflate the chunks
    of a file without one, whatever their size.
    """
    files = _mcap_files(path)
    if files:
        return _mcap_topics(files)
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


def _deserialized(index: int, bag_time_ns: int, raw, msgtype: str,
                  deserialize: Callable) -> BagMessage:
    try:
        return BagMessage(index, bag_time_ns, deserialize(raw, msgtype))
    except Exception as exc:  # noqa: BLE001 - corrupt CDR raises many types
        return BagMessage(index, bag_time_ns,
                          error=f'cannot deserialise {msgtype} ({_brief(exc)})')


def read_topic(path: Path, topic: str, types: Sequence[str]) -> Iterator[BagMessage]:
    """Yield every message of `topic` in bag order, each deserialised on its own.

    A message whose CDR cannot be read comes with its `error`, and reading goes on with the
    next. A bag that breaks off part-way raises BagError after yielding everything before the
    break, with the count in `read`. MCAP files are read here (`_mcap_records`: bounded
    inflation, file order, which is time order for a recorder's file), other bags by rosbags.
    """
    files = _mcap_files(path)
    if files:
        yield from _read_mcap_topic(files, topic, types, path)
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
                               f'({_brief(exc)})', read=index) from None
            yield _deserialized(index, timestamp, raw, connection.msgtype, reader.deserialize)
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


# -- MCAP, read with bounded inflation ---------------------------------------------------------

def _mcap_files(path: Path) -> list:
    """Return the MCAP files of a bag (a .mcap file, or a rosbag2 directory of them) in order.

    A split recording's files (NAME_0.mcap ... NAME_10.mcap) come in the order of their numbers.
    """
    path = Path(path)
    if path.suffix == '.mcap' and path.is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(path.glob('*.mcap'), key=lambda p: [
        int(part) if part.isdigit() else part for part in re.split(r'(\d+)', p.name)])


def _check_chunk_size(declared: int, where: str):
    if declared > MAX_CHUNK_BYTES:
        raise _McapError(f'{where} declares {declared} bytes uncompressed ({declared / 2**30:.1f} '
                         f'GiB), more than the {MAX_CHUNK_BYTES >> 20} MiB a chunk may hold: '
                         f'refused before inflating it (a decompression bomb or a corrupt file)')


def check_mcap_chunks(path: Path):
    """Refuse an MCAP bag with a chunk that declares more than MAX_CHUNK_BYTES uncompressed.

    Walks each file's top-level record headers, seeking past their bodies, so nothing is read
    into memory or inflated: `evaluate` calls it before it loads the model. A file that ends
    early or holds nonsense is left to the reader, which keeps what it can read. Bags of other
    storage pass.
    """
    for file in _mcap_files(path):
        with open(file, 'rb') as handle:
            if handle.read(8) != _MCAP_MAGIC:
                continue
            chunks = 0
            while True:
                start = handle.tell()
                head = handle.read(9)
                if len(head) < 9:
                    break
                opcode, length = struct.unpack('<BQ', head)
                if opcode == _OP_FOOTER:
                    break
                if opcode == _OP_CHUNK:
                    chunks += 1
                    fields = handle.read(24)
                    if len(fields) < 24:
                        break
                    try:
                        _check_chunk_size(struct.unpack_from('<Q', fields, 16)[0],
                                          f'chunk {chunks} (at byte {start})')
                    except _McapError as exc:
                        raise BagError(f'{file}: {exc}') from None
                handle.seek(start + 9 + length)


def _mcap_topics(files: Sequence[Path]) -> dict:
    """{topic: (message type, count)} of MCAP files, from their summaries: nothing is inflated.

    A file whose end cannot be read (a cut-off recording) raises _NoSummary. A complete file
    written without a summary, or without statistics in it, is counted by reading it
    (`_scanned_topics`, bounded as all reading is).
    """
    from mcap.reader import SeekingReader
    topics = {}
    for file in files:
        try:
            with open(file, 'rb') as handle:
                summary = SeekingReader(handle,
                                        record_size_limit=MAX_RECORD_BYTES).get_summary()
        except Exception as exc:  # noqa: BLE001 - a cut-off or foreign file, several types
            raise _NoSummary(f'{file}: cannot open as a bag ({_brief(exc)})') from None
        if summary is None or summary.statistics is None:
            found = _scanned_topics(file)
        else:
            counts = summary.statistics.channel_message_counts
            found = {}
            for channel in summary.channels.values():
                schema = summary.schemas.get(channel.schema_id)
                count = counts.get(channel.id, 0) + found.get(channel.topic, ('', 0))[1]
                found[channel.topic] = (schema.name if schema else '', count)
        for topic, (msgtype, count) in found.items():
            topics[topic] = (msgtype, count + topics.get(topic, ('', 0))[1])
    return topics


def _scanned_topics(file: Path) -> dict:
    """{topic: (message type, count)} of an MCAP file, counted by reading it to its end.

    What cannot be read is left to the reader to report: this counts what comes before it.
    """
    from mcap.records import Channel, Message, Schema
    schemas, channels, counts = {}, {}, Counter()
    try:
        for record in _mcap_records(file):
            if isinstance(record, Message):
                counts[record.channel_id] += 1
            elif isinstance(record, Schema):
                schemas[record.id] = record.name
            elif isinstance(record, Channel):
                channels[record.id] = (record.topic, schemas.get(record.schema_id, ''))
    except Exception as exc:  # noqa: BLE001 - as in _read_mcap_topic
        LOGGER.warning('%s: counted the messages before %s', file, _brief(exc))
    topics = {}
    for channel, (topic, msgtype) in channels.items():
        topics[topic] = (msgtype, counts[channel] + topics.get(topic, ('', 0))[1])
    return topics


def _read_mcap_topic(files: Sequence[Path], topic: str, types: Sequence[str],
                     path: Path) -> Iterator[BagMessage]:
    from mcap.exceptions import EndOfFile
    from mcap.records import Channel, Message, Schema
    store = _typestore()
    index, found = 0, False
    for file in files:
        schemas, wanted = {}, {}
        try:
            for record in _mcap_records(file):
                if isinstance(record, Schema):
                    schemas[record.id] = record.name
                elif isinstance(record, Channel) and record.topic == topic:
                    msgtype = schemas.get(record.schema_id, '')
                    if msgtype not in types:
                        raise BagError(f'{path}: topic {topic!r} holds {msgtype}, expected one '
                                       f'of {list(types)}', read=index)
                    wanted[record.id] = msgtype
                elif isinstance(record, Message) and record.channel_id in wanted:
                    yield _deserialized(index, record.log_time, record.data,
                                        wanted[record.channel_id], store.deserialize_cdr)
                    index += 1
        except BagError:
            raise
        except _McapError as exc:
            raise BagError(f'{file}: {exc}; {index} messages of {topic} were read before it',
                           read=index) from None
        except EndOfFile:
            raise BagError(f'{file}: the bag breaks off after {index} messages of {topic} (the '
                           f'file ends inside a record: the recording was cut off)',
                           read=index) from None
        except Exception as exc:  # noqa: BLE001 - a damaged file surfaces as several types
            raise BagError(f'{file}: the bag breaks off after {index} messages of {topic} '
                           f'({_brief(exc)})', read=index) from None
        found = found or bool(wanted)
    if not found:
        raise BagError(f'{path}: no topic {topic!r} in the readable part of the bag')


def _mcap_records(path: Path) -> Iterator:
    """Yield the Schema, Channel and Message records of an MCAP file in file order.

    `mcap`'s StreamReader reads the file record by record (none longer than MAX_RECORD_BYTES)
    and stops after the footer; chunks are opened here (`_chunk_records`), not by `mcap`, which
    inflates a chunk whole to whatever size it turns out to have.
    """
    from mcap.records import Channel, Chunk, Message, Schema
    from mcap.stream_reader import StreamReader
    with open(path, 'rb') as handle:
        reader = StreamReader(handle, emit_chunks=True, record_size_limit=MAX_RECORD_BYTES)
        start, chunks = len(_MCAP_MAGIC), 0
        for record in reader.records:
            if isinstance(record, Chunk):
                chunks += 1
                yield from _chunk_records(record, f'chunk {chunks} (at byte {start})')
            elif isinstance(record, (Schema, Channel, Message)):
                yield record
            start = handle.tell()


def _chunk_records(chunk, where: str) -> Iterator:
    """Yield the Schema, Channel and Message records of one MCAP chunk, inflating as it goes.

    A chunk that declares more than MAX_CHUNK_BYTES is refused before anything is inflated;
    otherwise at most its declared size is inflated (and one byte more, to catch a chunk that
    holds more than it says), one record at a time. CRCs are not checked (nor are they by
    `mcap`'s reader, by default): a flipped bit in a frame is that frame's to answer for.
    """
    from mcap.data_stream import ReadDataStream
    from mcap.records import Channel, Message, Schema
    declared = left = chunk.uncompressed_size
    _check_chunk_size(declared, where)
    stream = _inflating(chunk.compression, chunk.data, where)
    if not left:
        _check_drained(stream, declared, where)
    while left:
        if left < 9:
            raise _McapError(f'{where} ends inside a record header')
        opcode, length = struct.unpack('<BQ', _read_exactly(stream, 9, where))
        left -= 9
        if opcode == 0:
            raise _McapError(f'{where} holds an invalid record (opcode 0)')
        if length > left:
            raise _McapError(f'{where} holds a record of {length} bytes, more than the {left} '
                             f'bytes left of the {declared} it declares')
        body = _read_exactly(stream, length, where)
        left -= length
        if not left:
            _check_drained(stream, declared, where)
        if opcode == _OP_MESSAGE:
            channel_id, sequence, log_time, publish_time = struct.unpack_from('<HIQQ', body)
            yield Message(channel_id=channel_id, log_time=log_time, data=memoryview(body)[22:],
                          publish_time=publish_time, sequence=sequence)
        elif opcode in (_OP_SCHEMA, _OP_CHANNEL):
            kind = Schema if opcode == _OP_SCHEMA else Channel
            yield kind.read(ReadDataStream(io.BytesIO(body)))


def _inflating(compression: str, data: bytes, where: str):
    """Return a file object that inflates a chunk's data only as far as it is read."""
    if compression == '':
        return io.BytesIO(data)
    if compression == 'zstd':
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
    if compression == 'lz4':
        import lz4.frame
        return lz4.frame.LZ4FrameFile(io.BytesIO(data), mode='rb')
    raise _McapError(f'{where} has an unsupported compression {compression[:20]!r}')


def _read_exactly(stream, size: int, where: str) -> bytearray:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        count = stream.readinto(view[got:])
        if not count:
            raise _McapError(f'{where} inflates to less than it declares')
        got += count
    return buffer


def _check_drained(stream, declared: int, where: str):
    if stream.read(1):
        raise _McapError(f'{where} inflates past its declared size of {declared} bytes')


# -- ground truth ------------------------------------------------------------------------------

def read_truth(source: str, bag: Path, frame_times: dict) -> dict:
    """{frame header stamp ns: label} from a CSV file or a String topic of `bag`.

    `frame_times` maps each frame's bag time to its header stamp, for plain-label topics.
    """
    path = Path(source)
    if path.suffix == '.csv' and path.is_file():
        truth = {}
        with path.open(newline='') as handle:
            for row in csv.reader(handle):
                if not row or row[0].strip().lower() == 'stamp':
                    continue
                text = row[0].strip()
                stamp = int(text) if text.isdigit() else int(round(float(text) * 1e9))
                truth[stamp] = row[1].strip()
        return truth
    truth = {}
    times = np.array(sorted(frame_times))
    for timestamp, msg in iter_messages(bag, source, (STRING,)):
        try:
            data = json.loads(msg.data)
            truth[dict_ns(data['stamp'])] = data['label']
        except (ValueError, KeyError, TypeError):
            if len(times):
                nearest = times[np.abs(times - timestamp).argmin()]
                truth[frame_times[int(nearest)]] = msg.data
    return truth


# -- evaluation ------------------------------------------------------------------------------

@dataclass
class Evaluation:
    """What `evaluate` runs: the bag and image topic, parameters file, checkpoint and truth.

    The node's parameters file (its defaults without one), the checkpoint (the parameters file's,
    else the embedded model) and the truth (a String topic of the bag or a CSV file).
    """

    bag: Path
    topic: Union[str, Sequence[str]]     # one image topic, or several: one camera each
    checkpoint: Optional[str] = None
    params_file: Optional[Path] = None
    truth: Optional[str] = None
    device: str = 'auto'             # 'auto': the parameters file's device
    batch_size: int = 8
    progress: bool = True

    @property
    def topics(self) -> tuple:
        return (self.topic,) if isinstance(self.topic, str) else tuple(self.topic)


_IMAGE_SUFFIXES = ('/compressed', '/image_raw', '/image_rect_color', '/image_rect',
                   '/image_color', '/image')


def camera_name(topic: str, taken: Sequence[str] = ()) -> str:
    """Return the camera name of an image topic: '/robot/front/image_raw' -> 'robot_front'.

    Its namespace with the image suffixes taken off, as a ROS name token; `camera<N>` when
    nothing is left, with `_<N>` added when the name is in `taken`.
    """
    name = topic
    for suffix in _IMAGE_SUFFIXES:
        if name.endswith(suffix):
            name = name[:-len(suffix)]
    name = re.sub(r'[^A-Za-z0-9_]', '_', name.strip('/'))
    if not name or not name[0].isalpha():
        name = f'camera{len(taken)}' + (f'_{name}' if name else '')
    while name in taken:
        name = f'{name}_{len(taken)}'
    return name


@dataclass
class _Camera:
    """One camera of an evaluation: its topic, window buffer, reporter and counts."""

    name: str
    topic: str
    buffer: ClipBuffer
    reporter: Any
    frames: int = 0
    windows: int = 0
    refused: Counter = dataclasses.field(default_factory=Counter)


def _merged(bag: Path, cameras: Sequence[_Camera]) -> Iterator[tuple]:
    """(camera, BagMessage) of every camera's topic, merged in bag time order."""
    def tagged(index, camera):
        for item in read_topic(bag, camera.topic, IMAGE_TYPES):
            yield (item.bag_time_ns, index, item.index), camera, item

    for _, camera, item in heapq.merge(*(tagged(i, c) for i, c in enumerate(cameras)),
                                       key=lambda entry: entry[0]):
        yield camera, item


@dataclass
class EvaluationOutputs:
    """Where `evaluate` writes, each optional.

    JSON lines of `~/window`, a rosbag2 of the node's output topics, completed action
    segments as JSON lines, a confusion PNG.
    """

    jsonl: Optional[Path] = None
    bag: Optional[Path] = None
    segments: Optional[Path] = None
    confusion: Optional[Path] = None


def evaluate(run: Evaluation, outputs: EvaluationOutputs = EvaluationOutputs(),
             engine=None) -> dict:
    """Run the node's windowing, model and outputs over a bag; return a summary.

    `engine` is the engine the parameters file describes, built here when not given; the fleet
    (`fleet`, many bags on Ray) passes one built once per worker, or one whose `infer` runs in a
    shared model actor, so that every bag goes through this one function.

    The bag is checked before the model is loaded: its topics, and an MCAP file's chunk sizes
    (`check_mcap_chunks`). A message that cannot be deserialised, or whose frame cannot be
    decoded, is refused and counted (`refused`), and evaluation goes on with the next; the
    summary names the unreadable and undecodable ones (`skipped_messages`: index, bag time,
    reason; the first MAX_NAMED_SKIPS, all counted in `skipped`). A window the model fails on
    (NaN or inf scores, an error) is counted in `failed_windows` and written nowhere, as the
    node publishes nothing for it. Several topics are several cameras (module docstring); the
    summary's `cameras` gives each one's counts. Raises BagError when the bag breaks off, with
    what was evaluated so far written and kept, and OutputError when an output cannot be
    written, with no output left behind (`ResultWriter`).
    """
    bag, topics = run.bag, run.topics
    if not topics or len(set(topics)) != len(topics):
        raise BagError(f'{bag}: give each image topic once, got {list(topics)}')
    check_mcap_chunks(bag)
    try:
        kinds = list_topics(bag)
        total = sum(check_topic(kinds, topic, IMAGE_TYPES, bag) for topic in topics)
    except _NoSummary:
        total = 0  # a cut-off MCAP file: its summary is gone, the stream says what is there
    from .engine import engine_from_values
    from .outputs import Reporter
    from .pipeline import NonFiniteResult, run_batch, take_frame
    params = read_params_file(run.params_file)
    if engine is None:
        engine = engine_from_values(engine_values(run, params), max_batch=run.batch_size)
    sampling = engine.sampling(params).describe()
    if run.progress:
        sys.stderr.write(f'sampling: {sampling}\n')
    cameras, names = [], []
    for topic in topics:
        # One topic: the node's unnamed camera (rows and output topics as the node's).
        names.append(camera_name(topic, names) if len(topics) > 1 else '')
        cameras.append(_Camera(names[-1], topic, engine.clip_buffer(params), Reporter(
            ActionDecoder(engine.labels, DecoderConfig.from_values(params)))))
    writer = ResultWriter(
        dataclasses.replace(outputs, confusion=outputs.confusion if run.truth else None),
        engine.labels, params)
    ended = []          # end events: the completed segments
    label_changes, last_labels = Counter(), {}   # of the raw top-1 and the stable label
    refused, failed = Counter(), Counter()
    skipped = []        # the unreadable and undecodable messages, named
    pending, frame_times, records = [], {}, []
    started = time.monotonic()
    frames = 0
    error = None

    def write(camera, result):
        writer.write(result, camera.name)
        ended.extend(e for e in result.events if e['event'] == 'end')

    def flush():
        if not pending:
            return
        outcomes = run_batch(engine, [window for _, window, _, _ in pending])
        for (camera, window, frame_id, rgb), prediction in zip(pending, outcomes):
            if isinstance(prediction, BaseException):
                failed['non_finite' if isinstance(prediction, NonFiniteResult)
                       else 'error'] += 1
                continue
            result = camera.reporter.window(
                window, prediction, frame_id,
                prediction.timings['inference_ms'] / len(pending), params, rgb)
            records.append(result.record)
            camera.windows += 1
            for kind, value in (('raw', prediction.label), ('decoded', result.label)):
                key = (camera.name, kind)
                label_changes[kind] += key in last_labels and last_labels[key] != value
                last_labels[key] = value
            write(camera, result)
        pending.clear()

    def close_segments():
        for camera in cameras:
            result = camera.reporter.close('end_of_bag')
            if result is not None:
                write(camera, result)

    def skip(camera, item: BagMessage, kind: str, reason: str):
        refused[kind] += 1
        camera.refused[kind] += 1
        if len(skipped) < MAX_NAMED_SKIPS:
            skipped.append({'index': item.index, 'bag_time_ns': item.bag_time_ns,
                            'reason': reason, **({'topic': camera.topic}
                                                 if len(cameras) > 1 else {})})

    try:
        try:
            for camera, item in _merged(bag, cameras):
                frames += 1
                camera.frames += 1
                if item.error:
                    skip(camera, item, 'unreadable', item.error)
                    continue
                intake = take_frame(camera.buffer, item.msg, engine.preprocessor)
                if intake.stamp is not None:
                    frame_times[item.bag_time_ns] = intake.stamp
                if intake.refused in ('decode_error', 'internal_error'):
                    skip(camera, item, intake.refused, intake.message)
                    continue
                if intake.refused:
                    refused[intake.refused] += 1
                    camera.refused[intake.refused] += 1
                    continue
                if intake.push.window is not None:
                    pending.append((camera, intake.push.window, item.msg.header.frame_id,
                                    intake.rgb))
                    if len(pending) >= run.batch_size:
                        flush()
                if run.progress and frames % 50 == 0:
                    _progress(frames, total, len(records), started)
            flush()
            close_segments()
        except BagError as exc:
            flush()
            close_segments()
            error = exc
        finally:
            if run.progress:
                _progress(frames, total, len(records), started)
                sys.stderr.write('\n')
        elapsed = time.monotonic() - started
        summary = {'bag': str(bag), 'topic': topics[0] if len(topics) == 1 else list(topics),
                   'frames': frames, 'windows': len(records),
                   'refused': dict(refused), 'seconds': round(elapsed, 3),
                   'windows_per_s': round(len(records) / elapsed, 2) if elapsed else 0.0,
                   'model': engine.describe(), 'sampling': sampling}
        summary['failed_windows'] = dict(failed)
        if len(cameras) > 1:
            summary['cameras'] = {c.name: {'topic': c.topic, 'frames': c.frames,
                                           'windows': c.windows, 'refused': dict(c.refused)}
                                  for c in cameras}
        summary['skipped'] = sum(refused[k] for k in ('unreadable', 'decode_error',
                                                      'internal_error'))
        summary['skipped_messages'] = skipped
        summary['segments'] = len(ended)
        summary['label_changes'] = {kind: label_changes[kind] for kind in ('raw', 'decoded')}
        if run.truth and error is None:
            true = read_truth(run.truth, bag, frame_times)
            summary.update(score(records, true, engine.labels))
            summary['segment_metrics'] = segment_metrics(from_events(ended),
                                                         runs(sorted(true.items())))
            writer.write_confusion(np.array(summary['confusion']['matrix']), engine.labels,
                                   summary['accuracy'])
    except BagError:
        writer.finish()     # the bag (or its truth) failed: what was written is kept
        raise
    except BaseException:
        writer.discard()    # an output failed, or anything else: nothing is left half-written
        raise
    writer.finish()
    if error is not None:
        error.summary = summary
        raise error
    return summary


def engine_values(run: Evaluation, params: dict) -> dict:
    """Return the values `engine_from_values` gets for `run`: the parameters file's engine.

    The node's engine as the parameters file gives it (checkpoint, labels, dtype), with the
    command line's checkpoint and device; never compiled for a one-off run.
    """
    return {**params, 'checkpoint': run.checkpoint or params['checkpoint'],
            'device': run.device if run.device != 'auto' else params['device'], 'compile': False}


def _progress(frames: int, total: int, windows: int, started: float):
    done = min(frames / total, 1.0) if total else 0.0
    bar = '#' * int(30 * done)
    of = f'/{total}' if total else ''
    sys.stderr.write(f'\r[{bar:<30}] {frames}{of} frames, {windows} windows, '
                     f'{time.monotonic() - started:5.1f}s')
    sys.stderr.flush()


def score(records: list, truth: dict, labels: Sequence[str]) -> dict:
    """Accuracy of the top-1 label against the truth at each window's last frame."""
    index = {name: i for i, name in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    scored = 0
    for record in records:
        end = record['window']['end']
        true = truth.get(dict_ns(end))
        if true not in index:
            continue
        matrix[index[true], int(record['results'][0]['class_id'])] += 1
        scored += 1
    accuracy = float(np.trace(matrix) / scored) if scored else 0.0
    return {'scored_windows': scored, 'accuracy': accuracy,
            'confusion': {'labels': list(labels), 'matrix': matrix.tolist()}}


def confusion_text(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> str:
    width = max(len(label) for label in labels) + 1
    lines = [' ' * width + ' '.join(f'{label[:8]:>8}' for label in labels)]
    for label, row in zip(labels, matrix):
        lines.append(f'{label:<{width}}' + ' '.join(f'{v:>8}' for v in row))
    return '\n'.join(lines)


def confusion_image(matrix: np.ndarray, labels: Sequence[str], accuracy: float) -> np.ndarray:
    """Draw the confusion matrix (rows: truth, normalised per row) as a BGR image."""
    import cv2
    n, cell, margin = len(labels), 70, 130
    image = np.full((margin + n * cell + 10, margin + n * cell + 10, 3), 255, np.uint8)
    rows = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    for i in range(n):
        for j in range(n):
            shade = int(255 - 200 * rows[i, j])
            x, y = margin + j * cell, margin + i * cell
            cv2.rectangle(image, (x, y), (x + cell - 2, y + cell - 2), (shade, shade, 255), -1)
            cv2.putText(image, str(matrix[i, j]), (x + 8, y + 40), cv2.FONT_HERSHEY_SIMPLEX,
                        0.5, (0, 0, 0), 1)
        cv2.putText(image, labels[i][:14], (4, margin + i * cell + 40),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        cv2.putText(image, labels[i][:9], (margin + i * cell + 2, margin - 10),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
    cv2.putText(image, f'truth (rows) vs predicted, accuracy {100 * accuracy:.1f}%', (4, 24),
                cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    return image


# -- writing the outputs -----------------------------------------------------------------------

class OutputError(RuntimeError):
    """An output of `evaluate` that could not be written (the message names its path)."""


@contextmanager
def _writing(path: Path):
    """Turn any failure while writing `path` into one OutputError that names it."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f'cannot write {path}: {exc.strerror or _brief(exc)}') from None
    except Exception as exc:  # noqa: BLE001 - sqlite3 errors from the bag writer, cv2.error
        raise OutputError(f'cannot write {path}: {_brief(exc)}') from None


class _StagedFile:
    """An output file written as NAME.partial beside NAME, renamed to NAME by `publish`.

    A path that exists and is not a regular file (/dev/stdout, a FIFO) is written directly.
    """

    def __init__(self, final: Path, binary: bool = False):
        self.final = Path(final)
        direct = self.final.exists() and not self.final.is_file()
        self.partial = self.final if direct else self.final.with_name(self.final.name +
                                                                      '.partial')
        with _writing(self.final):
            self.handle = open(self.partial, 'wb' if binary else 'w')

    def write(self, data):
        with _writing(self.final):
            self.handle.write(data)
            self.handle.flush()

    def close(self):
        with _writing(self.final):
            self.handle.close()

    def publish(self):
        with _writing(self.final):
            if self.partial != self.final:
                os.replace(self.partial, self.final)

    def discard(self):
        try:
            self.handle.close()
        except Exception:  # noqa: BLE001 - closing flushes, and the disk is still full
            pass
        if self.partial != self.final:
            with suppress(OSError):
                self.partial.unlink()


class _StagedBag:
    """The output rosbag2, written as NAME.partial-XXXXXX/NAME beside NAME and moved by `publish`.

    The bag keeps its own name inside (rosbag2 names its storage file after its directory).
    """

    def __init__(self, final: Path):
        from rosbags.rosbag2 import Writer
        self.final = Path(final)
        self.store = _typestore(vision=True)
        self.types = bag_types(self.store)
        with _writing(self.final):
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self.staging = Path(tempfile.mkdtemp(prefix=f'{self.final.name}.partial-',
                                                 dir=self.final.parent))
            self.writer = Writer(self.staging / self.final.name, version=9)
            self.writer.open()
        self.connections = {}

    def write(self, name: str, topic: str, msgtype: str, stamp: int, msg):
        """Write one message on `topic`, adding its connection at its first message."""
        with _writing(self.final):
            if name not in self.connections:
                self.connections[name] = self.writer.add_connection(topic, msgtype,
                                                                    typestore=self.store)
            self.writer.write(self.connections[name], stamp,
                              self.store.serialize_cdr(msg, msgtype))

    def close(self):
        with _writing(self.final):
            self.writer.close()

    def publish(self):
        with _writing(self.final):
            os.rename(self.staging / self.final.name, self.final)
        with suppress(OSError):
            self.staging.rmdir()

    def discard(self):
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001 - closing commits, and the disk is still full
            pass
        shutil.rmtree(self.staging, ignore_errors=True)


class ResultWriter:
    """What `evaluate` writes (`EvaluationOutputs`): JSON lines, segments, a rosbag2, a PNG.

    The rosbag2 holds the node's output topics (`outputs.OUTPUTS`, as the node publishes them under
    `ns`) at the original stamps; latched outputs are written once, at the first window.

    Every output is written under a partial name beside its path (NAME.partial for a file,
    NAME.partial-XXXXXX/NAME for the bag), all created before the first window, so a place that
    cannot be written is found before the model runs. `finish` closes them all, then renames
    them into place; when any output cannot be written (a full disk, a read-only place) the
    error is one OutputError naming its path, and `discard` removes every partial output. Why
    partial names rather than writing in place and deleting on failure: a final path holds a
    complete output or nothing, so no reader (`tail -f`, a script, the next run) takes half an
    output for a whole one; a run killed outright, with no chance to clean up, leaves only
    `.partial` names behind, which block nothing, where a half-written bag under its own name
    would make the next run stop at "exists already"; and the outputs of one run are all there
    or none is, never a results file beside a bag that failed.
    """

    def __init__(self, outputs: EvaluationOutputs, labels: Sequence[str], values: dict,
                 ns: str = '/timesformer'):
        from .outputs import OUTPUTS
        if outputs.bag and Path(outputs.bag).exists():
            raise BagError(f'output bag {outputs.bag} exists already; remove it or choose '
                           f'another path')
        self.outputs = OUTPUTS
        self.labels, self.values, self.ns = list(labels), values, ns
        self.lines = self.segments = self.confusion = self.bag = None
        self.first = True
        self.written = set()        # output topics written to (latched ones once each)
        try:
            if outputs.jsonl:
                self.lines = _StagedFile(outputs.jsonl)
            if outputs.segments:
                self.segments = _StagedFile(outputs.segments)
            if outputs.confusion:
                self.confusion = self._open_confusion(Path(outputs.confusion))
            if outputs.bag:
                self.bag = _StagedBag(Path(outputs.bag))
        except BaseException:
            self.discard()
            raise

    @staticmethod
    def _open_confusion(path: Path) -> _StagedFile:
        import cv2
        with _writing(path):
            if not cv2.haveImageWriter(str(path)):
                raise OutputError(f'cannot write {path}: OpenCV writes no image format named '
                                  f'{path.suffix!r}')
            path.parent.mkdir(parents=True, exist_ok=True)
        return _StagedFile(path, binary=True)

    def _staged(self) -> list:
        return [s for s in (self.bag, self.lines, self.segments, self.confusion) if s]

    def write(self, result, camera: str = ''):
        """One `outputs.WindowResult` of `camera` ('' : the node's unnamed camera).

        A named camera's rows and segments carry `camera`, and its per-camera outputs go under
        `ns/camera/`, as the node publishes them (`Output.per_camera`).
        """
        tag = {'camera': camera} if camera else {}
        if self.lines and result.record is not None:
            self.lines.write(json.dumps({**result.record, **tag}) + '\n')
        if self.segments:
            ended = [e for e in result.events if e['event'] == 'end']
            if ended:
                self.segments.write(''.join(json.dumps({**e, **tag}) + '\n' for e in ended))
        if self.bag is None:
            return
        for output in self.outputs:
            topic = f'{self.ns}/{camera}/{output.name}' if camera and output.per_camera \
                else f'{self.ns}/{output.name}'
            first = topic not in self.written if output.per_camera else self.first
            messages = output.latched(self.bag.types, self.labels, self.values, result.stamp_ns) \
                if first and output.latched else []
            if output.per_window:
                messages += output.per_window(self.bag.types, result, self.values)
            for msg in messages:
                self.bag.write(topic, topic, output.msgtype, result.stamp_ns, msg)
            self.written.add(topic)
        self.first = False

    def write_confusion(self, matrix: np.ndarray, labels: Sequence[str], accuracy: float):
        """Write the confusion matrix PNG (when one was asked for)."""
        if self.confusion is None:
            return
        import cv2
        with _writing(self.confusion.final):
            ok, encoded = cv2.imencode(self.confusion.final.suffix,
                                       confusion_image(matrix, labels, accuracy))
            if not ok:
                raise OutputError(f'cannot write {self.confusion.final}: OpenCV could not '
                                  f'encode it')
        self.confusion.write(encoded.tobytes())

    def finish(self):
        """Close every output, then rename each into place; on any failure, `discard` them."""
        try:
            for staged in self._staged():
                staged.close()
            for staged in self._staged():
                staged.publish()
        except BaseException:
            self.discard()
            raise

    def discard(self):
        """Remove every partial output (what was already renamed into place stays)."""
        for staged in self._staged():
            staged.discard()


# -- writing a synthetic bag -----------------------------------------------------------------

def write_camera_bag(out: Path, frames: Iterable[tuple], storage: str = 'sqlite3',
                     topic: str = '/camera/image_raw', truth_topic: str = '/motion',
                     frame_id: str = 'camera') -> int:
    """Write a rosbag2 of rgb8 frames and their truth topic; return the frame count.

    `frames` yields (stamp ns, rgb uint8 (H, W, 3), label); each label goes out as the
    synthetic camera's JSON {"stamp", "frame_id", "label"} on `truth_topic`, which `evaluate
    --truth` reads.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    plugin = {'sqlite3': StoragePlugin.SQLITE3, 'mcap': StoragePlugin.MCAP}.get(storage)
    if plugin is None:
        raise ValueError(f'storage must be sqlite3 or mcap, got {storage!r}')
    store = _typestore()
    types = bag_types(store)
    count = 0
    with Writer(Path(out), version=9, storage_plugin=plugin) as writer:
        images = writer.add_connection(topic, IMAGE, typestore=store)
        motion = writer.add_connection(truth_topic, STRING, typestore=store)
        for stamp, rgb, label in frames:
            msg = types.image(types.header(stamp, frame_id), rgb, 'rgb8')
            writer.write(images, stamp, store.serialize_cdr(msg, IMAGE))
            truth = json.dumps({'stamp': stamp_dict(stamp), 'frame_id': frame_id,
                                'label': label})
            writer.write(motion, stamp, store.serialize_cdr(types.string(truth), STRING))
            count += 1
    return count


def record_synthetic(out: Path, storage: str = 'sqlite3', seconds: float = 20.0,
                     fps: float = 30.0, seed: int = 0, width: int = 320, height: int = 240,
                     topic: str = '/camera/image_raw', truth_topic: str = '/motion',
                     start_ns: int = 1_700_000_000_000_000_000,
                     script: Optional[Sequence[str]] = None) -> int:
    """Write a rosbag2 of the synthetic camera and its truth topic; return the frame count."""
    from .synthetic import SyntheticStream
    stream = SyntheticStream(seed=seed, width=width, height=height, fps=fps,
                             script=script).frames()
    count = int(round(seconds * fps))
    frames = ((start_ns + int(round(i * 1e9 / fps)), *next(stream)) for i in range(count))
    return write_camera_bag(out, frames, storage, topic, truth_topic)


# -- replay -----------------------------------------------------------------------------------

def play(bag: Path, topic: str, rate: float = 1.0, loop: bool = False, clock: bool = False,
         reliable: bool = False, out_topic: Optional[str] = None) -> int:
    """Publish the bag's images at the recorded pace times `rate` (and /clock when asked)."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CompressedImage, Image
    if rate <= 0:
        raise ValueError(f'rate must be > 0, got {rate}')
    kinds = list_topics(bag)
    check_topic(kinds, topic, IMAGE_TYPES, bag)
    msgtype = kinds[topic][0]
    rclpy.init()
    node = rclpy.create_node('timesformer_bag_play')
    types = rclpy_types()
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE) if reliable \
        else qos_profile_sensor_data
    cls = Image if msgtype.endswith('/Image') else CompressedImage
    publisher = node.create_publisher(cls, out_topic or topic, qos)
    clock_pub = node.create_publisher(Clock, '/clock', 10) if clock else None
    published = 0
    try:
        # Give subscribers a moment to match before the first frame (a replay must not lose
        # its start to discovery): wait until one is there, at most 10 s.
        deadline = time.monotonic() + 10.0
        while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        while True:
            first_bag = first_wall = None
            for timestamp, msg in iter_messages(bag, topic, IMAGE_TYPES):
                if first_bag is None:
                    first_bag, first_wall = timestamp, time.monotonic()
                due = first_wall + (timestamp - first_bag) / 1e9 / rate
                while time.monotonic() < due:
                    rclpy.spin_once(node, timeout_sec=max(0.0, due - time.monotonic()))
                if clock_pub is not None:
                    tick = Clock()
                    tick.clock.sec, tick.clock.nanosec = split_ns(timestamp)
                    clock_pub.publish(tick)
                publisher.publish(convert_image(msg, types))
                published += 1
            if not loop:
                break
        # Let reliable subscribers take the last frames before the publisher goes away.
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return published


# -- command line -----------------------------------------------------------------------------

def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='timesformer_bag', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    top = sub.add_parser('topics', help='list topics, types and counts')
    top.add_argument('bag', type=Path)
    ev = sub.add_parser('evaluate', help="run the node's windows and model over a bag")
    ev.add_argument('bag', type=Path, nargs='+',
                    help='a bag; several bags, directories or globs run on Ray (--out-dir)')
    ev.add_argument('--topic', required=True, action='append',
                    help='image topic; several: one camera each, batched together')
    ev.add_argument('--checkpoint')
    ev.add_argument('--params-file', type=Path, help="the node's parameters file")
    ev.add_argument('--truth', help='String topic in the bag, or a CSV of stamp,label')
    ev.add_argument('--out', type=Path, help='JSON lines, one per window (default stdout '
                                             'summary only)')
    ev.add_argument('--out-bag', type=Path, help='write the output topics to this rosbag2')
    ev.add_argument('--confusion', type=Path, help='confusion matrix PNG (with --truth)')
    ev.add_argument('--segments', type=Path, help='JSON lines, one per completed action '
                                                  'segment (the end events of ~/events)')
    ev.add_argument('--device', default='auto')
    ev.add_argument('--batch-size', type=int, default=8)
    from .fleet import add_arguments, wants_fleet
    add_arguments(ev)
    pl = sub.add_parser('play', help='publish the images at the recorded pace')
    pl.add_argument('bag', type=Path)
    pl.add_argument('--topic', required=True)
    pl.add_argument('--remap', help='publish on this topic instead')
    pl.add_argument('--rate', type=float, default=1.0)
    pl.add_argument('--loop', action='store_true')
    pl.add_argument('--clock', action='store_true', help='also publish /clock (bag time)')
    pl.add_argument('--reliable', action='store_true',
                    help='reliable QoS (default: sensor data)')
    rec = sub.add_parser('record-synthetic', help='write a bag of the synthetic camera')
    rec.add_argument('out', type=Path)
    rec.add_argument('--storage', choices=('sqlite3', 'mcap'), default='sqlite3')
    rec.add_argument('--seconds', type=float, default=20.0)
    rec.add_argument('--fps', type=float, default=30.0)
    rec.add_argument('--seed', type=int, default=0)
    rec.add_argument('--width', type=int, default=320)
    rec.add_argument('--height', type=int, default=240)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(message)s')
    try:
        if args.command == 'topics':
            for name, (msgtype, count) in sorted(list_topics(args.bag).items()):
                print(f'{name}\t{msgtype}\t{count}')
        elif args.command == 'record-synthetic':
            count = record_synthetic(args.out, args.storage, args.seconds, args.fps,
                                     args.seed, args.width, args.height)
            print(f'wrote {args.out} ({args.storage}): {count} frames on /camera/image_raw '
                  f'and truth on /motion')
        elif args.command == 'play':
            count = play(args.bag, args.topic, args.rate, args.loop, args.clock,
                         args.reliable, args.remap)
            print(f'published {count} frames')
        elif wants_fleet(args):
            from .fleet import main as fleet_main
            return fleet_main(args)
        else:
            summary = evaluate(
                Evaluation(args.bag[0], args.topic, args.checkpoint, args.params_file, args.truth,
                           args.device, args.batch_size),
                EvaluationOutputs(args.out, args.out_bag, args.segments, args.confusion))
            _print_summary(summary)
    except BagError as exc:
        summary = getattr(exc, 'summary', None)
        kept = f' ({summary["windows"]} windows evaluated and kept)' if summary else ''
        print(f'timesformer_bag: error: {exc}{kept}', file=sys.stderr)
        return 1
    except OutputError as exc:
        print(f'timesformer_bag: error: {exc} (no output was left behind)', file=sys.stderr)
        return 1
    except (ValueError, OSError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and not _model_error(exc):
            raise
        print(f'timesformer_bag: error: {exc}', file=sys.stderr)
        return 2 if _model_error(exc) else 1
    return 0


def _model_error(exc: BaseException) -> bool:
    """Whether `exc` is a checkpoint or engine error: exit status 2, as the node's.

    Looked up among the loaded modules: one of them raised it, and this module does not import
    torch before the bag has been checked.
    """
    kinds = [getattr(sys.modules.get(f'{__package__}.{module}'), name, None)
             for module, name in (('checkpoints', 'CheckpointError'), ('engine', 'EngineError'))]
    return isinstance(exc, tuple(kind for kind in kinds if kind is not None))


def _print_summary(summary: dict):
    print(f'{summary["frames"]} frames, {summary["windows"]} windows in {summary["seconds"]} s '
          f'({summary["windows_per_s"]} windows/s), {summary["model"]}, sampling '
          f'{summary["sampling"]}')
    if summary['refused']:
        print(f'refused frames: {summary["refused"]}')
    if summary['skipped']:
        print(f'skipped {summary["skipped"]} unreadable message(s) (#index in the topic):')
        for skipped in summary['skipped_messages'][:10]:
            print(f'  #{skipped["index"]} at bag time {skipped["bag_time_ns"]} ns: '
                  f'{skipped["reason"]}')
        if summary['skipped'] > 10:
            print(f'  ... and {summary["skipped"] - 10} more')
    if 'accuracy' in summary:
        print(f'accuracy {100 * summary["accuracy"]:.1f}% on {summary["scored_windows"]} '
              f'windows')
        print(confusion_text(summary['confusion']['matrix'], summary['confusion']['labels']))
    metrics = summary.get('segment_metrics')
    if metrics:
        delay = metrics['onset_delay_s']
        print(f'segments: {metrics["predicted_segments"]} predicted, '
              f'{metrics["true_segments"]} true; F1@0.1/0.25/0.5 {metrics["f1@0.1"]:.3f}/'
              f'{metrics["f1@0.25"]:.3f}/{metrics["f1@0.5"]:.3f}, edit {metrics["edit"]:.3f}, '
              f'over-/under-segmented {metrics["over_segmented"]}/'
              f'{metrics["under_segmented"]}, onset delay median {delay["median"]} s, p90 '
              f'{delay["p90"]} s')


if __name__ == '__main__':
    sys.exit(main())
