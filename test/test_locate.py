"""Where the action is: boxes mapped back through the centre crop and resize, the methods."""

import numpy as np
import pytest
import torch

from timesformer_ros.clips import Window
from timesformer_ros.engine import Engine, Prediction
from timesformer_ros.frames import FrameKey, Preprocessor, resize_and_crop, square_of, to_source
from timesformer_ros.locate import (
    HOLD_BELOW, HOLD_S, LocatorHead, RegionHold, holds_centre, iou, map_box, threshold_box)
from timesformer_ros.outputs import roi_dict, window_dict
from timesformer_ros.world import mask_box


@pytest.mark.parametrize('height, width, size', [(120, 160, 48), (160, 90, 32),
                                                 (480, 640, 224), (64, 64, 32)])
def test_a_box_maps_back_through_crop_and_resize_to_the_object(height, width, size):
    """A rectangle drawn in a non-square frame is found where it was drawn.

    Found in the model's input and mapped back, within one input pixel's footprint.
    """
    top, left, side = square_of(height, width)
    rgb = np.zeros((height, width, 3), np.uint8)
    x0, y0 = left + side * 0.55, top + side * 0.2         # inside the central square
    x1, y1 = x0 + side * 0.25, y0 + side * 0.35
    rgb[int(y0):int(y1), int(x0):int(x1)] = 255
    found = mask_box(resize_and_crop(rgb, size)[..., 0] > 127)
    back = np.array(to_source(found, size, height, width))
    pixel = side / size
    assert np.allclose(back, [int(x0), int(y0), int(x1), int(y1)], atol=pixel + 1e-6), back


def test_the_whole_input_is_the_central_square_and_boxes_beyond_it_stay_in_the_frame():
    assert to_source((0, 0, 48, 48), 48, 120, 160) == (20.0, 0.0, 140.0, 120.0)
    assert to_source((0, 0, 1, 1), 1, 160, 90) == (0.0, 35.0, 90.0, 125.0)
    # Reaching into the strips the centre crop leaves out (2.5 camera pixels per input pixel),
    # clipped to the frame.
    assert to_source((-5, 10, 60, 24), 48, 120, 160) == (7.5, 25.0, 160.0, 60.0)
    assert to_source((-20, -3, 0, 50), 48, 120, 160) == (0.0, 0.0, 20.0, 120.0)


def test_the_window_json_carries_the_roi_in_source_pixels():
    window = Window(frames=(None,) * 2, stamps=(1, 2), frame_id='cam',
                    key=FrameKey('rgb8', 120, 160), seq=0)
    prediction = Prediction([1, 0], ['b', 'a'], [0.75, 0.25], np.array([0.25, 0.75]),
                            box=np.array([0.5, 0.25, 0.75, 1.0]), box_confidence=0.5,
                            box_method='head')
    assert roi_dict(prediction, window.key) == {
        'x_min': 80.0, 'y_min': 30.0, 'x_max': 110.0, 'y_max': 120.0, 'confidence': 0.5,
        'method': 'head'}
    assert window_dict(prediction, window, 'cam', 1.0, 0, 5)['roi']['x_min'] == 80.0
    assert 'roi' not in window_dict(Prediction([0], ['a'], [1.0], np.ones(1)), window, 'cam',
                                    1.0, 0, 5)


def test_a_thresholded_map_boxes_the_blob_around_its_peak_not_the_patch_grid():
    relevance = np.zeros((6, 6), np.float32)
    relevance[2, 3] = 1.0
    relevance[5, 0] = 0.4            # a weaker blob elsewhere is not part of the box
    box, confidence = map_box(relevance, 48)
    x0, y0, x1, y1 = box
    assert x0 < 28 < x1 and y0 < 20 < y1                  # the peak patch's centre
    assert x1 - x0 < 16 and y1 - y0 < 16                   # smaller than 2 patches
    assert 0 < confidence < 1


def test_the_head_decodes_its_own_targets():
    """The targets of a box, written as the head's outputs, decode to that box."""
    head = LocatorHead(dim=4, patch_size=8)
    boxes = torch.tensor([[10.0, 20.0, 18.0, 30.0], [0.5, 40.0, 13.0, 47.5]])
    index, offset, log_size = head.targets(boxes, (6, 6))
    out = torch.zeros(2, 36, 5)
    out[torch.arange(2), index, 0] = 10.0
    out[torch.arange(2), index, 1:3] = offset
    out[torch.arange(2), index, 3:5] = log_size
    head.forward = lambda tokens: (out[..., 0], out[..., 1:3], out[..., 3:5])
    decoded, confidence = head.decode(torch.zeros(2, 36, 4), (6, 6))
    assert torch.allclose(decoded, boxes, atol=1e-4) and (confidence > 0.99).all()
    assert holds_centre(decoded.numpy(), boxes.numpy()).all()
    assert np.allclose(iou(decoded.numpy(), boxes.numpy()), 1.0, atol=1e-4)


def test_any_checkpoint_gets_a_region_by_motion(small_checkpoint):
    engine = Engine(str(small_checkpoint), device='cpu', warmup=False)
    assert engine.locator.method == 'motion'
    (prediction,) = engine.infer_tensor(torch.randn(1, 4, 3, 32, 32))
    x0, y0, x1, y1 = prediction.box
    assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    assert 0 < prediction.box_confidence <= 1 and prediction.box_method == 'motion'


def test_the_motion_region_is_the_mover_in_the_newest_frame(small_checkpoint):
    """A square moving over a textured still background: the box is its newest position.

    Whatever the (random) model attends to, the change from the window's median is the mover.
    """
    engine = Engine(str(small_checkpoint), device='cpu', warmup=False)
    rng = np.random.default_rng(3)
    background = rng.uniform(-1, 1, (3, 32, 32)).astype(np.float32)
    video = np.repeat(background[None], 4, 0)
    for t in range(4):
        video[t, :, 8:16, 2 + 5 * t:10 + 5 * t] = 2.0          # 8x8, 5 px right a frame
    (prediction,) = engine.infer_tensor(torch.from_numpy(video)[None])
    truth = np.array([[17 / 32, 8 / 32, 25 / 32, 16 / 32]])
    found = np.array([prediction.box])
    assert holds_centre(found, truth).all() and iou(found, truth)[0] > 0.5, found * 32


def test_the_motion_region_is_found_outside_the_square_the_model_sees(small_checkpoint):
    """A square moving in the left strip of a 4:3 frame, which the centre crop leaves out.

    Streams buffer `frames.Frame`s (the crop and the whole frame in gray); the region is looked
    for over the whole frame and mapped into the camera's pixels beyond the central square.
    """
    engine = Engine(str(small_checkpoint), device='cpu', warmup=False)
    rng = np.random.default_rng(4)
    background = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    clip = []
    for t in range(4):
        rgb = background.copy()
        rgb[4 + 4 * t:14 + 4 * t, 0:7, :] = 255                    # moving down, x 0..7
        clip.append(engine.preprocessor.frame(rgb))
    (prediction,) = engine.infer([clip])
    box = to_source(prediction.box, 1, 48, 64)
    truth = np.array([[0, 16, 7, 26]])
    assert box[2] <= 16 and holds_centre(np.array([box]), truth).all(), box
    # The same frames as bare tensors: the region stays inside the model's input.
    (cropped,) = engine.infer([[frame.pixels for frame in clip]])
    assert to_source(cropped.box, 1, 48, 64)[0] >= 8


def test_a_ring_of_change_is_boxed_whole_with_parts():
    """A growing object changes in a ring: with `parts` the box holds all of it (its centre)."""
    ring = np.zeros((40, 40), np.float32)
    yy, xx = np.mgrid[:40, :40]
    radius = np.hypot(yy - 20, xx - 20)
    ring[(radius > 8) & (radius < 11) & (np.abs(xx - 20) > 3)] = 1.0   # two arcs
    ring[(radius > 8) & (radius < 11) & (xx > 23)] = 1.5       # one side changes more
    peak_only, _ = threshold_box(ring, 0.35)
    whole, _ = threshold_box(ring, 0.35, parts=0.3)
    assert peak_only[0] > 20                                    # the peak's part alone
    assert whole[0] < 12 < 28 < whole[2] and whole[1] < 12 < 28 < whole[3]


def _motion(box, confidence):
    return Prediction([0], ['a'], [1.0], np.ones(1), box=np.array(box, np.float32),
                      box_confidence=confidence, box_method='motion')


def test_a_stream_holds_its_last_confident_region_while_nothing_moves():
    hold = RegionHold()
    second = 10 ** 9

    def window(end_s, epoch=0):
        return Window(frames=(), stamps=(int(end_s * second),), frame_id='', key=None, seq=0,
                      epoch=epoch)

    moved = hold.apply(_motion([0.1, 0.1, 0.3, 0.3], 0.9), window(1.0))
    assert moved.box_method == 'motion'
    still = hold.apply(_motion([0.0, 0.0, 1.0, 1.0], HOLD_BELOW / 2), window(1.0 + HOLD_S / 2))
    assert still.box_method == 'held' and np.allclose(still.box, [0.1, 0.1, 0.3, 0.3])
    assert still.box_confidence == pytest.approx(0.45)         # faded halfway
    late = hold.apply(_motion([0.0, 0.0, 1.0, 1.0], 0.1), window(1.0 + HOLD_S + 0.1))
    assert late.box_method == 'motion' and late.box_confidence == 0.1
    hold.apply(_motion([0.5, 0.5, 0.6, 0.6], 0.8), window(5.0))
    reset = hold.apply(_motion([0.0, 0.0, 1.0, 1.0], 0.1), window(5.1, epoch=1))
    assert reset.box_method == 'motion'                         # a buffer reset forgets it


def test_preprocessed_frames_carry_the_whole_frame_at_the_input_scale():
    frame = Preprocessor(48, (0.5,) * 3, (0.5,) * 3).frame(np.zeros((120, 160, 3), np.uint8))
    assert tuple(frame.pixels.shape) == (3, 48, 48) and frame.thumb.shape == (48, 64)


def _scene_regions(engine, seed: int, scenes: int, seconds: float) -> tuple:
    """Centre hits and IoUs of what the node publishes on whole-frame independent scenes."""
    from independent_scenes import Scene, scene_rng
    fps, frames = engine.clip_fps, engine.num_frames
    hits, overlaps = [], []
    for index in range(scenes):
        scene = Scene(scene_rng(seed, index), seconds=seconds, fps=fps, wander='whole')
        hold, buffered = RegionHold(), []
        for k, rgb, truth in scene:
            buffered = (buffered + [engine.preprocessor.frame(rgb)])[-frames:]
            if len(buffered) < frames:
                continue
            window = Window(frames=tuple(buffered), stamps=(int(k * 1e9 / fps),), frame_id='',
                            key=None, seq=k)
            prediction = hold.apply(engine.infer([window.frames])[0], window)
            if truth['box'] is None:
                continue
            found = np.array([to_source(prediction.box, 1, scene.height, scene.width)])
            hits.append(holds_centre(found, np.array([truth['box']]))[0])
            overlaps.append(iou(found, np.array([truth['box']], np.float64))[0])
    return np.array(hits), np.array(overlaps)


def test_the_published_region_finds_the_object_wandering_over_the_whole_frame():
    """A floor under the region's quality on scenes written apart from it and its tuning.

    Four 15 s continuous scenes of test/independent_scenes.py (seed 40, which no setting was
    chosen on), the object anywhere in a 160x120 frame, through the engine and a stream's hold
    as the node runs them. Measured with the shipped model (60 px, 7.5 fps: 420 windows): 0.793
    hold the object's centre, median IoU 0.408 (the twelfth stage 0.793 / 0.405, the eleventh 0.793
    / 0.408, the ninth 0.788 / 0.413, the seventh 0.786 / 0.397, the 60 px model before it 0.783 /
    0.394, the 48 px model 0.788 / 0.400);
    the 10 fps model (572 windows) 0.755 / 0.335 (a hard draw: ten 30 s scenes of seeds 41-43
    gave it 0.86-0.96; BENCHMARKS.md has the benchmark, and these four scenes are among the few
    where looking in the model's input alone did better, 0.82 / 0.41). The floor sits a little
    below.
    """
    from timesformer_ros.checkpoints import embedded_checkpoint
    engine = Engine(str(embedded_checkpoint()), device='cpu', warmup=False)
    hits, overlaps = _scene_regions(engine, 40, 4, 15.0)
    assert len(hits) == 420
    found = (hits.mean(), np.median(overlaps))
    assert found[0] >= 0.70 and found[1] >= 0.30, found


def test_a_trained_head_travels_with_the_checkpoint_and_leaves_the_classifier_alone(
        small_checkpoint, tmp_path):
    """`timesformer_train locator` on a copy: the checkpoint gains the head, same logits."""
    import shutil

    from timesformer_ros.checkpoints import load_checkpoint
    from timesformer_ros.train import main
    for path in small_checkpoint.parent.glob(small_checkpoint.stem + '.*'):
        shutil.copy(path, tmp_path / path.name)
    copy = tmp_path / small_checkpoint.name
    video = torch.randn(2, 4, 3, 32, 32)
    before = Engine(str(copy), device='cpu', warmup=False).infer_tensor(video)
    assert main(['locator', str(copy), '--clips', '24', '--steps', '4', '--batch-size', '8',
                 '--threads', '1']) == 0
    assert (tmp_path / 'small.locator.safetensors').is_file()
    assert load_checkpoint(copy).extra['locator']['training']['classifier'] == 'frozen'
    engine = Engine(str(copy), device='cpu', warmup=False)
    assert engine.locator.method == 'head'
    after = engine.infer_tensor(video)
    for a, b in zip(before, after):
        # The head leaves the classifier's logits as they were (up to float rounding).
        assert np.allclose(a.probabilities, b.probabilities, atol=1e-6)
        x0, y0, x1, y1 = b.box
        assert x0 < x1 and y0 < y1 and b.box_method == 'head' and 0 < b.box_confidence <= 1


def test_a_broken_head_file_is_one_line_naming_it(small_checkpoint, tmp_path):
    import json
    import shutil

    from timesformer_ros.checkpoints import CheckpointError
    for path in small_checkpoint.parent.glob(small_checkpoint.stem + '.*'):
        shutil.copy(path, tmp_path / path.name)
    copy = tmp_path / small_checkpoint.name
    meta = json.loads(copy.read_text())
    meta['locator'] = {'weights': 'small.locator.safetensors', 'hidden': 64, 'kind': 'conv'}
    copy.write_text(json.dumps(meta))
    (tmp_path / 'small.locator.safetensors').write_bytes(b'not a tensor file')
    with pytest.raises(CheckpointError, match='small.locator.safetensors'):
        Engine(str(copy), device='cpu', warmup=False)
