"""What a Markdown document shows a reader: its headings, the lines of its fenced blocks (the
commands) and its figures. ``scripts/readme_inventory.py`` writes the README's as it was before
the documentation site (``docs/readme_inventory.txt``); ``tests/test_docs_site.py`` finds each
item in the site's pages, so that nothing the README said is lost by moving it.

The pages are read as the site is built: a ``--8<-- "path"`` line (pymdownx.snippets, paths from
the project root) is replaced by that file, and an image's path is read from the page's folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

#: The kinds of item, in the order the inventory lists them.
KINDS = ("heading", "code", "image")

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)")
_SNIPPET = re.compile(r'^\s*--8<--\s+"([^"]+)"\s*$')


def normalise(text: str) -> str:
    """One space between words, none at the ends: a command reads the same however it is indented."""
    return " ".join(text.split())


def expand_snippets(text: str, root: Path) -> str:
    """``text`` with each ``--8<-- "path"`` line replaced by the file at ``root / path`` (as the
    build does, included files expanded in turn)."""
    def included(match: re.Match) -> str:
        return expand_snippets((root / match.group(1)).read_text(encoding="utf-8"), root).rstrip("\n")

    return "\n".join(_SNIPPET.sub(included, line) for line in text.splitlines())


def markdown_items(text: str, folder: PurePosixPath = PurePosixPath(".")) -> list[tuple[str, str]]:
    """``(kind, value)`` for each heading (its text), each non-empty line of a fenced block and
    each image (its path from the project root, ``folder`` being the document's folder there),
    in document order. A ``#`` line inside a fence is a comment, not a heading."""
    items: list[tuple[str, str]] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            if line.strip():
                items.append(("code", normalise(line)))
            continue
        heading = _HEADING.match(line)
        if heading:
            items.append(("heading", normalise(heading.group(2))))
        items.extend(("image", _project_path(folder, target)) for target in _IMAGE.findall(line))
    return items


def _project_path(folder: PurePosixPath, target: str) -> str:
    """``target`` (relative to ``folder``) as a normalised path from the project root."""
    parts: list[str] = []
    for part in (folder / target).parts:
        if part == ".." and parts:
            parts.pop()
        elif part not in (".", ".."):
            parts.append(part)
    return "/".join(parts)


def site_items(root: Path, docs: str = "docs") -> set[tuple[str, str]]:
    """Every item of every page under ``root / docs``, snippets expanded."""
    found: set[tuple[str, str]] = set()
    for page in sorted((root / docs).rglob("*.md")):
        folder = PurePosixPath(page.parent.relative_to(root).as_posix())
        found.update(markdown_items(expand_snippets(page.read_text(encoding="utf-8"), root), folder))
    return found


def format_inventory(items: Iterable[tuple[str, str]]) -> str:
    """One ``kind<TAB>value`` line per distinct item, in first-seen order."""
    lines = dict.fromkeys(f"{kind}\t{value}" for kind, value in items)
    return "".join(f"{line}\n" for line in lines)


def read_inventory(text: str) -> list[tuple[str, str]]:
    """The items of a ``format_inventory`` text; a line of another kind is an error."""
    items = []
    for number, line in enumerate(text.splitlines(), 1):
        kind, _, value = line.partition("\t")
        if kind not in KINDS or not value:
            raise ValueError(f"inventory line {number}: expected '<{'|'.join(KINDS)}><TAB><text>', got {line!r}")
        items.append((kind, value))
    return items


def missing(inventory: Iterable[tuple[str, str]], found: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """The inventory's items that ``found`` lacks, in inventory order."""
    return [item for item in inventory if item not in found]
