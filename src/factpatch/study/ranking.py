"""What a rater is asked, and the check of a submitted ranking.

A rater ranks the texts of one scenario twice, once per criterion. Form fields are named
`<criterion>-<label>` (`consistency-A`) and hold a rank, 1 = best. A valid ranking gives every
text shown exactly one rank and no two texts the same rank; anything else is refused whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

LABELS = "ABCDEFGHIJ"  # texts are shown under letters; at most this many texts a scenario
MAX_TEXTS = len(LABELS)


@dataclass(frozen=True)
class Criterion:
    key: str  # form field prefix and database value
    title: str
    question: str
    best: str  # what rank 1 means


CRITERIA_INFO = (
    Criterion(
        "consistency",
        "Consistency",
        "How consistent is each text with the counterfactual, taken as true?",
        "most consistent",
    ),
    Criterion(
        "fluency",
        "Fluency",
        "How fluent and natural is the language of each text, whatever it says?",
        "most fluent",
    ),
)
CRITERIA = tuple(c.key for c in CRITERIA_INFO)


class RankingInvalid(ValueError):
    """A submitted ranking with missing, unknown, out-of-range or tied ranks; `errors` says which."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = tuple(errors)


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def texts(labels: Sequence[str]) -> str:
    """["A"] -> "text A"; ["A", "B", "C"] -> "texts A, B and C"."""
    if len(labels) == 1:
        return f"text {labels[0]}"
    return f"texts {', '.join(labels[:-1])} and {labels[-1]}"


def parse_ranking(form: Mapping[str, str], labels: Sequence[str]) -> dict[str, dict[str, int]]:
    """Turn form fields into {criterion: {label: rank}} for the texts `labels`, or raise RankingInvalid.

    Fields that are not `<criterion>-<letter>` (the CSRF token, the position) are ignored.
    """
    n = len(labels)
    errors: list[str] = []
    result: dict[str, dict[str, int]] = {}
    for criterion in CRITERIA_INFO:
        prefix = f"{criterion.key}-"
        unknown = sorted(
            key[len(prefix):] for key in form if key.startswith(prefix) and key[len(prefix):] not in labels
        )
        if unknown:
            errors.append(f"{criterion.title}: there is no text {', '.join(unknown)}.")
        ranks: dict[str, int] = {}
        missing = [label for label in labels if not str(form.get(prefix + label, "")).strip()]
        if missing:
            errors.append(f"{criterion.title}: give {texts(missing)} a rank.")
        for label in labels:
            raw = str(form.get(prefix + label, "")).strip()
            if not raw:
                continue
            # ASCII digits, and few of them, before int(): int() takes other scripts' digits and
            # refuses strings of over 4300 digits with an error, not a False.
            if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(MAX_TEXTS))) or not 1 <= int(raw) <= n:
                errors.append(f"{criterion.title}: text {label} has rank {raw[:10]!r}; ranks go from 1 to {n}.")
                continue
            ranks[label] = int(raw)
        holders: dict[int, list[str]] = {}
        for label, rank in ranks.items():
            holders.setdefault(rank, []).append(label)
        for rank, tied in sorted(holders.items()):
            if len(tied) > 1:
                errors.append(
                    f"{criterion.title}: {texts(tied)} are {'both' if len(tied) == 2 else 'all'} ranked "
                    f"{ordinal(rank)}; every text needs a different rank."
                )
        result[criterion.key] = ranks
    if errors:
        raise RankingInvalid(errors)
    return result
