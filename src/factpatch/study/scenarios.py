"""Scenarios for a study: one counterfactual and the texts that several methods generated for it.

They come from a JSONL file, one object a line, as `factpatch compare` writes it::

    {"case_id": 8, "counterfactual": "The twin city of Wellington is Sheffield",
     "prompt": "What is the twin city of Wellington? It is",
     "texts": {"rome": "...", "ft+l": "...", "none": "..."}}

Everything is checked before anything is stored, and every error names the line it is on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factpatch.core.errors import FactpatchError

logger = logging.getLogger(__name__)

REQUIRED_FIELDS = ("case_id", "counterfactual", "prompt", "texts")


@dataclass(frozen=True)
class Scenario:
    """One counterfactual and its generated texts, keyed by method (`rome`, `ft+l`, `none`...)."""

    case_id: str
    counterfactual: str
    prompt: str
    texts: Mapping[str, str]


def parse_scenario(record: Any, where: str, methods: Sequence[str] | None = None) -> Scenario:
    """Check one decoded record; `where` ("texts.jsonl line 3") starts every error message.

    With `methods`, keep only those texts, in that order, and require each of them.
    """
    if not isinstance(record, dict):
        raise FactpatchError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    if missing:
        raise FactpatchError(f"{where}: missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    case_id = record["case_id"]
    if not isinstance(case_id, (str, int)) or isinstance(case_id, bool) or str(case_id).strip() == "":
        raise FactpatchError(f"{where}: case_id must be a non-empty string or an integer")
    for name in ("counterfactual", "prompt"):
        if not isinstance(record[name], str):
            raise FactpatchError(f"{where}: {name} must be a string")
    if not record["counterfactual"].strip():
        raise FactpatchError(f"{where}: counterfactual is empty")
    texts = record["texts"]
    if not isinstance(texts, dict):
        raise FactpatchError(f"{where}: texts must be an object mapping method names to texts")
    for method, text in texts.items():
        if not isinstance(text, str) or not text.strip():
            raise FactpatchError(f"{where}: the text for method {method!r} must be a non-empty string")
    if methods is not None:
        absent = [m for m in methods if m not in texts]
        if absent:
            raise FactpatchError(f"{where}: no text for method{'s' if len(absent) > 1 else ''} {', '.join(absent)}")
        texts = {m: texts[m] for m in methods}
    if len(texts) < 2:
        raise FactpatchError(f"{where}: {len(texts)} text{'' if len(texts) == 1 else 's'}; a ranking needs at least 2")
    return Scenario(str(case_id), record["counterfactual"].strip(), record["prompt"], dict(texts))


def check_unique(scenarios: Sequence[Scenario], wheres: Sequence[str]) -> None:
    """Refuse a case that appears twice: answers are analysed per case."""
    seen: dict[str, str] = {}
    for scenario, where in zip(scenarios, wheres):
        if scenario.case_id in seen:
            raise FactpatchError(f"{where}: case_id {scenario.case_id} repeats {seen[scenario.case_id]}")
        seen[scenario.case_id] = where


def read_jsonl(path: Path, methods: Sequence[str] | None = None) -> list[Scenario]:
    """Read and check every scenario of a JSONL file; blank lines are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise FactpatchError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise FactpatchError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    scenarios: list[Scenario] = []
    wheres: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FactpatchError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
        scenarios.append(parse_scenario(record, where, methods))
        wheres.append(where)
    if not scenarios:
        raise FactpatchError(f"{path}: no scenarios (the file has no JSON lines)")
    check_unique(scenarios, wheres)
    logger.info("read %d scenarios from %s", len(scenarios), path)
    return scenarios


def generate_scenarios(model: str, dataset: str, n: int, methods: Sequence[str], seed: int | None) -> list[Scenario]:
    """Generate the texts with the evaluation code (`factpatch compare`), when it is installed."""
    try:
        from factpatch.evaluation.compare import (
            compare_texts,  # heavy (torch, models): only on this path
        )
    except ImportError as exc:
        raise FactpatchError(
            "--model generation needs factpatch.evaluation.compare (not available); "
            "generate texts with `factpatch compare` and pass --from-jsonl"
        ) from exc
    records: Iterable[Any] = compare_texts(model=model, dataset=dataset, n=n, methods=list(methods), seed=seed)
    scenarios = [parse_scenario(r, f"generated case {i}", methods) for i, r in enumerate(records, start=1)]
    if not scenarios:
        raise FactpatchError(f"{dataset}: no cases to generate texts for")
    check_unique(scenarios, [f"generated case {i}" for i in range(1, len(scenarios) + 1)])
    return scenarios
