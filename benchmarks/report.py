"""Where the benchmark scripts put their figures: benchmarks/results/NAME.json and stdout.

The files are not committed; BENCHMARKS.md quotes them with the command. Stdout gets the same JSON.
"""

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / 'results'


def write(name: str, result: dict, echo: bool = True) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f'{name}.json'
    out.write_text(json.dumps(result, indent=2) + '\n')
    if echo:
        print(json.dumps(result, indent=2))
    return out
