"""Many recordings: `timesformer_bag evaluate` over many bags on Ray, one machine by default.

    timesformer_bag evaluate BAG|DIR|GLOB ... --topic /camera/image_raw --out-dir DIR
        [--truth /motion] [--params-file config/timesformer.yaml] [--checkpoint C]
        [--address HOST:PORT] [--workers N] [--model-actors N] [--device auto]

One unit of work is one (bag, camera topic). Each unit is a Ray task that runs `bags.evaluate`,
the single-bag evaluation itself (the same parameters file, ClipBuffer, Reporter, scoring and
JSON schema), so both paths are one piece of code and give the same numbers. What differs is
only where `evaluate`'s engine runs:

- `--model-actors 0` (the default without a GPU): the engine is built once in each worker
  process and a bag's windows are inferred where they were decoded. On the CPU, decoding and
  inference share the same cores, so a separate model actor would only add a copy of every
  window through the object store (T x 3 x S x S float32: 4.8 MB for 8 frames at 224) and take
  a core away from decoding; batching across bags buys nothing there, as a bag already fills
  the batch (`--batch-size`) on its own. Throughput scales with workers (BENCHMARKS.md).
- `--model-actors N` (the default with GPUs: one per GPU): N `ModelServer` actors hold the
  engine; the bag tasks, on CPU workers, decode and window the frames and send each batch of
  windows to an actor, which runs every request that arrived while the previous batch ran as
  one batch: windows of many bags share a GPU forward pass, with no timer.

Why Ray tasks and actors rather than Ray Data `map_batches`: a bag's windows must go through
its own stateful `Reporter` and action decoder in order, and a corrupt bag must end as one
named failure in the summary, not as a failed block of a dataset; a task per unit keeps both as
they are in `evaluate`, and Ray retries it (`max_retries`) when its worker dies. Model actors
are restarted by Ray (`max_restarts`, `max_task_retries`) when they die.

Results go to `--out-dir`: `bags/KEY.jsonl` (the unit's windows in the `~/window` schema, each
with `bag` and `topic` added) and `bags/KEY.json` (the unit's single-bag summary), where KEY is
the SHA-256 of the bag's bytes and of the run (checkpoint bytes, parameters, topic, truth,
device). A unit whose KEY is there already is not evaluated again, so an interrupted run started
again with the same checkpoint and parameters resumes. `summary.json` aggregates every unit
(`aggregate`) and names the failed ones; progress for the whole run goes to stderr.

Without `--address` a local Ray runtime is started with this machine's cores (and GPUs),
bound to 127.0.0.1 only, with usage statistics and the dashboard off (`start_local`).
Ray is imported lazily, here and in `cluster` (the runtime and the signals): the single-bag
path never imports it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from .bags import (
    BagError, Evaluation, EvaluationOutputs, OutputError, accuracy, engine_values, evaluate,
    write_whole)
from .bags.discover import find_bags, is_bag
from .bags.truth import is_segments_file, is_truth_file, read_segments, read_truth_csv
from .cluster import (  # noqa: F401 - start_local: fleet's API, as before
    Stopped, StopRequest, check_stop, connect, one_line, start_local)
from .digests import checkpoint_files, digest
from .errors import brief, first_line
from .interface import read_params_file
from .progress import Progress

RETRIES = 3         # Ray retries a unit whose worker died, restarts a model actor that died
_ENGINES = {}       # engines built in this worker process, by their values


# -- keys: what a result was computed from --------------------------------------------------------

def run_digest(config: 'FleetConfig', topic: str) -> str:
    """SHA-256 of everything besides the bag that a unit's results depend on.

    The checkpoint's bytes (not its path), the parameters the file gives, the topic, the truth
    (a CSV's bytes) and the device. The batch size is left out: it changes no result.
    """
    from .checkpoints import embedded_checkpoint
    values = engine_values(config.evaluation(None, topic), read_params_file(config.params_file))
    checkpoint = Path(values['checkpoint'] or str(embedded_checkpoint()))
    if checkpoint.suffix in ('.json', '.safetensors'):     # the own format: both files
        values['checkpoint'] = [digest(f) for f in checkpoint_files(checkpoint)] or str(checkpoint)
    elif checkpoint.exists():
        values['checkpoint'] = digest(checkpoint)
    truth = config.truth or ''
    if truth and Path(truth).is_file():
        truth = digest(Path(truth))
    text = json.dumps({'values': values, 'topic': topic, 'truth': truth}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# -- the unit of work, in a Ray worker ------------------------------------------------------------

@dataclass
class FleetConfig:
    """What every unit shares: `bags.Evaluation` without the bag and topic."""

    checkpoint: Optional[str] = None
    params_file: Optional[Path] = None
    truth: Optional[str] = None
    device: str = 'auto'
    batch_size: int = 8

    def evaluation(self, bag: Optional[Path], topic: str, truth=None) -> Evaluation:
        """Return the single-bag evaluation of a unit; `truth`: the CSV read once per run."""
        return Evaluation(bag, topic, self.checkpoint, self.params_file, self.truth,
                          self.device, self.batch_size, progress=False, parsed_truth=truth)


def local_engine(config: FleetConfig):
    """Return the engine of `config`, built once per worker process (`engine_from_values`)."""
    from .engine import engine_from_values
    values = engine_values(config.evaluation(None, ''), read_params_file(config.params_file))
    key = json.dumps(values, sort_keys=True, default=str), config.batch_size
    if key not in _ENGINES:
        _ENGINES[key] = engine_from_values(values, max_batch=config.batch_size)
    return _ENGINES[key]


class RemoteEngine:
    """What `evaluate` uses of an engine, with `infer` run by a `ModelServer` actor.

    Frames are preprocessed here, on the worker's CPU, in float32 (the server casts them to its
    dtype on its device), and a batch goes to the server as one array.
    """

    def __init__(self, server, spec: dict):
        from .frames import Preprocessor
        self.server = server
        self.labels = spec['labels']
        self.num_frames = spec['num_frames']
        self.clip_fps = spec['clip_fps']
        self.model = spec['describe']
        self.preprocessor = Preprocessor(spec['img_size'], spec['mean'], spec['std'])

    def infer(self, clips) -> list:
        import ray

        from .predictions import clip_thumbs, stack_clips
        video = stack_clips(clips).float()
        return ray.get(self.server.infer.remote(video.numpy(), clip_thumbs(clips)))

    def describe(self) -> str:
        return self.model


class ModelServer:
    """A Ray actor holding the engine; it batches the windows of every bag that asks.

    Requests wait in a queue while a batch runs (in one inference thread, so the event loop keeps
    taking them); the next batch is everything that waited, up to `max_batch` windows.
    """

    def __init__(self, config: FleetConfig, max_batch: int):
        self.engine = local_engine(config)
        self.max_batch = max_batch
        self.queue = []
        self.busy = False
        self.thread = concurrent.futures.ThreadPoolExecutor(1)
        self.batches = Counter()       # batch size -> count

    def spec(self) -> dict:
        engine = self.engine
        return {'labels': engine.labels, 'num_frames': engine.num_frames,
                'clip_fps': engine.clip_fps,
                'img_size': engine.config.img_size, 'mean': list(engine.checkpoint.mean),
                'std': list(engine.checkpoint.std), 'describe': engine.describe()}

    def batch_sizes(self) -> dict:
        return dict(self.batches)

    async def infer(self, video, thumbs=None) -> list:
        """Predictions for windows (B, T, C, S, S), with their whole frames when given."""
        future = asyncio.get_running_loop().create_future()
        self.queue.append((video, thumbs, future))
        if not self.busy:
            self.busy = True
            asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self):
        import numpy as np
        import torch
        loop = asyncio.get_running_loop()
        try:
            while self.queue:
                taken, size = [], 0
                while self.queue and (not taken or size + len(self.queue[0][0]) <=
                                      self.max_batch):
                    taken.append(self.queue.pop(0))
                    size += len(taken[-1][0])
                video = torch.from_numpy(np.concatenate([v for v, _, _ in taken]))
                thumbs = None
                if all(t is not None for _, t, _ in taken):
                    thumbs = [clip for _, t, _ in taken for clip in t]
                self.batches[size] += 1
                try:
                    predictions = await loop.run_in_executor(
                        self.thread, self.engine.infer_tensor, video, True, thumbs)
                except Exception as exc:  # noqa: BLE001 - every waiting bag hears of it
                    for _, _, future in taken:
                        future.set_exception(exc)
                    continue
                start = 0
                for v, _, future in taken:
                    future.set_result(predictions[start:start + len(v)])
                    start += len(v)
        finally:
            self.busy = False


def evaluate_unit(bag: str, topic: str, run_key: str, config: FleetConfig, done,
                  server=None, spec: Optional[dict] = None, truth=None) -> dict:
    """Evaluate one (bag, topic) as `timesformer_bag evaluate` does; the Ray task of a unit.

    Returns {'key', 'status': 'reused' | 'done' | 'failed', ...}: for 'done' the single-bag
    summary and the window JSON lines, for 'failed' the one-line error. `done` holds the keys
    already in the output directory; `truth` is the run's truth CSV, read once by the driver
    (None: a truth topic, read from each bag).
    """
    started = time.monotonic()
    unit = {'bag': bag, 'topic': topic}
    try:
        key = f'{digest(Path(bag))[:20]}-{run_key[:20]}'
    except OSError as exc:
        return {**unit, 'key': None, 'status': 'failed',
                'error': f'{bag}: cannot read ({exc.strerror or brief(exc)})'}
    if key in done:
        return {**unit, 'key': key, 'status': 'reused'}
    engine = local_engine(config) if server is None else RemoteEngine(server, spec)
    with tempfile.TemporaryDirectory(prefix='timesformer_fleet_') as tmp:
        lines = Path(tmp) / 'windows.jsonl'
        try:
            summary = evaluate(config.evaluation(Path(bag), topic, truth),
                               EvaluationOutputs(jsonl=lines), engine=engine)
        except (BagError, OutputError, ValueError, OSError) as exc:
            windows = (getattr(exc, 'summary', None) or {}).get('windows', 0)
            return {**unit, 'key': key, 'status': 'failed',
                    'error': first_line(str(exc)), 'windows': windows}
        except Exception as exc:  # noqa: BLE001 - a fault fails this unit, with its cause
            return {**unit, 'key': key, 'status': 'failed', 'error': f'{bag}: {one_line(exc)}'}
        text = lines.read_text()
    return {**unit, 'key': key, 'status': 'done', 'summary': summary, 'lines': text,
            'seconds': time.monotonic() - started}


# -- the driver -----------------------------------------------------------------------------------

@dataclass
class Fleet:
    """A run over many bags: the units (bags x topics), where results go, how Ray runs it."""

    bags: list
    topics: list
    out_dir: Path
    config: FleetConfig = field(default_factory=FleetConfig)
    address: Optional[str] = None
    workers: Optional[int] = None       # concurrent units; default: the cluster's free CPUs
    model_actors: Optional[int] = None  # default: one per GPU of the cluster (0 without)
    progress: bool = True


class _Progress:
    """The whole run's progress on stderr: bags done, failed and reused, windows/s, ETA."""

    def __init__(self, total: int, enabled: bool):
        self.line = Progress(total, 'bags', enabled)
        self.counts = Counter()
        self.windows = 0

    def add(self, result: dict):
        self.counts[result['status']] += 1
        self.windows += result.get('summary', {}).get('windows', 0)
        done, elapsed = sum(self.counts.values()), self.line.elapsed()
        self.line.update(done, f' ({self.counts["failed"]} failed, {self.counts["reused"]} '
                               f'reused), {self.windows} windows, '
                               f'{self.windows / elapsed if elapsed else 0.0:.1f} windows/s')
        if done == self.line.total:
            self.line.close()


def evaluate_many(fleet: Fleet, stop: Optional['StopRequest'] = None) -> dict:
    """Evaluate every (bag, topic) of `fleet` on Ray; return (and write) the summary.

    See the module docstring for the layout of `out_dir` and how work is spread. `stop`: a
    signal noted there ends the run between Ray calls (Stopped), Ray shut down, the units
    finished kept, nothing partial left.
    """
    units = [(str(bag), topic) for bag in fleet.bags for topic in fleet.topics]
    results_dir = Path(fleet.out_dir) / 'bags'
    done = {p.stem for p in results_dir.glob('*.json') if p.with_suffix('.jsonl').is_file()}
    run_keys = {topic: run_digest(fleet.config, topic) for topic in fleet.topics}
    # A truth file is read once, here, every row checked before Ray starts; the units share it
    # through the object store.
    # (a segments file is checked here too, and each unit labels its own frames from it).
    if is_segments_file(fleet.config.truth):
        read_segments(fleet.config.truth)
    truth = read_truth_csv(fleet.config.truth) if is_truth_file(fleet.config.truth) and \
        not is_segments_file(fleet.config.truth) else None
    check_stop(stop)                # before a local runtime takes seconds to start
    created = [d for d in (results_dir, *results_dir.parents) if not d.exists()]
    started_here = False
    try:
        ray, started_here = connect(fleet.address, fleet.workers, stop)
        check_stop(stop)
        results_dir.mkdir(parents=True, exist_ok=True)
        resources = ray.available_resources()
        actors = fleet.model_actors if fleet.model_actors is not None \
            else int(resources.get('GPU', 0))
        servers, spec = _start_servers(ray, fleet.config, actors, int(resources.get('GPU', 0)))
        workers = fleet.workers or max(1, int(resources.get('CPU', 1)))
        task = ray.remote(num_cpus=1, max_retries=RETRIES)(evaluate_unit)
        done_ref = ray.put(done)
        truth_ref = ray.put(truth) if truth is not None else None
        progress = _Progress(len(units), fleet.progress)
        pending, results, queue = {}, [], list(enumerate(units))
        started = time.monotonic()
        while queue or pending:
            while queue and len(pending) < workers:
                index, (bag, topic) = queue.pop(0)
                server = servers[index % len(servers)] if servers else None
                ref = task.remote(bag, topic, run_keys[topic], fleet.config, done_ref, server,
                                  spec, truth_ref)
                pending[ref] = (bag, topic)
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.25)
            check_stop(stop)
            for ref in ready:
                bag, topic = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:     # the worker died RETRIES + 1 times
                    result = {'bag': bag, 'topic': topic, 'key': None, 'status': 'failed',
                              'error': f'{bag}: {one_line(exc)}'}
                if result['status'] == 'done':
                    _store(results_dir, result)
                results.append(result)
                progress.add(result)
        batches = ray.get([s.batch_sizes.remote() for s in servers])
    except BaseException:
        for directory in created:        # what this run made and left empty (a failed start)
            try:
                directory.rmdir()
            except OSError:
                break
        raise
    finally:
        if started_here:
            ray.shutdown()
    summary = _summary(fleet, results, results_dir, time.monotonic() - started)
    summary['model_actors'] = len(servers)
    summary['workers'] = workers
    summary['server_batches'] = [{str(k): v for k, v in sorted(b.items())} for b in batches]
    _write_json(Path(fleet.out_dir) / 'summary.json', summary)
    return summary


def _start_servers(ray, config: FleetConfig, count: int, gpus: int) -> tuple:
    if not count:
        return [], None
    # No CPU reserved: with a GPU the actor mostly waits on it; on CPUs it shares the cores with
    # the decoding workers (which is why the CPU default is no actor).
    server = ray.remote(num_cpus=0, num_gpus=gpus / count if gpus else 0,
                        max_restarts=RETRIES, max_task_retries=RETRIES)(ModelServer)
    servers = [server.remote(config, max(config.batch_size, 4 * config.batch_size))
               for _ in range(count)]
    specs = ray.get([s.spec.remote() for s in servers])
    return servers, specs[0]


def _write_json(path: Path, data, lines: Optional[str] = None):
    """Write JSON (or `lines` as they are) under a partial name, then rename it into place.

    A write that fails or is interrupted leaves no partial file (`write_whole`).
    """
    write_whole(path, lines if lines is not None else json.dumps(data, indent=1) + '\n')


def _store(results_dir: Path, result: dict):
    """Write a unit's window lines (with its bag and topic), then its summary: then it is done."""
    tagged = ''.join(json.dumps({**json.loads(line), 'bag': result['bag'],
                                 'topic': result['topic']}) + '\n'
                     for line in result['lines'].splitlines())
    _write_json(results_dir / f'{result["key"]}.jsonl', None, tagged)
    _write_json(results_dir / f'{result["key"]}.json',
                {'bag': result['bag'], 'topic': result['topic'], 'key': result['key'],
                 'summary': result['summary']})


def _summary(fleet: Fleet, results: list, results_dir: Path, seconds: float) -> dict:
    counts = Counter(r['status'] for r in results)
    finished = [r for r in results if r['status'] != 'failed']
    per_unit = []
    for result in finished:
        stored = json.loads((results_dir / f'{result["key"]}.json').read_text())
        per_unit.append({'bag': result['bag'], 'topic': result['topic'], 'key': result['key'],
                         'status': result['status'], 'summary': stored['summary']})
    evaluated = [r for r in results if r['status'] == 'done']
    windows = sum(r['summary']['windows'] for r in evaluated)
    summary = {'units': len(results), 'evaluated': counts['done'], 'reused': counts['reused'],
               'failed': [{'bag': r['bag'], 'topic': r['topic'], 'error': r['error']}
                          for r in results if r['status'] == 'failed'],
               'seconds': round(seconds, 3), 'windows_evaluated': windows,
               'windows_per_s': round(windows / seconds, 2) if seconds else 0.0}
    summary.update(aggregate([u['summary'] for u in per_unit]))
    summary['truth_warnings'] = [{'bag': u['bag'], 'topic': u['topic'],
                                  'warning': u['summary']['truth_warning']}
                                 for u in per_unit if 'truth_warning' in u['summary']]
    summary['per_bag'] = per_unit
    return summary


def aggregate(summaries: Sequence[dict]) -> dict:
    """Pool single-bag summaries: counts summed, one confusion matrix, pooled segment metrics.

    Accuracy is over every scored window of every bag (the summed confusion matrix's trace over
    its total). Segmental F1 at each IoU is pooled as 2 TP / (predicted + true) over all bags (a
    bag's TP is recovered exactly from its F1, 2 TP / (P + T)); the edit score is the mean over
    bags; onset delays stay per bag (a median does not pool).
    """
    import numpy as np
    total = {'bags': len(summaries),
             'frames': sum(s['frames'] for s in summaries),
             'windows': sum(s['windows'] for s in summaries),
             'refused': dict(sum((Counter(s['refused']) for s in summaries), Counter())),
             'skipped': sum(s['skipped'] for s in summaries),
             'segments': sum(s['segments'] for s in summaries),
             'label_changes': {k: sum(s['label_changes'][k] for s in summaries)
                               for k in ('raw', 'decoded')}}
    scored = [s for s in summaries if 'confusion' in s]
    if not scored:
        return total
    labels = scored[0]['confusion']['labels']
    matrix = sum(np.array(s['confusion']['matrix']) for s in scored)
    windows = int(matrix.sum())
    total.update({'scored_windows': windows,
                  'accuracy': accuracy(matrix),
                  'confusion': {'labels': labels, 'matrix': matrix.tolist()}})
    metrics = [s['segment_metrics'] for s in scored]
    pooled = {k: sum(m[k] for m in metrics) for k in (
        'true_segments', 'predicted_segments', 'false_segments', 'over_segmented',
        'under_segmented')}
    both = pooled['true_segments'] + pooled['predicted_segments']
    for iou in ('0.1', '0.25', '0.5'):
        hits = sum(round(m[f'f1@{iou}'] * (m['true_segments'] + m['predicted_segments']) / 2)
                   for m in metrics)
        pooled[f'f1@{iou}'] = 2 * hits / both if both else 0.0
    pooled['edit'] = float(np.mean([m['edit'] for m in metrics]))
    total['segment_metrics'] = pooled
    return total


# -- command line (`timesformer_bag evaluate` with several bags) -------------------------------

def add_arguments(parser):
    """Add the many-bag options to `timesformer_bag evaluate`."""
    group = parser.add_argument_group('many bags (on Ray; README, "Many recordings")')
    group.add_argument('--out-dir', type=Path, help='results of every bag, kept between runs: '
                                                    'a run started again skips finished bags')
    group.add_argument('--address', help='a running Ray cluster (default: a local runtime '
                                         'on 127.0.0.1 with this machine\'s cores and GPUs)')
    group.add_argument('--workers', type=int, help='bags evaluated at once (default: the '
                                                   'free CPUs)')
    group.add_argument('--model-actors', type=int, help='model actors that batch windows '
                                                        'across bags (default: one per GPU, '
                                                        'none on CPUs)')


def wants_fleet(args) -> bool:
    """Tell whether `evaluate` was given several bags, a directory of bags, or Ray options."""
    return (len(args.bag) > 1 or args.out_dir is not None or args.address is not None
            or not is_bag(args.bag[0]))


def main(args) -> int:
    """Run `timesformer_bag evaluate` over many bags; print the summary; 1 if any failed."""
    for option in ('out', 'out_bag', 'segments', 'confusion'):
        if getattr(args, option) is not None:
            raise ValueError(f'--{option.replace("_", "-")} is for one bag; with several, '
                             f'results go to --out-dir')
    if args.out_dir is None:
        raise ValueError('several bags need --out-dir (results of each bag, and summary.json)')
    for name, value in (('--workers', args.workers), ('--model-actors', args.model_actors)):
        if value is not None and value < (1 if name == '--workers' else 0):
            raise ValueError(f'{name} must be at least {1 if name == "--workers" else 0}, '
                             f'got {value}')
    topics = args.topic if isinstance(args.topic, list) else [args.topic]
    absolute = (lambda p: str(Path(p).resolve()) if p and Path(p).exists() else p)
    config = FleetConfig(absolute(args.checkpoint), absolute(args.params_file),
                         absolute(args.truth), args.device, args.batch_size)
    stop = StopRequest()
    previous = {signum: signal.signal(signum, stop)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        fleet = Fleet(find_bags(args.bag), topics, args.out_dir, config, args.address,
                      args.workers, args.model_actors)
        check_stop(stop)
        summary = evaluate_many(fleet, stop)
    except Stopped as exc:
        results = Path(args.out_dir) / 'bags'
        kept = f'the bags finished are kept in {results} (a run started again resumes)' \
            if results.is_dir() else 'nothing was written'
        print(f'\ntimesformer_bag: stopped by {exc.name}: {kept}; no summary written',
              file=sys.stderr)
        return 128 + exc.signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print(f'{summary["units"]} bags: {summary["evaluated"]} evaluated, {summary["reused"]} '
          f'reused, {len(summary["failed"])} failed; {summary["windows"]} windows; '
          f'{summary["windows_evaluated"]} evaluated at {summary["windows_per_s"]} windows/s')
    if 'accuracy' in summary:
        print(f'accuracy {100 * summary["accuracy"]:.1f}% on {summary["scored_windows"]} '
              f'windows')
    print(f'summary: {Path(args.out_dir) / "summary.json"}')
    for failed in summary['failed']:
        print(f'timesformer_bag: error: {failed["error"]}', file=sys.stderr)
    for unit in summary['truth_warnings']:
        kind = 'error' if args.strict else 'warning'
        print(f'timesformer_bag: {kind}: {unit["bag"]} ({unit["topic"]}): {unit["warning"]}',
              file=sys.stderr)
    return 1 if summary['failed'] or (args.strict and summary['truth_warnings']) else 0
