"""What the region (`~/window` roi, `~/detection`) costs per window, at batch 1 on the CPU.

For each checkpoint: the window's inference as it was before the region (the model with the
last block's attention for the summaries), and the engine's whole inference now (the same plus
the region by the checkpoint's method: `head` or `motion`, the latter over the camera's whole
frame in gray, as streams buffer it), medians over `--reps` windows on one thread; and what
making that gray frame costs once per sampled frame (`frames.thumb_of`). The embedded model is
timed for a 160x120 camera, `base_8x224` (the Kinetics architecture, random weights: the cost
is the same) for a 640x480 one.

    .venv/bin/python benchmarks/roi_cost.py [--reps 200] [--base-reps 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from timesformer_ros.checkpoints import (  # noqa: E402
    Checkpoint, default_labels, embedded_checkpoint, load_checkpoint)
from timesformer_ros.engine import Engine, attention_summary  # noqa: E402
from timesformer_ros.frames import thumb_of  # noqa: E402
from timesformer_ros.locate import Locator  # noqa: E402
from timesformer_ros.model import TimeSformer, preset  # noqa: E402


def measure(engine: Engine, reps: int, camera: tuple) -> dict:
    """Return the median ms per window before and with the region, the two timed in turn.

    In turn, because a machine loaded by others drifts between two separate series. `camera`:
    (height, width) of the frames the whole-frame thumbs are made of.
    """
    cfg = engine.config
    rng = np.random.default_rng(0)
    video = torch.randn(1, cfg.num_frames, 3, cfg.img_size, cfg.img_size)
    rgb = rng.integers(0, 256, (*camera, 3), dtype=np.uint8)
    thumbs = [np.stack([thumb_of(rgb, cfg.img_size)] * cfg.num_frames)]
    thumbs[0][-1] += rng.uniform(0, 8, thumbs[0].shape[1:]).astype(np.float32)
    grid = (cfg.grid_size, cfg.grid_size)
    last = cfg.depth - 1

    def before():
        with torch.inference_mode():
            logits, weights = engine.model.forward_with_attention(video)
            attention_summary(engine.model, weights[last], cfg.num_frames, grid)
            logits.softmax(-1).sort(descending=True)

    def now():
        engine.infer_tensor(video, thumbs=thumbs)

    times = {before: [], now: []}
    before(), now()
    for _ in range(reps):
        for run, found in times.items():
            started = time.perf_counter()
            run()
            found.append(time.perf_counter() - started)
    without, with_region = (round(float(np.median(t)) * 1000, 3) for t in times.values())
    thumb = []
    for _ in range(max(reps, 50)):
        started = time.perf_counter()
        thumb_of(rgb, cfg.img_size)
        thumb.append(time.perf_counter() - started)
    return {'method': engine.locator.method, 'reps': reps, 'camera': f'{camera[1]}x{camera[0]}',
            'window_ms_before': without, 'window_ms_with_region': with_region,
            'region_share': round(with_region / without - 1, 3),
            'thumb_ms_per_frame': round(float(np.median(thumb)) * 1000, 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--reps', type=int, default=200)
    parser.add_argument('--base-reps', type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {'torch': torch.__version__, 'cpu': platform.processor() or platform.machine(),
               'threads': 1}
    embedded = Engine(load_checkpoint(embedded_checkpoint()), device='cpu', warmup=False)
    results['embedded'] = measure(embedded, args.reps, (120, 160))
    if embedded.locator.head is not None:
        embedded.locator = Locator(embedded.model)         # as if it had no head
        results['embedded_without_head'] = measure(embedded, args.reps, (120, 160))
    model = TimeSformer(preset('base_8x224')).eval()
    base = Engine(Checkpoint(model=model, labels=default_labels(400), source='preset'),
                  device='cpu', warmup=False)
    results['base_8x224'] = measure(base, args.base_reps, (480, 640))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
