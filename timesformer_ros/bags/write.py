"""Writing bags and evaluation outputs, each under a partial name until it is complete.

`ResultWriter` writes what `evaluate` produces (`EvaluationOutputs`: JSON lines, segments, a
rosbag2 of the node's output topics, a confusion PNG); `write_camera_bag` and
`record_synthetic` write camera bags with their truth topic.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from ..errors import brief
from ..messages import IMAGE, STRING, bag_types, stamp_dict
from .base import BagError, typestore
from .scoring import confusion_image


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
        raise OutputError(f'cannot write {path}: {exc.strerror or brief(exc)}') from None
    except Exception as exc:  # noqa: BLE001 - sqlite3 errors from the bag writer, cv2.error
        raise OutputError(f'cannot write {path}: {brief(exc)}') from None


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


def write_whole(path: Path, text: str):
    """Write `text` to `path` under a partial name, then rename it into place (`_StagedFile`)."""
    staged = _StagedFile(path)
    try:
        staged.write(text)
        staged.close()
        staged.publish()
    except BaseException:
        staged.discard()
        raise


class _StagedBag:
    """The output rosbag2, written as NAME.partial-XXXXXX/NAME beside NAME and moved by `publish`.

    The bag keeps its own name inside (rosbag2 names its storage file after its directory).
    """

    def __init__(self, final: Path):
        from rosbags.rosbag2 import Writer
        self.final = Path(final)
        self.store = typestore(vision=True)
        self.types = bag_types(self.store)
        with _writing(self.final):
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self.staging = Path(tempfile.mkdtemp(prefix=f'{self.final.name}.partial-',
                                                 dir=self.final.parent))
            try:
                self.writer = Writer(self.staging / self.final.name, version=9)
                self.writer.open()
            except BaseException:   # a full disk at open: no staging left (nothing owns it)
                shutil.rmtree(self.staging, ignore_errors=True)
                raise
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
        from ..outputs import OUTPUTS
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
    store = typestore()
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
    from ..synthetic import SyntheticStream
    stream = SyntheticStream(seed=seed, width=width, height=height, fps=fps,
                             script=script).frames()
    count = int(round(seconds * fps))
    frames = ((start_ns + int(round(i * 1e9 / fps)), *next(stream)) for i in range(count))
    return write_camera_bag(out, frames, storage, topic, truth_topic)
