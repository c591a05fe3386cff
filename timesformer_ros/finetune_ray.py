"""Training from recordings on Ray Train: `timesformer_train train --bags ... --workers N`.

Data-parallel (`ray.train.torch.TorchTrainer`: gloo on CPUs, NCCL on GPUs; the process group
joined through a file beside OUT, see `_process_group`): each worker cuts the
windows of its share of the bags where it is scheduled (`bags.dataset.cut_windows`, into the
cache beside OUT on its node), draws its share of each step's batch from them, and the gradients
are averaged over the workers; with fewer bags than workers each worker reads every bag and takes
every N-th window. The result is the same kind of checkpoint as a run in one process: rank 0
reports the weights, and the driver validates and writes them (`finetune.finish`).

The runtime is `cluster.connect`'s (the fleet's): the cluster at `--address`, else a local one
bound to 127.0.0.1 (never another interface). Workers run in a directory of Ray's, so every
path they get is absolute. Ray Train needs its `train` extra (requirements/fleet.txt).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .bags.dataset import say


def _process_group(config: dict, rank: int, world: int):
    """Join the workers' process group through a file beside OUT, not a TCP store.

    Ray Train's own set-up (`TorchConfig`) rendezvous through torch's TCPStore, which listens on
    every interface; a FileStore listens on none. On the local runtime gloo's connections are
    bound to loopback too (GLOO_SOCKET_IFNAME=lo), so nothing listens beyond 127.0.0.1.
    """
    import torch.distributed as dist
    if config['loopback']:
        os.environ['GLOO_SOCKET_IFNAME'] = 'lo'
    dist.init_process_group('nccl' if config['gpus'] else 'gloo',
                            init_method=f'file://{config["rendezvous"]}', rank=rank,
                            world_size=world)


def _worker_loop(config: dict):
    """One Ray Train worker: cut its bags' windows, train its share of each batch."""
    import ray.train
    import torch
    import torch.distributed as dist

    from . import finetune as ft
    from .bags.dataset import cut_windows
    from .digests import digest
    torch.set_num_threads(1)
    run = ft.BagTraining(**config['run'])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    bags = config['bags']              # (bag, its truth)
    mine = bags[rank::world] if len(bags) >= world else bags
    torch.manual_seed(run.seed)
    start = ft.starting_point(run, config['classes'])
    cut = []
    for bag, truth in mine:
        cut.append(cut_windows(Path(bag), run.topic, start.cutting, Path(config['cache']),
                               digest(bag), progress=False))
        cut[-1].truth = truth
    counts = {}
    train_set, _ = ft.labelled(cut, start.classes, config['parts'], counts)
    if len(bags) < world:          # every worker read every bag: take every world-th window
        keep = np.arange(len(train_set.classes)) % world == rank
        train_set = ft.LabelledSet(train_set.bags, train_set.items[keep],
                                   train_set.classes[keep])
    if not len(train_set.classes):
        raise ValueError(f'Ray Train worker {rank} has no training windows in {mine}')
    _process_group(config, rank, world)
    device = torch.device('cuda' if config['gpus'] else 'cpu')
    model = start.model.to(device)
    model = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[0] if config['gpus'] else None)
    normaliser = ft.Normaliser(start.mean, start.std, device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=run.lr, weight_decay=run.weight_decay)
    rng = np.random.default_rng(run.seed + 1000 * rank)
    share = max(1, -(-run.batch_size // world))
    started, history, loss = time.monotonic(), [], float('nan')
    for step in range(run.steps):
        for group in optimiser.param_groups:
            group['lr'] = ft.lr_at(step, run.steps, run.lr)
        picks = train_set.draw(rng, share)
        clips = train_set.clips(picks)
        if run.augment:
            clips = ft.augment(rng, clips)
        loss = ft.train_step(model, optimiser, normaliser, clips, train_set.classes[picks])
        if (step + 1) % run.val_every == 0 or step + 1 == run.steps:
            history.append({'step': step + 1, 'loss': round(loss, 4)})
    metrics = {'steps': run.steps, 'seconds': round(time.monotonic() - started, 1),
               'history': history, 'windows': len(train_set.classes)}
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = None
        if rank == 0:
            inner = model.module if hasattr(model, 'module') else model
            torch.save(inner.state_dict(), Path(directory) / 'model.pt')
            checkpoint = ray.train.Checkpoint.from_directory(directory)
        ray.train.report(metrics, checkpoint=checkpoint)
    dist.destroy_process_group()


def fit_on_ray(run, data: dict) -> tuple:
    """Train `run` on Ray Train workers; return (the trained model, the training figures)."""
    import torch

    from .cluster import connect
    workers = run.workers or None
    ray, started_here = connect(run.address, workers)
    try:
        from ray.train import RunConfig, ScalingConfig
        from ray.train.backend import Backend
        from ray.train.torch import TorchConfig, TorchTrainer

        class OwnProcessGroup(TorchConfig):
            """The workers join their process group themselves (`_process_group`)."""

            @property
            def backend_cls(self):
                return Backend
        gpus = int(ray.available_resources().get('GPU', 0))
        count = run.workers or max(1, int(ray.available_resources().get('CPU', 1)))
        fields = {f.name: getattr(run, f.name) for f in dataclasses.fields(run)}
        fields.update(bags=[str(b) for b in fields['bags']],
                      val_bags=[str(b) for b in fields['val_bags']],
                      out=str(Path(run.out).resolve()),
                      init=str(Path(run.init).resolve()) if run.init else None,
                      params_file=str(Path(run.params_file).resolve()) if run.params_file
                      else None,
                      progress=False, workers=0, address=None, resume=False)
        storage = Path(str(run.out) + '.ray').resolve()
        storage.mkdir(parents=True, exist_ok=True)
        host = (run.address or '127.0.0.1').split('://')[-1].rsplit(':', 1)[0]
        config = {'run': fields, 'gpus': gpus > 0,
                  'loopback': host in ('127.0.0.1', 'localhost', '[::1]'),
                  'rendezvous': str(storage / f'rendezvous-{os.getpid()}-{time.time_ns()}'),
                  'bags': [(str(w.bag), w.truth) for w in data['bags']],
                  'classes': data['start'].classes,
                  'cache': str(Path(str(run.out) + '.windows').resolve()),
                  'parts': (0,) if data['val_bags'] else None}
        backend = 'NCCL on GPUs' if gpus else 'gloo on CPUs'
        say(f'training on {count} Ray Train worker(s) ({backend})')
        began = time.monotonic()
        trainer = TorchTrainer(
            _worker_loop, train_loop_config=config, torch_config=OwnProcessGroup(),
            scaling_config=ScalingConfig(num_workers=count, use_gpu=gpus > 0,
                                         resources_per_worker={'CPU': 1}),
            run_config=RunConfig(name='timesformer_train', storage_path=str(storage)))
        result = trainer.fit()
        with result.checkpoint.as_directory() as directory:
            state = torch.load(Path(directory) / 'model.pt', weights_only=True)
        shutil.rmtree(storage, ignore_errors=True)     # the weights are in the checkpoint
    finally:
        if started_here:
            ray.shutdown()
    model = data['start'].model
    model.load_state_dict(state)
    figures = dict(result.metrics)
    figures = {'steps': figures.get('steps'), 'history': figures.get('history', []),
               'seconds': round(time.monotonic() - began, 1), 'ray_workers': count}
    return model, figures
