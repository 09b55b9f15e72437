"""Section references stay true: every section a docs page, the README, a config comment or a
docstring names is a heading of the file it names.

Supported forms (quotes are straight double quotes; FILE is a ``.md`` path relative to the
repository root or to the referring file, or ``README``):

* ``"Heading" in FILE``             e.g. see "Bad data, bad configs, crashes" in docs/training.md
* ``FILE, "Heading"`` / ``FILE: "Heading"``   e.g. (docs/data.md, "Your own data")
* ``README's "Heading" section``
* ``"Heading" above`` / ``"Heading" below``   (Markdown pages only: a heading of the same page,
  above or below the reference)
* Markdown links with an anchor: ``[text](FILE#slug)``, ``[text](#slug)`` (GitHub's slugs)

Anything that looks like a section reference but fits none of them -- ``see "X"``,
``"X" section``, ``section "X"`` -- fails too, so a reference cannot silently name no file.
Headings are Markdown ``#`` lines outside code fences; the match is exact (case-insensitive).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from .conftest import ROOT

QUOTED = r'"([^"]{2,80})"'  # may wrap onto the next (comment) line
FILE = r"((?:[\w.-]+/)*[\w.-]+\.md|README)"
FORMS = [
    ("in-file", re.compile(QUOTED + r"\s+in\s+(?:the\s+)?" + FILE)),
    ("file-first", re.compile(r"(?<![\w/.-])" + FILE + r"[,:]?\s+" + QUOTED)),
    ("readme-section", re.compile(r"(README)'s\s+" + QUOTED + r"\s+section")),
    ("above-below", re.compile(QUOTED + r"\s+(above|below)\b")),
]
LOOKS_LIKE = [
    re.compile(r"\bsee\s+(?:also\s+)?" + QUOTED, re.I),
    re.compile(QUOTED + r"\s+section\b", re.I),
    re.compile(r"\bsection\s+" + QUOTED, re.I),
]
ANCHOR_LINK = re.compile(r"\]\(([^)\s#]*\.md)?#([^)\s]+)\)")


def _sources() -> List[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    files += sorted((ROOT / "configs").rglob("*.yml"))
    for package in ("paddle_stdc", "tools", "deploy"):
        files += sorted((ROOT / package).rglob("*.py"))
    return files


def headings(path: Path) -> List[Tuple[int, str]]:
    """(line number, text) of the Markdown headings of ``path``, outside code fences."""
    found, fenced = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6}\s", line):
            found.append((number, line.lstrip("#").strip()))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _resolve(name: str, source: Path) -> Optional[Path]:
    name = "README.md" if name == "README" else name
    for base in (ROOT, source.parent):
        if (base / name).is_file():
            return (base / name).resolve()
    return None


def references(source: Path) -> Tuple[List[Dict], List[str]]:
    """The section references of ``source``, and the reference-like text that fits no form."""
    text = source.read_text()
    refs: List[Dict] = []
    spans: List[Tuple[int, int]] = []
    for form, pattern in FORMS:
        for m in pattern.finditer(text):
            if any(a <= m.start() < b for a, b in spans):
                continue
            if form == "in-file":
                heading, target = m.group(1), m.group(2)
            elif form == "file-first":
                target, heading = m.group(1), m.group(2)
            elif form == "readme-section":
                target, heading = m.group(1), m.group(2)
            else:
                heading, target = m.group(1), None
            heading = " ".join(re.sub(r"\n\s*#?", " ", heading).split())  # a wrapped comment
            line = text.count("\n", 0, m.start()) + 1
            refs.append({"form": form, "heading": heading, "target": target, "line": line,
                         "where": m.group(2) if form == "above-below" else None})  # fmt: skip
            spans.append((m.start(), m.end()))
    loose = []
    for pattern in LOOKS_LIKE:
        for m in pattern.finditer(text):
            quote = m.start(1)
            if not any(a <= quote < b for a, b in spans):
                line = text.count("\n", 0, m.start()) + 1
                loose.append(f"{source.relative_to(ROOT)}:{line}: {m.group(0)!r}")
    return refs, loose


def check_reference(source: Path, ref: Dict) -> Optional[str]:
    """None if the reference holds, else what is wrong."""
    where = f"{source.relative_to(ROOT)}:{ref['line']}"
    if ref["form"] == "above-below":
        if source.suffix != ".md":
            return f'{where}: "{ref["heading"]}" {ref["where"]} -- name the file ("X" in FILE)'
        target = source
    else:
        target = _resolve(ref["target"], source)
        if target is None:
            return f"{where}: {ref['target']} does not exist"
    found = [(n, h) for n, h in headings(target) if h.lower() == ref["heading"].lower()]
    if not found:
        known = "; ".join(h for _, h in headings(target))
        return f'{where}: no heading "{ref["heading"]}" in {target.name} (its headings: {known})'
    if ref["form"] == "above-below":
        ok = any((n < ref["line"]) == (ref["where"] == "above") for n, _ in found)
        if not ok:
            return f'{where}: "{ref["heading"]}" is not {ref["where"]} the reference'
    return None


def anchor_problems(source: Path) -> List[str]:
    if source.suffix != ".md":
        return []
    problems = []
    for m in ANCHOR_LINK.finditer(source.read_text()):
        target = (source.parent / m.group(1)).resolve() if m.group(1) else source
        if not target.is_file():
            continue  # test_docs.py checks the link itself
        if m.group(2) not in {slug(h) for _, h in headings(target)}:
            problems.append(f"{source.relative_to(ROOT)}: no heading for #{m.group(2)}")
    return problems


SOURCES = _sources()
ALL_REFS = [(src, ref) for src in SOURCES for ref in references(src)[0]]


def test_references_were_found():
    forms = {ref["form"] for _, ref in ALL_REFS}
    assert len(ALL_REFS) >= 5 and {"in-file", "file-first"} <= forms, ALL_REFS


@pytest.mark.parametrize(
    "source,ref", ALL_REFS, ids=[f"{s.name}:{r['line']}" for s, r in ALL_REFS]
)  # fmt: skip
def test_section_reference_exists(source, ref):
    problem = check_reference(source, ref)
    assert problem is None, problem


def test_no_reference_without_a_file_or_anchor_without_a_heading():
    problems = [p for src in SOURCES for p in references(src)[1] + anchor_problems(src)]
    assert not problems, "\n".join(problems)


# --- the checker itself ----------------------------------------------------------------------


def _page(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(text)
    return path


def test_checker_accepts_true_references_and_refuses_false_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "other.md").write_text("# Other\n\n## Bad data\n```bash\n# not a heading\n```\n")
    page = _page(tmp_path, '# Top\n\nsee "Top" above, "Bad data" in other.md, other.md, "Other"\n'
                           'and "Bad" in other.md, "not a heading" in other.md, "End" above.\n'
                           "## End\n")  # fmt: skip
    refs, loose = references(page)
    results = {(r["heading"], r["form"]): check_reference(page, r) for r in refs}
    assert loose == []
    assert results[("Top", "above-below")] is None
    assert results[("Bad data", "in-file")] is None
    assert results[("Other", "file-first")] is None
    assert "no heading" in results[("Bad", "in-file")]
    assert "no heading" in results[("not a heading", "in-file")]  # inside a code fence
    assert "is not above" in results[("End", "above-below")]


def test_checker_flags_references_that_name_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    page = _page(tmp_path, '# A\n\nsee "Configs". The "Data" section. [x](#nowhere) [y](#a)\n')
    refs, loose = references(page)
    assert refs == [] and len(loose) == 2 and "Configs" in loose[0] and "Data" in loose[1]
    assert anchor_problems(page) == ["page.md: no heading for #nowhere"]
    yml = tmp_path / "c.yml"
    yml.write_text('# as "Custom" above\n# (README: "Gone")\n')
    (tmp_path / "README.md").write_text("# Readme\n")
    refs, _ = references(yml)
    problems = sorted(check_reference(yml, r) for r in refs)
    assert "name the file" in problems[0] and 'no heading "Gone"' in problems[1]
