"""OpenAI-compatible routes: GET /v1/models, POST /v1/completions, POST /v1/chat/completions.

Generation runs with the patches applied at the moment it starts, under a read hold of the host's
lock until its last token (host.py); the response names that stack in the `X-Factpatch-Stack`
header and the `factpatch` field (in every chunk of a stream). `stream: true` answers with
server-sent events, OpenAI's chunk objects, then `data: [DONE]`. Chat prompts are built with the
tokenizer's own chat template. Not supported (400): n > 1, logprobs, echo, suffix, tools.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..core.errors import FactpatchError
from ..core.generate import Generated, Sampling, cut_at_stop, generate_ids
from .context import ApiError, ServeContext, authorize, json_body, stack_headers
from .host import StackView

MAX_PROMPT_TOKENS = 4096


class _Cancelled(Exception):
    """Raised inside generation when the streaming client has gone away."""


class _TokenQueue:
    """A transformers streamer that hands each new token id to the response, skipping the prompt."""

    def __init__(self, send: Callable[[tuple], None], cancelled: threading.Event) -> None:
        self.send, self.cancelled, self.prompt_seen = send, cancelled, False

    def put(self, value) -> None:
        if self.cancelled.is_set():
            raise _Cancelled
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self.send(("token", token))

    def end(self) -> None:
        pass


def sampling_from(body: dict, default_max: int) -> Sampling:
    for unsupported in ("logprobs", "echo", "suffix", "tools", "functions", "top_logprobs"):
        if body.get(unsupported) not in (None, False, 0):
            raise ApiError(400, f"{unsupported!r} is not supported by this server", "unsupported_parameter")
    if body.get("n", 1) != 1:
        raise ApiError(400, "only n = 1 is supported", "unsupported_parameter")
    stop = body.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, (list, tuple)) or len(stop) > 4 or not all(isinstance(s, str) for s in stop):
        raise ApiError(400, "stop must be a string or a list of at most 4 strings")
    try:
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens")) or default_max
        temperature = 1.0 if body.get("temperature") is None else float(body["temperature"])
        top_p = 1.0 if body.get("top_p") is None else float(body["top_p"])
        seed = 0 if body.get("seed") is None else int(body["seed"])
        return Sampling(int(max_tokens), temperature, top_p, 0, seed, tuple(stop))
    except (TypeError, ValueError) as exc:
        raise ApiError(400, f"bad sampling parameter: {exc}") from None
    except FactpatchError as exc:
        raise ApiError(400, str(exc)) from None


def router(ctx: ServeContext) -> APIRouter:
    api = APIRouter()
    host = ctx.host
    lm = host.lm

    def check_model(body: dict) -> None:
        model = body.get("model")
        if model is not None and model != lm.name:
            raise ApiError(404, f"this server serves {lm.name!r}, not {model!r}", "model_not_found")

    def tokens_of(text: str, special: bool = True) -> list[int]:
        ids = lm.tokenizer(text, add_special_tokens=special).input_ids
        if not ids:
            raise ApiError(400, "the prompt is empty")
        if len(ids) > MAX_PROMPT_TOKENS:
            raise ApiError(400, f"the prompt has {len(ids)} tokens; the limit is {MAX_PROMPT_TOKENS}")
        return ids

    @contextlib.contextmanager
    def generating(sampling: Sampling):
        """The read hold (one stack version throughout) and, when sampling, the turn on the RNG."""
        with host.reading() as view:
            with host.sampling if not sampling.greedy else contextlib.nullcontext():
                yield view

    def run(ids: list[int], sampling: Sampling) -> tuple[StackView, Generated]:
        with generating(sampling) as view:
            return view, generate_ids(lm, ids, sampling)

    async def stream(ids: list[int], sampling: Sampling, chunk: Any) -> StreamingResponse:
        """Start the generation on its own thread; answer once it holds its stack version."""
        # the generation thread hands items to the event loop; waiting for them holds no worker thread
        loop = asyncio.get_running_loop()
        out: asyncio.Queue = asyncio.Queue()
        cancelled = threading.Event()

        def send(item: tuple) -> None:
            try:
                loop.call_soon_threadsafe(out.put_nowait, item)
            except RuntimeError:  # the event loop is closed (the server stopped): no one to tell
                cancelled.set()  # the streamer stops the generation at its next token

        def produce() -> None:
            try:
                with generating(sampling) as view:
                    send(("view", view))
                    result = generate_ids(lm, ids, sampling, streamer=_TokenQueue(send, cancelled))
                send(("end", result.finish_reason))
            except _Cancelled:
                send(("end", "cancelled"))
            except Exception as exc:  # reported in the stream; the thread must not die silently
                send(("error", f"{type(exc).__name__}: {exc}"))

        threading.Thread(target=produce, daemon=True, name="factpatch-stream").start()
        try:
            kind, view = await out.get()
        except asyncio.CancelledError:  # the client left while the generation waited for the lock
            cancelled.set()
            raise
        if kind != "view":
            raise ApiError(500, str(view))

        async def events() -> AsyncIterator[bytes]:
            new: list[int] = []
            sent = ""
            hold = max((len(s) for s in sampling.stop), default=1) - 1  # a stop string may be forming
            try:
                yield sse(chunk(view, None, None, first=True))
                while True:
                    kind, value = await out.get()
                    if kind == "token":
                        new.append(value)
                        text = lm.tokenizer.decode(new, skip_special_tokens=True)
                        cut = cut_at_stop(text, sampling.stop)
                        if cut != text:
                            cancelled.set()
                            if cut[len(sent):]:
                                yield sse(chunk(view, cut[len(sent):], None))
                            yield sse(chunk(view, None, "stop"))
                            break
                        ready = text[: len(text) - hold] if hold else text
                        if ready.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                            continue
                        if len(ready) > len(sent):
                            yield sse(chunk(view, ready[len(sent):], None))
                            sent = ready
                    elif kind == "end":
                        text = cut_at_stop(lm.tokenizer.decode(new, skip_special_tokens=True), sampling.stop)
                        if text[len(sent):]:
                            yield sse(chunk(view, text[len(sent):], None))
                        yield sse(chunk(view, None, value))
                        break
                    else:
                        yield sse({"error": {"message": value, "type": "server_error"}})
                        break
                yield b"data: [DONE]\n\n"
            finally:
                cancelled.set()  # a client that went away stops the generation at its next token

        headers = {**stack_headers(view), "Cache-Control": "no-cache"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    @api.get("/v1/models")
    async def models(request: Request) -> JSONResponse:
        authorize(ctx, request)
        view = host.view()
        data = [{"id": lm.name, "object": "model", "created": 0, "owned_by": "factpatch",
                 "factpatch": {"stack": view.to_dict(), "base_fingerprint": lm.fingerprint}}]
        return JSONResponse({"object": "list", "data": data}, headers=stack_headers(view))

    @api.post("/v1/completions")
    async def completions(request: Request):
        authorize(ctx, request)
        body = await json_body(request)
        check_model(body)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise ApiError(400, "prompt must be one string")
        sampling = sampling_from(body, 16)  # OpenAI's default max_tokens for completions
        ids = tokens_of(prompt)
        made, stamp = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def chunk(view: StackView, text: str | None, finish: str | None, first: bool = False) -> dict:
            return {"id": made, "object": "text_completion", "created": stamp, "model": lm.name,
                    "choices": [{"text": text or "", "index": 0, "logprobs": None, "finish_reason": finish}],
                    "factpatch": {"stack": view.to_dict()}}

        if body.get("stream"):
            return await stream(ids, sampling, chunk)
        view, result = await run_in_threadpool(run, ids, sampling)
        response = chunk(view, result.text, result.finish_reason)
        response["usage"] = usage(ids, result)
        return JSONResponse(response, headers=stack_headers(view))

    @api.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        authorize(ctx, request)
        body = await json_body(request)
        check_model(body)
        messages = body.get("messages")
        if (not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages)):
            raise ApiError(400, "messages must be a non-empty list of {role, content} with text content")
        if not getattr(lm.tokenizer, "chat_template", None):
            raise ApiError(400, f"{lm.name} has no chat template; use /v1/completions")
        try:
            text = lm.tokenizer.apply_chat_template(
                [{"role": m["role"], "content": m["content"]} for m in messages],
                add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # the template's own complaint (e.g. roles out of order)
            raise ApiError(400, f"the chat template refused the messages: {exc}") from None
        sampling = sampling_from(body, 256)
        ids = tokens_of(text, special=False)  # the template wrote the special tokens already
        made, stamp = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def chunk(view: StackView, text: str | None, finish: str | None, first: bool = False) -> dict:
            delta: dict = {"role": "assistant", "content": ""} if first else {}
            if text:
                delta["content"] = text
            return {"id": made, "object": "chat.completion.chunk", "created": stamp, "model": lm.name,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                    "factpatch": {"stack": view.to_dict()}}

        if body.get("stream"):
            return await stream(ids, sampling, chunk)
        view, result = await run_in_threadpool(run, ids, sampling)
        response = {
            "id": made, "object": "chat.completion", "created": stamp, "model": lm.name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                         "logprobs": None, "finish_reason": result.finish_reason}],
            "usage": usage(ids, result), "factpatch": {"stack": view.to_dict()},
        }
        return JSONResponse(response, headers=stack_headers(view))

    return api


def usage(prompt_ids: list[int], result: Generated) -> dict:
    return {"prompt_tokens": len(prompt_ids), "completion_tokens": len(result.token_ids),
            "total_tokens": len(prompt_ids) + len(result.token_ids)}


def sse(data: dict) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()
