"""export-dpo: the three pairing rules on a hand-built tree, the two formats, bad input."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow.parquet as pq
import pytest

from treeq.data.store import TreeStore
from treeq.errors import ConfigError
from treeq.pipelines.config import DPOConfig
from treeq.pipelines.dpo import Child, pairs_at

# node, parent, action, visits, q, proven, feedback, terminal, reward
ROWS = [
    (0, -1, None, 10, 0.6, None, None, False, 0.0),
    (1, 0, "a", 5, 0.9, None, 0.1, False, 0.0),
    (2, 0, "b", 3, 0.5, None, None, False, 0.0),
    (3, 0, "c", 2, 0.45, 0.0, None, True, 0.0),  # a wrong terminal itself
    (4, 0, "d", 0, None, None, None, False, 0.0),  # never explored
    (5, 1, "a1", 2, 1.0, 1.0, None, True, 1.0),  # the correct terminal below a
    (6, 2, "b1", 1, 0.0, 0.0, None, True, 0.0),  # a wrong terminal below b
]


def write_store(root, rows=ROWS, env=None):
    """The rows as task t of run r1 (with a trees row naming ``env`` where one is given)."""
    store = TreeStore(root)
    n = len(rows)
    if env is not None:
        store.write("trees", "r1", {"run_id": ["r1"], "task_id": ["t"], "env": [env], "simulations": [10],
                                    "nodes": [n], "root_value": [0.5], "best_action": ["a"], "solved": [True],
                                    "seconds": [0.0], "backup": ["mean"], "status": ["ok"], "error": [None]}, "t")
    store.write("nodes", "r1", {
        "run_id": ["r1"] * n, "task_id": ["t"] * n, "node_id": [r[0] for r in rows], "parent_id": [r[1] for r in rows],
        "depth": [0 if r[1] < 0 else (1 if r[1] == 0 else 2) for r in rows], "action": [r[2] for r in rows],
        "state_key": [f"k{r[0]}" for r in rows], "observation": [f"obs{r[0]}" for r in rows], "prior": [1.0] * n,
        "visits": [r[3] for r in rows], "value_sum": [0.0] * n, "q": [r[4] for r in rows], "reward": [r[8] for r in rows],
        "terminal": [r[7] for r in rows], "proven": [r[5] for r in rows], "feedback": [r[6] for r in rows],
    }, "t")
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    store.write("runs", "r1", {"run_id": ["r1"], "config": ["{}"], "versions": ["{}"], "seed": [0],
                               "started_at": [now], "ended_at": [now]})
    return root


def pairs(tmp_path, run_cli, *args):
    out = tmp_path / f"pairs{len(list(tmp_path.iterdir()))}.jsonl"
    res = run_cli("export-dpo", write_store(tmp_path / "s"), "--out", out, *args)
    assert res.rc == 0, res.err
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_agentq_mixes_feedback_and_keeps_theta(tmp_path, run_cli):
    """a scores .5*.9 + .5*.1 = .5, b .5, c 0: (a, b) differ by 0 < theta; (a, c) and (b, c) pair."""
    got = pairs(tmp_path, run_cli, "--rule", "agentq")
    assert {(r["chosen"], r["rejected"]) for r in got} == {("a", "c"), ("b", "c")}
    row = next(r for r in got if r["chosen"] == "a")
    assert row == {"prompt": "obs0", "chosen": "a", "rejected": "c", "task_id": "t", "node_id": 0, "q_chosen": 0.5,
                   "q_rejected": 0.0, "feedback_chosen": 0.1, "feedback_rejected": None, "visits_chosen": 5,
                   "visits_rejected": 2, "rule": "agentq"}
    assert all(r["q_chosen"] - r["q_rejected"] >= 0.1 for r in got)  # the values the rule compared


def test_agentprm_margin(tmp_path, run_cli):
    """Q .9, .5, 0 (c's proven 0 wins over its q .45): every pair clears delta .03; with delta .45,
    (a, b) falls (.9 - .5 = .4) and (a, c), (b, c) stay."""
    assert {(r["chosen"], r["rejected"]) for r in pairs(tmp_path, run_cli, "--rule", "agentprm")} == {
        ("a", "b"), ("a", "c"), ("b", "c")}
    got = pairs(tmp_path, run_cli, "--rule", "agentprm", "--delta", "0.45")
    assert {(r["chosen"], r["rejected"]) for r in got} == {("a", "c"), ("b", "c")}


def test_rstar_correct_against_wrong_terminals(tmp_path, run_cli):
    """Only a has a correct terminal below; b and c a wrong one: one chosen side, so up to four rejected."""
    got = pairs(tmp_path, run_cli, "--rule", "rstar")
    assert [(r["chosen"], r["rejected"]) for r in got] == [("a", "c"), ("a", "b")]


def test_conversational_format_and_parquet(tmp_path, run_cli):
    got = pairs(tmp_path, run_cli, "--format", "conversational")
    assert got[0]["prompt"] == [{"role": "user", "content": "obs0"}]
    assert got[0]["chosen"][0]["role"] == "assistant"
    out = tmp_path / "p.parquet"
    assert run_cli("export-dpo", tmp_path / "s", "--out", out).rc == 0
    assert set(pq.read_table(out).column_names) >= {"prompt", "chosen", "rejected", "q_chosen", "rule"}


def test_equal_texts_never_pair():
    cfg = DPOConfig(rule="agentprm")
    assert pairs_at([Child(1, "x", 1.0, 3), Child(2, "x", 0.0, 3)], cfg) == []


def test_bad_input(tmp_path, run_cli):
    write_store(tmp_path / "s")
    res = run_cli("export-dpo", tmp_path / "s", "--out", tmp_path / "p.csv")
    assert res.rc == 2 and ".parquet or .jsonl" in res.err
    res = run_cli("export-dpo", tmp_path / "s", "--out", tmp_path / "p.jsonl", "--min-visits", "100")
    assert res.rc == 2 and "no pair" in res.err
    with pytest.raises(ConfigError, match="rule"):
        DPOConfig(rule="best")
    res = run_cli("export-dpo", tmp_path / "s", "--out", tmp_path / "p.jsonl", "--theta", "1.5")
    assert res.rc == 2 and "theta must be in [0, 1]" in res.err


def test_rstar_follows_the_state_graph_in_graph_mode(tmp_path):
    """A shared state's children hang under one row: in graph mode 'a correct terminal below'
    follows state keys; a tree-mode store with the same rows follows parent_id only.

    r -> a (state X) -> c (correct terminal); r -> b (state Y) -> d (state X again, no rows
    under it) and -> e (wrong terminal). At b, only the state graph knows d leads to a win.
    """
    from treeq.pipelines.dpo import export_dpo

    # node, parent, action, key, visits, q, proven, terminal, reward
    rows = [(0, -1, None, "r", 10, 0.5, None, False, 0.0), (1, 0, "a", "X", 5, 0.9, None, False, 0.0),
            (2, 0, "b", "Y", 5, 0.4, None, False, 0.0), (3, 1, "c", "W", 3, 1.0, 1.0, True, 1.0),
            (4, 2, "d", "X", 2, 0.9, None, False, 0.0), (5, 2, "e", "L", 2, 0.0, 0.0, True, 0.0)]
    at_root = ("obs0", "a", "b")  # both modes: c is below a, e below b
    for backup, expect in (("max", {at_root, ("obs2", "d", "e")}), ("mean", {at_root})):
        root = tmp_path / backup
        store = TreeStore(root)
        n = len(rows)
        store.write("nodes", "r1", {
            "run_id": ["r1"] * n, "task_id": ["t"] * n, "node_id": [r[0] for r in rows],
            "parent_id": [r[1] for r in rows], "depth": [0, 1, 1, 2, 2, 2], "action": [r[2] for r in rows],
            "state_key": [r[3] for r in rows], "observation": [f"obs{r[0]}" for r in rows], "prior": [1.0] * n,
            "visits": [r[4] for r in rows], "value_sum": [0.0] * n, "q": [r[5] for r in rows],
            "reward": [r[8] for r in rows], "terminal": [r[7] for r in rows], "proven": [r[6] for r in rows],
            "feedback": [None] * n}, "t")
        store.write("trees", "r1", {"run_id": ["r1"], "task_id": ["t"], "env": ["x"], "simulations": [10],
                                    "nodes": [n], "root_value": [0.5], "best_action": ["a"], "solved": [True],
                                    "seconds": [0.0], "backup": [backup], "status": ["ok"], "error": [None]}, "t")
        out = tmp_path / f"{backup}.jsonl"
        export_dpo([root], out, DPOConfig(rule="rstar"))
        got = {(r["prompt"], r["chosen"], r["rejected"]) for r in map(json.loads, out.read_text().splitlines())}
        assert got == expect, backup


def test_proven_children_pair_without_visits(tmp_path):
    """A terminal child the solver proved on expansion (0 visits) is still paired."""
    from treeq.pipelines.dpo import export_dpo

    rows = [(0, -1, None, 4, 0.5, None, None, False, 0.0), (1, 0, "win", 0, None, 1.0, None, True, 1.0),
            (2, 0, "lose", 0, None, 0.0, None, True, 0.0), (3, 0, "open", 4, 0.5, None, None, False, 0.0)]
    root = write_store(tmp_path / "s", rows)
    out = tmp_path / "p.jsonl"
    export_dpo([root], out, DPOConfig(rule="agentq"))
    got = {(r["chosen"], r["rejected"]) for r in map(json.loads, out.read_text().splitlines())}
    assert got == {("win", "lose"), ("win", "open"), ("open", "lose")}


def test_margins_are_fractions_of_the_value_range(tmp_path):
    """Values from -10 to 10 (an env that cannot be built here: the range comes from the trees, 20 wide):
    theta 0.1 asks for 2 between the values, delta 0.03 for more than 0.6, and feedback in [0, 1] maps
    onto the range before it is mixed with Q."""
    from treeq.pipelines.dpo import export_dpo

    rows = [(0, -1, None, 10, 0.0, None, None, False, 0.0), (1, 0, "a", 4, 10.0, None, None, False, 0.0),
            (2, 0, "b", 3, 9.0, None, None, False, 0.0), (3, 0, "c", 3, -10.0, None, None, False, 0.0)]
    root = write_store(tmp_path / "s", rows, env="nowhere")

    def got(cfg, rows=None):
        out = tmp_path / "p.jsonl"
        export_dpo([rows or root], out, cfg)
        return {(r["chosen"], r["rejected"]): r for r in map(json.loads, out.read_text().splitlines())}

    assert set(got(DPOConfig(rule="agentq", theta=0.1))) == {("a", "c"), ("b", "c")}  # a - b = 1 < 2
    assert set(got(DPOConfig(rule="agentprm", delta=0.03))) == {("a", "b"), ("a", "c"), ("b", "c")}
    assert set(got(DPOConfig(rule="agentprm", delta=0.06))) == {("a", "c"), ("b", "c")}  # 1 < 1.2
    rows[2] = (2, 0, "b", 3, 9.0, None, 0.25, False, 0.0)  # feedback 0.25 of the range: -5
    mixed = got(DPOConfig(rule="agentq", theta=0.1, alpha=0.5), write_store(tmp_path / "f", rows, env="nowhere"))
    assert mixed[("a", "b")]["q_rejected"] == pytest.approx(0.5 * 9.0 + 0.5 * -5.0)
