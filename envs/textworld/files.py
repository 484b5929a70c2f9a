"""TextWorld games on disk: finding them, and checking a game's two files before play.

A task is one game made by TextWorld's ``tw-make``: a Z-machine story file (``.z8``)
plus the ``.json`` beside it that describes the game's logic (world facts, rules,
quests, walkthrough). Both are checked here, with one error line each, before the
interpreter (:mod:`treeq.envs.textworld.runtime`) ever sees them: Frotz ends the whole
process on a story file it cannot run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import TaskFileError
from ..base import Task
from ..taskfiles import check_unique_ids, expand_task_path, loads_json, read_text

__all__ = ["GAME_SUFFIXES", "GENERATE_HINT", "check_story", "find_games", "game_task", "load_games",
           "read_game_json", "read_walkthrough"]

GAME_SUFFIXES = (".z8", ".ulx")
GENERATE_HINT = "generate games with `python cli.py make-textworld-games DIR` and pass `--tasks DIR`"


def find_games(path: str | Path) -> list[Path]:
    """The game files named by ``path``: one file, a directory or a glob, sorted naturally.

    Raises:
        TaskFileError: nothing matches, or the one file is not a game file.
    """
    games, single = expand_task_path(path, GAME_SUFFIXES, "TextWorld game", GENERATE_HINT)
    p = games[0]
    if single and p.suffix.lower() not in GAME_SUFFIXES:
        hint = f"; pass {p.with_suffix('.z8')}" if p.with_suffix(".z8").is_file() else ""
        raise TaskFileError(f"{p}: not a TextWorld game file (expected .z8){hint}")
    return games


def read_game_json(json_path: Path) -> dict[str, Any]:
    """A game's ``.json`` (TextWorld's description of its logic), checked.

    Raises:
        TaskFileError: unreadable, not UTF-8 text, empty, nested too deep, not valid
            JSON, or not TextWorld game data.
    """
    data = loads_json(read_text(json_path, "game data"), str(json_path))
    if not isinstance(data, dict) or "world" not in data:
        raise TaskFileError(f"{json_path}: not TextWorld game data (no 'world' entry)")
    return data


def check_story(path: Path) -> None:
    """Refuse files that are not Z-machine story files before Frotz sees them.

    Frotz ends the whole process (``exit``) on a story it cannot run, so a stray file
    must fail here, as one error line, rather than kill a batch job.
    """
    try:
        with path.open("rb") as f:
            header = f.read(64)
        size = path.stat().st_size
    except OSError as exc:
        raise TaskFileError(f"{path}: cannot read the game ({exc.strerror})") from None
    if size == 0:
        raise TaskFileError(f"{path}: the file is empty, not a Z-machine story file (a TextWorld .z8 game)")
    version = header[0] if header else 0
    scale = 2 if version <= 3 else 4 if version <= 5 else 8
    static_base = int.from_bytes(header[0x0E:0x10], "big") if len(header) == 64 else 0
    length = int.from_bytes(header[0x1A:0x1C], "big") * scale if len(header) == 64 else 0
    if not 1 <= version <= 8 or len(header) < 64 or not 64 <= static_base <= size or length > size:
        raise TaskFileError(f"{path}: not a Z-machine story file (a TextWorld .z8 game); regenerate it")


def read_walkthrough(game: str | Path) -> list[str] | None:
    """The walkthrough stored in a game's ``.json`` (``metadata.walkthrough``), if any.

    Raises:
        TaskFileError: the ``.json`` is missing or is not TextWorld game data.
    """
    data = read_game_json(Path(game).with_suffix(".json"))
    walk = (data.get("metadata") or {}).get("walkthrough")
    return [str(c) for c in walk] if isinstance(walk, list) and walk else None


def game_task(game: str | Path) -> Task:
    """The task of one game file; its id is the file stem (``game-3``).

    Raises:
        TaskFileError: not a playable TextWorld game, or its ``.json`` is missing.
    """
    path = Path(game).resolve()
    if path.suffix.lower() == ".ulx":
        raise TaskFileError(
            f"{path}: Glulx (.ulx) games cannot be played: Jericho runs Z-machine games only "
            "and TextWorld >= 1.7 dropped Glulx; make .z8 games instead"
        )
    if not path.is_file():
        raise TaskFileError(f"TextWorld game not found: {path}")
    json_path = path.with_suffix(".json")
    if not json_path.is_file():
        raise TaskFileError(
            f"{path}: its game data {json_path.name} is missing (tw-make writes both files; regenerate the game)"
        )
    read_game_json(json_path)
    check_story(path)
    return Task(path.stem, {"game": str(path)})


def load_games(path: str | Path | None) -> list[Task]:
    """One task per game: ``path`` is a game file, a directory or a glob.

    Raises:
        TaskFileError: ``path`` is None (no games ship with treeq), nothing matches,
            a game's files are missing or broken, or two games share a file stem.
    """
    if path is None:
        raise TaskFileError(f"the textworld env has no default games: {GENERATE_HINT} (a dir, a .z8 or a glob)")
    tasks = [game_task(p) for p in find_games(path)]
    check_unique_ids(((t.task_id, t.payload["game"]) for t in tasks), "task ids are file stems: rename one game")
    return tasks
