"""credit-bench on every env with exact values, one after another, with each env's wall time.

Runs ``treeq credit-bench`` with its defaults (only the env and its tasks change, and for
TextWorld the games, a 20-step horizon and a smaller Monte Carlo ladder) on Game of 24, Countdown, Blocksworld (4-5 blocks), FrozenLake (slippery
and not), CliffWalking, Taxi and TextWorld games made by ``tw-make`` with fixed seeds, then
prints one line per env (its best estimator by within-state AUROC against A*) and the total
time. Every env's tables and plots land in ``OUT/<env>/``; docs/credit-bench.md is written
from such a run.

    python benchmarks/credit_bench_all.py --out runs/credit-bench
    python benchmarks/credit_bench_all.py --out runs/cb --only game24,frozenlake --seeds 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> credit-bench arguments (TextWorld's --tasks is filled in with the games made below)
ENVS: dict[str, list[str]] = {
    "game24": ["--env", "game24"],
    "countdown": ["--env", "countdown"],
    "blocksworld": ["--env", "blocksworld", "--tasks", str(ROOT / "envs/tasks/blocksworld/4-5")],
    "frozenlake": ["--env", "gym:FrozenLake-v1"],
    "frozenlake-det": ["--env", "gym:FrozenLake-v1", "--env-kwargs", '{"is_slippery": false}'],
    "cliffwalking": ["--env", "gym:CliffWalking-v1"],
    "taxi": ["--env", "gym:Taxi-v4"],
    # an interpreter step costs about 2 ms, a hundred gym steps: Monte Carlo at K = 16 on two trajectories a task
    "textworld": ["--env", "textworld", "--max-steps", "20", "--mc-rollouts", "1,4,16", "--mc-trajectories", "2"],
}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output directory (one subdirectory per env)")
    ap.add_argument("--only", default=",".join(ENVS), help=f"comma-separated subset of {', '.join(ENVS)}")
    ap.add_argument("--seeds", type=int, default=None, help="credit-bench --seeds (default: its own)")
    ap.add_argument("--textworld-seeds", default="5000:5010", help="tw-make seeds of the TextWorld games")
    args, extra = ap.parse_known_args(argv)
    from treeq.cli import main as cli

    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in ENVS]
    if unknown:
        print(f"error: unknown env {', '.join(unknown)}; choose from {', '.join(ENVS)}", file=sys.stderr)
        return 2
    out = Path(args.out)
    rows, total = [], time.perf_counter()
    for name in names:
        argv_env = list(ENVS[name])
        if name == "textworld":
            games = out / "textworld-games"
            code = cli(["make-textworld-games", str(games), "--seeds", args.textworld_seeds, "--jobs", "1"])
            if code:
                return code
            argv_env += ["--tasks", str(games)]
        if args.seeds is not None:
            argv_env += ["--seeds", str(args.seeds)]
        started = time.perf_counter()
        code = cli(["credit-bench", *argv_env, "--out", str(out / name), "--no-progress", *extra])
        seconds = time.perf_counter() - started
        if code:
            print(f"{name}: credit-bench failed (exit {code})", file=sys.stderr)
            return code
        rows.append((name, seconds))
        print(f"== {name}: {seconds:.0f} s", flush=True)
    took = time.perf_counter() - total
    print("\nenv | seconds")
    for name, seconds in rows:
        print(f"{name} | {seconds:.0f}")
    print(f"total | {took:.0f} ({took / 60:.1f} min)")
    (out / "timings.json").write_text(json.dumps({"seconds": dict(rows), "total": took}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
