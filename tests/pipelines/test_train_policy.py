"""train-policy: a tiny causal LM (make-tiny-model) trained on searched Game of 24 trees by distill, sft and dpo.

Each method trains a few steps and is held to what it promises: the loss falls on the
examples it trained on (distill: the hf policy's own priors move towards the targets, KL
measured with :class:`HFBackend` before and after), the output loads with plain
transformers, and ``search --policy hf --model OUT`` runs on it. Also: a distill target by
hand, the prompts against replayed states, the examples against the trees read with DuckDB
and export-dpo, resuming after Ctrl-C (bit-identical weights), a finished run reused, and
the one-line errors.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb
import numpy as np
import pytest

from treeq.errors import ConfigError, Interrupted, ModelError, OutputError, StoreError
from treeq.mcts.config import SearchConfig
from treeq.pipelines.config import DPOConfig, SearchJobConfig, TinyLMConfig
from treeq.pipelines.policies.lm import LMConfig
from treeq.pipelines.search import run_search
from treeq.pipelines.train_policy import (
    POLICY_FILE,
    ChildStats,
    PolicyTrainConfig,
    distill_target,
    format_prompt,
    joiner_of,
    split_ids,
    train_policy,
    training_examples,
)

torch = pytest.importorskip("torch")


# ----------------------------------------------------------------------------- fixtures and helpers
@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from treeq.pipelines.tiny_lm import make_tiny_model

    return make_tiny_model(TinyLMConfig(env="game24", out=str(tmp_path_factory.mktemp("policy") / "tiny"), limit=50))


def search(out: Path, env: str = "game24", limit: int = 4, simulations: int = 200, **kw) -> Path:
    kw.setdefault("search", SearchConfig(simulations=simulations))
    run_search(SearchJobConfig(env=env, limit=limit, out=str(out), workers=1, progress=False, **kw))
    return out


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> Path:
    """Four Game of 24 puzzles, 200 simulations each (the solver on: proven values)."""
    return search(tmp_path_factory.mktemp("policy") / "trees")


def config(trees: Path, tiny: Path, out: Path | str = "unused", **kw) -> PolicyTrainConfig:
    return PolicyTrainConfig(sources=(str(trees),), model=str(tiny), out=str(out), progress=False, **kw)


def nodes(store: Path, select: str, tail: str = "") -> list[tuple]:
    return duckdb.sql(f"SELECT {select} FROM read_parquet('{store}/nodes/**/*.parquet') {tail}").fetchall()


def base_prompt(observation: str) -> str:
    """Game of 24's policy prompt of a state rendered as ``observation`` (Env.policy_prompt; no instructions)."""
    from treeq.envs.countdown import Game24Env

    assert Game24Env().instructions == ""
    return f"{observation}\nNext action:"


def check_output(out: Path, method: str) -> dict:
    """Plain transformers loads the directory; safetensors only; treeq_policy.json says what was done."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", POLICY_FILE} <= names, names
    assert "checkpoints" not in names and not any(n.endswith((".bin", ".pt", ".pth")) for n in names)
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.vocab_size >= len(tok) - 1 and tok.eos_token == "<eos>"
    meta = json.loads((out / POLICY_FILE).read_text())
    assert meta["method"] == method and len(meta["data_fingerprint"]) == 16 and meta["steps"] >= 1
    assert meta["metrics"]["final_loss"] == meta["summary"]["final_loss"]
    return meta


def search_with_policy(policy: Path, out: Path) -> None:
    """A search with the hf policy on the trained model: priors from it, summing to one per node."""
    summary = run_search(SearchJobConfig(
        env="game24", limit=1, proposer="hf", lm=LMConfig(model=str(policy)),
        search=SearchConfig(simulations=20, selection="puct"), out=str(out), workers=1, progress=False))
    assert summary.tasks == 1 and summary.nodes > 10
    sums = nodes(out, "sum(prior)", "WHERE parent_id >= 0 GROUP BY parent_id")
    assert sums and all(abs(s - 1.0) < 1e-6 for (s,) in sums)


def completion_nll(model_dir: Path, pairs: list[tuple[str, str]]) -> float:
    """Mean negative log-likelihood per token of ``joiner + action + eos`` after each formatted prompt."""
    from treeq.pipelines.models import load_pretrained

    tok, model = load_pretrained(str(model_dir))
    total = count = 0.0
    with torch.no_grad():
        for prompt, action in pairs:
            ((p, c),) = split_ids(tok, format_prompt(tok, prompt), [joiner_of(tok) + action])
            ids = torch.tensor([p + c + [tok.eos_token_id]])
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            lp = logp.gather(-1, ids[0, 1:, None])[:, 0][len(p) - 1:]
            total -= float(lp.sum())
            count += len(lp)
    return total / count


def sequence_logp(model, tok, prompt: str, completion: str) -> float:
    ((p, c),) = split_ids(tok, format_prompt(tok, prompt), [joiner_of(tok) + completion])
    ids = torch.tensor([p + c + [tok.eos_token_id]])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    return float(logp.gather(-1, ids[0, 1:, None])[:, 0][len(p) - 1:].sum())


# ----------------------------------------------------------------------------- distill targets by hand
def test_distill_target_by_hand():
    kids = [ChildStats("a", 0.5, 3, 0.4, 1.0), ChildStats("b", 0.3, 2, 0.2, 0.0), ChildStats("c", 0.2, 0, None, None)]
    # solver values 1, 0 and (neither) the siblings' lowest, 0; temperature 0.5: softmax([2, 0, 0])
    z = math.exp(2) + 2
    assert distill_target(kids, "puct", 0.5) == pytest.approx([math.exp(2) / z, 1 / z, 1 / z])
    # an unproven visited child counts by its q: softmax([1, 0.4, 0] / 0.25)
    kids2 = [ChildStats("a", 0.5, 3, 0.9, 1.0), ChildStats("b", 0.3, 2, 0.4, None), ChildStats("c", 0.2, 1, 0.0, 0.0)]
    e = [math.exp(4), math.exp(1.6), 1.0]
    assert distill_target(kids2, "uct", 0.25) == pytest.approx([x / sum(e) for x in e])
    # values scaled by the env's value range first: [-1, 1] -> v' = (v + 1) / 2
    kids3 = [ChildStats("a", 0.5, 1, None, 1.0), ChildStats("b", 0.5, 1, None, -1.0)]
    assert distill_target(kids3, "uct", 0.5, (-1.0, 1.0)) == pytest.approx([math.exp(2) / (math.exp(2) + 1),
                                                                            1 / (math.exp(2) + 1)])
    # no proof anywhere: the visit distribution
    kids4 = [ChildStats("a", 0.5, 6, 0.3, None), ChildStats("b", 0.3, 2, 0.1, None), ChildStats("c", 0.2, 0, None, None)]
    assert distill_target(kids4, "puct", 0.1) == pytest.approx([0.75, 0.25, 0.0])
    # children never visited (a graph-search node visited through its transpositions): no target
    kids0 = [ChildStats("a", 0.5, 0, None, None), ChildStats("b", 0.5, 0, None, None)]
    assert distill_target(kids0, "puct", 0.1) == []
    # gumbel: the improved policy, the raw value the prior-weighted mean q of the visited children
    from treeq.mcts.selection import improved_policy

    raw = (0.5 * 0.3 + 0.3 * 0.1) / 0.8
    assert distill_target(kids4, "gumbel", 0.1) == pytest.approx(improved_policy([0.5, 0.3, 0.2], [0.3, 0.1, 0.0],
                                                                                 [6, 2, 0], raw))
    # ... by hand: logits log P, sigma = (50 + 6) * 0.1 * (completed q - min) / (max - min); c completed with
    # the mixed value (raw + 8 * raw) / 9 = raw
    done = [0.3, 0.1, raw]
    sigma = [(x - 0.1) * 5.6 / 0.2 for x in done]
    x = np.log([0.5, 0.3, 0.2]) + sigma
    assert distill_target(kids4, "gumbel", 0.1) == pytest.approx((np.exp(x) / np.exp(x).sum()).tolist())


def test_distill_examples_from_trees(trees, tiny):
    """Nodes with >= 2 children and >= min_visits visits, or any visits where the solver proved every child; with
    the solver on, the targets are the softmax of the children's proven values at the temperature (game24's
    values lie in [0, 1])."""
    examples = training_examples(config(trees, tiny, min_visits=10, temperature=0.2))
    rows = nodes(trees, "task_id, node_id, parent_id, observation, visits, action, proven, q")
    by_parent: dict[tuple, list] = {}
    exact: dict[tuple, bool] = {}
    for t, _, p, _, _, a, proven, q in rows:
        by_parent.setdefault((t, p), []).append((a, proven if proven is not None else q))
        exact[t, p] = exact.get((t, p), True) and proven is not None
    want = {}
    for t, n, _, obs, v, *_ in rows:
        kids = by_parent.get((t, n), [])
        if (v >= 10 or exact.get((t, n))) and len(kids) >= 2:
            kids = sorted(kids)
            floor = min(x for _, x in kids if x is not None)
            x = np.array([floor if x is None else x for _, x in kids]) / 0.2
            want[base_prompt(obs), tuple(a for a, _ in kids)] = np.exp(x) / np.exp(x).sum()
    assert len(examples) == len(want) > 10
    for prompt, actions, target in examples:
        assert target == pytest.approx(want[prompt, tuple(actions)].tolist())
        assert sum(target) == pytest.approx(1.0)


def test_prompts_are_the_replayed_states_policy_prompts(trees):
    """The prompt built from the recorded observation is env.policy_prompt of the state replayed from the task."""
    from treeq.data.store import iter_store_tasks
    from treeq.pipelines.train_policy import _NODES_SQL, _children, _Prompts, _runs_and_envs

    runs, _ = _runs_and_envs([str(trees)])
    prompts = _Prompts(runs)
    checked = 0
    for cols in iter_store_tasks([str(trees)], _NODES_SQL):
        index, _ = _children(cols)
        env = prompts.env(cols["run_id"][0])
        for i in range(0, len(cols["node_id"]), 7):
            assert prompts.of(cols, i, index) == env.policy_prompt(prompts._state(cols, i, index, env))
            checked += 1
        prompts.forget()
    assert checked > 100


# ----------------------------------------------------------------------------- the three methods
def test_distill_moves_the_prior_towards_the_targets(trees, tiny, tmp_path):
    from treeq.pipelines.policies.lm import HFBackend, priors_from_scores

    cfg = config(trees, tiny, tmp_path / "policy", max_steps=30)
    examples = training_examples(cfg)
    roots = [ex for ex in examples if ex[0].endswith("Steps:\nNext action:")]  # a third of the draws (by depth)
    assert len(roots) == 4

    def kl(model_dir: Path) -> float:
        """Mean KL(target || the hf policy's priors) over the roots, scored as the search scores them."""
        backend = HFBackend(str(model_dir))
        out = []
        for prompt, actions, target in roots:
            (scores,) = backend.score([backend.format_prompt(prompt)], [[backend.joiner + a for a in actions]])
            p, t = np.array(priors_from_scores(scores)), np.array(target)
            out.append(float(np.sum(np.where(t > 0, t * np.log(np.maximum(t, 1e-300) / p), 0.0))))
        return float(np.mean(out))

    before = kl(tiny)
    summary = train_policy(cfg)
    assert summary["method"] == "distill" and summary["steps"] == 30 and summary["examples"] == len(examples)
    assert summary["reused"] is False and summary["dropped"] == 0 and summary["learning_rate"] == 3e-3
    after = kl(tmp_path / "policy")
    assert after < 0.7 * before, (before, after)
    assert summary["final_loss"] < summary["first_loss"]
    meta = check_output(tmp_path / "policy", "distill")
    assert meta["settings"]["min_visits"] == 10 and meta["sources"] == [str(trees)] and meta["joiner"] == " "
    search_with_policy(tmp_path / "policy", tmp_path / "search")


def test_sft_learns_the_steps_of_solved_paths(trees, tiny, tmp_path):
    cfg = config(trees, tiny, tmp_path / "policy", method="sft", max_steps=12)
    examples = training_examples(cfg)
    # with the solver: every step proven to the best value (1, a solution) from the root down
    rows = nodes(trees, "task_id, node_id, parent_id, observation, action, proven")
    by_id = {(t, n): (p, obs, a, pr) for t, n, p, obs, a, pr in rows}

    def on_a_solved_path(t, n):
        while n != 0:
            p, _, _, proven = by_id[t, n]
            if proven != 1.0:
                return False
            n = p
        return by_id[t, 0][3] == 1.0

    want = {(base_prompt(by_id[t, p][1]), a) for (t, n), (p, _, a, _) in by_id.items() if n and on_a_solved_path(t, n)}
    assert set(examples) == want and len(examples) == len(want) > 20

    before = completion_nll(tiny, examples)
    summary = train_policy(cfg)
    assert summary["steps"] == 12 and summary["final_loss"] < summary["first_loss"]
    assert completion_nll(tmp_path / "policy", examples) < 0.9 * before
    check_output(tmp_path / "policy", "sft")
    search_with_policy(tmp_path / "policy", tmp_path / "search")


def test_sft_without_the_solver_takes_the_highest_q_path(tiny, tmp_path):
    store = search(tmp_path / "trees", limit=3, search=SearchConfig(simulations=300, solver=False))
    assert nodes(store, "count(proven)") == [(0,)]
    examples = training_examples(config(store, tiny, method="sft"))
    rows = nodes(store, "task_id, node_id, parent_id, observation, action, visits, q, terminal, reward")
    kids: dict[tuple, list] = {}
    for t, n, p, obs, a, v, q, term, r in rows:
        kids.setdefault((t, p), []).append((q, v, -n, n, obs, a, term, r))
    obs_of = {(t, n): obs for t, n, p, obs, *_ in rows}
    want = set()
    for task in {t for t, *_ in rows}:
        node, path = 0, []
        while [k for k in kids.get((task, node), []) if k[1] > 0]:
            q, v, _, n, obs, a, term, r = max(k for k in kids[task, node] if k[1] > 0)
            path.append((base_prompt(obs_of[task, node]), a))
            node = n
        if path and term and r >= 1:
            want |= set(path)
    assert want and set(examples) == want


def test_dpo_trains_on_export_dpo_pairs_with_the_policy_prompt(trees, tiny, tmp_path):
    import pyarrow.parquet as pq

    from treeq.pipelines.dpo import export_dpo
    from treeq.pipelines.models import load_pretrained

    cfg = config(trees, tiny, tmp_path / "policy", method="dpo", max_steps=8, pairs=DPOConfig(theta=0.5))
    examples = training_examples(cfg)
    path, _ = export_dpo([str(trees)], tmp_path / "pairs.parquet", DPOConfig(theta=0.5))
    exported = {(base_prompt(r["prompt"]), r["chosen"], r["rejected"]) for r in pq.read_table(path).to_pylist()}
    assert set(examples) == exported and len(examples) > 20  # export-dpo's pairs, the prompt the policy's

    summary = train_policy(cfg)
    assert summary["steps"] == 8 and summary["learning_rate"] == 1e-3
    assert summary["first_loss"] == pytest.approx(math.log(2), abs=1e-4)  # the policy starts as the reference
    assert summary["final_loss"] < summary["first_loss"]
    # the DPO loss on the trained pairs, recomputed: log 2 before, lower after
    tok, ref = load_pretrained(str(tiny))
    _, new = load_pretrained(str(tmp_path / "policy"))
    losses = []
    for prompt, chosen, rejected in examples[:40]:
        margin = (sequence_logp(new, tok, prompt, chosen) - sequence_logp(ref, tok, prompt, chosen)
                  - sequence_logp(new, tok, prompt, rejected) + sequence_logp(ref, tok, prompt, rejected))
        losses.append(-math.log(1 / (1 + math.exp(-0.1 * margin))))
    assert np.mean(losses) < math.log(2) - 0.01
    check_output(tmp_path / "policy", "dpo")
    search_with_policy(tmp_path / "policy", tmp_path / "search")


# ----------------------------------------------------------------------------- resume and reuse
def test_interrupted_distill_resumes_to_the_same_weights_and_a_finished_run_is_reused(trees, tiny, tmp_path,
                                                                                       monkeypatch):
    from safetensors.torch import load_file

    whole, broken = tmp_path / "whole", tmp_path / "broken"
    kw = {"max_steps": 5, "save_every": 2}
    done = train_policy(config(trees, tiny, whole, **kw))

    real_step, calls = torch.optim.AdamW.step, []

    def step(self, *args, **kwargs):  # Ctrl-C during the 4th optimiser step
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    with pytest.raises(Interrupted, match="resume from checkpoint-2"):
        train_policy(config(trees, tiny, broken, **kw))
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
    assert sorted(p.name for p in (broken / "checkpoints").iterdir()) == ["checkpoint-2", "treeq_run.json"]
    resumed = train_policy(config(trees, tiny, broken, **kw))
    assert resumed["steps"] == 5 and resumed["final_loss"] == done["final_loss"]
    a, b = load_file(whole / "model.safetensors"), load_file(broken / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def no_training(self, *args, **kwargs):
        raise AssertionError("a finished run must not train again")

    monkeypatch.setattr(torch.optim.AdamW, "step", no_training)
    again = train_policy(config(trees, tiny, broken, **kw))
    assert again["reused"] is True and {k: v for k, v in again.items() if k != "reused"} == \
        {k: v for k, v in resumed.items() if k != "reused"}
    # other settings on a finished directory: refused, one line
    with pytest.raises(OutputError, match="holds no policy or checkpoints of this run") as err:
        train_policy(config(trees, tiny, broken, max_steps=6, save_every=2))
    assert "\n" not in str(err.value)


def test_interrupted_sft_resumes_from_trl_checkpoint(trees, tiny, tmp_path, monkeypatch):
    """TRL's trainers resume from their last checkpoint (resume_from_checkpoint): the same weights."""
    from safetensors.torch import load_file

    whole, broken = tmp_path / "whole", tmp_path / "broken"
    kw = {"method": "sft", "max_steps": 5, "save_every": 2}
    train_policy(config(trees, tiny, whole, **kw))
    real_step, calls = torch.optim.AdamW.step, []

    def step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    with pytest.raises(Interrupted, match="resume from checkpoint-2"):
        train_policy(config(trees, tiny, broken, **kw))
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
    assert train_policy(config(trees, tiny, broken, **kw))["steps"] == 5
    a, b = load_file(whole / "model.safetensors"), load_file(broken / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- errors, one line each
def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert text and "\n" not in text, text
    return text


def test_config_errors(trees, tiny):
    with pytest.raises(ConfigError, match="method must be one of distill, sft, dpo") as e:
        config(trees, tiny, method="ppo")
    one_line(e)
    with pytest.raises(ConfigError, match="needs --model") as e:
        PolicyTrainConfig(sources=(str(trees),))
    one_line(e)
    with pytest.raises(ConfigError, match="at least one search output"):
        PolicyTrainConfig(model=str(tiny))
    for bad in ({"epochs": 0}, {"temperature": 0.0}, {"beta": -1.0}, {"batch_size": 0}, {"min_visits": 0},
                {"learning_rate": 0.0}, {"max_steps": 0}):
        with pytest.raises(ConfigError):
            config(trees, tiny, **bad)


def test_missing_model_and_foreign_output(trees, tmp_path):
    with pytest.raises(ModelError, match="does not exist") as e:
        train_policy(config(trees, tmp_path / "no-such-model", tmp_path / "out"))
    one_line(e)
    with pytest.raises(OutputError, match="not empty and holds no policy") as e:
        train_policy(config(trees, tmp_path / "no-such-model", trees))  # a search store as --out
    one_line(e)


def test_nothing_to_learn(tiny, tmp_path):
    """One simulation a puzzle: no node with visits, no solved path, no pair."""
    store = search(tmp_path / "trees", limit=2, simulations=1)
    for method, message in (("distill", "no node has 10 or more visits"), ("sft", "no successful path"),
                            ("dpo", "no pair under rule 'agentq'")):
        with pytest.raises(StoreError, match=message) as e:
            train_policy(config(store, tiny, tmp_path / method, method=method))
        one_line(e)


def test_distill_refuses_trees_of_several_envs(trees, tiny, tmp_path):
    other = search(tmp_path / "countdown", env="countdown", limit=1, simulations=50)
    cfg = PolicyTrainConfig(sources=(str(trees), str(other)), model=str(tiny), out=str(tmp_path / "p"), progress=False)
    with pytest.raises(ConfigError, match=r"trees of 2 envs \(countdown, game24\)") as e:
        train_policy(cfg)
    one_line(e)


def test_stochastic_env_prompts(tiny, tmp_path, monkeypatch):
    """FrozenLake (slippery): the base prompt comes from the recorded observations; an env with a prompt of its
    own would need its states replayed, which a stochastic env cannot do: refused, one line."""
    from treeq.envs.gym_toytext import GymEnv

    store = search(tmp_path / "lake", env="gym:FrozenLake-v1", limit=None, tasks="0:2", simulations=200)
    cfg = config(store, tiny, min_visits=5)
    examples = training_examples(cfg)
    observations = {obs for (obs,) in nodes(store, "DISTINCT observation")}
    env = GymEnv("FrozenLake-v1")
    assert not env.deterministic and examples
    assert all(p.removesuffix("\nNext action:").removeprefix(f"{env.instructions}\n\n" if env.instructions else "")
               in observations for p, _, _ in examples)

    monkeypatch.setattr(GymEnv, "policy_prompt", lambda self, state: "my own prompt", raising=False)
    with pytest.raises(ConfigError, match="stochastic") as e:
        training_examples(cfg)
    one_line(e)
