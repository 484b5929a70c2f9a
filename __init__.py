"""treeq: MCTS search and process-reward-model data for agent RL.

Subpackages: ``envs``, ``mcts``, ``data``, ``prm``, ``pipelines``; the command line is
``treeq.cli`` (``python cli.py``).
"""

__version__ = "0.1.0"
