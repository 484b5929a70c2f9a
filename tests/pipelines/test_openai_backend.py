"""The openai backend against a local completions server wrapping the same tiny model.

Same model, same numbers: the priors (score and propose modes) and a whole search match
the in-process backend. Failures (server down, garbage, HTTP 500, a stall mid-run) end a
search as one line and exit code 2, with the finished tasks kept.
"""

from __future__ import annotations

import math
import shutil
import socket
from pathlib import Path

import duckdb
import numpy as np
import pytest
from lm_server import serve

from treeq.envs.registry import make_env
from treeq.errors import ModelError
from treeq.pipelines.config import TinyLMConfig
from treeq.pipelines.policies.lm import LMConfig, lm_propose
from treeq.pipelines.policies.openai import BATCH_TEXTS, OpenAIBackend
from treeq.pipelines.tiny_lm import make_tiny_model

SEARCH = ["search", "--env", "game24", "--policy", "hf", "--wave-size", "8", "--selection", "puct",
          "--simulations", "60", "--workers", "1", "--no-progress"]


def rows(out: Path, table: str, select: str, order: str) -> list[tuple]:
    return duckdb.sql(f"SELECT {select} FROM read_parquet('{out}/{table}/**/*.parquet') ORDER BY {order}").fetchall()


def free_port_url() -> str:
    """The URL of a port nothing listens on (bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_model(TinyLMConfig(env="game24", out=str(tmp_path_factory.mktemp("lm") / "tiny")))


@pytest.fixture(scope="module")
def server(tiny):
    url, stop = serve(tiny)
    yield url
    stop()


def game24_states(n_tasks: int = 3) -> tuple:
    """Roots of the first tasks and one child of each: a few Game of 24 states."""
    env = make_env("game24")
    rng = np.random.default_rng(0)
    states = []
    for task in env.load_tasks(None)[:n_tasks]:
        root = env.reset(task, rng)
        states += [root, env.step(root, env.legal_actions(root)[-1], rng).state]
    return env, states


def assert_same_proposals(a: list, b: list) -> None:
    assert [[act for act, _ in props] for props in a] == [[act for act, _ in props] for props in b]
    for pa, pb in zip(a, b):
        assert np.allclose([p for _, p in pa], [p for _, p in pb], rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------- same numbers
def test_same_priors_as_in_process(tiny, server):
    """Score mode: the legal actions' priors agree; with --model the tokenizer loads (no chat template: a space)."""
    env, states = game24_states()
    local = lm_propose(env, np.random.default_rng(1), LMConfig(model=str(tiny)))(states, 8)
    remote = lm_propose(env, np.random.default_rng(1), LMConfig(backend="openai", base_url=server))(states, 8)
    named = lm_propose(env, np.random.default_rng(1),
                       LMConfig(backend="openai", base_url=server, model=str(tiny)))(states, 8)
    assert sum(len(p) for p in local) > BATCH_TEXTS  # several requests per call
    assert_same_proposals(local, remote)
    assert_same_proposals(local, named)
    assert len({round(p, 6) for _, p in local[0]}) > 1  # the model's priors, not uniform ones


def test_backend_asks_the_model_name_and_joins_with_a_space(tiny, server):
    backend = OpenAIBackend(server)
    assert backend.model == str(tiny) and backend.tokenizer is None and backend.joiner == " "
    assert backend.format_prompt("Numbers: 1 2 3 4") == "Numbers: 1 2 3 4"
    # A served name that is no tokenizer (not a path nor a hub id: no hub lookup): plain prompts.
    named = OpenAIBackend(server, model="local-llm:7b")
    assert named.model == "local-llm:7b" and named.tokenizer is None and named.joiner == " "


def test_chat_template_as_in_process(tiny, server, tmp_path):
    """A --model whose tokenizer has a chat template: same prompts as HFBackend, no space, same priors."""
    from treeq.pipelines.models import load_tokenizer

    chat = tmp_path / "chat"
    shutil.copytree(tiny, chat)
    tok = load_tokenizer(str(chat))
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    tok.save_pretrained(chat)
    backend = OpenAIBackend(server, model=str(chat))
    assert backend.joiner == "" and backend.model == str(chat)
    assert backend.format_prompt("Numbers: 1 2 3 4") == "<|user|>\nNumbers: 1 2 3 4\n<|assistant|>\n"
    env, states = game24_states(1)
    local = lm_propose(env, np.random.default_rng(2), LMConfig(model=str(chat)))(states, 8)
    remote = lm_propose(env, np.random.default_rng(2),
                        LMConfig(backend="openai", base_url=server, model=str(chat)))(states, 8)
    assert_same_proposals(local, remote)


def test_propose_mode_samples_as_in_process(tiny, server):
    """Open-text steps (llm-steps): the same seed draws the same steps, scored the same."""
    env = make_env("llm-steps")
    rng = np.random.default_rng(0)
    states = [env.reset(t, rng) for t in env.load_tasks(None)[:2]]
    local = lm_propose(env, np.random.default_rng(3), LMConfig(model=str(tiny), max_new_tokens=8))(states, 4)
    remote = lm_propose(env, np.random.default_rng(3),
                        LMConfig(backend="openai", base_url=server, max_new_tokens=8))(states, 4)
    assert all(props for props in local)
    assert_same_proposals(local, remote)
    drawn = OpenAIBackend(server).sample(["Numbers: 4 4 6 8", "Step"], 3, 6, 1.0, seed=5)
    assert [len(d) for d in drawn] == [3, 3] and all("\n" not in t for d in drawn for t in d)


@pytest.mark.slow
def test_search_through_the_server_matches_in_process(run_cli, tiny, server, tmp_path):
    """A whole search: exit 0 and the same tree, prior for prior."""
    a, b = tmp_path / "hf", tmp_path / "openai"
    res = run_cli(*SEARCH, "--limit", "2", "--model", tiny, "--out", a)
    assert res.rc == 0, res.err
    res = run_cli(*SEARCH, "--limit", "2", "--backend", "openai", "--base-url", server, "--out", b)
    assert res.rc == 0, res.err
    cols, order = "task_id, node_id, parent_id, action, prior", "task_id, node_id"
    local, remote = rows(a, "nodes", cols, order), rows(b, "nodes", cols, order)
    assert len(local) > 20 and [r[:4] for r in local] == [r[:4] for r in remote]
    assert all(math.isclose(x[4], y[4], abs_tol=1e-5) for x, y in zip(local, remote))
    assert rows(b, "trees", "status", "task_id") == [("ok",), ("ok",)]


# ---------------------------------------------------------------------------- failures
def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("fault, expected", [
    ("down", "cannot reach the model server at {url}: "),
    ("garbage", "the model server at {url} answered something that is not an OpenAI completions response: "),
    ("http500", ("the model server at {url} answered HTTP 500 Internal Server Error to POST /completions: "
                 "CUDA out of memory")),
    ("no-logprobs", ("the model server at {url} answered something that is not an OpenAI completions response: "
                     "choice 0 has no logprobs")),
], ids=["down", "garbage", "http500", "no-logprobs"])
def test_server_failures_are_one_line_and_exit_2(run_cli, tiny, tmp_path, fault, expected):
    if fault == "down":
        url, stop = free_port_url(), None
    else:
        url, stop = serve(tiny, fault=fault)
    try:
        res = run_cli(*SEARCH, "--limit", "1", "--backend", "openai", "--base-url", url, "--out", tmp_path / "out")
    finally:
        if stop:
            stop()
    assert res.rc == 2
    assert expected.format(url=url) in one_line(res.err)


def test_server_failures_raise_model_error(tiny):
    with pytest.raises(ModelError, match=r"^cannot reach the model server at http://127\.0\.0\.1:\d+/v1: .*refused"):
        OpenAIBackend(free_port_url())
    url, stop = serve(tiny, stall_after=0, stall_s=10)
    try:
        backend = OpenAIBackend(url, timeout=0.3)  # GET /models is not stalled
        with pytest.raises(ModelError, match=rf"^the model server at {url} did not answer within 0\.3 s"):
            backend.score(["Numbers: 1 2 3 4"], [[" 1 + 2 = 3"]])
    finally:
        stop()


@pytest.mark.slow
def test_timeout_mid_run_keeps_finished_tasks(run_cli, tiny, tmp_path):
    """The server stalls inside the 2nd of 3 tasks and stays stalled: the run goes on, each later task
    times out too and is recorded; exit 2, one line naming the first; task 1 intact."""
    url, stop = serve(tiny)  # how many requests the first task takes
    try:
        assert run_cli(*SEARCH, "--limit", "1", "--backend", "openai", "--base-url", url,
                       "--out", tmp_path / "count").rc == 0
        first = stop.completions
    finally:
        stop()
    url, stop = serve(tiny, stall_after=first + 1, stall_s=20)
    out = tmp_path / "out"
    try:
        res = run_cli(*SEARCH, "--limit", "3", "--backend", "openai", "--base-url", url, "--timeout", "1.5",
                      "--out", out)
    finally:
        stop()
    assert res.rc == 2
    line = one_line(res.err)
    timed_out = f"the model server at {url} did not answer within 1.5 s (raise --timeout if it is busy)"
    assert line.startswith(f"error: task 24-1: {timed_out} (and 1 more); 2 of 3 tasks failed")
    assert rows(out, "trees", "task_id, status, error", "task_id") == [
        ("24-0", "ok", None), ("24-1", "error", f"task 24-1: {timed_out}"), ("24-2", "error", f"task 24-2: {timed_out}")]
    assert rows(out, "nodes", "DISTINCT task_id", "task_id") == [("24-0",)]
    local = rows(tmp_path / "count", "nodes", "node_id, prior", "node_id")
    assert rows(out, "nodes", "node_id, prior", "node_id") == local  # the finished task is whole
