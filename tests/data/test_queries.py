"""The best-path query of docs/store.md, run through ``run_query``, against the trees the search built."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import treeq
from treeq.data.store import run_query
from treeq.envs.registry import make_env
from treeq.mcts import Tree, resolve_defaults, search
from treeq.mcts.tree import ROOT
from treeq.pipelines.config import SearchJobConfig
from treeq.pipelines.policies import make_hooks
from treeq.pipelines.search import run_search, task_rng

STORE_DOC = Path(treeq.__file__).parent / "docs" / "store.md"


def best_path_sql() -> str:
    text = STORE_DOC.read_text(encoding="utf-8")
    section = text[text.index("**Best path.**"):]
    return re.search(r"```sql\n(.*?)```", section, re.S).group(1)


def trees_of(job: SearchJobConfig) -> dict[str, Tree]:
    """The trees the job searched, rebuilt in this process (same seed, same tree)."""
    env = make_env(job.env, **job.env_kwargs)
    cfg = resolve_defaults(job.search, env)
    out = {}
    for task in list(env.load_tasks(job.tasks))[: job.limit]:
        rng = task_rng(job.seed, task.task_id)
        propose, evaluate = make_hooks(env, cfg, rng, job.evaluator, job.proposer)
        out[task.task_id] = search(env, env.reset(task, rng), cfg, rng, propose=propose, evaluate=evaluate).tree
    return out


def sql_paths(out: Path) -> dict[str, list[int]]:
    cols, rows = run_query(out, best_path_sql())
    assert cols[:3] == ["task_id", "step", "node_id"]
    paths: dict[str, list[int]] = {}
    for task_id, step, node_id, *_ in rows:
        assert step == len(paths.setdefault(task_id, []))
        paths[task_id].append(node_id)
    return paths


@pytest.mark.parametrize("solver", [True, False], ids=["solver", "no-solver"])
def test_best_path_query_is_tree_best_path_in_tree_mode(tmp_path, solver):
    from treeq.mcts import SearchConfig

    job = SearchJobConfig(env="game24", limit=4, search=SearchConfig(simulations=300, solver=solver), workers=1,
                          progress=False, out=str(tmp_path / "out"))
    run_search(job)
    trees = trees_of(job)
    paths = sql_paths(tmp_path / "out")
    assert sorted(paths) == sorted(trees)
    for task_id, tree in trees.items():
        assert paths[task_id] == tree.best_path(), task_id
        assert paths[task_id][1] == tree.best_child(ROOT)
    best = dict(run_query(tmp_path / "out", "SELECT task_id, best_action FROM trees")[1])
    for task_id, tree in trees.items():  # trees.best_action is the first step of the best path
        assert best[task_id] == tree.action_text(paths[task_id][1])


def test_best_path_query_follows_shared_states_in_graph_mode(tmp_path):
    """FrozenLake 8x8 in graph mode: the query and Tree.best_path agree; no state twice on a path."""
    from treeq.mcts import SearchConfig

    job = SearchJobConfig(env="gym:FrozenLake8x8-v1", env_kwargs={"is_slippery": False}, tasks="0:2",
                          search=SearchConfig(simulations=3000), workers=1, progress=False, out=str(tmp_path / "o"))
    run_search(job)
    trees = trees_of(job)
    assert run_query(tmp_path / "o", "SELECT DISTINCT backup FROM trees")[1] == [("max",)]
    paths = sql_paths(tmp_path / "o")
    for task_id, tree in trees.items():
        assert paths[task_id] == tree.best_path(), task_id
        keys = [tree.state_keys[r] for r in paths[task_id]]
        assert len(set(keys)) == len(keys) and len(keys) > 1


def small_graph_tree(with_cycle: bool) -> Tree:
    """A graph-mode tree whose best path reaches state C through a row that does not list C's
    children (row 4; they stand under C's shallowest row, 2); with ``with_cycle`` C's best
    child leads back to state B, already on the path, which ends it."""
    #       row: 0     1     2     3     4     5     6
    parent = [-1, 0, 0, 1, 1, 2] + ([2] if with_cycle else [])
    keys = ["A", "B", "C", "D", "C", "E"] + (["B"] if with_cycle else [])
    q = [0.9, 0.9, 0.5, 0.1, 0.8, 0.7] + ([0.95] if with_cycle else [])
    n = len(parent)
    kids = {r: [c for c in range(n) if parent[c] == r] for r in range(n)}
    columns = {
        "parent": parent, "action": [-1] + list(range(n - 1)), "depth": [0, 1, 1, 2, 2, 2, 2][:n],
        "visits": [10] * n, "value_sum": [10 * x for x in q], "prior": [1.0] * n, "reward": [0.0] * n,
        "terminal": [k in ("D", "E") for k in keys], "expanded": [bool(kids[r]) for r in range(n)],
        "child_start": [kids[r][0] if kids[r] else -1 for r in range(n)],
        "child_count": [len(kids[r]) for r in range(n)], "solved_v": [np.nan] * n, "feedback": [np.nan] * n,
    }
    return Tree(1.0, columns, states=keys, state_keys=keys, action_table=[f"a{i}" for i in range(n - 1)])


def test_best_path_query_continues_from_a_shared_states_listing_row(tmp_path):
    """Synthetic graph-mode trees written as rows: the query and Tree.best_path agree,
    including the jump to the listing row and the stop at a state already passed."""
    from treeq.data.store import TreeStore
    from treeq.mcts import SearchResult
    from treeq.pipelines.search import tree_columns, tree_row

    class Env:
        def render(self, state):
            return state

        def observe(self, state):
            return None

    store = TreeStore(tmp_path)
    expected = {}
    for task_id, cycle in (("plain", False), ("cycle", True)):
        tree = small_graph_tree(cycle)
        result = SearchResult(tree=tree, simulations=10, solved=False, stop_reason="budget", seconds=0.0, backup="max")
        store.write("nodes", "r", tree_columns(result, Env(), "r", task_id), task_id)
        store.write("trees", "r", tree_row("toy", "r", task_id, result), task_id)
        expected[task_id] = tree.best_path()
    assert expected == {"plain": [0, 1, 4, 5], "cycle": [0, 1, 4]}
    assert sql_paths(tmp_path) == expected
