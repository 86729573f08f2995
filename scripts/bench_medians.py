#!/usr/bin/env python3
"""The median of each figure over several ``--json`` outputs of one benchmark script.

    python scripts/bench_worker.py --json > run1.json   # and run2.json, run3.json
    python scripts/bench_medians.py run1.json run2.json run3.json

The machine the figures in docs/benchmarks.rst come from is shared and noisy: each
is the median of three runs. Prints one JSON object shaped like the inputs, each
number replaced by the median of that number across them (keys missing from a run
are left out of its median; text is taken from the first run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any


def medians(runs: list[Any]) -> Any:
    first = runs[0]
    if isinstance(first, dict):
        return {key: medians([run[key] for run in runs if isinstance(run, dict) and key in run])
                for key in first}
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        values = [run for run in runs if isinstance(run, (int, float))]
        return round(statistics.median(values), 3)
    return first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="--json outputs of one script")
    args = parser.parse_args()
    runs = []
    for name in args.files:
        with open(name) as file:
            runs.append(json.load(file))
    print(json.dumps(medians(runs), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
