"""Gymnasium toy-text adapter: exact Q* by value iteration, actions, tasks, stochastic steps,
the time limit and restoring a state after stepping others."""

from __future__ import annotations

import numpy as np
import pytest

from treeq.envs.base import Task
from treeq.envs.gym_toytext import ACTION_NAMES, GymEnv, GymState, value_iteration
from treeq.envs.registry import make_env
from treeq.errors import ActionError, ConfigError, TaskFileError, UnknownEnvError


def _start(env: GymEnv, seed: int = 0) -> GymState:
    return env.reset(Task(f"seed-{seed}", {"seed": seed}))


@pytest.fixture(scope="module")
def lake() -> GymEnv:
    return GymEnv("FrozenLake-v1", is_slippery=False)


@pytest.fixture(scope="module")
def slippery() -> GymEnv:
    return GymEnv("FrozenLake-v1")


@pytest.fixture(scope="module")
def taxi() -> GymEnv:
    return GymEnv("Taxi-v4")


# ----------------------------------------------------------------------------- value iteration
def test_value_iteration_two_state_mdp_by_hand():
    """Two states, two actions, gamma 0.5; P[s][a] = [(prob, next, reward, terminated)].

    State 1: action 0 ends the episode with reward 2 -> Q(1,0) = 2;
             action 1 goes back to 0 with reward 0 -> Q(1,1) = 0.5 V(0).
    State 0: action 0 stays (reward 0)            -> Q(0,0) = 0.5 V(0);
             action 1: w.p. 1/2 to state 1 with reward 1, else stay with 0
                                                   -> Q(0,1) = 0.5 (1 + 0.5 V(1)) + 0.5 (0.5 V(0)).
    With V(1) = 2: V(0) = Q(0,1) = 1 + 0.25 V(0) -> V(0) = 4/3 (and Q(0,0) = 2/3 < 4/3).
    Q(1,1) = 2/3 < 2, so V(1) = 2 holds. Q* = [[2/3, 4/3], [2, 2/3]].
    """
    P = {
        0: {0: [(1.0, 0, 0.0, False)], 1: [(0.5, 1, 1.0, False), (0.5, 0, 0.0, False)]},
        1: {0: [(1.0, 1, 2.0, True)], 1: [(1.0, 0, 0.0, False)]},
    }
    q = value_iteration(P, 0.5)
    assert q.shape == (2, 2)
    assert q == pytest.approx(np.array([[2 / 3, 4 / 3], [2.0, 2 / 3]]), abs=1e-9)


def test_value_iteration_terminated_transition_has_no_future():
    """A terminated transition back into a valuable state adds nothing after its reward."""
    P = {0: {0: [(1.0, 0, 1.0, True)], 1: [(1.0, 0, 0.5, False)]}}
    # Q(0,0) = 1 (ends); Q(0,1) = 0.5 + 0.9 V(0) with V(0) = max(1, Q(0,1)) -> Q(0,1) = 0.5 + 0.9 Q(0,1) = 5
    assert value_iteration(P, 0.9) == pytest.approx(np.array([[1.0, 5.0]]), abs=1e-8)


def test_frozenlake_deterministic_q_star(lake):
    """From 0 the goal (15) is 6 moves away: down or right first gives 0.95**5; left (stay) 0.95**6."""
    q = lake.q_star(0.95)
    left, down, right, up = (lake.actions.index(a) for a in ("left", "down", "right", "up"))
    assert q[0, down] == pytest.approx(0.95**5, abs=1e-9)
    assert q[0, right] == pytest.approx(0.95**5, abs=1e-9)
    assert q[0, left] == pytest.approx(0.95**6, abs=1e-9)
    assert q[0, up] == pytest.approx(0.95**6, abs=1e-9)
    assert q[14, right] == pytest.approx(1.0)  # the move into the goal
    assert lake.exact_q(_start(lake), "down", 0.95) == pytest.approx(0.95**5)


def test_frozenlake_slippery_q_star(slippery):
    assert slippery.q_star(0.95)[0] == pytest.approx([0.180, 0.172, 0.172, 0.163], abs=1e-3)


# ----------------------------------------------------------------------------- actions
@pytest.mark.parametrize(
    "env_id, names",
    [
        ("FrozenLake-v1", ("left", "down", "right", "up")),
        ("CliffWalking-v1", ("up", "right", "down", "left")),
        ("Taxi-v4", ("south", "north", "east", "west", "pickup", "dropoff")),
    ],
)
def test_action_names(env_id, names):
    env = GymEnv(env_id)
    assert env.actions == names
    assert env.legal_actions(_start(env)) == list(names)
    assert ACTION_NAMES[env_id.split("-")[0]] == names


@pytest.mark.parametrize(
    "env_id, names",
    [("FrozenLake8x8-v1", ("left", "down", "right", "up")), ("CliffWalkingSlippery-v1", ("up", "right", "down", "left"))],
)
def test_action_names_of_registered_variants(env_id, names):
    assert GymEnv(env_id).actions == names


def test_actions_move_as_named():
    """CliffWalking from the start (36, bottom left): up -> 24; right walks off the cliff (-100)."""
    cliff = GymEnv("CliffWalking-v1")
    s0 = _start(cliff)
    up = cliff.step(s0, "up")
    assert (up.state.s, up.reward, up.terminated) == (24, -1.0, False)
    off = cliff.step(s0, "right")
    assert (off.state.s, off.reward, off.terminated) == (36, -100.0, False)


def test_unknown_action_name(lake):
    with pytest.raises(ActionError, match=r"'jump'.*left, down, right, up"):
        lake.step(_start(lake), "jump")
    with pytest.raises(ActionError):
        lake.step(_start(lake), "Down")  # names are exact


# ----------------------------------------------------------------------------- tasks
def test_load_tasks_default_range_and_list(lake):
    tasks = lake.load_tasks(None)
    assert [t.task_id for t in tasks] == [f"seed-{i}" for i in range(10)]
    assert [t.payload for t in tasks] == [{"seed": i} for i in range(10)]
    assert [t.payload["seed"] for t in lake.load_tasks("0:3")] == [0, 1, 2]
    assert [t.task_id for t in lake.load_tasks("3,7")] == ["seed-3", "seed-7"]


def test_load_tasks_from_file(lake, tmp_path):
    f = tmp_path / "seeds.txt"
    f.write_text("5\n\n 12 \n0\n")
    assert [t.task_id for t in lake.load_tasks(f)] == ["seed-5", "seed-12", "seed-0"]
    assert [t.task_id for t in lake.load_tasks(str(f))] == ["seed-5", "seed-12", "seed-0"]
    bad = tmp_path / "bad.txt"
    bad.write_text("1\n2\nthree\n")
    with pytest.raises(TaskFileError, match=rf"{bad}:3.*'three'"):
        lake.load_tasks(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(TaskFileError, match="no seeds"):
        lake.load_tasks(empty)


@pytest.mark.parametrize("spec", ["abc", "1:", "-3", "1;2", "3, 7", "nope.txt"])
def test_load_tasks_bad_spec(lake, spec):
    with pytest.raises(TaskFileError, match="start seeds"):
        lake.load_tasks(spec)


def test_load_tasks_empty_range(lake):
    with pytest.raises(TaskFileError, match="no seeds"):
        lake.load_tasks("4:4")


def test_load_tasks_repeated_seed_is_refused(lake):
    with pytest.raises(TaskFileError):
        lake.load_tasks("3,3")


# ----------------------------------------------------------------------------- construction errors
def test_unknown_gym_id():
    with pytest.raises(UnknownEnvError, match="NoSuchEnv-v0"):
        GymEnv("NoSuchEnv-v0")
    with pytest.raises(UnknownEnvError, match="NoSuchEnv-v0"):
        make_env("gym:NoSuchEnv-v0")


@pytest.mark.filterwarnings("ignore::UserWarning")  # gymnasium warns that CartPole has no 'ansi' render mode
def test_non_tabular_env_is_refused():
    with pytest.raises(ConfigError, match="CartPole-v1.*not a tabular"):
        GymEnv("CartPole-v1")


def test_bad_env_option():
    with pytest.raises(ConfigError, match="no_such_option"):
        GymEnv("FrozenLake-v1", no_such_option=1)


@pytest.mark.parametrize(
    "env_id, kwargs, match",
    [
        ("FrozenLake-v1", {"is_slippery": "no"}, r"option is_slippery must be true or false \(default True\), got 'no'"),
        ("FrozenLake-v1", {"is_slippery": 0}, "option is_slippery must be true or false"),
        ("FrozenLake-v1", {"map_name": 4}, "option map_name must be a string"),
        ("FrozenLake-v1", {"success_rate": True}, "option success_rate must be a number"),
        ("Taxi-v4", {"fickle_passenger": "yes"}, "option fickle_passenger must be true or false"),
        ("CliffWalking-v1", {"slippery": True}, r"'CliffWalking-v1' has no option 'slippery'; its options: is_slippery"),
        ("FrozenLake-v1", {"render_mode": "human"}, "render_mode is set by treeq"),
        ("FrozenLake-v1", {"map_name": "9x9"}, r"bad options for gym env 'FrozenLake-v1': KeyError: '9x9'"),
    ],
)
def test_env_options_are_checked(env_id, kwargs, match):
    """gymnasium hands options on unchecked; a truthy "no" would make the lake slippery."""
    with pytest.raises(ConfigError, match=match) as info:
        GymEnv(env_id, **kwargs)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError):
        make_env(f"gym:{env_id}", **kwargs)


def test_env_options_of_the_right_type_pass():
    assert GymEnv("FrozenLake-v1", is_slippery=False, success_rate=1, map_name="8x8").deterministic is True
    assert GymEnv("Taxi-v4", rainy_probability=0.5, is_rainy=True).deterministic is False


# ----------------------------------------------------------------------------- flags and defaults
def test_deterministic_flags(lake, slippery, taxi):
    assert slippery.deterministic is False
    assert lake.deterministic is True
    assert taxi.deterministic is True
    assert GymEnv("CliffWalking-v1").deterministic is True
    assert GymEnv("Taxi-v4", is_rainy=True).deterministic is False


def test_search_defaults(lake, taxi):
    assert (lake.default_gamma, lake.prefer_transpositions, lake.default_evaluator) == (0.95, True, "rollout")
    assert taxi.default_evaluator == "zero"  # step costs: rollouts are dominated by penalties
    assert lake.name == "gym:FrozenLake-v1" and lake.value_bound(_start(lake), 0.95) is None


# ----------------------------------------------------------------------------- stochastic steps
def test_stochastic_step_follows_the_generator(slippery):
    s0 = _start(slippery)
    a = slippery.step(s0, "down", np.random.default_rng(7))
    slippery.step(s0, "right", np.random.default_rng(99))  # consume other randomness in between
    b = slippery.step(s0, "down", np.random.default_rng(7))
    assert a.state == b.state and (a.reward, a.terminated) == (b.reward, b.terminated)
    # slipping from 0 while pushing down: left (stay at 0), down (4) or right (1)
    outcomes = {slippery.step(s0, "down", np.random.default_rng(seed)).state.s for seed in range(60)}
    assert outcomes == {0, 1, 4}
    assert slippery.step(s0, "down", np.random.default_rng(0)).info["prob"] == pytest.approx(1 / 3)


# ----------------------------------------------------------------------------- time limit
def test_time_limit_is_not_state(lake):
    """The registered TimeLimit (100 steps) is truncation, not state: no clock in the
    state or the key, and ``step`` never truncates for it (the search bounds depth)."""
    assert lake.max_steps == 100  # known, reported, not enforced by ``step``
    s0 = _start(lake)
    assert lake.state_key(s0) == "s=0"
    state = s0
    for _ in range(150):
        step = lake.step(state, "left")  # into the wall: stays at 0
        state = step.state
        assert not step.truncated and not step.terminated
    assert state == lake.step(s0, "left").state == GymState(0, (("lastaction", 0),))
    assert lake.state_key(state) == lake.state_key(s0) == "s=0"
    assert "step" not in lake.render(state)


def test_no_time_limit_same_keys():
    cliff = GymEnv("CliffWalking-v1")
    assert cliff.max_steps is None
    s1 = cliff.step(_start(cliff), "down").state
    assert cliff.state_key(s1) == "s=36"
    assert cliff.state_key(s1) == cliff.state_key(_start(cliff))


# ----------------------------------------------------------------------------- restore
def test_restore_after_stepping_other_states(lake):
    s0 = _start(lake)
    first = lake.step(s0, "right")
    other = lake.step(lake.step(s0, "down").state, "down").state  # go elsewhere, deeper
    lake.step(other, "right")
    again = lake.step(s0, "right")
    assert first.state == again.state == GymState(1, (("lastaction", 2),))
    assert lake.render(first.state) == lake.render(again.state)
    # an old state steps as it did, whatever was stepped last
    hole = lake.step(lake.step(s0, "right").state, "down")  # 1 -> 5 is a hole
    assert (hole.state.s, hole.terminated, hole.reward) == (5, True, 0.0)


def test_restore_keeps_taxi_extras(taxi):
    s0 = _start(taxi, 3)
    first = taxi.step(s0, "south")
    text = taxi.render(first.state)
    taxi.step(taxi.step(s0, "east").state, "pickup")
    again = taxi.step(s0, "south")
    assert first.state == again.state and dict(again.state.extras)["lastaction"] == 0
    assert taxi.render(again.state) == text
    assert (first.reward, first.terminated, first.truncated) == (-1.0, False, False)


def test_restore_stochastic(slippery):
    s0 = _start(slippery)
    mid = slippery.step(s0, "right", np.random.default_rng(3)).state
    first = slippery.step(mid, "down", np.random.default_rng(11))
    for seed in range(5):
        slippery.step(s0, "up", np.random.default_rng(seed))
    again = slippery.step(mid, "down", np.random.default_rng(11))
    assert first.state == again.state and first.reward == again.reward


# ----------------------------------------------------------------------------- render
def _grid_and_legend(text: str) -> tuple[list[str], str]:
    *grid, legend = text.splitlines()
    return grid, legend


@pytest.mark.parametrize("env_id", ["FrozenLake-v1", "FrozenLake8x8-v1"])
def test_frozenlake_render_marks_the_agent(env_id):
    """The render is a prompt: the agent is drawn as @ where gym's colour showed it, the
    cell it hides is named, and no bare state index stands in for the position."""
    env = GymEnv(env_id)
    desc = ["".join(b.decode() for b in row) for row in env._u.desc.tolist()]
    texts = set()
    for s in range(len(env._u.P)):
        text = env.render(GymState(s))
        grid, legend = _grid_and_legend(text)
        r, c = divmod(s, len(desc[0]))
        assert [(i, j) for i, row in enumerate(grid) for j, x in enumerate(row) if x == "@"] == [(r, c)]
        assert [row.replace("@", desc[r][c]) if i == r else row for i, row in enumerate(grid)] == desc
        assert legend.startswith(f"@ = you, at row {r + 1}, column {c + 1} (on ")
        assert "state" not in text
        texts.add(text)
    assert len(texts) == len(env._u.P)
    hole = "".join(desc).index("H")
    assert "(on the start)" in env.render(_start(env)) and "(on a hole)" in env.render(GymState(hole))


def test_render_does_not_depend_on_the_last_action(lake):
    """Same key, same text: gym's "(Left)" line is path, not position."""
    s0 = _start(lake)
    into_wall = lake.step(s0, "left").state
    assert into_wall != s0 and lake.render(into_wall) == lake.render(s0)


def test_cliff_render_marks_the_agent_where_gym_does():
    """gym's own ANSI text marks the agent with x: @ stands in the same row and column."""
    import gymnasium

    cliff = GymEnv("CliffWalking-v1")
    gym_env = gymnasium.make("CliffWalking-v1", render_mode="ansi").unwrapped
    gym_env.reset(seed=0)
    for s in range(48):
        gym_env.s = s
        gym_rows = [row.split() for row in gym_env.render().strip().splitlines()]
        grid, legend = _grid_and_legend(cliff.render(GymState(s)))
        mine = [(i, j) for i, row in enumerate(grid) for j, x in enumerate(row) if x == "@"]
        assert mine == [(i, j) for i, row in enumerate(gym_rows) for j, x in enumerate(row) if x == "x"]
        assert legend.startswith(f"@ = you, at row {mine[0][0] + 1}, column {mine[0][1] + 1} (on ")
    start = cliff.render(_start(cliff))
    assert start.splitlines()[3] == "@CCCCCCCCCCG" and "(on the start)" in start
    assert cliff.render(cliff.step(_start(cliff), "up").state).splitlines()[3] == "SCCCCCCCCCCG"


def test_taxi_render_names_the_passenger_and_the_destination(taxi):
    """Every one of the 500 states, against gym's own decode: the taxi drawn at its cell,
    the passenger and the destination named by gym's letters (0 R, 1 G, 2 Y, 3 B)."""
    letters = "RGYB"
    texts = set()
    for s in range(500):
        row, col, passenger, dest = taxi._u.decode(s)
        text = taxi.render(GymState(s))
        grid, legend = _grid_and_legend(text)
        assert [(i, j) for i, line in enumerate(grid) for j, x in enumerate(line) if x == "@"] == [(1 + row, 2 * col + 1)]
        where = "in the taxi" if passenger == 4 else f"at {letters[passenger]}"
        assert legend.startswith(f"@ = the taxi, at row {row + 1}, column {col + 1}")
        assert legend.endswith(f"; passenger {where}; destination {letters[dest]}")
        assert "state" not in text
        texts.add(text)
    assert len(texts) == 500


def test_taxi_render_follows_a_pickup(taxi):
    """The taxi at R with the passenger there: after pickup the passenger is in the taxi."""
    s = GymState(int(taxi._u.encode(0, 0, 0, 1)), _start(taxi).extras)
    assert taxi.render(s).splitlines()[-1] == "@ = the taxi, at row 1, column 1 (at R); passenger at R; destination G"
    picked = taxi.step(s, "pickup").state
    assert taxi.render(picked).splitlines()[-1] == (
        "@ = the taxi, at row 1, column 1 (at R); passenger in the taxi; destination G")
    assert taxi.render(picked).splitlines()[1] == "|@: | : :G|"
