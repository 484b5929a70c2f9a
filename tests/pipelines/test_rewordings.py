"""``reworded``: a share of the steps reworded by the env, in one or more wordings."""

from __future__ import annotations

from treeq.envs.countdown import parse_step
from treeq.pipelines.prm_eval import TaskSource, reworded
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
    one = reworded(TaskSource(RUNS), examples, 1.0, seed=3)
    two = reworded(TaskSource(RUNS), examples, 1.0, seed=3, copies=2)
    assert two[:2] == one  # the first copy is what one wording gives (resumes and old runs agree)
    assert len(two) == 3  # the gym env does not reword: no second, identical copy
    assert two[2].nodes == examples[0].nodes and two[2].labels == examples[0].labels
    for copy in (two[0], two[2]):  # every wording describes the same transition
        assert [_numbers(s) for s in copy.steps] == [_numbers(s) for s in STEPS]
    seen = {tuple(reworded(TaskSource(RUNS), examples[:1], 1.0, seed=s, copies=2)[1].steps) for s in range(20)}
    assert len(seen) > 1  # the second copy's wording varies with the seed
    assert two[1].steps == ["left", "down"]


def test_share_zero_is_the_examples_unchanged():
    examples = [_example("g", STEPS, 0)]
    assert reworded(TaskSource(RUNS), examples, 0.0, seed=0, copies=3) == examples


def test_rewordings_must_be_a_positive_integer():
    import pytest

    from treeq.errors import ConfigError
    from treeq.prm.config import TrainConfig

    for bad in (0, -1, 1.5):
        with pytest.raises(ConfigError, match="rewordings"):
            TrainConfig(rewordings=bad)
