"""``--evaluator prm``: a trained PRM (a real one, trained here) as the search's value function."""

from __future__ import annotations

import json
import shutil

import duckdb
import numpy as np
import pytest

from treeq.envs.registry import make_env
from treeq.mcts.config import SearchConfig, resolve_defaults
from treeq.pipelines.policies.lm import LMConfig
from treeq.pipelines.policies.prm_value import prm_evaluate

TINY = ["--hidden-size", "32", "--layers", "1", "--heads", "2", "--vocab-size", "300"]


def train_tiny_prm(run_cli, trees, out) -> None:
    got = run_cli("train-prm", trees, "--out", out, "--max-steps", "20", "--val-fraction", "0.3", "--best-of-n", "0",
                  "--no-progress", *TINY)
    assert got.rc == 0, got.err


@pytest.fixture(scope="module")
def game24_prm(game24_store, tmp_path_factory):
    from treeq.cli import main

    out = tmp_path_factory.mktemp("prm-value") / "prm"
    assert main(["train-prm", str(game24_store), "--out", str(out), "--max-steps", "20", "--val-fraction", "0.3",
                 "--best-of-n", "0", "--no-progress", *TINY]) == 0
    return out


def rows(out) -> list[tuple]:
    return duckdb.sql(f"SELECT task_id, node_id, parent_id, action, visits, q, proven FROM "
                      f"read_parquet('{out}/nodes/**/*.parquet', hive_partitioning = false) ORDER BY 1, 2").fetchall()


def search_args(out, prm, *extra) -> list[str]:
    return ["search", "--env", "game24", "--limit", "3", "--simulations", "40", "--selection", "puct",
            "--evaluator", "prm", "--prm", prm, "--workers", "1", "--no-progress", "--out", out, *extra]


@pytest.mark.slow
@pytest.mark.parametrize("graph", [False, True])
def test_the_tree_is_the_same_at_any_prm_batch_size(run_cli, game24_prm, tmp_path, graph):
    """Waves of 8 leaves scored 1 path a forward pass or 16: the same tree, in tree and in graph search."""
    mode = ["--transpositions"] if graph else []
    trees = []
    for b in (1, 16):
        got = run_cli(*search_args(tmp_path / f"b{b}", game24_prm, "--prm-batch-size", str(b), "--wave-size", "8",
                                   *mode))
        assert got.rc == 0, got.err
        trees.append(rows(tmp_path / f"b{b}"))
    assert len(trees[0]) > 40 and trees[0] == trees[1]


def test_the_value_is_the_prm_score_of_the_last_step_in_the_env_range(game24_prm):
    """lo + s (hi - lo), minus the step's reward, over gamma: checked against score_batch on the same text."""
    from treeq.prm.model import load_prm, score_batch

    env = make_env("game24")
    task = env.load_tasks(None)[0]
    root = env.reset(task)
    a1 = env.legal_actions(root)[3]
    s1 = env.step(root, a1).state
    a2 = env.legal_actions(s1)[0]
    s2 = env.step(s1, a2).state
    cfg = resolve_defaults(SearchConfig(), env)
    hook = prm_evaluate(env, cfg, np.random.default_rng(0), LMConfig(prm=str(game24_prm)))
    assert hook.reads_path
    got = hook([root, s1, s2], [(root, (), (), ()), (root, (a1,), (0.0,), (s1,)), (root, (a1, a2), (0.0, 0.0), (s1, s2))])
    tok, model, meta = load_prm(game24_prm)
    want = score_batch(model, tok, [(env.render(root), [a1]), (env.render(root), [a1, a2])], meta.max_length)
    assert got[0] == 0.5  # the root: no step to score, the middle of [0, 1]
    assert got[1] == pytest.approx(want[0][-1], abs=1e-6)
    assert got[2] == pytest.approx(want[1][-1], abs=1e-6)
    # a step with reward 1 at gamma 1: the value after it is Q - 1
    last = hook([s2], [(root, (a1, a2), (0.0, 1.0), (s1, s2))])
    assert last[0] == pytest.approx(want[1][-1] - 1.0, abs=1e-6)


@pytest.mark.slow
def test_value_mix_zero_is_the_rollout_search(run_cli, game24_prm, tmp_path):
    """lambda = 0: 0 * PRM + 1 * the same rollout, so the tree is the rollout evaluator's, node for node."""
    got = run_cli(*search_args(tmp_path / "mix0", game24_prm, "--value-mix", "0"))
    assert got.rc == 0, got.err
    base = ["search", "--env", "game24", "--limit", "3", "--simulations", "40", "--selection", "puct",
            "--evaluator", "rollout", "--workers", "1", "--no-progress", "--out", tmp_path / "rollout"]
    assert run_cli(*base).rc == 0
    assert rows(tmp_path / "mix0") == rows(tmp_path / "rollout")
    got = run_cli(*search_args(tmp_path / "mix5", game24_prm, "--value-mix", "0.5"))
    assert got.rc == 0, got.err
    assert rows(tmp_path / "mix5") != rows(tmp_path / "rollout")


def test_bad_prm_directories_are_one_line(run_cli, game24_prm, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(game24_prm, other)
    meta = json.loads((other / "treeq_prm.json").read_text())
    meta["value_range"] = {"blocksworld": [0.0, 1.0]}
    (other / "treeq_prm.json").write_text(json.dumps(meta))
    (tmp_path / "empty").mkdir()
    cases = {
        "trained on blocksworld, not game24": search_args(tmp_path / "o1", other),
        "not a treeq PRM directory": search_args(tmp_path / "o2", tmp_path / "empty"),
        "no such directory": search_args(tmp_path / "o3", tmp_path / "missing"),
        "needs --prm": ["search", "--env", "game24", "--limit", "1", "--evaluator", "prm", "--out", tmp_path / "o4"],
        "add --evaluator prm": ["search", "--env", "game24", "--limit", "1", "--prm", game24_prm, "--out",
                                tmp_path / "o5"],
        "value_mix must lie in [0, 1]": search_args(tmp_path / "o6", game24_prm, "--value-mix", "1.5"),
    }
    for said, argv in cases.items():
        got = run_cli(*argv)
        assert got.rc == 2, (said, got.out, got.err)
        assert said in got.err and len(got.err.strip().splitlines()) == 1, (said, got.err)
        assert not (tmp_path / argv[argv.index("--out") + 1]).exists()  # refused before the store


@pytest.mark.slow
@pytest.mark.parametrize("env,extra", [
    ("countdown", ["--limit", "2"]),
    ("blocksworld", ["--limit", "2"]),
])
def test_every_trainable_env_searches_with_its_prm(run_cli, tmp_path, env, extra):
    """Search, train a tiny PRM on the trees, search again with it as the value: tree and graph search."""
    trees = tmp_path / "trees"
    assert run_cli("search", "--env", env, *extra, "--simulations", "60", "--workers", "1", "--no-progress",
                   "--out", trees).rc == 0
    train_tiny_prm(run_cli, trees, tmp_path / "prm")
    for mode in ("--no-transpositions", "--transpositions"):
        got = run_cli("search", "--env", env, *extra, "--simulations", "20", "--evaluator", "prm", "--prm",
                      tmp_path / "prm", "--wave-size", "4", "--workers", "1", "--no-progress", mode,
                      "--out", tmp_path / f"again{mode}")
        assert got.rc == 0, got.err
        assert len(rows(tmp_path / f"again{mode}")) > 3


@pytest.mark.slow
def test_textworld_searches_with_its_prm(run_cli, tw_games, tmp_path):
    """TextWorld (games made by tw-make): trees, a tiny PRM on them, tree and graph search with it."""
    trees = tmp_path / "trees"
    assert run_cli("search", "--env", "textworld", "--tasks", tw_games, "--simulations", "60", "--workers", "1",
                   "--no-progress", "--out", trees).rc == 0
    train_tiny_prm(run_cli, trees, tmp_path / "prm")
    for mode in ("--no-transpositions", "--transpositions"):
        got = run_cli("search", "--env", "textworld", "--tasks", tw_games, "--limit", "1", "--simulations", "20",
                      "--evaluator", "prm", "--prm", tmp_path / "prm", "--wave-size", "4", "--workers", "1",
                      "--no-progress", mode, "--out", tmp_path / f"again{mode}")
        assert got.rc == 0, got.err
        assert len(rows(tmp_path / f"again{mode}")) > 3


@pytest.mark.slow
def test_llm_steps_searches_with_its_prm(run_cli, tmp_path):
    """Open-text steps a tiny model proposes: trees, a tiny PRM on them, a search with it as the value."""
    tiny = tmp_path / "tiny"
    assert run_cli("make-tiny-model", "--env", "game24", "--out", tiny, "--limit", "50").rc == 0
    lm = ["--policy", "hf", "--model", tiny, "--proposals", "3", "--max-new-tokens", "12", "--selection", "puct",
          "--workers", "1", "--no-progress"]
    trees = tmp_path / "trees"
    got = run_cli("search", "--env", "llm-steps", *lm, "--limit", "4", "--simulations", "12", "--out", trees)
    assert got.rc == 0, got.err
    train_tiny_prm(run_cli, trees, tmp_path / "prm")
    got = run_cli("search", "--env", "llm-steps", *lm, "--limit", "1", "--simulations", "8", "--wave-size", "4",
                  "--evaluator", "prm",
                  "--prm", tmp_path / "prm", "--out", tmp_path / "again")
    assert got.rc == 0, got.err
    assert len(rows(tmp_path / "again")) > 3


@pytest.fixture(scope="module")
def blocksworld_prm(tmp_path_factory):
    """A tiny PRM trained on Blocksworld trees (3 tasks): steps with observations."""
    from treeq.cli import main

    root = tmp_path_factory.mktemp("prm-bw")
    assert main(["search", "--env", "blocksworld", "--limit", "3", "--simulations", "60", "--workers", "1",
                 "--no-progress", "--out", str(root / "trees")]) == 0
    assert main(["train-prm", str(root / "trees"), "--out", str(root / "prm"), "--max-steps", "20", "--val-fraction",
                 "0.3", "--best-of-n", "0", "--no-progress", *TINY]) == 0
    return root / "prm"


def two_steps(env):
    root = env.reset(env.load_tasks(None)[0])
    a1 = env.legal_actions(root)[0]
    s1 = env.step(root, a1).state
    a2 = env.legal_actions(s1)[0]
    return root, a1, s1, a2, env.step(s1, a2).state


@pytest.mark.slow
def test_a_world_env_prm_reads_each_action_with_its_observation(run_cli, blocksworld_prm, tmp_path):
    """Blocksworld: the PRM trained on the trees records the action+observation format; the
    evaluator scores the path with the env's answer after each action (checked against
    score_batch on that text), and the tree is the same at PRM batch size 1 and 16."""
    from treeq.prm.model import load_prm, score_batch

    tok, model, meta = load_prm(blocksworld_prm)
    assert meta.step_format == "action+observation"
    env = make_env("blocksworld")
    root, a1, s1, a2, s2 = two_steps(env)
    cfg = resolve_defaults(SearchConfig(), env)
    hook = prm_evaluate(env, cfg, np.random.default_rng(0), LMConfig(prm=str(blocksworld_prm)))
    got = hook([s2], [(root, (a1, a2), (0.0, 0.0), (s1, s2))])
    steps = [f"{a1}\n{env.observe(s1)}", f"{a2}\n{env.observe(s2)}"]
    (want,) = score_batch(model, tok, [(env.render(root), steps)], meta.max_length)
    lo, hi = meta.value_range["blocksworld"]
    assert got[0] == pytest.approx((lo + want[-1] * (hi - lo)) / cfg.gamma, abs=1e-5)
    searched = []
    for b in (1, 16):
        out = tmp_path / f"b{b}"
        assert run_cli("search", "--env", "blocksworld", "--limit", "2", "--simulations", "30", "--evaluator", "prm",
                       "--prm", blocksworld_prm, "--prm-batch-size", b, "--wave-size", "8", "--workers", "1",
                       "--no-progress", "--out", out).rc == 0
        searched.append(rows(out))
    assert len(searched[0]) > 10 and searched[0] == searched[1]


@pytest.mark.slow
def test_score_steps_gives_or_replays_the_observations(run_cli, blocksworld_prm, game24_prm, tmp_path):
    """score-steps with a PRM that reads observations: a row gives them, or names env and task and the
    env replays its actions (the same scores); a prompt-only row, an action the env refuses, or
    observations handed to a PRM of actions only: one line naming the row, exit 2."""
    from treeq.pipelines.prm import score_steps

    env = make_env("blocksworld")
    root, a1, s1, a2, s2 = two_steps(env)
    task = env.load_tasks(None)[0].task_id
    given = {"prompt": env.render(root), "steps": [a1, a2], "observations": [env.observe(s1), env.observe(s2)]}
    replayed = {"env": "blocksworld", "task": task, "steps": [a1, a2]}
    a, b = score_steps(str(blocksworld_prm), [given, replayed])
    assert len(a["scores"]) == 2 and a["scores"] == pytest.approx(b["scores"], abs=1e-6)
    bad = {
        "give 'observations'": {"prompt": env.render(root), "steps": [a1]},
        "action 2": {"env": "blocksworld", "task": task, "steps": [a1, "fly to the moon"]},
    }
    for needle, row in bad.items():
        path = tmp_path / "rows.jsonl"
        path.write_text(json.dumps(row) + "\n")
        got = run_cli("score-steps", blocksworld_prm, "--input", path)
        assert got.rc == 2 and needle in got.err and f"{path}:1" in got.err, got.err
        assert len(got.err.strip().splitlines()) == 1
    path.write_text(json.dumps({"env": "game24", "task": "4 6 8 8", "steps": ["4 * 6 = 24 (left: 8 8 24)"],
                                "observations": ["ok"]}) + "\n")
    got = run_cli("score-steps", game24_prm, "--input", path)
    assert got.rc == 2 and "reads actions only" in got.err and len(got.err.strip().splitlines()) == 1, got.err


@pytest.mark.slow
def test_export_rewards_prm_scores_rollouts_with_their_observations(run_cli, blocksworld_prm, tmp_path):
    """Rollouts record what the env answered to each action (step_observation); export-rewards'
    prm column scores each trajectory as the PRM reads it (checked against score_batch)."""
    import pyarrow.parquet as pq

    from treeq.prm.model import load_prm, score_batch

    groups = tmp_path / "groups.parquet"
    assert run_cli("rollouts", "--env", "blocksworld", "--limit", "1", "--group-size", "2", "--max-steps", "4",
                   "--out", groups, "--no-progress").rc == 0
    got = run_cli("export-rewards", groups, "--out", tmp_path / "r.parquet", "--estimators", "prm", "--prm",
                  blocksworld_prm, "--no-progress")
    assert got.rc == 0, got.err
    steps = pq.read_table(groups).to_pylist()
    scored = pq.read_table(tmp_path / "r.parquet").to_pylist()
    tok, model, meta = load_prm(blocksworld_prm)
    first = [r for r in steps if r["trajectory_id"] == steps[0]["trajectory_id"]]
    assert all(r["step_observation"].startswith("I have that, ") for r in first)
    (want,) = score_batch(model, tok, [(first[0]["observation"], [f"{r['action']}\n{r['step_observation']}"
                                                                 for r in first])], meta.max_length)
    assert [r["prm"] for r in scored[: len(first)]] == pytest.approx(want, abs=1e-6)
    # a rollouts file without the column (written before it existed): one line, exit 2
    pq.write_table(pq.read_table(groups).drop(["step_observation"]), tmp_path / "old.parquet")
    got = run_cli("export-rewards", tmp_path / "old.parquet", "--out", tmp_path / "r2.parquet", "--estimators", "prm",
                  "--prm", blocksworld_prm, "--no-progress")
    assert got.rc == 2 and "step_observation" in got.err and len(got.err.strip().splitlines()) == 1, got.err
