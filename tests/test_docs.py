"""The documents point at things that exist: every relative link and `#anchor` resolves, every
record a document names in `runs/` is in the repository, every script it tells you to run is.

Records and scripts get renamed and retired (scripts/same_cases.py, scripts/edit_norms.py became
commands); a number whose record no longer exists cannot be checked, so a stale name fails here.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
# where runs describe themselves and the commands that continue them
RUN_NOTES = [*sorted(ROOT.glob("runs/*/*.md")), *sorted(ROOT.glob("runs/*/COMMAND.sh")), ROOT / "runs/QUEUE.sh"]


def heading_anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(document: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", document.read_text(), flags=re.M | re.S)  # no headings in code
    return {heading_anchor(h) for h in re.findall(r"^#+ (.*)$", text, flags=re.M)}


def test_heading_anchor_is_githubs():
    assert heading_anchor("PRUNE on sequential ROME: restraining (500 to 2,000 edits)") == \
        "prune-on-sequential-rome-restraining-500-to-2000-edits"
    assert heading_anchor("Gemma 3: the cause — and the fix") == "gemma-3-the-cause--and-the-fix"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_links_and_anchors_resolve(document):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", document.read_text()):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (document.parent / path) if path else document
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(target)
    assert not broken, f"{document.name}: {broken}"


@pytest.mark.parametrize("document", DOCUMENTS + RUN_NOTES, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_records_and_scripts_exist(document):
    text = document.read_text()
    # records: a `runs/...` code span names a file or folder (a glob allowed; <placeholders> are not names)
    records = [r.rstrip("/.,") for r in re.findall(r"`(runs/[^`\s]+)`", text) if "<" not in r]
    scripts = re.findall(r"(?<![\w/.-])((?:scripts|benchmarks)/[\w./-]+\.(?:py|sh))", text)
    missing = [r for r in records if not glob.glob(str(ROOT / r))]
    missing += [s for s in scripts if not (ROOT / s).exists()]
    assert not missing, f"{document.relative_to(ROOT)} names what is not here: {sorted(set(missing))}"


@pytest.mark.parametrize("document", [d for d in DOCUMENTS if "**Contents**" in d.read_text()], ids=lambda p: p.name)
def test_a_contents_list_names_every_section_after_it(document):
    text = document.read_text()
    listed, after = text.split("**Contents**", 1)[1].split("\n## ", 1)
    after = re.sub(r"^```.*?^```", "", "## " + after, flags=re.M | re.S)
    sections = {heading_anchor(h) for h in re.findall(r"^##+ (.*)$", after, flags=re.M)}
    assert sections == set(re.findall(r"\]\(#([^)]+)\)", listed))
