"""Several cameras, one model: batched inference equals unbatched, and no camera starves.

`pipeline.Stream` (one per camera) and `pipeline.BatchWorker` with the real engine; the batches
are formed by hand (`BatchWorker.pick` / `run`) where a test needs a given batch.
"""

import threading

import numpy as np
import pytest
import torch

from conftest import randomise_
from timesformer_ros.checkpoints import Checkpoint
from timesformer_ros.clips import ClipBuffer
from timesformer_ros.engine import Engine
from timesformer_ros.model import TimeSformer, TimeSformerConfig
from timesformer_ros.pipeline import BatchWorker, NonFiniteResult, Stream, run_batch

pytest.importorskip('sensor_msgs.msg')
from test_node import frame  # noqa: E402

T = 4


@pytest.fixture(scope='module')
def engine():
    torch.manual_seed(0)
    model = randomise_(TimeSformer(TimeSformerConfig(
        img_size=32, patch_size=8, num_frames=T, embed_dim=32, depth=2, num_heads=4,
        num_classes=5))).eval()
    return Engine(Checkpoint(model=model, labels=list('abcde')), device='cpu', dtype='float32',
                  max_batch=4)


def clip(engine, seed, height=48, width=64):
    rng = np.random.default_rng(seed)
    return [engine.preprocessor(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
            for _ in range(T)]


def assert_same(batched, alone):
    assert batched.class_ids[0] == alone.class_ids[0]
    np.testing.assert_allclose(batched.probabilities, alone.probabilities, atol=1e-5, rtol=0)
    np.testing.assert_allclose(batched.temporal, alone.temporal, atol=1e-5, rtol=0)
    np.testing.assert_allclose(batched.spatial, alone.spatial, atol=1e-5, rtol=0)


def test_a_batch_of_clips_gives_each_clip_its_unbatched_prediction(engine):
    clips = [clip(engine, seed) for seed in (1, 2, 3)]
    batched = engine.infer(clips)
    alone = [engine.infer([c])[0] for c in clips]
    for b, a in zip(batched, alone):
        assert_same(b, a)
    # The clips differ, so a mix-up of the batch order could not pass.
    assert not np.allclose(alone[0].probabilities, alone[1].probabilities, atol=1e-3)


def test_one_non_finite_window_fails_alone_in_its_batch(engine):
    good, poisoned = clip(engine, 1), clip(engine, 2)
    poisoned[2] = poisoned[2].clone().fill_(float('nan'))

    class W:
        def __init__(self, frames):
            self.frames = frames

    first, bad, last = run_batch(engine, [W(good), W(poisoned), W(clip(engine, 3))])
    assert isinstance(bad, NonFiniteResult)
    assert_same(first, engine.infer([good])[0])
    assert_same(last, engine.infer([clip(engine, 3)])[0])


def make_streams(engine, names, results, **buffer_kwargs):
    def on_result(name):
        return lambda job, prediction, latency: results.append((name, job, prediction))
    return [Stream(name, ClipBuffer(T, **buffer_kwargs), engine.preprocessor, on_result(name))
            for name in names]


def feed(stream, index, first, count, **frame_kwargs):
    """Submit `count` frames 100 ms apart (every one sampled: sample_every 1)."""
    for i in range(first, first + count):
        assert stream.submit(frame(index * 1000 + i, 10**12 + i * 100_000_000,
                                   **frame_kwargs)) is None


def test_batched_streams_get_their_own_windows_with_the_unbatched_results(engine):
    results = []
    shapes = {'front': (48, 64), 'left': (60, 80), 'rear': (32, 32)}
    streams = make_streams(engine, list(shapes), results)
    worker = BatchWorker(engine, streams, max_batch=3)
    for index, stream in enumerate(streams):
        height, width = shapes[stream.name]
        feed(stream, index, 0, T, frame_id=stream.name, height=height, width=width)
    batch = worker.pick()
    assert [s.name for s, _ in batch] == ['front', 'left', 'rear']
    worker.run(batch)
    assert [name for name, _, _ in results] == ['front', 'left', 'rear']
    for name, job, prediction in results:
        assert job.header.frame_id == name and job.window.frame_id == name
        assert_same(prediction, engine.infer([job.window.frames])[0])
    assert worker.snapshot()['batch_sizes'] == {3: 1}
    for stream in streams:
        snap = stream.snapshot()
        assert snap['frames_processed'] == 1 and snap['batch_sizes'] == {3: 1}
        assert snap['accounted']


def test_a_fast_camera_does_not_starve_slow_ones(engine):
    """More cameras wait than fit a batch: the one waiting longest goes first.

    A fast camera's newer window replaces its waiting one (dropped, counted) without
    restarting its wait, so it cannot take every batch.
    """
    results = []
    streams = make_streams(engine, ['fast', 'medium', 'slow'], results)
    fast, medium, slow = streams
    worker = BatchWorker(engine, streams, max_batch=1)
    feed(fast, 0, 0, T)
    feed(medium, 1, 0, T)
    feed(slow, 2, 0, T)
    served = []
    next_frame = {fast: T, medium: T}
    for _ in range(6):
        # Before every batch the fast camera completes a window, the medium one every other.
        for stream, every in ((fast, 1), (medium, 2)):
            if len(served) % every == 0:
                feed(stream, streams.index(stream), next_frame[stream], 1)
                next_frame[stream] += 1
        batch = worker.pick()
        served += [s.name for s, _ in batch]
        worker.run(batch)
    assert served[:3] == ['fast', 'medium', 'slow'], served
    assert served.count('slow') == 1 and served.count('medium') >= 2, served
    assert fast.snapshot()['frames_dropped'] > 0 and slow.snapshot()['frames_dropped'] == 0
    for stream in streams:
        assert stream.snapshot()['accounted']


def test_the_worker_thread_serves_every_camera(engine):
    """Started as the node starts it: every camera's windows come back, each to its stream."""
    results, last_end = [], 10**12 + 11 * 100_000_000
    done = threading.Event()

    def collect(name):
        def on_result(job, prediction, latency):
            results.append((name, job))
            if {n for n, j in results if j.window.end == last_end} == {'a', 'b', 'c'}:
                done.set()
        return on_result

    streams = [Stream(name, ClipBuffer(T), engine.preprocessor, collect(name))
               for name in ('a', 'b', 'c')]
    worker = BatchWorker(engine, streams, max_batch=3)
    worker.start()
    try:
        for i in range(12):
            for index, stream in enumerate(streams):
                feed(stream, index, i, 1, frame_id=stream.name)
        # The newest window of every camera reaches the model (older ones may be dropped).
        assert done.wait(20), results
    finally:
        worker.stop()
    for stream in streams:
        snap = stream.snapshot()
        assert snap['accounted'] and snap['frames_processed'] >= 1, snap
        assert all(job.header.frame_id == stream.name for name, job in results
                   if name == stream.name)
        assert snap['frames_processed'] + snap['frames_dropped'] == 12 - T + 1
