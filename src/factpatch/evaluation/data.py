"""Evaluation data sets: CounterFact (both layouts), zsRE (MEND layout) and the built-in suite.

Every data set becomes a list of `Case`s — one edit request plus the prompts its metrics read:

    CounterFact  the rewrite prompt, paraphrase prompts, neighbourhood prompts (other subjects
                 whose true object is o^c), attribute prompts (other subjects whose true object
                 is o*: the consistency reference) and generation prompts.
    zsRE         the question (rewrite), its paraphrase, and one unrelated NQ question with its
                 own answer (specificity).

A data set is named by a spec string, as on the command line:

    counterfact:PATH   original records (`requested_rewrite`, `paraphrase_prompts`, ...) or the
                       flattened layout (`prompt`, `subject`, `target_new`, `ground_truth`,
                       `rephrase_prompt`, `locality_prompt`, ...), JSON list or JSONL
    zsre:PATH          MEND layout (`src`, `subject`, `alt`, `answers`, `rephrase`, `loc`, `loc_ans`),
                       read by one of two conventions (`zsre_target`, CLI `--zsre-target`):
                         paper  (default) the ROME paper's (kmeng01/rome dsets/zsre.py): the edit's
                                target is `answers[0]`, and "?" is appended to the NQ question
                                `loc` before its answer is scored
                         alt    later toolkits' (MEND, EasyEdit): the target is `alt` (answers[0]
                                becomes the true object when it differs), `loc` as written
    builtin            the suite shipped in the package: 300 CounterFact cases (original layout)
                       that every embedded model knows — before editing, each prefers the true
                       object to the new one on the rewrite prompt — drawn from records 5000+ of
                       the flattened CounterFact file, at most 12 per relation template, with
                       neighbourhood and attribute prompts gathered from the whole file
                       (scripts/build_suite.py says exactly how)

The flattened CounterFact layout carries no attribute or generation prompts; they are derived
(`_derive_flat`): attribute prompts are the rewrite prompts of other records whose true object
is this record's o* (same relation template first, then any other); generation prompts are the
paraphrase and "{subject} is" — not the rewrite prompt itself, whose continuation the edit was
trained on (the paper's CounterFact generation prompts are other sentences about the subject).
An original-layout record without generation prompts gets the same derived ones. Which prompts a
case uses, and where they came from, is in `Case.generation_prompts` / `generation_source`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..core.errors import FactpatchError
from ..editing.request import EditRequest

logger = logging.getLogger(__name__)

KINDS = ("counterfact", "zsre")
# How zsRE records become edits (module docstring): "paper" = kmeng01/rome dsets/zsre.py, the default;
# "alt" = the convention of MEND and EasyEdit.
ZSRE_TARGETS = ("paper", "alt")
BUILTIN_FILE = "counterfact-builtin.json"  # in factpatch/data/, original CounterFact layout
MAX_DERIVED_ATTRIBUTES = 10


@dataclass(frozen=True)
class Probe:
    """A prompt whose expected continuation is `answer` (neighbourhood and attribute prompts)."""

    prompt: str
    answer: str


@dataclass(frozen=True)
class Case:
    """One edit request and the prompts its metrics are computed on."""

    case_id: str
    kind: str  # "counterfact" | "zsre"
    request: EditRequest
    paraphrase_prompts: tuple[str, ...] = ()
    neighborhood: tuple[Probe, ...] = ()  # CounterFact: answer = o^c; zsRE: the NQ answer
    attribute_prompts: tuple[str, ...] = ()  # statements about subjects whose true object is o*
    generation_prompts: tuple[str, ...] = ()
    generation_source: str = "dataset"  # "dataset": the record's own; "derived": made here (docstring)
    relation: str | None = None

    @property
    def counterfactual(self) -> str:
        """The edit as a sentence, e.g. "The Eiffel Tower is located in Rome"."""
        text = self.request.text
        return text + ("" if text.endswith(" ") else " ") + self.request.target_new


@dataclass
class Dataset:
    """Cases read from one file, with what identifies the file (for refusing mixed result dirs)."""

    name: str  # the spec as given, e.g. "counterfact:data/cf.json"
    kind: str
    layout: str  # "original", "flattened", "mend", "builtin"
    cases: list[Case]
    sha256: str
    idf_texts: list[str] = field(default_factory=list)  # every statement in the file (TF-IDF fit)
    zsre_target: str | None = None  # zsRE only: "paper" or "alt" (ZSRE_TARGETS)

    def identity(self) -> dict:
        identity = {"kind": self.kind, "layout": self.layout, "sha256": self.sha256, "n_cases": len(self.cases)}
        if self.zsre_target is not None:  # the same file read by two conventions is two data sets
            identity["zsre_target"] = self.zsre_target
        return identity

    def select(self, n: int | None = None, shard: tuple[int, int] | None = None) -> list[Case]:
        """The first `n` cases in file order, then every k-th of them from i for shard (i, k)."""
        if n is not None and n < 1:
            raise FactpatchError(f"--n must be at least 1, got {n}")
        cases = self.cases[:n] if n is not None else list(self.cases)
        if shard is not None:
            index, count = shard
            cases = cases[index::count]
        return cases

    def find(self, case_id: str) -> Case:
        for case in self.cases:
            if case.case_id == str(case_id):
                return case
        raise FactpatchError(f"no case {case_id!r} in {self.name}")


# ----------------------------------------------------------------------------- specs and files


def parse_spec(spec: str) -> tuple[str, Path | None]:
    """("counterfact" | "zsre" | "builtin", path) from "counterfact:PATH", "zsre:PATH" or "builtin"."""
    spec = (spec or "").strip()
    if spec == "builtin":
        return "builtin", None
    kind, sep, path = spec.partition(":")
    if not sep or kind not in KINDS or not path.strip():
        raise FactpatchError(f"bad dataset {spec!r}: use counterfact:PATH, zsre:PATH or builtin")
    return kind, Path(path.strip()).expanduser()


def _read_records(path: Path) -> tuple[list, str]:
    if not path.exists():
        raise FactpatchError(f"dataset file not found: {path}")
    if not path.is_file():
        raise FactpatchError(f"dataset path is not a file: {path}")
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FactpatchError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            records = json.loads(text)
        elif stripped.startswith("{"):
            try:  # one JSON object: a data set wrapped as {"data": [...]} or a JSONL file
                whole = json.loads(text)
                records = whole.get("data") if isinstance(whole, dict) and isinstance(whole.get("data"), list) else [whole]
            except json.JSONDecodeError:
                records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            raise FactpatchError(f"{path}: not a JSON list or JSON lines of records")
    except json.JSONDecodeError as exc:
        raise FactpatchError(f"{path}: malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    if not records:
        raise FactpatchError(f"{path}: the data set is empty")
    if not all(isinstance(r, dict) for r in records):
        raise FactpatchError(f"{path}: every record must be a JSON object")
    return records, digest


ORIGINAL_KEYS = ("requested_rewrite", "paraphrase_prompts", "neighborhood_prompts")
FLAT_KEYS = ("prompt", "subject", "target_new", "ground_truth", "rephrase_prompt", "locality_prompt")
MEND_KEYS = ("src", "subject", "alt", "answers", "rephrase", "loc", "loc_ans")


def detect_layout(record: dict) -> str:
    if all(k in record for k in ORIGINAL_KEYS):
        return "original"
    if all(k in record for k in FLAT_KEYS):
        return "flattened"
    if all(k in record for k in MEND_KEYS):
        return "mend"
    return "unknown"


def _require(record: dict, keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if k not in record]
    if missing:
        raise FactpatchError(f"{where}: missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")


def _string(value, where: str, name: str) -> str:
    if isinstance(value, dict) and "str" in value:  # CounterFact's {"str": ..., "id": ...}
        value = value["str"]
    if not isinstance(value, str) or not value.strip():
        raise FactpatchError(f"{where}: {name} must be a non-empty string")
    return value


def _strings(value, where: str, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FactpatchError(f"{where}: {name} must be a list of strings")
    return tuple(v for v in value if v.strip())


def _request(prompt: str, subject: str, new: str, true: str | None, where: str) -> EditRequest:
    try:
        return EditRequest.from_text(prompt, subject, new, true)
    except FactpatchError as exc:
        raise FactpatchError(f"{where}: {exc}") from None


def derived_generation_prompts(subject: str, paraphrases: tuple[str, ...]) -> tuple[str, ...]:
    """Generation prompts for records that carry none: the paraphrases and "{subject} is"."""
    return tuple(dict.fromkeys([*paraphrases, f"{subject} is"]))


def _original_case(record: dict, index: int, where: str, zsre_target: str | None = None) -> Case:
    rewrite = record["requested_rewrite"]
    if not isinstance(rewrite, dict):
        raise FactpatchError(f"{where}: requested_rewrite must be an object")
    _require(rewrite, ("prompt", "subject", "target_new", "target_true"), f"{where} requested_rewrite")
    subject = _string(rewrite["subject"], where, "subject")
    new = _string(rewrite["target_new"], where, "target_new")
    true = _string(rewrite["target_true"], where, "target_true")
    request = _request(_string(rewrite["prompt"], where, "prompt"), subject, new, true, where)
    neighborhood = _strings(record["neighborhood_prompts"], where, "neighborhood_prompts")
    attributes = _strings(record.get("attribute_prompts", []), where, "attribute_prompts")
    paraphrases = _strings(record["paraphrase_prompts"], where, "paraphrase_prompts")
    generation = _strings(record.get("generation_prompts", []), where, "generation_prompts")
    return Case(
        case_id=str(record.get("case_id", index)),
        kind="counterfact",
        request=request,
        paraphrase_prompts=paraphrases,
        neighborhood=tuple(Probe(p, true) for p in neighborhood),
        attribute_prompts=attributes,
        generation_prompts=generation or derived_generation_prompts(subject, paraphrases),
        generation_source="dataset" if generation else "derived",
        relation=rewrite.get("relation_id"),
    )


def _flat_case(record: dict, index: int, where: str, zsre_target: str | None = None) -> Case:
    subject = _string(record["subject"], where, "subject")
    new = _string(record["target_new"], where, "target_new")
    true = _string(record["ground_truth"], where, "ground_truth")
    request = _request(_string(record["prompt"], where, "prompt"), subject, new, true, where)
    rephrase = _string(record["rephrase_prompt"], where, "rephrase_prompt")
    locality = _string(record["locality_prompt"], where, "locality_prompt")
    return Case(
        case_id=str(record.get("case_id", index)),
        kind="counterfact",
        request=request,
        paraphrase_prompts=(rephrase,),
        neighborhood=(Probe(locality, true),),
        generation_prompts=derived_generation_prompts(subject, (rephrase,)),
        generation_source="derived",
        relation=request.prompt,
    )


def _derive_flat(cases: list[Case]) -> list[Case]:
    """Attribute prompts for the flattened layout: rewrite prompts of other records whose true
    object is this record's o* — the same relation template first, then any other."""
    by_truth: dict[tuple[str, str], list[Case]] = defaultdict(list)
    for case in cases:
        by_truth[(case.request.prompt, case.request.target_true or "")].append(case)
        by_truth[("*", case.request.target_true or "")].append(case)
    derived = []
    for case in cases:
        same = by_truth.get((case.request.prompt, case.request.target_new), [])
        other = [c for c in by_truth.get(("*", case.request.target_new), []) if c.request.prompt != case.request.prompt]
        others = [c for c in same + other if c.request.subject != case.request.subject]
        attributes = tuple(c.request.text for c in others[:MAX_DERIVED_ATTRIBUTES])
        derived.append(dataclasses.replace(case, attribute_prompts=attributes))
    return derived


def _mend_case(record: dict, index: int, where: str, zsre_target: str | None = "paper") -> Case:
    """One zsRE record as an edit, by the `zsre_target` convention (module docstring)."""
    subject = _string(record["subject"], where, "subject")
    answers = record["answers"]
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise FactpatchError(f"{where}: answers must be a non-empty list of strings")
    loc = _string(record["loc"], where, "loc")
    if zsre_target == "alt":
        new = _string(record["alt"], where, "alt")
        true = answers[0] if answers[0].strip() and answers[0].strip() != new.strip() else None
    else:  # the paper: edit towards answers[0]; its target_true is a placeholder that no metric reads
        new, true = _string(answers[0], where, "answers[0]"), None
        loc = loc + "?"  # dsets/zsre.py: record["loc"] + "?" + the answer's earlier tokens
    request = _request(_string(record["src"], where, "src"), subject, new, true, where)
    return Case(
        case_id=str(record.get("case_id", index)),
        kind="zsre",
        request=request,
        paraphrase_prompts=(_string(record["rephrase"], where, "rephrase"),),
        neighborhood=(Probe(loc, _string(record["loc_ans"], where, "loc_ans")),),
    )


_BUILDERS = {"original": _original_case, "flattened": _flat_case, "mend": _mend_case}
_KIND_OF_LAYOUT = {"original": "counterfact", "flattened": "counterfact", "mend": "zsre"}


def read_cases(
    kind: str, path: Path, name: str | None = None, layout_name: str | None = None, zsre_target: str = "paper"
) -> Dataset:
    """Read a data set file of `kind`, detecting its layout from the first record. `zsre_target`
    chooses how zsRE records become edits ("paper" or "alt", see the module docstring)."""
    if zsre_target not in ZSRE_TARGETS:
        raise FactpatchError(f"bad zsRE target {zsre_target!r}: choose from {', '.join(ZSRE_TARGETS)}")
    path = Path(path)
    records, digest = _read_records(path)
    layout = detect_layout(records[0])
    if layout == "unknown":
        raise FactpatchError(
            f"{path}: unrecognised record layout (fields {', '.join(sorted(records[0]))}); expected CounterFact "
            f"({', '.join(ORIGINAL_KEYS)} or {', '.join(FLAT_KEYS)}) or zsRE ({', '.join(MEND_KEYS)})"
        )
    if _KIND_OF_LAYOUT[layout] != kind:
        raise FactpatchError(
            f"{path} holds {_KIND_OF_LAYOUT[layout]} records ({layout} layout), not {kind}: "
            f"use {_KIND_OF_LAYOUT[layout]}:{path}"
        )
    cases = []
    required = {"original": ORIGINAL_KEYS, "flattened": FLAT_KEYS, "mend": MEND_KEYS}[layout]
    for index, record in enumerate(records):
        where = f"{path} record {index}"
        _require(record, required, where)
        cases.append(_BUILDERS[layout](record, index, where, zsre_target))
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        duplicate = next(i for i in ids if i in seen or seen.add(i))
        raise FactpatchError(f"{path}: case_id {duplicate} appears more than once")
    if layout == "flattened":
        cases = _derive_flat(cases)
    idf_texts = _statements(cases)
    logger.info("read %d %s cases (%s layout) from %s", len(cases), kind, layout, path)
    return Dataset(
        name or f"{kind}:{path}", kind, layout_name or layout, cases, digest, idf_texts,
        zsre_target=zsre_target if kind == "zsre" else None,
    )


def _statements(cases: list[Case]) -> list[str]:
    """Every prompt in the data set, the rewrite prompt completed with o^c: the TF-IDF corpus."""
    texts = []
    for case in cases:
        true = case.request.target_true or ""
        texts.append(f"{case.request.text} {true}".strip())
        texts.extend(case.paraphrase_prompts)
        texts.extend(f"{p.prompt} {p.answer}" for p in case.neighborhood)
        texts.extend(case.attribute_prompts)
    return list(dict.fromkeys(texts))


def builtin_path() -> Path:
    return Path(str(resources.files("factpatch") / "data" / BUILTIN_FILE))


def load_dataset(spec: str, zsre_target: str = "paper") -> Dataset:
    """The data set a spec names (see the module docstring); `zsre_target` applies to zsRE only."""
    kind, path = parse_spec(spec)
    if kind == "builtin":
        path = builtin_path()
        if not path.is_file():
            raise FactpatchError(f"the built-in suite is missing from this installation ({path})")
        return read_cases("counterfact", path, name="builtin", layout_name="builtin")
    assert path is not None
    return read_cases(kind, path, name=spec, zsre_target=zsre_target)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """(i, k) from "i/k" with 0 <= i < k."""
    if text is None:
        return None
    index, sep, count = text.partition("/")
    try:
        i, k = int(index), int(count)
    except ValueError:
        raise FactpatchError(f"bad shard {text!r}: use i/k, e.g. 0/4 for the first of 4 shards") from None
    if not sep or k < 1 or not 0 <= i < k:
        raise FactpatchError(f"bad shard {text!r}: use i/k with 0 <= i < k, e.g. 0/4 for the first of 4 shards")
    return i, k
