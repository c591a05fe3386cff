"""Training: label-consistent augmentation, the curriculum, and short real runs."""

import logging

import numpy as np
import pytest
import torch

from timesformer_ros import synthetic
from timesformer_ros.checkpoints import load_checkpoint, save_checkpoint
from timesformer_ros.model import TimeSformer, preset
from timesformer_ros.train import (DIRECTIONS, MOTION_SYMMETRIES, TrainConfig, augment,
                                   curriculum_phase, main, synthetic_batch)


class Records(logging.Handler):
    """Keep every record handled, in a list."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def train_log():
    """Collect the records `timesformer_ros.train` logs in the test, whatever the runner's set-up.

    A handler on the module's own logger, not caplog's on the root: importing `launch` (present
    under colcon) makes every logger created after it stop propagating to the root.
    """
    logger = logging.getLogger('timesformer_ros.train')
    handler = Records()
    level, disabled = logger.level, logger.disabled
    logger.setLevel(logging.INFO)
    logger.disabled = False
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)
    logger.disabled = disabled


def motion(clip: np.ndarray) -> np.ndarray:
    """Return the displacement (x, y) in pixels, first to last frame, of the moving object."""
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
        clips, labels = augment(rng, *synthetic_batch(rng, 8, 48, 6, synthetic.EASY_STYLE,
                                                      clip_fps=16.0))
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


def test_curriculum_zero_means_no_curriculum_at_all():
    """Issue 18: `--curriculum 0` still showed directions on easy scenes for 20% of the steps."""
    phases = [curriculum_phase(step, 100, curriculum=0.0, directions_first=0.2)
              for step in range(100)]
    assert {name for _, _, name in phases} == {'all classes'}
    assert all(style is synthetic.TRAIN_STYLE for _, style, _ in phases)
    # The directions phase is part of the curriculum: never longer than it.
    phases = [curriculum_phase(step, 100, curriculum=0.1, directions_first=0.2)
              for step in range(100)]
    names = [name for _, _, name in phases]
    assert names.count('directions, easy scenes') == 10 and names[10:] == ['all classes'] * 90


def test_curriculum_zero_trains_on_the_training_style_from_the_first_step(tmp_path, train_log):
    assert main(['train', '--preset', 'tiny', '--steps', '2', '--batch-size', '2',
                 '--val-every', '2', '--threads', '1', '--curriculum', '0', '--out',
                 str(tmp_path / 'model.v2')]) == 0
    phases = [r.getMessage() for r in train_log if r.getMessage().startswith('step 1:')]
    assert phases == ['step 1: all classes']
    # A dotted name keeps its dot: the log names the file written, model.v2.json.
    assert f'wrote {tmp_path / "model.v2.json"}' in [r.getMessage() for r in train_log]
    training = load_checkpoint(tmp_path / 'model.v2.json').extra['training']
    assert training['curriculum'] == 0.0 and training['directions_first'] == 0.12


@pytest.mark.parametrize('changes, message', [
    (dict(curriculum=1.5), 'curriculum must be a share in \\[0, 1\\], got 1.5'),
    (dict(wide=2.0), 'wide must be a share'),
    (dict(clip_fps=None), 'clip_fps is needed for synthetic motion'),
    (dict(clip_fps=0.0), 'clip_fps must be a rate'),
    (dict(directions_first=-0.1), 'directions_first must be'),
    (dict(steps=0), 'steps must be a positive integer, got 0'),
    (dict(batch_size=1), 'batch_size must be at least 2 on synthetic motion'),
])
def test_invalid_training_configs_raise_value_error_with_the_value(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


def test_a_short_training_run_writes_a_loadable_checkpoint(tmp_path):
    out = tmp_path / 'model'
    assert main(['train', '--preset', 'tiny', '--steps', '3', '--batch-size', '4',
                 '--val-every', '3', '--threads', '1', '--out', str(out)]) == 0
    ckpt = load_checkpoint(out.with_suffix('.json'))
    assert ckpt.labels == list(synthetic.CLASSES)
    assert ckpt.clip_fps == 10.0        # the default rate, which the node will sample at
    training = ckpt.extra['training']
    assert training['steps'] == 3 and training['history'][-1]['step'] == 3
    assert training['command'].startswith('timesformer_train train --preset tiny')
    assert ckpt.extra['symmetries'] == MOTION_SYMMETRIES    # what augment flips and reverses
    # Fine-tuning continues from a checkpoint.
    again = tmp_path / 'again'
    assert main(['train', '--init', str(out.with_suffix('.json')), '--steps', '2',
                 '--batch-size', '4', '--val-every', '2', '--out', str(again)]) == 0
    again = load_checkpoint(again.with_suffix('.json'))
    assert again.extra['training']['init'] and again.clip_fps == 10.0   # kept from --init


def test_fine_tuning_at_a_higher_resolution_resizes_the_starting_model(tmp_path, train_log):
    init = tiny_checkpoint(tmp_path / 'small', list(synthetic.CLASSES))
    out = tmp_path / 'bigger'
    assert main(['train', '--init', str(init), '--img-size', '40', '--patch-size', '10',
                 '--steps', '1', '--batch-size', '2', '--val-every', '1', '--threads', '1',
                 '--curriculum', '0', '--out', str(out)]) == 0
    ckpt = load_checkpoint(out.with_suffix('.json'))
    assert (ckpt.config.img_size, ckpt.config.patch_size) == (40, 10)
    assert ckpt.model.patch_embed.proj.weight.shape[-2:] == (10, 10)
    assert ckpt.model(torch.zeros(1, 8, 3, 40, 40)).shape == (1, len(synthetic.CLASSES))
    assert any('resized to 40 px in patches of 10' in r.getMessage() for r in train_log)


def test_fine_tuning_refuses_to_change_what_cannot_be_carried_over(tmp_path, capsys):
    init = tiny_checkpoint(tmp_path / 'small', list(synthetic.CLASSES))
    assert main(['train', '--init', str(init), '--attention-type', 'space_only', '--steps',
                 '1', '--out', str(tmp_path / 'x')]) == 2
    assert 'attention_type cannot change when starting from' in capsys.readouterr().err
    assert main(['train', '--init', str(init), '--img-size', '36', '--steps', '1',
                 '--out', str(tmp_path / 'x')]) == 2
    assert 'img_size 36 is not a multiple of patch_size 8' in capsys.readouterr().err
    assert not (tmp_path / 'x.json').exists()


def test_training_on_a_folder_of_labelled_clips(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for name in synthetic.CLASSES:
        folder = tmp_path / 'clips' / name
        folder.mkdir(parents=True)
        for i in range(2):
            np.save(folder / f'{i}.npy', synthetic.make_clip(rng, name, 80, 10))
    out = tmp_path / 'folder_model'
    assert main(['train', '--preset', 'tiny', '--steps', '2', '--batch-size', '4',
                 '--val-every', '2', '--data', str(tmp_path / 'clips'), '--out', str(out)]) == 0
    ckpt = load_checkpoint(out.with_suffix('.json'))
    assert 'clips' in ckpt.source
    # The synthetic class names keep the synthetic order, as before folders named classes.
    assert ckpt.labels == list(synthetic.CLASSES)
    assert set(ckpt.extra['training']['history'][-1]) == {'step', 'loss', 'train_accuracy'}
    assert ckpt.clip_fps is None        # a folder's rate is the user's to state
    assert 'symmetries' not in ckpt.extra     # a folder's flips are not known to keep labels
    rated = tmp_path / 'rated_model'
    assert main(['train', '--preset', 'tiny', '--steps', '1', '--batch-size', '4',
                 '--val-every', '1', '--data', str(tmp_path / 'clips'), '--clip-fps', '6',
                 '--out', str(rated)]) == 0
    assert load_checkpoint(rated.with_suffix('.json')).clip_fps == 6.0
    capsys.readouterr()
    assert main(['train', '--steps', '1', '--data', str(tmp_path / 'empty'), '--out',
                 str(tmp_path / 'x')]) == 2         # one line, no traceback
    assert 'timesformer_train: error: no clips found' in capsys.readouterr().err


def write_clips(root, classes, per_class=2):
    """Write `per_class` synthetic clips (10 frames of 40 px) under root/<name>/.

    `classes` maps a folder name to the synthetic motion its clips show.
    """
    rng = np.random.default_rng(1)
    for name, motion_class in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            np.save(root / name / f'{i}.npy', synthetic.make_clip(rng, motion_class, 40, 10))
    return root


def tiny_checkpoint(path, labels, mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225)):
    model = TimeSformer(preset('tiny', num_classes=len(labels)))
    return save_checkpoint(path, model, labels, mean, std, source='unit test')


def test_fine_tuning_on_a_folder_of_other_classes_gets_a_head_for_them(tmp_path, train_log):
    """Issue 18: --data with --init of another class count failed at the first save."""
    data = write_clips(tmp_path / 'clips', {'still': 'static', 'leftward': 'moving_left',
                                            'rightward': 'moving_right'})
    init = tiny_checkpoint(tmp_path / 'seven', list(synthetic.CLASSES), mean=(0.5, 0.4, 0.3),
                           std=(0.2, 0.25, 0.3))
    out = tmp_path / 'three'
    assert main(['train', '--init', str(init), '--data', str(data), '--steps', '2',
                 '--batch-size', '3', '--val-every', '2', '--threads', '1', '--out',
                 str(out)]) == 0
    ckpt = load_checkpoint(out.with_suffix('.json'))
    assert ckpt.labels == ['leftward', 'rightward', 'still']
    assert ckpt.config.num_classes == 3 and ckpt.model.head.weight.shape == (3, 64)
    # Fine-tuning keeps the normalisation the initial weights were trained with.
    assert ckpt.mean == (0.5, 0.4, 0.3) and ckpt.std == (0.2, 0.25, 0.3)
    assert any('its head is replaced by a new one for 3 classes' in r.getMessage()
               for r in train_log)
    initial = load_checkpoint(init).model.state_dict()
    assert not torch.equal(initial['blocks.0.attn.qkv.weight'],
                           ckpt.model.state_dict()['blocks.0.attn.qkv.weight'])


def test_fine_tuning_on_the_same_classes_keeps_the_head_and_its_order(tmp_path, train_log):
    data = write_clips(tmp_path / 'clips', {'b': 'moving_up', 'a': 'static', 'c': 'receding'})
    init = tiny_checkpoint(tmp_path / 'cab', ['c', 'a', 'b'])
    out = tmp_path / 'tuned'
    assert main(['train', '--init', str(init), '--data', str(data), '--steps', '1',
                 '--batch-size', '2', '--val-every', '1', '--lr', '1e-9', '--out',
                 str(out)]) == 0
    ckpt = load_checkpoint(out.with_suffix('.json'))
    assert ckpt.labels == ['c', 'a', 'b']
    head = load_checkpoint(init).model.head.weight
    torch.testing.assert_close(ckpt.model.head.weight, head, atol=1e-6, rtol=0)
    assert train_log            # the log was captured: the absence below means something
    assert not any('head is replaced' in r.getMessage() for r in train_log)


def test_training_from_scratch_on_a_folder_of_three_classes(tmp_path):
    data = write_clips(tmp_path / 'clips', {'wave': 'moving_left', 'nod': 'moving_up',
                                            'idle': 'static'})
    out = tmp_path / 'model'
    assert main(['train', '--preset', 'tiny', '--data', str(data), '--steps', '2',
                 '--batch-size', '3', '--val-every', '2', '--threads', '1', '--out',
                 str(out)]) == 0
    ckpt = load_checkpoint(out.with_suffix('.json'))
    assert ckpt.labels == ['idle', 'nod', 'wave'] and ckpt.config.num_classes == 3
