"""Wall time of the offline preview, as a user runs it: `python scripts/time-preview.py [--stack prod] [--runs 5]`.

Each run is a fresh `llm-platform preview` process (interpreter start, imports, the program under mocks, output),
after installation; prints every run and the median.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = Path(sys.executable).with_name("llm-platform")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    seconds = []
    with tempfile.TemporaryDirectory() as scratch:
        graph_file = Path(scratch) / "graph.json"
        for run in range(1, args.runs + 1):
            started = time.perf_counter()
            subprocess.run(
                [CLI, "preview", "--stack", args.stack, "--json", graph_file], check=True, stdout=subprocess.DEVNULL
            )
            seconds.append(time.perf_counter() - started)
            print(f"run {run}: {seconds[-1]:.2f} s")
    print(f"median of {args.runs} runs of `llm-platform preview --stack {args.stack} --json FILE`: "
          f"{statistics.median(seconds):.2f} s")


if __name__ == "__main__":
    main()
