"""TextWorld games: the env (:mod:`.env`), finding and checking game files (:mod:`.files`)
and the interpreter with its snapshots (:mod:`.runtime`). textworld and jericho load only
when a game is first played."""

from .env import TextWorldEnv
from .files import find_games, read_walkthrough
from .runtime import TextWorldState, clean_text

__all__ = ["TextWorldEnv", "TextWorldState", "find_games", "read_walkthrough", "clean_text"]
