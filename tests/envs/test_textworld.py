"""TextWorld env: games made by tw-make, snapshots, keys, rewards, task loading.

Three small games are made once (kept in pytest's cache directory, so reruns skip
``tw-make``) and shared by every test.
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("textworld")
pytest.importorskip("jericho")

from treeq.envs.base import Task  # noqa: E402
from treeq.envs.textworld import TextWorldEnv, read_walkthrough  # noqa: E402
from treeq.envs.textworld.runtime import clean_text as _clean  # noqa: E402
from treeq.errors import ActionError, ConfigError, EnvFailure, OutputError, TaskFileError  # noqa: E402
from treeq.mcts.search import SearchConfig, search  # noqa: E402
from treeq.pipelines.textworld_games import find_tw_make, make_games  # noqa: E402

# (seed, quest length): small worlds, quests of 3 to 5 actions.
GAMES = ((1, 3), (2, 4), (3, 5))
WORLD = {"world_size": 3, "nb_objects": 5}


@pytest.fixture(scope="session")
def games_dir(request, tmp_path_factory) -> Path:
    """A directory with game-1/2/3.z8 (+ .json), made once and cached across runs."""
    cache = getattr(request.config, "cache", None)  # None under `-p no:cacheprovider`
    out = Path(cache.mkdir("treeq-textworld-games")) if cache else tmp_path_factory.mktemp("textworld-games")
    with ThreadPoolExecutor(len(GAMES)) as pool:
        list(pool.map(lambda g: make_games(out, [g[0]], quest_length=g[1], **WORLD), GAMES))
    return out


@pytest.fixture(scope="session")
def env() -> TextWorldEnv:
    return TextWorldEnv()


@pytest.fixture(scope="session")
def tasks(env, games_dir) -> list[Task]:
    return env.load_tasks(games_dir)


def _same(a, b) -> None:
    """Two states show the same game moment."""
    assert a.observation == b.observation
    assert (a.score, a.moves, a.won, a.lost) == (b.score, b.moves, b.won, b.lost)
    assert a.admissible == b.admissible
    assert (a.description, a.inventory) == (b.description, b.inventory)
    assert a.key == b.key


# ----------------------------------------------------------------------------- generation
def test_make_games_skips_existing(games_dir):
    seeds = [g[0] for g in GAMES]
    before = {p: p.stat().st_mtime_ns for p in games_dir.glob("game-*.z8")}
    t0 = time.perf_counter()
    paths = [make_games(games_dir, [s], quest_length=q, **WORLD)[0] for s, q in GAMES]
    assert time.perf_counter() - t0 < 0.5  # no tw-make run (one takes seconds)
    assert paths == [games_dir / f"game-{s}.z8" for s in seeds]
    assert {p: p.stat().st_mtime_ns for p in games_dir.glob("game-*.z8")} == before
    assert all(p.with_suffix(".json").is_file() for p in paths)
    assert not [p for p in games_dir.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_make_games_refuses_a_cached_game_made_with_other_options(games_dir):
    with pytest.raises(ConfigError, match="exists but was made with different options"):
        make_games(games_dir, [1], quest_length=5, **WORLD)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"seeds": []}, "seeds is empty"),
        ({"seeds": [1, 1]}, "seeds repeat"),
        ({"seeds": [-1]}, "seed must be"),
        ({"seeds": [1], "quest_length": 0}, "quest_length"),
        ({"seeds": [1], "prefix": "../x"}, "prefix"),
        ({"seeds": [1], "jobs": 0}, "jobs"),
    ],
)
def test_make_games_rejects_bad_options(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_games(tmp_path / "g", **kwargs)


def test_make_games_reports_a_failing_tw_make_and_leaves_nothing_behind(tmp_path):
    fake = tmp_path / "tw-make"
    fake.write_text(
        "#!/bin/sh\n"
        "echo 'Traceback (most recent call last):' >&2\n"
        "echo 'NoSuchQuestExistError: too long' >&2\n"
        "exit 1\n"
    )
    fake.chmod(0o755)
    out = tmp_path / "games"
    with pytest.raises(ConfigError, match=r"tw-make failed for seed 7: NoSuchQuestExistError: too long"):
        make_games(out, [7], tw_make=str(fake))
    assert list(out.iterdir()) == []


def test_make_games_unwritable_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError):
        make_games(blocker / "games", [1])


def test_find_tw_make_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="tw-make not found.*pip install textworld"):
        find_tw_make()


# ----------------------------------------------------------------------------- tasks
def test_load_tasks_dir_file_glob(env, games_dir):
    by_dir = env.load_tasks(games_dir)
    assert [t.task_id for t in by_dir] == ["game-1", "game-2", "game-3"]
    assert all(Path(t.payload["game"]).is_absolute() for t in by_dir)
    one = env.load_tasks(games_dir / "game-2.z8")
    assert [t.task_id for t in one] == ["game-2"]
    globbed = env.load_tasks(str(games_dir / "game-[13].z8"))
    assert [t.task_id for t in globbed] == ["game-1", "game-3"]
    assert env.load_tasks(str(games_dir / "*")) == by_dir  # .json/.ni/... are not games


def test_load_tasks_errors(env, games_dir, tmp_path):
    with pytest.raises(TaskFileError, match="make-textworld-games DIR.*--tasks"):
        env.load_tasks(None)
    with pytest.raises(TaskFileError, match="not found"):
        env.load_tasks(tmp_path / "nope.z8")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TaskFileError, match="no TextWorld game"):
        env.load_tasks(tmp_path / "empty")
    with pytest.raises(TaskFileError, match="no TextWorld game .* matches"):
        env.load_tasks(str(tmp_path / "*.z8"))
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "game-9.z8").write_bytes((games_dir / "game-1.z8").read_bytes())
    with pytest.raises(TaskFileError, match=r"game-9.json is missing"):
        env.load_tasks(lonely)
    with pytest.raises(TaskFileError, match="not a TextWorld game file.*pass .*game-1.z8"):
        env.load_tasks(games_dir / "game-1.json")
    (tmp_path / "old.ulx").write_bytes(b"Glul")
    with pytest.raises(TaskFileError, match="Glulx"):
        env.load_tasks(tmp_path / "old.ulx")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "g.z8").write_bytes(b"")
    (bad / "g.json").write_text("{not json")
    with pytest.raises(TaskFileError, match=r"g.json: not valid JSON"):
        env.load_tasks(bad)
    # Frotz would end the process on a story file it cannot run: refused before it sees one.
    (bad / "g.json").write_bytes((games_dir / "game-1.json").read_bytes())
    (bad / "g.z8").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(TaskFileError, match="not a Z-machine story file"):
        env.load_tasks(bad)
    with pytest.raises(TaskFileError, match="not a Z-machine story file"):
        env.reset(Task("g", {"game": str(bad / "g.z8")}))


def test_load_tasks_duplicate_stems_across_dirs(env, games_dir, tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        for suffix in (".z8", ".json"):
            (tmp_path / d / f"game-1{suffix}").write_bytes((games_dir / f"game-1{suffix}").read_bytes())
    with pytest.raises(TaskFileError, match="'game-1' appears twice"):
        env.load_tasks(str(tmp_path / "*" / "game-1.z8"))


def test_module_import_is_light():
    code = "import sys, treeq.envs.textworld; print(sorted({'textworld', 'jericho'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------------------- protocol
def test_reset_is_deterministic_across_env_objects(tasks):
    for task in tasks:
        a, b = TextWorldEnv().reset(task), TextWorldEnv(max_games=1).reset(task)
        _same(a, b)
        assert a.steps == () and a.score == 0 and not a.done and a.max_score >= 1
        assert a._snapshot.ram_xor == b._snapshot.ram_xor and a._snapshot.stack == b._snapshot.stack


def test_step_is_deterministic(env, tasks):
    s0 = env.reset(tasks[0])
    for action in env.legal_actions(s0):
        one, two = env.step(s0, action), env.step(s0, action)
        _same(one.state, two.state)
        assert (one.reward, one.terminated, one.info) == (two.reward, two.terminated, two.info)


def test_restore_after_divergence(env, tasks):
    for task in tasks:
        s0 = env.reset(task)
        walk = env.walkthrough(task)
        s1 = env.step(s0, walk[0]).state  # branch from a state that is not the start, too
        for base in (s0, s1):
            actions = env.legal_actions(base)
            a, b = actions[0], actions[-1]
            first = env.step(base, a)
            other = env.step(base, b).state  # diverge, and go one deeper there
            deeper = env.step(other, env.legal_actions(other)[-1]).state
            again = env.step(base, a)
            _same(first.state, again.state)
            assert (first.reward, first.terminated) == (again.reward, again.terminated)
            assert env.render(first.state) == env.render(again.state)
            assert deeper.steps[:-1] == base.steps + (b,) and first.state.steps == base.steps + (a,)


def test_snapshot_restores_the_interpreter_exactly(env, tasks):
    s0 = env.reset(tasks[1])
    s1 = env.step(s0, env.walkthrough(tasks[1])[0]).state
    rt = env._runtime_of(s1)
    rebuilt = s1._snapshot.frotz_state(rt.base_ram)
    rt.frotz.set_state(rebuilt)
    live = rt.frotz.get_state()
    assert np.array_equal(live[0], rebuilt[0]) and np.array_equal(live[1], rebuilt[1])
    assert tuple(int(x) for x in live[7]) == rebuilt[7] and live[2:7] == rebuilt[2:7] and live[8] == rebuilt[8]


def test_walkthrough_wins_with_total_reward_one(env, tasks):
    for task in tasks:
        walk = env.walkthrough(task)
        assert env.walkthrough_length(task) == len(walk) == len(read_walkthrough(task.payload["game"]))
        state, total = env.reset(task), 0.0
        for i, command in enumerate(walk):
            step = env.step(state, command)
            total += step.reward
            state = step.state
            assert step.terminated == (i == len(walk) - 1)
        assert total == 1.0 and step.info == {"success": True}
        assert state.won and not state.lost and state.score == state.max_score
        assert env.legal_actions(state) == [] and env.value_bound(state, 1.0) == 0.0
        assert state.key.endswith(":won")
        with pytest.raises(ActionError, match="is over"):
            env.step(state, walk[-1])


def test_non_admissible_action_fails_clearly(env, tasks):
    s0 = env.reset(tasks[2])
    with pytest.raises(ActionError, match=r"^'xyzzy' is not an admissible command in game-3; admissible: .*look"):
        env.step(s0, "xyzzy")
    loose = env.step(s0, "  LOOK ").state  # case and spacing are forgiven, the canonical text is kept
    assert loose.steps == ("look",)


_UNDO = {"go east": "go west", "go west": "go east", "go north": "go south", "go south": "go north"}


def _undo(action: str) -> str | None:
    """The command that takes ``action`` back, for moves and open/close."""
    verb, _, rest = action.partition(" ")
    if action in _UNDO:
        return _UNDO[action]
    return {"open": f"close {rest}", "close": f"open {rest}"}.get(verb)


def test_state_key_is_shared_by_paths_to_the_same_world(env, tasks):
    undone = set()
    for task in tasks:
        s0 = env.reset(task)
        for a in env.legal_actions(s0):
            s1 = env.step(s0, a).state
            if a in ("look", "inventory") or a.startswith("examine"):
                assert s1.key == s0.key and s1.admissible == s0.admissible  # nothing moved
                continue
            assert s1.key != s0.key
            back = _undo(a)
            if back is not None and back in s1.admissible:
                s2 = env.step(s1, back).state
                assert s2.key == s0.key and s2.admissible == s0.admissible
                assert s2.moves == s0.moves + 2  # another path (and interpreter state), same key
                undone.add(a.split()[0])
    assert {"go"} <= undone and len(undone) >= 2, undone  # moves and open/close both seen
    keys = {env.reset(t).key for t in tasks}
    assert len(keys) == len(tasks)  # games never share keys


@pytest.mark.slow
def test_equal_keys_mean_equal_admissible_commands(env, tasks):
    rng = np.random.default_rng(0)
    for task in tasks:
        seen: dict[str, tuple] = {}
        states = [env.reset(task)]
        for _ in range(150):
            s = states[int(rng.integers(len(states)))]
            actions = env.legal_actions(s)
            if not actions:
                continue
            s = env.step(s, actions[int(rng.integers(len(actions)))]).state
            states.append(s)
            assert seen.setdefault(s.key, (s.admissible, s.score)) == (s.admissible, s.score)
        assert len(seen) < len(states) - 1  # transpositions do happen


def test_render(env, tasks):
    s0 = env.reset(tasks[0])
    text = env.render(s0)
    assert text.startswith(f"Goal: {s0.objective}")
    assert text.count(s0.objective) == 1 and "$$$$" not in text  # the intro's banner is cut
    assert "You are carrying" in text and "-= " in text
    s1 = env.step(s0, env.walkthrough(tasks[0])[0]).state
    assert f"> {s1.steps[-1]}\n" in env.render(s1)
    lean = TextWorldEnv(room_and_inventory=False).reset(tasks[0])
    assert lean.inventory is None and lean.observation == s0.observation
    # what a PRM path reads after the command: the game's answer, the room, the inventory; no goal, no command
    seen = env.observe(s1)
    assert seen.startswith(s1.observation) and s1.objective not in seen and f"> {s1.steps[-1]}" not in seen
    assert env.render(s1).endswith(seen) and "You are carrying" in seen


def test_value_bound_and_rewards_follow_the_score(env, tasks):
    s0 = env.reset(tasks[0])
    assert env.value_bound(s0, 0.9) == 1.0
    step = env.step(s0, env.legal_actions(s0)[0])
    assert step.reward == 0.0 or step.state.won


@pytest.mark.filterwarnings("ignore:Game .* is not fully supported")
def test_matches_textworld_start(env, tasks):
    """Observation, score, moves, flags and admissible commands equal TextWorld's own env."""
    import textworld

    infos = textworld.EnvInfos(
        admissible_commands=True, score=True, moves=True, won=True, lost=True, description=True, inventory=True
    )
    rng = np.random.default_rng(1)
    for task in tasks:
        tw = textworld.start(task.payload["game"], infos)
        try:
            for episode in range(2):
                gs, s = tw.reset(), env.reset(task)
                assert _clean(gs.feedback) == s.observation
                plan = env.walkthrough(task) if episode == 0 else None
                for i in range(25):
                    actions = env.legal_actions(s)
                    if not actions:
                        break
                    a = plan[i] if plan else actions[int(rng.integers(len(actions)))]
                    gs, _, _ = tw.step(a)
                    s = env.step(s, a).state
                    assert _clean(gs.feedback) == s.observation
                    assert (gs["score"], gs["moves"], gs["won"], gs["lost"]) == (s.score, s.moves, s.won, s.lost)
                    assert gs["admissible_commands"] == list(s.admissible)
                    assert (_clean(gs["description"]), _clean(gs["inventory"])) == (s.description, s.inventory)
        finally:
            tw.close()


def test_evicted_games_still_step(tasks):
    small = TextWorldEnv(max_games=1)
    starts = [small.reset(t) for t in tasks]  # each reset evicts the previous game
    reference = TextWorldEnv()
    for task, s0 in zip(tasks, starts):
        a = small.legal_actions(s0)[0]
        _same(small.step(s0, a).state, reference.step(reference.reset(task), a).state)
    assert len(small._runtimes) == 1


def test_changed_game_file_is_detected(env, games_dir, tmp_path):
    for suffix in (".z8", ".json"):
        (tmp_path / f"game-1{suffix}").write_bytes((games_dir / f"game-1{suffix}").read_bytes())
    local = TextWorldEnv()
    s0 = local.reset(local.load_tasks(tmp_path)[0])
    local.close()
    (tmp_path / "game-1.z8").write_bytes((games_dir / "game-2.z8").read_bytes())
    with pytest.raises(EnvFailure, match="changed on disk"):
        local.step(s0, local.legal_actions(s0)[0])


def test_mcts_solves_the_shortest_game(env, tasks):
    task = tasks[0]  # quest length 3
    cfg = SearchConfig(simulations=400, stop_on_solve=True, rollout_steps=20)
    result = search(env, env.reset(task), cfg, np.random.default_rng(0))
    assert result.solved
