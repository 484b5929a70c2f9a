"""The engine's status codes, in one home: the storage, the engine, the export and the
compiled loop (``_core.c``, which repeats them as ``#define``s) all read them from here.

Codes stored in the working storage (:mod:`treeq.mcts.storage`):

* ``UNSTEPPED``: ``e_child`` of an edge not stepped yet; ``n_start`` of a node not expanded yet;
* ``END``: ``n_start`` of a terminal node;
* ``DEAD``: ``n_start`` of a dead end (expanded, no action proposed);
* ``SAMPLED``: ``e_child`` of an edge whose outcomes are sampled on every visit.

How a descent ended (:meth:`treeq.mcts.search._Engine._descend_py`): ``NEW`` (expand and
evaluate the leaf), ``EVAL`` (evaluate it), ``TERMINAL``, ``VALUED`` (its value is known).
``STOPS``: why a search stopped, indexed by the compiled loop's stop code.
"""

from __future__ import annotations

__all__ = ["UNSTEPPED", "END", "DEAD", "SAMPLED", "NEW", "EVAL", "TERMINAL", "VALUED", "STOPS"]

UNSTEPPED = -1
END = -2
DEAD = -3
SAMPLED = -2

NEW, EVAL, TERMINAL, VALUED = 0, 1, 2, 3

STOPS = ("budget", "exhausted", "max_nodes", "solved", "timeout")
