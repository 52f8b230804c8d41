"""Where a MEMIT batch's time goes outside z: every phase of one `patch` call timed.

    .venv/bin/python runs/bench/memit-phases-2026-11-30/memit_phases.py [--n 100] [--dtype float32]

Wraps the editor's phases (z, reading keys at each layer, solving, the statistics) with timers;
statistics and prefixes are prepared (cached) before the timed call, as in benchmarks/mass_edit.py.
"""
import argparse
import collections
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from edit_latency import DEFAULT_DATASET  # noqa: E402

from factpatch.core.models import load_model  # noqa: E402
from factpatch.editing import memit  # noqa: E402
from factpatch.editing.registry import make_editor, method_params  # noqa: E402
from factpatch.editing.request import EditRequest  # noqa: E402

spent = collections.defaultdict(float)
calls = collections.Counter()
active: list[str] = []


def timed(module, name):
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        key = f"{name} in {active[-1]}" if active else name  # the same function, told apart by caller
        active.append(name)
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            active.pop()
            spent[key] += time.perf_counter() - began
            calls[key] += 1
    setattr(module, name, wrapper)


parser = argparse.ArgumentParser()
parser.add_argument("--n", type=int, default=100)
parser.add_argument("--dtype", default="float32")
args = parser.parse_args()
records = json.loads(Path(DEFAULT_DATASET).read_text())[: args.n]
requests = [EditRequest.from_text(r["prompt"], r["subject"], r["target_new"], r["ground_truth"]) for r in records]
lm = load_model("smollm2-135m")
editor = make_editor(lm, "memit", method_params(lm, "memit", {"v_dtype": args.dtype}), progress=False)
editor.prepare()
for name in ("compute_targets", "read_at_subject", "memit_solve", "build_contexts", "optimize_deltas",
             "value_model", "states_at_subject", "run_with_cache", "length_order"):
    timed(memit, name)
began = time.perf_counter()
patch = editor.patch(requests)
total = time.perf_counter() - began
result = {"n": args.n, "dtype": args.dtype, "total_s": round(total, 2),
          "phases_s": {k: round(v, 2) for k, v in spent.items()}, "calls": dict(calls),
          "torch": torch.__version__, "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
print(json.dumps(result, indent=2))
