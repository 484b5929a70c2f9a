"""export-dpo end to end: search trees -> Parquet pairs -> ``datasets`` -> TRL's ``DPOTrainer``.

The pairs file is loaded with ``datasets.load_dataset("parquet", ...)`` exactly as written
(provenance columns included: TRL drops the columns its collator does not use) and two
optimiser steps run on a tiny Llama built from a config, with a byte-level BPE tokenizer
trained on the spot (``treeq.prm.model.train_tokenizer`` plus an EOS token and, for the
conversational format, a small chat template). Offline: nothing is downloaded.

The last test recomputes the ``agentq`` and ``rstar`` rules from the ``nodes`` table with
plain DuckDB (a recursive CTE for "a terminal below") and checks both ways: every exported
pair obeys the rule (soundness) and every pair the rule calls for is exported (completeness).
"""

from __future__ import annotations

import copy
import math
from collections import Counter, defaultdict
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

FAST = ["--no-progress", "--workers", "1"]
PAIR_COLUMNS = ["prompt", "chosen", "rejected", "task_id", "node_id", "q_chosen", "q_rejected",
                "feedback_chosen", "feedback_rejected", "visits_chosen", "visits_rejected", "rule"]
EOS = "<eos>"
# Renders the prompt with the generation prompt as a prefix of prompt + answer, so TRL's
# tokenized prompt is a prefix of the tokenized prompt + completion.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}" + EOS + "\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
TW_SEEDS = [101, 202]


# ----------------------------------------------------------------------------- helpers
def export(run_cli, store: Path, out: Path, *args: str) -> list[dict]:
    """``export-dpo store --out out *args``; the rows written, as Python dicts."""
    res = run_cli("export-dpo", store, "--out", out, *args)
    assert res.rc == 0, res.err
    rows = pq.read_table(out).to_pylist()
    assert rows and res.out.startswith(f"wrote {len(rows)} "), res.out
    return rows


def nodes_of(store: Path) -> str:
    return f"read_parquet('{store}/nodes/**/*.parquet', union_by_name = true)"


def texts_of(ds) -> list[str]:
    out = []
    for row in ds:
        for key in ("prompt", "chosen", "rejected"):
            value = row[key]
            out += [value] if isinstance(value, str) else [m["content"] for m in value]
    return out


def tiny_tokenizer(texts: list[str], vocab_size: int, chat: bool):
    """Byte-level BPE trained on the pair texts, with a pad token, an EOS token and a chat template."""
    from treeq.prm.model import train_tokenizer

    tok = train_tokenizer(texts, vocab_size)
    tok.add_special_tokens({"eos_token": EOS})
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    assert tok.pad_token is not None and tok.eos_token == EOS
    return tok


def train_two_dpo_steps(pairs: Path, tmp_path: Path, *, chat: bool = False, vocab_size: int = 400):
    """Load ``pairs`` with ``datasets`` unchanged and run two ``DPOTrainer`` steps on CPU.

    Returns the loaded dataset, the tokenizer and the trainer after training.
    """
    pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import DPOConfig, DPOTrainer

    ds = datasets.load_dataset("parquet", data_files=str(pairs), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.column_names == PAIR_COLUMNS
    tok = tiny_tokenizer(texts_of(ds), vocab_size, chat)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=4096, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, bos_token_id=None, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    # A model built from a config has no hub id to reload a reference from: pass a copy.
    ref_model = copy.deepcopy(model)
    args = DPOConfig(
        output_dir=str(tmp_path / "dpo"), max_steps=2, per_device_train_batch_size=2, report_to=[],
        bf16=False, activation_checkpointing=False, use_cpu=True, logging_steps=1, save_strategy="no", disable_tqdm=True,
        max_length=None,  # keep every pair whole: long TextWorld prompts must not be dropped
        seed=0,
    )
    trainer = DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=ds, processing_class=tok)
    assert len(trainer.train_dataset) == len(ds)  # no pair dropped while tokenizing
    result = trainer.train()
    assert result.global_step == trainer.state.global_step == 2
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses), trainer.state.log_history
    assert math.isfinite(result.training_loss)
    return ds, tok, trainer


# ----------------------------------------------------------------------------- Game of 24 into TRL
@pytest.mark.slow
def test_game24_standard_pairs_train_with_trl(run_cli, game24_store, tmp_path):
    pairs = tmp_path / "pairs.parquet"
    rows = export(run_cli, game24_store, pairs)  # default rule agentq
    assert all(isinstance(r[k], str) for r in rows for k in ("prompt", "chosen", "rejected"))
    assert {r["rule"] for r in rows} == {"agentq"}

    ds, tok, trainer = train_two_dpo_steps(pairs, tmp_path)
    assert ds.num_rows == len(rows) and ds[0] == rows[0]
    first = trainer.train_dataset[0]
    # TRL appends EOS to standard completions; prompt and completion ids decode back to the texts
    assert tok.decode(first["prompt_ids"] + first["chosen_ids"]) == rows[0]["prompt"] + rows[0]["chosen"] + EOS
    assert tok.decode(first["prompt_ids"] + first["rejected_ids"]) == rows[0]["prompt"] + rows[0]["rejected"] + EOS


@pytest.mark.slow
def test_game24_conversational_pairs_train_with_trl(run_cli, game24_store, tmp_path):
    pairs = tmp_path / "pairs.parquet"
    rows = export(run_cli, game24_store, pairs, "--format", "conversational")
    assert rows[0]["prompt"][0]["role"] == "user" and rows[0]["chosen"][0]["role"] == "assistant"

    ds, tok, trainer = train_two_dpo_steps(pairs, tmp_path, chat=True)
    assert ds[0]["prompt"] == rows[0]["prompt"] and ds[0]["chosen"] == rows[0]["chosen"]
    first = trainer.train_dataset[0]
    # the chat template was applied: the prompt ids are the rendered user turn plus the generation prompt
    rendered = tok.apply_chat_template(rows[0]["prompt"], tokenize=False, add_generation_prompt=True)
    assert rendered == f"<|user|>\n{rows[0]['prompt'][0]['content']}{EOS}\n<|assistant|>\n"
    assert tok.decode(first["prompt_ids"]) == rendered
    assert tok.decode(first["chosen_ids"]) == f"{rows[0]['chosen'][0]['content']}{EOS}\n"


# ----------------------------------------------------------------------------- TextWorld (graph mode)


@pytest.mark.slow
def test_textworld_graph_pairs_are_admissible_and_train_with_trl(run_cli, tw_games, tmp_path):
    from treeq.envs.textworld import TextWorldEnv

    store = tmp_path / "out"
    res = run_cli("search", "--env", "textworld", "--tasks", tw_games, "--simulations", "200", "--out", store, *FAST)
    assert res.rc == 0, res.err
    trees = duckdb.sql(f"SELECT task_id, backup FROM read_parquet('{store}/trees/**/*.parquet') ORDER BY task_id")
    assert trees.fetchall() == [(f"game-{s}", "max") for s in TW_SEEDS]  # graph mode

    # With gamma 0.95 and a 3-command quest, a detour costs one discount step: sibling values
    # differ by 0.9025 - 0.857 = 0.045 at most here, under the default theta of 0.1.
    pairs = tmp_path / "pairs.parquet"
    rows = export(run_cli, store, pairs, "--theta", "0.04")

    con = duckdb.connect()
    con.execute(f"CREATE VIEW nodes AS SELECT *, coalesce(proven, q) AS value FROM {nodes_of(store)}")
    parents = {(t, n): (obs, key) for t, n, obs, key in con.execute(
        "SELECT task_id, node_id, observation, state_key FROM nodes").fetchall()}
    children = defaultdict(dict)
    for t, parent, action, value in con.execute(
            "SELECT task_id, parent_id, action, value FROM nodes WHERE parent_id >= 0").fetchall():
        assert action not in children[t, parent], (t, parent, action)  # graph mode: one row per tried action
        children[t, parent][action] = value
    for r in rows:
        key = (r["task_id"], r["node_id"])
        assert r["prompt"] == parents[key][0]  # the parent's rendered observation
        assert r["chosen"] in children[key] and r["rejected"] in children[key], r
        assert (r["q_chosen"], r["q_rejected"]) == (children[key][r["chosen"]], children[key][r["rejected"]])
        assert r["q_chosen"] - r["q_rejected"] >= 0.04
    paired = {(r["task_id"], r["node_id"]) for r in rows}
    # graph mode lists a shared state's children once: no state is paired under two rows
    assert len({(t, parents[t, n][1]) for t, n in paired}) == len(paired)

    # Replay each paired node's path in the game: the same state (key) and both commands
    # admissible there. The prompt is the render of that state, but in graph mode one state
    # object serves every row of a shared node (the first path that reached it), so the
    # "> last command" line may come from another row's path: the prompt is the render at
    # the end of the path of some row with the parent's state key, not always its own.
    env = TextWorldEnv()
    tasks = {t.task_id: t for t in env.load_tasks(tw_games)}
    path_of = {(t, n): (p, a) for t, n, p, a in con.execute(
        "SELECT task_id, node_id, parent_id, action FROM nodes").fetchall()}
    rows_of_key = defaultdict(list)
    for (t, n), (_, key) in parents.items():
        rows_of_key[t, key].append(n)

    def replay(task_id: str, node_id: int):
        actions = []
        while node_id != 0:
            node_id, action = path_of[task_id, node_id]
            actions.append(action)
        state = env.reset(tasks[task_id])
        for action in reversed(actions):
            state = env.step(state, action).state
        return state

    by_node = defaultdict(set)
    for r in rows:
        by_node[r["task_id"], r["node_id"]] |= {r["chosen"], r["rejected"]}
    for (task_id, node_id), commands in by_node.items():
        prompt, key = parents[task_id, node_id]
        state = replay(task_id, node_id)
        assert env.state_key(state) == key
        assert commands <= set(env.legal_actions(state)), (task_id, node_id, commands)
        if env.render(state) != prompt:
            assert any(env.render(replay(task_id, other)) == prompt for other in rows_of_key[task_id, key]), node_id
    env.close()

    train_two_dpo_steps(pairs, tmp_path, vocab_size=1000)


# ----------------------------------------------------------------------------- the rules, recomputed in DuckDB
CHILDREN_SQL = """
WITH RECURSIVE
n AS (SELECT *, coalesce(proven, q) AS value FROM {nodes}),
below(task_id, top_id, node_id) AS (          -- every row with itself and all its descendants
    SELECT task_id, node_id, node_id FROM n
    UNION ALL
    SELECT b.task_id, b.top_id, c.node_id FROM below b JOIN n c ON c.task_id = b.task_id AND c.parent_id = b.node_id
),
flags AS (
    SELECT b.task_id, b.top_id,
           bool_or(d.terminal AND d.reward >= 1) AS correct_below,
           bool_or(d.terminal AND d.reward < 1) AS wrong_below
    FROM below b JOIN n d ON d.task_id = b.task_id AND d.node_id = b.node_id
    GROUP BY b.task_id, b.top_id
)
SELECT k.task_id, k.parent_id, k.node_id, k.action, k.value, k.visits, f.correct_below, f.wrong_below
FROM n k JOIN flags f ON f.task_id = k.task_id AND f.top_id = k.node_id
WHERE k.parent_id >= 0 AND k.action IS NOT NULL AND k.value IS NOT NULL AND (k.visits >= 1 OR k.proven IS NOT NULL)
ORDER BY k.task_id, k.parent_id, k.node_id
"""


def recompute_children(store: Path) -> dict[tuple[str, int], list[dict]]:
    """The paired children of every node (visits >= 1 or proven, a value), with their terminal flags."""
    rel = duckdb.sql(CHILDREN_SQL.format(nodes=nodes_of(store)))
    kids = defaultdict(list)
    for row in rel.fetchall():
        kid = dict(zip(rel.columns, row))
        kids[kid["task_id"], kid["parent_id"]].append(kid)
    return kids


def pair_keys(rows) -> Counter:
    return Counter((r["task_id"], r["node_id"], r["chosen"], r["rejected"]) for r in rows)


def test_rules_recomputed_from_nodes_with_duckdb(run_cli, game24_store, tmp_path):
    store = game24_store
    meta = duckdb.sql(f"SELECT DISTINCT backup FROM read_parquet('{store}/trees/**/*.parquet')").fetchall()
    assert meta == [("mean",)]  # tree mode: every row lists its own children
    no_feedback = duckdb.sql(f"SELECT count(feedback) FROM {nodes_of(store)}").fetchall()[0][0]
    assert no_feedback == 0  # so agentq's score is the value alone
    kids = recompute_children(store)
    obs = dict(((t, n), o) for t, n, o in duckdb.sql(
        f"SELECT task_id, node_id, observation FROM {nodes_of(store)}").fetchall())

    # ---- agentq, theta 0.1
    theta = 0.1
    got = export(run_cli, store, tmp_path / "agentq.parquet", "--rule", "agentq", "--theta", str(theta))
    for r in got:
        siblings = kids[r["task_id"], r["node_id"]]
        (c,) = [k for k in siblings if k["action"] == r["chosen"]]
        (w,) = [k for k in siblings if k["action"] == r["rejected"]]
        assert (r["q_chosen"], r["q_rejected"]) == (c["value"], w["value"])
        assert (r["visits_chosen"], r["visits_rejected"]) == (c["visits"], w["visits"])
        assert r["q_chosen"] - r["q_rejected"] >= theta
        assert r["prompt"] == obs[r["task_id"], r["node_id"]] and r["rule"] == "agentq"
    want = Counter()
    sibling_pairs = 0
    for (task_id, parent), siblings in kids.items():
        for i, a in enumerate(siblings):
            for b in siblings[i + 1:]:
                sibling_pairs += 1
                hi, lo = (a, b) if a["value"] >= b["value"] else (b, a)
                if hi["value"] - lo["value"] >= theta and hi["action"] != lo["action"]:
                    want[task_id, parent, hi["action"], lo["action"]] += 1
    assert 0 < len(got) < sibling_pairs  # theta does cut
    assert pair_keys(got) == want

    # ---- rstar
    got = export(run_cli, store, tmp_path / "rstar.parquet", "--rule", "rstar")
    by_parent = defaultdict(list)
    for r in got:
        siblings = kids[r["task_id"], r["node_id"]]
        (c,) = [k for k in siblings if k["action"] == r["chosen"]]
        (w,) = [k for k in siblings if k["action"] == r["rejected"]]
        assert c["correct_below"] and w["wrong_below"], r
        assert (r["q_chosen"], r["q_rejected"]) == (c["value"], w["value"])
        assert r["q_chosen"] - r["q_rejected"] > 0
        assert r["prompt"] == obs[r["task_id"], r["node_id"]] and r["rule"] == "rstar"
        by_parent[r["task_id"], r["node_id"]].append(r)
    for key, prs in by_parent.items():
        # among the top k by value (ties allowed): k = 2, or 4 when the other side has one candidate
        good = sorted((k["value"] for k in kids[key] if k["correct_below"]), reverse=True)
        bad = sorted(k["value"] for k in kids[key] if k["wrong_below"])
        top = good[min(len(good), 4 if len(bad) == 1 else 2) - 1]
        bottom = bad[min(len(bad), 4 if len(good) == 1 else 2) - 1]
        assert all(r["q_chosen"] >= top and r["q_rejected"] <= bottom for r in prs), (key, prs)
    want = Counter()
    for (task_id, parent), siblings in kids.items():
        # ties broken by node id (creation order), as the export does
        good = sorted((k for k in siblings if k["correct_below"]), key=lambda k: (-k["value"], k["node_id"]))
        bad = sorted((k for k in siblings if k["wrong_below"]), key=lambda k: (k["value"], k["node_id"]))
        for g in good[:4 if len(bad) == 1 else 2]:
            for b in bad[:4 if len(good) == 1 else 2]:
                if g["value"] - b["value"] > 0 and g["action"] != b["action"]:
                    want[task_id, parent, g["action"], b["action"]] += 1
    assert got and pair_keys(got) == want
