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
