"""Smoke test of benchmarks/label_sources.py at a tiny size: the table, the last line's form, and one figure
checked by hand (a Game of 24 completion from a state with m numbers left takes exactly m - 1 steps).

No wall-clock figure is asserted.
"""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "label_sources.py"
ARGS = ["--tasks-per-env", "3", "--heldout-per-env", "2", "--budgets", "20", "--mc-k", "1", "--prm-steps", "5"]


def test_label_sources_bench_smoke(capsys, tmp_path):
    module = runpy.run_path(str(SCRIPT), run_name="label_sources_bench")
    threads = torch.get_num_threads()
    try:
        rc = module["main"](ARGS)  # --threads 1 by default: restored below for the other tests
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.strip().splitlines()
    assert re.fullmatch(r"tree labels at 20 simulations vs MC at K=1 \(game24\), K=1 \(blocksworld\): "
                        r"game24 tree AUROC .* vs MC .*; blocksworld tree AUROC .* vs MC .*env steps", lines[-1]), lines[-1]
    header = next(line for line in lines if line.startswith("env "))
    assert [c.strip() for c in header.split("|")][:8] == [
        "env", "source", "budget", "env steps", "label AUROC vs exact", "within-depth AUROC",
        "first-error F1 (labels)", "PRM F1 (trained on them)"]
    table = {tuple(c.strip() for c in line.split("|")[:3]): [c.strip() for c in line.split("|")]
             for line in lines if line.startswith(("game24 ", "blocksworld "))}
    assert set(table) == {(env, source, budget) for env in ("game24", "blocksworld")
                          for source, budget in (("exact", "-"), ("tree", "20"), ("mc", "1"))}
    for env in ("game24", "blocksworld"):  # the exact labels score themselves perfectly
        assert table[(env, "exact", "-")][4:7] == ["1.000", "1.000", "1.000"]
        assert table[(env, "mc", "1")][8] == "100%"  # MC labels every step

    # by hand: K=1 runs one completion per distinct non-terminal step; from depth d it takes 2 - d steps
    args = module["_parser"]().parse_args(ARGS)
    data = module["_build"]("game24", args, tmp_path)
    expected = sum(2 - s.depth for s in data.steps.values() if not s.terminated)
    assert expected >= sum(not s.terminated for s in data.steps.values()) > 0
    assert table[("game24", "mc", "1")][3] == f"{expected:,}"
