"""The docs: README is short and links every page; every command marked runnable runs.

A fenced ``bash`` block right after a ``<!-- runnable -->`` line in README.md or docs/*.md is
run from the repository root, its lines in order as one test (a walk-through's later steps
read what the earlier ones wrote); each line must exit 0. Keep them cheap: --help, --check,
or a few iterations on generated data under data/ and output/ (both git-ignored).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from .conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = re.compile(r"<!-- runnable -->\n```bash\n(.*?)```", re.S)


def runnable_blocks():
    """(page, [command, ...]) of every runnable block."""
    found = []
    for path in DOCS:
        for block in RUNNABLE.findall(path.read_text()):
            found.append((path.name, [line for line in block.splitlines() if line.strip()]))
    return found


BLOCKS = runnable_blocks()
assert BLOCKS, "no runnable commands found in the docs"


def test_readme_is_short_and_links_every_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 120
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert pages, "docs/ has no pages"
    for name in pages:
        assert f"(docs/{name})" in readme, f"README does not link docs/{name}"


def test_relative_links_resolve():
    for path in DOCS:
        for target in re.findall(r"\]\(([^)#:]+\.md)\)", path.read_text()):
            assert (path.parent / target).is_file(), f"{path.name}: broken link {target}"


@pytest.mark.slow
@pytest.mark.parametrize("page,commands", BLOCKS, ids=[f"{p}:{c[0]}" for p, c in BLOCKS])
def test_runnable_block(page, commands):
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "python", f"{page}: runnable commands start with python: {command}"
        done = subprocess.run(
            [sys.executable, *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, (
            f"{page}: `{command}` exited {done.returncode}:\n{done.stderr[-3000:]}"
        )


def readme_tool_commands() -> dict:
    """``python <script> ...`` lines of README.md's bash blocks (continuations joined), by
    script: the flags each one uses."""
    flags: dict = {}
    for block in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if len(argv) > 1 and argv[0] == "python" and argv[1].endswith(".py"):
                used = {a.split("=")[0] for a in argv[2:] if a.startswith("--")}
                flags.setdefault(argv[1], set()).update(used)
    return flags


README_TOOLS = readme_tool_commands()


def test_readme_shows_the_mission():
    for script in ("tools/train.py", "tools/val.py", "tools/export.py", "deploy/python/infer.py",
                   "deploy/serving/server.py"):  # fmt: skip
        assert script in README_TOOLS, f"README shows no `python {script}` command"
    readme = (ROOT / "README.md").read_text()
    assert "--config configs/stdc2_seg_cityscapes_1024x512_80k.yml" in readme
    assert "--eval_scale seg50" in readme and "--use_trt True" in readme


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(README_TOOLS))
def test_readme_flags_exist(script):
    """Every flag a README command passes is one the script's --help lists."""
    assert (ROOT / script).is_file(), script
    done = subprocess.run(
        [sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    listed = set(re.findall(r"--[a-z_]+", done.stdout))
    assert README_TOOLS[script] <= listed, (
        f"{script}: {README_TOOLS[script] - listed} not in --help"
    )
