"""Step datasets from hand-built tree stores: labels, visit threshold, merging, ownership, task split."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow.parquet as pq
import pytest

from treeq.data.store import TreeStore
from treeq.errors import ConfigError, StoreError
from treeq.prm.config import StepDatasetConfig
from treeq.prm.dataset import build_step_dataset, label_arrays, split_of

# One task's tree (tree mode):      root
#                                  /    \
#                   a (v=4, q=.75)       b (v=2, q=.2, proven 0)
#                    /        \              \
#     c (v=3, q=1.4 -> clip 1)  d (v=1, q=0)   e (v=0, no q)
TREE = [
    # node, parent, action, visits, q, proven
    (0, -1, None, 6, 0.5, None),
    (1, 0, "a", 4, 0.75, None),
    (2, 0, "b", 2, 0.2, 0.0),
    (3, 1, "c", 3, 1.4, None),
    (4, 1, "d", 1, 0.0, None),
    (5, 2, "e", 0, None, None),
]


def write_tree(root, task_id="t1", run_id="r1", rows=TREE, backup="mean", prompt="P", env="game24",
               observations=None):
    """One tree's store; ``observations``: node -> what the env answered (schema v3), None: a v2-like tree."""
    store = TreeStore(root)
    n = len(rows)
    depth = {}
    for node, parent, *_ in rows:
        depth[node] = 0 if parent < 0 else depth[parent] + 1
    store.write("nodes", run_id, {
        "run_id": [run_id] * n, "task_id": [task_id] * n, "node_id": [r[0] for r in rows],
        "parent_id": [r[1] for r in rows], "depth": [depth[r[0]] for r in rows], "action": [r[2] for r in rows],
        "state_key": [f"k{r[0]}" for r in rows], "observation": [prompt] * n, "prior": [1.0] * n,
        "visits": [r[3] for r in rows], "value_sum": [0.0] * n, "q": [r[4] for r in rows],
        "reward": [0.0] * n, "terminal": [False] * n, "proven": [r[5] for r in rows], "feedback": [None] * n,
        "step_observation": [None if observations is None else observations.get(r[0]) for r in rows],
    }, task_id)
    store.write("trees", run_id, {
        "run_id": [run_id], "task_id": [task_id], "env": [env], "simulations": [6], "nodes": [n],
        "root_value": [0.5], "best_action": ["a"], "solved": [True], "seconds": [0.1], "backup": [backup],
        "status": ["ok"], "error": [None],
    }, task_id)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    store.write("runs", run_id, {"run_id": [run_id], "config": [json.dumps({"env": env})], "versions": ["{}"],
                                 "seed": [0], "started_at": [now], "ended_at": [now]})
    return root


def test_paths_labels_and_ownership(tmp_path):
    """min_visits=1: the paths a-c, a-d and b; labels clipped, proven wins over q; a is owned once."""
    ds = build_step_dataset([write_tree(tmp_path)], StepDatasetConfig(min_visits=1, val_fraction=0.0))
    got = [(ex.steps, ex.labels, ex.owned, ex.visits) for ex in ds.train]
    assert got == [
        (["a", "c"], [0.75, 1.0], [True, True], [4, 3]),
        (["a", "d"], [0.75, 0.0], [False, True], [4, 1]),
        (["b"], [0.0], [True], [2]),
    ]
    assert ds.train[0].prompt == "P" and ds.rows == 6
    arrays = label_arrays(ds.train, 0.5)
    assert arrays["soft"].tolist() == [0.75, 1.0, 0.0, 0.0]
    assert arrays["hard"].tolist() == [True, True, False, False]
    assert arrays["depth"].tolist() == [0, 1, 1, 0]
    parent = arrays["parent"].tolist()  # a and b under the root, c and d under a
    assert parent[0] == parent[3] < 0 and parent[1] == parent[2] >= 0


def test_visit_threshold_cuts_below(tmp_path):
    """min_visits=3 keeps a (4) and c (3); b (2) and d (1) fall, and so does everything under them.
    With proven_steps, b (2 visits, proven) stays, and so does a proven step never visited."""
    ds = build_step_dataset([write_tree(tmp_path)], StepDatasetConfig(min_visits=3, val_fraction=0.0))
    assert [ex.steps for ex in ds.train] == [["a", "c"]]
    ds = build_step_dataset([write_tree(tmp_path)], StepDatasetConfig(min_visits=3, val_fraction=0.0,
                                                                      proven_steps=True))
    assert [ex.steps for ex in ds.train] == [["a", "c"], ["b"]]
    rows = [r if r[0] != 4 else (4, 1, "d", 0, 0.0, 0.0) for r in TREE]  # d: proven on expansion, never visited
    ds = build_step_dataset([write_tree(tmp_path / "p", rows=rows)],
                            StepDatasetConfig(min_visits=3, val_fraction=0.0, proven_steps=True))
    assert [ex.steps for ex in ds.train] == [["a", "c"], ["a", "d"], ["b"]]


def test_zero_visits_need_a_label(tmp_path):
    """min_visits=0 admits e only if it has a value: e has neither q nor proven, so b stays a leaf."""
    ds = build_step_dataset([write_tree(tmp_path)], StepDatasetConfig(min_visits=0, val_fraction=0.0))
    assert [ex.steps for ex in ds.train] == [["a", "c"], ["a", "d"], ["b"]]


def test_duplicate_paths_merge_visit_weighted(tmp_path):
    """The same task in two runs: one path per step sequence, label = visit-weighted mean, visits summed."""
    write_tree(tmp_path, run_id="r1")
    other = [(0, -1, None, 4, 0.5, None), (1, 0, "a", 4, 0.25, None)]
    write_tree(tmp_path, run_id="r2", rows=other)
    ds = build_step_dataset([tmp_path], StepDatasetConfig(min_visits=1, val_fraction=0.0))
    first = ds.train[0]
    assert first.steps == ["a", "c"]
    assert first.labels[0] == pytest.approx((4 * 0.75 + 4 * 0.25) / 8)
    assert first.visits[0] == 8
    assert len(ds.train) == 3


def test_split_is_by_task(tmp_path):
    """Every path of a task lands on the same side; the side is a stable function of task id and seed."""
    for i in range(12):
        write_tree(tmp_path, task_id=f"t{i}")
    cfg = StepDatasetConfig(min_visits=1, val_fraction=0.5, seed=3)
    ds = build_step_dataset([tmp_path], cfg)
    train_tasks = {ex.task_id for ex in ds.train}
    val_tasks = {ex.task_id for ex in ds.val}
    assert train_tasks and val_tasks and not train_tasks & val_tasks
    assert val_tasks == {f"t{i}" for i in range(12) if split_of(f"t{i}", 3, 0.5) == "val"}


def test_graph_mode_rows_are_paths(tmp_path):
    """Graph-mode trees are read the same way: a path follows parent_id from the root."""
    ds = build_step_dataset([write_tree(tmp_path, backup="max")], StepDatasetConfig(val_fraction=0.0))
    assert [ex.steps for ex in ds.train] == [["a", "c"], ["a", "d"], ["b"]]


def test_empty_and_foreign_inputs(tmp_path):
    """No qualifying step, a foreign schema version, a folder that is no store: one clear error each."""
    write_tree(tmp_path / "s")
    with pytest.raises(StoreError, match="no step has 100 or more visits"):
        build_step_dataset([tmp_path / "s"], StepDatasetConfig(min_visits=100))
    with pytest.raises(StoreError, match="not a treeq output directory"):
        build_step_dataset([tmp_path / "nothing"])
    shard = next((tmp_path / "s" / "nodes").rglob("*.parquet"))
    table = pq.read_table(shard)
    pq.write_table(table.replace_schema_metadata({b"treeq.schema_version": b"99"}), shard)
    with pytest.raises(StoreError, match="schema version 99"):
        build_step_dataset([tmp_path / "s"])
    with pytest.raises(ConfigError, match="min_visits"):
        StepDatasetConfig(min_visits=-1)


def test_stepwise_export(tmp_path):
    """The stepwise table: prompt, completions, soft labels and hard labels side by side."""
    from treeq.pipelines.prm import export_prm_data

    source = [str(write_tree(tmp_path / "s"))]
    cfg = StepDatasetConfig(val_fraction=0.0)
    path, n, steps = export_prm_data(source, tmp_path / "prm.parquet", cfg)
    rows = pq.read_table(path).to_pylist()
    assert n == len(rows) and steps == sum(len(r["completions"]) for r in rows)
    assert rows == build_step_dataset(source, cfg).stepwise_table().to_pylist()  # streamed = built whole
    assert rows[0]["prompt"] == "P" and rows[0]["completions"] == ["a", "c"]
    assert rows[0]["labels"] == [0.75, 1.0] and rows[0]["hard_labels"] == [True, True]
    jsonl, _, _ = export_prm_data(source, tmp_path / "prm.jsonl", cfg)
    assert json.loads(jsonl.read_text().splitlines()[2])["completions"] == ["b"]


def test_envs_declare_their_value_range():
    """Returns in [0, 1]: (0, 1). Gym envs with step costs or larger rewards: the span of Q* at their
    default gamma. OpenSpiel games whose utilities leave [0, 1]: the utility range."""
    from treeq.envs.registry import make_env

    assert make_env("game24").value_range == (0.0, 1.0)
    assert make_env("gym:FrozenLake-v1").value_range == (0.0, 1.0)
    taxi = make_env("gym:Taxi-v4")
    q = taxi.q_star(taxi.default_gamma)
    assert taxi.value_range == (q.min(), q.max()) == (pytest.approx(-13.1114, abs=1e-4), 20.0)
    pytest.importorskip("pyspiel")
    assert make_env("openspiel:catch").value_range == (-1.0, 1.0)


def test_taxi_labels_spread_over_its_value_range(tmp_path):
    """Taxi's values run from about -20 to 20: scaled by the env's range, most labels lie strictly
    between 0 and 1 (clipped, 93% of them were 0 or 1)."""
    from treeq.cli import main
    from treeq.envs.registry import make_env

    assert main(["search", "--env", "gym:Taxi-v4", "--tasks", "0:3", "--simulations", "1000", "--workers", "1",
                 "--no-progress", "--out", str(tmp_path / "taxi")]) == 0
    ds = build_step_dataset([tmp_path / "taxi"], StepDatasetConfig(val_fraction=0.0))
    assert ds.value_ranges == {"gym:Taxi-v4": make_env("gym:Taxi-v4").value_range}
    soft = label_arrays(ds.train, 0.5)["soft"]
    assert ((soft > 0) & (soft < 1)).mean() > 0.8 and (soft == 1).mean() < 0.05
    assert 0.2 < (soft > 0.5).mean() < 0.8


def test_undeclared_range_comes_from_the_trees(tmp_path):
    """An env that cannot be built here: its rows' lowest and highest values, widened to hold [0, 1]."""
    from treeq.prm.dataset import value_ranges

    rows = [(0, -1, None, 6, 0.5, None), (1, 0, "a", 4, 3.0, None), (2, 0, "b", 2, -2.0, None),
            (3, 1, "c", 3, 0.5, None)]
    write_tree(tmp_path / "wide", rows=rows, env="nowhere")
    assert value_ranges([tmp_path / "wide"]) == {"nowhere": (-2.0, 3.0)}
    ds = build_step_dataset([tmp_path / "wide"], StepDatasetConfig(val_fraction=0.0))
    assert [(ex.steps, ex.labels) for ex in ds.train] == [(["a", "c"], [1.0, 0.5]), (["b"], [0.0])]
    narrow = [(0, -1, None, 6, 0.5, None), (1, 0, "a", 4, 0.75, None), (2, 0, "b", 2, 0.25, None)]
    write_tree(tmp_path / "narrow", rows=narrow, env="nowhere")
    assert value_ranges([tmp_path / "narrow"]) == {"nowhere": (0.0, 1.0)}  # values in [0, 1] keep their labels


OBS = {1: "A", 2: "B", 3: "C", 4: "D", 5: "E"}


def test_steps_read_each_action_then_its_observation(tmp_path):
    """Trees that record the env's answers (schema v3): a step is 'action\\nobservation', the
    dataset says so; --no-observations reads actions only; the stepwise export carries them."""
    from treeq.pipelines.prm import export_prm_data

    source = [write_tree(tmp_path / "s", env="blocksworld", observations=OBS)]
    ds = build_step_dataset(source, StepDatasetConfig(val_fraction=0.0))
    assert ds.step_format == "action+observation"
    assert [ex.steps for ex in ds.train] == [["a\nA", "c\nC"], ["a\nA", "d\nD"], ["b\nB"]]
    assert [ex.labels for ex in ds.train] == [[0.75, 1.0], [0.75, 0.0], [0.0]]  # labels as without them
    plain = build_step_dataset(source, StepDatasetConfig(val_fraction=0.0, observations=False))
    assert plain.step_format == "action" and [ex.steps for ex in plain.train] == [["a", "c"], ["a", "d"], ["b"]]
    path, _, _ = export_prm_data(source, tmp_path / "rows.parquet", StepDatasetConfig(val_fraction=0.0))
    assert pq.read_table(path).to_pylist()[0]["completions"] == ["a\nA", "c\nC"]


def test_trees_with_and_without_observations_do_not_mix(tmp_path):
    """A tree from before schema v3 (no observations) beside a newer one: one line naming both tasks,
    and no export file; --no-observations reads both as actions."""
    from treeq.pipelines.prm import export_prm_data

    old = write_tree(tmp_path / "old", task_id="old", run_id="r0", env="blocksworld")
    new = write_tree(tmp_path / "new", task_id="new", run_id="r1", env="blocksworld", observations=OBS)
    with pytest.raises(StoreError, match=r"task 'new' records .* task 'old' does not .*--no-observations"):
        build_step_dataset([old, new], StepDatasetConfig(val_fraction=0.0))
    with pytest.raises(StoreError, match="before schema v3"):
        export_prm_data([old, new], tmp_path / "rows.parquet", StepDatasetConfig(val_fraction=0.0))
    assert not (tmp_path / "rows.parquet").exists()
    both = build_step_dataset([old, new], StepDatasetConfig(val_fraction=0.0, observations=False))
    assert both.step_format == "action" and len(both.train) == 6


def test_step_text_and_its_action():
    from treeq.prm.format import step_action, step_text

    assert step_text("move", None) == "move" and step_text("move", "You moved.\nA room.") == "move\nYou moved.\nA room."
    assert step_action("move\nYou moved.\nA room.", "action+observation") == "move"
    assert step_action("3 + 5 = 8\n", "action") == "3 + 5 = 8\n"  # actions only: the text is the action
    with pytest.raises(ConfigError, match="newline"):
        step_text("two\nlines", "seen")


def test_optimal_labels_mark_the_steps_that_keep_the_best_value(tmp_path):
    """--labels optimal: 1 where a step's value is its best sibling's (and above 0), else 0.
    Root: a (.75) beats b (proven 0); under a: c (1.4, clipped to 1) beats d (0); e has no value."""
    ds = build_step_dataset([write_tree(tmp_path)], StepDatasetConfig(val_fraction=0.0, labels="optimal"))
    assert [ex.steps for ex in ds.train] == [["a", "c"], ["a", "d"], ["b"]]
    assert [ex.labels for ex in ds.train] == [[1.0, 1.0], [1.0, 0.0], [0.0]]
    # a state whose every step is worth 0 has no optimal step (the task is lost there)
    lost = [(0, -1, None, 2, 0.0, None), (1, 0, "x", 1, 0.0, 0.0), (2, 0, "y", 1, 0.0, 0.0)]
    ds = build_step_dataset([write_tree(tmp_path / "lost", rows=lost)], StepDatasetConfig(val_fraction=0.0,
                                                                                         labels="optimal"))
    assert [ex.labels for ex in ds.train] == [[0.0], [0.0]]
    with pytest.raises(ConfigError, match="labels must be value or optimal"):
        StepDatasetConfig(labels="q")
