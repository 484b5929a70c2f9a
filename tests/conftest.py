"""Shared fixtures: run the CLI in-process and a small game24 store built once."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from treeq.cli import main


@dataclass
class CliResult:
    rc: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys):
    """Call ``treeq.cli.main(argv)``; return exit code, stdout and stderr."""

    def run(*argv: str) -> CliResult:
        capsys.readouterr()  # drop anything printed before
        rc = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(rc, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def game24_store(tmp_path_factory):
    """A store from `search --env game24 --limit 3 --simulations 200` (read-only for tests)."""
    out = tmp_path_factory.mktemp("game24") / "out"
    rc = main(["search", "--env", "game24", "--limit", "3", "--simulations", "200",
               "--workers", "1", "--no-progress", "--out", str(out)])
    assert rc == 0
    return out


TW_SEEDS = [101, 202]


@pytest.fixture(scope="session")
def tw_games(tmp_path_factory):
    """Two quest-length-3 TextWorld games (seeds 101 and 202, made by tw-make), made once per session."""
    pytest.importorskip("textworld")
    pytest.importorskip("jericho")
    from treeq.pipelines.textworld_games import make_games

    out = tmp_path_factory.getbasetemp() / "treeq-tw-games-q3"
    make_games(out, TW_SEEDS, quest_length=3, world_size=3, nb_objects=5)
    return out
