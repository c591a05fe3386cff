"""MCAP files read with bounded inflation, without trusting what a file declares.

`mcap`'s own reader inflates a chunk whole, to whatever size it turns out to have; here a chunk is
inflated piece by piece, never past the size it declares nor past MAX_CHUNK_BYTES, and a chunk
that declares more is refused before anything is inflated (`check_mcap_chunks` does it before
the model is loaded).
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
from collections import Counter
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import brief
from .base import BagError, BagMessage, NoSummary, deserialized, typestore

LOGGER = logging.getLogger(__name__)

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

_MCAP_MAGIC = b'\x89MCAP0\r\n'
_OP_FOOTER, _OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK = 0x02, 0x03, 0x04, 0x05, 0x06


class _McapError(ValueError):
    """What is wrong with an MCAP chunk; the reader adds the file and the count read."""


def mcap_files(path: Path) -> list:
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
    for file in mcap_files(path):
        with open(file, 'rb') as handle:
            if handle.read(8) != _MCAP_MAGIC:
                continue
            size = os.fstat(handle.fileno()).st_size
            chunks = records = 0
            while True:
                start = handle.tell()
                head = handle.read(9)
                if len(head) < 9:
                    break
                opcode, length = struct.unpack('<BQ', head)
                records += 1
                if opcode == _OP_FOOTER:
                    break
                if length > size - start - 9 and length > MAX_RECORD_BYTES:
                    # Past the end and past any record this reader takes: not a cut-off
                    # recording (whose last record the reader keeps what it can of) but a
                    # corrupt length; seeking there fails with EINVAL (2^62 bytes).
                    raise BagError(f'{file}: record {records} (opcode 0x{opcode:02x}, at byte '
                                   f'{start}) declares {length} bytes, more than the '
                                   f'{size - start - 9} left in the file: a corrupt MCAP file')
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


def mcap_topics(files: Sequence[Path]) -> dict:
    """{topic: (message type, count)} of MCAP files, from their summaries: nothing is inflated.

    A file whose end cannot be read (a cut-off recording) raises NoSummary. A complete file
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
            raise NoSummary(f'{file}: cannot open as a bag ({brief(exc)})') from None
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
    except Exception as exc:  # noqa: BLE001 - as in read_mcap_topic
        LOGGER.warning('%s: counted the messages before %s', file, brief(exc))
    topics = {}
    for channel, (topic, msgtype) in channels.items():
        topics[topic] = (msgtype, counts[channel] + topics.get(topic, ('', 0))[1])
    return topics


def read_mcap_topic(files: Sequence[Path], topic: str, types: Sequence[str],
                    path: Path) -> Iterator[BagMessage]:
    from mcap.exceptions import EndOfFile
    from mcap.records import Channel, Message, Schema
    store = typestore()
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
                    yield deserialized(index, record.log_time, record.data,
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
                           f'({brief(exc)})', read=index) from None
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
