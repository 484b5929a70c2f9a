"""Draw one searched tree (``show``): a self-contained HTML page, an SVG file or Graphviz DOT.

Layout: a tidy tree, depth down the page, each leaf its own column in depth-first order
(children in node-id order) and each inner node centred over its children. A node's area
follows its visits, its colour its value ``coalesce(proven, q)`` (red low, green high;
proven nodes ringed), and the best path (from the root, the child with the highest
value, ties to more visits: ``trees.best_action``'s rule) is drawn thick.

The HTML page draws on a canvas from the rows embedded as JSON (no network, no library):
it renders trees of tens of thousands of nodes, pans (drag) and zooms (wheel), shows a
node's action, value, visits, prior and depth on hover, and has a depth and a visit
filter. ``--max-depth`` and ``--min-visits`` filter before drawing in every format
(a node whose parent is filtered out goes with it). The SVG is static (labels in
``<title>`` elements, shown as tooltips); DOT labels each edge with its action.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from ..data.store import connect, write_text_atomic
from ..errors import ConfigError, StoreError

__all__ = ["FORMATS", "load_tree", "layout", "render_html", "render_svg", "render_dot", "show"]

FORMATS = ("html", "svg", "dot")


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
    for i, (node, parent, depth, visits) in enumerate(zip(cols["node_id"], cols["parent_id"], cols["depth"],
                                                        cols["visits"])):
        if parent < 0 or (parent in keep and visits >= min_visits and (max_depth is None or depth <= max_depth)):
            keep.add(node)
    idx = [i for i, n in enumerate(cols["node_id"]) if n in keep]
    return {k: [v[i] for i in idx] for k, v in cols.items()} | {"run_id": run_id, "task_id": task_id}


def layout(tree: dict[str, list]) -> tuple[list[float], list[int], list[bool]]:
    """x (leaf columns, inner nodes centred), y (depth) and best-path flags of every row."""
    nodes, parents = tree["node_id"], tree["parent_id"]
    index = {n: i for i, n in enumerate(nodes)}
    children: list[list[int]] = [[] for _ in nodes]
    for i, p in enumerate(parents):
        if p in index:
            children[index[p]].append(i)
    value = [pv if pv is not None else q for pv, q in zip(tree["proven"], tree["q"])]
    x = [0.0] * len(nodes)
    next_leaf = 0.0
    order: list[int] = []  # post-order without recursion
    stack = [(0, False)] if nodes else []
    while stack:
        i, expanded = stack.pop()
        if expanded:
            order.append(i)
            continue
        stack.append((i, True))
        stack.extend((c, False) for c in reversed(children[i]))
    for i in order:
        if children[i]:
            x[i] = (x[children[i][0]] + x[children[i][-1]]) / 2
        else:
            x[i] = next_leaf
            next_leaf += 1.0
    best = [False] * len(nodes)
    i = 0
    while nodes:
        best[i] = True
        kids = [c for c in children[i] if value[c] is not None]
        if not kids:
            break
        i = max(kids, key=lambda c: (value[c], tree["visits"][c], -nodes[c]))
    return x, list(tree["depth"]), best


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


def render_svg(tree: dict[str, list]) -> str:
    """A static SVG drawing (every node a circle with a ``<title>`` tooltip)."""
    x, y, best = layout(tree)
    n = len(x)
    lo, hi = _value_range(tree)
    top = max(tree["visits"] or [1]) or 1
    dx, dy, pad = 14.0, 60.0, 20.0
    width, height = pad * 2 + dx * (max(x or [0]) + 1), pad * 2 + dy * (max(y or [0]) + 1)
    index = {nd: i for i, nd in enumerate(tree["node_id"])}
    px = [pad + dx * xi + dx / 2 for xi in x]
    py = [pad + dy * yi + dy / 4 for yi in y]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif">',
           f'<title>treeq: task {html.escape(tree["task_id"])}, run {html.escape(tree["run_id"])}, {n} nodes</title>']
    for i, p in enumerate(tree["parent_id"]):
        j = index.get(p)
        if j is not None:
            w = 3 if best[i] and best[j] else 1
            out.append(f'<line x1="{px[j]:.1f}" y1="{py[j]:.1f}" x2="{px[i]:.1f}" y2="{py[i]:.1f}" '
                       f'stroke="{"#1a73e8" if w == 3 else "#c0c4c8"}" stroke-width="{w}"/>')
    for i in range(n):
        v = _value(tree, i)
        r = 2 + 8 * math.sqrt(tree["visits"][i] / top)
        ring = ' stroke="#000" stroke-width="1.5"' if tree["proven"][i] is not None else ""
        tip = html.escape(f'{tree["action"][i] or "(root)"}\nvalue {v if v is None else round(v, 4)}, '
                          f'visits {tree["visits"][i]}, prior {round(tree["prior"][i] or 0.0, 4)}, depth {y[i]}'
                          + (", proven" if tree["proven"][i] is not None else ""))
        out.append(f'<circle cx="{px[i]:.1f}" cy="{py[i]:.1f}" r="{r:.1f}" fill="{_colour(v, lo, hi)}"{ring}>'
                   f'<title>{tip}</title></circle>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def render_dot(tree: dict[str, list]) -> str:
    """Graphviz DOT: nodes labelled with value and visits, edges with their action; the best path bold."""
    _, _, best = layout(tree)
    lines = [f'digraph "{tree["task_id"]}" {{', "  node [shape=circle, style=filled, fontsize=9];"]
    lo, hi = _value_range(tree)
    for i, node in enumerate(tree["node_id"]):
        v = _value(tree, i)
        t = 0.5 if v is None or hi <= lo else (v - lo) / (hi - lo)
        label = f"{'-' if v is None else f'{v:.3f}'}\\n{tree['visits'][i]}"
        lines.append(f'  n{node} [label="{label}", fillcolor="{t / 3:.3f} 0.6 0.9"'
                     + (", penwidth=2" if tree["proven"][i] is not None else "") + "];")
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
#bar{position:fixed;top:0;left:0;right:0;padding:6px 10px;background:#fff;border-bottom:1px solid #ddd;z-index:2}
#tip{position:fixed;pointer-events:none;background:#fff;border:1px solid #999;padding:4px 6px;white-space:pre;display:none;z-index:3}
canvas{position:fixed;left:0}
</style></head><body>
<div id="bar"><b>__TITLE__</b> &nbsp; <span id="count"></span> &nbsp;
depth &le; <input id="depth" type="range" min="0" max="0" value="0"> <span id="depthv"></span> &nbsp;
visits &ge; <input id="visits" type="number" min="0" value="0" style="width:6em"> &nbsp;
<span style="color:#666">area: visits, colour: value (red low, green high), ring: proven, blue: best path; drag to pan, wheel to zoom</span></div>
<canvas id="c"></canvas><div id="tip"></div>
<script>
const T = __DATA__;
const n = T.x.length, cv = document.getElementById('c'), g = cv.getContext('2d');
const idx = new Map(); T.node.forEach((v, i) => idx.set(v, i));
const par = T.parent.map(p => idx.has(p) ? idx.get(p) : -1);
const vals = T.value.filter(v => v !== null), lo = Math.min(...vals, 0), hi = Math.max(...vals, 1);
const vmax = Math.max(1, ...T.visits);
const maxDepth = Math.max(0, ...T.depth);
const dEl = document.getElementById('depth'), vEl = document.getElementById('visits');
dEl.max = maxDepth; dEl.value = maxDepth;
const W0 = 14 * (Math.max(0, ...T.x) + 1), H0 = 60 * (maxDepth + 1);
let sx = Math.min(1.5, (innerWidth - 40) / W0), sy = Math.max(sx, Math.min(1.5, (innerHeight - 120) / H0)), ox = 20, oy = 20, shown = [];
const X = i => ox + sx * (14 * T.x[i] + 7), Y = i => oy + sy * (60 * T.depth[i] + 15);
function colour(v){ if (v === null) return '#9aa0a6'; const t = hi > lo ? (v - lo) / (hi - lo) : 0.5; return 'hsl(' + Math.round(120 * t) + ',70%,45%)'; }
function visible(){
  const md = +dEl.value, mv = +vEl.value, ok = new Uint8Array(n);
  for (let i = 0; i < n; i++) ok[i] = (par[i] < 0 || ok[par[i]]) && T.depth[i] <= md && (par[i] < 0 || T.visits[i] >= mv) ? 1 : 0;
  return ok;
}
function draw(){
  const bar = document.getElementById('bar').offsetHeight;
  cv.style.top = bar + 'px'; cv.width = innerWidth; cv.height = innerHeight - bar;
  g.clearRect(0, 0, cv.width, cv.height);
  const ok = visible(), k = Math.min(2, Math.max(0.35, sx)); shown = [];
  for (let i = 0; i < n; i++) { const p = par[i]; if (p < 0 || !ok[i]) continue;
    const b = T.best[i] && T.best[p]; g.strokeStyle = b ? '#1a73e8' : '#c0c4c8'; g.lineWidth = b ? 3 : 1;
    g.beginPath(); g.moveTo(X(p), Y(p)); g.lineTo(X(i), Y(i)); g.stroke(); }
  for (let i = 0; i < n; i++) { if (!ok[i]) continue; shown.push(i);
    const r = (1.5 + 7 * Math.sqrt(T.visits[i] / vmax)) * k;
    g.fillStyle = colour(T.value[i]); g.beginPath(); g.arc(X(i), Y(i), r, 0, 6.2832); g.fill();
    if (T.proven[i]) { g.strokeStyle = '#000'; g.lineWidth = 1; g.stroke(); } }
  document.getElementById('count').textContent = shown.length + ' of ' + n + ' nodes';
  document.getElementById('depthv').textContent = dEl.value;
}
let drag = null;
cv.onmousedown = e => drag = [e.clientX - ox, e.clientY - oy];
onmouseup = () => drag = null;
cv.onmousemove = e => {
  if (drag) { ox = e.clientX - drag[0]; oy = e.clientY - drag[1]; draw(); return; }
  const rect = cv.getBoundingClientRect(), mx = e.clientX - rect.left, my = e.clientY - rect.top;
  const tip = document.getElementById('tip');
  let best = -1, bd = 1e18;
  for (const i of shown) { const dx = X(i) - mx, dy = Y(i) - my, d = dx * dx + dy * dy; if (d < bd) { bd = d; best = i; } }
  if (best < 0 || bd > 144) { tip.style.display = 'none'; return; }
  tip.style.display = 'block'; tip.style.left = (e.clientX + 12) + 'px'; tip.style.top = (e.clientY + 12) + 'px';
  const v = T.value[best];
  tip.textContent = (T.action[best] === null ? '(root)' : T.action[best]) + '\\nvalue ' + (v === null ? '-' : v.toFixed(4)) +
    (T.proven[best] ? ' (proven)' : '') + '\\nvisits ' + T.visits[best] + ', prior ' + T.prior[best].toFixed(4) + ', depth ' + T.depth[best];
};
cv.onwheel = e => { e.preventDefault(); const f = e.deltaY < 0 ? 1.25 : 1 / 1.25, rect = cv.getBoundingClientRect();
  const mx = e.clientX - rect.left, my = e.clientY - rect.top;
  ox = mx - (mx - ox) * f; oy = my - (my - oy) * f; sx *= f; sy *= f; draw(); };
dEl.oninput = draw; vEl.oninput = draw; onresize = draw;
draw();
</script></body></html>
"""


def render_html(tree: dict[str, list]) -> str:
    """The self-contained interactive page (canvas, rows embedded as JSON)."""
    x, y, best = layout(tree)
    data = {
        "node": tree["node_id"], "parent": tree["parent_id"], "depth": y, "x": x, "best": [int(b) for b in best],
        "visits": tree["visits"], "value": [_value(tree, i) for i in range(len(x))],
        "proven": [int(p is not None) for p in tree["proven"]], "prior": [p or 0.0 for p in tree["prior"]],
        "action": tree["action"],
    }
    title = html.escape(f"task {tree['task_id']} (run {tree['run_id']}), {len(x):,} nodes")
    # JSON inside <script>: '</' must not close the element early
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return _PAGE.replace("__TITLE__", title).replace("__DATA__", payload)


def show(out: str | Path, task_id: str, path: str | Path | None = None, fmt: str | None = None,
         run_id: str | None = None, min_visits: int = 0, max_depth: int | None = None) -> tuple[Path, int]:
    """Draw the tree of ``task_id`` in the store ``out`` to ``path``; return the path and the nodes drawn.

    ``fmt`` defaults to the extension of ``path`` (``.html``, ``.svg``, ``.dot``), and
    ``path`` to ``tree-<task>.<fmt>``.

    Raises:
        ConfigError: an unknown format, negative filters.
        StoreError: see :func:`load_tree`.
    """
    if fmt is None:
        fmt = Path(path).suffix.lstrip(".") if path is not None and Path(path).suffix else "html"
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if min_visits < 0 or (max_depth is not None and max_depth < 0):
        raise ConfigError("--min-visits and --max-depth must be >= 0")
    tree = load_tree(out, task_id, run_id, min_visits, max_depth)
    render = {"html": render_html, "svg": render_svg, "dot": render_dot}[fmt]
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in task_id)
    target = Path(path) if path is not None else Path(f"tree-{safe}.{fmt}")
    write_text_atomic(target, render(tree))
    return target, len(tree["node_id"])
