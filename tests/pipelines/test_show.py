"""show: the tree drawn as HTML (rendered by headless Chromium), SVG and DOT; layout and summary by hand;
a wide tree read at first sight (root in view, nodes big enough to show their colour); errors."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from treeq.data.store import TreeStore
from treeq.pipelines.show import layout, load_tree, order, summary

SVG = "{http://www.w3.org/2000/svg}"

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
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    store.write("runs", "r1", {"run_id": ["r1"], "config": ["{}"], "versions": ["{}"], "seed": [0],
                               "started_at": [now], "ended_at": [now]})
    return root


def test_layout_by_hand(tmp_path):
    """0 -> (1 -> (3, 4), 2): leaves 3, 4, 2 take columns 0, 1, 2; 1 sits at 0.5, the root at (0.5 + 2) / 2.
    Values: 1 has 0.9 > 2's 0.4, and under 1, 4 (0.8) beats 3 (0.2): the best path is 0, 1, 4."""
    root = write_tree(tmp_path / "s", [-1, 0, 0, 1, 1], q=[0.5, 0.9, 0.4, 0.2, 0.8])
    x, y, best, more_x = layout(load_tree(root, "t"))
    assert x == [1.25, 0.5, 2.0, 0.0, 1.0] and y == [0, 1, 1, 2, 2]
    assert best == [True, True, False, False, True] and more_x == [None] * 5
    filtered = load_tree(root, "t", max_depth=1)
    assert filtered["node_id"] == [0, 1, 2]


def test_summary_by_hand(tmp_path):
    """0 -> (1 -> (4, 5), 2, 3 -> (6, 7)); visits 20, 3, 9, 6, 2, 1, 0, 0; best path 0, 1, 5 (5 has 0.9).
    Order: the path, then by visits 2, 3, 4, 6, 7. Four columns: 4, 5, 2 and 3, whose children 6, 7 are
    a "+2" under it (6 would need a fifth column). Two columns: the path alone, already three wide
    (5, 1's "+1" for 4, the root's "+2" for 2 and 3)."""
    root = write_tree(tmp_path / "s", [-1, 0, 0, 0, 1, 1, 3, 3], q=[0.5, 0.6, 0.5, 0.1, 0.2, 0.9, 0.3, 0.3],
                      visits=[20, 3, 9, 6, 2, 1, 0, 0])
    tree = load_tree(root, "t")
    assert order(tree) == [0, 1, 5, 2, 3, 4, 6, 7]
    four = summary(tree, 4)
    assert four["node_id"] == [0, 1, 2, 3, 4, 5] and four["more"] == [0, 0, 0, 2, 0, 0] and four["total"] == 8
    x, _, best, more_x = layout(four)
    assert x == [1.75, 0.5, 2.0, 3.0, 0.0, 1.0] and more_x == [None, None, None, 3.0, None, None]
    two = summary(tree, 2)
    assert two["node_id"] == [0, 1, 5] and two["more"] == [2, 1, 0] and two["hidden"] == [4, 1, 0]
    x, _, best, more_x = layout(two)
    assert x == [1.25, 0.5, 0.0] and more_x == [2.0, 1.0, None] and all(best)
    assert summary(tree, 0)["node_id"] == list(range(8)) and not any(summary(tree, 0)["more"])


def wide_tree(root, children=300):
    """A root with ``children`` one-visit children, all of value 0 but child 1 (value 1: the best path)."""
    q = [0.5] + [1.0 if i == 1 else 0.0 for i in range(1, children + 1)]
    return write_tree(root, [-1] + [0] * children, q=q, visits=[children] + [1] * children)


def test_a_wide_svg_opens_on_its_root(tmp_path, run_cli):
    """300 children drawn whole are 4,000+ px wide, the root in the middle, off-screen; the summary fits
    a 1400-px window, every node with its value under it and a circle big enough to show its colour."""
    svg = tmp_path / "t.svg"
    res = run_cli("show", wide_tree(tmp_path / "s"), "--task", "t", "--out", svg)
    assert res.rc == 0 and "of 301 nodes" in res.out and "--columns 0" in res.out
    doc = ET.parse(svg).getroot()
    width, height = float(doc.get("width")), float(doc.get("height"))
    assert doc.get("viewBox") == f"0 0 {width:.0f} {height:.0f}" and width <= 1400
    circles = doc.findall(f"{SVG}circle")
    assert 2 < len(circles) <= 31
    root = circles[0]
    assert 0 < float(root.get("cx")) < width and 0 < float(root.get("cy")) < min(height, 900)
    assert min(float(c.get("r")) for c in circles) >= 5
    texts = [t.text for t in doc.iter(f"{SVG}text")]
    assert "1.00" in texts and texts.count("0.00") == len(circles) - 2  # every value printed
    assert any(t.startswith("+") for t in texts if t)  # the children left out, counted
    dot = tmp_path / "t.dot"
    assert run_cli("show", tmp_path / "s", "--task", "t", "--out", dot).rc == 0
    text = dot.read_text()
    assert text.count("n0 -> n") == len(circles) - 1 and 'more", shape=plaintext' in text


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (Debian: apt-get install chromium)")
def test_the_page_shows_colours_at_first_sight(tmp_path, run_cli):
    """Rendered at its default zoom, the best child (one visit among 300) shows its green: a disc of
    5 px radius or more, not a dot."""
    pytest.importorskip("PIL")
    from PIL import Image

    page, shot = tmp_path / "t.html", tmp_path / "t.png"
    assert run_cli("show", wide_tree(tmp_path / "s"), "--task", "t", "--out", page).rc == 0
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1200,800", "--virtual-time-budget=5000", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    green = np.abs(pixels[100:] - [34, 195, 34]).max(axis=2) <= 12  # hsl(120,70%,45%): value 1; under the bar
    assert green.sum() >= 50  # a disc of radius 5.5 is ~95 px, its rim blended: ~80 of them exact


def test_svg_dot_and_filters(tmp_path, run_cli):
    root = write_tree(tmp_path / "s", [-1, 0, 0, 1, 1], q=[0.5, 0.9, 0.4, 0.2, 0.8], visits=[9, 5, 3, 0, 4],
                      proven=[None, None, None, None, 1.0])
    svg = tmp_path / "t.svg"
    res = run_cli("show", root, "--task", "t", "--out", svg)
    assert res.rc == 0 and "5 nodes" in res.out
    doc = ET.parse(svg).getroot()
    circles = doc.findall(f"{SVG}circle")
    assert len(circles) == 5 and "a4" in circles[4].find(f"{SVG}title").text
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
    res = run_cli("show", root, "--task", "t", "--columns", "-1")
    assert res.rc == 2 and "--columns must be >= 0" in res.err
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
    assert " of 50000 nodes drawn" in dom  # the page's script ran to the end (a summary as wide as the window)
    assert run_cli("show", root, "--task", "t", "--columns", "0", "--out", page).rc == 0
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert "50000 of 50000 nodes drawn" in dom  # every node laid out and drawn
