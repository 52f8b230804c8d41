"""Causal-tracing latency: one prompt, all three kinds, 10 samples (issue 3's benchmark).

    FACTPATCH_CACHE=/tmp/fpcache python benchmarks/trace_latency.py [--model smollm2-135m] [--repeats 3]
        [--threads 2] [--whole-prompts] [--naive 6]

Times `factpatch.tracing.engine.trace_prompt` on "Lionel Messi plays the sport of" (subject "Lionel Messi",
the model's own top prediction) after loading the model and σ (both cached; not timed). Reports
the median of the repeats and the machine's load average, as JSON on stdout.

`--whole-prompts` also times the same trace without the cached-suffix trick (every restoration
recomputes every position from its first changed block). `--naive K` times K passes of the naive
loop (one full forward pass of the 10 samples per restored state, with hooks) and extrapolates to
the 3 × layers × tokens passes it would need.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from factpatch.core.hooks import act_name, body, hooks, unembed
from factpatch.core.models import load_model
from factpatch.tracing.engine import prepare
from factpatch.tracing.prompt import trace_prompt
from factpatch.tracing.settings import KINDS, NoiseSettings, TraceSettings, embedding_std, layer_window

PROMPT = "Lionel Messi plays the sport of"
SUBJECT = "Lionel Messi"


def naive_pass(lm, prep, kind: str, layer: int, token: int) -> float:
    """One restoration the naive way: a full forward pass of every sample, hooks setting the state."""
    kinds = {"hidden": "resid_post", "mlp": "mlp_out", "attn": "attn_out"}
    layers = [layer] if kind == "hidden" else list(layer_window(layer, lm.n_layers, prep.window))

    def restore(tensor, *, hook):
        tensor = tensor.clone()
        tensor[:, token] = prep.clean[hook][0, token]
        return tensor

    fns = {act_name(kinds[kind], l): restore for l in layers}
    fns[act_name("resid_pre", 0)] = lambda tensor, *, hook: prep.corrupted_resid[0]
    ids = prep.input_ids.expand(prep.samples, -1)
    with torch.no_grad(), hooks(lm, fns):
        hidden = body(lm)(input_ids=ids, use_cache=False).last_hidden_state[:, -1]
        return float(torch.softmax(unembed(lm, hidden), dim=-1)[:, prep.target_id].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--whole-prompts", action="store_true", help="also time without the cached-suffix trick")
    parser.add_argument("--naive", type=int, default=0, metavar="K", help="time K naive passes and extrapolate")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    lm = load_model(args.model, device=args.device)
    sigma = embedding_std(lm, progress=False)
    settings = TraceSettings(noise=NoiseSettings(samples=args.samples))
    trace_prompt(lm, PROMPT, SUBJECT, settings=TraceSettings(noise=NoiseSettings(samples=1)), sigma=sigma,
                 progress=False)  # warm-up

    def timed(suffix: bool) -> list[float]:
        seconds = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            result = trace_prompt(lm, PROMPT, SUBJECT, settings=settings, sigma=sigma, progress=False, suffix=suffix)
            seconds.append(time.perf_counter() - began)
        timed.result = result
        return seconds

    load_before = os.getloadavg()
    seconds = timed(True)
    report = {
        "model": lm.name,
        "prompt": PROMPT,
        "tokens": len(timed.result.tokens),
        "layers": lm.n_layers,
        "kinds": list(KINDS),
        "samples": args.samples,
        "target": timed.result.target,
        "seconds": [round(s, 2) for s in seconds],
        "median_seconds": round(statistics.median(seconds), 2),
    }
    if args.whole_prompts:
        whole = timed(False)
        report["whole_prompt_seconds"] = [round(s, 2) for s in whole]
        report["whole_prompt_median_seconds"] = round(statistics.median(whole), 2)
    if args.naive:
        prep = prepare(lm, PROMPT, SUBJECT, None, sigma, settings.noise, settings.window)
        sites = [(k, l, i) for k in KINDS for l in range(lm.n_layers) for i in range(prep.n_tokens)]
        step = max(1, len(sites) // args.naive)
        chosen = sites[::step][: args.naive]
        began = time.perf_counter()
        for kind, layer, token in chosen:
            naive_pass(lm, prep, kind, layer, token)
        per_pass = (time.perf_counter() - began) / len(chosen)
        report["naive_passes"] = len(sites)
        report["naive_seconds_per_pass"] = round(per_pass, 3)
        report["naive_estimated_seconds"] = round(per_pass * len(sites), 1)
    report.update(
        {
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "torch": torch.__version__,
            "python": platform.python_version(),
        }
    )
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
