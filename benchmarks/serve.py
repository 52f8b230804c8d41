"""`factpatch serve` performance (issue 15): generation throughput through the server against
`transformers` `generate` on the same model, prompt and settings in the same process, time to first
token, applying and reverting one ROME patch, and 8 concurrent streaming clients.

The server runs in this process under a real uvicorn on a loopback port (as `factpatch serve`
does), and is called over HTTP with httpx. Direct and served runs alternate, so a busy machine
slows both alike. Targets (issue 15): served throughput ≥ 90 % of direct; apply or revert ≤ 50 ms;
8 concurrent streams all finish with no error.

    python benchmarks/serve.py [--model smollm2-135m] [--tokens 64] [--rounds 5] [--clients 8]
                               [--patch FILE] [--state DIR] [--json FILE]

Without --patch the Eiffel Tower → Rome ROME patch is computed first (key statistics cached).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import torch

from factpatch.api import edit
from factpatch.core.models import load_model
from factpatch.core.web import new_secret
from factpatch.editing.patch import PatchStack, load_patch, save_patch
from factpatch.editing.request import EditRequest
from factpatch.serve.app import create_app
from factpatch.serve.auth import Access
from factpatch.serve.context import ServeContext
from factpatch.serve.host import ModelHost
from factpatch.serve.state import StateDir

# A prompt whose greedy continuation runs past 64 tokens on SmolLM2 (checked). "The Eiffel Tower is
# located in the city of" ends after " Paris, France." (5 tokens), so the figures of the first
# measurement (2026-11-30 morning) timed 5-token answers, not 64-token generations.
PROMPT = "Once upon a time, in a small village,"


class Server:
    def __init__(self, app) -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def direct_generate(lm, tokens: int) -> tuple[float, int]:
    """transformers' generate, greedy, as a user of the library would call it."""
    batch = lm.tokenizer(PROMPT, return_tensors="pt")
    started = time.perf_counter()
    with torch.no_grad():
        out = lm.model.generate(**batch, max_new_tokens=tokens, do_sample=False,
                                pad_token_id=lm.tokenizer.eos_token_id)
    return time.perf_counter() - started, out.shape[1] - batch.input_ids.shape[1]


def served_generate(client: httpx.Client, url: str, model: str, tokens: int) -> tuple[float, int]:
    started = time.perf_counter()
    r = client.post(url + "/v1/completions", json={"model": model, "prompt": PROMPT, "max_tokens": tokens,
                                                   "temperature": 0})
    seconds = time.perf_counter() - started
    r.raise_for_status()
    return seconds, r.json()["usage"]["completion_tokens"]


def stream_once(url: str, model: str, tokens: int, tokenizer=None) -> dict:
    """One streaming completion: time to first text, total time, text chunks, tokens of the text
    (re-encoded), why it ended, error if any."""
    started = time.perf_counter()
    first = None
    chunks = 0
    text, finish = "", None
    try:
        with httpx.Client(timeout=600) as client, client.stream(
            "POST", url + "/v1/completions",
            json={"model": model, "prompt": PROMPT, "max_tokens": tokens, "temperature": 0, "stream": True},
        ) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    raise RuntimeError(event["error"]["message"])
                choice = event["choices"][0]
                finish = choice.get("finish_reason") or finish
                if choice["text"]:
                    chunks += 1
                    text += choice["text"]
                    if first is None:
                        first = time.perf_counter() - started
        error = None
    except Exception as exc:  # counted and reported: the point is whether any client fails
        error = repr(exc)
    tokens_out = len(tokenizer(text, add_special_tokens=False).input_ids) if tokenizer is not None and text else None
    return {"ttft_s": first, "total_s": time.perf_counter() - started, "chunks": chunks, "tokens": tokens_out,
            "finish_reason": finish, "error": error}


def rome_patch(lm, path: Path | None):
    if path is not None:
        return load_patch(path)
    stack = PatchStack(lm)
    result = edit(lm, EditRequest.from_text("{} is located in the city of", "Eiffel Tower", "Rome", "Paris"),
                  stack, progress=False)
    stack.revert()
    return result.patch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per generation (default 64)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of each measurement (default 5)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent streaming clients (default 8)")
    parser.add_argument("--patch", type=Path, default=None, help="a ROME patch file (default: compute Eiffel → Rome)")
    parser.add_argument("--state", type=Path, default=None, help="serve with this --state (apply/revert write it)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    lm = load_model(args.model)
    patch = rome_patch(lm, args.patch)
    host = ModelHost(lm, StateDir(args.state) if args.state else None)
    ctx = ServeContext(host, Access(new_secret(), None, True))
    # both sides generate greedily from the same weights, so they make the same tokens and stop alike
    figures: dict = {
        "model": lm.name, "tokens": args.tokens, "rounds": args.rounds, "clients": args.clients,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }
    print(f"{lm.name}: {args.tokens} new tokens, {args.rounds} rounds; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cpus")

    with Server(create_app(ctx)) as server, httpx.Client(timeout=600) as client:
        # warm-up: first calls pay for allocations and lazy imports
        direct_generate(lm, 8)
        served_generate(client, server.url, lm.name, 8)

        direct, served, made = [], [], []
        for _ in range(args.rounds):
            seconds, n = direct_generate(lm, args.tokens)
            direct.append(n / seconds)
            made.append(n)
            seconds, n = served_generate(client, server.url, lm.name, args.tokens)
            served.append(n / seconds)
            made.append(n)
        ratio = statistics.median(served) / statistics.median(direct)
        figures["throughput"] = {"direct_tok_s": direct, "served_tok_s": served, "ratio_of_medians": ratio,
                                 "tokens": made}
        print(f"throughput: direct {statistics.median(direct):.1f} tok/s, served {statistics.median(served):.1f} "
              f"tok/s (median of {args.rounds}, {min(made)}–{max(made)} tokens each); served/direct {ratio:.3f} "
              "(target ≥ 0.90)")

        ttft = [stream_once(server.url, lm.name, args.tokens)["ttft_s"] for _ in range(args.rounds)]
        figures["ttft_s"] = ttft
        print(f"time to first token (streamed): median {statistics.median(ttft) * 1000:.0f} ms, "
              f"max {max(ttft) * 1000:.0f} ms")

        data = save_patch(patch, Path(tempfile.mkdtemp()) / "p.safetensors").read_bytes()
        host_apply, host_revert, http_apply, http_revert = [], [], [], []
        for _ in range(args.rounds):
            started = time.perf_counter()
            host.apply(patch)
            host_apply.append(time.perf_counter() - started)
            started = time.perf_counter()
            host.revert(patch.id)
            host_revert.append(time.perf_counter() - started)
            started = time.perf_counter()
            client.post(server.url + "/v1/patches", content=data,
                        headers={"Content-Type": "application/octet-stream"}).raise_for_status()
            http_apply.append(time.perf_counter() - started)
            started = time.perf_counter()
            client.delete(server.url + f"/v1/patches/{patch.id}").raise_for_status()
            http_revert.append(time.perf_counter() - started)
        figures["patch_s"] = {"host_apply": host_apply, "host_revert": host_revert,
                              "http_apply": http_apply, "http_revert": http_revert}
        ms = lambda xs: f"{statistics.median(xs) * 1000:.1f} ms (max {max(xs) * 1000:.1f})"
        print(f"apply one ROME patch: {ms(host_apply)} in the host, {ms(http_apply)} over HTTP (upload, "
              f"validation{', state write' if args.state else ''}); revert: {ms(host_revert)}, {ms(http_revert)} "
              "(target ≤ 50 ms)")

        results: list[dict] = [{}] * args.clients

        def run(i: int) -> None:
            results[i] = stream_once(server.url, lm.name, args.tokens, lm.tokenizer)
        threads = [threading.Thread(target=run, args=(i,)) for i in range(args.clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        errors = [r["error"] for r in results if r["error"]]
        figures["concurrent"] = {"wall_s": wall, "clients": results}
        totals = [r["total_s"] for r in results]
        print(f"{args.clients} concurrent streaming clients: all done in {wall:.1f} s; each {min(totals):.1f}–"
              f"{max(totals):.1f} s; first tokens after {statistics.median([r['ttft_s'] or 0 for r in results]):.2f} s "
              f"(median); tokens each {sorted({r['tokens'] for r in results}, key=str)}, ended by "
              f"{sorted({str(r['finish_reason']) for r in results})}; errors: {len(errors)}"
              + (f" ({errors[0]})" if errors else ""))

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
