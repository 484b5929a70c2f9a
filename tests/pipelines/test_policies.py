"""The hook registry: names, defaults from the env, one-call registration, both hooks reach the search."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pytest

from treeq.envs.registry import make_env
from treeq.errors import ConfigError
from treeq.mcts.config import SearchConfig, resolve_defaults
from treeq.pipelines import policies
from treeq.pipelines.config import SearchJobConfig
from treeq.pipelines.policies import EVALUATORS, PROPOSERS, make_hooks, register_evaluator, register_proposer

FAST = ["--no-progress", "--workers", "1"]


def test_builtin_names():
    assert list(EVALUATORS) == ["rollout", "zero", "bound", "prm"]
    assert list(PROPOSERS) == ["uniform", "hf", "softmax-qstar", "epsilon-qstar"]
    assert all(h.help for h in [*EVALUATORS.values(), *PROPOSERS.values()])


def test_make_hooks_defaults_follow_the_env():
    """None: the env's default_evaluator and the uniform proposer; hooks answer a batch."""
    env = make_env("game24")
    task = env.load_tasks(None)[0]
    rng = np.random.default_rng(0)
    cfg = resolve_defaults(SearchConfig(), env)
    propose, evaluate = make_hooks(env, cfg, rng)
    state = env.reset(task, rng)
    (proposals,) = propose([state], 8)
    assert [a for a, _ in proposals] == env.legal_actions(state)
    assert sum(p for _, p in proposals) == pytest.approx(1.0)
    assert env.default_evaluator == "rollout"
    values = evaluate([state, state])
    assert len(values) == 2 and all(0.0 <= v <= 1.0 for v in values)
    _, zero = make_hooks(env, cfg, rng, evaluator="zero")
    assert zero([state, state, state]) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("kind, name", [("evaluator", "nope"), ("proposer", "llm")])
def test_unknown_names_are_config_errors(kind, name):
    with pytest.raises(ConfigError, match=f"{kind} must be one of .*{name}"):
        SearchJobConfig(**{kind: name})
    env = make_env("game24")
    with pytest.raises(ConfigError, match=name):
        make_hooks(env, SearchConfig(), np.random.default_rng(0), **{kind: name})


def test_registering_twice_or_without_help_is_refused():
    with pytest.raises(ValueError, match="already"):
        register_evaluator("zero", lambda env, cfg, rng, lm: None, help="again")
    with pytest.raises(ValueError, match="help"):
        register_proposer("silent", lambda env, cfg, rng, lm: None, help="")
    assert "silent" not in PROPOSERS


@pytest.fixture
def constant_evaluator():
    """A new evaluator registered with one call (removed afterwards)."""
    calls = []

    def factory(env, cfg, rng, lm):
        def evaluate(states):
            calls.append(len(states))
            return [0.5] * len(states)
        return evaluate

    register_evaluator("half", factory, help="0.5 for every leaf")
    yield calls
    del policies.EVALUATORS["half"]


def test_a_registered_evaluator_is_usable_by_name_from_the_cli(run_cli, tmp_path, constant_evaluator):
    """One register call and `search --evaluator half` runs it; runs.config records the name."""
    out = tmp_path / "out"
    res = run_cli("search", "--limit", "2", "--simulations", "60", "--no-solver", "--wave-size", "4",
                  "--evaluator", "half", "--out", out, *FAST)
    assert res.rc == 0, res.err
    assert constant_evaluator and max(constant_evaluator) > 1  # batched: waves of several leaves
    ((config,),) = duckdb.sql(f"SELECT config FROM read_parquet('{out}/runs/**/*.parquet')").fetchall()
    assert json.loads(config)["evaluator"] == "half" and json.loads(config)["proposer"] == "uniform"


def test_job_builds_and_passes_both_hooks(run_cli, tmp_path, monkeypatch):
    """The job hands the search a propose and an evaluate hook built from the registry."""
    import treeq.pipelines.search as job

    seen = []
    real = job.search

    def spy(env, root, cfg, rng, propose=None, evaluate=None):
        seen.append((propose, evaluate, cfg))
        return real(env, root, cfg, rng, propose=propose, evaluate=evaluate)

    monkeypatch.setattr(job, "search", spy)
    res = run_cli("search", "--limit", "2", "--simulations", "30", "--out", tmp_path / "o", *FAST)
    assert res.rc == 0, res.err
    assert len(seen) == 2
    for propose, evaluate, cfg in seen:
        assert callable(propose) and callable(evaluate)
        assert cfg.gamma == 1.0 and cfg.transpositions is False  # resolved from the env's defaults


def test_cli_refuses_unknown_evaluator_and_proposer(run_cli, tmp_path):
    for flag, value, known in (("--evaluator", "nope", "rollout, zero, bound"), ("--proposer", "gpt", "uniform")):
        res = run_cli("search", "--limit", "1", flag, value, "--out", tmp_path / "o", *FAST)
        assert res.rc == 2
        (line,) = res.err.splitlines()
        assert line.startswith("error:") and value in line and known in line
