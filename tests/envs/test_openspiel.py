"""OpenSpiel adapter: the env checker, action texts, rewards against returns, keys and
transpositions, chance nodes, refusals, the playout fast path, a search that finds the
catch, and the CLI."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("pyspiel")

from treeq.envs.base import Env, Task  # noqa: E402
from treeq.envs.checker import check_env  # noqa: E402
from treeq.envs.openspiel_env import OpenSpielEnv, OpenSpielState  # noqa: E402
from treeq.envs.registry import ENV_NAMES, make_env  # noqa: E402
from treeq.errors import ActionError, ConfigError, TaskFileError, TreeqError, UnknownEnvError  # noqa: E402
from treeq.mcts import SearchConfig, search  # noqa: E402


@pytest.fixture(scope="module")
def catch() -> OpenSpielEnv:
    return make_env("openspiel:catch")


@pytest.fixture(scope="module")
def cliff() -> OpenSpielEnv:
    return make_env("openspiel:cliff_walking")


def _start(env: OpenSpielEnv, seed: int = 0) -> OpenSpielState:
    return env.reset(Task(f"seed-{seed}", {"seed": seed}))


def _play(env: OpenSpielEnv, state, actions, rng=None):
    total, step = 0.0, None
    for a in actions:
        step = env.step(state, a, rng)
        total += step.reward
        state = step.state
    return state, total, step


def _v_star(env: OpenSpielEnv, state, memo: dict) -> float:
    """Exact optimal return-to-go of a game without chance after its start (catch)."""
    key = env.state_key(state)
    if key not in memo:
        acts = env.legal_actions(state)
        best = 0.0
        if acts:
            best = max(s.reward + (0.0 if s.terminated else _v_star(env, s.state, memo))
                       for s in (env.step(state, a) for a in acts))
        memo[key] = best
    return memo[key]


# ----------------------------------------------------------------------------- the protocol
@pytest.mark.parametrize("game", ["catch", "cliff_walking"])
def test_check_env_passes(game):
    env = make_env(f"openspiel:{game}")
    for task in env.load_tasks("0:3"):
        check_env(env, task, steps=40, seed=int(task.payload["seed"]),
                  env_spec=(f"openspiel:{game}", {}) if task.task_id == "seed-0" else None)


def test_registry_names_and_attributes(catch, cliff):
    assert "openspiel:<game>" in ENV_NAMES
    assert isinstance(catch, Env) and catch.name == "openspiel:catch"
    assert (catch.default_gamma, catch.prefer_transpositions, catch.default_evaluator) == (1.0, False, "rollout")
    assert catch.deterministic is False  # explicit chance (the ball's column)
    assert cliff.deterministic is True
    assert catch.default_c == pytest.approx(1.0)  # utilities in [-1, 1]
    small = make_env("openspiel:catch", rows=6, columns=3)
    assert [len(row) for row in small.state_key(_start(small)).splitlines()] == [3] * 6


def test_legal_action_texts(catch, cliff):
    assert catch.legal_actions(_start(catch)) == ["LEFT", "STAY", "RIGHT"]
    assert cliff.legal_actions(_start(cliff)) == ["RIGHT", "UP", "LEFT", "DOWN"]
    state = _start(catch)
    lst = catch.legal_actions(state)
    lst.append("JUMP")  # the caller's copy: the state's actions stay as they were
    assert catch.legal_actions(state) == ["LEFT", "STAY", "RIGHT"]
    with pytest.raises(ActionError, match="illegal action 'JUMP'.*LEFT, STAY, RIGHT"):
        catch.step(state, "JUMP")


@pytest.mark.parametrize("game", ["catch", "cliff_walking", "deep_sea", "2048", "blackjack"])
def test_shared_action_tables_match_action_to_string(game):
    """These games' texts are computed once per action set; check them against pyspiel."""
    env = make_env(f"openspiel:{game}")
    rng = np.random.default_rng(0)
    for seed in range(5):
        state = _start(env, seed)
        for _ in range(60):
            acts = env.legal_actions(state)
            if not acts:
                break
            s = state.s
            assert acts == [s.action_to_string(s.current_player(), a) for a in s.legal_actions()]
            state = env.step(state, acts[int(rng.integers(len(acts)))], rng).state


def test_reset_is_the_position_after_the_opening_chance_node(catch):
    a, b = _start(catch, 4), catch.reset(Task("x", {"seed": 4}), np.random.default_rng(99))
    assert not a.s.is_chance_node() and a.s.current_player() == 0
    assert catch.state_key(a) == catch.state_key(b)  # the task seed decides, not the caller's rng
    columns = {catch.render(_start(catch, s)).splitlines()[0] for s in range(20)}
    assert len(columns) == 5  # every ball column occurs among 20 seeds


def test_states_are_immutable(catch):
    state = _start(catch, 2)
    before = catch.state_key(state)
    first = catch.step(state, "LEFT")
    catch.step(state, "RIGHT")
    assert catch.state_key(state) == before
    again = catch.step(state, "LEFT")
    assert catch.state_key(again.state) == catch.state_key(first.state) != before


# ----------------------------------------------------------------------------- rewards and returns
@pytest.mark.parametrize("game", ["catch", "cliff_walking", "deep_sea"])  # terminal, dense, dense rewards
def test_step_rewards_sum_to_the_returns(game):
    env = make_env(f"openspiel:{game}")
    for seed in range(8):
        rng = np.random.default_rng(seed)
        state, total = _start(env, seed), 0.0
        for _ in range(500):
            acts = env.legal_actions(state)
            step = env.step(state, acts[int(rng.integers(len(acts)))], rng)
            total += step.reward
            state = step.state
            if step.terminated:
                break
        assert step.terminated and env.legal_actions(state) == []
        assert total == pytest.approx(state.s.returns()[0])
        assert step.info["success"] == (state.s.returns()[0] >= env.max_utility)


def test_cliff_walking_shortest_path_succeeds_and_the_cliff_does_not(cliff):
    state, total, step = _play(cliff, _start(cliff), ["UP"] + ["RIGHT"] * 7 + ["DOWN"])
    assert step.terminated and step.info["success"] and total == -9.0 == cliff.max_utility
    _, total, step = _play(cliff, _start(cliff), ["RIGHT"])
    assert step.terminated and not step.info["success"] and total == -100.0


def test_deterministic_steps_are_marked_for_the_engine(catch):
    step = catch.step(_start(catch), "STAY")
    assert step.info["deterministic"] is True  # no chance node after the opening one


def test_chance_nodes_are_sampled_with_the_search_generator():
    env = make_env("openspiel:blackjack")
    state = _start(env, 3)
    keys = set()
    for seed in range(12):
        step = env.step(state, "Hit", np.random.default_rng(seed))
        assert "deterministic" not in step.info  # a card was drawn
        again = env.step(state, "Hit", np.random.default_rng(seed))
        assert env.state_key(again.state) == env.state_key(step.state)  # same generator state, same card
        keys.add(env.state_key(step.state))
    assert len(keys) > 1
    with pytest.raises(ConfigError, match="generator"):
        env.step(state, "Hit")


# ----------------------------------------------------------------------------- keys
def test_keys_are_positions_and_transpositions_merge(cliff, catch):
    start = _start(cliff)
    a, _, _ = _play(cliff, start, ["UP", "RIGHT", "UP"])
    b, _, _ = _play(cliff, start, ["UP", "UP", "RIGHT"])
    c, _, _ = _play(cliff, start, ["UP", "UP", "RIGHT", "DOWN", "UP"])  # longer path, no clock in the key
    d, _, _ = _play(cliff, start, ["UP", "RIGHT", "RIGHT"])
    assert cliff.state_key(a) == cliff.state_key(b) == cliff.state_key(c) != cliff.state_key(d)
    assert cliff.state_key(a) == str(a.s)
    x, _, _ = _play(catch, _start(catch), ["LEFT", "RIGHT"])
    y, _, _ = _play(catch, _start(catch), ["STAY", "STAY"])
    z, _, _ = _play(catch, _start(catch), ["STAY", "LEFT"])
    assert catch.state_key(x) == catch.state_key(y) != catch.state_key(z)


# ----------------------------------------------------------------------------- render
def test_render_is_the_board_then_whose_turn(cliff, catch):
    """The prompt text: the game's own board (the key) and a line saying who moves or that it is over."""
    start = _start(cliff)
    assert cliff.render(start) == "........\n........\n........\nPXXXXXXG\nCliffWalking: player 0 to move"
    end = cliff.step(start, "RIGHT")  # into the cliff
    assert end.terminated and cliff.render(end.state) == "........\n........\n........\n.PXXXXXG\nCliffWalking: game over"
    board, turn = catch.render(_start(catch, 4)).rsplit("\n", 1)
    assert board == catch.state_key(_start(catch, 4)).rstrip("\n") and turn == "Catch: player 0 to move"


@pytest.mark.parametrize("game", ["catch", "cliff_walking", "2048", "blackjack"])
def test_different_positions_render_differently(game):
    env = make_env(f"openspiel:{game}")
    rng = np.random.default_rng(0)
    texts: dict[str, str] = {}
    for seed in range(5):
        state = _start(env, seed)
        for _ in range(30):
            texts.setdefault(env.render(state), env.state_key(state))
            assert texts[env.render(state)] == env.state_key(state)
            acts = env.legal_actions(state)
            if not acts:
                break
            state = env.step(state, acts[int(rng.integers(len(acts)))], rng).state
    assert len(texts) > 10


# ----------------------------------------------------------------------------- playout fast path
@pytest.mark.parametrize("game,gamma", [("catch", 1.0), ("catch", 0.9), ("cliff_walking", 1.0), ("cliff_walking", 0.95)])
def test_playout_fast_path_matches_the_generic_playout(game, gamma):
    env = make_env(f"openspiel:{game}")
    state = _play(env, _start(env, 1), [env.legal_actions(_start(env, 1))[1]])[0]
    for seed in range(30):
        fast = env.playout(state, iter(np.random.default_rng(seed).random(1000).tolist()).__next__, gamma, 200,
                           np.random.default_rng(0))
        slow = Env.playout(env, state, iter(np.random.default_rng(seed).random(1000).tolist()).__next__, gamma, 200,
                           np.random.default_rng(0))
        assert fast == pytest.approx(slow, abs=1e-9)
    short = env.playout(state, iter([0.0] * 10).__next__, gamma, 3, np.random.default_rng(0))
    assert short == pytest.approx(Env.playout(env, state, iter([0.0] * 10).__next__, gamma, 3, None))


def test_playout_with_chance_nodes_agrees_in_distribution():
    env = make_env("openspiel:blackjack")
    state = _start(env, 5)
    draws = iter(np.random.default_rng(1).random(200_000).tolist()).__next__
    fast = [env.playout(state, draws, 1.0, 50, np.random.default_rng(0)) for _ in range(3000)]
    rng = np.random.default_rng(2)
    slow = [Env.playout(env, state, iter(rng.random(100).tolist()).__next__, 1.0, 50, rng) for _ in range(3000)]
    assert abs(np.mean(fast) - np.mean(slow)) < 4 * np.sqrt(np.var(fast) / 3000 + np.var(slow) / 3000) + 1e-9


# ----------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("name,kwargs,error,pattern", [
    ("openspiel:no_such_game", {}, UnknownEnvError, "unknown OpenSpiel game 'no_such_game'; single-player games: .*catch"),
    ("openspiel:tic_tac_toe", {}, ConfigError, "has 2 players"),
    ("openspiel:catch", {"rows": "ten"}, ConfigError, "'rows' of 'catch' must be of type int"),
    ("openspiel:catch", {"rows": 2.5}, ConfigError, "must be of type int"),
    ("openspiel:catch", {"speed": 3}, ConfigError, "no parameter 'speed'; parameters: columns, rows"),
    ("openspiel:catch", {"rows": 1}, ConfigError, "over before its first move"),
    ("openspiel:stones_and_gems", {}, ConfigError, "samples its chance events itself"),
    ("openspiel:mfg_garnet", {}, ConfigError, "not a sequential game"),
    ("openspiel:crossword", {}, ConfigError, "cannot list its legal actions"),
])
def test_refusals_are_one_line(name, kwargs, error, pattern, capfd):
    with pytest.raises(error, match=pattern) as info:
        make_env(name, **kwargs)
    assert isinstance(info.value, TreeqError) and "\n" not in str(info.value)
    assert capfd.readouterr().err == ""  # pyspiel's own copy of the error is silenced


def test_float_parameters_take_ints():
    env = make_env("openspiel:deep_sea", size=4, unscaled_move_cost=0)
    assert len(env.state_key(_start(env)).splitlines()) == 5
    assert env.deterministic


def test_missing_open_spiel_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspiel", None)  # import pyspiel -> ImportError
    with pytest.raises(ConfigError, match="pip install open_spiel") as info:
        make_env("openspiel:catch")
    assert "\n" not in str(info.value)


def test_tasks_are_seeds(catch, tmp_path):
    assert [t.task_id for t in catch.load_tasks(None)] == [f"seed-{i}" for i in range(10)]
    assert [t.payload["seed"] for t in catch.load_tasks("3,7")] == [3, 7]
    assert len(catch.load_tasks("0:2")) == 2
    f = tmp_path / "seeds.txt"
    f.write_text("5\n\n9\n")
    assert [t.payload["seed"] for t in catch.load_tasks(str(f))] == [5, 9]
    for content, pattern in [(b"5\nx\n", "non-negative integer"), (b"5\n5\n", "twice"), (b"\xff\xfe1", "UTF-8"),
                             (b"", "empty")]:
        f.write_bytes(content)
        with pytest.raises(TaskFileError, match=pattern):
            catch.load_tasks(str(f))
    with pytest.raises(TaskFileError, match="seeds"):
        catch.load_tasks("nowhere.txt")


# ----------------------------------------------------------------------------- search
@pytest.mark.parametrize("seed", [0, 3])
def test_search_finds_the_catch(catch, seed):
    root = _start(catch, seed)
    result = search(catch, root, SearchConfig(simulations=10_000, c=1.0, solver=False), np.random.default_rng(seed))
    tree = result.tree
    kids = list(tree.children(0))
    assert sorted(tree.action_text(k) for k in kids) == ["LEFT", "RIGHT", "STAY"]
    best = max(kids, key=lambda k: tree.visits[k])
    assert tree.q()[best] > 0.9
    memo: dict = {}
    step = catch.step(root, tree.action_text(best))
    assert step.reward + _v_star(catch, step.state, memo) == 1.0  # the most visited action still catches
    assert result.solved


def test_cli_search(tmp_path):
    from treeq.cli import main

    out = tmp_path / "out"
    rc = main(["search", "--env", "openspiel:catch", "--tasks", "0:2", "--simulations", "200", "--out", str(out),
               "--workers", "1", "--no-progress"])
    assert rc == 0
    assert list(out.rglob("*.parquet"))
