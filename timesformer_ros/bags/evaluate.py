"""Offline evaluation: the node's windowing, model and outputs over a bag (`evaluate`).

Exactly the node's windowing (the same ClipBuffer, fed the same parameters file) runs over the
bag as fast as the engine allows, batching windows, and each window is written in the node's
`~/window` schema. Several topics are several cameras, as the node's `cameras` parameter serves
them: each has its own windows and action decoder, their windows share batches, and each row
(and segment) carries its `camera`.
"""

from __future__ import annotations

import dataclasses
import heapq
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np

from ..clips import model_clip_buffer, model_sampling
from ..interface import read_params_file
from ..progress import Progress
from ..segments import ActionDecoder, DecoderConfig, from_events, segment_metrics
from .base import IMAGE_TYPES, BagError, BagMessage, NoSummary
from .intake import SKIPPED, CameraIntake
from .mcap import check_mcap_chunks
from .read import check_topic, list_topics, read_topic
from .scoring import score
from .truth import (
    Truth, is_segments_file, is_truth_file, read_segments, read_truth, read_truth_csv,
    segment_truth)
from .write import EvaluationOutputs, ResultWriter

# How many skipped messages the summary names (all of them are counted).
MAX_NAMED_SKIPS = 100
# The progress line is rewritten every this many frames.
_PROGRESS_EVERY = 50


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
    # The truth CSV already read (`truth.read_truth_csv`): the fleet reads it once per run and
    # hands it to every unit. None: read here.
    parsed_truth: Optional[Truth] = dataclasses.field(default=None, repr=False, compare=False)

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
    """One camera of an evaluation: its intake (topic, window buffer, counts) and reporter."""

    name: str
    intake: CameraIntake
    reporter: Any
    windows: int = 0

    @property
    def topic(self) -> str:
        return self.intake.topic


def _merged(bag: Path, cameras: Sequence[_Camera]) -> Iterator[tuple]:
    """(camera, BagMessage) of every camera's topic, merged in bag time order."""
    def tagged(index, camera):
        for item in read_topic(bag, camera.topic, IMAGE_TYPES):
            yield (item.bag_time_ns, index, item.index), camera, item

    for _, camera, item in heapq.merge(*(tagged(i, c) for i, c in enumerate(cameras)),
                                       key=lambda entry: entry[0]):
        yield camera, item


def engine_values(run: Evaluation, params: dict) -> dict:
    """Return the values `engine_from_values` gets for `run`: the parameters file's engine.

    The node's engine as the parameters file gives it (checkpoint, labels, dtype), with the
    command line's checkpoint and device; never compiled for a one-off run.
    """
    return {**params, 'checkpoint': run.checkpoint or params['checkpoint'],
            'device': run.device if run.device != 'auto' else params['device'], 'compile': False}


def evaluate(run: Evaluation, outputs: Optional[EvaluationOutputs] = None,
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
    what was evaluated so far written and kept and its summary in the error's `summary`, and
    OutputError when an output cannot be written, with no output left behind (`ResultWriter`).
    """
    return _Evaluator(run, outputs or EvaluationOutputs(), engine).run()


class _Evaluator:
    """One evaluation: its cameras, the writer, the windows waiting for a batch, the counts."""

    def __init__(self, run: Evaluation, outputs: EvaluationOutputs, engine):
        bag, topics = run.bag, run.topics
        if not topics or len(set(topics)) != len(topics):
            raise BagError(f'{bag}: give each image topic once, got {list(topics)}')
        check_mcap_chunks(bag)
        try:
            kinds = list_topics(bag)
            total = sum(check_topic(kinds, topic, IMAGE_TYPES, bag) for topic in topics)
        except NoSummary:
            total = 0  # a cut-off MCAP file: its summary is gone, the stream says what is there
        from ..engine import engine_from_values
        from ..outputs import Reporter
        # A truth file is read (and every row checked) before the model is loaded; a segments
        # file becomes per-frame truth once the frames' stamps are known.
        self.segments = run.parsed_truth is None and is_segments_file(run.truth)
        if self.segments:
            read_segments(run.truth)
        self.truth = run.parsed_truth or (read_truth_csv(run.truth) if is_truth_file(run.truth)
                                          and not self.segments else None)
        self.run_, self.params = run, read_params_file(run.params_file)
        self.engine = engine or engine_from_values(engine_values(run, self.params),
                                                   max_batch=run.batch_size)
        self.sampling = model_sampling(self.engine, self.params).describe()
        if run.progress:
            sys.stderr.write(f'sampling: {self.sampling}\n')
        self.cameras, names = [], []
        for topic in topics:
            # One topic: the node's unnamed camera (rows and output topics as the node's).
            names.append(camera_name(topic, names) if len(topics) > 1 else '')
            decoder = ActionDecoder(self.engine.labels, DecoderConfig.from_values(self.params))
            intake = CameraIntake(topic, model_clip_buffer(self.engine, self.params),
                                  self.engine.preprocessor.frame)
            self.cameras.append(_Camera(names[-1], intake, Reporter(decoder)))
        self.writer = ResultWriter(
            dataclasses.replace(outputs, confusion=outputs.confusion if run.truth else None),
            self.engine.labels, self.params)
        self.progress = Progress(total, 'frames', run.progress)
        self.ended = []          # end events: the completed segments
        self.label_changes, self.last_labels = Counter(), {}  # raw top-1 and stable label
        self.refused, self.failed = Counter(), Counter()
        self.skipped = []        # the unreadable and undecodable messages, named
        self.pending, self.frame_times, self.records = [], {}, []
        self.frames = 0

    def run(self) -> dict:
        """Evaluate the whole bag, write and finish the outputs; return the summary."""
        error = None
        try:
            try:
                for camera, item in _merged(self.run_.bag, self.cameras):
                    self._take(camera, item)
            except BagError as exc:
                error = exc      # what was read before the break is evaluated and kept
            finally:
                self.progress.update(self.frames, f'{len(self.records)} windows')
                self.progress.close()
            self._flush()
            for camera in self.cameras:
                self._write(camera, camera.reporter.close('end_of_bag'))
            summary = self._summary()
            if self.run_.truth and error is None:
                summary.update(self._scored())
        except BagError:
            self.writer.finish()     # the bag (or its truth) failed: what was written is kept
            raise
        except BaseException:
            self.writer.discard()    # an output failed, or anything else: nothing half-written
            raise
        self.writer.finish()
        if error is not None:
            error.summary = summary
            raise error
        return summary

    def _take(self, camera: _Camera, item: BagMessage):
        """Take one message of `camera`'s topic: a frame into its buffer, a window into a batch."""
        self.frames += 1
        intake = camera.intake.take(item)
        if intake.stamp is not None:
            self.frame_times[item.bag_time_ns] = intake.stamp
        if intake.refused:
            self.refused[intake.refused] += 1
            if intake.refused in SKIPPED:
                self._skip(camera, item, intake.message)
        elif intake.push.window is not None:
            self.pending.append((camera, intake.push.window, item.msg.header.frame_id,
                                 intake.rgb))
            if len(self.pending) >= self.run_.batch_size:
                self._flush()
        if self.frames % _PROGRESS_EVERY == 0:
            self.progress.update(self.frames, f'{len(self.records)} windows')

    def _skip(self, camera: _Camera, item: BagMessage, reason: str):
        if len(self.skipped) < MAX_NAMED_SKIPS:
            self.skipped.append({'index': item.index, 'bag_time_ns': item.bag_time_ns,
                                 'reason': reason, **({'topic': camera.topic}
                                                      if len(self.cameras) > 1 else {})})

    def _flush(self):
        """Run the waiting windows as one batch and write their results."""
        from ..pipeline import failure_reason, run_batch
        if not self.pending:
            return
        outcomes = run_batch(self.engine, [window for _, window, _, _ in self.pending])
        for (camera, window, frame_id, rgb), prediction in zip(self.pending, outcomes):
            if isinstance(prediction, BaseException):
                self.failed[failure_reason(prediction)] += 1
                continue
            result = camera.reporter.window(
                window, prediction, frame_id,
                prediction.timings['inference_ms'] / len(self.pending), self.params, rgb)
            self.records.append(result.record)
            camera.windows += 1
            for kind, value in (('raw', prediction.label), ('decoded', result.label)):
                key = (camera.name, kind)
                self.label_changes[kind] += key in self.last_labels \
                    and self.last_labels[key] != value
                self.last_labels[key] = value
            self._write(camera, result)
        self.pending.clear()

    def _write(self, camera: _Camera, result):
        if result is None:
            return
        self.writer.write(result, camera.name)
        self.ended.extend(e for e in result.events if e['event'] == 'end')

    def _summary(self) -> dict:
        elapsed = self.progress.elapsed()
        topics, windows = self.run_.topics, len(self.records)
        summary = {'bag': str(self.run_.bag),
                   'topic': topics[0] if len(topics) == 1 else list(topics),
                   'frames': self.frames, 'windows': windows,
                   'refused': dict(self.refused), 'seconds': round(elapsed, 3),
                   'windows_per_s': round(windows / elapsed, 2) if elapsed else 0.0,
                   'model': self.engine.describe(), 'sampling': self.sampling,
                   'failed_windows': dict(self.failed)}
        if len(self.cameras) > 1:
            summary['cameras'] = {c.name: {'topic': c.topic, 'frames': c.intake.frames,
                                           'windows': c.windows,
                                           'refused': dict(c.intake.refused)}
                                  for c in self.cameras}
        summary['skipped'] = sum(self.refused[k] for k in SKIPPED)
        summary['skipped_messages'] = self.skipped
        summary['segments'] = len(self.ended)
        summary['label_changes'] = {kind: self.label_changes[kind]
                                    for kind in ('raw', 'decoded')}
        return summary

    def _scored(self) -> dict:
        """Accuracy, confusion and segment metrics against the truth; the PNG is written."""
        labels = self.engine.labels
        if self.segments:
            true = segment_truth(self.run_.truth, self.frame_times.values())
        else:
            true = self.truth or read_truth(self.run_.truth, self.run_.bag, self.frame_times)
        scored = score(self.records, true, labels)
        if not scored['scored_windows']:
            scored['truth_warning'] = (
                f'the truth ({true.source}: {len(true)} rows) matches none of the '
                f'{len(self.records)} windows: no window ends at a stamp it labels with a '
                f'class of the model; the accuracy is not measured')
        scored['segment_metrics'] = segment_metrics(from_events(self.ended), true.runs())
        self.writer.write_confusion(np.array(scored['confusion']['matrix']), labels,
                                    scored['accuracy'])
        return scored
