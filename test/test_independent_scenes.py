"""The continuous independent scenes: determinism, the truth against the pixels, the files."""

import csv
import json
import math

import numpy as np
import pytest

from independent_bags import write_scene
from independent_clips import CLASSES
from independent_scenes import (
    PHASE_RANGE_S, SCENE_DRIFT, SCENE_GROWTH_RANGE, SCENE_SIZE_RANGE, SCENE_SPEED_RANGE, Scene,
    bounds, plan, scene_rng)
from timesformer_ros.bags import read_truth
from timesformer_ros.bags.truth import read_segments

# The plain plate is the RGB corner farthest from the object's colours: at least 127 away in
# some channel, so half of that cuts at alpha 0.5, the box's own cut.
THRESHOLD = 64


def pixel_box(frame, plate):
    """Return the tight box (edges) of the pixels far from the plate, or None."""
    on = np.abs(frame.astype(np.int16) - plate).max(axis=-1) > THRESHOLD
    cols, rows = np.flatnonzero(on.any(axis=0)), np.flatnonzero(on.any(axis=1))
    if not len(cols):
        return None
    return cols[0], rows[0], cols[-1] + 1, rows[-1] + 1


def test_a_seed_gives_the_same_scene_and_another_seed_another():
    first = [(rgb, truth) for _, rgb, truth in Scene(scene_rng(3, 0), seconds=1.0)]
    again = [(rgb, truth) for _, rgb, truth in Scene(scene_rng(3, 0), seconds=1.0)]
    other = [(rgb, truth) for _, rgb, truth in Scene(scene_rng(3, 1), seconds=1.0)]
    assert len(first) == 30
    assert all(np.array_equal(a, b) and s == t for (a, s), (b, t) in zip(first, again))
    assert not np.array_equal(first[0][0], other[0][0])


@pytest.mark.parametrize('index', range(4))
def test_the_box_encloses_the_drawn_object_and_a_still_phase_does_not_move(index):
    scene = Scene(scene_rng(11, index), seconds=12.0, plain=True)
    frames = list(scene)
    plate = scene._plate[0, 0].astype(np.int16)      # plain: one colour
    for k, rgb, truth in frames:
        found = pixel_box(rgb, plate)
        if truth['box'] is None:
            assert found is None, f'frame {k}: object pixels with no box'
            continue
        assert found is not None and np.abs(np.subtract(found, truth['box'])).max() <= 1, \
            f'frame {k}: box {truth["box"]}, drawn pixels {found}'
    still = [(first, last) for phase, first, last in scene.phase_frames()
             if phase.label == 'static']
    assert still, 'no still phase in 12 s'
    for first, last in still:
        boxes = {frames[k][2]['box'] for k in range(first, last + 1)}
        assert len(boxes) == 1, f'the box moves in the still phase {first}-{last}'
        assert all(np.array_equal(frames[first][1], frames[k][1])
                   for k in range(first, last + 1))


@pytest.mark.parametrize('index', range(3))
def test_each_phase_moves_the_object_as_its_label_says(index):
    scene = Scene(scene_rng(12, index), seconds=20.0, plain=True)
    truths = [truth for _, _, truth in scene]
    short = min(scene.height, scene.width)
    checked = set()
    for phase, first, last in scene.phase_frames():
        if last - first < 30:
            continue
        a, b = truths[first], truths[last]
        seconds = (last - first) / scene.fps
        (x0, y0), (x1, y1) = a['centre'], b['centre']
        dx, dy = (x1 - x0) / short / seconds, (y1 - y0) / short / seconds
        growth = (b['diameter'] / a['diameter']) ** (1 / seconds)
        axis = {'moving_left': (-1, 0), 'moving_right': (1, 0), 'moving_up': (0, -1),
                'moving_down': (0, 1)}.get(phase.label)
        if phase.label == 'static':
            assert (dx, dy, growth) == (0, 0, 1)
        elif axis is None:       # receding about a fixed centre, approaching drifts a little
            assert math.hypot(dx, dy) <= (SCENE_DRIFT if phase.label == 'approaching' else 0) \
                + 1e-4
            assert growth == pytest.approx(phase.growth, rel=1e-3)
            assert (growth > 1) == (phase.label == 'approaching')
        else:
            sx, sy = axis
            along = dx * sx + dy * sy
            assert growth == pytest.approx(1.0, abs=1e-9)
            assert along > 0
            assert math.hypot(dx, dy) == pytest.approx(phase.speed, rel=1e-3)
            across = abs(dx * sy) + abs(dy * sx)      # within 10 degrees of the axis
            assert across <= 0.18 * max(along, 1e-9) + 1e-9
        checked.add(phase.label)
    assert len(checked) >= 3


def test_the_program_stays_in_its_ranges_and_bounds():
    labels = []
    for seed in range(20):
        for wander in ('centre', 'whole'):
            phases, inset = plan(scene_rng(seed, 0), 60.0, 120, 160, wander)
            x0, y0, x1, y1 = bounds(wander, 120, 160)
            assert sum(p.duration_s for p in phases) == pytest.approx(60.0)
            for before, phase in zip(phases, phases[1:]):
                assert phase.label != before.label, 'a phase must change what the object does'
            for phase in phases:
                assert PHASE_RANGE_S[0] - 1e-9 <= phase.duration_s <= PHASE_RANGE_S[1] + 1e-9
                for t in (phase.start_s, phase.start_s + phase.duration_s):
                    (cx, cy), diameter, _ = phase.at(t)
                    assert SCENE_SIZE_RANGE[0] * 120 - 1e-6 <= diameter \
                        <= SCENE_SIZE_RANGE[1] * 120 + 1e-6
                    pad = inset * diameter / 2 - 1e-6
                    assert x0 + pad <= cx <= x1 - pad and y0 + pad <= cy <= y1 - pad
                if phase.label.startswith('moving_'):
                    assert SCENE_SPEED_RANGE[0] <= phase.speed <= SCENE_SPEED_RANGE[1]
                elif phase.label != 'static':
                    growth = max(phase.growth, 1 / phase.growth)
                    assert SCENE_GROWTH_RANGE[0] - 1e-9 <= growth <= SCENE_GROWTH_RANGE[1]
            labels += [p.label for p in phases]
    assert set(labels) == set(CLASSES)
    # `whole` goes into the strips beside the central square; `centre` never does.
    whole = [p.at(p.start_s)[0][0] for seed in range(20)
             for p in plan(scene_rng(seed, 0), 60.0, 120, 160, 'whole')[0]]
    assert min(whole) < 20 or max(whole) > 140


def test_written_scene_truth_agrees_three_ways(tmp_path):
    described = write_scene(tmp_path / 'scene', 5, 0, seconds=4.0)
    folder = tmp_path / 'scene'
    with (folder / 'boxes.csv').open(newline='') as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 120
    truth = read_truth('/motion', folder / 'bag', {})
    assert [truth.get(int(r['stamp'])) for r in rows] == [r['label'] for r in rows]
    segments = read_segments(folder / 'segments.csv')
    assert [s.label for s in segments] == [p['label'] for p in described['phases']]
    assert [s.label for s in truth.runs()] == [s.label for s in segments]
    for segment, phase in zip(segments, described['phases']):
        assert segment.start_ns == phase['first_stamp_ns']
        assert phase['last_stamp_ns'] < segment.end_ns
    assert json.loads((folder / 'scene.json').read_text())['phases'] == described['phases']


def test_a_640x480_scene_over_the_whole_frame():
    scene = Scene(scene_rng(7, 0), seconds=0.2, height=480, width=640, wander='whole')
    (_, rgb, truth), *_ = list(scene)
    assert rgb.shape == (480, 640, 3) and rgb.dtype == np.uint8
    x_min, y_min, x_max, y_max = truth['box']
    assert 0 <= x_min < x_max <= 640 and 0 <= y_min < y_max <= 480
