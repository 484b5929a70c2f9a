"""Environments: the functional, reversible ``Env`` protocol and its implementations.

Heavy third-party packages (gymnasium, textworld, pyspiel) load only when such an env is built.
"""

from .base import Env, Step, Task
from .blocksworld import BlocksworldEnv
from .checker import EnvCheckError, check_env
from .countdown import CountdownEnv, Game24Env
from .gym_toytext import GymEnv, value_iteration
from .llm_steps import LLMStepsEnv
from .openspiel_env import OpenSpielEnv
from .registry import ENV_NAMES, env_names, make_env, register_env
from .textworld import TextWorldEnv

__all__ = [
    "Env", "Step", "Task", "make_env", "register_env", "env_names", "ENV_NAMES", "check_env", "EnvCheckError",
    "CountdownEnv", "Game24Env", "BlocksworldEnv", "GymEnv", "value_iteration", "TextWorldEnv",
    "OpenSpielEnv", "LLMStepsEnv",
]
