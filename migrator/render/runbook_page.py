"""`migrate runbook [PAGE[#SECTION]]`: print a shipped runbook page, or one section of it.

Reports and error lines name pages as `runbooks/switchover.md#phase-demote`; from an installed
wheel the operator may have no checkout to open them in, so the tool prints them itself. PAGE
may be written as the reports write it, as a bare name (`switchover`, `switchover.md`) or as the
absolute path a report printed; only pages that ship with migrator are ever read.
"""

from __future__ import annotations

import re
from pathlib import Path

from migrator.errors import UsageError, shown
from migrator.resources import shipped_dir

_ANCHOR = re.compile(r'<a id="([^"]+)"></a>')
_HEADING = re.compile(r"^(#{1,6})\s")


def _pages(directory: Path) -> dict[str, Path]:
    return {path.name: path for path in sorted(directory.glob("*.md"))}


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if _HEADING.match(line):
            return line.lstrip("#").strip()
    return ""


def runbook_index() -> str:
    """Where the runbooks are, and one line per page: its name and its title."""
    directory = shipped_dir("runbooks")
    pages = _pages(directory)
    if not pages:
        raise UsageError(f"no runbooks found in {directory}; reinstall migrator")
    lines = [f"runbooks in {directory} (print one with `migrate runbook PAGE[#SECTION]`):"]
    lines += [f"  {name:<28} {_title(path)}" for name, path in pages.items()]
    return "\n".join(lines) + "\n"


def _section(text: str, anchor: str, page: str) -> str:
    """From the anchor to the next heading of the same or a higher level than the anchor's own."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if anchor in _ANCHOR.findall(line)), None)
    if start is None:
        anchors = [a for line in lines for a in _ANCHOR.findall(line)]  # in the page's order
        known = f"its sections: {shown(', '.join(anchors), 1000)}" if anchors else "it has no sections"
        raise UsageError(f"no section #{shown(anchor)} in runbook {page}; {known}")
    level = next((len(m.group(1)) for line in lines[start + 1 :] if (m := _HEADING.match(line))), 6)
    end = len(lines)
    for index in range(start + 2, len(lines)):
        found = _HEADING.match(lines[index])
        if found and len(found.group(1)) <= level:
            end = index
            # An anchor line belongs to the heading below it.
            while end > start + 1 and (_ANCHOR.fullmatch(lines[end - 1].strip()) or not lines[end - 1].strip()):
                end -= 1
            break
    return "\n".join(lines[start:end]).rstrip() + "\n"


def runbook_page(reference: str) -> str:
    """The page (or its section after `#`) that `reference` names."""
    page, _, anchor = reference.strip().partition("#")
    name = Path(page).name
    if name and not name.endswith(".md"):
        name += ".md"
    directory = shipped_dir("runbooks")
    pages = _pages(directory)
    if name not in pages:
        raise UsageError(
            f"no runbook page {shown(page)!r}; pages: {', '.join(pages) or 'none'} (`migrate runbook` lists them)"
        )
    text = pages[name].read_text(encoding="utf-8")
    return _section(text, anchor, name) if anchor else text
