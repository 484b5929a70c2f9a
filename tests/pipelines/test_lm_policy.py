"""The hf policy: a causal LM's priors over legal actions in waves, on Game of 24, Blocksworld and
TextWorld (graph mode); prefix reuse equal to joint scoring; AI feedback; make-tiny-model; errors."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import numpy as np
import pytest

import treeq
from treeq.pipelines.policies.lm import HFBackend, LMConfig, lm_propose, priors_from_scores

pytest.importorskip("torch")

FAST = ["--no-progress", "--workers", "1"]
BW3 = Path(treeq.__file__).parent / "envs" / "tasks" / "blocksworld" / "3"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, ):
    """A tiny causal LM made by the CLI, as a user without a model would (its tokenizer is byte-level:
    it reads every env's text)."""
    from treeq.cli import main

    out = tmp_path_factory.mktemp("lm") / "tiny"
    assert main(["make-tiny-model", "--env", "game24", "--out", str(out), "--limit", "50"]) == 0
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    return out


def nodes(out: Path, select: str, tail: str = "") -> list[tuple]:
    return duckdb.sql(f"SELECT {select} FROM read_parquet('{out}/nodes/**/*.parquet') {tail}").fetchall()


def assert_priors_sum_to_one(out: Path) -> int:
    sums = nodes(out, "task_id, parent_id, sum(prior), count(*)", "WHERE parent_id >= 0 GROUP BY task_id, parent_id")
    assert sums and all(abs(s - 1.0) < 1e-9 for _, _, s, _ in sums), sums[:5]
    assert len({round(p, 12) for (p,) in nodes(out, "prior", "WHERE parent_id >= 0")}) > 10  # not uniform
    return len(sums)


def test_priors_from_scores_by_hand():
    # mean log-probs -1, -3 and 0 (no tokens): softmax of [-1, -3, 0]
    z = math.exp(-1) + math.exp(-3) + 1.0
    assert priors_from_scores([(-2.0, 2), (-3.0, 1), (0.0, 0)]) == pytest.approx(
        [math.exp(-1) / z, math.exp(-3) / z, 1.0 / z])
    assert priors_from_scores([]) == []


@pytest.mark.slow
def test_prefix_reuse_equals_joint_scoring(tiny):
    """Each prompt run once with its KV cache shared by its actions gives what scoring prompt + action
    as one text gives (the OpenAI-compatible servers' echo)."""
    from treeq.envs.countdown import Game24Env

    backend = HFBackend(str(tiny), max_batch_tokens=2048)  # small budget: several chunks
    env = Game24Env()
    states = [env.reset(t) for t in env.load_tasks(None)[:12]]
    prompts = [backend.format_prompt(env.policy_prompt(s)) for s in states]
    conts = [[" " + a for a in env.legal_actions(s)] for s in states]
    cached, joint = backend.score(prompts, conts), backend.score_joint(prompts, conts)
    for a, b in zip(cached, joint):
        assert [n for _, n in a] == [n for _, n in b]
        assert [x for x, _ in a] == pytest.approx([x for x, _ in b], abs=1e-4)


@pytest.mark.slow
def test_game24_waves_end_to_end(run_cli, tiny, tmp_path):
    out = tmp_path / "out"
    res = run_cli("search", "--env", "game24", "--policy", "hf", "--model", tiny, "--wave-size", "16",
                  "--selection", "puct", "--simulations", "120", "--limit", "2", "--out", out, *FAST)
    assert res.rc == 0, res.err
    assert assert_priors_sum_to_one(out) > 2
    (cfg,) = duckdb.sql(f"SELECT config FROM read_parquet('{out}/runs/**/*.parquet')").fetchall()[0]
    assert '"proposer": "hf"' in cfg
    assert {b for (b,) in duckdb.sql(f"SELECT backup FROM read_parquet('{out}/trees/**/*.parquet')").fetchall()} == {"mean"}


@pytest.mark.slow
def test_waves_agree_with_the_sequential_search(tiny):
    """Exact env: the values the solver proves at the root are the same at --wave-size 1 and 16."""
    from treeq.envs.countdown import Game24Env, exact_q
    from treeq.mcts import SearchConfig, resolve_defaults, search
    from treeq.pipelines.policies import make_hooks
    from treeq.pipelines.search import task_rng

    env = Game24Env()
    lm = LMConfig(model=str(tiny))
    for task in env.load_tasks(None)[900:902]:
        proven = {}
        for batch in (1, 16):
            cfg = resolve_defaults(SearchConfig(simulations=300, selection="puct", wave_size=batch), env)
            rng = task_rng(0, task.task_id)
            propose, evaluate = make_hooks(env, cfg, rng, proposer="hf", lm=lm)
            root = env.reset(task, rng)
            tree = search(env, root, cfg, rng, propose=propose, evaluate=evaluate).tree
            proven[batch] = {tree.action_text(c): tree.proven()[c] for c in tree.children(0)
                             if not np.isnan(tree.proven()[c])}
            proven[batch][None] = tree.proven()[0]  # the root: 1, a solution found
        both = proven[1].keys() & proven[16].keys()
        assert len(both) >= 3 and proven[1][None] == proven[16][None] == 1.0
        both.discard(None)
        for action in both:
            assert proven[1][action] == proven[16][action] == exact_q(root, action)


@pytest.mark.slow
def test_blocksworld_waves(run_cli, tiny, tmp_path):
    out = tmp_path / "out"
    res = run_cli("search", "--env", "blocksworld", "--tasks", BW3, "--limit", "2", "--policy", "hf", "--model", tiny,
                  "--wave-size", "8", "--selection", "puct", "--simulations", "60", "--out", out, *FAST)
    assert res.rc == 0, res.err
    assert_priors_sum_to_one(out)




@pytest.mark.slow
def test_textworld_graph_mode_waves(run_cli, tiny, tw_games, tmp_path):
    """Graph mode, waves of 8. A row lists the actions the search stepped (TextWorld steps an action
    when first selected), so a node's listed priors sum to 1 once all its actions were stepped, and
    to less before; the hook's priors over every admissible command sum to 1."""
    from treeq.envs.textworld import TextWorldEnv
    from treeq.mcts import SearchConfig, resolve_defaults, search
    from treeq.pipelines.policies import make_hooks
    from treeq.pipelines.search import task_rng

    out = tmp_path / "out"
    res = run_cli("search", "--env", "textworld", "--tasks", tw_games, "--limit", "1", "--policy", "hf",
                  "--model", tiny, "--wave-size", "8", "--selection", "puct", "--simulations", "40", "--out", out,
                  *FAST)
    assert res.rc == 0, res.err
    assert {b for (b,) in duckdb.sql(f"SELECT backup FROM read_parquet('{out}/trees/**/*.parquet')").fetchall()} == {"max"}
    sums = nodes(out, "sum(prior)", "WHERE parent_id >= 0 GROUP BY task_id, parent_id")
    assert sums and all(s <= 1.0 + 1e-9 for (s,) in sums)

    env = TextWorldEnv()
    task = env.load_tasks(str(tw_games))[0]
    cfg = resolve_defaults(SearchConfig(simulations=40, selection="puct", wave_size=8), env)
    rng = task_rng(0, task.task_id)
    propose, evaluate = make_hooks(env, cfg, rng, proposer="hf", lm=LMConfig(model=str(tiny)))
    root = env.reset(task, rng)
    (props,) = propose([root], 8)
    assert [a for a, _ in props] == env.legal_actions(root) and sum(p for _, p in props) == pytest.approx(1.0)
    tree = search(env, root, cfg, rng, propose=propose, evaluate=evaluate).tree
    full = 0
    for n in range(tree.size):
        kids = list(tree.children(n))
        if kids and len(kids) == len(env.legal_actions(tree.states[n]) or []):
            assert float(tree.prior[kids].sum()) == pytest.approx(1.0)
            full += 1
    assert full >= 1


@pytest.mark.slow
def test_feedback_lands_in_nodes_and_dpo(run_cli, tiny, tmp_path):
    out = tmp_path / "out"
    res = run_cli("search", "--env", "game24", "--policy", "hf", "--model", tiny, "--feedback", "--wave-size", "8",
                  "--selection", "puct", "--simulations", "60", "--limit", "1", "--out", out, *FAST)
    assert res.rc == 0, res.err
    fb = [f for (f,) in nodes(out, "feedback", "WHERE parent_id >= 0")]
    assert fb and all(f is not None and 0.0 < f < 1.0 for f in fb)
    assert nodes(out, "count(*)", "WHERE parent_id < 0 AND feedback IS NOT NULL") == [(0,)]
    pairs = tmp_path / "pairs.jsonl"
    assert run_cli("export-dpo", out, "--out", pairs, "--theta", "0", "--no-progress").rc == 0
    import json

    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    assert rows and all(r["feedback_chosen"] is not None for r in rows)


@pytest.mark.slow
def test_lm_propose_is_deterministic_and_batched(tiny):
    """One call for many states gives what one call per state gives."""
    from treeq.envs.countdown import Game24Env

    env = Game24Env()
    propose = lm_propose(env, np.random.default_rng(0), LMConfig(model=str(tiny)))
    states = [env.reset(t) for t in env.load_tasks(None)[:5]]
    together = propose(states, 8)
    alone = [propose([s], 8)[0] for s in states]
    for a, b in zip(together, alone):
        assert [x for x, _ in a] == [x for x, _ in b]
        assert [p for _, p in a] == pytest.approx([p for _, p in b], abs=1e-5)


@pytest.mark.slow
def test_errors(run_cli, tiny, tmp_path):
    def err(*args):
        res = run_cli("search", "--limit", "1", "--simulations", "10", "--out", tmp_path / "o", *FAST, *args)
        assert res.rc == 2 and len(res.err.splitlines()) == 1 and "Traceback" not in res.err, res.err
        return res.err

    assert "needs --model" in err("--policy", "hf")
    assert "does not exist" in err("--policy", "hf", "--model", tmp_path / "missing")
    no_tok = tmp_path / "no-tokenizer"
    no_tok.mkdir()
    for f in ("config.json", "model.safetensors"):
        (no_tok / f).write_bytes((tiny / f).read_bytes())
    assert "tokenizer" in err("--policy", "hf", "--model", no_tok)
    assert "backend must be one of" in err("--policy", "hf", "--model", tiny, "--backend", "grpc")
    assert "needs --base-url" in err("--policy", "hf", "--backend", "openai")
    res = run_cli("make-tiny-model", "--out", tiny)
    assert res.rc == 2 and "not an empty directory" in res.err


@pytest.mark.slow
def test_llm_steps_propose_mode(run_cli, tiny, tmp_path):
    """Open text: the model samples steps (first non-blank line each), duplicates dropped, priors over them."""
    out = tmp_path / "out"
    res = run_cli("search", "--env", "llm-steps", "--policy", "hf", "--model", tiny, "--wave-size", "4",
                  "--selection", "puct", "--simulations", "8", "--limit", "1", "--proposals", "4",
                  "--max-new-tokens", "12", "--out", out, *FAST)
    assert res.rc == 0, res.err
    assert_priors_sum_to_one(out)
    actions = [a for (a,) in nodes(out, "action", "WHERE parent_id >= 0")]
    assert all(a and "\n" not in a and a == a.strip() for a in actions)
    per_parent = nodes(out, "count(*), count(DISTINCT action)", "WHERE parent_id >= 0 GROUP BY task_id, parent_id")
    assert all(n == d and n <= 4 for n, d in per_parent)
    res = run_cli("search", "--env", "llm-steps", "--policy", "hf", "--model", tiny, "--lm-mode", "score",
                  "--simulations", "4", "--limit", "1", "--out", tmp_path / "o2", *FAST)
    assert res.rc == 2 and "open-text actions" in res.err and len(res.err.splitlines()) == 1
