"""timesformer_bench: this engine against transformers' TimesformerForVideoClassification.

    timesformer_bench                          # tiny preset on the CPU (under a minute)
    timesformer_bench --preset base_8x224      # on a GPU: bf16 + torch.compile vs transformers

In one run, on one device, with the same weights (random, mapped onto transformers' names with
the checkpoint key table), it measures clips/s and latency p50/p99 per batch size, peak GPU
memory beyond the weights, and achieved TFLOP/s (FLOPs counted once per configuration with
torch.utils.flop_counter). transformers is optional: without it only the engine is measured.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from .checkpoints import Checkpoint, official_to_hf_key
from .engine import Engine
from .model import TimeSformer, attention_flops, preset

# Peak dense BF16 Tensor Core throughput in TFLOP/s, by CUDA device name, most specific first:
# half the figures "with sparsity" of NVIDIA's H100 and H200 datasheets (SXM 1,979; PCIe 1,513;
# NVL 1,671). Used only to express achieved TFLOP/s as a fraction of the peak.
BF16_PEAK_TFLOPS = (('H100 PCIe', 756.5), ('H100 NVL', 835.5), ('H200 NVL', 835.5),
                    ('H100', 989.5), ('H200', 989.5))


def _device_name(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)'


def _peak_tflops(name: str) -> Optional[float]:
    for key, value in BF16_PEAK_TFLOPS:
        if key in name:
            return value
    return None


def count_flops(fn: Callable[[], object]) -> int:
    """Return the FLOPs of calling `fn` (2 per multiply-accumulate), by torch's flop counter."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def time_calls(fn: Callable[[], object], device: torch.device, iters: int, warmup: int,
               budget_s: float) -> list:
    """Return per-call latencies in ms (the call includes copying results to the host)."""
    for _ in range(warmup):
        fn()
    times = []
    deadline = time.perf_counter() + budget_s
    for _ in range(iters):
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) * 1000.0)
        if time.perf_counter() > deadline and len(times) >= 5:
            break
    return times


def hf_model_like(model: TimeSformer):
    """Return transformers' model with the same configuration and weights as `model`."""
    from transformers import TimesformerConfig, TimesformerForVideoClassification
    cfg = model.config
    hf_config = TimesformerConfig(
        image_size=cfg.img_size, patch_size=cfg.patch_size, num_channels=cfg.in_chans,
        num_frames=cfg.num_frames, hidden_size=cfg.embed_dim, num_hidden_layers=cfg.depth,
        num_attention_heads=cfg.num_heads, intermediate_size=cfg.mlp_hidden_dim,
        qkv_bias=cfg.qkv_bias, attention_type=cfg.attention_type, num_labels=cfg.num_classes,
        layer_norm_eps=cfg.layer_norm_eps)
    hf = TimesformerForVideoClassification(hf_config)
    hf.load_state_dict({official_to_hf_key(k): v for k, v in model.state_dict().items()})
    return hf.eval()


def run(preset_name: str, device: str = 'auto', batch_sizes: Sequence[int] = (1, 8, 32),
        iters: int = 50, warmup: int = 5, budget_s: float = 4.0, compile: Optional[bool] = None,
        reference: bool = True) -> dict:
    """Measure the engine (and transformers, with `reference`) on `preset_name`; return rows."""
    torch.manual_seed(0)
    config = preset(preset_name)
    model = TimeSformer(config).eval()
    labels = [f'class_{i}' for i in range(config.num_classes)]
    dev = torch.device('cuda' if device == 'auto' and torch.cuda.is_available() else
                       ('cpu' if device == 'auto' else device))
    compile = dev.type == 'cuda' if compile is None else compile
    name = _device_name(dev)
    peak = _peak_tflops(name)
    results = {
        'preset': preset_name, 'config': config.to_dict(), 'device': name,
        'date': datetime.date.today().isoformat(), 'torch': torch.__version__,
        'python': platform.python_version(), 'command': 'timesformer_bench ' +
        ' '.join(sys.argv[1:]), 'bf16_peak_tflops': peak, 'rows': [],
    }
    try:
        import transformers
        results['transformers'] = transformers.__version__
    except ImportError:
        reference = False

    hf = hf_model_like(model) if reference else None
    engine_ckpt = Checkpoint(model=model, labels=labels)
    engine = Engine(engine_ckpt, device=str(dev), dtype='auto', compile=compile,
                    max_batch=max(batch_sizes))
    weights_bytes = sum(p.numel() * p.element_size() for p in engine.model.parameters())
    results['weights_mb'] = round(weights_bytes / 2 ** 20, 1)

    def video(batch, dtype):
        return torch.randn(batch, config.num_frames, config.in_chans, config.img_size,
                           config.img_size, device=dev, dtype=dtype)

    candidates = [
        (f'engine ({engine.describe().split(" on ")[1]}, with attention summaries)',
         lambda x: engine.infer_tensor(x, with_attention=True), engine.dtype),
        ('engine (logits only)', lambda x: engine.infer_tensor(x, with_attention=False),
         engine.dtype),
    ]
    if hf is not None:
        hf = hf.to(dev)

        def hf_fp32(x):
            with torch.inference_mode():
                return hf(pixel_values=x).logits.float().softmax(-1).cpu()

        def hf_bf16(x):
            with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16):
                return hf(pixel_values=x).logits.float().softmax(-1).cpu()

        candidates.append(('transformers float32 eager', hf_fp32, torch.float32))
        if dev.type == 'cuda':
            candidates.append(('transformers bf16 autocast eager', hf_bf16, torch.float32))

    with torch.device('meta'):
        meta_model = TimeSformer(config)
        flops_per_clip = count_flops(lambda: meta_model(torch.empty(
            1, config.num_frames, config.in_chans, config.img_size, config.img_size)))
    results['gflop_per_clip'] = round(flops_per_clip / 1e9, 2)
    results['attention_gflop_per_clip'] = round(attention_flops(config) / 1e9, 3)

    for label, fn, dtype in candidates:
        for batch in batch_sizes:
            x = video(batch, dtype)
            if dev.type == 'cuda':
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(dev)
                base = torch.cuda.memory_allocated(dev)
            times = time_calls(lambda: fn(x), dev, iters, warmup, budget_s)
            p50, p99 = np.percentile(times, 50), np.percentile(times, 99)
            clips_s = batch / (np.mean(times) / 1000.0)
            row = {'implementation': label, 'batch': batch, 'clips_per_s': round(clips_s, 1),
                   'p50_ms': round(float(p50), 3), 'p99_ms': round(float(p99), 3),
                   'tflops': round(flops_per_clip * clips_s / 1e12, 3), 'iters': len(times)}
            if peak:
                row['fraction_of_peak'] = round(row['tflops'] / peak, 4)
            if dev.type == 'cuda':
                row['peak_mem_beyond_weights_mb'] = round(
                    (torch.cuda.max_memory_allocated(dev) - base) / 2 ** 20, 1)
            results['rows'].append(row)
            print(_row_text(row), flush=True)
    return results


def _row_text(row: dict) -> str:
    extra = ''
    if 'fraction_of_peak' in row:
        extra += f' | {100 * row["fraction_of_peak"]:.1f}% of peak'
    if 'peak_mem_beyond_weights_mb' in row:
        extra += f' | +{row["peak_mem_beyond_weights_mb"]} MB'
    return (f'| {row["implementation"]} | {row["batch"]} | {row["clips_per_s"]} | '
            f'{row["p50_ms"]} | {row["p99_ms"]} | {row["tflops"]}{extra} |')


def table(results: dict) -> str:
    """Return the results as a Markdown table under a line naming what was measured."""
    lines = [f'{results["preset"]} on {results["device"]}, torch {results["torch"]}, '
             f'transformers {results.get("transformers", "-")}, {results["date"]}, '
             f'{results["gflop_per_clip"]} GFLOP/clip (attention products '
             f'{results["attention_gflop_per_clip"]})',
             '', '| implementation | batch | clips/s | p50 ms | p99 ms | TFLOP/s |',
             '|---|---|---|---|---|---|']
    lines += [_row_text(row) for row in results['rows']]
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the timesformer_bench console script."""
    parser = argparse.ArgumentParser(prog='timesformer_bench', description=__doc__.strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--preset', default=None,
                        help='model preset (default: base_8x224 on a GPU, tiny on the CPU)')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 8, 32])
    parser.add_argument('--iters', type=int, default=50)
    parser.add_argument('--budget-s', type=float, default=4.0,
                        help='stop timing a configuration after this long (at least 5 calls)')
    parser.add_argument('--compile', choices=('auto', 'on', 'off'), default='auto')
    parser.add_argument('--no-reference', action='store_true', help='skip transformers')
    parser.add_argument('--json', type=Path, default=None, help='write the results here')
    args = parser.parse_args(argv)
    gpu = torch.cuda.is_available() and args.device != 'cpu'
    preset_name = args.preset or ('base_8x224' if gpu else 'tiny')
    compile = {'auto': None, 'on': True, 'off': False}[args.compile]
    results = run(preset_name, args.device, args.batch_sizes, args.iters,
                  budget_s=args.budget_s, compile=compile, reference=not args.no_reference)
    print()
    print(table(results))
    kind = 'gpu' if gpu else 'cpu'
    out = args.json or Path('benchmarks/results') / f'engine_{preset_name}_{kind}.json'
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + '\n')
    print(f'\nwrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
