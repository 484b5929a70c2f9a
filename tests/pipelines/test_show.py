"""show: the tree drawn as HTML (rendered by headless Chromium), SVG and DOT; layout by hand; errors."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from treeq.data.store import TreeStore
from treeq.pipelines.show import layout, load_tree

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def write_tree(root, parents, q=None, visits=None, task="t", proven=None):
    store = TreeStore(root)
    n = len(parents)
    depth = [0] * n
    for i, p in enumerate(parents):
        depth[i] = 0 if p < 0 else depth[p] + 1
    q = q if q is not None else [0.5] * n
    visits = visits if visits is not None else [1] * n
    store.write("nodes", "r1", {
        "run_id": ["r1"] * n, "task_id": [task] * n, "node_id": list(range(n)), "parent_id": list(parents),
        "depth": depth, "action": [None] + [f"a{i}" for i in range(1, n)], "state_key": [f"k{i}" for i in range(n)],
        "observation": [""] * n, "prior": [1.0] * n, "visits": list(visits), "value_sum": [0.0] * n, "q": list(q),
        "reward": [0.0] * n, "terminal": [False] * n, "proven": proven or [None] * n, "feedback": [None] * n,
    }, task)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    store.write("runs", "r1", {"run_id": ["r1"], "config": ["{}"], "versions": ["{}"], "seed": [0],
                               "started_at": [now], "ended_at": [now]})
    return root


def test_layout_by_hand(tmp_path):
    """0 -> (1 -> (3, 4), 2): leaves 3, 4, 2 take columns 0, 1, 2; 1 sits at 0.5, the root at (0.5 + 2) / 2.
    Values: 1 has 0.9 > 2's 0.4, and under 1, 4 (0.8) beats 3 (0.2): the best path is 0, 1, 4."""
    root = write_tree(tmp_path / "s", [-1, 0, 0, 1, 1], q=[0.5, 0.9, 0.4, 0.2, 0.8])
    x, y, best = layout(load_tree(root, "t"))
    assert x == [1.25, 0.5, 2.0, 0.0, 1.0] and y == [0, 1, 1, 2, 2]
    assert best == [True, True, False, False, True]
    filtered = load_tree(root, "t", max_depth=1)
    assert filtered["node_id"] == [0, 1, 2]


def test_svg_dot_and_filters(tmp_path, run_cli):
    root = write_tree(tmp_path / "s", [-1, 0, 0, 1, 1], q=[0.5, 0.9, 0.4, 0.2, 0.8], visits=[9, 5, 3, 0, 4],
                      proven=[None, None, None, None, 1.0])
    svg = tmp_path / "t.svg"
    res = run_cli("show", root, "--task", "t", "--out", svg)
    assert res.rc == 0 and "5 nodes" in res.out
    doc = ET.parse(svg).getroot()
    circles = doc.findall("{http://www.w3.org/2000/svg}circle")
    assert len(circles) == 5 and "a4" in circles[4].find("{http://www.w3.org/2000/svg}title").text
    res = run_cli("show", root, "--task", "t", "--min-visits", "1", "--out", tmp_path / "f.svg")
    assert res.rc == 0 and "4 nodes" in res.out  # node 3 has no visits
    dot = tmp_path / "t.dot"
    assert run_cli("show", root, "--task", "t", "--format", "dot", "--out", dot).rc == 0
    text = dot.read_text()
    assert text.startswith('digraph "t" {') and 'n1 -> n4 [label="a4", fontsize=8, style=bold' in text


def test_errors(tmp_path, run_cli):
    root = write_tree(tmp_path / "s", [-1, 0])
    res = run_cli("show", root, "--task", "nope")
    assert res.rc == 2 and "no task 'nope'" in res.err and "t" in res.err and len(res.err.splitlines()) == 1
    res = run_cli("show", root, "--task", "t", "--format", "png")
    assert res.rc == 2 and "format must be one of html, svg, dot" in res.err
    res = run_cli("show", tmp_path / "missing", "--task", "t")
    assert res.rc == 2 and "not a treeq output directory" in res.err


@pytest.mark.slow
def test_a_50000_node_tree_renders_in_headless_chromium(tmp_path, run_cli):
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium; .ci/run installs it)")
    rng = np.random.default_rng(0)
    n = 50_000
    parents = [-1] + [int(rng.integers(0, max(1, i // 3 + 1))) for i in range(1, n)]
    root = write_tree(tmp_path / "s", parents, q=rng.random(n).tolist(), visits=rng.integers(0, 50, n).tolist())
    page = tmp_path / "tree.html"
    res = run_cli("show", root, "--task", "t", "--out", page)
    assert res.rc == 0 and "50,000 nodes" in res.out
    shot = tmp_path / "tree.png"
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,800",
              "--virtual-time-budget=10000"]
    subprocess.run([*common, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000  # drawn, not blank
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert "50000 of 50000 nodes" in dom  # the page's script ran to the end over every node
