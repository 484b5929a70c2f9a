"""Smoke test of benchmarks/prm_scoring.py: it runs, the two methods agree, the last line has its format.

No speed figure is asserted (wall-clock ratios depend on the machine).
"""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "prm_scoring.py"


def test_prm_scoring_bench_smoke(capsys):
    main = runpy.run_path(str(SCRIPT), run_name="prm_scoring_bench")["main"]
    threads = torch.get_num_threads()
    try:
        # --threads 1: fast on a CPU shared with a busy process; restored below for the other tests.
        rc = main(["--paths", "4", "--steps", "4", "--repeats", "1", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.strip().splitlines()
    assert re.fullmatch(r"speedup T=4: \d+\.\d+", lines[-1]), lines[-1]
    diff = re.search(r"max abs difference A vs B: (\S+)", out)
    assert diff, out
    assert float(diff.group(1)) <= 1e-5
    assert "16 forward sequences" in out  # B: one per prefix, 4 paths x 4 steps
