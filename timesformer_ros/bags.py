"""Rosbag reading and writing, offline evaluation, replay (`timesformer_bag`).

    timesformer_bag topics BAG
    timesformer_bag evaluate BAG --topic /camera/image_raw [--checkpoint C] [--truth T]
                             [--params-file config/timesformer.yaml] [--out results.jsonl]
                             [--out-bag results_bag] [--confusion confusion.png]
    timesformer_bag play BAG --topic /camera/image_raw [--rate 1.0] [--loop] [--clock]
    timesformer_bag record-synthetic OUT [--storage sqlite3|mcap] [--seconds 20]

Bags are read with `rosbags` (rosbag2 in sqlite3 or MCAP storage, and ROS 1 bags), so none of
this needs a ROS install. `evaluate` runs exactly the node's windowing (the same ClipBuffer, fed
the same parameters file) over the bag as fast as the engine allows, batching windows, and
writes one JSON line per window in the node's `~/window` schema. Ground truth is a
std_msgs/String topic (the synthetic camera's JSON {"stamp", "label"}, or a plain label per
message matched to the frame with the nearest bag time) or a CSV of `stamp,label` (stamp in
seconds or integer nanoseconds).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from .clips import ClipBuffer
from .frames import FrameError, decode
from .interface import read_params_file
from .messages import (
    COMPRESSED_IMAGE, IMAGE, STRING, bag_types, convert_image, dict_ns, rclpy_types,
    register_vision_types, split_ns, stamp_dict, stamp_ns)
from .outputs import OUTPUTS, Reporter
from .segments import ActionDecoder, DecoderConfig, from_events, runs, segment_metrics

LOGGER = logging.getLogger(__name__)

IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)


class BagError(RuntimeError):
    """A bag that cannot be used as asked; `read` says how many messages were read before."""

    def __init__(self, message: str, read: int = 0):
        super().__init__(message)
        self.read = read


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
    """{topic: (message type, message count)}."""
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


def _mcap_file(path: Path) -> Optional[Path]:
    path = Path(path)
    if path.suffix == '.mcap' and path.is_file():
        return path
    found = sorted(path.glob('*.mcap')) if path.is_dir() else []
    return found[0] if found else None


def _stream_mcap(path: Path, topic: str, types: Sequence[str]) -> Iterator[tuple]:
    """Read an MCAP file record by record, without its summary.

    A recording that was cut off (no footer) is read up to where it breaks off.
    """
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader
    store = _typestore()
    schemas, wanted, count = {}, {}, 0
    with open(path, 'rb') as handle:
        try:
            for record in StreamReader(handle).records:
                if isinstance(record, Schema):
                    schemas[record.id] = record.name
                elif isinstance(record, Channel) and record.topic == topic:
                    msgtype = schemas.get(record.schema_id, '')
                    if msgtype not in types:
                        raise BagError(f'{path}: topic {topic!r} holds {msgtype}, expected one '
                                       f'of {list(types)}')
                    wanted[record.id] = msgtype
                elif isinstance(record, Message) and record.channel_id in wanted:
                    msg = store.deserialize_cdr(record.data, wanted[record.channel_id])
                    yield record.log_time, msg
                    count += 1
        except BagError:
            raise
        except Exception as exc:  # noqa: BLE001 - truncation surfaces as several types
            raise BagError(f'{path}: the bag breaks off after {count} messages of {topic} '
                           f'({type(exc).__name__}: {exc})', read=count) from None
    if not wanted:
        raise BagError(f'{path}: no topic {topic!r} in the readable part of the file')
    raise BagError(f'{path}: the bag breaks off after {count} messages of {topic} (no '
                   f'footer: the recording was cut off)', read=count)


def iter_messages(path: Path, topic: str, types: Sequence[str]) -> Iterator[tuple]:
    """(bag time ns, message) of `topic` in bag order.

    A bag that breaks off part-way raises BagError after yielding everything that could be read,
    with the count in `read`; an MCAP file cut off before its footer is read record by record up to
    the break.
    """
    try:
        reader = open_reader(path)
    except BagError:
        mcap = _mcap_file(path)
        if mcap is None:
            raise
        yield from _stream_mcap(mcap, topic, types)
        return
    count = 0
    try:
        connections = _connections(reader, topic, types, path)
        try:
            for connection, timestamp, raw in reader.messages(connections=connections):
                yield timestamp, reader.deserialize(raw, connection.msgtype)
                count += 1
        except BagError:
            raise
        except Exception as exc:  # noqa: BLE001 - a truncated bag raises from deep inside
            raise BagError(f'{path}: the bag breaks off after {count} messages of {topic} '
                           f'({type(exc).__name__}: {exc})', read=count) from None
    finally:
        try:
            reader.close()
        except Exception:  # noqa: BLE001 - closing a broken bag may fail again
            pass


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
    topic: str
    checkpoint: Optional[str] = None
    params_file: Optional[Path] = None
    truth: Optional[str] = None
    device: str = 'auto'             # 'auto': the parameters file's device
    batch_size: int = 8
    progress: bool = True


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


def evaluate(run: Evaluation, outputs: EvaluationOutputs = EvaluationOutputs()) -> dict:
    """Run the node's windowing, model and outputs over a bag; return a summary.

    Raises BagError (with what was evaluated so far already written) when the bag breaks off.
    """
    from .checkpoints import embedded_checkpoint
    from .engine import Engine
    bag, topic = run.bag, run.topic
    try:
        total = check_topic(list_topics(bag), topic, IMAGE_TYPES, bag)
    except BagError:
        if _mcap_file(bag) is None:
            raise
        total = 0  # a cut-off MCAP file: its summary is gone, the stream says what is there
    params = read_params_file(run.params_file)
    checkpoint = run.checkpoint or params['checkpoint'] or str(embedded_checkpoint())
    engine = Engine(checkpoint, device=run.device if run.device != 'auto' else params['device'],
                    dtype=params['dtype'], max_batch=run.batch_size)
    buffer = ClipBuffer(engine.num_frames, stride=params['stride'],
                        sample_every=params['sample_every'], target_fps=params['target_fps'],
                        max_gap_s=params['max_gap_s'])
    reporter = Reporter(ActionDecoder(engine.labels, DecoderConfig.from_values(params)))
    writer = ResultWriter(outputs, engine.labels, params)
    ended = []          # end events: the completed segments
    label_changes, last_labels = Counter(), {}   # of the raw top-1 and the stable label
    refused = Counter()
    pending, frame_times, records = [], {}, []
    started = time.monotonic()
    frames = 0
    error = None

    def write(result):
        writer.write(result)
        ended.extend(e for e in result.events if e['event'] == 'end')

    def flush():
        if not pending:
            return
        predictions = engine.infer([window.frames for window, _, _ in pending])
        for (window, frame_id, rgb), prediction in zip(pending, predictions):
            result = reporter.window(window, prediction, frame_id,
                                     prediction.timings['inference_ms'] / len(pending), params,
                                     rgb)
            records.append(result.record)
            for kind, value in (('raw', prediction.label), ('decoded', result.label)):
                label_changes[kind] += kind in last_labels and last_labels[kind] != value
                last_labels[kind] = value
            write(result)
        pending.clear()

    def close_segments():
        result = reporter.close('end_of_bag')
        if result is not None:
            write(result)

    try:
        for timestamp, msg in iter_messages(bag, topic, IMAGE_TYPES):
            frames += 1
            try:
                rgb, key = decode(msg)
                stamp = stamp_ns(msg.header)
                frame_times[timestamp] = stamp
                result = buffer.push(stamp, key, msg.header.frame_id,
                                     lambda rgb=rgb: engine.preprocessor(rgb))
            except FrameError as exc:
                refused[exc.reason] += 1
                continue
            if result.refused:
                refused[result.refused] += 1
            if result.window is not None:
                pending.append((result.window, msg.header.frame_id, rgb))
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
        writer.close()
        if run.progress:
            _progress(frames, total, len(records), started)
            sys.stderr.write('\n')
    elapsed = time.monotonic() - started
    summary = {'bag': str(bag), 'topic': topic, 'frames': frames, 'windows': len(records),
               'refused': dict(refused), 'seconds': round(elapsed, 3),
               'windows_per_s': round(len(records) / elapsed, 2) if elapsed else 0.0,
               'model': engine.describe()}
    summary['segments'] = len(ended)
    summary['label_changes'] = {kind: label_changes[kind] for kind in ('raw', 'decoded')}
    if run.truth and error is None:
        true = read_truth(run.truth, bag, frame_times)
        summary.update(score(records, true, engine.labels, outputs.confusion))
        summary['segment_metrics'] = segment_metrics(from_events(ended),
                                                     runs(sorted(true.items())))
    if error is not None:
        error.summary = summary
        raise error
    return summary


def _progress(frames: int, total: int, windows: int, started: float):
    done = min(frames / total, 1.0) if total else 0.0
    bar = '#' * int(30 * done)
    of = f'/{total}' if total else ''
    sys.stderr.write(f'\r[{bar:<30}] {frames}{of} frames, {windows} windows, '
                     f'{time.monotonic() - started:5.1f}s')
    sys.stderr.flush()


def score(records: list, truth: dict, labels: Sequence[str],
          confusion_png: Optional[Path] = None) -> dict:
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
    if confusion_png:
        draw_confusion(matrix, labels, confusion_png, accuracy)
    return {'scored_windows': scored, 'accuracy': accuracy,
            'confusion': {'labels': list(labels), 'matrix': matrix.tolist()}}


def confusion_text(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> str:
    width = max(len(label) for label in labels) + 1
    lines = [' ' * width + ' '.join(f'{label[:8]:>8}' for label in labels)]
    for label, row in zip(labels, matrix):
        lines.append(f'{label:<{width}}' + ' '.join(f'{v:>8}' for v in row))
    return '\n'.join(lines)


def draw_confusion(matrix: np.ndarray, labels: Sequence[str], path: Path, accuracy: float):
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
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)


class ResultWriter:
    """What `evaluate` writes (`EvaluationOutputs`): JSON lines, completed segments, a rosbag2.

    The rosbag2 holds the node's output topics (`outputs.OUTPUTS`, as the node publishes them under
    `ns`) at the original stamps; latched outputs are written once, at the first window.
    """

    def __init__(self, outputs: EvaluationOutputs, labels: Sequence[str], values: dict,
                 ns: str = '/timesformer'):
        if outputs.bag and Path(outputs.bag).exists():
            raise BagError(f'output bag {outputs.bag} exists already; remove it or choose '
                           f'another path')
        self.lines = open(outputs.jsonl, 'w') if outputs.jsonl else None
        self.segments = open(outputs.segments, 'w') if outputs.segments else None
        self.labels, self.values, self.ns = list(labels), values, ns
        self.bag = None
        self.connections = {}
        if outputs.bag:
            from rosbags.rosbag2 import Writer
            self.store = _typestore(vision=True)
            self.types = bag_types(self.store)
            self.bag = Writer(outputs.bag, version=9)
            self.bag.open()

    def write(self, result):
        """One `outputs.WindowResult`."""
        if self.lines and result.record is not None:
            self.lines.write(json.dumps(result.record) + '\n')
            self.lines.flush()
        if self.segments:
            for event in result.events:
                if event['event'] == 'end':
                    self.segments.write(json.dumps(event) + '\n')
            self.segments.flush()
        if self.bag is None:
            return
        first = not self.connections
        for output in OUTPUTS:
            messages = output.latched(self.types, self.labels, self.values, result.stamp_ns) \
                if first and output.latched else []
            if output.per_window:
                messages += output.per_window(self.types, result, self.values)
            for msg in messages:
                self.bag.write(self._connection(output), result.stamp_ns,
                               self.store.serialize_cdr(msg, output.msgtype))

    def _connection(self, output):
        """Return the bag's connection of `output`, added at its first message."""
        if output.name not in self.connections:
            self.connections[output.name] = self.bag.add_connection(
                f'{self.ns}/{output.name}', output.msgtype, typestore=self.store)
        return self.connections[output.name]

    def close(self):
        for handle in (self.lines, self.segments):
            if handle:
                handle.close()
        if self.bag is not None:
            self.bag.close()


# -- writing a synthetic bag -----------------------------------------------------------------

def record_synthetic(out: Path, storage: str = 'sqlite3', seconds: float = 20.0,
                     fps: float = 30.0, seed: int = 0, width: int = 320, height: int = 240,
                     topic: str = '/camera/image_raw', truth_topic: str = '/motion',
                     start_ns: int = 1_700_000_000_000_000_000,
                     script: Optional[Sequence[str]] = None) -> int:
    """Write a rosbag2 of the synthetic camera and its truth topic; return the frame count."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from .synthetic import SyntheticStream
    plugin = {'sqlite3': StoragePlugin.SQLITE3, 'mcap': StoragePlugin.MCAP}.get(storage)
    if plugin is None:
        raise ValueError(f'storage must be sqlite3 or mcap, got {storage!r}')
    store = _typestore()
    types = bag_types(store)
    stream = SyntheticStream(seed=seed, width=width, height=height, fps=fps,
                             script=script).frames()
    count = int(round(seconds * fps))
    with Writer(Path(out), version=9, storage_plugin=plugin) as writer:
        images = writer.add_connection(topic, IMAGE, typestore=store)
        motion = writer.add_connection(truth_topic, STRING, typestore=store)
        for i in range(count):
            rgb, label = next(stream)
            stamp = start_ns + int(round(i * 1e9 / fps))
            msg = types.image(types.header(stamp, 'camera'), rgb, 'rgb8')
            writer.write(images, stamp, store.serialize_cdr(msg, IMAGE))
            truth = json.dumps({'stamp': stamp_dict(stamp), 'frame_id': 'camera',
                                'label': label})
            writer.write(motion, stamp, store.serialize_cdr(types.string(truth), STRING))
    return count


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
    ev.add_argument('bag', type=Path)
    ev.add_argument('--topic', required=True)
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
        else:
            summary = evaluate(
                Evaluation(args.bag, args.topic, args.checkpoint, args.params_file, args.truth,
                           args.device, args.batch_size),
                EvaluationOutputs(args.out, args.out_bag, args.segments, args.confusion))
            _print_summary(summary)
    except BagError as exc:
        summary = getattr(exc, 'summary', None)
        kept = f' ({summary["windows"]} windows evaluated and kept)' if summary else ''
        print(f'timesformer_bag: error: {exc}{kept}', file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(f'timesformer_bag: error: {exc}', file=sys.stderr)
        return 1
    return 0


def _print_summary(summary: dict):
    print(f'{summary["frames"]} frames, {summary["windows"]} windows in {summary["seconds"]} s '
          f'({summary["windows_per_s"]} windows/s), {summary["model"]}')
    if summary['refused']:
        print(f'refused frames: {summary["refused"]}')
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
