r"""ONNX Runtime against the PyTorch engine, in one run: clips/s and latency p50/p99 per batch.

    python benchmarks/onnx_runtime.py            # CPU: the embedded model and tiny, batch 1 and 8
    python benchmarks/onnx_runtime.py --models base_8x224 --device cuda \
        --runs tensorrt:fp16 tensorrt cuda       # GPU: TensorRT FP16/FP32, CUDA EP vs PyTorch bf16

Each model (`embedded`, or a preset with random weights) is exported once with
`timesformer_export`'s `export_onnx` and timed through the engines' own `infer_tensor`, with the
attention summaries, as the node runs them: the PyTorch engine (`--torch-dtype`, default float32
on the CPU and bfloat16 on a GPU) and an `OnnxEngine` per `--runs` entry (a provider, `:fp16`
for TensorRT in FP16). Every run's probabilities are compared with PyTorch's on the same clips
(`max_prob_diff`). Needs torch, onnx, onnxscript and onnxruntime (onnxruntime-gpu for cuda and
tensorrt), no ROS. Writes benchmarks/results/onnx_runtime_<device>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import report  # noqa: E402 - benchmarks/report.py, beside this script
from timesformer_ros.bench import _device_name, time_calls  # noqa: E402
from timesformer_ros.checkpoints import embedded_checkpoint  # noqa: E402
from timesformer_ros.engine import Engine, checkpoint_of  # noqa: E402
from timesformer_ros.export import export_onnx  # noqa: E402
from timesformer_ros.onnx_engine import OnnxEngine  # noqa: E402


def engines(model: str, runs, device: str, torch_dtype: str, max_batch: int, tmp: Path,
            cache: str, threads: int):
    """Yield (name, engine) for `model`: the PyTorch engine first, then each ONNX run."""
    source = str(embedded_checkpoint()) if model == 'embedded' else f'preset:{model}'
    checkpoint = checkpoint_of(source)
    path = export_onnx(checkpoint, tmp / f'{model}.onnx')
    torch_engine = Engine(checkpoint, device=device, dtype=torch_dtype, max_batch=max_batch)
    yield f'PyTorch {str(torch_engine.dtype).replace("torch.", "")}', torch_engine
    for run in runs:
        provider, _, precision = run.partition(':')
        engine = OnnxEngine(path, providers=[provider], fp16=precision == 'fp16',
                            trt_cache_dir=cache, max_batch=max_batch, threads=threads)
        if engine.running[0].lower() != f'{provider}ExecutionProvider'.lower():
            raise SystemExit(f'onnx_runtime: provider {provider} is not available here '
                             f'(onnxruntime runs {engine.running})')
        yield f'ONNX Runtime {provider} {"fp16" if precision == "fp16" else "float32"}', engine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=['embedded', 'tiny'],
                        help='embedded, or model presets (random weights)')
    parser.add_argument('--runs', nargs='+', default=['cpu'],
                        help='ONNX Runtime runs: cpu, cuda, tensorrt, tensorrt:fp16')
    parser.add_argument('--device', default='cpu', help='the PyTorch engine\'s device')
    parser.add_argument('--torch-dtype', default='auto')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 8])
    parser.add_argument('--iters', type=int, default=50)
    parser.add_argument('--budget-s', type=float, default=4.0)
    parser.add_argument('--trt-cache-dir', default='')
    parser.add_argument('--threads', type=int, default=0,
                        help='CPU threads of both engines (0: each library\'s default)')
    parser.add_argument('--json', type=Path, default=None,
                        help='write the results here (default benchmarks/results/'
                             'onnx_runtime_<device>.json)')
    args = parser.parse_args()
    import onnxruntime
    dev = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {'benchmark': 'onnx_runtime', 'date': datetime.date.today().isoformat(),
              'device': _device_name(dev), 'torch': torch.__version__,
              'onnxruntime': onnxruntime.__version__, 'python': platform.python_version(),
              'threads': args.threads or f'default (torch {torch.get_num_threads()})',
              'command': 'python ' + ' '.join(sys.argv), 'rows': []}
    generator = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            reference = {}
            for name, engine in engines(model, args.runs, args.device, args.torch_dtype,
                                        max(args.batch_sizes), Path(tmp), args.trt_cache_dir,
                                        args.threads):
                cfg = engine.config
                for batch in args.batch_sizes:
                    video = torch.randn(batch, cfg.num_frames, cfg.in_chans, cfg.img_size,
                                        cfg.img_size, generator=generator) \
                        if batch not in reference else reference[batch][0]
                    out = engine.infer_tensor(video)
                    probs = np.stack([p.probabilities for p in out])
                    reference.setdefault(batch, (video, probs))
                    times = time_calls(lambda: engine.infer_tensor(video), dev, args.iters,
                                       3, args.budget_s)
                    row = {'model': model, 'engine': name, 'describe': engine.describe(),
                           'batch': batch,
                           'clips_per_s': round(batch / (np.mean(times) / 1000.0), 1),
                           'p50_ms': round(float(np.percentile(times, 50)), 3),
                           'p99_ms': round(float(np.percentile(times, 99)), 3),
                           'max_prob_diff': float(np.abs(probs - reference[batch][1]).max()),
                           'iters': len(times)}
                    result['rows'].append(row)
                    print(f'| {model} | {name} | {batch} | {row["clips_per_s"]} | '
                          f'{row["p50_ms"]} | {row["p99_ms"]} | {row["max_prob_diff"]:.1e} |',
                          flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + '\n')
    else:
        report.write(f'onnx_runtime_{dev.type}', result, echo=False)
    return 0


if __name__ == '__main__':
    sys.exit(main())
