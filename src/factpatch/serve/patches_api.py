"""Patch, edit, trace and job routes, hot on the running model:

    GET    /v1/patches               the applied stack, in order
    POST   /v1/patches               apply an uploaded patch file (raw body, or a `file` form field)
    DELETE /v1/patches               revert all;  DELETE /v1/patches/{id}  revert one
    GET    /v1/patches/{id}/file     download one as .safetensors
    POST   /v1/edits, /v1/traces     start a job (202);  GET /v1/jobs/{id}  its state and result
    POST   /v1/probabilities         P(target | text) now;  POST /v1/compare  with vs without patches
    GET    /v1/state                 model, base and current weights fingerprints, stack

An upload is validated before it touches a weight: size (the body limit, 413), format (a readable
factpatch safetensors file, finite numbers), and fingerprint (made on this model); every refusal
is a 400 with the reason.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ..core.errors import FactpatchError
from ..core.generate import Sampling
from ..editing.patch import Patch, load_patch, save_patch
from . import experiments
from .context import (
    ApiError,
    ServeContext,
    authorize,
    checked,
    content_type,
    json_body,
    stack_headers,
)


def read_upload(data: bytes) -> Patch:
    """A patch from uploaded bytes, or FactpatchError with what is wrong with it."""
    if not data:
        raise FactpatchError("the upload is empty")
    with tempfile.TemporaryDirectory(prefix="factpatch-upload-") as folder:
        path = Path(folder) / "upload.safetensors"
        path.write_bytes(data)
        try:
            patch = load_patch(path)
        except FactpatchError as exc:
            raise FactpatchError(str(exc).replace(str(path), "the upload").replace(f"{path}: ", "")) from None
        except Exception as exc:  # a well-formed file with a broken layout: still the upload's fault
            raise FactpatchError(f"not a valid patch file: {type(exc).__name__}: {exc}") from None
    for delta in patch.deltas:
        parts = [t for t in (delta.left, delta.right, delta.dense) if t is not None]
        if not parts or (delta.dense is None and (delta.left is None or delta.right is None)):
            raise FactpatchError(f"not a valid patch file: the delta for {delta.param} is incomplete")
        if not all(t.is_floating_point() and bool(torch.isfinite(t).all()) for t in parts):
            raise FactpatchError(f"not a valid patch file: the delta for {delta.param} holds non-finite numbers")
    return patch


def router(ctx: ServeContext) -> APIRouter:
    api = APIRouter()
    host, lm = ctx.host, ctx.host.lm

    def listing() -> dict:
        applied = host.applied()
        return {"object": "list", "data": [a.to_dict() for a in applied], "stack": host.view().to_dict()}

    # routes that never wait for the model are `async`: they answer even while every worker
    # thread waits for a long trace to let go of the model

    @api.get("/v1/patches")
    async def patches(request: Request) -> JSONResponse:
        authorize(ctx, request)
        return JSONResponse(listing(), headers=stack_headers(host.view()))

    @api.post("/v1/patches")
    async def upload(request: Request) -> JSONResponse:
        kind = content_type(request)
        if kind == "multipart/form-data":
            try:
                form = await request.form(max_files=1, max_fields=4, max_part_size=ctx.limits.upload_bytes)
            except Exception as exc:  # starlette's MultiPartException and friends: a malformed form
                raise ApiError(400, f"malformed form: {exc}") from None
            authorize(ctx, request, str(form.get("csrf") or "") or None)
            file = form.get("file")
            if file is None or isinstance(file, str):
                raise ApiError(400, "the form has no `file` field with a patch file")
            data = await file.read()
        elif kind == "application/octet-stream":
            authorize(ctx, request)
            data = await request.body()
        else:
            authorize(ctx, request)
            raise ApiError(415, "upload the patch file as application/octet-stream or in a multipart `file` field")

        def apply() -> dict:
            patch = read_upload(data)
            if patch.fingerprint != lm.fingerprint:
                raise FactpatchError(
                    f"patch {patch.id} was made on another model ({patch.meta.get('model') or 'unknown'}, "
                    f"fingerprint {patch.fingerprint[:12] or 'missing'}); this server runs {lm.name} "
                    f"(fingerprint {lm.fingerprint[:12]})")
            view = host.apply(patch, "upload")
            return view, {"applied": patch.id, "description": patch.describe(), "stack": view.to_dict()}

        view, result = await checked(apply)
        return JSONResponse(result, status_code=201, headers=stack_headers(view))

    def reverted(removed: list[Patch]) -> JSONResponse:
        view = host.view()
        return JSONResponse({"reverted": [p.id for p in removed], "stack": view.to_dict()}, headers=stack_headers(view))

    @api.delete("/v1/patches")
    async def revert_all(request: Request) -> JSONResponse:
        authorize(ctx, request)
        removed = await checked(host.revert, None)
        return reverted(removed)

    @api.delete("/v1/patches/{patch_id}")
    async def revert_one(request: Request, patch_id: str) -> JSONResponse:
        authorize(ctx, request)
        if not patch_id.isalnum():
            raise ApiError(404, f"no applied patch {patch_id!r}")
        try:
            removed = await run_in_threadpool(host.revert, patch_id)
        except FactpatchError as exc:
            raise ApiError(404, str(exc)) from None
        return reverted(removed)

    @api.get("/v1/patches/{patch_id}/file")
    def download(request: Request, patch_id: str) -> Response:
        authorize(ctx, request)
        try:
            patch = host.find(patch_id)
        except FactpatchError as exc:
            raise ApiError(404, str(exc)) from None
        with tempfile.TemporaryDirectory(prefix="factpatch-download-") as folder:
            data = save_patch(patch, Path(folder) / "patch.safetensors").read_bytes()
        name = f"{lm.name}-{patch.meta.get('method', 'patch')}-{patch.id}.safetensors"
        return Response(data, media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @api.post("/v1/edits", status_code=202)
    async def edits(request: Request) -> JSONResponse:
        authorize(ctx, request)
        params = await checked(experiments.check_edit, host, await json_body(request))
        job = ctx.jobs.submit("edit", params, lambda j: experiments.run_edit(host, ctx.settings, params, j))
        return JSONResponse(job.to_dict(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})

    @api.post("/v1/traces", status_code=202)
    async def traces(request: Request) -> JSONResponse:
        authorize(ctx, request)
        params = await checked(experiments.check_trace, host, ctx.settings, await json_body(request))
        job = ctx.jobs.submit("trace", params, lambda j: experiments.run_trace(host, ctx.settings, params, j))
        return JSONResponse(job.to_dict(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})

    @api.get("/v1/jobs/{job_id}")
    async def job(request: Request, job_id: str) -> JSONResponse:
        authorize(ctx, request)
        found = ctx.jobs.get(job_id)
        if found is None:
            raise ApiError(404, f"no job {job_id!r}")
        return JSONResponse(found.to_dict())

    @api.post("/v1/probabilities")
    async def probabilities(request: Request) -> JSONResponse:
        authorize(ctx, request)
        body = await json_body(request)
        texts, targets = body.get("texts"), body.get("targets")
        ok = all(isinstance(v, list) and 0 < len(v) <= 3 * experiments.MAX_TEXTS
                 and all(isinstance(s, str) and s.strip() for s in v) for v in (texts, targets))
        if not ok or len(targets) > 4:
            raise ApiError(400, "texts and targets must be non-empty lists of non-empty strings (targets: at most 4)")
        result = await checked(experiments.probabilities_now, host, texts, targets)
        return JSONResponse(result)

    @api.post("/v1/compare")
    async def compare(request: Request) -> JSONResponse:
        authorize(ctx, request)
        body = await json_body(request)
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > 2000:
            raise ApiError(400, "prompt must be a non-empty string of at most 2000 characters")
        try:
            sampling = Sampling(int(body.get("max_tokens") or 40), float(body.get("temperature") or 0.0),
                                seed=int(body.get("seed") or 0))
        except (TypeError, ValueError, FactpatchError) as exc:
            raise ApiError(400, f"bad generation settings: {exc}") from None
        result = await checked(experiments.compare, host, prompt, sampling)
        return JSONResponse(result)

    @api.get("/v1/state")
    async def state(request: Request) -> JSONResponse:
        authorize(ctx, request)
        fingerprint = await run_in_threadpool(host.fingerprint)
        return JSONResponse({"model": lm.name, "base_fingerprint": lm.fingerprint, "fingerprint": fingerprint,
                             "stack": host.view().to_dict()})

    return api

