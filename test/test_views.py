"""Test-time views: the window's mirrored and time-reversed copies scored with it (`views`)."""

import json

import pytest
import torch

from conftest import randomise_
from timesformer_ros.checkpoints import (
    CheckpointError, embedded_checkpoint, load_checkpoint, save_checkpoint)
from timesformer_ros.engine import Engine, engine_from_values
from timesformer_ros.interface import PARAMETERS, defaults
from timesformer_ros.model import TimeSformer, preset
from timesformer_ros.train import MOTION_SYMMETRIES, main as train_main
from timesformer_ros.frames import Normaliser
from timesformer_ros.export import main as export_main
from timesformer_ros.finetune import BagTraining, starting_point
from timesformer_ros.quality import predict, reversal_rate
from timesformer_ros.views import carried, checkpoint_views, select

# The motion classes' swaps by name, written apart from train.py's index tables.
SWAPS = {'hflip': {'moving_left': 'moving_right'}, 'vflip': {'moving_up': 'moving_down'},
         'reverse': {'moving_left': 'moving_right', 'moving_up': 'moving_down',
                     'approaching': 'receding'}}
TOL = 1e-5


def swapped(label: str, names) -> str:
    """Return the class a clip of `label` shows after the transformations `names`."""
    for name in names:
        pairs = {**SWAPS[name], **{b: a for a, b in SWAPS[name].items()}}
        label = pairs.get(label, label)
    return label


def flipped(video: torch.Tensor, names) -> torch.Tensor:
    axes = {'hflip': 4, 'vflip': 3, 'reverse': 1}
    for name in names:
        video = torch.flip(video, [axes[name]])
    return video


@pytest.fixture(scope='module')
def embedded():
    return load_checkpoint(embedded_checkpoint())


@pytest.fixture(scope='module')
def clips(embedded):
    cfg = embedded.config
    return torch.randn(3, cfg.num_frames, 3, cfg.img_size, cfg.img_size,
                       generator=torch.Generator().manual_seed(5))


def scores(engine: Engine, video: torch.Tensor) -> torch.Tensor:
    """(B, classes) probabilities in the checkpoint's class order."""
    return torch.stack([torch.from_numpy(p.probabilities)
                        for p in engine.infer_tensor(video, with_attention=False)])


def test_the_embedded_model_declares_the_motion_symmetries(embedded):
    assert embedded.extra['symmetries'] == MOTION_SYMMETRIES
    for name, perm in MOTION_SYMMETRIES.items():
        assert [embedded.labels[i] for i in perm] == \
            [swapped(label, [name]) for label in embedded.labels], name


def test_the_views_are_every_combination_with_its_class_map(embedded):
    views = select('all', MOTION_SYMMETRIES, 'the embedded model')
    assert len(views) == 7 and len({names for names, _ in views}) == 7
    for names, perm in views:
        assert [embedded.labels[i] for i in perm] == \
            [swapped(label, names) for label in embedded.labels], names
    assert select('none', MOTION_SYMMETRIES, 'x') == []
    assert [names for names, _ in select('mirrors', MOTION_SYMMETRIES, 'x')] == \
        [('hflip',), ('vflip',), ('hflip', 'vflip')]
    assert select('mirrors', {'reverse': MOTION_SYMMETRIES['reverse']}, 'x') == []
    assert [names for names, _ in select('reverse, hflip', MOTION_SYMMETRIES, 'x')] == \
        [('hflip',), ('reverse',), ('hflip', 'reverse')]


def test_a_new_head_keeps_the_symmetries_that_map_its_classes_onto_themselves(embedded):
    labels = embedded.labels
    assert carried(MOTION_SYMMETRIES, labels, labels) == MOTION_SYMMETRIES
    assert carried(MOTION_SYMMETRIES, labels, ['approaching', 'static', 'receding']) == {
        'hflip': [0, 1, 2], 'vflip': [0, 1, 2], 'reverse': [2, 1, 0]}
    # moving_up without moving_down: no top-bottom mirror and no reversal; a new class: none.
    assert carried(MOTION_SYMMETRIES, labels, ['moving_up', 'static']) == {'hflip': [0, 1]}
    assert carried(MOTION_SYMMETRIES, labels, ['static', 'waving']) == {}
    assert carried(None, labels, labels) == {}


def test_scores_are_the_mean_log_probabilities_of_the_copies(embedded, clips):
    """Against a plain reading: the model run on each copy, classes put back by name."""
    engine = Engine(embedded, device='cpu', dtype='float32', warmup=False, views='all')
    assert 'float32, 8 test-time views' in engine.describe()
    labels = engine.labels
    with torch.inference_mode():
        total = torch.log_softmax(engine.model(clips), -1)
        for names, _ in engine.views:
            copy = torch.log_softmax(engine.model(flipped(clips, names)), -1)
            total += copy[:, [labels.index(swapped(label, names)) for label in labels]]
    want = torch.softmax(total / 8, -1)
    assert torch.allclose(scores(engine, clips), want, atol=TOL)
    alone = Engine(embedded, device='cpu', dtype='float32', warmup=False, views='none')
    with torch.inference_mode():
        plain = torch.softmax(alone.model(clips), -1)
    assert torch.allclose(scores(alone, clips), plain, atol=TOL)
    assert not torch.allclose(plain, want, atol=1e-3)     # the copies changed the scores


@pytest.mark.parametrize('views, follows', [
    ('all', (['hflip'], ['vflip'], ['reverse'], ['hflip', 'reverse'])),
    ('mirrors', (['hflip'], ['vflip'], ['hflip', 'vflip'])),
])
def test_the_scores_follow_a_mirror_or_a_reversal_exactly(embedded, clips, views, follows):
    """Averaged over a whole group of copies, a mirrored clip gets the mirrored scores."""
    engine = Engine(embedded, device='cpu', dtype='float32', warmup=False, views=views)
    base = scores(engine, clips)
    labels = engine.labels
    for names in follows:
        moved = scores(engine, flipped(clips, names))
        mapped = base[:, [labels.index(swapped(label, names)) for label in labels]]
        assert torch.allclose(moved, mapped, atol=TOL), names
    if views == 'mirrors':      # the mirrors alone do not make the scores follow a reversal
        moved = scores(engine, flipped(clips, ['reverse']))
        mapped = base[:, [labels.index(swapped(label, ['reverse'])) for label in labels]]
        assert not torch.allclose(moved, mapped, atol=1e-3)


def test_the_parameter_is_checked_and_reaches_the_engine(embedded):
    param = next(p for p in PARAMETERS if p.name == 'test_time_views')
    assert param.default == 'mirrors' and defaults()['test_time_views'] == 'mirrors'
    assert param.check('hflip,reverse') is None and param.check('none') is None
    assert param.check('all') is None
    assert 'must be mirrors, all, none or a comma list' in param.check('spin')
    assert 'each once' in param.check('hflip,hflip')
    values = {**defaults(), 'device': 'cpu', 'test_time_views': 'hflip'}
    assert len(engine_from_values(values).views) == 1
    assert engine_from_values({**values, 'test_time_views': 'none'}).views == []
    assert len(engine_from_values({**values, 'test_time_views': 'mirrors'}).views) == 3
    assert len(Engine(embedded, device='cpu', warmup=False).views) == 3     # the default


def test_a_checkpoint_without_symmetries_runs_the_window_alone(tmp_path):
    torch.manual_seed(0)
    model = randomise_(TimeSformer(preset('tiny', num_frames=4, num_classes=3))).eval()
    path = save_checkpoint(tmp_path / 'plain', model, ['a', 'b', 'c'])
    assert Engine(str(path), device='cpu', warmup=False).views == []
    with pytest.raises(ValueError, match=r'test_time_views names hflip, which .*plain.json does '
                                         r'not declare label-safe \(it declares: none\)'):
        Engine(str(path), device='cpu', warmup=False, views='hflip')


@pytest.mark.parametrize('symmetries, message', [
    ([0, 1, 2], 'symmetries must be an object'),
    ({'spin': [0, 1, 2]}, "symmetries names 'spin'; known: hflip, vflip, reverse"),
    ({'hflip': [0, 0, 2]}, 'symmetries hflip must list each of the 3 class indices once'),
    ({'hflip': [0, 1]}, 'symmetries hflip must list each of the 3 class indices once'),
    ({'hflip': [0, 1, 2.0]}, 'symmetries hflip must list each of the 3 class indices once'),
    ({'hflip': [1, 2, 0]}, 'symmetries hflip must undo itself'),
    ({'hflip': [1, 0, 2], 'vflip': [0, 2, 1]}, 'symmetries vflip and hflip must commute'),
    ({'x' * 5000: [0, 1, 2]}, "symmetries names 'x{40}'; known"),
])
def test_malformed_symmetries_are_refused_naming_the_file(tmp_path, symmetries, message):
    torch.manual_seed(0)
    model = randomise_(TimeSformer(preset('tiny', num_frames=4, num_classes=3))).eval()
    path = save_checkpoint(tmp_path / 'bad', model, ['a', 'b', 'c'])
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, 'symmetries': symmetries}))
    with pytest.raises(CheckpointError, match=f'bad.json: {message}'):
        Engine(str(path), device='cpu', warmup=False)
    # Every tool that reads or passes them on refuses them the same way: a fine-tune's start,
    # an average, an export (one line, exit 2).
    with pytest.raises(CheckpointError, match=f'bad.json: {message}'):
        starting_point(BagTraining(bags=[], topic='/image', truth='t', out=tmp_path / 'o',
                                   init=path))
    assert train_main(['average', str(tmp_path / 'soup'), str(path), str(path)]) == 2
    assert export_main([str(path), '--out', str(tmp_path / 'bad.onnx'), '--no-verify']) == 2


def test_the_views_value_may_carry_spaces(embedded):
    param = next(p for p in PARAMETERS if p.name == 'test_time_views')
    assert param.check(' none') is None and param.check('mirrors ') is None
    assert len(select(' mirrors ', MOTION_SYMMETRIES, 'x')) == 3
    assert select(' none', MOTION_SYMMETRIES, 'x') == []


def test_figures_that_play_clips_backwards_leave_the_reversed_copies_out(embedded, clips):
    """With them the reversal figure would hold by construction; `all` scores it as `mirrors`."""
    cfg = embedded.config
    rng = torch.Generator().manual_seed(8)
    data = torch.randint(0, 256, (14, cfg.num_frames, cfg.img_size, cfg.img_size, 3),
                         generator=rng, dtype=torch.uint8).numpy()
    labels = torch.arange(14).remainder(7).numpy()
    normaliser = Normaliser(embedded.mean, embedded.std)
    every = reversal_rate(embedded.model, data, labels, normaliser, views=checkpoint_views(
        embedded, 'all'))
    assert every == reversal_rate(embedded.model, data, labels, normaliser,
                                  views=checkpoint_views(embedded, 'mirrors'))


def test_the_quality_figures_score_the_views_as_the_engine_does(embedded):
    """`quality.predict` (the report, real footage, camera world) and the engine agree."""
    cfg = embedded.config
    generator = torch.Generator().manual_seed(6)
    clips = torch.randint(0, 256, (5, cfg.num_frames, cfg.img_size, cfg.img_size, 3),
                          generator=generator, dtype=torch.uint8).numpy()
    normaliser = Normaliser(embedded.mean, embedded.std)
    engine = Engine(embedded, device='cpu', dtype='float32', warmup=False)
    want = scores(engine, normaliser(torch.from_numpy(clips))).argmax(-1).numpy()
    views = checkpoint_views(embedded)
    assert len(views) == 3 and list(predict(embedded.model, clips, normaliser, views=views)) == \
        list(want)
