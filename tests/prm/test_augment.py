"""``reworded``: a share of the steps reworded by the env, in one or more wordings; ``first_steps``: extra passes."""

from __future__ import annotations

from treeq.envs.countdown import parse_step
from treeq.pipelines.prm_eval import TaskSource
from treeq.prm.augment import first_steps, positive_siblings, reworded
from treeq.prm.dataset import StepExample

RUNS = {"g": {"env": "game24"}, "f": {"env": "gym:FrozenLake-v1"}}
STEPS = ["4 + 8 = 12 (left: 6 8 12)", "6 + 12 = 18 (left: 8 18)"]


def _example(run_id: str, steps: list[str], first_node: int) -> StepExample:
    n = len(steps)
    return StepExample("t", RUNS[run_id]["env"], "P", steps, [0.0] * n, [1] * n, [True] * n,
                       list(range(first_node, first_node + n)), [-1] + list(range(first_node, first_node + n - 1)), run_id)


def _numbers(step: str) -> tuple:
    p = parse_step(step)
    return p.result, sorted(p.left), p.op, sorted((p.a, p.b))


def test_copies_reword_independently_and_keep_the_transition():
    examples = [_example("g", STEPS, 0), _example("f", ["left", "down"], 10)]
    one = reworded(TaskSource(RUNS).env, examples, 1.0, seed=3)
    two = reworded(TaskSource(RUNS).env, examples, 1.0, seed=3, copies=2)
    assert two[:2] == one  # the first copy is what one wording gives (resumes and old runs agree)
    assert len(two) == 3  # the gym env does not reword: no second, identical copy
    assert two[2].nodes == examples[0].nodes and two[2].labels == examples[0].labels
    for copy in (two[0], two[2]):  # every wording describes the same transition
        assert [_numbers(s) for s in copy.steps] == [_numbers(s) for s in STEPS]
    seen = {tuple(reworded(TaskSource(RUNS).env, examples[:1], 1.0, seed=s, copies=2)[1].steps) for s in range(20)}
    assert len(seen) > 1  # the second copy's wording varies with the seed
    assert two[1].steps == ["left", "down"]


def test_share_zero_is_the_examples_unchanged():
    examples = [_example("g", STEPS, 0)]
    assert reworded(TaskSource(RUNS).env, examples, 0.0, seed=0, copies=3) == examples


def test_rewordings_must_be_a_positive_integer():
    import pytest

    from treeq.errors import ConfigError
    from treeq.prm.config import TrainConfig

    for bad in (0, -1, 1.5):
        with pytest.raises(ConfigError, match="rewordings"):
            TrainConfig(rewordings=bad)
    for bad in (-1, 1.5):
        with pytest.raises(ConfigError, match="first_passes"):
            TrainConfig(first_passes=bad)


def test_first_steps_are_one_step_paths_once_per_distinct_step_and_pass():
    """Two paths share their first step (node 0): 2 passes give 2 copies of it, and 2 of the gym path's."""
    examples = [_example("g", STEPS, 0), _example("g", [STEPS[0], "8 + 18 = 26 (left: 26)"], 0),
                _example("f", ["left", "down"], 10)]
    examples[0].labels[0] = examples[1].labels[0] = 1.0
    out = first_steps(TaskSource(RUNS).env, examples, 1.0, seed=3, passes=2, skip=1)
    assert [ex.nodes for ex in out] == [[0], [10], [0], [10]]
    assert all(len(ex.steps) == len(ex.labels) == len(ex.owned) == 1 and ex.owned == [True] for ex in out)
    assert [ex.labels for ex in out] == [[1.0], [0.0], [1.0], [0.0]] and out[0].parents == [-1]
    assert out[1].steps == out[3].steps == ["left"]  # an env that does not reword: the step as written
    assert all(_numbers(ex.steps[0]) == _numbers(STEPS[0]) for ex in (out[0], out[2]))
    words = {first_steps(TaskSource(RUNS).env, examples[:1], 1.0, seed=s, passes=1, skip=1)[0].steps[0] for s in range(20)}
    assert len(words) > 1  # each pass is worded anew, its wording following the seed
    assert first_steps(TaskSource(RUNS).env, examples, 1.0, seed=3, passes=0, skip=1) == []


def test_positive_siblings_repeat_the_groups_holding_a_positive_last_step():
    """Under node 0, one of two last steps is positive: both come back, per pass; node 5's group has none."""
    examples = [_example("g", STEPS, 0), _example("g", [STEPS[0], "8 + 18 = 26 (left: 26)"], 0),
                _example("g", ["6 * 8 = 48 (left: 4 48)", "48 - 4 = 44 (left: 44)"], 5),
                _example("f", ["left", "down"], 10)]
    examples[0].labels[1] = 1.0
    examples[1].nodes[1], examples[1].parents[1] = 2, 0  # a sibling of examples[0]'s last step
    examples[3].labels[1] = 0.9
    out = positive_siblings(TaskSource(RUNS).env, examples, 0.5, 1.0, seed=3, passes=2, skip=1)
    assert [ex.nodes for ex in out] == [[0, 1], [0, 2], [10, 11]] * 2
    assert all(ex.owned == [False, True] for ex in out)  # the prefix's label counts on its own path only
    assert [ex.labels[-1] for ex in out[:3]] == [1.0, 0.0, 0.9]
    assert out[2].steps == out[5].steps == ["left", "down"]  # not reworded: repeated as written
    assert [_numbers(s) for s in out[0].steps] == [_numbers(s) for s in STEPS]
    words = {tuple(positive_siblings(TaskSource(RUNS).env, examples[:2], 0.5, 1.0, seed=s, passes=1, skip=1)[0].steps)
             for s in range(20)}
    assert len(words) > 1  # each pass is worded anew, its wording following the seed
    assert positive_siblings(TaskSource(RUNS).env, examples, 0.95, 1.0, seed=3, passes=2, skip=1) == [ex for ex in out
                                                                                              if ex.nodes[0] == 0]


def test_positive_siblings_keep_each_tasks_first_steps_apart():
    """One-step paths all have parent -1 (their task's root): a positive in one task must not pull in another's."""
    a = StepExample("a", "game24", "P", [STEPS[0]], [1.0], [1], [True], [0], [-1], "g")
    b = StepExample("b", "game24", "Q", ["6 * 8 = 48 (left: 4 8 48)"], [0.0], [1], [True], [1], [-1], "g")
    out = positive_siblings(TaskSource(RUNS).env, [a, b], 0.5, 0.0, seed=0, passes=1, skip=1)
    assert [ex.task_id for ex in out] == ["a"]


def test_positive_siblings_take_the_negatives_where_positives_are_the_majority():
    """Three of four last steps are positive: the passes go over the group that holds the negative, not the rest."""
    examples = [_example("f", ["left", "down"], 10), _example("f", ["left", "up"], 10),
                _example("f", ["right", "down"], 20), _example("f", ["up", "up"], 30)]
    examples[1].nodes[1], examples[1].parents[1] = 13, 10  # a sibling of examples[0]'s last step
    examples[0].labels[1] = examples[2].labels[1] = examples[3].labels[1] = 1.0
    out = positive_siblings(TaskSource(RUNS).env, examples, 0.5, 0.0, seed=0, passes=2, skip=1)
    assert [ex.nodes for ex in out] == [[10, 11], [10, 13]] * 2
    examples[2].labels[1] = 0.0  # two of four: positives are not the majority, so they are the rarer label
    out = positive_siblings(TaskSource(RUNS).env, examples, 0.5, 0.0, seed=0, passes=1, skip=1)
    assert [ex.nodes for ex in out] == [[10, 11], [10, 13], [30, 31]]


def test_blocksworld_paths_are_renamed_one_permutation_per_task_and_copy():
    """Blocksworld renames (Env.rename): the prompt and every step of a task's paths take one
    permutation of the colours in a copy (shared prefixes still read alike), another in the
    next; the labels and nodes are untouched; share 0 renames nothing."""
    runs = {"b": {"env": "blocksworld"}}
    prompt = "I have that, the red block is on top of the blue block and the orange block is clear."
    steps = ["unstack the red block from on top of the blue block\nI have that, the hand is currently holding red block.",
             "put down the red block\nI have that, the red block is on the table."]
    paths = [StepExample(t, "blocksworld", prompt, s, [1.0] * len(s), [1] * len(s), [True] * len(s),
                         list(range(n, n + len(s))), [-1] + list(range(n, n + len(s) - 1)), "b")
             for t, s, n in (("t", steps, 0), ("t", steps[:1], 0), ("u", steps, 10))]
    env_of = TaskSource(runs).env
    seen = set()
    for seed in range(6):
        out = reworded(env_of, paths, 1.0, seed=seed, copies=2)
        assert len(out) == 6 and [p.labels for p in out] == [p.labels for p in paths] * 2
        assert out[1].prompt == out[0].prompt and out[1].steps == out[0].steps[:1]  # one task, one permutation
        for p in out:
            colours = [w for w in p.prompt.replace(",", " ").split() if w in ("red", "blue", "orange")]
            assert sorted(colours) == ["blue", "orange", "red"]
            held = p.steps[0].split("holding ")[1].split()[0]
            assert p.steps[0].startswith(f"unstack the {held} block") and p.prompt.startswith(f"I have that, the {held}")
        seen.add((out[0].prompt, out[3].prompt))
    assert len({a for a, _ in seen}) > 1 and any(a != b for a, b in seen)  # varies by seed and by copy
    assert reworded(env_of, paths, 0.0, seed=0, copies=2) == paths
