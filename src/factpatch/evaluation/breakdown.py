"""A result directory's cases broken down: two sides on the same cases, and a run's cases in blocks.

Means over different cases do not compare well (CounterFact's cases differ far more than the
methods do), so "is A better than B" is answered here on the cases both have scored, by the
paired difference of each metric with its bootstrap 95 % interval (`factpatch eval paired`).
The two sides are two directories (a setting against the default), or two methods of one
directory (a sequential run's methods at one checkpoint: every method there edited the same
cases in the same order).

A sequential run's edits decay as later batches land; the mean over every case hides which ones.
`factpatch eval blocks` gives each block of consecutive positions (the first 500 edits, the next
500, ...) its own means at one checkpoint: how the oldest edits hold against the newest.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import FactpatchError
from .metrics import Estimate, bootstrap, bootstrap_mean
from .run import RESULTS, read_config, result_store


@dataclass(frozen=True)
class Side:
    """One side of a comparison: the per-case metrics of one method in one directory."""

    directory: Path
    method: str
    edits: int | None  # the sequential run's checkpoint these records were scored at (None: a single-edit run)
    metrics: dict[str, dict[str, float]]  # case id -> metric -> value
    positions: dict[str, int]  # case id -> position in the run (the order it was edited in)
    kind: str = "counterfact"  # the dataset's kind: which metrics are the headline ones
    # fact id -> 1.0 still known / 0.0 lost, over the known facts whose subject no edit touched, at
    # this checkpoint (a sequential run's health entry; None where the entry does not name its facts)
    known: dict[str, float] | None = None
    # fact id -> change of the answer's log-probability against the unedited model, over the same
    # facts (health entries from 2026-12-03 on; None before)
    known_logprob: dict[str, float] | None = None

    @property
    def headline(self) -> tuple[str, ...]:
        """The metrics a curve or table leads with (ES/PS/NS; zsRE's three accuracies)."""
        from .curves import CURVE_METRICS

        return CURVE_METRICS.get(self.kind, ())

    @property
    def label(self) -> str:
        at = f" at {self.edits} edits" if self.edits is not None else ""
        return f"{self.directory} {self.method}{at}"


def _records(directory: Path) -> tuple[dict, list[dict]]:
    from .sequential import case_store  # sequential imports this package's run module; import late

    config = read_config(directory)
    sequential = config.get("protocol") == "sequential"
    store = case_store(directory / RESULTS) if sequential else result_store(directory / RESULTS)
    return config, store.load(repair=False)  # read-only: safe beside the run that writes them


def _known(directory: Path, method: str, edits: int) -> tuple[dict[str, float] | None, dict[str, float] | None]:
    """The checkpoint's known facts by fact: kept (1.0 / 0.0), and the change of each answer's
    log-probability; each None where the health entry does not record it."""
    from .health import known_by_fact, known_logprob_by_fact
    from .sequential import HEALTH, health_store

    path = directory / HEALTH
    entries = health_store(path).load(repair=False) if path.is_file() else []
    found = [e for e in entries if e["method"] == method and e["edits"] == edits]
    return (known_by_fact(found[-1]), known_logprob_by_fact(found[-1])) if found else (None, None)


def checkpoints(directory: Path, method: str) -> list[int]:
    """The checkpoints (numbers of edits) at which a sequential run has scored `method`."""
    _, records = _records(Path(directory))
    return sorted({r["edits"] for r in records if r["method"] == method and "edits" in r})


def load_side(directory: Path, method: str, edits: int | None = None, cases: range | None = None) -> Side:
    """`method`'s per-case metrics in `directory`; for a sequential run, at checkpoint `edits`
    (default: its latest), and with `cases` only the cases at those positions."""
    directory = Path(directory)
    config, records = _records(directory)
    if method not in config.get("methods", []):
        raise FactpatchError(f"{directory} has no method {method!r} (it has {', '.join(config.get('methods', []))})")
    rows = [r for r in records if r["method"] == method]
    sequential = config.get("protocol") == "sequential"
    if not sequential and edits is not None:
        raise FactpatchError(f"{directory} is a single-edit run: --edits names a sequential run's checkpoint")
    if sequential:
        scored = sorted({r["edits"] for r in rows})
        if not scored:
            raise FactpatchError(f"{directory} has scored no checkpoint of {method} yet")
        if edits is None:
            edits = scored[-1]
        elif edits not in scored:
            raise FactpatchError(f"{directory} has no {method} checkpoint at {edits} edits "
                                 f"(it has {', '.join(map(str, scored))})")
        rows = [r for r in rows if r["edits"] == edits]
    if cases is not None:
        rows = [r for r in rows if r.get("index") in cases]
        if not rows:
            raise FactpatchError(f"{directory} has no {method} case at positions {cases.start}-{cases.stop - 1}")
    metrics = {r["case_id"]: {k: float(v) for k, v in r["metrics"].items() if isinstance(v, (int, float))}
               for r in rows}
    positions = {r["case_id"]: int(r["index"]) for r in rows if "index" in r}
    known, known_logprob = _known(directory, method, edits) if sequential else (None, None)
    return Side(directory, method, edits, metrics, positions, config.get("dataset", {}).get("kind", "counterfact"),
                known, known_logprob)


# Metrics whose change is judged relative to A (issue 12: generation entropy within 5 % of the
# unedited model's), as the summary's comparison with the unedited model judges them.
RELATIVE = ("fluency",)


@dataclass(frozen=True)
class PairedMetric:
    a: Estimate
    b: Estimate
    b_minus_a: Estimate  # the mean of the per-case differences, and its interval
    relative: Estimate | None = None  # mean(B) / mean(A) - 1, resampled by case (RELATIVE metrics)

    def to_dict(self) -> dict:
        out = {"a": self.a.to_dict(), "b": self.b.to_dict(), "b_minus_a": self.b_minus_a.to_dict()}
        if self.relative is not None:
            out["relative"] = self.relative.to_dict()
        return out


@dataclass(frozen=True)
class Paired:
    a: Side
    b: Side
    cases: int  # scored on both sides
    metrics: dict[str, PairedMetric]
    # the share of known facts kept, fact by fact over the facts both sides checked (their n)
    known: PairedMetric | None = None
    # the change of the known facts' answer log-probabilities (nats), fact by fact likewise
    known_logprob: PairedMetric | None = None

    def to_dict(self) -> dict:
        out = {"a": str(self.a.directory), "b": str(self.b.directory), "method": self.a.method,
               "method_b": self.b.method, "edits": self.a.edits, "edits_b": self.b.edits, "cases": self.cases,
               "metrics": {name: m.to_dict() for name, m in self.metrics.items()}}
        if self.known is not None:
            out["known_kept"] = self.known.to_dict()
        if self.known_logprob is not None:
            out["known_logprob_change"] = self.known_logprob.to_dict()
        return out


def paired(a: Side, b: Side, seed: int = 0) -> Paired:
    """Each metric both sides have, on the cases both have scored: A's and B's means and B − A,
    each with its bootstrap 95 % interval (the difference resampled by case, so what the cases
    share cancels). A metric measured on a sample of the cases only (generation entropy: the
    first few edited cases) is compared on the cases where both sides have it, its estimates'
    `n` saying how many; RELATIVE metrics also get mean(B) / mean(A) − 1."""
    shared = [case for case in a.metrics if case in b.metrics]
    if not shared:
        raise FactpatchError(f"{a.label} and {b.label} share no case")
    names = list(dict.fromkeys(name for c in shared for name in a.metrics[c] if name in b.metrics[c]))
    out = {name: _paired_values({c: a.metrics[c][name] for c in shared if name in a.metrics[c]},
                                {c: b.metrics[c][name] for c in shared if name in b.metrics[c]},
                                name in RELATIVE, seed)
           for name in names}
    return Paired(a, b, len(shared), out, _paired_values(a.known or {}, b.known or {}, False, seed),
                  _paired_values(a.known_logprob or {}, b.known_logprob or {}, False, seed))


def _paired_values(a: dict[str, float], b: dict[str, float], relative: bool, seed: int) -> PairedMetric | None:
    """A's and B's means and B − A (and with `relative` mean(B) / mean(A) − 1) over the keys both
    have, resampled together; None where they share none."""
    shared = [k for k in a if k in b]
    if not shared:
        return None
    first, second = [a[k] for k in shared], [b[k] for k in shared]
    return PairedMetric(bootstrap_mean(first, seed=seed), bootstrap_mean(second, seed=seed),
                        bootstrap_mean([y - x for x, y in zip(first, second)], seed=seed),
                        bootstrap([second, first], lambda mb, ma: mb / ma - 1.0, seed=seed) if relative else None)


def compare_sides(dir_a: Path, method_a: str, dir_b: Path, method_b: str, edits: int | None = None,
                  cases: range | None = None) -> Paired:
    """`paired` of two directories' methods. `edits` names the sequential sides' checkpoint (a
    single-edit run has one record a case); by default, where both sides are sequential runs, the
    latest checkpoint both have scored."""
    at_a, at_b = checkpoints(dir_a, method_a), checkpoints(dir_b, method_b)
    if edits is None and at_a and at_b:
        common = sorted(set(at_a) & set(at_b))
        if not common:
            raise FactpatchError(f"{method_a} in {dir_a} and {method_b} in {dir_b} share no checkpoint")
        edits = common[-1]
    return paired(load_side(dir_a, method_a, edits if at_a else None, cases),
                  load_side(dir_b, method_b, edits if at_b else None, cases))


@dataclass(frozen=True)
class Block:
    first: int  # positions first..last, both included
    last: int
    metrics: dict[str, Estimate]


def blocks(side: Side, size: int, seed: int = 0) -> list[Block]:
    """The side's cases in blocks of `size` consecutive positions (edit order), each metric's mean
    and 95 % interval per block; a block none of whose cases was scored is left out."""
    if size < 1:
        raise FactpatchError(f"a block holds at least one case, not {size}")
    if len(side.positions) < len(side.metrics):
        raise FactpatchError(f"{side.directory}'s records do not say the cases' positions: blocks need them")
    by_block: dict[int, list[str]] = {}
    for case, position in side.positions.items():
        by_block.setdefault(position // size, []).append(case)
    out = []
    for number in sorted(by_block):
        cases = by_block[number]
        names = [n for n in side.metrics[cases[0]] if all(n in side.metrics[c] for c in cases)]
        out.append(Block(number * size, number * size + size - 1,
                         {n: bootstrap_mean([side.metrics[c][n] for c in cases], seed=seed) for n in names}))
    return out


def blocks_csv(side: Side, rows: list[Block]) -> str:
    names = list(dict.fromkeys(n for block in rows for n in block.metrics))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "edits", "first", "last", "cases"]
                    + [f"{n}{suffix}" for n in names for suffix in ("", "_lo", "_hi")])
    for block in rows:
        cases = next(iter(block.metrics.values())).n if block.metrics else 0
        values = []
        for n in names:
            e = block.metrics.get(n)
            values += [f"{e.mean:.6g}", f"{e.lo:.6g}", f"{e.hi:.6g}"] if e else ["", "", ""]
        writer.writerow([side.method, "" if side.edits is None else side.edits, block.first, block.last, cases] + values)
    return buffer.getvalue()


def blocks_text(side: Side, rows: list[Block], size: int) -> str:
    """The blocks as lines to read: a heading, then each block's headline means and intervals."""
    # a single-edit run edits every case on the unedited model: its blocks are the file's order only
    order = "oldest edits first" if side.edits is not None else "in the dataset's order (each case edited alone)"
    lines = [f"{side.label}: {len(side.metrics)} cases in {len(rows)} block(s) of {size}, {order}"]
    for block in rows:
        n = next(iter(block.metrics.values())).n if block.metrics else 0
        means = "   ".join(f"{name} {estimate_text(block.metrics[name])}" for name in side.headline
                           if name in block.metrics)
        lines.append(f"  {block.first}-{block.last} ({n}): {means}")
    return "\n".join(lines)


def estimate_text(e: Estimate, scale: float = 100.0, signed: bool = False, digits: int = 1) -> str:
    """"85.9 (84.3–87.4)": a mean and its interval, ×100 as the docs give shares."""
    f = f"{'+' if signed else ''}.{digits}f"
    return f"{scale * e.mean:{f}} ({scale * e.lo:{f}} to {scale * e.hi:{f}})"
