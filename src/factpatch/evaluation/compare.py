"""`factpatch compare`: texts generated after each method's edit, side by side (paper Fig. 25).

For one counterfactual, every method's patch is applied in turn and `n` texts are sampled from each
of the case's generation prompts with the same seed, so the methods differ only in their weights.
Output: `compare.md` (Markdown), `compare.html` (one self-contained page, model text escaped) and
`compare.jsonl` — one line per case in the form the human-evaluation study reads
(`case_id`, `counterfactual`, `prompt`, `texts` = {method: first text of the first prompt}),
with every sample under `samples`.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ..core.cache import write_text_atomic
from ..core.errors import FactpatchError
from ..core.generate import generate_texts
from ..core.models import LoadedModel
from ..editing.patch import applied
from ..editing.registry import make_editor, method_params
from .data import Case, load_dataset

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompareSettings:
    n: int = 3  # texts per method and prompt
    max_new_tokens: int = 100
    max_prompts: int = 3  # generation prompts per case
    seed: int = 0

    def __post_init__(self):
        if min(self.n, self.max_new_tokens, self.max_prompts) < 1:
            raise FactpatchError("--n, --max-new-tokens and the number of prompts must be at least 1")


def compare_case(
    lm: LoadedModel,
    case: Case,
    methods: list[str],
    settings: CompareSettings = CompareSettings(),
    editors: dict | None = None,
    overrides: dict | None = None,
    cache_dir: Path | None = None,
    progress: bool = False,
    preset: str | None = None,
) -> dict:
    """One record: every method's texts for the case's generation prompts (each method's settings:
    `preset`'s, then `overrides`)."""
    editors = editors if editors is not None else {}
    prompts = list(case.generation_prompts[: settings.max_prompts]) or [case.request.text]
    by_method: dict[str, list[list[str]]] = {}
    patches: dict[str, dict] = {}
    for method in methods:
        if method not in editors:
            params = method_params(lm, method, (overrides or {}).get(method), preset)
            editors[method] = make_editor(lm, method, params, cache_dir, progress)
        patch = editors[method].patch([case.request])
        with applied(lm, [patch]):
            by_method[method] = generate_texts(lm, prompts, settings.n, settings.max_new_tokens, settings.seed)
        patches[method] = {"id": patch.id, "params": [d.param for d in patch.deltas]}
    samples = [{"prompt": p, "texts": {m: by_method[m][i] for m in methods}} for i, p in enumerate(prompts)]
    return {
        "case_id": case.case_id,
        "counterfactual": case.counterfactual,
        "prompt": prompts[0],
        "texts": {m: by_method[m][0][0] for m in methods},
        "samples": samples,
        "request": case.request.to_dict(),
        "patches": patches,
        "model": lm.name,
    }


def compare_texts(
    model: str | LoadedModel,
    dataset: str,
    n: int,
    methods: list[str],
    seed: int | None = None,
    cache_dir: Path | None = None,
    progress: bool = False,
    max_new_tokens: int = 100,
) -> list[dict]:
    """Records for the first `n` cases of `dataset`, one text per method each (for `study create`)."""
    from ..core.models import load_model

    if n < 1:
        raise FactpatchError(f"n must be at least 1, got {n}")
    ds = load_dataset(dataset)
    if ds.kind != "counterfact":
        raise FactpatchError(f"{dataset}: generation comparisons need CounterFact cases")
    lm = load_model(model, cache_dir) if isinstance(model, str) else model
    settings = CompareSettings(n=1, max_new_tokens=max_new_tokens, max_prompts=1, seed=seed or 0)
    editors: dict = {}
    records = []
    for case in tqdm(ds.select(n), desc="compare", unit="case", disable=not progress):
        records.append(compare_case(lm, case, list(methods), settings, editors, cache_dir=cache_dir))
    return records


# ----------------------------------------------------------------------------- output


def to_markdown(records: list[dict]) -> str:
    lines = ["# Generated text after each edit", ""]
    for record in records:
        lines += [f"## Case {record['case_id']}: {record['counterfactual']}", ""]
        methods = list(record["texts"])
        for sample in record["samples"]:
            lines += [f"**Prompt:** {sample['prompt']}", ""]
            lines.append("| " + " | ".join(methods) + " |")
            lines.append("|" + "---|" * len(methods))
            for i in range(max(len(v) for v in sample["texts"].values())):
                cells = [_md_cell(sample["texts"][m][i]) if i < len(sample["texts"][m]) else "" for m in methods]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def _md_cell(text: str) -> str:
    return html.escape(" ".join(text.split()), quote=False).replace("|", "\\|")


_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h2 { font-size: 1.1em; margin-top: 2em; } .prompt { color: #555; margin: 1em 0 .4em; }
.grid { display: grid; gap: .8em; } .col h3 { font-size: .95em; margin: 0 0 .3em; }
.text { background: #f6f6f6; border-radius: 4px; padding: .6em .8em; margin-bottom: .5em; white-space: pre-wrap; }
"""


def to_html(records: list[dict]) -> str:
    """One self-contained page: inline CSS, no scripts, every model text escaped."""
    e = html.escape
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             "<title>factpatch compare</title><style>", _STYLE, "</style></head><body>",
             "<h1>Generated text after each edit</h1>"]
    for record in records:
        methods = list(record["texts"])
        parts.append(f"<h2>Case {e(str(record['case_id']))}: {e(record['counterfactual'])}</h2>")
        for sample in record["samples"]:
            parts.append(f"<p class='prompt'>Prompt: <b>{e(sample['prompt'])}</b></p>")
            parts.append(f"<div class='grid' style='grid-template-columns: repeat({len(methods)}, 1fr)'>")
            for method in methods:
                parts.append(f"<div class='col'><h3>{e(method)}</h3>")
                parts += [f"<div class='text'>{e(text)}</div>" for text in sample["texts"][method]]
                parts.append("</div>")
            parts.append("</div>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_outputs(records: list[dict], out_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FactpatchError(f"--out {out_dir} exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "compare.md", "html": out_dir / "compare.html", "jsonl": out_dir / "compare.jsonl"}
    write_text_atomic(paths["markdown"], to_markdown(records))
    write_text_atomic(paths["html"], to_html(records))
    write_text_atomic(paths["jsonl"], "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return paths
