"""CSV of all rankings, one row per rank given: the admin page's export and `analyze`'s rankings.csv."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import astuple, fields
from typing import TextIO

from factpatch.study.db import RankingRow

COLUMNS = tuple(f.name for f in fields(RankingRow))


def spreadsheet_safe(value: object) -> object:
    """Keep a spreadsheet from running a cell as a formula (a counterfactual could start with '=')."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def write_rankings_csv(rows: Iterable[RankingRow], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([spreadsheet_safe(v) for v in astuple(row)])
