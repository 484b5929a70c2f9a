"""Ctrl-C during a search, as a user presses it: the CLI in a subprocess, real SIGINTs.

Each case must end within 5 s of the first SIGINT (10 s for the per-env cases, whose
envs start slower) with exit code 130, one line on stderr (how many tasks were
written, and that rerunning redoes the rest), no traceback, no temporary file, every
Parquet file readable, ``runs.ended_at`` set and no worker process left. Every env
family is interrupted the way a terminal does it (SIGINT to the whole process group),
in tree, graph and stochastic modes, inline and with worker processes.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

import treeq
from treeq.pipelines.workers import Workers, sigint_deferred

CLI = Path(treeq.__file__).parent / "cli.py"
LINE = re.compile(r"interrupted: (\d+) of (\d+) tasks finished and were written to (.+) \(run (\S+)\); "
                  r"rerun the same command to redo the rest")


def worker_pids(pid: int) -> set[int]:
    """The multiprocessing workers among ``pid``'s children (not its resource tracker)."""
    try:
        kids = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return set()
    out = set()
    for kid in kids:
        try:
            if b"spawn_main" in Path(f"/proc/{kid}/cmdline").read_bytes():
                out.add(kid)
        except OSError:
            pass
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start(argv: list[str], cwd: Path, out: Path, new_session: bool = False) -> tuple[subprocess.Popen, set[int]]:
    """Start the CLI and wait until it has written a first task (its workers are busy then)."""
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=new_session)
    deadline = time.monotonic() + 90
    while not list(out.glob("trees/*/*.parquet")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no task finished within 90 s"
        time.sleep(0.05)
    time.sleep(0.3)
    workers = worker_pids(proc.pid)
    assert proc.poll() is None, "the search ended before it could be interrupted"
    return proc, workers


def check_stopped(proc: subprocess.Popen, workers: set[int], t0: float, out: Path, one_line: bool = True,
                  within: float = 5) -> None:
    try:
        stdout, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # in its own session: its workers too
        proc.communicate()
        raise AssertionError("still running 30 s after Ctrl-C") from None
    elapsed = time.monotonic() - t0
    assert proc.returncode == 130, (proc.returncode, stderr[-2000:])
    assert elapsed < within, f"took {elapsed:.1f} s to stop"
    assert "Traceback" not in stdout + stderr
    lines = [ln for ln in stderr.replace("\r", "\n").splitlines() if ln.strip()]
    if one_line:
        assert len(lines) == 1, stderr
    else:  # the progress bar shares stderr: the message is the last line
        lines = [ln for ln in lines if not ln.startswith("search ")]
        assert len(lines) == 1, stderr
    match = LINE.fullmatch(lines[0])
    assert match, lines[0]
    assert stdout == ""
    assert not any(alive(w) for w in workers), "a worker process outlived the run"

    written = int(match.group(1))
    trees = sorted(out.glob("trees/*/*.parquet"))
    nodes = sorted(out.glob("nodes/*/*.parquet"))
    assert written >= 1 and len(trees) == written and len(nodes) == written
    assert {p.name for p in trees} == {p.name for p in nodes}
    leftovers = [p for p in out.rglob("*") if p.is_file() and p.suffix != ".parquet" and p.name != "manifest.json"]
    assert leftovers == [], leftovers
    for f in out.rglob("*.parquet"):
        pq.read_table(f)
    ended = duckdb.sql(f"SELECT ended_at IS NOT NULL FROM read_parquet('{out}/runs/**/*.parquet')").fetchall()
    assert ended == [(True,)]


def search_argv(out: Path, *extra: str, workers: int = 2) -> list[str]:
    return [sys.executable, str(CLI), "search", "--env", "game24", "--simulations", "3000", "--workers", str(workers),
            "--out", str(out), *extra]


@pytest.mark.slow
@pytest.mark.parametrize("n_workers", [2, 1])
def test_one_sigint_stops_a_search(tmp_path, n_workers):
    out = tmp_path / "out"
    proc, workers = start(search_argv(out, "--no-progress", workers=n_workers), tmp_path, out)
    assert len(workers) == (n_workers if n_workers > 1 else 0)
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    check_stopped(proc, workers, t0, out)


@pytest.mark.slow
def test_two_sigints_two_seconds_apart(tmp_path):
    out = tmp_path / "out"
    proc, workers = start(search_argv(out, "--no-progress"), tmp_path, out)
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    time.sleep(2)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGINT)
    check_stopped(proc, workers, t0, out)


@pytest.mark.slow
def test_held_ctrl_c_reaching_the_whole_process_group(tmp_path):
    """A terminal sends SIGINT to every process of the group; a held key repeats it."""
    out = tmp_path / "out"
    proc, workers = start(search_argv(out), tmp_path, out, new_session=True)
    t0 = time.monotonic()
    for _ in range(6):
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            break
        time.sleep(0.03)
    check_stopped(proc, workers, t0, out, one_line=False)


@pytest.mark.slow
@pytest.mark.parametrize("program", ["python cli.py", "treeq"])
def test_no_command_runs_the_main_job(tmp_path, program):
    """`python cli.py` / `treeq` alone start the main job (all 1362 game24 puzzles into ./treeq-out)."""
    script = Path(sys.executable).with_name("treeq")
    argv = [sys.executable, str(CLI)] if program == "python cli.py" else [str(script)]
    if program == "treeq" and not script.exists():
        pytest.skip("the treeq script is not installed next to this python")
    out = tmp_path / "treeq-out"
    proc, workers = start(argv, tmp_path, out)
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    check_stopped(proc, workers, t0, out, one_line=False)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny causal LM made by the CLI (random weights, offline), for the llm-steps case."""
    out = tmp_path_factory.mktemp("lm") / "tiny"
    run_ok([sys.executable, str(CLI), "make-tiny-model", "--env", "llm-steps", "--out", str(out), "--limit", "50"])
    return out


@pytest.fixture(scope="module")
def tw_four(tmp_path_factory):
    """Four TextWorld games made by the CLI: with two workers, two are still searched after the first."""
    out = tmp_path_factory.mktemp("tw") / "games"
    run_ok([sys.executable, str(CLI), "make-textworld-games", str(out), "--seeds", "0:4"])
    return out


def run_ok(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


# Each family's search, sized so that a task takes seconds (or, where the solver settles a task at
# once, so that there are many): the first is written while the others run.
FAMILIES = {
    "countdown": ["--env", "countdown", "--simulations", "20000"],
    "blocksworld": ["--env", "blocksworld", "--simulations", "20000"],
    "gym-graph-stochastic": ["--env", "gym:FrozenLake8x8-v1", "--tasks", "0:200", "--simulations", "50000",
                             "--env-kwargs", '{"is_slippery": true}', "--transpositions"],
    "gym-tree": ["--env", "gym:CliffWalking-v1", "--tasks", "0:200", "--simulations", "50000", "--no-transpositions"],
    "openspiel": ["--env", "openspiel:catch", "--tasks", "0:200", "--simulations", "200000"],
    "textworld": ["--env", "textworld", "--simulations", "3000"],
    "llm-steps": ["--env", "llm-steps", "--policy", "hf", "--simulations", "4", "--proposals", "2",
                  "--max-new-tokens", "16"],
}
NEEDS = {"openspiel": ["pyspiel"], "textworld": ["textworld", "jericho"], "llm-steps": ["torch", "transformers"]}


@pytest.mark.slow
@pytest.mark.parametrize("n_workers", [1, 2])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_ctrl_c_stops_every_env_family(request, tmp_path, family, n_workers):
    """A terminal's Ctrl-C (SIGINT to the process group) stops a search of every env family, in
    this process and in worker processes: exit 130, the finished tasks written and readable."""
    for module in NEEDS.get(family, []):
        pytest.importorskip(module)  # the optional extras (openspiel, textworld, the hf policy)
    argv = [sys.executable, str(CLI), "search", *FAMILIES[family], "--workers", str(n_workers),
            "--out", str(tmp_path / "out")]
    if family == "textworld":
        argv += ["--tasks", str(request.getfixturevalue("tw_four"))]
    if family == "llm-steps":
        argv += ["--model", str(request.getfixturevalue("tiny_model"))]
    out = tmp_path / "out"
    proc, workers = start(argv, tmp_path, out, new_session=True)
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    check_stopped(proc, workers, t0, out, one_line=False, within=10)


# ---------------------------------------------------------------------------- in this process
@pytest.fixture(autouse=True)
def ctrl_c_raises():
    """Python leaves SIGINT ignored where it started with it ignored (a job started in the
    background by a non-interactive shell): these tests need Ctrl-C to raise, as in a terminal."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


class _SigintWhenPickled:
    """A worker function whose pickling, as a worker process starts, sends this process a SIGINT:
    a Ctrl-C that lands while the workers are being started."""

    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGINT)
        return functools.partial, (abs,)


def test_ctrl_c_while_workers_start_is_not_lost():
    """Before: the parent ignored SIGINT while it started its workers, so a Ctrl-C then was lost
    and the job searched on. Now it is raised once they are started, and they are ended."""
    before = worker_pids(os.getpid())
    with pytest.raises(KeyboardInterrupt):
        with Workers(_SigintWhenPickled(), 2):
            pass
    assert worker_pids(os.getpid()) <= before


def test_ctrl_c_during_a_commit_waits_for_it_even_with_other_threads():
    """A process's SIGINT goes to any thread that does not block it (tqdm, pyarrow and duckdb
    keep threads): before, it broke into the block that commits a task's shards."""
    threading.Thread(target=time.sleep, args=(2,), daemon=True).start()
    where = []
    with pytest.raises(KeyboardInterrupt):
        with sigint_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            try:
                for _ in range(20):
                    time.sleep(0.01)
            except KeyboardInterrupt:
                where.append("inside")
                raise
    assert where == []
