"""Training: label-consistent augmentation, the from-scratch init, and short real runs."""

import numpy as np
import pytest
import torch

from timesformer_ros import synthetic
from timesformer_ros.checkpoints import load_checkpoint
from timesformer_ros.model import TimeSformer, TimeSformerConfig
from timesformer_ros.train import (DIRECTIONS, augment, curriculum_phase, init_from_scratch,
                                   main, synthetic_batch)

SMALL = dict(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=4)


def motion(clip: np.ndarray) -> np.ndarray:
    """Centroid displacement (x, y) in pixels of what differs from the background, first to
    last frame."""
    frames = clip.astype(float)
    background = np.median(frames.reshape(-1, 3), axis=0)
    centroids = []
    for frame in (frames[0], frames[-1]):
        ys, xs = np.nonzero(np.abs(frame - background).sum(-1) > 30)
        centroids.append((xs.mean(), ys.mean()))
    return np.subtract(centroids[1], centroids[0])


def test_augmented_labels_match_the_motion_in_the_pixels():
    rng = np.random.default_rng(4)
    checked = 0
    for _ in range(6):
        clips, labels = augment(rng, *synthetic_batch(rng, 8, 48, 6, synthetic.EASY_STYLE))
        assert len(clips) == 16
        for clip, label in zip(clips, labels):
            name = synthetic.CLASSES[label]
            dx, dy = motion(clip)
            expected = {'moving_left': dx < -2, 'moving_right': dx > 2,
                        'moving_up': dy < -2, 'moving_down': dy > 2}.get(name)
            if expected is not None:
                assert expected, (name, dx, dy)
                checked += 1
    assert checked > 20


def test_the_curriculum_starts_with_directions_on_easy_scenes():
    phases = [curriculum_phase(step, 100, curriculum=0.5, directions_first=0.2)
              for step in range(100)]
    names = [name for _, _, name in phases]
    assert names.index('all classes, easy scenes') == 20
    assert names.index('all classes') == 50
    assert all(style is synthetic.EASY_STYLE for _, style, _ in phases[:50])
    assert all(style is synthetic.TRAIN_STYLE for _, style, _ in phases[50:])
    rng = np.random.default_rng(0)
    _, labels = synthetic_batch(rng, 40, 32, 2, phases[0][1], phases[0][0])
    assert set(labels) == set(DIRECTIONS)
    _, labels = synthetic_batch(rng, 60, 32, 2, phases[-1][1], phases[-1][0])
    assert set(labels) == set(range(len(synthetic.CLASSES)))


def test_from_scratch_init_makes_the_network_order_sensitive():
    """The official init is nearly blind to frame order (uniform temporal attention); the
    from-scratch init is not. This is the difference between learning direction or not."""
    torch.manual_seed(0)
    config = TimeSformerConfig(num_classes=4, **SMALL)
    video = torch.randn(4, 4, 3, 32, 32)
    official = TimeSformer(config).eval()
    scratch = init_from_scratch(TimeSformer(config)).eval()
    with torch.no_grad():
        gaps = [(m.forward_features(video)[0] - m.forward_features(video.flip(1))[0]).abs().max()
                for m in (official, scratch)]
    # Final-norm CLS features (unit scale): the official init responds to frame order only at
    # float rounding; the from-scratch init responds a thousand times more, which training
    # can amplify.
    assert gaps[0] < 1e-5 and gaps[1] > 1e-4 and gaps[1] > 100 * gaps[0], gaps


def test_a_short_training_run_writes_a_loadable_checkpoint(tmp_path):
    out = tmp_path / 'model'
    assert main(['train', '--preset', 'tiny', '--steps', '3', '--batch-size', '4',
                 '--val-every', '3', '--threads', '1', '--out', str(out)]) == 0
    ckpt = load_checkpoint(out.with_suffix('.json'))
    assert ckpt.labels == list(synthetic.CLASSES)
    training = ckpt.extra['training']
    assert training['steps'] == 3 and training['history'][-1]['step'] == 3
    assert training['command'].startswith('timesformer_train train --preset tiny')
    # Fine-tuning continues from a checkpoint.
    again = tmp_path / 'again'
    assert main(['train', '--init', str(out.with_suffix('.json')), '--steps', '2',
                 '--batch-size', '4', '--val-every', '2', '--out', str(again)]) == 0
    assert load_checkpoint(again.with_suffix('.json')).extra['training']['init']


def test_training_on_a_folder_of_labelled_clips(tmp_path):
    rng = np.random.default_rng(0)
    for name in synthetic.CLASSES:
        folder = tmp_path / 'clips' / name
        folder.mkdir(parents=True)
        for i in range(2):
            np.save(folder / f'{i}.npy', synthetic.make_clip(rng, name, 80, 10))
    out = tmp_path / 'folder_model'
    assert main(['train', '--preset', 'tiny', '--steps', '2', '--batch-size', '4',
                 '--val-every', '2', '--data', str(tmp_path / 'clips'), '--out', str(out)]) == 0
    assert 'clips' in load_checkpoint(out.with_suffix('.json')).source
    with pytest.raises(ValueError, match='no clips found'):
        main(['train', '--steps', '1', '--data', str(tmp_path / 'empty'), '--out',
              str(tmp_path / 'x')])
