"""Build hook for the one compiled part: ``treeq.mcts._core``, tree search's hot path.

Everything else is in pyproject.toml. The extension is optional: without a C compiler
the install still succeeds and the search runs its pure-Python path (same trees, slower).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("treeq.mcts._core", ["mcts/_core.c"], optional=True, extra_compile_args=["-O2"])])
