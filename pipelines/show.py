"""Draw one searched tree (``show``): a self-contained HTML page, an SVG file or Graphviz DOT.

A search tree is far wider than a screen (a Game of 24 tree of 1,429 nodes drawn whole is over
16,000 px wide, its root in the middle), so every format opens on a summary that reads at
first sight: the best path (from the root, the child with the highest value, ties to more
visits: ``trees.best_action``'s rule), then the most visited nodes, as many as fit
``columns`` leaf columns; the children left out of a drawn node are one "+N" (its tooltip
counts the nodes under them). ``--columns 0`` draws every node.

Layout: a tidy tree, depth down the page, each leaf its own column in depth-first order
(children in node-id order) and each inner node centred over its children. A node's area
follows its visits (5 px radius at least, so its colour shows), its colour its value
``coalesce(proven, q)`` (red low, green high over the values drawn; proven nodes ringed),
its value and visits are printed under it, and the best path is thick blue.

The HTML page draws on a canvas from every row embedded as JSON (no network, no library):
it opens on the summary as wide as the window, renders trees of tens of thousands of
nodes, pans (drag) and zooms (wheel), shows a node's action, value, visits, prior and
depth on hover, and has a breadth (columns), a depth and a visit filter. ``--max-depth``
and ``--min-visits`` filter before drawing in every format (a node whose parent is
filtered out goes with it). The SVG is static (details in ``<title>`` elements, shown as
tooltips); DOT labels each edge with its action.
"""

from __future__ import annotations

import heapq
import html
import json
import math
from pathlib import Path

from ..data.store import connect, write_text_atomic
from ..errors import ConfigError, StoreError

__all__ = ["FORMATS", "load_tree", "order", "summary", "layout", "render_html", "render_svg", "render_dot", "show"]

FORMATS = ("html", "svg", "dot")
COLUMN, ROW, PAD = 44, 72, 24  # px: a leaf's column, a depth's row, the margin
COLUMNS = 30  # the breadth svg and dot draw by default: 30 columns fit a 1400-px window


def load_tree(out: str | Path, task_id: str, run_id: str | None = None, min_visits: int = 0,
              max_depth: int | None = None) -> dict[str, list]:
    """The rows of one task's tree (filtered), as column lists in node-id order.

    Raises:
        StoreError: the store is unreadable, the task (or run) is not in it, or several
            runs hold the task and none is named.
    """
    con = connect(out)
    try:
        runs = [r for (r,) in con.execute("SELECT DISTINCT run_id FROM nodes WHERE task_id = ? ORDER BY run_id",
                                          [task_id]).fetchall()]
        if not runs:
            some = [t for (t,) in con.execute("SELECT DISTINCT task_id FROM nodes ORDER BY task_id LIMIT 5").fetchall()]
            raise StoreError(f"no task {task_id!r} in {out}" + (f" (tasks there: {', '.join(some)}, ...)" if some
                                                               else " (it holds no trees)"))
        if run_id is None:
            if len(runs) > 1:
                raise StoreError(f"task {task_id!r} was searched in {len(runs)} runs in {out}: give --run "
                                 f"({', '.join(runs)})")
            run_id = runs[0]
        elif run_id not in runs:
            raise StoreError(f"run {run_id!r} holds no task {task_id!r} in {out} (runs with it: {', '.join(runs)})")
        names = ["node_id", "parent_id", "depth", "action", "visits", "q", "proven", "prior"]
        rows = con.execute(f"SELECT {', '.join(names)} FROM nodes WHERE task_id = ? AND run_id = ? ORDER BY node_id",
                           [task_id, run_id]).fetchall()
    finally:
        con.close()
    cols = {name: list(col) for name, col in zip(names, zip(*rows))} if rows else {name: [] for name in names}
    keep: set[int] = set()
    for node, parent, depth, visits in zip(cols["node_id"], cols["parent_id"], cols["depth"], cols["visits"]):
        if parent < 0 or (parent in keep and visits >= min_visits and (max_depth is None or depth <= max_depth)):
            keep.add(node)
    idx = [i for i, n in enumerate(cols["node_id"]) if n in keep]
    return {k: [v[i] for i in idx] for k, v in cols.items()} | {"run_id": run_id, "task_id": task_id}


def _kids(tree: dict[str, list]) -> list[list[int]]:
    """Each row's child rows, in node-id order."""
    index = {n: i for i, n in enumerate(tree["node_id"])}
    kids: list[list[int]] = [[] for _ in tree["node_id"]]
    for i, p in enumerate(tree["parent_id"]):
        if p in index:
            kids[index[p]].append(i)
    return kids


def _best_path(tree: dict[str, list], kids: list[list[int]]) -> list[int]:
    """Rows from the root down the child of highest value (ties to more visits: ``trees.best_action``'s rule)."""
    path, i = [], 0
    while tree["node_id"]:
        path.append(i)
        valued = [c for c in kids[i] if _value(tree, c) is not None]
        if not valued:
            return path
        i = max(valued, key=lambda c: (_value(tree, c), tree["visits"][c], -tree["node_id"][c]))
    return path


def order(tree: dict[str, list]) -> list[int]:
    """Rows in drawing priority: the best path, then best-first by visits (ties to higher value).

    Every prefix is a connected tree from the root, so "the first k rows" is a summary of the
    tree that keeps what the search spent its time on.
    """
    kids = _kids(tree)
    path = _best_path(tree, kids)
    on_path = set(path)
    key = [(-v, -(_value(tree, i) if _value(tree, i) is not None else -math.inf), tree["node_id"][i], i)
           for i, v in enumerate(tree["visits"])]
    heap = [key[c] for i in path for c in kids[i] if c not in on_path]
    heapq.heapify(heap)
    out = list(path)
    while heap:
        i = heapq.heappop(heap)[-1]
        out.append(i)
        for c in kids[i]:
            heapq.heappush(heap, key[c])
    return out


def summary(tree: dict[str, list], columns: int) -> dict[str, list]:
    """The longest prefix of :func:`order` whose drawing is at most ``columns`` wide (the best path
    always); each row gets ``more`` (children left out, drawn as one "+N more" column) and
    ``hidden`` (the nodes under them). ``columns`` 0: every row.

    A drawing's width is its leaves plus one column per "+N more" beside drawn children (a
    leaf with children left out shows its "+N" under itself), so adding a child widens the
    drawing by one column exactly when its parent still has children left out.
    """
    kids, ranked = _kids(tree), order(tree)
    size = [1] * len(ranked)
    for i in reversed(ranked):  # parents come before their children in the order
        size[i] += sum(size[c] for c in kids[i])
    on_path = set(_best_path(tree, kids))
    parent_row = [-1] * len(ranked)
    for i, ks in enumerate(kids):
        for c in ks:
            parent_row[c] = i
    drawn, shown = set(), [0] * len(ranked)
    width = 0
    for i in ranked:
        p = parent_row[i]
        grow = 0 if p < 0 else int(len(kids[p]) - shown[p] > 1)
        if columns and i not in on_path and width + grow > columns:
            break
        drawn.add(i)
        width = 1 if p < 0 else width + grow
        if p >= 0:
            shown[p] += 1
    rows = sorted(drawn)
    out = {k: [v[i] for i in rows] for k, v in tree.items() if isinstance(v, list)}
    out["more"] = [len(kids[i]) - shown[i] for i in rows]
    out["hidden"] = [size[i] - 1 - sum(size[c] for c in kids[i] if c in drawn) for i in rows]
    return out | {"run_id": tree["run_id"], "task_id": tree["task_id"], "total": len(ranked)}


def layout(tree: dict[str, list]) -> tuple[list[float], list[int], list[bool], list[float | None]]:
    """x (leaf columns, inner nodes centred), y (depth), best-path flags and the x of each row's
    "+N more" (None without one: a column after its drawn children, or its own under a leaf)."""
    kids = _kids(tree)
    more = tree.get("more") or [0] * len(kids)
    x = [0.0] * len(kids)
    more_x: list[float | None] = [None] * len(kids)
    next_leaf = 0.0
    post: list[int] = []  # post-order without recursion
    stack = [(0, False)] if kids else []
    while stack:
        i, expanded = stack.pop()
        if expanded:
            post.append(i)
            continue
        stack.append((i, True))
        stack.extend((c, False) for c in reversed(kids[i]))
    for i in post:
        if kids[i]:
            right = x[kids[i][-1]]
            if more[i]:
                more_x[i] = right = next_leaf
                next_leaf += 1.0
            x[i] = (x[kids[i][0]] + right) / 2
        else:
            x[i] = next_leaf
            next_leaf += 1.0
            if more[i]:
                more_x[i] = x[i]
    best = [False] * len(kids)
    for i in _best_path(tree, kids):
        best[i] = True
    return x, list(tree["depth"]), best, more_x


def _value(tree: dict[str, list], i: int) -> float | None:
    return tree["proven"][i] if tree["proven"][i] is not None else tree["q"][i]


def _value_range(tree: dict[str, list]) -> tuple[float, float]:
    """The lowest and highest value drawn (the colour scale's ends); (0, 1) without values."""
    values = [v for v in (_value(tree, i) for i in range(len(tree["node_id"]))) if v is not None]
    return (min(values), max(values)) if values else (0.0, 1.0)


def _colour(v: float | None, lo: float, hi: float) -> str:
    if v is None:
        return "#9aa0a6"
    t = 0.5 if hi <= lo else (v - lo) / (hi - lo)
    return f"hsl({int(120 * t)},70%,45%)"


def _radius(visits: int, top: int) -> float:
    """5 px (colour visible) to 14 px, the area following the visits."""
    return 5 + 9 * math.sqrt(visits / top)


def _more_tip(tree: dict[str, list], i: int) -> str:
    return (f"{tree['more'][i]:,} less visited children not drawn ({tree['hidden'][i]:,} nodes); "
            f"--columns 0 draws every node")


def render_svg(tree: dict[str, list]) -> str:
    """A static SVG drawing: every node a circle with its value and visits under it and a
    ``<title>`` tooltip; the best path thick blue; "+N more" where children were left out."""
    x, y, best, more_x = layout(tree)
    n = len(x)
    more = tree.get("more") or [0] * n
    lo, hi = _value_range(tree)
    top = max(tree["visits"] or [1]) or 1
    cols = max([xi + 1 for xi in x + [m for m in more_x if m is not None]] or [1])
    width = max(2 * PAD + COLUMN * cols, 760)
    height = 2 * PAD + 26 + ROW * (max(y or [0]) + 1)
    left, bold = (width - COLUMN * cols) / 2, ' font-weight="bold"'
    halo = ' stroke="#fff" stroke-width="3" paint-order="stroke" stroke-linejoin="round"'  # legible over edges
    index = {nd: i for i, nd in enumerate(tree["node_id"])}
    px = [left + COLUMN * (xi + 0.5) for xi in x]
    py = [PAD + 26 + ROW * yi + 14 for yi in y]
    total = tree.get("total", n)
    drawn = f"{n:,} nodes" if n == total else f"{n:,} of {total:,} nodes (the best path, the most visited)"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif">',
           f'<title>treeq: task {html.escape(tree["task_id"])}, run {html.escape(tree["run_id"])}, {drawn}</title>',
           '<defs><linearGradient id="scale"><stop offset="0" stop-color="hsl(0,70%,45%)"/>'
           '<stop offset="0.5" stop-color="hsl(60,70%,45%)"/><stop offset="1" stop-color="hsl(120,70%,45%)"/>'
           '</linearGradient></defs>',
           f'<text x="{PAD}" y="{PAD + 4}" font-size="13"><tspan font-weight="bold">task '
           f'{html.escape(tree["task_id"])}</tspan> (run {html.escape(tree["run_id"])}), {drawn}</text>',
           f'<text x="{PAD}" y="{PAD + 22}" font-size="11" fill="#555">value {lo:.2f}</text>'
           f'<rect x="{PAD + 62}" y="{PAD + 13}" width="80" height="10" fill="url(#scale)"/>'
           f'<text x="{PAD + 148}" y="{PAD + 22}" font-size="11" fill="#555">{hi:.2f} · under each node: value, '
           f'visits · area: visits · ring: proven · thick blue: best path</text>']
    for i, p in enumerate(tree["parent_id"]):
        j = index.get(p)
        if j is not None:
            b = best[i] and best[j]
            out.append(f'<line x1="{px[j]:.1f}" y1="{py[j]:.1f}" x2="{px[i]:.1f}" y2="{py[i]:.1f}" '
                       f'stroke="{"#1a73e8" if b else "#c0c4c8"}" stroke-width="{4 if b else 1.2}"/>')
    for i, m in enumerate(more_x):
        if m is not None:
            mx, my = left + COLUMN * (m + 0.5), py[i] + ROW
            out.append(f'<g><title>{html.escape(_more_tip(tree, i))}</title>'
                       f'<line x1="{px[i]:.1f}" y1="{py[i]:.1f}" x2="{mx:.1f}" y2="{my - 10:.1f}" stroke="#c0c4c8" '
                       f'stroke-dasharray="3 3"/><text x="{mx:.1f}" y="{my:.1f}" font-size="10" fill="#777"{halo} '
                       f'text-anchor="middle">+{more[i]:,}</text></g>')
    for i in range(n):
        v = _value(tree, i)
        r = _radius(tree["visits"][i], top)
        ring = ' stroke="#000" stroke-width="2"' if tree["proven"][i] is not None else ' stroke="#fff"'
        tip = html.escape(f'{tree["action"][i] or "(root)"}\nvalue {v if v is None else round(v, 4)}, '
                          f'visits {tree["visits"][i]}, prior {round(tree["prior"][i] or 0.0, 4)}, depth {y[i]}'
                          + (", proven" if tree["proven"][i] is not None else ""))
        out.append(f'<circle cx="{px[i]:.1f}" cy="{py[i]:.1f}" r="{r:.1f}" fill="{_colour(v, lo, hi)}"{ring}>'
                   f'<title>{tip}</title></circle>'
                   f'<text x="{px[i]:.1f}" y="{py[i] + r + 11:.1f}" font-size="11" text-anchor="middle"{halo}'
                   f'{bold if best[i] else ""}>{"-" if v is None else f"{v:.2f}"}</text>'
                   f'<text x="{px[i]:.1f}" y="{py[i] + r + 22:.1f}" font-size="9.5" fill="#777"{halo} '
                   f'text-anchor="middle">{tree["visits"][i]:,}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def render_dot(tree: dict[str, list]) -> str:
    """Graphviz DOT: nodes labelled with value and visits, edges with their action; the best path bold;
    children left out as one "+N more" node."""
    _, _, best, _ = layout(tree)
    lines = [f'digraph "{tree["task_id"]}" {{', "  node [shape=circle, style=filled, fontsize=9];"]
    lo, hi = _value_range(tree)
    for i, node in enumerate(tree["node_id"]):
        v = _value(tree, i)
        t = 0.5 if v is None or hi <= lo else (v - lo) / (hi - lo)
        label = f"{'-' if v is None else f'{v:.3f}'}\\n{tree['visits'][i]}"
        lines.append(f'  n{node} [label="{label}", fillcolor="{t / 3:.3f} 0.6 0.9"'
                     + (", penwidth=2" if tree["proven"][i] is not None else "") + "];")
        if tree.get("more") and tree["more"][i]:
            lines.append(f'  m{node} [label="+{tree["more"][i]} more", shape=plaintext, style="", fontcolor=gray];'
                         f' n{node} -> m{node} [style=dashed, color=gray];')
    index = {nd: i for i, nd in enumerate(tree["node_id"])}
    for i, p in enumerate(tree["parent_id"]):
        if p in index:
            action = json.dumps(tree["action"][i] or "")[1:-1]
            bold = ", style=bold, color=blue" if best[i] and best[index[p]] else ""
            lines.append(f'  n{p} -> n{tree["node_id"][i]} [label="{action}", fontsize=8{bold}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>treeq: __TITLE__</title>
<style>
body{margin:0;font:13px sans-serif;background:#fafafa}
#bar{position:fixed;top:0;left:0;right:0;padding:6px 10px;background:#fff;border-bottom:1px solid #ddd;z-index:2;line-height:24px}
#bar input[type=number]{width:5em}
#scale{display:inline-block;width:70px;height:10px;vertical-align:middle;background:linear-gradient(90deg,hsl(0,70%,45%),hsl(60,70%,45%),hsl(120,70%,45%))}
#tip{position:fixed;pointer-events:none;background:#fff;border:1px solid #999;padding:4px 6px;white-space:pre;display:none;z-index:3}
canvas{position:fixed;left:0}
</style></head><body>
<div id="bar"><b>__TITLE__</b> &nbsp; <span id="count"></span> &nbsp;
columns &le; <input id="cols" type="number" min="0" title="breadth: the best path and the most visited nodes that fit; 0: every node"> &nbsp;
depth &le; <input id="depth" type="range" min="0" max="0" value="0"> <span id="depthv"></span> &nbsp;
visits &ge; <input id="visits" type="number" min="0" value="0"><br>
<span style="color:#555">value <span id="lo"></span> <span id="scale"></span> <span id="hi"></span> &middot;
under each node: value, visits &middot; area: visits &middot; ring: proven &middot; thick blue: best path &middot;
+N: children not drawn &middot; drag to pan, wheel to zoom</span></div>
<canvas id="c"></canvas><div id="tip"></div>
<script>
const T = __DATA__, COL = __COLUMN__, ROW = __ROW__, PAD = __PAD__;
const n = T.node.length, cv = document.getElementById('c'), g = cv.getContext('2d');
const idx = new Map(); T.node.forEach((v, i) => idx.set(v, i));
const par = T.parent.map(p => idx.has(p) ? idx.get(p) : -1), kids = T.node.map(() => []);
par.forEach((p, i) => { if (p >= 0) kids[p].push(i); });
// reduce, not Math.max(...a): spreading a big tree's column overflows the stack
const vmax = T.visits.reduce((m, v) => Math.max(m, v), 1), maxDepth = T.depth.reduce((m, v) => Math.max(m, v), 0);
const dEl = document.getElementById('depth'), vEl = document.getElementById('visits'), cEl = document.getElementById('cols');
dEl.max = maxDepth; dEl.value = maxDepth;
cEl.value = T.columns !== null ? T.columns : Math.max(1, Math.floor((innerWidth - 2 * PAD) / COL));
let s = 1, ox = 0, oy = 0, L = null;
const X = i => ox + s * COL * (L.x[i] + 0.5), Y = d => oy + s * (ROW * d + 18);
function colour(v){ if (v === null) return '#9aa0a6'; const t = L.hi > L.lo ? (v - L.lo) / (L.hi - L.lo) : 0.5; return 'hsl(' + Math.round(120 * t) + ',70%,45%)'; }
function label(t, x, y, px, c){  // text on a halo, legible over the edges
  g.font = px + 'px sans-serif'; g.strokeStyle = '#fafafa'; g.lineWidth = 3; g.strokeText(t, x, y); g.fillStyle = c; g.fillText(t, x, y); }
// the drawing: the longest prefix of T.order (best path, then most visited) passing the filters that fits
// the columns, then leaf columns with inner nodes centred; as summary() and layout() in show.py
function select(){
  const md = +dEl.value, mv = +vEl.value, cap = +cEl.value || Infinity;
  const ok = new Uint8Array(n), on = new Uint8Array(n), nk = new Int32Array(n), sk = new Int32Array(n), size = new Int32Array(n).fill(1);
  for (const i of T.order) { const p = par[i];
    ok[i] = p < 0 || (ok[p] && T.depth[i] <= md && T.visits[i] >= mv) ? 1 : 0; if (ok[i] && p >= 0) nk[p]++; }
  for (let k = n - 1; k >= 0; k--) { const i = T.order[k], p = par[i]; if (ok[i] && p >= 0) size[p] += size[i]; }
  let width = 0, drawn = 0;
  for (const i of T.order) { if (!ok[i]) continue; const p = par[i], grow = p < 0 ? 0 : (nk[p] - sk[p] > 1 ? 1 : 0);
    if (!T.best[i] && width + grow > cap) break;
    width = p < 0 ? 1 : width + grow; if (p >= 0) sk[p]++; on[i] = 1; drawn++; }
  const x = new Float64Array(n), mx = new Float64Array(n).fill(NaN), hid = new Int32Array(n), pre = [], stack = [0];
  while (stack.length) { const i = stack.pop(); pre.push(i); for (const c of kids[i]) if (on[c]) stack.push(c); }
  let next = 0;  // pre-order, right child first, read backwards: post-order, left child first
  for (let k = pre.length - 1; k >= 0; k--) { const i = pre[k], ks = kids[i].filter(c => on[c]), more = nk[i] - ks.length;
    hid[i] = size[i] - 1; for (const c of ks) hid[i] -= size[c];
    if (ks.length) { let right = x[ks[ks.length - 1]]; if (more > 0) { mx[i] = right = next++; } x[i] = (x[ks[0]] + right) / 2; }
    else { x[i] = next++; if (more > 0) mx[i] = x[i]; } }
  const vals = pre.map(i => T.value[i]).filter(v => v !== null);  // the colour scale: the values drawn
  return {on, x, mx, nk, sk, hid, drawn, width: next, shown: pre,
          lo: vals.length ? vals.reduce((m, v) => Math.min(m, v)) : 0, hi: vals.length ? vals.reduce((m, v) => Math.max(m, v)) : 1};
}
function relayout(){  // at scale 1: the drawing centred, or the root where it is wider than the window
  L = select(); s = 1; oy = 8;
  ox = COL * L.width <= innerWidth - 2 * PAD ? (innerWidth - COL * L.width) / 2 : innerWidth / 2 - COL * (L.x[0] + 0.5);
  document.getElementById('lo').textContent = L.lo.toFixed(2); document.getElementById('hi').textContent = L.hi.toFixed(2); draw(); }
function draw(){
  const bar = document.getElementById('bar').offsetHeight;
  cv.style.top = bar + 'px'; cv.width = innerWidth; cv.height = innerHeight - bar;
  g.clearRect(0, 0, cv.width, cv.height);
  const on = L.on, text = s >= 0.6;
  for (const i of L.shown) { const p = par[i]; if (p < 0) continue;
    const b = T.best[i] && T.best[p]; g.strokeStyle = b ? '#1a73e8' : '#c0c4c8'; g.lineWidth = b ? Math.max(1.5, 4 * s) : 1;
    g.beginPath(); g.moveTo(X(p), Y(T.depth[p])); g.lineTo(X(i), Y(T.depth[i])); g.stroke(); }
  g.textAlign = 'center'; g.lineJoin = 'round';
  for (const i of L.shown) { if (isNaN(L.mx[i])) continue;
    const x = ox + s * COL * (L.mx[i] + 0.5), y = Y(T.depth[i] + 1);
    g.strokeStyle = '#c0c4c8'; g.lineWidth = 1; g.setLineDash([3, 3]);
    g.beginPath(); g.moveTo(X(i), Y(T.depth[i])); g.lineTo(x, y - 10 * s); g.stroke(); g.setLineDash([]);
    if (text) label('+' + (L.nk[i] - L.sk[i]), x, y, 10 * s, '#777'); }
  for (const i of L.shown) {
    const r = Math.max(1.5, s * (5 + 9 * Math.sqrt(T.visits[i] / vmax))), x = X(i), y = Y(T.depth[i]);
    g.fillStyle = colour(T.value[i]); g.beginPath(); g.arc(x, y, r, 0, 6.2832); g.fill();
    if (T.proven[i]) { g.strokeStyle = '#000'; g.lineWidth = 2; g.stroke(); }
    if (text) { const v = T.value[i];
      label(v === null ? '-' : v.toFixed(2), x, y + r + 11 * s, (T.best[i] ? 'bold ' : '') + 11 * s, '#222');
      label(T.visits[i].toLocaleString('en'), x, y + r + 22 * s, 9.5 * s, '#777'); } }
  document.getElementById('count').textContent = L.drawn + ' of ' + n + ' nodes drawn';
  document.getElementById('depthv').textContent = dEl.value;
}
let drag = null;
cv.onmousedown = e => drag = [e.clientX - ox, e.clientY - oy];
onmouseup = () => drag = null;
cv.onmousemove = e => {
  if (drag) { ox = e.clientX - drag[0]; oy = e.clientY - drag[1]; draw(); return; }
  const rect = cv.getBoundingClientRect(), mx = e.clientX - rect.left, my = e.clientY - rect.top;
  const tip = document.getElementById('tip');
  let best = -1, bd = 1e18, marker = false;
  for (const i of L.shown) { const dx = X(i) - mx, dy = Y(T.depth[i]) - my, d = dx * dx + dy * dy; if (d < bd) { bd = d; best = i; marker = false; }
    if (!isNaN(L.mx[i])) { const ex = ox + s * COL * (L.mx[i] + 0.5) - mx, ey = Y(T.depth[i] + 1) - 4 * s - my, e2 = ex * ex + ey * ey;
      if (e2 < bd) { bd = e2; best = i; marker = true; } } }
  if (best < 0 || bd > 196) { tip.style.display = 'none'; return; }
  tip.style.display = 'block'; tip.style.left = (e.clientX + 12) + 'px'; tip.style.top = (e.clientY + 12) + 'px';
  const v = T.value[best];
  tip.textContent = marker ? (L.nk[best] - L.sk[best]) + ' less visited children not drawn (' + L.hid[best] + ' nodes);\\nraise columns (0: every node)' :
    (T.action[best] === null ? '(root)' : T.action[best]) + '\\nvalue ' + (v === null ? '-' : v.toFixed(4)) +
    (T.proven[best] ? ' (proven)' : '') + '\\nvisits ' + T.visits[best] + ', prior ' + T.prior[best].toFixed(4) + ', depth ' + T.depth[best];
};
cv.onwheel = e => { e.preventDefault(); const f = e.deltaY < 0 ? 1.25 : 1 / 1.25, rect = cv.getBoundingClientRect();
  const mx = e.clientX - rect.left, my = e.clientY - rect.top;
  ox = mx - (mx - ox) * f; oy = my - (my - oy) * f; s *= f; draw(); };
dEl.oninput = relayout; vEl.oninput = relayout; cEl.oninput = relayout; onresize = draw;
relayout();
</script></body></html>
"""


def render_html(tree: dict[str, list], columns: int | None = None) -> str:
    """The self-contained interactive page (canvas, every row embedded as JSON); it opens on the
    :func:`summary` ``columns`` wide (default: as wide as the window)."""
    best = set(_best_path(tree, _kids(tree)))
    data = {
        "node": tree["node_id"], "parent": tree["parent_id"], "depth": tree["depth"],
        "best": [int(i in best) for i in range(len(tree["node_id"]))],
        "visits": tree["visits"], "value": [_value(tree, i) for i in range(len(tree["node_id"]))],
        "proven": [int(p is not None) for p in tree["proven"]], "prior": [p or 0.0 for p in tree["prior"]],
        "action": tree["action"], "order": order(tree), "columns": columns,
    }
    title = html.escape(f"task {tree['task_id']} (run {tree['run_id']}), {len(tree['node_id']):,} nodes")
    # JSON inside <script>: '</' must not close the element early
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return (_PAGE.replace("__TITLE__", title).replace("__COLUMN__", str(COLUMN)).replace("__ROW__", str(ROW))
            .replace("__PAD__", str(PAD)).replace("__DATA__", payload))


def show(out: str | Path, task_id: str, path: str | Path | None = None, fmt: str | None = None,
         run_id: str | None = None, min_visits: int = 0, max_depth: int | None = None,
         columns: int | None = None) -> tuple[Path, int, int]:
    """Draw the tree of ``task_id`` in the store ``out`` to ``path``; return the path, the nodes drawn
    and the nodes after the filters.

    ``fmt`` defaults to the extension of ``path`` (``.html``, ``.svg``, ``.dot``), and
    ``path`` to ``tree-<task>.<fmt>``. ``columns`` bounds the breadth (:func:`summary`; 0:
    every node); default :data:`COLUMNS` for svg and dot, the window's width for the page
    (which holds every node and changes the breadth on request).

    Raises:
        ConfigError: an unknown format, negative filters.
        StoreError: see :func:`load_tree`.
    """
    if fmt is None:
        fmt = Path(path).suffix.lstrip(".") if path is not None and Path(path).suffix else "html"
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if min_visits < 0 or (max_depth is not None and max_depth < 0) or (columns is not None and columns < 0):
        raise ConfigError("--min-visits, --max-depth and --columns must be >= 0")
    tree = load_tree(out, task_id, run_id, min_visits, max_depth)
    total = len(tree["node_id"])
    if fmt == "html":
        text = render_html(tree, columns)
    else:
        tree = summary(tree, COLUMNS if columns is None else columns)
        text = (render_svg if fmt == "svg" else render_dot)(tree)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in task_id)
    target = Path(path) if path is not None else Path(f"tree-{safe}.{fmt}")
    write_text_atomic(target, text)
    return target, len(tree["node_id"]), total
