"""prm-bench and prm-eval: labels checked against the exact solvers, not against the code that wrote them."""

from __future__ import annotations

import json
import re
import threading
from fractions import Fraction
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import combinations

import pytest

from treeq.pipelines.prm_bench import (
    BenchConfig,
    BenchEvalConfig,
    _f1,
    first_wrong,
    judge_prompt,
    parse_judgement,
    read_bench,
    write_bench,
)

TINY = ["--hidden-size", "32", "--layers", "1", "--heads", "2", "--vocab-size", "300"]


def rows_of(d) -> list[dict]:
    return [json.loads(line) for line in (d / "bench.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- an independent Game of 24 solver
@cache
def reaches_24(numbers: tuple[Fraction, ...]) -> bool:
    """Brute force over every pair and operation (negatives allowed), written here, not in treeq."""
    if len(numbers) == 1:
        return numbers[0] == 24
    for i, j in combinations(range(len(numbers)), 2):
        a, b = numbers[i], numbers[j]
        rest = [x for k, x in enumerate(numbers) if k not in (i, j)]
        results = {a + b, a - b, b - a, a * b}
        if b:
            results.add(a / b)
        if a:
            results.add(b / a)
        if any(reaches_24(tuple(sorted(rest + [r]))) for r in results):
            return True
    return False


STEP = re.compile(r"^(-?[\d/]+) ([-+*/]) (-?[\d/]+) = (-?[\d/]+) \(left: ([-\d/ ]+)\)$")


def game24_label(problem: str, steps: list[str]) -> int:
    numbers = tuple(sorted(Fraction(x) for x in problem.split("Input: ")[1].split("\n")[0].split()))
    for i, text in enumerate(steps):
        m = STEP.match(text)
        assert m, text
        a, op, b, result = Fraction(m[1]), m[2], Fraction(m[3]), Fraction(m[4])
        assert {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else None}[op] == result, text
        left = list(numbers)
        left.remove(a)
        left.remove(b)
        after = tuple(sorted(left + [result]))
        assert after == tuple(sorted(Fraction(x) for x in m[5].split())), text
        if reaches_24(numbers) and not reaches_24(after):
            return i
        numbers = after
    return -1


@pytest.fixture(scope="module")
def game24_bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "g24"
    write_bench(BenchConfig(env="game24", limit=40, per_task=2, seed=3, out=str(out), progress=False))
    return out


def test_game24_labels_agree_with_a_brute_force_solver(game24_bench):
    rows = rows_of(game24_bench)
    assert len(rows) == 80
    for r in rows:
        assert r["label"] == game24_label(r["problem"], r["steps"]), r["id"]
        assert r["final_answer_correct"] == (r["steps"][-1].endswith("(left: 24)"))


def test_half_flawed_and_written_as_a_model_writes(game24_bench):
    rows = rows_of(game24_bench)
    assert sum(r["label"] >= 0 for r in rows) == 40
    for task in {r["task"] for r in rows}:  # each task: one flawed, one correct
        assert sorted(r["label"] >= 0 for r in rows if r["task"] == task) == [False, True]
    steps = [s for r in rows for s in r["steps"]]
    assert any(STEP.match(s)[4].startswith("-") for s in steps)  # a negative intermediate
    assert any("/" in STEP.match(s)[4] for s in steps)  # a fraction
    # `left` not always sorted, operands of + and * in either order
    assert any(sorted(map(Fraction, STEP.match(s)[5].split())) != list(map(Fraction, STEP.match(s)[5].split()))
               for s in steps)
    assert any(STEP.match(s)[2] in "+*" and Fraction(STEP.match(s)[1]) > Fraction(STEP.match(s)[3]) for s in steps)


def test_the_same_seed_writes_the_same_set_and_another_seed_another(game24_bench, tmp_path):
    again = tmp_path / "again"
    write_bench(BenchConfig(env="game24", limit=40, per_task=2, seed=3, out=str(again), progress=False))
    assert (again / "bench.jsonl").read_bytes() == (game24_bench / "bench.jsonl").read_bytes()
    other = tmp_path / "other"
    write_bench(BenchConfig(env="game24", limit=40, per_task=2, seed=4, out=str(other), progress=False))
    assert (other / "bench.jsonl").read_bytes() != (game24_bench / "bench.jsonl").read_bytes()


# ----------------------------------------------------------------------------- Blocksworld
def test_blocksworld_labels_agree_with_shortest_plans(tmp_path):
    from treeq.envs.blocksworld import TASKS_DIR, optimal_plan_length
    from treeq.envs.registry import make_env

    pddl = sorted(p for p in TASKS_DIR.rglob("*.pddl") if "domain" not in p.name)[:12]
    tasks = tmp_path / "instances"
    tasks.mkdir()
    for p in pddl:
        (tasks / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "bw"
    write_bench(BenchConfig(env="blocksworld", tasks=str(tasks), per_task=4, seed=1, out=str(out), progress=False))
    rows = rows_of(out)
    env = make_env("blocksworld")
    by_id = {t.task_id: t for t in env.load_tasks(str(tasks))}
    assert {r["task"] for r in rows} <= {p.stem for p in pddl}  # the task is the file stem
    assert sum(r["label"] >= 0 for r in rows) * 2 == len(rows)
    for r in rows:
        state = env.reset(by_id[r["task"]])
        expected = -1
        for i, text in enumerate(r["steps"]):
            action, observation = text.split("\n", 1)  # the action on the first line
            before = optimal_plan_length(state)
            state = env.step(state, action).state
            assert observation.startswith("I have that, ")
            if expected < 0 and optimal_plan_length(state) + 1 > before:  # off every shortest plan
                expected = i
        assert r["label"] == expected, r["id"]
        assert r["final_answer_correct"] == (optimal_plan_length(state) == 0)


def test_gym_bench_labels_agree_with_value_iteration(tmp_path):
    from treeq.envs.gym_toytext import value_iteration
    from treeq.envs.registry import make_env

    out = tmp_path / "lake"
    write_bench(BenchConfig(env="gym:FrozenLake-v1", tasks="0:6", per_task=2, seed=0, out=str(out), progress=False))
    env = make_env("gym:FrozenLake-v1")
    q = value_iteration(env._u.P, 0.95)
    actions = list(env.actions)
    for r in rows_of(out):
        cells = [s.split("\n", 1)[1] for s in r["steps"]]
        # the cell before each step, read back from the rendered maps: the start, then each observation
        pos = [re.search(r"row (\d+), column (\d+)", t) for t in [r["problem"], *cells]]
        states = [(int(m[1]) - 1) * 4 + int(m[2]) - 1 for m in pos]
        expected = next((i for i, s in enumerate(r["steps"])
                         if q[states[i], actions.index(s.split("\n")[0])] < q[states[i]].max() - 1e-9), -1)
        assert r["label"] == expected


# ----------------------------------------------------------------------------- metrics and reading
def test_first_wrong_and_f1_by_hand():
    assert first_wrong([1, 1, 0], [1, 1, 1]) == 2
    assert first_wrong([0.9, 0.81], [0.9, 0.81]) == -1
    # two flawed (one found), two correct (both passed): accuracies 1/2 and 1, F1 = 2/3
    m = _f1([1, 0, -1, -1], [1, 2, -1, -1])
    assert (m["accuracy_flawed"], m["accuracy_correct"]) == (0.5, 1.0)
    assert m["first_error_f1"] == pytest.approx(2 / 3)
    assert _f1([None, None], [0, -1])["first_error_f1"] == 0.0  # an unparsed judgement is wrong both ways


def test_a_tampered_label_is_refused_with_its_line(game24_bench, tmp_path):
    from treeq.errors import TaskFileError

    d = tmp_path / "bad"
    d.mkdir()
    rows = rows_of(game24_bench)
    rows[3]["label"] = 0 if rows[3]["label"] != 0 else -1
    (d / "bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "bench.json").write_text((game24_bench / "bench.json").read_text())
    with pytest.raises(TaskFileError, match=r"bench.jsonl:4: label"):
        read_bench(d)


def test_judge_prompt_and_parse():
    text = judge_prompt("Reach 24.", ["a", "b"])
    assert "<paragraph_0>\na\n</paragraph_0>\n\n<paragraph_1>\nb\n</paragraph_1>" in text
    assert text.endswith("Please put your final answer (i.e., the index) in \\boxed{}.")
    assert parse_judgement("so \\boxed{3} ... no, \\boxed{ -1 }") == -1
    assert parse_judgement("no answer") is None


# ----------------------------------------------------------------------------- the commands
@pytest.fixture(scope="module")
def game24_prm(game24_store, tmp_path_factory):
    from treeq.cli import main

    out = tmp_path_factory.mktemp("bench-prm") / "prm"
    assert main(["train-prm", str(game24_store), "--out", str(out), "--max-steps", "10", "--val-fraction", "0.3",
                 "--best-of-n", "0", "--no-progress", *TINY]) == 0
    return out


@pytest.mark.slow
def test_prm_eval_scores_a_trained_prm(run_cli, game24_prm, tmp_path):
    bench = tmp_path / "bench"
    r = run_cli("prm-bench", "--env", "game24", "--limit", "12", "--per-task", "4", "--out", bench, "--no-progress")
    assert r.rc == 0, r.err
    assert "wrote 48 samples (24 flawed) of 12 tasks" in r.out
    r = run_cli("prm-eval", game24_prm, "--bench", bench, "--out", tmp_path / "eval.json")
    assert r.rc == 0, r.err
    last = r.out.strip().splitlines()[-1]
    assert re.fullmatch(r"first-error F1 (\d\.\d{3}|n/a), within-depth AUROC (\d\.\d{3}|n/a)", last), last
    assert "best-of-4 on 12 tasks" in r.out
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert len(saved["predictions"]) == 48
    assert all(len(p["scores"]) == len(row["steps"]) for p, row in zip(saved["predictions"], rows_of(bench)))
    # the predicted error is the first step under the threshold
    for p in saved["predictions"]:
        assert p["predicted"] == next((i for i, s in enumerate(p["scores"]) if s < 0.5), -1)
    cal = saved["metrics"]["calibrated"]
    if cal is not None:
        assert len(cal["thresholds"]) == 2 and 0 <= cal["first_error_f1"] <= 1
        assert "at a threshold fitted on the other half of the tasks" in r.out


def test_calibrated_threshold_by_hand():
    """Correct samples score 0.3 at every step, flawed ones drop to 0.1 at their error (step 1): 0.5 flags
    step 0 everywhere (F1 0); a threshold fitted on the other half of the tasks (0.3) finds every error."""
    import zlib

    from treeq.pipelines.prm_bench import calibrated_f1

    tasks = [f"t{i}" for i in range(8)]
    assert {zlib.crc32(t.encode()) % 2 for t in tasks} == {0, 1}
    rows = [{"task": t, "label": label} for t in tasks for label in (-1, 1)]
    scores = [[0.3, 0.3] if r["label"] < 0 else [0.3, 0.1] for r in rows]
    cal = calibrated_f1(rows, scores)
    assert cal["thresholds"] == [0.3, 0.3]
    assert cal["first_error_f1"] == cal["accuracy_flawed"] == cal["accuracy_correct"] == 1.0
    assert calibrated_f1(rows[::2], scores[::2]) is None  # no flawed sample: nothing to fit


@pytest.mark.slow
def test_prm_eval_refuses_a_prm_of_another_env(run_cli, game24_prm, tmp_path):
    bench = tmp_path / "bw"
    assert run_cli("prm-bench", "--env", "blocksworld", "--limit", "2", "--out", bench, "--no-progress").rc == 0
    r = run_cli("prm-eval", game24_prm, "--bench", bench)
    assert r.rc == 2 and r.err.count("\n") == 1
    assert "trained on game24, the bench is blocksworld" in r.err


@pytest.mark.parametrize("argv, message", [
    (["prm-bench", "--env", "openspiel:catch", "--out", "{d}"], "has no exact solver"),
    (["prm-bench", "--env", "nope", "--out", "{d}"], "nope"),
    (["prm-bench", "--per-task", "3", "--out", "{d}"], "per_task must be an even number"),
    (["prm-bench", "--gamma", "nan", "--out", "{d}"], "not a finite number"),
    (["prm-bench", "--limit", "-1", "--out", "{d}"], "limit must be >= 1"),
    (["prm-eval", "{d}", "--bench", "{d}"], "not a prm-bench directory"),
    (["prm-eval", "x", "--bench", "{d}", "--threshold", "1.5"], "threshold must lie in (0, 1)"),
    (["prm-eval", "--bench", "{d}", "--backend", "openai"], "needs --base-url"),
])
def test_bad_input_is_one_line_and_exit_2(run_cli, tmp_path, argv, message):
    r = run_cli(*[a.format(d=tmp_path) for a in argv])
    assert r.rc == 2, r.out
    assert r.err.count("\n") == 1 and message in r.err, r.err


# ----------------------------------------------------------------------------- the judge
class _Judge(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat server whose 'model' checks each paragraph with a brute-force solver
    (``perfect``) or always answers -1 (``lazy``)."""

    mode = "perfect"

    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path == "/v1/chat/completions"
        prompt = body["messages"][0]["content"]
        problem = prompt.split("[Math Problem]\n\n")[1].split("\n\n[Solution]")[0]
        steps = re.findall(r"<paragraph_\d+>\n(.*?)\n</paragraph_\d+>", prompt)
        answer = -1 if self.mode == "lazy" else game24_label(problem, steps)
        data = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant",
                                                                "content": f"Checked. \\boxed{{{answer}}}"}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data.encode())


@pytest.mark.parametrize("mode, f1", [("perfect", "1.000"), ("lazy", "0.000")])
def test_an_openai_judge_is_scored_by_processbench_f1(run_cli, game24_bench, mode, f1):
    handler = type("J", (_Judge,), {"mode": mode})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        r = run_cli("prm-eval", "judge", "--bench", game24_bench, "--backend", "openai",
                    "--base-url", f"http://127.0.0.1:{server.server_port}/v1")
    finally:
        server.shutdown()
    assert r.rc == 0, r.err
    assert r.out.strip().splitlines()[-1] == f"first-error F1 {f1}, within-depth AUROC n/a"


def test_bench_eval_config_validates():
    with pytest.raises(Exception, match="batch_size"):
        BenchEvalConfig(bench="x", batch_size=0)


def test_a_long_path_is_cut_to_the_steps_the_model_reads():
    from treeq.pipelines.prm_bench import _readable
    from treeq.prm.format import path_text

    def tokenizer(text):  # one token per character
        return {"input_ids": list(text)}

    steps = ["aaaa", "bbbb", "cccc"]
    lengths = [len(path_text("P", steps[:k])) for k in range(4)]  # 2, 14, 26, 38 with the 8-character separator
    assert _readable(tokenizer, "P", steps, lengths[3]) == ("P", steps)
    assert _readable(tokenizer, "P", steps, lengths[3] - 1) == ("P", steps[:2])
    assert _readable(tokenizer, "P", steps, lengths[1]) == ("P", steps[:1])
    assert _readable(tokenizer, "P", steps, lengths[1] - 1) == ("P", [])
