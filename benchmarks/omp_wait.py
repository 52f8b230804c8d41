"""How OpenMP's waiting threads change an edit's and a trace's time, alone and beside a twin.

torch's CPU wheel runs its kernels on libgomp threads. Between two parallel regions a thread
that has no work spins for a while before it sleeps (GOMP_SPINCOUNT; OMP_WAIT_POLICY=PASSIVE
sleeps at once). With two such processes on two cores, each one's spinning threads take the cores
the other's working threads need, and both slow down many-fold. The settings are read once, when
torch loads libgomp, so each is measured in its own child process:

    python benchmarks/omp_wait.py [--model smollm2-135m] [--rounds 2] [--json F]

For each setting and round: the workload alone, two copies at once (a "pair"), and one copy beside
one under libgomp's default ("mixed": a side job started with the setting while a long run goes on
without it). Each child
loads the model, warms up once, then times `--edits` ROME edits (float32 with MEMIT's 6 contexts,
`--preset fast` without its bfloat16; cached statistics) and `--traces` causal traces (`--samples` noise samples each). Prints one line a
child and the medians per setting and mode, and writes them as JSON with `--json`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# The settings compared: libgomp's default (spin ~300,000 iterations, then sleep), a short spin,
# and no spin at all. The names are the JSON's keys.
SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "spin-1000": {"GOMP_SPINCOUNT": "1000"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "1-thread": {"OMP_NUM_THREADS": "1"},  # the usual advice for several processes on one machine
}
# alone: one child; pair: two children under the setting; mixed: one child under the setting
# beside one under libgomp's default (a long run started without it, and a side job started with
# it) — the second is recorded as "mixed-default".
MODES = ("alone", "pair", "mixed")
PROMPT = "Lionel Messi plays the sport of"
SUBJECT = "Lionel Messi"
EDITS = [  # the first five cases of counterfact-train.json, written out so the benchmark needs no dataset
    ('{}, the', 'Toko Yasuda', 'piano', 'guitar'),
    ('{}, which is located in', 'Autonomous University of Madrid', 'Sweden', 'Spain'),
    ('What is the twin city of {}? It is', 'Wellington', 'Sheffield', 'Sydney'),
    ('{}, created in', 'Shree Pundalik', 'Sweden', 'India'),
    ('{} professionally plays the sport', 'Andreas Ivanschitz', 'football', 'soccer'),
]


def child(args: argparse.Namespace) -> None:
    """One measurement: load, warm up, time the edits and the traces; one JSON line on stdout."""
    # torch (and with it libgomp, which reads the settings once) is imported here, in the child,
    # never in the parent: the parent only sets each child's environment.
    import torch

    from factpatch.core.models import load_model
    from factpatch.editing.registry import method_params
    from factpatch.editing.request import EditRequest
    from factpatch.editing.rome import compute_edit, context_prefixes
    from factpatch.editing.stats import key_second_moment
    from factpatch.tracing import NoiseSettings, TraceSettings, embedding_std, trace_prompt

    lm = load_model(args.model)
    hp = method_params(lm, "rome", {"prefixes": "[[5, 10]]"}, None)  # float32, MEMIT's 6 contexts
    C = key_second_moment(lm, hp.layer)
    context_prefixes(lm, hp)
    sigma = embedding_std(lm, progress=False)
    requests = [EditRequest.from_text(*edit) for edit in EDITS[: args.edits]]
    settings = TraceSettings(noise=NoiseSettings(samples=args.samples))
    compute_edit(lm, requests[0], C, hp)  # warm-up: first-call allocations and kernel choices
    edit_seconds, trace_seconds = [], []
    for request in requests:
        started = time.perf_counter()
        compute_edit(lm, request, C, hp)
        edit_seconds.append(time.perf_counter() - started)
    for _ in range(args.traces):
        started = time.perf_counter()
        trace_prompt(lm, PROMPT, SUBJECT, settings=settings, sigma=sigma, progress=False)
        trace_seconds.append(time.perf_counter() - started)
    print(json.dumps({"edit_s": edit_seconds, "trace_s": trace_seconds, "threads": torch.get_num_threads()}))


def launch(args: argparse.Namespace, settings: list[str]) -> list[dict]:
    """One child a setting, all at once; each child's JSON line, in the same order."""
    command = [sys.executable, __file__, "--child", "--model", args.model, "--edits", str(args.edits),
               "--traces", str(args.traces), "--samples", str(args.samples)]
    children = [subprocess.Popen(command, env={**os.environ, **SETTINGS[setting]}, stdout=subprocess.PIPE, text=True)
                for setting in settings]
    results = []
    for setting, process in zip(settings, children):
        out, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"error: a child under {setting} exited {process.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--edits", type=int, default=5, help="timed ROME edits a child (at most 5)")
    parser.add_argument("--traces", type=int, default=2, help="timed causal traces a child")
    parser.add_argument("--samples", type=int, default=3, help="noise samples a trace (the default trace has 10)")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="which settings, comma-separated")
    parser.add_argument("--modes", default=",".join(MODES), help="which of alone, pair, mixed, comma-separated")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    names = args.settings.split(",")
    modes = args.modes.split(",")
    unknown = [n for n in names if n not in SETTINGS] + [m for m in modes if m not in MODES]
    if unknown or not 1 <= args.edits <= len(EDITS):
        raise SystemExit(f"error: unknown setting or mode {unknown[0]}" if unknown else f"error: --edits must be 1-{len(EDITS)}")

    samples: dict[str, dict[str, dict[str, list[float]]]] = {}
    for round_ in range(args.rounds):
        order = names if round_ % 2 == 0 else names[::-1]  # the machine drifts: alternate the order
        for setting in order:
            for mode in modes:
                children = {"alone": [setting], "pair": [setting, setting], "mixed": [setting, "default"]}[mode]
                for child_setting, result in zip(children, launch(args, children)):
                    label = "mixed-default" if mode == "mixed" and child_setting != setting else mode
                    row = samples.setdefault(setting, {}).setdefault(label, {"edit_s": [], "trace_s": []})
                    row["edit_s"] += result["edit_s"]
                    row["trace_s"] += result["trace_s"]
                    print(f"round {round_} {setting:>9} {label:>13}: edit median {statistics.median(result['edit_s']):6.2f} s, "
                          f"trace median {statistics.median(result['trace_s']) if result['trace_s'] else float('nan'):6.2f} s",
                          flush=True)
    summary = {
        setting: {mode: {key: statistics.median(values) for key, values in row.items() if values}
                  for mode, row in modes.items()}
        for setting, modes in samples.items()
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        record = {"benchmark": "omp_wait", "model": args.model, "rounds": args.rounds, "edits": args.edits,
                  "traces": args.traces, "samples": args.samples, "settings": {n: SETTINGS[n] for n in names},
                  "modes": modes, "medians": summary, "all": samples}
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(args.json)


if __name__ == "__main__":
    main()
