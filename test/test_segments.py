"""The temporal decoder on hand-made score sequences, the segment metrics on hand-made segments.

Hysteresis edges, gaps, resets, runtime changes, smoothing.
"""

import math

import numpy as np
import pytest

from timesformer_ros.clips import Window
from timesformer_ros.messages import dict_ns as ns
from timesformer_ros.segments import (
    NS, ActionDecoder, DecoderConfig, Segment, edit_score, from_events, runs, segment_metrics,
    segmental_f1)

LABELS = ['static', 'left', 'right']
MS = 1_000_000
PERIOD = 100 * MS          # one window every 100 ms of stamp time
SPAN = 300 * MS            # each window covers 300 ms


def window(i, epoch=0, reset=None, t0=0):
    end = t0 + i * PERIOD + SPAN
    return Window(frames=(), stamps=(end - SPAN, end), frame_id='cam', key=None, seq=i,
                  epoch=epoch, reset=reset)


def probs(left, split=False):
    """Softmax-like scores with `left` for class 1, the rest on class 0.

    With `split`, the rest is shared by classes 0 and 2 instead, so that no other class reaches 0.5
    while left >= 0.
    """
    rest = 1.0 - left
    return np.array([rest / 2, left, rest / 2]) if split else np.array([rest, left, 0.0])


def run(decoder, lefts, start=0, split=False, **window_kwargs):
    events = []
    for i, left in enumerate(lefts, start):
        events += [(i, e) for e in decoder.update(window(i, **window_kwargs),
                                                  probs(left, split), 'cam')]
    return events


PLAIN = DecoderConfig(smoothing='none', enter_threshold=0.6, exit_threshold=0.4,
                      min_duration_s=0.2, min_gap_s=0.3)


def test_hysteresis_edges_start_after_min_duration_and_end_after_min_gap():
    decoder = ActionDecoder(LABELS, PLAIN)
    #        0    1    2    3    4    5    6    7    8    9    10
    lefts = [0.2, 0.59, 0.6, 0.7, 0.8, 0.5, 0.45, 0.39, 0.3, 0.2, 0.1]
    events = run(decoder, lefts, split=True)
    starts = [(i, e) for i, e in events if e['event'] == 'start' and e['class_name'] == 'left']
    ends = [(i, e) for i, e in events if e['event'] == 'end']
    # Enter reached at window 2 (0.59 < 0.6 does not count); 200 ms later, window 4: start.
    assert [i for i, _ in starts] == [4]
    start = starts[0][1]
    assert ns(start['start']) == window(2).start          # the first supporting window's start
    assert ns(start['header']['stamp']) == window(4).end  # announced by window 4's last frame
    assert start['score'] == 0.8 and start['id'] == 0
    # Scores 0.5 and 0.45 stay above exit; below from window 7; 300 ms later (window 10): end.
    assert [i for i, _ in ends] == [10]
    end = ends[0][1]
    assert end['id'] == 0 and end['reason'] == 'score'
    assert ns(end['start']) == window(2).start and ns(end['end']) == window(6).end
    assert end['duration_s'] == pytest.approx((window(6).end - window(2).start) / NS)
    assert end['peak_score'] == 0.8
    assert end['mean_score'] == pytest.approx(np.mean([0.6, 0.7, 0.8, 0.5, 0.45]))
    assert ns(end['announced']) == window(4).end
    assert decoder.active() == [] and decoder.label() == 'unknown'


def test_classes_are_decoded_independently_so_a_change_of_motion_may_overlap():
    """No class ends another; the stable label follows the best current score.

    At a change of motion the new action may start before the old one's min_gap_s has run out
    (replacing fading actions instead split real ones at brief misreads: BENCHMARKS.md).
    """
    decoder = ActionDecoder(LABELS, PLAIN)
    events = run(decoder, [0.9, 0.9, 0.9, 0.9, 0.5, 0.45, 0.4, 0.35, 0.35, 0.3, 0.2])
    changes = [(i, e['event'], e['class_name'], e.get('reason')) for i, e in events]
    assert changes == [(2, 'start', 'left', None), (8, 'start', 'static', None),
                       (10, 'end', 'left', 'score')]
    assert ns(events[2][1]['end']) == window(6).end     # its last window at or above exit
    assert decoder.label() == 'static'
    # A brief rival does not split an action that holds exit_threshold.
    decoder = ActionDecoder(LABELS, PLAIN)
    events = run(decoder, [0.9] * 4 + [0.4] * 4 + [0.9] * 3)    # static 0.6 for 400 ms
    assert [(i, e['event'], e['class_name']) for i, e in events] == [
        (2, 'start', 'left'), (6, 'start', 'static')]           # left (0.4) goes on
    assert decoder.label() == 'left'
    # In the per-window top-1 mode (thresholds 0) every class is active and the label is the
    # top-1.
    top1 = ActionDecoder(LABELS, DecoderConfig(smoothing='none', enter_threshold=0.0,
                                               exit_threshold=0.0, min_duration_s=0.0))
    events = run(top1, [0.9, 0.2, 0.7])
    assert all(e['event'] == 'start' for _, e in events) and top1.label() == 'left'


def test_a_candidate_that_drops_before_min_duration_never_starts():
    decoder = ActionDecoder(LABELS, PLAIN)
    events = run(decoder, [0.7, 0.7, 0.3, 0.7, 0.7, 0.2])
    assert [e for _, e in events if e['class_name'] == 'left'] == []


def test_a_gap_shorter_than_min_gap_joins_two_segments():
    decoder = ActionDecoder(LABELS, PLAIN)
    lefts = [0.9] * 5 + [0.1] * 2 + [0.9] * 5 + [0.1] * 5     # a 200 ms dip < 300 ms
    events = [e for _, e in run(decoder, lefts) if e['class_name'] == 'left']
    assert [e['event'] for e in events] == ['start', 'end']
    assert ns(events[1]['end']) == window(11).end
    decoder = ActionDecoder(LABELS, PLAIN)
    lefts = [0.9] * 5 + [0.1] * 4 + [0.9] * 5 + [0.1] * 5     # a 400 ms dip: two segments
    events = [e for _, e in run(decoder, lefts) if e['class_name'] == 'left']
    assert [e['event'] for e in events] == ['start', 'end', 'start', 'end']
    assert events[2]['id'] > events[0]['id']      # ids are unique over all classes


def test_the_stable_label_is_the_active_class_and_honours_the_threshold():
    decoder = ActionDecoder(LABELS, PLAIN)
    run(decoder, [0.9] * 4)
    assert decoder.label() == 'left' and decoder.label(threshold=0.95) == 'unknown'
    assert [a['class_name'] for a in decoder.active()] == ['left']


@pytest.mark.parametrize('epoch, reset, stamp_back, reason', [
    (1, 'gap', False, 'gap'), (1, 'frame_id_change', False, 'frame_id_change'),
    (0, None, True, 'backwards')])
def test_a_stamp_reset_closes_active_segments_with_its_reason(epoch, reset, stamp_back,
                                                              reason):
    decoder = ActionDecoder(LABELS, PLAIN)
    run(decoder, [0.9] * 6)
    assert decoder.active()
    t0 = -10 * PERIOD if stamp_back else 60 * PERIOD
    events = decoder.update(window(0, epoch=epoch, reset=reset, t0=t0), probs(0.9), 'cam')
    ends = [e for e in events if e['event'] == 'end']
    assert len(ends) == 1 and ends[0]['reason'] == reason
    assert ns(ends[0]['end']) == window(5).end        # the last supporting window before it
    # The new stream starts afresh: a new candidate, a new id once it lasts.
    events = run(decoder, [0.9] * 4, start=1, epoch=epoch, t0=t0)
    assert [e['id'] for _, e in events if e['event'] == 'start'] == [1]


def test_close_all_ends_every_active_segment():
    decoder = ActionDecoder(LABELS, PLAIN)
    run(decoder, [0.9] * 6)
    (end,) = decoder.close_all('end_of_bag', 'cam')
    assert end['reason'] == 'end_of_bag' and decoder.active() == []


def test_runtime_changes_take_effect_on_the_next_window():
    decoder = ActionDecoder(LABELS, PLAIN)
    assert run(decoder, [0.7] * 2) == []                 # a candidate for 100 ms, not active
    decoder.config = DecoderConfig(smoothing='none', enter_threshold=0.8, exit_threshold=0.4,
                                   min_duration_s=0.2, min_gap_s=0.3)
    events = run(decoder, [0.7] * 5, start=2)            # 0.7 no longer enters
    assert [e for _, e in events if e['class_name'] == 'left'] == []
    decoder.config = PLAIN
    events = run(decoder, [0.7] * 3, start=7)            # a new candidate at 7, 200 ms later
    assert [i for i, e in events if e['event'] == 'start'] == [9]


def test_ema_smoothing_follows_stamp_time():
    decoder = ActionDecoder(LABELS, DecoderConfig(smoothing='ema', ema_tau_s=0.2,
                                                  enter_threshold=0.99, exit_threshold=0.5))
    decoder.update(window(0), probs(0.0), 'cam')
    decoder.update(window(1), probs(1.0), 'cam')        # 100 ms later
    weight = 1 - math.exp(-0.1 / 0.2)
    assert decoder.smoothed[1] == pytest.approx(weight)
    decoder.update(window(4), probs(1.0), 'cam')        # 300 ms later: a larger step
    assert decoder.smoothed[1] == pytest.approx(1 - (1 - weight) * math.exp(-0.3 / 0.2))


def test_vote_smoothing_is_the_share_of_top_1_over_the_last_k_windows():
    decoder = ActionDecoder(LABELS, DecoderConfig(smoothing='vote', vote_windows=4,
                                                  enter_threshold=0.75, exit_threshold=0.5,
                                                  min_duration_s=0.0))
    events = [(i, e) for i, left in enumerate([0.1, 0.9, 0.9, 0.1, 0.9])
              for e in decoder.update(window(i), probs(left), 'cam')]
    assert decoder.smoothed[1] == pytest.approx(0.75)   # 3 of the last 4 windows
    # static: 1 of 1 at window 0; left: 2 of 3 at window 2 < 0.75, 3 of 4 at window 4.
    assert [(i, e['event'], e['class_name']) for i, e in events] == [
        (0, 'start', 'static'), (4, 'start', 'left')]


@pytest.mark.parametrize('values', [dict(exit_threshold=0.7, enter_threshold=0.6),
                                    dict(smoothing='median'), dict(ema_tau_s=0.0),
                                    dict(vote_windows=0), dict(min_gap_s=-1.0)])
def test_invalid_configurations_are_refused_with_the_value(values):
    with pytest.raises(ValueError) as info:
        DecoderConfig(**values)
    assert any(str(v) in str(info.value) for v in values.values())


# -- metrics ----------------------------------------------------------------------------------

def seg(label, start, end, announced=None):
    return Segment(label, start * NS, end * NS, None if announced is None else announced * NS)


def test_runs_merge_consecutive_equal_labels():
    stamped = [(0, 'a'), (1, 'a'), (2, 'b'), (3, 'b'), (4, 'a')]
    assert runs(stamped) == [Segment('a', 0, 1), Segment('b', 2, 3), Segment('a', 4, 4)]


def test_segment_metrics_on_hand_made_segments():
    truth = [seg('a', 0, 10), seg('b', 10, 20), seg('a', 20, 30)]
    perfect = [seg('a', 0, 10, 1), seg('b', 10, 20, 12), seg('a', 20, 30, 21)]
    metrics = segment_metrics(perfect, truth)
    assert metrics['f1@0.5'] == 1.0 and metrics['edit'] == 1.0
    assert metrics['over_segmented'] == metrics['under_segmented'] == 0
    assert metrics['onset_delay_s']['median'] == 1.0
    # b split in two, and a false c: over-segmentation, lower F1 and edit score.
    split = [seg('a', 0, 10), seg('b', 10, 14), seg('c', 14, 15), seg('b', 15, 20),
             seg('a', 20, 30)]
    f1, _ = segmental_f1(split, truth, 0.5)
    assert f1 == pytest.approx(2 * (3 / 5) * 1.0 / (3 / 5 + 1.0))
    assert edit_score(split, truth) == pytest.approx(1 - 2 / 5)
    assert segment_metrics(split, truth)['over_segmented'] == 1
    # One segment across all three: under-segmentation.
    merged = [seg('a', 0, 30)]
    assert segment_metrics(merged, truth)['under_segmented'] == 1
    assert segmental_f1(merged, truth, 0.5)[0] == 0.0


def test_segments_from_end_events_round_trip():
    decoder = ActionDecoder(LABELS, PLAIN)
    ends = [e for _, e in run(decoder, [0.9] * 6 + [0.1] * 5) if e['event'] == 'end']
    (segment,) = from_events(ends)
    assert segment == Segment('left', window(0).start, window(5).end, window(2).end)


def test_published_json_follows_the_documented_schemas():
    jsonschema = pytest.importorskip('jsonschema')
    from timesformer_ros.outputs import ACTIVE_SCHEMA, EVENT_SCHEMA, active_dict
    decoder = ActionDecoder(LABELS, PLAIN)
    events = [e for _, e in run(decoder, [0.9] * 6 + [0.1] * 5)]
    events += decoder.close_all('end_of_bag')
    assert {e['event'] for e in events} == {'start', 'end'}
    for event in events:
        jsonschema.validate(event, EVENT_SCHEMA)
    run(decoder, [0.9] * 6)
    active = active_dict(events[-1]['header'], decoder.active())
    assert active['active']
    jsonschema.validate(active, ACTIVE_SCHEMA)
    end = next(e for e in events if e['event'] == 'end')
    with pytest.raises(jsonschema.ValidationError):       # an end event must say why
        jsonschema.validate({k: v for k, v in end.items() if k != 'reason'}, EVENT_SCHEMA)


def test_a_threshold_change_keeps_the_smoothing_and_a_smoothing_change_restarts_it():
    decoder = ActionDecoder(LABELS, DecoderConfig(smoothing='ema', ema_tau_s=0.3))
    run(decoder, [0.1] * 5)
    decoder.config = DecoderConfig(smoothing='ema', ema_tau_s=0.3, min_gap_s=0.5)
    decoder.update(window(5), probs(0.9), 'cam')         # one outlier window
    assert decoder.smoothed[1] == pytest.approx(0.1 + 0.8 * (1 - math.exp(-0.1 / 0.3)))
    decoder.config = DecoderConfig(smoothing='ema', ema_tau_s=1.0, min_gap_s=0.5)
    decoder.update(window(6), probs(0.9), 'cam')
    assert decoder.smoothed[1] == pytest.approx(0.9)     # a new time constant starts afresh
