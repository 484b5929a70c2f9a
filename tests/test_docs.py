"""docs/architecture.md matches the code: every file it names exists, every ``module.name``
it names imports, and every package module is named there; README.md stays a front page."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import treeq

ROOT = Path(treeq.__file__).parent
ARCH = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
ROOMS = ("envs", "mcts", "data", "prm", "pipelines", "cli")
CODE = re.findall(r"`([^`\s]+)`", ARCH)


def _files() -> list[str]:
    return sorted({c for c in CODE if re.fullmatch(r"[\w/.]+\.(py|c|md)|[\w/]+/", c)})


def _names() -> list[str]:
    return sorted({c for c in CODE if re.fullmatch(r"[a-z_]+(\.[A-Za-z_]\w*)+", c) and c.split(".")[0] in ROOMS
                   and not c.endswith((".py", ".c", ".md"))})


@pytest.mark.parametrize("path", _files())
def test_named_files_exist(path):
    assert (ROOT / path).exists(), f"docs/architecture.md names {path}, which does not exist"


@pytest.mark.parametrize("dotted", _names())
def test_named_objects_exist(dotted):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module("treeq." + ".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            assert hasattr(obj, attr), f"docs/architecture.md names {dotted}: no {attr}"
            obj = getattr(obj, attr)
        return
    pytest.fail(f"docs/architecture.md names {dotted}, which does not import")


def test_every_module_has_a_room():
    """A module added to a package is named on the page (or its package folder is)."""
    named = set(_files())
    missing = []
    for pkg in ROOMS[:-1]:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            rel = f.relative_to(ROOT).as_posix()
            if f.name == "__init__.py" or rel in named or any(rel.startswith(d) for d in named if d.endswith("/")):
                continue
            missing.append(rel)
    assert not missing, f"docs/architecture.md does not name {missing}"


def test_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 250 and "docs/architecture.md" in "\n".join(lines)
