"""Dense per-step rewards and advantages (``export-rewards``) from trajectory groups.

Sources are Parquet files of trajectory groups, one row per step (``rollouts`` writes
them; any file with the columns ``trajectory_id``, ``group_id``, ``step``,
``state_key``, ``action``, ``reward`` will do). The output has one row per step
(``trajectory_id`` = verl-agent's ``traj_uid``, ``group_id`` = its ``uid``, ``step``,
``state_key`` = ``anchor_obs``, ``action``, ``reward``) and one column per estimator:

* ``grpo``, ``gigpo``, ``loop``, ``turn``: from the rewards of the group alone
  (:mod:`treeq.pipelines.advantages`).
* ``mcts_q``: Q(s,a) - V(s) read from searched trees (``--trees``) wherever the step's
  state key is a node there with the step's action tried; null elsewhere.
* ``mc``: Q(s_t, a_t) estimated by Monte Carlo, the mean discounted return of K rollouts
  that take a_t in s_t and then follow the rollout policy (Math-Shepherd's completions;
  AgentPRM's own code differs: see docs/exports.md). ``mc_adv``: the Monte Carlo
  advantage Q_mc(s_t, a_t) - V_mc(s_t), V_mc the mean return of K rollouts from s_t.
* ``grpo`` normalises the returns over the group's trajectories (verl's single-turn
  GRPO); ``grpo_step`` over its step rows, each carrying its trajectory's return, as
  verl-agent's multi-turn batches do (a longer trajectory weighs more).
* ``gae``: GAE(gamma, lambda) with V(s) from the trees or from K policy rollouts.
* ``prm``: a trained PRM's score of each step of the trajectory (one forward pass each).

``mc`` and ``gae`` with Monte Carlo values need the states themselves, which a row does
not hold: they replay each group from the settings ``rollouts`` stored in the file's
metadata (the same seed gives the same trajectories; a replay that disagrees with the
file is refused). Streaming: the file is read in order, a batch at a time, and cut into
groups (a group's rows must be together, as ``rollouts`` writes them); the tree values
are aggregated once into a DuckDB file on disk and joined batch by batch; the output is
written batch by batch. Memory does not grow with the number of steps or nodes.

Why one module over 400 lines: one export read top to bottom (check the source, group,
replay for ``mc``, look up tree values for ``mcts_q`` and ``gae``, write); the formulas
themselves are apart in :mod:`treeq.pipelines.advantages`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..data.store import EXPORT_MEMORY, RecordWriter, connect, group_batches, interruptible, shard_names
from ..errors import ConfigError, StoreError
from . import advantages as adv
from .config import RewardsConfig, RolloutConfig

__all__ = ["REQUIRED_COLUMNS", "export_rewards"]

REQUIRED_COLUMNS = ("trajectory_id", "group_id", "step", "state_key", "action", "reward")
_BATCH_ROWS = 65536

# Q(s, a) and V(s) per state key over every searched tree (docs/architecture.md, Q semantics). A child's
# value is coalesce(proven, q); the same (state, action) in several rows or trees merges
# visit-weighted, and a proof wins. V(s), in this order: exact where the solver proved the
# state (the edge value minus its reward, over gamma); else from the tried actions, their
# max where a tree backed up by max (graph mode), their visit-weighted mean otherwise;
# else (a leaf) the node's own backed-up value, (q - reward) / gamma (q itself at a root).
# Sums are taken a few tasks at a time (_EDGE_PARTS, _NODE_PARTS), then merged (_VALUES_SQL).
_EDGE_PARTS = """
SELECT p.state_key AS state_key, c.action AS action, max(c.proven) AS proven,
       sum(c.q * c.visits) AS qv, sum(CASE WHEN c.q IS NOT NULL THEN c.visits END) AS vq,
       sum(c.visits) AS visits, min(coalesce(t.backup, 'mean')) AS backup
FROM nodes c
JOIN nodes p ON p.run_id = c.run_id AND p.task_id = c.task_id AND p.node_id = c.parent_id
LEFT JOIN trees t ON t.run_id = c.run_id AND t.task_id = c.task_id
WHERE c.action IS NOT NULL AND (c.proven IS NOT NULL OR (c.q IS NOT NULL AND c.visits > 0))
GROUP BY p.state_key, c.action
"""
_NODE_PARTS = """
WITH own AS (
    SELECT n.state_key, n.visits, n.parent_id < 0 AS root, n.proven, n.q, n.reward,
           coalesce(TRY_CAST(json_extract(r.config, '$.search.gamma') AS DOUBLE), 1.0) AS gamma
    FROM nodes n LEFT JOIN runs r ON r.run_id = n.run_id
)
SELECT state_key,
       max(CASE WHEN root THEN proven ELSE (proven - reward) / nullif(gamma, 0) END) AS exact,
       sum(CASE WHEN visits > 0 THEN visits * (CASE WHEN root THEN q ELSE (q - reward) / nullif(gamma, 0) END) END)
           AS own_sum,
       sum(CASE WHEN visits > 0 AND q IS NOT NULL THEN visits END) AS own_visits
FROM own GROUP BY state_key
"""
_VALUES_SQL = """
CREATE TABLE edge_values AS
SELECT state_key, action, coalesce(max(proven), sum(qv) / nullif(sum(vq), 0)) AS q, sum(visits) AS visits,
       min(backup) AS backup
FROM edge_parts GROUP BY state_key, action;
CREATE TABLE state_values AS
WITH node_v AS (
    SELECT state_key, max(exact) AS exact, sum(own_sum) / nullif(sum(own_visits), 0) AS own
    FROM node_parts GROUP BY state_key
), child_v AS (
    SELECT state_key,
           CASE WHEN min(backup) = 'max' THEN max(q) ELSE sum(q * visits) / nullif(sum(visits), 0) END AS v
    FROM edge_values WHERE q IS NOT NULL GROUP BY state_key
)
SELECT state_key, coalesce(node_v.exact, child_v.v, node_v.own) AS v
FROM node_v FULL OUTER JOIN child_v USING (state_key);
DROP TABLE edge_parts;
DROP TABLE node_parts;
"""


def _check_source(path: Path, cfg: RewardsConfig) -> tuple[set[str], dict | None]:
    """The source's columns and its rollouts settings (None when it has none).

    Raises:
        StoreError: not a readable Parquet file, a needed column missing, or no settings
            where a replay is needed.
    """
    from .rollouts import CONFIG_KEY

    if path.is_dir():
        raise StoreError(f"{path} is a directory: export-rewards reads trajectory files written by rollouts "
                         f"(a search output goes to --trees)")
    if not path.is_file():
        raise StoreError(f"{path}: no such file (give Parquet files written by rollouts)")
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())[:200]})") from None
    names = set(schema.names)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise StoreError(f"{path}: missing column(s) {', '.join(missing)}; a trajectory file needs "
                         f"{', '.join(REQUIRED_COLUMNS)}")
    raw = (schema.metadata or {}).get(CONFIG_KEY.encode())
    try:
        settings = json.loads(raw) if raw else None
    except ValueError:
        settings = "not JSON"
    if settings is not None and not isinstance(settings, dict):
        raise StoreError(f"{path}: its rollouts settings ({CONFIG_KEY} in the metadata) are not a JSON object")
    if settings is None and ({"mc", "mc_adv"} & set(cfg.estimators)
                             or ("gae" in cfg.estimators and cfg.value_source == "mc")):
        raise StoreError(f"{path}: mc, mc_adv and gae with Monte Carlo values replay the trajectories, and this file has no "
                         f"rollouts settings in its metadata (write it with `treeq rollouts`)")
    if "prm" in cfg.estimators and "observation" not in names:
        raise StoreError(f"{path}: prm scores need the column observation (the prompt of each trajectory)")
    return names, settings


class _Replay:
    """The env, tasks and policy of a rollouts file: states of its groups, Monte Carlo returns."""

    def __init__(self, settings: dict, cfg: RewardsConfig, source: Path) -> None:
        from ..envs.registry import make_env
        from ..mcts.config import SearchConfig, resolve_defaults
        from .policies.lm import LMConfig

        known = {k: v for k, v in settings.items() if k in RolloutConfig.__dataclass_fields__}
        try:
            self.rollout = RolloutConfig(**{**known, "env_kwargs": settings.get("env_kwargs") or {}, "progress": False,
                                            "lm": LMConfig(**(settings.get("lm") or {}))})
        except (TypeError, ValueError) as exc:  # a hand-edited file: wrong types or keys
            raise StoreError(f"{source}: its rollouts settings do not describe a rollouts job ({exc})") from None
        self.env = make_env(self.rollout.env, **self.rollout.env_kwargs)
        self.search_cfg = resolve_defaults(SearchConfig(), self.env)  # as the rollouts job resolved them
        self.tasks = {t.task_id: t for t in list(self.env.load_tasks(self.rollout.tasks))[: self.rollout.limit]}
        self.cfg, self.source = cfg, source

    def states(self, group_id: str, trajectories: list[dict[str, list]]) -> list[list[tuple[Any, Any]]]:
        """(state, next state) of each step, replayed; checked against the file's actions."""
        from .rollouts import sample_group

        task = self.tasks.get(group_id)
        if task is None:
            raise StoreError(f"{self.source}: group {group_id!r} is not a task of the recorded settings")
        group = sample_group(self.env, task, self.rollout, self.search_cfg)
        out = []
        for rows in trajectories:
            g = int(str(rows["trajectory_id"][0]).rsplit("/", 1)[-1]) if "/" in str(rows["trajectory_id"][0]) else -1
            transitions = group[g][0] if 0 <= g < len(group) else None
            if transitions is None or [a for _, a, _, _ in transitions] != rows["action"]:
                raise StoreError(f"{self.source}: trajectory {rows['trajectory_id'][0]!r} differs from a replay of the "
                                 f"settings in its metadata (edited, or written by another treeq version)")
            out.append([(s, step.state) for s, _, _, step in transitions])
        return out

    def mc(self, group_id: str, trajectories: list[dict[str, list]], states, gamma: float,
           want_q: bool, want_v: bool) -> tuple[list[list[float]], list[list[float]]]:
        """Per step: Q_mc(s_t, a_t) (``want_q``) and V_mc(s_t), V_mc(s_{t+1}) of the last step (``want_v``).

        Each estimate is the mean discounted return of K rollouts of the rollout policy,
        within the trajectory's remaining step budget. The rollouts' generator derives
        from (seed, group id), so the same settings give the same numbers.
        """
        from .rollouts import play, policy_chooser

        rng = np.random.default_rng(np.random.SeedSequence([self.cfg.seed, zlib.crc32(group_id.encode()), 1]))
        choose = policy_chooser(self.env, self.search_cfg, self.rollout.policy, rng, self.rollout.lm)
        k, horizon = self.cfg.mc_rollouts, self.rollout.max_steps

        def ret(state, budget: int) -> float:
            if budget <= 0:
                return 0.0
            transitions, _ = play(self.env, state, choose, rng, budget)
            return sum(gamma ** i * float(step.reward) for i, (_, _, _, step) in enumerate(transitions))

        def q_of(state, action, budget: int) -> float:
            total = 0.0
            for _ in range(k):
                step = self.env.step(state, action, rng)
                done = step.terminated or step.truncated
                total += float(step.reward) + (0.0 if done else gamma * ret(step.state, budget - 1))
            return total / k

        qs, vs = [], []
        for rows, pairs in zip(trajectories, states):
            q_row, v_row = [], []
            for t, ((state, _next), action) in enumerate(zip(pairs, rows["action"])):
                if want_q:
                    q_row.append(q_of(state, action, horizon - t))
                if want_v:
                    v_row.append(sum(ret(state, horizon - t) for _ in range(k)) / k)
            if want_v:  # V of the state after the last step: 0 when the episode ended there
                last = len(pairs) - 1
                ended = bool(rows["terminated"][last]) if "terminated" in rows else False
                v_row.append(0.0 if ended else sum(ret(pairs[last][1], horizon - last - 1) for _ in range(k)) / k)
            qs.append(q_row)
            vs.append(v_row)
        return qs, vs


def _check_tree_envs(trees: Sequence[str], paths: Sequence[Path], checked: Sequence[tuple[set[str], dict | None]]) -> None:
    """Refuse trajectories of an env that the trees did not search: no state key would match, every value null.

    Reads only the runs' settings (cheap), before any tree value is aggregated.

    Raises:
        StoreError: a source's recorded env is none of the envs searched in ``trees``.
    """
    con = connect(list(trees), shards=set())
    try:
        with interruptible():
            envs = {e for (e,) in con.execute("SELECT DISTINCT json_extract_string(config, '$.env') FROM runs").fetchall()
                    if e}
    except duckdb.Error as exc:
        raise StoreError(f"cannot read the runs in {', '.join(trees)}: {' '.join(str(exc).split())}") from None
    finally:
        con.close()
    for path, (_, settings) in zip(paths, checked):
        env = (settings or {}).get("env")
        if envs and isinstance(env, str) and env not in envs:
            raise StoreError(f"{path}: trajectories of {env}, but --trees searched {', '.join(sorted(envs))}: no "
                             f"state of one env is a node of the other (give the trees of a {env} search)")


def _split_trajectories(cols: dict[str, list], source: Path) -> list[dict[str, list]]:
    """A group's rows as trajectories (first-appearance order), each sorted by step and checked."""
    order: dict[Any, list[int]] = {}
    for i, tid in enumerate(cols["trajectory_id"]):
        order.setdefault(tid, []).append(i)
    out = []
    for tid, idx in order.items():
        idx.sort(key=lambda i: cols["step"][i])
        steps = [cols["step"][i] for i in idx]
        if steps != list(range(len(steps))):
            raise StoreError(f"{source}: trajectory {tid!r} has steps {steps[:10]}, not 0, 1, 2, ...")
        out.append({k: [v[i] for i in idx] for k, v in cols.items()})
    return out


def _gamma(cfg: RewardsConfig, settings: dict | None) -> float:
    if cfg.gamma is not None:
        return cfg.gamma
    if settings is None:
        return 1.0
    if isinstance(settings.get("gamma"), (int, float)):  # recorded by the rollouts job
        return float(settings["gamma"])
    if not isinstance(settings.get("env"), str):
        return 1.0
    from ..envs.registry import make_env  # a file from before the gamma was recorded

    return float(make_env(settings["env"], **(settings.get("env_kwargs") or {})).default_gamma)


def _group_columns(trajs: list[dict[str, list]], cfg: RewardsConfig, gamma: float, replay: _Replay | None,
                   prm: tuple | None) -> dict[str, list]:
    """The output columns of one group."""
    rewards = [[float(r) for r in t["reward"]] for t in trajs]
    est: dict[str, list[list[Any]]] = {}
    names = cfg.estimators
    if "grpo" in names:
        est["grpo"] = [[a] * len(r) for a, r in zip(adv.grpo(rewards), rewards)]
    if "grpo_step" in names:
        est["grpo_step"] = adv.grpo_steps(rewards)
    if "loop" in names:
        est["loop"] = [[a] * len(r) for a, r in zip(adv.loop(rewards), rewards)]
    if "gigpo" in names:
        est["gigpo"] = adv.gigpo(rewards, [t["state_key"] for t in trajs], gamma, cfg.weight, cfg.gigpo_mode)
    if "turn" in names:
        est["turn"] = [adv.turn(r, gamma) for r in rewards]
    if "mcts_q" in names:
        est["mcts_q"] = [[None if q is None or v is None else q - v for q, v in zip(t["_q"], t["_v"])] for t in trajs]
    mc_v = None
    if replay is not None:
        states = replay.states(str(trajs[0]["group_id"][0]), trajs)
        want_v = ("gae" in names and cfg.value_source == "mc") or "mc_adv" in names
        qs, mc_v = replay.mc(str(trajs[0]["group_id"][0]), trajs, states, gamma, bool({"mc", "mc_adv"} & set(names)),
                             want_v)
        if "mc" in names:
            est["mc"] = qs
        if "mc_adv" in names:  # A_mc = Q_mc(s_t, a_t) - V_mc(s_t)
            est["mc_adv"] = [[q - v for q, v in zip(q_row, v_row)] for q_row, v_row in zip(qs, mc_v)]
    if "gae" in names:
        est["gae"] = []
        for i, (t, r) in enumerate(zip(trajs, rewards)):
            if cfg.value_source == "mc":
                values, last = mc_v[i][:-1], mc_v[i][-1]
            else:
                values = t["_v"]
                ended = bool(t["terminated"][-1]) if "terminated" in t else False
                last = 0.0 if ended else t["_v_next"][-1]
            est["gae"].append(adv.gae(r, values, last, gamma, cfg.lam))
    if "prm" in names:
        from ..prm.format import OBSERVED, step_text
        from ..prm.model import score_batch

        tokenizer, model, meta = prm
        observed = meta.step_format == OBSERVED  # then the file has the column (checked on opening)
        paths = [(t["observation"][0] or "",
                  [step_text(str(a), o) for a, o in zip(t["action"], t["step_observation"] if observed
                                                         else [None] * len(t["action"]))])
                 for t in trajs]
        scores = score_batch(model, tokenizer, paths, meta.max_length, skip_long=True)
        est["prm"] = [s if s is not None else [None] * len(t["action"]) for s, t in zip(scores, trajs)]
    out: dict[str, list] = {k: [v for t in trajs for v in t[k]] for k in REQUIRED_COLUMNS}
    for name in names:
        out[name] = [v for row in est[name] for v in row]
    return out


def _schema(cfg: RewardsConfig) -> pa.Schema:
    return pa.schema([("trajectory_id", pa.string()), ("group_id", pa.string()), ("step", pa.int64()),
                      ("state_key", pa.string()), ("action", pa.string()), ("reward", pa.float64())]
                     + [(name, pa.float64()) for name in cfg.estimators])


def export_rewards(sources: Sequence[str | Path], cfg: RewardsConfig) -> tuple[Path, int, dict[str, int]]:
    """Write one row per step of every trajectory in ``sources`` with each estimator's column.

    Returns the path, the number of rows and, per estimator, how many rows got a value
    (mcts_q and gae are null where the trees lack the state; prm where a path is too long).

    Raises:
        ConfigError: no source, or ``cfg.out`` has another extension.
        StoreError: a source or tree store is unreadable or lacks what an estimator needs.
        ModelError: ``cfg.prm`` is not a PRM directory.
    """
    from tqdm import tqdm

    from ..data.store import check_record_path

    check_record_path(cfg.out)
    if not sources:
        raise ConfigError("give at least one trajectory file (written by `treeq rollouts`)")
    paths = [Path(s) for s in sources]
    checked = [_check_source(p, cfg) for p in paths]
    prm = None
    if "prm" in cfg.estimators:
        from ..prm.model import load_prm

        prm = load_prm(cfg.prm)
        from ..prm.format import OBSERVED

        if prm[2].step_format == OBSERVED:
            for path, (names, _) in zip(paths, checked):
                if "step_observation" not in names:
                    raise StoreError(f"{path}: the PRM {cfg.prm} reads what the env answered to each action, and "
                                     f"this file has no step_observation column (write it again with `treeq rollouts`)")
    needs_tree = "mcts_q" in cfg.estimators or ("gae" in cfg.estimators and cfg.value_source == "tree")
    if needs_tree:
        _check_tree_envs(cfg.trees, paths, checked)
    filled = {name: 0 for name in cfg.estimators}
    with contextlib.ExitStack() as stack:
        lookup = stack.enter_context(_TreeLookup(cfg.trees)) if needs_tree else None
        writer = stack.enter_context(RecordWriter(cfg.out, _schema(cfg)))
        for path, (names, settings) in zip(paths, checked):
            gamma = _gamma(cfg, settings)
            replay = _Replay(settings, cfg, path) if settings is not None and (
                {"mc", "mc_adv"} & set(cfg.estimators) or ("gae" in cfg.estimators and cfg.value_source == "mc")) else None
            columns = [c for c in (*REQUIRED_COLUMNS, "next_state_key", "terminated", "observation", "step_observation")
                       if c in names]
            batches = _batches(path, columns)
            if lookup is not None:
                batches = (lookup.join(b) for b in batches)
            finished: set[str] = set()
            bar = stack.enter_context(tqdm(total=pq.ParquetFile(path).metadata.num_rows, unit="step",
                                           desc=f"export-rewards {path.name}", disable=not cfg.progress,
                                           dynamic_ncols=True))
            for cols in group_batches(batches, ("group_id",)):
                group = cols["group_id"][0]
                if group in finished:
                    raise StoreError(f"{path}: the rows of group {group!r} are not together: sort the file by group_id "
                                     f"(rollouts writes them so)")
                finished.add(group)
                trajs = _split_trajectories(cols, path)
                if lookup is not None:  # V(s_{t+1}) inside a trajectory is V of the next row's state
                    for t in trajs:
                        t["_v_next"] = t["_v"][1:] + [t["_v_next"][-1]]
                out = _group_columns(trajs, cfg, gamma, replay, prm)
                for name in cfg.estimators:
                    filled[name] += sum(v is not None for v in out[name])
                writer.write(pa.table(out, schema=_schema(cfg)))
                bar.update(len(cols["group_id"]))
    return writer.path, writer.rows, filled


def _batches(path: Path, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """The file's rows in order, a batch at a time (a corrupt page is one clear error)."""
    try:
        yield from pq.ParquetFile(path).iter_batches(batch_size=_BATCH_ROWS, columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"{path}: cannot read ({' '.join(str(exc).split())[:200]})") from None


class _TreeLookup:
    """Tree values of steps: Q(s, a), V(s) and V(s') by state key, from a DuckDB file on disk.

    The values of every searched tree are aggregated once into a temporary DuckDB
    database (its buffer capped, so a store of millions of nodes stays on disk), then
    each batch of steps is joined against it.
    """

    def __init__(self, trees: Sequence[str], tasks_per_query: int = 64) -> None:
        self._dir = tempfile.mkdtemp(prefix="treeq-values-")
        try:
            self.con = duckdb.connect(str(Path(self._dir) / "values.duckdb"))
            self.con.execute(f"SET memory_limit = '{EXPORT_MEMORY}'")
            names = shard_names(trees)
            for start in range(0, len(names), tasks_per_query):
                part = connect(list(trees), memory_limit=EXPORT_MEMORY, shards=set(names[start : start + tasks_per_query]))
                try:
                    with interruptible():
                        for table, sql in (("edge_parts", _EDGE_PARTS), ("node_parts", _NODE_PARTS)):
                            rows = part.sql(sql).to_arrow_table()
                            self.con.register("_part", rows)
                            verb = f"INSERT INTO {table}" if start else f"CREATE TABLE {table} AS"
                            self.con.execute(f"{verb} SELECT * FROM _part")
                            self.con.unregister("_part")
                except duckdb.Error as exc:
                    raise StoreError(f"cannot read the trees in {', '.join(trees)}: {' '.join(str(exc).split())}") from None
                finally:
                    part.close()
            if not names:
                raise StoreError(f"no searched tree in {', '.join(trees)}")
            with interruptible():
                self.con.execute(_VALUES_SQL)
        except BaseException:
            self.__exit__()
            raise

    def join(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` with columns ``_q``, ``_v`` and ``_v_next`` (null where the trees lack them)."""
        names = batch.schema.names
        rows = pa.Table.from_batches([batch]).append_column("_row", pa.array(range(batch.num_rows), pa.int64()))
        self.con.register("_steps", rows)
        nxt = "n.v" if "next_state_key" in names else "NULL::DOUBLE"
        join_next = "LEFT JOIN state_values n ON n.state_key = r.next_state_key" if "next_state_key" in names else ""
        with interruptible():
            table = self.con.sql(
                f"SELECT {', '.join('r.' + c for c in names)}, e.q AS _q, s.v AS _v, {nxt} AS _v_next FROM _steps r "
                f"LEFT JOIN edge_values e ON e.state_key = r.state_key AND e.action = r.action "
                f"LEFT JOIN state_values s ON s.state_key = r.state_key {join_next} ORDER BY r._row").to_arrow_table()
        self.con.unregister("_steps")
        return table.combine_chunks().to_batches()[0] if table.num_rows else batch

    def __enter__(self) -> _TreeLookup:
        return self

    def __exit__(self, *exc) -> None:
        if getattr(self, "con", None) is not None:
            self.con.close()
        shutil.rmtree(self._dir, ignore_errors=True)
