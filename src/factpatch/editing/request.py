"""Edit requests: (s, r, o → o*), one per fact to rewrite, and the JSONL files that hold many.

A request file has one JSON object a line:

    {"prompt": "{} is located in the city of", "subject": "Eiffel Tower", "target": "Rome"}

`target` may also be spelt `target_new`; `target_true` (the object being replaced) is optional.
Blank lines are skipped. Every problem is reported as `FILE:LINE: what is wrong`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import FactpatchError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EditRequest:
    """(s, r, o → o*): `prompt` is the relation template with "{}" where the subject goes."""

    prompt: str
    subject: str
    target_new: str
    target_true: str | None = None

    def __post_init__(self):
        if not self.subject.strip():
            raise FactpatchError("subject is empty")
        if self.prompt.count("{}") != 1:
            raise FactpatchError(f"prompt must contain '{{}}' exactly once where the subject goes: {self.prompt!r}")
        if not self.target_new.strip():
            raise FactpatchError("target is empty")
        if self.target_true is not None and self.target_new.strip() == self.target_true.strip():
            raise FactpatchError(f"target {self.target_new!r} equals the true object: nothing to edit")

    @classmethod
    def from_text(cls, prompt: str, subject: str, target_new: str, target_true: str | None = None) -> EditRequest:
        """Accept a template with "{}" or a prompt that contains the subject literally."""
        if not prompt.strip():
            raise FactpatchError("prompt is empty")
        if "{}" not in prompt:
            if not subject or subject not in prompt:
                raise FactpatchError(
                    f"subject {subject!r} is not in the prompt {prompt!r} (write '{{}}' where the subject goes)"
                )
            prompt = prompt.replace(subject, "{}", 1)
        return cls(prompt, subject, target_new, target_true)

    @property
    def text(self) -> str:
        return self.prompt.replace("{}", self.subject)

    def to_dict(self) -> dict:
        """The request as stored in patch metadata and result records (one spelling everywhere)."""
        return {
            "prompt": self.prompt,
            "subject": self.subject,
            "target_new": self.target_new,
            "target_true": self.target_true,
        }

    @classmethod
    def from_dict(cls, record: dict) -> EditRequest:
        return cls(record["prompt"], record["subject"], record["target_new"], record.get("target_true"))


def conflicting(requests: Sequence[EditRequest]) -> list[tuple[EditRequest, EditRequest]]:
    """Pairs (first, later) of requests that ask for two targets for one (subject, prompt)."""
    first: dict[tuple[str, str], EditRequest] = {}
    pairs = []
    for request in requests:
        key = (request.subject, request.prompt)
        if key in first and first[key].target_new != request.target_new:
            pairs.append((first[key], request))
        first.setdefault(key, request)
    return pairs


def check_batch(requests: Sequence[EditRequest], where: str = "the batch", allow_conflicts: bool = False) -> None:
    """A batch may repeat a fact but not ask for two different targets for one (subject, prompt).

    User input is held to that where it is read (request files, `api.edit_many`). Editors pass
    `allow_conflicts`: a data set's batch may hold such cases (CounterFact in file order does,
    e.g. "Santo Domingo" twin city Miami and Alexandria in cases 1300–1399), and the reference
    protocol edits them together, the update writing a compromise of the two; they are logged."""
    if not requests:
        raise FactpatchError(f"{where}: no edit requests")
    pairs = conflicting(requests)
    if pairs and not allow_conflicts:
        a, b = pairs[0]
        raise FactpatchError(
            f"{where}: subject {a.subject!r} with prompt {a.prompt!r} is asked for two targets "
            f"({a.target_new!r} and {b.target_new!r})"
        )
    for a, b in pairs:
        logger.warning("%s: %r with prompt %r is asked for two targets (%r and %r); both are written",
                       where, a.subject, a.prompt, a.target_new, b.target_new)


def parse_request_line(line: str, where: str) -> EditRequest:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise FactpatchError(f"{where}: not JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise FactpatchError(f"{where}: expected a JSON object with prompt, subject and target")
    target = record.get("target", record.get("target_new"))
    values = {"prompt": record.get("prompt"), "subject": record.get("subject"), "target": target}
    for name, value in values.items():
        if not isinstance(value, str) or not value.strip():
            raise FactpatchError(f"{where}: {name!r} is missing or empty")
    true = record.get("target_true")
    if true is not None and not isinstance(true, str):
        raise FactpatchError(f"{where}: 'target_true' must be a string")
    try:
        return EditRequest.from_text(values["prompt"], values["subject"], values["target"], true)
    except FactpatchError as exc:
        raise FactpatchError(f"{where}: {exc}") from None


def read_requests(path: Path) -> list[EditRequest]:
    """Every request of a JSONL file, checked line by line and as one batch."""
    path = Path(path)
    if not path.is_file():
        raise FactpatchError(f"request file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise FactpatchError(f"{path}: not a UTF-8 text file") from None
    requests = [parse_request_line(line, f"{path}:{number}") for number, line in enumerate(lines, 1) if line.strip()]
    check_batch(requests, str(path))
    return requests


def requests_meta(requests: Iterable[EditRequest]) -> list[dict]:
    return [r.to_dict() for r in requests]
