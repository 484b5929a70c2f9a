"""Make TextWorld games with TextWorld's own ``tw-make``: fixed seeds, cached, atomic.

Each game is ``<prefix>-<seed>.z8`` with the ``.json`` (and Inform7 ``.ni`` source)
that ``tw-make custom`` writes beside it, plus ``<prefix>-<seed>.tw-make.json``, the
options it was made with. A game whose ``.z8`` and ``.json`` exist is not made again
(the directory is a cache); if its recorded options differ from the ones asked for,
that is an error rather than a silent reuse of a different game.

Every game is generated into a temporary directory inside ``out_dir`` and then
renamed into place, the ``.z8`` last: a crash leaves no half game, and a ``.z8`` in
``out_dir`` always has its ``.json``. Games are made by separate ``tw-make``
processes, several at once (``jobs``); games finished before a failure stay.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from ..errors import ConfigError, OutputError

__all__ = ["find_tw_make", "game_path", "make_games"]

_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_OPTIONS_SUFFIX = ".tw-make.json"


def find_tw_make() -> str:
    """Path of ``tw-make``: beside the running Python first, then on ``PATH``.

    Raises:
        ConfigError: TextWorld's ``tw-make`` is not installed.
    """
    # Beside sys.executable first: a virtual environment need not be activated
    # (on PATH) for its own scripts to be the right ones.
    for name in ("tw-make", "tw-make.exe"):
        candidate = Path(sys.executable).parent / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("tw-make")
    if found is None:
        raise ConfigError(
            f"tw-make not found (looked beside {sys.executable} and on PATH); "
            "install TextWorld into this environment: pip install textworld"
        )
    return found


def game_path(out_dir: str | Path, seed: int, prefix: str = "game") -> Path:
    """Where ``make_games`` puts the game of ``seed``: ``out_dir/<prefix>-<seed>.z8``."""
    return Path(out_dir) / f"{prefix}-{seed}.z8"


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _tw_make_args(seed: int, quest_length: int, world_size: int, nb_objects: int) -> list[str]:
    return [
        "custom", "--world-size", str(world_size), "--nb-objects", str(nb_objects),
        "--quest-length", str(quest_length), "--seed", str(seed),
    ]


def _options(seed: int, quest_length: int, world_size: int, nb_objects: int) -> dict:
    return {"generator": "tw-make", "args": _tw_make_args(seed, quest_length, world_size, nb_objects)}


def _make_one(tw_make: str, out_dir: Path, seed: int, prefix: str, options: dict, timeout_s: float) -> Path:
    """Run one ``tw-make`` into a temporary directory, then rename its files into place."""
    stem = f"{prefix}-{seed}"
    with tempfile.TemporaryDirectory(prefix=f".{stem}-", dir=out_dir) as tmp:
        tmp_dir = Path(tmp)
        cmd = [tw_make, *options["args"], "--output", str(tmp_dir / f"{stem}.z8"), "-f", "--silent"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            args = " ".join(options["args"])
            raise ConfigError(f"tw-make ran past {timeout_s:g} s for seed {seed} (tw-make {args})") from None
        except OSError as exc:
            raise ConfigError(f"cannot run {tw_make}: {exc.strerror or exc}") from None
        z8, js = tmp_dir / f"{stem}.z8", tmp_dir / f"{stem}.json"
        if proc.returncode != 0 or not z8.is_file() or not js.is_file():
            lines = [ln for ln in (proc.stderr or proc.stdout or "").strip().splitlines() if ln.strip()]
            why = lines[-1].strip() if lines else f"exit code {proc.returncode}, no game written"
            raise ConfigError(f"tw-make failed for seed {seed}: {why} (tw-make {' '.join(options['args'])})")
        (tmp_dir / f"{stem}{_OPTIONS_SUFFIX}").write_text(json.dumps(options, indent=1) + "\n", encoding="utf-8")
        # The .z8 goes last: its presence means the game is complete.
        produced = sorted(p for p in tmp_dir.iterdir() if p.is_file() and p != z8)
        try:
            for p in [*produced, z8]:
                os.replace(p, out_dir / p.name)
        except OSError as exc:
            raise OutputError(f"cannot move {stem} into {out_dir}: {exc.strerror or exc}") from None
    return out_dir / f"{stem}.z8"


def _cached(out_dir: Path, seed: int, prefix: str, options: dict) -> bool:
    """Whether the game of ``seed`` is already there (and made with ``options``)."""
    z8 = game_path(out_dir, seed, prefix)
    if not (z8.is_file() and z8.with_suffix(".json").is_file()):
        return False
    recorded = out_dir / f"{z8.stem}{_OPTIONS_SUFFIX}"
    if recorded.is_file():  # games put there by hand have no record: trust them
        try:
            previous = json.loads(recorded.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            previous = None
        if previous != options:
            was = " ".join(previous.get("args", [])) if isinstance(previous, dict) else "unreadable options"
            raise ConfigError(
                f"{z8} exists but was made with different options ({was}); "
                "use another directory or force=True to remake it"
            )
    return True


def make_games(
    out_dir: str | Path,
    seeds: Iterable[int],
    quest_length: int = 3,
    world_size: int = 3,
    nb_objects: int = 5,
    *,
    prefix: str = "game",
    jobs: int | None = None,
    force: bool = False,
    timeout_s: float = 600.0,
    tw_make: str | None = None,
) -> list[Path]:
    """Make one ``tw-make custom`` game per seed in ``out_dir``; reuse those already made.

    Args:
        out_dir: Directory of the games (created if missing).
        seeds: One game per seed; the game of a seed is always the same.
        quest_length: Actions the quest needs (``--quest-length``).
        world_size: Rooms (``--world-size``).
        nb_objects: Minimum number of objects (``--nb-objects``).
        prefix: File names are ``<prefix>-<seed>.z8``; the stem is the task id.
        jobs: ``tw-make`` processes at once; None: one per CPU core.
        force: Remake games that exist.
        timeout_s: Longest time one ``tw-make`` may run.
        tw_make: Path of ``tw-make``; None: :func:`find_tw_make`.

    Returns:
        The ``.z8`` paths, in the order of ``seeds``.

    Raises:
        ConfigError: a bad option, ``tw-make`` missing or failing (its last error
            line is in the message), or a cached game made with other options.
        OutputError: ``out_dir`` cannot be created or written.
    """
    seeds = list(seeds)
    if not seeds:
        raise ConfigError("seeds is empty: give at least one seed")
    for s in seeds:
        _check_int("each seed", s, 0)
    dup = sorted({s for s in seeds if seeds.count(s) > 1})
    if dup:
        raise ConfigError(f"seeds repeat: {dup}")
    _check_int("quest_length", quest_length, 1)
    _check_int("world_size", world_size, 1)
    _check_int("nb_objects", nb_objects, 0)
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise ConfigError(f"prefix must be letters, digits, '_', '.' or '-', got {prefix!r}")
    if jobs is not None:
        _check_int("jobs", jobs, 1)
    if not timeout_s > 0:
        raise ConfigError(f"timeout_s must be > 0, got {timeout_s!r}")

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out}: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK):
        raise OutputError(f"cannot write to {out}")

    options = {s: _options(s, quest_length, world_size, nb_objects) for s in seeds}
    todo = [s for s in seeds if force or not _cached(out, s, prefix, options[s])]
    if todo:
        exe = tw_make or find_tw_make()
        workers = min(len(todo), jobs or os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_make_one, exe, out, s, prefix, options[s], timeout_s) for s in todo]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for f in pending:  # after a failure, start nothing new; running ones finish
                f.cancel()
        for f in futures:
            if f.done() and not f.cancelled() and f.exception() is not None:
                raise f.exception()  # type: ignore[misc]
    return [game_path(out, s, prefix) for s in seeds]
