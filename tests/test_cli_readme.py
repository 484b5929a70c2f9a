"""The docs and ``search --help`` agree: one source (the config dataclasses) for every
option's default and help (the option table of docs/search.md), per-env defaults that match
the envs, the DuckDB line of docs/store.md runs, and what the commands of README.md and
docs/*.md write is ignored by git."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import treeq

# ------------------------------------------------------------------------- docs and --help agree
ROOT = Path(treeq.__file__).parent
README = ROOT / "README.md"
SEARCH_DOC = ROOT / "docs" / "search.md"  # the search option table
STORE_DOC = ROOT / "docs" / "store.md"  # the DuckDB line


def markdown_files() -> list[Path]:
    """Every markdown file that documents commands: README.md and docs/*.md."""
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def cli_defaults() -> dict[str, str]:
    """Each search option's flags -> the default `search --help` shows, from the click command."""
    import typer

    from treeq.cli import app

    out = {}
    for p in typer.main.get_command(app).commands["search"].params:
        if p.name == "help":
            continue
        flags = "/".join(p.opts + p.secondary_opts)
        if isinstance(p.show_default, str):
            text = p.show_default
        elif p.is_flag and p.secondary_opts:
            text = p.opts[0] if p.default else p.secondary_opts[0]
        else:
            text = str(p.default)
        out[flags] = text
    return out


def readme_table() -> dict[str, str]:
    """The option table of docs/search.md: flags -> default cell."""
    lines = SEARCH_DOC.read_text(encoding="utf-8").splitlines()
    start = lines.index("| option | default | meaning |") + 2
    rows = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        flags = cells[0].strip("`").split(" ")[0]
        rows[flags] = cells[1].replace("`", "")
    return rows


def test_readme_option_table_matches_search_help():
    """Same options, and each default in docs/search.md starts with what `search --help` says."""
    cli, readme = cli_defaults(), readme_table()
    assert sorted(readme) == sorted(cli)
    for flags, text in cli.items():
        assert readme[flags].split(": ", 1)[0] == text, (flags, readme[flags], text)


def test_every_config_field_is_a_search_option():
    """A field added to SearchConfig, SearchJobConfig or LMConfig must get an option (and a row in docs/search.md)."""
    from dataclasses import fields

    from treeq.mcts.config import SearchConfig
    from treeq.pipelines.config import SearchJobConfig
    from treeq.pipelines.policies.lm import LMConfig

    names = ({f.name for f in fields(SearchConfig)} | {f.name for f in fields(SearchJobConfig)}
             | {f.name for f in fields(LMConfig)}) - {"search", "lm"}
    options = {flags.split("/")[0][2:].replace("-", "_") for flags in cli_defaults()} - {"config", "resume"}
    assert options == names


def test_readme_per_env_defaults_match_the_envs():
    """The per-env values in the default cells of docs/search.md are the envs' declared defaults."""
    from treeq.envs.registry import make_env

    attr = {"--gamma": "default_gamma", "--c": "default_c", "--evaluator": "default_evaluator",
            "--transpositions/--no-transpositions": "prefer_transpositions"}

    def show(v):
        return ("on" if v else "off") if isinstance(v, bool) else f"{v:g}" if isinstance(v, float) else v

    envs = {n: make_env(n) for n in ("game24", "countdown", "blocksworld", "textworld")}
    envs["gym"] = make_env("gym:FrozenLake-v1")
    envs["gym with step costs"] = make_env("gym:CliffWalking-v1")
    readme = readme_table()
    for flags, name in attr.items():
        claims = dict(e.split(" ", 1) for e in readme[flags].split(": ", 1)[1].split(" · "))
        gym = re.fullmatch(r"(\S+)(?: \((\S+) with step costs\))?", claims.pop("gym"))
        assert gym, readme[flags]
        claims["gym"], claims["gym with step costs"] = gym[1], gym[2] or gym[1]
        for env_name, env in envs.items():
            assert claims[env_name] == show(getattr(env, name)), (flags, env_name)


def test_readme_has_no_duckdb_cli_line_and_its_python_line_runs(game24_store, tmp_path):
    """The DuckDB example uses the installed duckdb package, not a CLI the install lacks."""
    for doc in markdown_files():
        assert "duckdb -c" not in doc.read_text(encoding="utf-8"), doc
    text = "\n".join(doc.read_text(encoding="utf-8") for doc in markdown_files())
    (line,) = [ln for ln in text.splitlines() if ln.startswith('python -c "import duckdb')]
    assert line in STORE_DOC.read_text(encoding="utf-8").splitlines()
    shutil.copytree(game24_store, tmp_path / "treeq-out")
    proc = subprocess.run(["bash", "-c", line], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**__import__("os").environ, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "feedback" in proc.stdout and "24-0" in proc.stdout


# ------------------------------------------------------------------------- documented commands write nothing git sees
OUTPUT_PARAMS = ("out", "file", "output")  # the options through which a command names what it writes


def readme_cli_lines() -> list[list[str]]:
    """The `python cli.py ...` commands of the bash blocks of README.md and docs/*.md, as argument lists
    (continuations joined)."""
    import shlex

    text = "\n".join(doc.read_text(encoding="utf-8") for doc in markdown_files())
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words[:2] == ["python", "cli.py"]:
                    commands.append(words[2:])
                elif words[:1] == ["dot"] and "-o" in words:
                    commands.append(["<dot>", words[words.index("-o") + 1]])
    return commands


def readme_outputs() -> set[str]:
    """Every path a documented command writes, relative to where it runs (the repository root)."""
    import typer

    from treeq.cli import app

    group = typer.main.get_command(app)
    paths = set()
    for argv in readme_cli_lines():
        if argv[0] == "<dot>":
            paths.add(argv[1])
            continue
        command = group.commands[argv[0]]
        with command.make_context(argv[0], argv[1:], resilient_parsing=True) as ctx:
            params = ctx.params
        if argv[0] == "make-textworld-games":
            paths.add(str(params["out"]))
        elif argv[0] == "show" and params["file"] is None:
            paths.add(f"tree-{params['task']}.{params['format'] or 'html'}")
        else:
            paths.update(str(params[p]) for p in OUTPUT_PARAMS if params.get(p) is not None)
    return {p.rstrip("/") for p in paths}


def test_readme_commands_leave_git_status_clean():
    """What the commands of README.md and docs/*.md write, run from the repository root, is ignored by git and
    is no source path."""
    root = README.parent
    if not (root / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    outputs = readme_outputs()
    assert {"treeq-out", "trees", "tree-24-0.html", "plot.png"} <= outputs  # the parse sees the commands
    for path in sorted(outputs):
        assert not (root / path).exists() or not subprocess.run(
            ["git", "ls-files", "--error-unmatch", path], cwd=root, capture_output=True).returncode == 0, \
            f"a documented command writes into the tracked path {path}"
        ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=root)
        assert ignored.returncode == 0, f"documented command output {path} is not in .gitignore"
