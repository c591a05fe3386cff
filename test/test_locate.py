"""Where the action is: boxes mapped back through the centre crop and resize, the methods."""

import numpy as np
import pytest
import torch

from timesformer_ros.clips import Window
from timesformer_ros.engine import Engine, Prediction
from timesformer_ros.frames import FrameKey, resize_and_crop, square_of, to_source
from timesformer_ros.locate import LocatorHead, holds_centre, iou, map_box
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


def test_the_whole_input_is_the_central_square_and_boxes_stay_inside_it():
    assert to_source((0, 0, 48, 48), 48, 120, 160) == (20.0, 0.0, 140.0, 120.0)
    assert to_source((0, 0, 1, 1), 1, 160, 90) == (0.0, 35.0, 90.0, 125.0)
    assert to_source((-5, 10, 60, 24), 48, 120, 160) == (20.0, 25.0, 140.0, 60.0)


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


def test_any_checkpoint_gets_a_region_by_rollout(small_checkpoint):
    engine = Engine(str(small_checkpoint), device='cpu', warmup=False)
    assert engine.locator.method == 'rollout'
    (prediction,) = engine.infer_tensor(torch.randn(1, 4, 3, 32, 32))
    x0, y0, x1, y1 = prediction.box
    assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    assert 0 < prediction.box_confidence <= 1 and prediction.box_method == 'rollout'


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
        # Equal up to float rounding: without a head, every block ran the explicit attention
        # path (for rollout); with it, only the last.
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
