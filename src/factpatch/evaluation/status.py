"""How far a result directory has got: `factpatch eval status DIR`.

Long runs (a sequential run of 2,000 edits is hours of CPU, often across several sessions) are
resumed by rerunning their command; this says what that command still has to do before it is
run. It reads the files a run writes — config.json, batches.jsonl, health.jsonl, results.jsonl —
and writes nothing, so it can be used beside the run it describes: a last line that run is
writing at that moment is left out, not cut (`core.runstore.RunStore.load(repair=False)`).

For a sequential run, per method: the batches done of those planned, the checkpoints scored and
the means over the cases edited so far at the latest of them (with known facts kept and
perplexity), what the batches left take at the pace of the last few, and the case scorings the
checkpoints left need with their time at the run's scoring pace (each case record says what its
scoring took; a run whose records predate that has the count without the time), and the
checkpoints scored on batches that a resumed run rebuilt from their saved z with other patch ids
than their records (another machine's last bits: the health entry lists the stack it scored). For a
single-edit run: the records per method against the cases selected, and the time left at the
median pace per case. Either way, whether a process is writing the run now (it holds the run's
lock, core.runstore.RunLock) or it has stopped and waits for its command to be rerun.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import FactpatchError
from ..core.runstore import being_written
from .run import CONFIG, RESULTS, read_config, result_store
from .sequential import BATCHES, HEALTH, batch_store, case_store, checkpoints_of, health_store

RECENT_BATCHES = 5  # the pace of the last few batches: a run slows as its stack grows (AlphaEdit's K_p)
LATEST_METRICS = ("ES", "PS", "NS", "efficacy", "paraphrase", "specificity")


@dataclass(frozen=True)
class MethodProgress:
    method: str
    done: int  # sequential: batches written; single-edit: cases scored
    planned: int  # batches (n / batch size, rounded up) or cases selected
    checkpoints_scored: tuple[int, ...] = ()  # sequential: edit counts whose scoring is complete
    checkpoints_planned: tuple[int, ...] = ()
    latest: dict | None = None  # at the latest scored checkpoint: {"edits", metric means, "known_share",
    #                             "known_logprob_change_mean" (entries from 2026-12-03 on), "perplexity"}
    seconds_each: float | None = None  # median seconds a batch (last RECENT_BATCHES) or a case
    cases_to_score: int = 0  # sequential: case scorings the checkpoints left need
    scoring_seconds_left: float | None = None  # their time (and the health measures') at the run's pace so far
    untimed_generations: int = 0  # of those, cases whose texts are generated at a pace not timed yet (not in the time)
    # checkpoint -> the batches whose patch, as that checkpoint's health entry lists the stack, is not
    # the one the batch record holds: rebuilt from saved z by a resumed run on another machine or code
    # version (last bits differ), so those scores are of slightly different weights than the records'
    rebuilt_with_drift: dict[int, tuple[int, ...]] = dataclasses.field(default_factory=dict)

    @property
    def complete(self) -> bool:
        scored = set(self.checkpoints_scored) >= set(self.checkpoints_planned)
        return self.done >= self.planned and scored

    @property
    def seconds_left(self) -> float | None:
        """The batches (cases) left at the recent pace; None when there is no pace to go by."""
        left = max(self.planned - self.done, 0)
        if left == 0:
            return 0.0
        return None if self.seconds_each is None else left * self.seconds_each


@dataclass(frozen=True)
class RunProgress:
    out_dir: Path
    protocol: str  # "sequential" or "single"
    model: str
    dataset: str
    n: int | None
    batch_size: int | None
    methods: tuple[MethodProgress, ...]
    device: str = "cpu"  # where the run edits (config.json names it only off the CPU)
    running: bool = False  # a process is writing the directory now (core.runstore.being_written)

    @property
    def complete(self) -> bool:
        return all(m.complete for m in self.methods)

    def to_dict(self) -> dict:
        return {
            "out_dir": str(self.out_dir), "protocol": self.protocol, "model": self.model,
            "dataset": self.dataset, "n": self.n, "batch_size": self.batch_size, "device": self.device,
            "complete": self.complete, "running": self.running,
            "methods": [{**m.__dict__, "checkpoints_scored": list(m.checkpoints_scored),
                         "checkpoints_planned": list(m.checkpoints_planned), "complete": m.complete,
                         "seconds_left": m.seconds_left,
                         "rebuilt_with_drift": {str(e): list(b) for e, b in m.rebuilt_with_drift.items()}}
                        for m in self.methods],
        }


def run_progress(out_dir: Path) -> RunProgress:
    """What the run in `out_dir` has done and has left (see the module docstring)."""
    out_dir = Path(out_dir)
    config = read_config(out_dir)
    sequential = config.get("protocol") == "sequential"
    # the fields every run writes, checked here so that a missing one is this one line, not a traceback
    needed = {"model": str, "methods": list, **({"n": int, "batch_size": int} if sequential else {})}
    if (any(not isinstance(config.get(key), kind) for key, kind in needed.items())
            or not isinstance(config["dataset"].get("name"), str)):
        raise FactpatchError(f"{out_dir / CONFIG} is not the configuration of a factpatch eval run")
    progress = _sequential_progress(out_dir, config) if sequential else _single_progress(out_dir, config)
    return dataclasses.replace(progress, running=being_written(out_dir))


def _sequential_progress(out_dir: Path, config: dict) -> RunProgress:
    n, batch_size = config["n"], config["batch_size"]
    planned_batches = math.ceil(n / batch_size)
    checkpoints = tuple(checkpoints_of(n, batch_size, config.get("checkpoint_every")))
    batches = batch_store(out_dir / BATCHES).load(repair=False)
    health = health_store(out_dir / HEALTH).load(repair=False)
    records = case_store(out_dir / RESULTS).load(repair=False)
    methods = []
    for method in config["methods"]:
        mine = {b["batch"]: b for b in batches if b["method"] == method and b["batch"] < planned_batches}
        # a checkpoint is scored when its health line is written: after every case record of it
        scored = tuple(sorted({h["edits"] for h in health if h["method"] == method and h["edits"] in checkpoints}))
        latest = None
        if scored:
            edits = scored[-1]
            rows = [r["metrics"] for r in records if r["method"] == method and r["edits"] == edits]
            latest = {"edits": edits, "cases": len(rows)}
            for name in LATEST_METRICS:
                values = [m[name] for m in rows if name in m]
                if values:
                    latest[name] = sum(values) / len(values)
            entry = next(h for h in health if h["method"] == method and h["edits"] == edits)
            latest.update({k: entry[k] for k in ("known_share", "known_logprob_change_mean", "perplexity")
                           if entry.get(k) is not None})
        recent = [mine[b]["seconds"] for b in sorted(mine)[-RECENT_BATCHES:] if mine[b].get("seconds") is not None]
        pace = statistics.median(recent) if recent else None
        left = [e for e in checkpoints if e not in scored]
        cases, seconds, untimed = _scoring_left(method, left, records, health, config)
        methods.append(MethodProgress(method, len(mine), planned_batches, scored, checkpoints, latest, pace,
                                      cases, seconds, untimed, _rebuilt_with_drift(mine, health, method)))
    return RunProgress(out_dir, "sequential", config["model"], config["dataset"]["name"], n, batch_size,
                       tuple(methods), config.get("device", "cpu"))


def _rebuilt_with_drift(recorded: dict[int, dict], health: list[dict], method: str) -> dict[int, tuple[int, ...]]:
    """Checkpoint -> the batches of the stack its health entry names whose patch id differs from the
    batch's record (entries and records without ids are passed over)."""
    drift = {}
    for entry in health:
        if entry["method"] != method or not isinstance(entry.get("patches"), list):
            continue
        differ = tuple(b for b, patch in enumerate(entry["patches"])
                       if recorded.get(b, {}).get("patch") not in (None, patch))
        if differ:
            drift[entry["edits"]] = differ
    return drift


def _spans(numbers: tuple[int, ...]) -> str:
    """(0, 1, 2, 5) -> "0–2, 5"."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(f"{a}" if a == b else f"{a}–{b}" for a, b in spans)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _scoring_left(method: str, left: list[int], records: list[dict], health: list[dict],
                  config: dict) -> tuple[int, float | None, int]:
    """The case scorings the checkpoints `left` still need, their time at the run's pace, and how
    many of them generate texts at a pace no record has timed yet (left out of the time).

    Scoring a case costs the same whichever method edited the model, so the pace is the median over
    every timed record of the run (records written before scorings were timed have none: then the
    time is unknown); a case whose texts are generated has a pace of its own. `none` scores each
    case once, and its known facts are not checked again (sequential._checkpoint)."""
    mine = [r for r in records if r["method"] == method]
    timed = [r for r in records if r.get("eval_seconds") is not None]
    scoring_pace = _median([r["eval_seconds"] for r in timed if "texts" not in r])
    generation_pace = _median([r["eval_seconds"] for r in timed if "texts" in r])
    # known facts are checked again after every edited method's checkpoint, never after none's
    alike = ("none",) if method == "none" else tuple({h["method"] for h in health} - {"none", "unedited"})
    health_pace = _median([h["seconds"] for h in health if h["method"] in alike and h.get("seconds") is not None]) or 0.0
    n = config["n"]
    generate = set()  # cases whose texts the final checkpoint still has to generate
    if left and left[-1] == n:
        have_texts = {r["index"] for r in mine if r["edits"] == n and "texts" in r}
        generate = set(range(min(config.get("generation_cases", 0), n))) - have_texts
    plain = 0
    scored_once = {r["index"] for r in mine}
    for edits in left:
        if method == "none":  # a case scored at an earlier checkpoint is recorded again, not scored
            todo = set(range(edits)) - scored_once
            scored_once |= todo
        else:
            todo = set(range(edits)) - {r["index"] for r in mine if r["edits"] == edits}
        plain += len(todo - generate) if edits == n else len(todo)
    cases = plain + len(generate)
    if scoring_pace is None:
        return cases, None, 0
    seconds = plain * scoring_pace + len(left) * health_pace
    if generation_pace is None:
        return cases, seconds, len(generate)
    return cases, seconds + len(generate) * generation_pace, 0


def _single_progress(out_dir: Path, config: dict) -> RunProgress:
    n_cases = config["dataset"].get("n_cases")
    if n_cases is None:
        raise FactpatchError(f"{out_dir}/config.json does not say how many cases its data set has")
    selected = list(range(n_cases))[: config.get("n")]
    shard = config.get("shard")
    if shard:
        selected = selected[shard[0]:: shard[1]]
    records = result_store(out_dir / RESULTS).load(repair=False)
    methods = []
    for method in config["methods"]:
        rows = [r for r in records if r["method"] == method]
        seconds = [r["edit_seconds"] + r["eval_seconds"] for r in rows if "edit_seconds" in r and "eval_seconds" in r]
        done = len({r["case_id"] for r in rows})
        methods.append(MethodProgress(method, done, len(selected),
                                      seconds_each=statistics.median(seconds) if seconds else None))
    return RunProgress(out_dir, "single", config["model"], config["dataset"]["name"], config.get("n"), None,
                       tuple(methods), config.get("device", "cpu"))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def progress_lines(progress: RunProgress) -> list[str]:
    """The report `factpatch eval status` prints."""
    model = progress.model if progress.device == "cpu" else f"{progress.model} ({progress.device})"
    if progress.protocol == "sequential":
        head = (f"{progress.out_dir}: {model} on {progress.dataset}, {progress.n:,} sequential edits "
                f"in batches of {progress.batch_size}")
    else:
        head = f"{progress.out_dir}: {model} on {progress.dataset}, single edits"
    lines = [head]
    for m in progress.methods:
        if progress.protocol == "single":
            state = "complete" if m.complete else f"{_duration(m.seconds_left)} left at {m.seconds_each or 0:.1f} s a case"
            lines.append(f"  {m.method}: {m.done}/{m.planned} cases; {state}")
            continue
        scored = f" ({', '.join(f'{e:,}' for e in m.checkpoints_scored)} edits)" if m.checkpoints_scored else ""
        line = (f"  {m.method}: {m.done}/{m.planned} batches; {len(m.checkpoints_scored)} of "
                f"{len(m.checkpoints_planned)} checkpoints scored{scored}")
        if m.latest is not None:
            means = " / ".join(f"{100 * m.latest[k]:.1f}" for k in LATEST_METRICS if k in m.latest)
            names = "/".join(k for k in LATEST_METRICS if k in m.latest)
            line += f"; at {m.latest['edits']:,} edits {names} {means}"
            if "known_share" in m.latest:
                line += f", known facts kept {100 * m.latest['known_share']:.1f} %"
            if "known_logprob_change_mean" in m.latest:
                line += f" (their answers {m.latest['known_logprob_change_mean']:+.2f} nats)"
            if "perplexity" in m.latest:
                line += f", perplexity {m.latest['perplexity']:.2f}"
        if m.complete:
            line += "; complete"
        else:
            if m.done < m.planned:
                pace = "" if m.seconds_each is None else f" at {m.seconds_each:.0f} s a batch"
                line += f"; batches left: {_duration(m.seconds_left)}{pace}, then"
            else:
                line += "; every batch written;"
            scoring = ("unknown time (no scoring of this run was timed yet)" if m.scoring_seconds_left is None
                       else _duration(m.scoring_seconds_left))
            if m.untimed_generations:
                scoring += f", plus {m.untimed_generations:,} cases' texts, whose generation this run has not timed yet"
            line += f" scoring {m.cases_to_score:,} cases at the checkpoints left: {scoring}"
        lines.append(line)
        if m.rebuilt_with_drift:
            batches = tuple(sorted({b for bs in m.rebuilt_with_drift.values() for b in bs}))
            at = ", ".join(f"{e:,}" for e in sorted(m.rebuilt_with_drift))
            which = f"batch {batches[0]}" if len(batches) == 1 else f"batches {_spans(batches)}"
            lines.append(f"    scored at {at} edits on {which} as rebuilt from the saved z, with other patch ids than "
                         "the records (another machine or version: the last bits of the weights differ)")
    if progress.complete:
        lines.append("complete: the summaries are final")
    elif progress.running:
        lines.append("running: a process is writing it now")
    else:
        lines.append("stopped: rerun the run's command to continue it (it resumes where it stopped)")
    return lines
