"""Hostile bags and hostile places: corrupt messages, decompression bombs, outputs that fail.

Every bag here is a real one, written with `rosbags` (or, for the MCAP bombs, record by record
with `mcap`'s own record classes), tiny (160x120, a few seconds). The CLI runs as a process where
its exit code, its one error line or its peak memory is what is checked; the peak is that
process's own (`os.wait4`), not the largest of every child the test session ran.
"""

import json
import os
import resource
import signal
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, console_script
from test_frames import png_header_bomb
from timesformer_ros import bags
from timesformer_ros.bags import (
    Evaluation, EvaluationOutputs, evaluate, list_topics, record_synthetic)
from timesformer_ros.messages import COMPRESSED_IMAGE, IMAGE, bag_types, dict_ns as ns

CONFIG = REPO / 'test' / 'params_15fps.yaml'     # the defaults at 15 fps
TOPIC = '/camera/image_raw'
START_NS = 1_700_000_000_000_000_000
FPS = 30.0
SECONDS = 6.0
COUNT = int(SECONDS * FPS)
BAD = COUNT // 3                       # frame 60, 2 s in: a sampled frame (15 of 30 per second)
BAD_NS = START_NS + round(BAD * 1e9 / FPS)
GARBAGE = b'\x00\x01\x00\x00\xff'      # a CDR header and one byte: no Image can be read from it
MCAP_MAGIC = b'\x89MCAP0\r\n'
GIB = 1 << 30


def stamp(i: int) -> int:
    return START_NS + round(i * 1e9 / FPS)


# -- bags to attack with -----------------------------------------------------------------------

def _store():
    from rosbags.typesys import Stores, get_typestore
    return get_typestore(Stores.ROS2_KILTED)


def camera_bag(path: Path, storage: str = 'sqlite3', compressed: bool = False,
               replace: dict = None) -> Path:
    """Write the synthetic camera (seed 11, 160x120, 30 fps, 6 s) as a rosbag2.

    `replace` maps a frame index to a function of its stamp that returns the raw (CDR) bytes
    written in that frame's place; every other frame is what `record_synthetic` would write
    (PNG-compressed when `compressed`).
    """
    import cv2
    from rosbags.rosbag2 import StoragePlugin, Writer
    from timesformer_ros.synthetic import SyntheticStream
    store = _store()
    types = bag_types(store)
    msgtype = COMPRESSED_IMAGE if compressed else IMAGE
    frames = SyntheticStream(seed=11, width=160, height=120, fps=FPS).frames()
    plugin = {'sqlite3': StoragePlugin.SQLITE3, 'mcap': StoragePlugin.MCAP}[storage]
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        connection = writer.add_connection(TOPIC, msgtype, typestore=store)
        for i in range(COUNT):
            rgb, _ = next(frames)
            header = types.header(stamp(i), 'camera')
            if compressed:
                png = cv2.imencode('.png', np.ascontiguousarray(rgb[..., ::-1]))[1]
                msg = store.types[msgtype](header=header, format='png', data=png.reshape(-1))
            else:
                msg = types.image(header, rgb, 'rgb8')
            raw = (replace or {}).get(i, lambda _, msg=msg: store.serialize_cdr(msg, msgtype))
            writer.write(connection, stamp(i), raw(stamp(i)))
    return path


def compressed_frame_declaring(width: int, height: int):
    """Return a `camera_bag` replacement: a CompressedImage PNG that declares width x height."""
    store = _store()
    types = bag_types(store)

    def raw(ns_: int) -> bytes:
        msg = store.types[COMPRESSED_IMAGE](
            header=types.header(ns_, 'camera'), format='png',
            data=np.frombuffer(png_header_bomb(width, height, colour_type=2), np.uint8))
        return bytes(store.serialize_cdr(msg, COMPRESSED_IMAGE))
    return raw


def _deflate(compression: str, pieces) -> bytes:
    """Compress an iterable of byte strings as one zstd or lz4 frame, piece by piece."""
    if compression == 'zstd':
        import zstandard
        compressor = zstandard.ZstdCompressor().compressobj()
        parts = [compressor.compress(piece) for piece in pieces]
        return b''.join(parts) + compressor.flush()
    import lz4.frame
    compressor = lz4.frame.LZ4FrameCompressor()
    parts = [compressor.begin()] + [compressor.compress(piece) for piece in pieces]
    return b''.join(parts) + compressor.flush()


def mcap_bomb(path: Path, inflated: int, declared: int = None, compression: str = 'zstd',
              frames: int = 10) -> Path:
    """Write an MCAP file: `frames` camera frames, then one chunk that inflates to `inflated`.

    The chunk declares `declared` bytes uncompressed (default: the truth). It holds one Message
    record on the camera channel that fills the declared size exactly, then zeros up to
    `inflated`: a chunk that lies about its size holds valid records up to what it declares. The
    file has no summary (a recorder can always leave it out), so nothing but the chunk itself
    says how large it is. With `inflated` 0 there is no such chunk: a clean file.
    """
    from mcap.data_stream import RecordBuilder
    from mcap.records import Channel, Chunk, DataEnd, Footer, Header, Message, Schema
    declared = inflated if declared is None else declared
    store = _store()
    types = bag_types(store)
    out = RecordBuilder()
    out.write(MCAP_MAGIC)
    Header(profile='ros2', library='test_hostile_bags').write(out)
    definition = store.generate_msgdef(IMAGE, ros_version=2)[0].encode()
    Schema(id=1, name=IMAGE, encoding='ros2msg', data=definition).write(out)
    Channel(id=1, topic=TOPIC, message_encoding='cdr', metadata={}, schema_id=1).write(out)
    inner = RecordBuilder()
    rgb = np.zeros((120, 160, 3), np.uint8)
    for i in range(frames):
        raw = store.serialize_cdr(types.image(types.header(stamp(i), 'camera'), rgb, 'rgb8'),
                                  IMAGE)
        Message(channel_id=1, log_time=stamp(i), data=bytes(raw), publish_time=stamp(i),
                sequence=i).write(inner)
    data = inner.end()
    Chunk(compression='', data=data, message_start_time=stamp(0),
          message_end_time=stamp(frames - 1), uncompressed_crc=0,
          uncompressed_size=len(data)).write(out)

    def pieces():
        head = struct.pack('<BQHIQQ', 0x05, declared - 9, 1, frames, stamp(frames),
                           stamp(frames))
        yield head
        left, piece = inflated - len(head), bytes(1 << 20)
        while left > 0:
            yield piece[:left]
            left -= len(piece)
    if inflated:
        Chunk(compression=compression, data=_deflate(compression, pieces()),
              message_start_time=stamp(frames), message_end_time=stamp(frames),
              uncompressed_crc=0, uncompressed_size=declared).write(out)
    DataEnd(data_section_crc=0).write(out)
    Footer(summary_start=0, summary_offset_start=0, summary_crc=0).write(out)
    out.write(MCAP_MAGIC)
    path.write_bytes(out.end())
    return path


# -- running the CLI ---------------------------------------------------------------------------

# Starts the CLI and writes its peak RSS (kB, from os.wait4) to the file named first. A child's
# ru_maxrss includes what it held before exec: the image of the process that forked it. Forked
# from this test process (torch loaded: 600 MB) it would count that; forked from this small
# launcher it counts a few MB.
LAUNCHER = """
import os, subprocess, sys
process = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(process.pid, 0)
open(sys.argv[1], 'w').write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status) % 256)
"""


def bag_cli(*args, preexec_fn=None, timeout=300) -> tuple:
    """Run `timesformer_bag ARGS`; return (exit code, stdout, stderr, peak RSS in MB)."""
    with tempfile.TemporaryDirectory() as scratch:
        peak, out, err = (Path(scratch) / name for name in ('peak', 'out', 'err'))
        with out.open('wb') as stdout, err.open('wb') as stderr:
            process = subprocess.Popen(
                [sys.executable, '-c', LAUNCHER, peak,
                 *console_script('timesformer_bag'), *map(str, args)],
                stdout=stdout, stderr=stderr, preexec_fn=preexec_fn, start_new_session=True)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)      # the launcher and the CLI
                raise
        return (process.returncode, out.read_text(), err.read_text(),
                int(peak.read_text()) / 1024)


def error_lines(stderr: str) -> list:
    assert 'Traceback' not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith('timesformer_bag: error:')]


def full_disk(limit: int):
    """Return a preexec_fn under which writing past `limit` bytes of a file fails (EFBIG).

    RLIMIT_FSIZE with SIGXFSZ ignored: a write fails as on a full disk, without root.
    """
    def limit_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_files


def run_evaluation(bag: Path, out: Path, **kwargs) -> dict:
    return evaluate(Evaluation(bag, TOPIC, params_file=CONFIG, device='cpu', progress=False,
                               **kwargs), EvaluationOutputs(jsonl=out))


def windows(out: Path) -> dict:
    """{(start ns, end ns): [(class_id, score)...]} of a JSON lines file."""
    records = [json.loads(line) for line in out.read_text().splitlines()]
    return {(ns(r['window']['start']), ns(r['window']['end'])):
            [(h['class_id'], h['score']) for h in r['results']] for r in records}


# -- corrupt messages --------------------------------------------------------------------------

@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_a_corrupt_message_is_skipped_named_and_the_rest_evaluated(storage, tmp_path):
    clean = camera_bag(tmp_path / 'clean', storage)
    bad = camera_bag(tmp_path / 'bad', storage, replace={BAD: lambda _: GARBAGE})
    expected = run_evaluation(clean, tmp_path / 'clean.jsonl')
    summary = run_evaluation(bad, tmp_path / 'bad.jsonl')

    assert summary['frames'] == expected['frames'] == COUNT
    assert summary['refused'] == {'unreadable': 1}
    assert summary['skipped'] == 1
    [skipped] = summary['skipped_messages']
    assert (skipped['index'], skipped['bag_time_ns']) == (BAD, BAD_NS)
    assert 'deserialise' in skipped['reason'] and IMAGE in skipped['reason']
    # The windows on either side of the bad frame are the clean bag's. Without frame 60 the
    # 15 Hz sampling takes frame 61 and is back on the clean grid from frame 64 on.
    got, want = windows(tmp_path / 'bad.jsonl'), windows(tmp_path / 'clean.jsonl')
    unaffected = [k for k in want if k[1] < BAD_NS or k[0] >= stamp(BAD + 4)]
    # Every clean window that starts at sampled frame 32 (frame 64) or later: most of the bag.
    assert len([k for k in unaffected if k[0] > BAD_NS]) == len(want) - (BAD + 4) // 2 == 51
    for key in unaffected:
        assert key in got, key
        assert [c for c, _ in got[key]] == [c for c, _ in want[key]]
        assert [s for _, s in got[key]] == pytest.approx([s for _, s in want[key]], abs=1e-5)


def test_the_cli_names_a_skipped_message_and_exits_0(tmp_path):
    bad = camera_bag(tmp_path / 'bad', 'mcap', replace={BAD: lambda _: GARBAGE})
    code, out, err, _ = bag_cli('evaluate', bad, '--topic', TOPIC, '--params-file', CONFIG,
                                '--device', 'cpu')
    assert code == 0, err
    assert error_lines(err) == []
    assert 'skipped 1 unreadable message' in out
    assert f'#{BAD} at bag time {BAD_NS} ns' in out


def test_a_compressed_frame_opencv_rejects_is_a_counted_refusal(tmp_path):
    """A PNG header that declares 100000x100000 pixels: OpenCV raises (cv2.error) on it.

    Whoever refuses it (frames.py's size check, or evaluate's guard around decoding), it is one
    refused frame and the rest of the bag is evaluated.
    """
    bag = camera_bag(tmp_path / 'png', 'sqlite3', compressed=True,
                     replace={BAD: compressed_frame_declaring(100000, 100000)})
    out = tmp_path / 'results.jsonl'
    code, stdout, err, _ = bag_cli('evaluate', bag, '--topic', TOPIC, '--params-file', CONFIG,
                                   '--device', 'cpu', '--out', out)
    assert code == 0, err
    assert error_lines(err) == []
    assert 'refused frames' in stdout
    assert any(start > BAD_NS for start, _ in windows(out))


def test_any_exception_from_decoding_one_frame_is_a_counted_refusal(tmp_path, monkeypatch):
    from timesformer_ros import frames
    decode = frames.decode

    def failing(msg):
        if msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec == BAD_NS:
            raise MemoryError('a decoder gave up')
        return decode(msg)
    monkeypatch.setattr(frames, 'decode', failing)
    bag = camera_bag(tmp_path / 'bag', 'sqlite3')
    summary = run_evaluation(bag, tmp_path / 'results.jsonl')
    assert summary['refused'] == {'decode_error': 1}
    [skipped] = summary['skipped_messages']
    assert skipped['index'] == BAD and 'MemoryError: a decoder gave up' in skipped['reason']
    assert any(start > BAD_NS for start, _ in windows(tmp_path / 'results.jsonl'))


# -- MCAP decompression bombs ------------------------------------------------------------------

@pytest.mark.parametrize('compression', ['zstd', 'lz4'])
def test_compressed_chunks_are_read_as_written(compression, tmp_path):
    """Inflating piece by piece reads real compressed MCAP files, split over several chunks.

    zstd chunks as rosbags writes them (rosbag2 storage compression), lz4 as `mcap` writes them.
    """
    store = _store()
    types = bag_types(store)
    frames = [np.random.default_rng(i).integers(0, 255, (120, 160, 3), np.uint8)
              for i in range(40)]
    raws = [bytes(store.serialize_cdr(types.image(types.header(stamp(i), 'camera'), rgb,
                                                  'rgb8'), IMAGE)) for i, rgb in enumerate(frames)]
    if compression == 'zstd':
        from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
        path = tmp_path / 'zstd'
        writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        with writer:
            connection = writer.add_connection(TOPIC, IMAGE, typestore=store)
            for i, raw in enumerate(raws):
                writer.write(connection, stamp(i), raw)
    else:
        from mcap.writer import CompressionType, Writer
        path = tmp_path / 'lz4.mcap'
        with path.open('wb') as handle:
            writer = Writer(handle, compression=CompressionType.LZ4, chunk_size=1 << 20)
            writer.start('ros2', 'test_hostile_bags')
            schema = writer.register_schema(
                IMAGE, 'ros2msg', store.generate_msgdef(IMAGE, ros_version=2)[0].encode())
            channel = writer.register_channel(TOPIC, 'cdr', schema)
            for i, raw in enumerate(raws):
                writer.add_message(channel, stamp(i), raw, stamp(i))
            writer.finish()
    chunks = [c for c in _chunk_compressions(path) if c]
    assert len(chunks) > 1 and set(chunks) == {compression}
    assert list_topics(path) == {TOPIC: (IMAGE, len(frames))}
    read = list(bags.iter_messages(path, TOPIC, (IMAGE,)))
    assert [t for t, _ in read] == [stamp(i) for i in range(len(frames))]
    for (_, msg), rgb in zip(read, frames):
        assert np.array_equal(np.asarray(msg.data).reshape(rgb.shape), rgb)


def _chunk_compressions(path: Path) -> list:
    from mcap.records import Chunk
    from mcap.stream_reader import StreamReader
    file = path if path.is_file() else next(path.glob('*.mcap'))
    with file.open('rb') as handle:
        return [r.compression for r in StreamReader(handle, emit_chunks=True).records
                if isinstance(r, Chunk)]


def test_the_chunk_limit_is_twice_the_largest_frame():
    import timesformer_ros
    assert bags.MAX_CHUNK_BYTES == 2 * 8 * timesformer_ros.MAX_PIXELS


@pytest.mark.parametrize('compression', ['zstd', 'lz4'])
def test_an_mcap_chunk_bomb_is_refused_before_it_is_inflated(compression, tmp_path):
    bomb = mcap_bomb(tmp_path / 'bomb.mcap', GIB, compression=compression)
    assert bomb.stat().st_size < 5 << 20
    code, _, err, peak_mb = bag_cli('evaluate', bomb, '--topic', TOPIC, '--params-file',
                                    CONFIG, '--device', 'cpu', '--out', tmp_path / 'r.jsonl')
    assert code == 1
    [line] = error_lines(err)
    assert str(bomb) in line and str(GIB) in line and 'declares' in line, line
    assert peak_mb < 500, peak_mb
    assert not (tmp_path / 'r.jsonl').exists()


def test_a_chunk_that_lies_about_its_size_is_not_inflated_past_it(tmp_path):
    """The chunk declares 1 MiB (under any limit) and inflates to 1 GiB.

    The evaluation has loaded the model when it meets the chunk, so its peak is compared with
    the same evaluation of a clean bag: the lie may cost what it declares, never what it holds.
    """
    liar = mcap_bomb(tmp_path / 'liar.mcap', GIB, declared=1 << 20, frames=40)
    clean = mcap_bomb(tmp_path / 'clean.mcap', 0, frames=40)
    common = ['--topic', TOPIC, '--params-file', CONFIG, '--device', 'cpu']
    code, _, err, baseline_mb = bag_cli('evaluate', clean, *common)
    assert code == 0, err
    out = tmp_path / 'r.jsonl'
    code, _, err, peak_mb = bag_cli('evaluate', liar, *common, '--out', out)
    assert code == 1
    [line] = error_lines(err)
    assert str(liar) in line and 'past its declared size' in line, line
    assert 'kept' in line and len(out.read_text().splitlines()) == 20 - 7
    assert peak_mb < baseline_mb + 100, (peak_mb, baseline_mb)


def test_the_chunk_limit_is_checked_when_reading_too(tmp_path, monkeypatch):
    """`iter_messages` (replay, truth) refuses the chunk without evaluate's early check."""
    bomb = mcap_bomb(tmp_path / 'bomb.mcap', 4 << 20, frames=3)
    monkeypatch.setattr(bags.mcap, 'MAX_CHUNK_BYTES', 1 << 20)
    read = []
    with pytest.raises(bags.BagError, match='declares 4194304 bytes') as error:
        for _, msg in bags.iter_messages(bomb, TOPIC, (IMAGE,)):
            read.append(msg)
    assert len(read) == 3 and error.value.read == 3


# -- outputs that cannot be written ------------------------------------------------------------

@pytest.fixture(scope='module')
def truth_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp('truth') / 'bag'
    record_synthetic(path, 'sqlite3', seconds=3.0, seed=11, width=160, height=120,
                     start_ns=START_NS)
    return path


def test_out_bag_on_a_full_disk_is_one_line_and_leaves_nothing_behind(truth_bag, tmp_path):
    outputs = tmp_path / 'outputs'
    outputs.mkdir()
    args = ['evaluate', truth_bag, '--topic', TOPIC, '--params-file', CONFIG, '--device', 'cpu',
            '--out', outputs / 'results.jsonl', '--out-bag', outputs / 'results_bag']
    code, _, err, _ = bag_cli(*args, preexec_fn=full_disk(64 << 10))
    assert code == 1
    [line] = error_lines(err)
    assert str(outputs / 'results_bag') in line, line
    assert list(outputs.iterdir()) == []          # no partial bag, no half a results file
    code, _, err, _ = bag_cli(*args)
    assert code == 0, err
    assert sorted(p.name for p in outputs.iterdir()) == ['results.jsonl', 'results_bag']
    assert list_topics(outputs / 'results_bag')['/timesformer/label'][1] == len(
        (outputs / 'results.jsonl').read_text().splitlines())


def test_results_on_a_full_disk_is_one_line(truth_bag, tmp_path):
    out = tmp_path / 'results.jsonl'
    code, _, err, _ = bag_cli('evaluate', truth_bag, '--topic', TOPIC, '--params-file', CONFIG,
                              '--device', 'cpu', '--out', out, preexec_fn=full_disk(4 << 10))
    assert code == 1
    [line] = error_lines(err)
    assert str(out) in line, line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('place', ['proc', 'read-only directory'])
def test_confusion_to_a_place_that_cannot_be_written_fails_loudly(place, truth_bag, tmp_path):
    """cv2.imwrite returns False where it cannot write; that must not pass as success."""
    if place == 'proc':
        confusion = Path('/proc') / f'timesformer_confusion_{os.getpid()}.png'
    else:
        if os.geteuid() == 0:
            pytest.skip('root writes into a read-only directory')
        locked = tmp_path / 'locked'
        locked.mkdir()
        locked.chmod(0o500)
        confusion = locked / 'confusion.png'
    out = tmp_path / 'results.jsonl'
    code, _, err, _ = bag_cli('evaluate', truth_bag, '--topic', TOPIC, '--params-file', CONFIG,
                              '--device', 'cpu', '--truth', '/motion', '--confusion', confusion,
                              '--out', out)
    assert code == 1
    [line] = error_lines(err)
    assert str(confusion) in line, line
    assert not out.exists() and not confusion.exists()
