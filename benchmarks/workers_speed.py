"""Tasks per second of a CPU-bound search job with ``--workers 2`` against ``--workers 1``.

The whole job as ``search`` runs it (``run_search``: worker processes, staging and
committing every task's shards), on the same Game of 24 puzzles, the solver off so
each task spends its whole budget; each setting into a fresh output folder, the best
of ``--repeats`` runs, the two settings interleaved. Prints both rates and the ratio.

    python benchmarks/workers_speed.py                 # 60 tasks x 30,000 simulations, about 20 s

The job's time includes starting the worker processes (about a second): a short job shows less
than the steady rate.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from treeq.mcts import SearchConfig
from treeq.pipelines.config import SearchJobConfig
from treeq.pipelines.search import run_search


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--tasks", type=int, default=60)
    ap.add_argument("--simulations", type=int, default=30000)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="treeq-workers-"))
    job = SearchJobConfig(limit=args.tasks, search=SearchConfig(simulations=args.simulations, solver=False),
                          progress=False)
    rates = {1: 0.0, 2: 0.0}
    for r in range(args.repeats):
        for w in rates:
            out = work / f"w{w}-{r}"
            s = run_search(replace(job, workers=w, out=str(out)))
            rates[w] = max(rates[w], s.tasks / s.seconds)
            shutil.rmtree(out)
    for w, rate in rates.items():
        print(f"--workers {w}: {rate:.2f} tasks/s ({args.tasks} Game of 24 tasks, {args.simulations} simulations, no solver)")
    print(f"speedup --workers 2 over 1: {rates[2] / rates[1]:.2f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
