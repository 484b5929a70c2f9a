"""compact: the same rows in a few large files, exports and resume unchanged, a crash mid-way recovered."""

from __future__ import annotations

import shutil

import duckdb
import pyarrow.parquet as pq

FAST = ["--no-progress", "--workers", "1"]


def rows(out, table="nodes"):
    order = "task_id, node_id" if table == "nodes" else "task_id"
    return duckdb.sql(f"SELECT * FROM read_parquet('{out}/{table}/**/*.parquet', union_by_name = true) "
                      f"ORDER BY {order}").fetchall()


def test_compact_keeps_rows_exports_and_resume(tmp_path, run_cli):
    out = tmp_path / "out"
    assert run_cli("search", "--limit", "5", "--simulations", "100", "--out", out, *FAST).rc == 0
    before_nodes, before_trees = rows(out), rows(out, "trees")
    assert run_cli("export-dpo", out, "--out", tmp_path / "a.jsonl", "--no-progress").rc == 0
    res = run_cli("compact", out, "--row-group", "1000")
    assert res.rc == 0 and "nodes: 5 files -> 1" in res.out and "trees: 5 files -> 1" in res.out
    assert rows(out) == before_nodes and rows(out, "trees") == before_trees
    (part,) = out.glob("nodes/run_id=*/*.parquet")
    assert part.name.startswith("part-") and pq.ParquetFile(part).metadata.num_row_groups >= 2
    assert [p for p in out.rglob("*") if p.name.startswith(".")] == []  # nothing left aside
    assert run_cli("export-dpo", out, "--out", tmp_path / "b.jsonl", "--no-progress").rc == 0
    assert sorted((tmp_path / "a.jsonl").read_text().splitlines()) == sorted((tmp_path / "b.jsonl").read_text().splitlines())
    res = run_cli("search", "--out", out, "--resume", "--no-progress")
    assert res.rc == 0 and "all 5 game24 tasks were on disk already" in res.out and rows(out) == before_nodes
    res = run_cli("search", "--limit", "6", "--simulations", "100", "--out", out, *FAST)  # another run beside it
    assert res.rc == 0
    assert run_cli("compact", out).rc == 0
    assert duckdb.sql(f"SELECT count(DISTINCT run_id), count(*) FROM read_parquet('{out}/trees/**/*.parquet')"
                      ).fetchall() == [(2, 11)]


def test_a_crash_between_the_renames_is_finished_by_the_next_compact(tmp_path, run_cli):
    out = tmp_path / "out"
    assert run_cli("search", "--limit", "3", "--simulations", "50", "--out", out, *FAST).rc == 0
    before = rows(out)
    backup = tmp_path / "backup"
    shutil.copytree(out, backup)
    assert run_cli("compact", out).rc == 0
    (part,) = out.glob("nodes/run_id=*")
    # as if killed after the old folder was moved aside and before the new one went in
    aside = part.with_name(f".{part.name}.compact")
    part.rename(aside)
    (aside / ".complete").write_text("ok\n")
    shutil.copytree(backup / "nodes" / part.name, part.with_name(f".{part.name}.old"))
    assert run_cli("compact", out).rc == 0
    assert rows(out) == before and [p for p in out.rglob("*") if p.name.startswith(".")] == []


def test_errors(tmp_path, run_cli):
    res = run_cli("compact", tmp_path / "nothing")
    assert res.rc == 2 and "not a treeq output directory" in res.err
    res = run_cli("compact", tmp_path, "--rows-per-file", "0")
    assert res.rc == 2
