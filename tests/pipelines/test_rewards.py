"""export-rewards: every estimator column on hand-made trajectories and trees, replays, bad input."""

from __future__ import annotations

import datetime as dt
import json
import math
from fractions import Fraction

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from treeq.data.store import TreeStore
from treeq.envs.countdown import Game24Env

EPS = 1e-6

# A searched tree (gamma 1): A -x-> B -z-> D (a proven win, reward 1), A -y-> C (a leaf).
# node, parent, action, state key, visits, q, proven, terminal, reward
NODES = [
    (0, -1, None, "A", 10, 0.5, None, False, 0.0),
    (1, 0, "x", "B", 6, 0.6, None, False, 0.0),
    (2, 0, "y", "C", 4, 0.35, None, False, 0.0),
    (3, 1, "z", "D", 3, 1.0, 1.0, True, 1.0),
]
# Two trajectories of group g: A -x-> B -z-> D (rewards 0, 1) and A -y-> C -w-> E (0, 0).
STEPS = [
    ("g/0", "g", 0, "A", "B", "x", 0.0, False), ("g/0", "g", 1, "B", "D", "z", 1.0, True),
    ("g/1", "g", 0, "A", "C", "y", 0.0, False), ("g/1", "g", 1, "C", "E", "w", 0.0, True),
]


def write_tree(root, backup="mean"):
    store = TreeStore(root)
    n = len(NODES)
    store.write("nodes", "r1", {
        "run_id": ["r1"] * n, "task_id": ["t"] * n, "node_id": [r[0] for r in NODES],
        "parent_id": [r[1] for r in NODES], "depth": [0, 1, 1, 2], "action": [r[2] for r in NODES],
        "state_key": [r[3] for r in NODES], "observation": [f"obs {r[3]}" for r in NODES], "prior": [1.0] * n,
        "visits": [r[4] for r in NODES], "value_sum": [r[4] * r[5] for r in NODES], "q": [r[5] for r in NODES],
        "reward": [r[8] for r in NODES], "terminal": [r[7] for r in NODES], "proven": [r[6] for r in NODES],
        "feedback": [None] * n,
    }, "t")
    store.write("trees", "r1", {"run_id": ["r1"], "task_id": ["t"], "env": ["game24"], "simulations": [10],
                                "nodes": [n], "root_value": [0.5], "best_action": ["x"], "solved": [True],
                                "seconds": [0.1], "backup": [backup], "status": ["ok"], "error": [None]})
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    store.write("runs", "r1", {"run_id": ["r1"], "config": [json.dumps({"search": {"gamma": 1.0}})],
                               "versions": ["{}"], "seed": [0], "started_at": [now], "ended_at": [now]})
    return root


def write_steps(path, steps=STEPS, drop=()):
    cols = {"trajectory_id": [s[0] for s in steps], "group_id": [s[1] for s in steps], "step": [s[2] for s in steps],
            "state_key": [s[3] for s in steps], "next_state_key": [s[4] for s in steps],
            "action": [s[5] for s in steps], "reward": [s[6] for s in steps], "terminated": [s[7] for s in steps],
            "observation": [f"obs {s[3]}" for s in steps]}
    pq.write_table(pa.table({k: v for k, v in cols.items() if k not in drop}), path)
    return path


def export(run_cli, tmp_path, *args, source=None):
    out = tmp_path / f"rw{len(list(tmp_path.iterdir()))}.parquet"
    src = source or write_steps(tmp_path / "steps.parquet")
    res = run_cli("export-rewards", src, "--out", out, "--no-progress", *args)
    assert res.rc == 0, res.err
    return pq.read_table(out).to_pylist(), res


def test_group_estimators_and_layout(tmp_path, run_cli):
    rows, res = export(run_cli, tmp_path, "--gamma", "0.5")
    assert [r["trajectory_id"] for r in rows] == ["g/0", "g/0", "g/1", "g/1"]
    assert list(rows[0]) == ["trajectory_id", "group_id", "step", "state_key", "action", "reward",
                             "grpo", "gigpo", "loop", "turn"]
    # R = [1, 0]: grpo +-0.5 / (std 0.7071068 + eps); loop +-1
    a = 0.5 / (math.sqrt(0.5) + EPS)
    assert [r["grpo"] for r in rows] == pytest.approx([a, a, -a, -a])
    assert [r["loop"] for r in rows] == pytest.approx([1.0, 1.0, -1.0, -1.0])
    # turn, gamma 0.5: [0 + 0.5 * 1, 1] and [0, 0]
    assert [r["turn"] for r in rows] == pytest.approx([0.5, 1.0, 0.0, 0.0])
    # gigpo: episode rows [1, 1, 0, 0] -> +-0.5 / (0.5773503 + eps); anchor A holds {0.5, 0} -> +-0.25 / (0.3535534 + eps)
    e, s = 0.5 / (math.sqrt(1 / 3) + EPS), 0.25 / (math.sqrt(0.125) + EPS)
    assert [r["gigpo"] for r in rows] == pytest.approx([e + s, e, -e - s, -e])
    assert "wrote 4 steps" in res.out


def test_tree_values_mean_backup(tmp_path, run_cli):
    """mcts_q = Q(s,a) - V(s); gae from tree values (gamma 1, lambda 0.5), worked out by hand.

    V(A) = (6 * 0.6 + 4 * 0.35) / 10 = 0.5 (tried actions, visit-weighted); V(B) = 1 (its
    one child, proven); V(C) = 0.35 (a leaf: its own value). (C, w) was never tried.
    """
    rows, res = export(run_cli, tmp_path, "--estimators", "mcts_q,gae", "--trees", write_tree(tmp_path / "t"),
                       "--gamma", "1", "--lam", "0.5")
    assert [r["mcts_q"] for r in rows] == pytest.approx([0.1, 0.0, -0.15, None])
    # g/0: delta = [1 - 0.5, 1 + 0 - 1] = [0.5, 0]; g/1: delta = [0.35 - 0.5, 0 - 0.35] -> A_0 = -0.15 + 0.5 * -0.35
    assert [r["gae"] for r in rows] == pytest.approx([0.5, 0.0, -0.325, -0.35])
    assert "mcts_q 3/4" in res.out


def test_tree_values_max_backup(tmp_path, run_cli):
    """Graph-mode trees: V(A) is the max over tried actions, 0.6."""
    rows, _ = export(run_cli, tmp_path, "--estimators", "mcts_q", "--trees", write_tree(tmp_path / "t", "max"))
    assert [r["mcts_q"] for r in rows] == pytest.approx([0.0, 0.0, -0.25, None])


def test_gae_bootstraps_a_cut_trajectory(tmp_path, run_cli):
    """A trajectory cut before its end takes V of the state it reached (next_state_key) as its tail."""
    steps = [("c/0", "c", 0, "A", "B", "x", 0.0, False)]
    src = write_steps(tmp_path / "cut.parquet", steps)
    rows, _ = export(run_cli, tmp_path, "--estimators", "gae", "--trees", write_tree(tmp_path / "t"), "--gamma", "1",
                     source=src)
    assert rows[0]["gae"] == pytest.approx(0.0 + 1.0 - 0.5)  # r + V(B) - V(A)
    rows, _ = export(run_cli, tmp_path, "--estimators", "gae", "--trees", tmp_path / "t",
                     source=write_steps(tmp_path / "cut2.parquet", steps, drop=("next_state_key",)))
    assert rows[0]["gae"] is None  # the tail value is unknown


@pytest.fixture
def game24_rollouts(tmp_path, run_cli):
    out = tmp_path / "r.parquet"
    assert run_cli("rollouts", "--limit", "2", "--group-size", "3", "--out", out, "--no-progress").rc == 0
    return out


def _win_share(env, start_key: str, actions: list[str]) -> Fraction:
    """Share of the legal actions, after ``actions`` from the start keyed ``start_key``, that end in 24."""
    state = env.reset(env.task_from_text(start_key.split("left=")[1]))
    for a in actions:
        state = env.step(state, a, None).state
    legal = env.legal_actions(state)
    return Fraction(sum(env.step(state, a, None).reward >= 1 for a in legal), len(legal))


def test_mc_replays_the_rollouts(tmp_path, run_cli, game24_rollouts):
    """mc: K rollouts after (s_t, a_t); at the last step it is the reward itself, one step before
    it estimates the share of winning last moves (checked within 4 standard errors)."""
    k = 400
    rows, _ = export(run_cli, tmp_path, "--estimators", "mc,gae,turn", "--mc-rollouts", str(k), source=game24_rollouts)
    env = Game24Env()
    assert all(r["mc"] == r["reward"] for r in rows if r["step"] == 2)
    for r in (r for r in rows if r["step"] == 1):
        traj = [x for x in rows if x["trajectory_id"] == r["trajectory_id"]]
        p = float(_win_share(env, traj[0]["state_key"], [traj[0]["action"], traj[1]["action"]]))
        assert abs(r["mc"] - p) <= 4 * math.sqrt(p * (1 - p) / k) + 1e-12, (r, p)
    assert all(r["gae"] is not None for r in rows)  # V from Monte Carlo: every state has one
    again, _ = export(run_cli, tmp_path, "--estimators", "mc,gae,turn", "--mc-rollouts", str(k),
                      source=game24_rollouts)
    assert again == rows  # same seed, same numbers


def test_grpo_step_normalises_over_step_rows(tmp_path, run_cli):
    """verl-agent's multi-turn GRPO: each step row carries its trajectory's return; rows [1, 1, 0, 0]
    have mean 0.5 and sample std sqrt(1/3), where grpo over trajectories ([1, 0]) has sqrt(1/2)."""
    rows, _ = export(run_cli, tmp_path, "--estimators", "grpo,grpo_step")
    a = 0.5 / (math.sqrt(1 / 3) + EPS)
    assert [r["grpo_step"] for r in rows] == pytest.approx([a, a, -a, -a])
    assert rows[0]["grpo"] != pytest.approx(rows[0]["grpo_step"])


def test_mc_adv_is_q_minus_v(tmp_path, run_cli, game24_rollouts):
    """mc_adv = Q_mc(s_t, a_t) - V_mc(s_t): at the last step Q is the reward itself and V(s_2) estimates
    the share of winning last moves (within 4 standard errors)."""
    k = 400
    rows, _ = export(run_cli, tmp_path, "--estimators", "mc,mc_adv", "--mc-rollouts", str(k), source=game24_rollouts)
    env = Game24Env()
    for r in (r for r in rows if r["step"] == 2):
        traj = [x for x in rows if x["trajectory_id"] == r["trajectory_id"]]
        p = float(_win_share(env, traj[0]["state_key"], [traj[0]["action"], traj[1]["action"]]))
        v = r["mc"] - r["mc_adv"]
        assert r["mc"] == r["reward"]
        assert abs(v - p) <= 4 * math.sqrt(p * (1 - p) / k) + 1e-12, (r, p)
    assert all(-1 <= r["mc_adv"] <= 1 for r in rows)


def test_mc_refuses_an_edited_file(tmp_path, run_cli, game24_rollouts):
    table = pq.read_table(game24_rollouts)
    actions = table.column("action").to_pylist()
    actions[1] = "4 + 4 = 8 (left: 8)"
    pq.write_table(table.set_column(table.schema.get_field_index("action"), "action", pa.array(actions)),
                   tmp_path / "edited.parquet")
    res = run_cli("export-rewards", tmp_path / "edited.parquet", "--estimators", "mc", "--out", tmp_path / "x.parquet",
                  "--no-progress")
    assert res.rc == 2 and "differs from a replay" in res.err and len(res.err.splitlines()) == 1
    assert not (tmp_path / "x.parquet").exists()
    plain = write_steps(tmp_path / "plain.parquet")  # no rollouts settings in its metadata
    res = run_cli("export-rewards", plain, "--estimators", "mc", "--out", tmp_path / "x.parquet", "--no-progress")
    assert res.rc == 2 and "no rollouts settings" in res.err


def test_prm_column_is_the_prm_score(tmp_path, run_cli, game24_rollouts):
    pytest.importorskip("torch")
    from treeq.pipelines.prm import _save_model
    from treeq.prm.config import TinyModelConfig
    from treeq.prm.model import PRMMeta, score_batch, tiny_model, train_tokenizer

    table = pq.read_table(game24_rollouts).to_pylist()
    tok = train_tokenizer([r["observation"] + r["action"] for r in table] * 4, 300)
    model = tiny_model(tok, TinyModelConfig(hidden_size=32, layers=2, heads=2, vocab_size=300), seed=0).eval()
    prm_dir = tmp_path / "prm"
    prm_dir.mkdir()
    _save_model(prm_dir, model, tok, PRMMeta(separator="<|step|>", label_mode="soft", loss="bce", threshold=0.5,
                                             data_hash="x", base_model="tiny", max_length=256))
    rows, _ = export(run_cli, tmp_path, "--estimators", "prm", "--prm", prm_dir, source=game24_rollouts)
    first = [r for r in table if r["trajectory_id"] == table[0]["trajectory_id"]]
    (expect,) = score_batch(model, tok, [(first[0]["observation"], [r["action"] for r in first])], 256)
    assert [r["prm"] for r in rows[: len(first)]] == pytest.approx(expect, abs=1e-5)


def test_bad_input(tmp_path, run_cli):
    src = write_steps(tmp_path / "s.parquet")
    out = tmp_path / "o.parquet"

    def err(*args):
        res = run_cli("export-rewards", *args, "--no-progress")
        assert res.rc == 2 and len(res.err.splitlines()) == 1 and "Traceback" not in res.err, res.err
        assert not out.exists()
        return res.err

    assert "estimators must be" in err(src, "--out", out, "--estimators", "grpo,ppo")
    assert "mcts_q needs --trees" in err(src, "--out", out, "--estimators", "mcts_q")
    assert "prm needs --prm" in err(src, "--out", out, "--estimators", "prm")
    assert "gamma must lie in [0, 1]" in err(src, "--out", out, "--gamma", "1.5")
    assert "lam must lie" in err(src, "--out", out, "--lam", "-0.1")
    assert "missing column(s) reward" in err(write_steps(tmp_path / "nr.parquet", drop=("reward",)), "--out", out)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    assert "not a readable Parquet file" in err(tmp_path / "junk.parquet", "--out", out)
    assert "no such file" in err(tmp_path / "nope.parquet", "--out", out)
    assert "is a directory" in err(write_tree(tmp_path / "t"), "--out", out)
    assert "not a treeq output directory" in err(src, "--out", out, "--estimators", "mcts_q", "--trees", tmp_path)
    assert ".parquet or .jsonl" in err(src, "--out", tmp_path / "o.csv")
    bad_steps = [("g/0", "g", 0, "A", "B", "x", 0.0, False), ("g/0", "g", 2, "B", "D", "z", 1.0, True)]
    assert "not 0, 1, 2" in err(write_steps(tmp_path / "gap.parquet", bad_steps), "--out", out)
    apart = [STEPS[0], STEPS[1], ("h/0", "h", 0, "A", "B", "x", 0.0, True), STEPS[2], STEPS[3]]
    assert "rows of group 'g' are not together" in err(write_steps(tmp_path / "apart.parquet", apart), "--out", out)


def test_trees_of_another_env_are_refused(tmp_path, run_cli, game24_rollouts, game24_store):
    """Trajectories of game24 against a countdown search: no state would match; one line, nothing written."""
    trees = tmp_path / "countdown"
    assert run_cli("search", "--env", "countdown", "--limit", "1", "--simulations", "20", "--out", trees,
                   "--no-progress", "--workers", "1").rc == 0
    out = tmp_path / "o.parquet"
    for estimators in ("grpo,mcts_q", "gae"):
        res = run_cli("export-rewards", game24_rollouts, "--estimators", estimators, "--trees", trees,
                      "--out", out, "--no-progress")
        assert res.rc == 2 and len(res.err.splitlines()) == 1, res.err
        assert "trajectories of game24" in res.err and "countdown" in res.err
        assert not out.exists()
    rows, _ = export(run_cli, tmp_path, "--estimators", "mcts_q", "--trees", game24_store, source=game24_rollouts)
    assert any(r["mcts_q"] is not None for r in rows)


@pytest.mark.parametrize("weight", [math.nan, math.inf, -math.inf])
def test_weight_must_be_finite(weight):
    from treeq.errors import ConfigError
    from treeq.pipelines.config import RewardsConfig

    with pytest.raises(ConfigError, match="weight must be a finite number"):
        RewardsConfig(weight=weight)
