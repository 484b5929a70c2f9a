"""Does the loop improve? ``self-train`` run (or resumed) and its round table printed.

Every argument after the script's own goes to ``python cli.py self-train`` as it is, so
the defaults are self-train's own (Game of 24: the shipped puzzles outside a held-out 200
drawn by ``--split-seed``, no ``--model``: uniform priors in round 0 and a tiny model
trained from round 0 on, ``--rounds 2``). A finished ``--out`` is read, not redone. Prints
the markdown table (solved share per budget, simulations to solve, the policy alone, the
PRM's AUROC against exact values, each stage's seconds), the total time, and last:

    round R: solved@16 = X (round 0: Y)

    python benchmarks/self_train.py --out runs/st24 --split-seed 11
    python benchmarks/self_train.py --env blocksworld --tasks DIR --holdout 40 --out runs/stbw
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    import pyarrow.parquet as pq

    from treeq.cli import main as cli

    out = argv[argv.index("--out") + 1] if "--out" in argv else "treeq-self-train"
    t0 = time.perf_counter()
    rc = cli(["self-train", *argv])
    if rc or "--help" in argv or "-h" in argv:
        return rc
    rows = pq.read_table(Path(out) / "rounds.parquet").to_pylist()
    recorded = json.loads((Path(out) / "self_train.json").read_text())["stages"]
    stages = {name: rec["seconds"] for name, rec in recorded.items()}
    print("\nstage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in stages.items()))
    print(f"all stages: {sum(stages.values()) / 60:.1f} min (this call: {(time.perf_counter() - t0) / 60:.1f} min)")
    last = max(r["round"] for r in rows)
    budget = 16 if any(r["budget"] == 16 for r in rows) else min(r["budget"] for r in rows)

    def at(r: int) -> float:
        return next(x["solved_share"] for x in rows if x["round"] == r and x["budget"] == budget)

    print(f"round {last}: solved@{budget} = {at(last):.1%} (round 0: {at(0):.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
