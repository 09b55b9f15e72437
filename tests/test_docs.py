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
    assert len(readme.splitlines()) <= 150
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
