"""benchmarks/budget_curve.py: a directory that is not a finished self-train run gets one line and exit 2.

(The curve itself is measured in docs/loop.md; a run needs a finished self-train directory.)
"""

from __future__ import annotations

import json
import runpy
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "budget_curve.py"


def _main(argv):
    return runpy.run_path(str(SCRIPT), run_name="budget_curve")["main"](argv)


def test_missing_corrupt_or_unfinished_run_is_one_line(tmp_path, capsys):
    assert _main(["--run", str(tmp_path / "nowhere")]) == 2
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "self_train.json").write_text("not json")
    assert _main(["--run", str(tmp_path / "bad")]) == 2
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "self_train.json").write_text(json.dumps({"settings": {"no_such_setting": 1}}))
    assert _main(["--run", str(tmp_path / "other")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("error: ") and "not a finished self-train" in line for line in lines)


def test_bad_settings_are_one_line_before_any_search(tmp_path, capsys):
    """A finished-looking run (settings, round-2 directories): every bad flag is refused before a search starts."""
    from dataclasses import asdict

    from treeq.pipelines.config import SelfTrainConfig

    settings = {k: v for k, v in asdict(SelfTrainConfig(out=str(tmp_path))).items() if k not in ("workers", "progress")}
    (tmp_path / "self_train.json").write_text(json.dumps({"settings": settings}))
    for part in ("policy", "prm"):
        (tmp_path / "round-2" / part).mkdir(parents=True)
    bad = (["--round", "-1"], ["--round", "5"], ["--budgets", "nan"], ["--budgets", "-1"], ["--value-mix", "nan"],
           ["--gumbel-scale", "-1"], ["--noise", "-1"], ["--limit", "-1"], ["--selections", "bogus"])
    for flags in bad:
        assert _main(["--run", str(tmp_path), *flags]) == 2, flags
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == len(bad) and all(line.startswith("error: ") for line in lines)
    assert not (tmp_path / "budget-curve").exists()  # nothing searched
