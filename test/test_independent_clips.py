"""The independent validation clips: shapes, determinism, balance, and motion read from pixels."""

import math
from collections import Counter

import numpy as np
import pytest

from independent_clips import (CLASSES, GROWTH_RANGE, MAX_DEVIATION_DEG, SIZE_RANGE,
                               SPEED_RANGE, clip_rng, make_clip, make_set)

# Object pixels differ from the plain background by at least 127 in some channel (the
# background is the RGB corner farthest from the object's colours); half of that separates
# them through noise, flicker and blur, and puts the cut at the half-covered edge pixels.
THRESHOLD = 64
TAN_DEV = math.tan(math.radians(MAX_DEVIATION_DEG))
BARE = {'background': False, 'distractors': False}   # noise, flicker and blur stay on


def measure(clip):
    """Return per-frame object centroids (frames, 2) as (x, y) and areas, from the pixels.

    The object is every pixel far from the frame's plain background, which is estimated as the
    median colour of the frame's border.
    """
    frames = clip.astype(np.int16)
    border = np.concatenate([frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]],
                            axis=1)
    background = np.median(border, axis=1)
    mask = np.abs(frames - background[:, None, None, :]).max(axis=-1) > THRESHOLD
    areas = mask.sum(axis=(1, 2)).astype(float)
    ys, xs = np.indices(mask.shape[1:])
    centroids = np.stack([(mask * xs).sum(axis=(1, 2)) / areas,
                          (mask * ys).sum(axis=(1, 2)) / areas], axis=1)
    return centroids, areas, mask


def bare_cases(seeds, label, **kwargs):
    for seed in seeds:
        clip, params = make_clip(np.random.default_rng(seed), label, return_params=True,
                                 **BARE, **kwargs)
        yield clip, params


def test_shapes_dtypes_and_balance():
    clips, labels = make_set(0, 23, frames=5, fps=10.0, height=48, width=64)
    assert clips.shape == (23, 5, 48, 64, 3) and clips.dtype == np.uint8
    assert len(labels) == 23 and set(labels) == set(CLASSES)
    counts = Counter(labels)
    assert max(counts.values()) - min(counts.values()) <= 1
    clips, labels = make_set(1, 14, frames=3, height=40, width=40)
    assert clips.shape == (14, 3, 40, 40, 3)
    assert Counter(labels) == {label: 2 for label in CLASSES}
    assert labels != sorted(labels, key=CLASSES.index)   # shuffled
    single = make_clip(np.random.default_rng(0), 'static')
    assert single.shape == (8, 120, 160, 3) and single.dtype == np.uint8
    assert single.std() > 5   # something is drawn


def test_deterministic_for_a_seed_and_different_across_seeds():
    kwargs = {'frames': 4, 'height': 48, 'width': 64}
    clips_a, labels_a = make_set(7, 9, **kwargs)
    clips_b, labels_b = make_set(7, 9, **kwargs)
    assert labels_a == labels_b and np.array_equal(clips_a, clips_b)
    clips_c, _ = make_set(8, 9, **kwargs)
    assert not np.array_equal(clips_a, clips_c)
    # Any clip of a set can be rendered again on its own.
    again = make_clip(clip_rng(7, 4), labels_a[4], **kwargs)
    assert np.array_equal(again, clips_a[4])


def test_style_switches_leave_motion_and_object_alone():
    for label in CLASSES:
        _, full = make_clip(np.random.default_rng(3), label, return_params=True)
        _, bare = make_clip(np.random.default_rng(3), label, return_params=True, plain=True)
        for key in ('centres', 'diameters_px', 'size', 'speed', 'growth', 'shape', 'texture',
                    'object_colours', 'spin_deg_s'):
            assert full[key] == bare[key], (label, key)
        assert bare['background'] is None and bare['distractors'] == []
        assert bare['noise_sigma'] == 0 and bare['blur_sigma'] == 0
    # The label moves the object and nothing else: one seed, one look, for every label.
    looks = {tuple(str(p[k]) for k in ('shape', 'texture', 'background', 'object_colours',
                                       'size', 'noise_sigma'))
             for p in (make_clip(np.random.default_rng(5), label, frames=2, return_params=True)[1]
                       for label in CLASSES)}
    assert len(looks) == 1


def test_sampled_parameters_stay_in_their_ranges():
    _, labels, params = make_set(11, 70, frames=8, fps=15.0, height=48, width=64,
                                 return_params=True, noise=False)
    seen_shapes, seen_textures, seen_backgrounds = set(), set(), set()
    for label, p in zip(labels, params):
        assert SIZE_RANGE[0] <= p['size'] <= SIZE_RANGE[1]
        assert abs(p['deviation_deg']) <= MAX_DEVIATION_DEG
        assert p['speed_sizes'] == pytest.approx(p['speed'] / p['size'])
        if label.startswith('moving_') and not p['clamped']:
            assert SPEED_RANGE[0] <= p['speed'] <= SPEED_RANGE[1]
        if label == 'approaching':
            assert GROWTH_RANGE[0] - 1e-9 <= p['growth'] <= GROWTH_RANGE[1] + 1e-9
        elif label == 'receding':
            assert GROWTH_RANGE[0] - 1e-9 <= 1 / p['growth'] <= GROWTH_RANGE[1] + 1e-9
        else:
            assert p['growth'] == 1.0
        if label == 'static':
            assert p['speed'] == 0.0
        assert 1 <= len(p['distractors']) <= 2
        seen_shapes.add(p['shape'])
        seen_textures.add(p['texture'])
        seen_backgrounds.add(p['background'])
    assert len(seen_shapes) == 5 and len(seen_textures) == 5 and len(seen_backgrounds) == 4


@pytest.mark.parametrize('label, axis, sign', [
    ('moving_left', 0, -1), ('moving_right', 0, 1), ('moving_up', 1, -1), ('moving_down', 1, 1)])
def test_translations_move_the_object_the_named_way(label, axis, sign):
    for clip, params in bare_cases(range(6), label):
        centroids, areas, mask = measure(clip)
        short = min(clip.shape[1:3])
        expected = params['speed'] * short * params['duration_s']   # along the travel
        shift = centroids[-1] - centroids[0]
        along, across = sign * shift[axis], abs(shift[1 - axis])
        # Most of the expected displacement, along the named axis, never clearly backwards.
        assert along >= 0.8 * expected * math.cos(math.radians(MAX_DEVIATION_DEG)), params
        assert along >= 0.5 * SPEED_RANGE[0] * short * params['duration_s']
        assert across <= TAN_DEV * along + 1.0
        assert (sign * np.diff(centroids[:, axis]) > -0.5).all()
        # A translation does not change the size.
        assert 0.85 <= areas[-1] / areas[0] <= 1.18
        # The pixels follow the reported trajectory; the object stays inside the frame.
        assert np.abs(centroids - np.array(params['centres'])).max() < 1.5
        assert not (mask[:, 0].any() or mask[:, -1].any()
                    or mask[:, :, 0].any() or mask[:, :, -1].any())


def trend(values):
    """Return the correlation of log(values) with time: +1 for a steady rise, -1 for a fall."""
    return float(np.corrcoef(np.arange(len(values)), np.log(values))[0, 1])


@pytest.mark.parametrize('label', ['approaching', 'receding'])
def test_scaling_grows_or_shrinks_the_object(label):
    for clip, params in bare_cases(range(6), label):
        centroids, areas, _ = measure(clip)
        size_ratio = math.sqrt(areas[-1] / areas[0])   # linear size, last frame to first
        growth = params['growth'] ** params['duration_s']
        # The size follows the reported growth (within what thresholding thin strokes through
        # blur allows) ...
        assert size_ratio == pytest.approx(growth, rel=0.15)
        # ... and changes at least by the smallest sampled growth, steadily.
        least = GROWTH_RANGE[0] ** params['duration_s']
        if label == 'approaching':
            assert size_ratio >= 0.95 * least and trend(areas) > 0.8
        else:
            assert size_ratio <= 1 / (0.95 * least) and trend(areas) < -0.8
        # The centre drifts far less than the slowest translation.
        short = min(clip.shape[1:3])
        drift = np.linalg.norm(centroids[-1] - centroids[0])
        assert drift <= 0.5 * SPEED_RANGE[0] * short * params['duration_s']


def test_static_object_stays_put():
    for seed in range(4):
        clip = make_clip(np.random.default_rng(seed), 'static', plain=True)
        assert (clip == clip[0]).all()   # without noise and flicker nothing changes at all
    for clip, params in bare_cases(range(8), 'static'):
        centroids, areas, _ = measure(clip)
        # Noise, flicker and blur move a few edge pixels across the threshold, no more.
        assert np.abs(centroids - centroids[0]).max() < 0.5
        assert np.abs(areas / areas[0] - 1).max() < 0.1
        assert params['speed'] == 0.0 and params['growth'] == 1.0
        assert params['spin_deg_s'] == 0.0


def test_long_clips_fit_their_motion_inside_the_frame():
    for label in ('moving_right', 'moving_up', 'approaching', 'receding'):
        for clip, params in bare_cases(range(3), label, frames=24, fps=8.0, height=72,
                                       width=96):
            centroids, areas, mask = measure(clip)
            assert (areas > 0).all()   # never shrinks out of sight
            assert not (mask[:, 0].any() or mask[:, -1].any()
                        or mask[:, :, 0].any() or mask[:, :, -1].any())
            if label == 'moving_right':
                assert centroids[-1, 0] - centroids[0, 0] > 10
            elif label == 'moving_up':
                assert centroids[0, 1] - centroids[-1, 1] > 10
            elif label == 'approaching':
                assert areas[-1] > 2 * areas[0] and trend(areas) > 0.8
            else:
                assert areas[-1] < areas[0] / 2 and trend(areas) < -0.8


def anova_f(values, labels):
    """Return the one-way ANOVA F statistic and the largest class-mean gap in within-class SDs."""
    values, labels = np.asarray(values, float), np.asarray(labels)
    groups = [values[labels == label] for label in CLASSES]
    grand = values.mean()
    between = sum(len(g) * (g.mean() - grand) ** 2 for g in groups) / (len(groups) - 1)
    within = sum(((g - g.mean()) ** 2).sum() for g in groups) / (len(values) - len(groups))
    gap = max(abs(g.mean() - grand) for g in groups) / math.sqrt(within)
    return between / within, gap


def test_classes_are_not_told_apart_by_global_statistics():
    clips, labels = make_set(2024, 140, frames=4, fps=7.0, height=48, width=64)
    pixels = clips.astype(np.float32)
    statistics = {
        'mean brightness': pixels.mean(axis=(1, 2, 3, 4)),
        'first-frame brightness': pixels[:, 0].mean(axis=(1, 2, 3)),
        'contrast': pixels.std(axis=(1, 2, 3, 4)),
        'red minus blue': (pixels[..., 0] - pixels[..., 2]).mean(axis=(1, 2, 3)),
    }
    for name, values in statistics.items():
        f, gap = anova_f(values, labels)
        # F(6, 133) exceeds 3.0 by chance less than 1% of the time.
        assert f < 3.0 and gap < 0.6, (name, f, gap)
    # The same test finds the label where it does live, in what changes between the first and
    # the last frame: the share of pixels that change by more than noise and flicker explain.
    n, f, h, w, c = pixels.shape
    pooled = pixels.reshape(n, f, h // 2, 2, w // 2, 2, c).mean(axis=(3, 5))
    change = pooled[:, -1] - pooled[:, 0]
    change = np.abs(change - np.median(change, axis=(1, 2), keepdims=True)).max(axis=-1)
    f, _ = anova_f((change > 30).mean(axis=(1, 2)), labels)
    assert f > 8.0


def test_forced_parameters_and_bad_arguments():
    _, p = make_clip(np.random.default_rng(0), 'moving_up', return_params=True, size=0.2,
                     speed=0.5, frames=4, height=48, width=64)
    assert p['size'] == 0.2 and p['speed'] == pytest.approx(0.5)
    _, p = make_clip(np.random.default_rng(0), 'receding', return_params=True, growth=2.0,
                     frames=4, height=48, width=64)
    assert p['growth'] == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    for kwargs in ({'label': 'sideways'}, {'frames': 1}, {'fps': 0}, {'height': 8},
                   {'shape': 'cube'}, {'growth': 0.5}, {'size': 1.5}):
        with pytest.raises(ValueError):
            make_clip(rng, **{'label': 'static', **kwargs})
    with pytest.raises(TypeError):
        make_clip(rng, 'static', colour='red')
