"""Ground truth for evaluation: a CSV of `stamp,label`, or a String topic of the bag."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ..messages import STRING, dict_ns
from .read import iter_messages


def read_truth(source: str, bag: Path, frame_times: dict) -> dict:
    """{frame header stamp ns: label} from a CSV file or a String topic of `bag`.

    `frame_times` maps each frame's bag time to its header stamp, for plain-label topics.
    """
    path = Path(source)
    if path.suffix == '.csv' and path.is_file():
        truth = {}
        with path.open(newline='') as handle:
            for row in csv.reader(handle):
                if not row or row[0].strip().lower() == 'stamp':
                    continue
                text = row[0].strip()
                stamp = int(text) if text.isdigit() else int(round(float(text) * 1e9))
                truth[stamp] = row[1].strip()
        return truth
    truth = {}
    times = np.array(sorted(frame_times))
    for timestamp, msg in iter_messages(bag, source, (STRING,)):
        try:
            data = json.loads(msg.data)
            truth[dict_ns(data['stamp'])] = data['label']
        except (ValueError, KeyError, TypeError):
            if len(times):
                nearest = times[np.abs(times - timestamp).argmin()]
                truth[frame_times[int(nearest)]] = msg.data
    return truth


# -- evaluation ------------------------------------------------------------------------------
