"""`create_app`: the FastAPI app over one model host — the lab page, the OpenAI-compatible API and
the patch/job routes, behind the shared security headers and body limits (core.web)."""

from __future__ import annotations

import contextlib

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..core.web import BodyLimit, add_security_headers
from . import lab, openai_api, patches_api
from .context import ApiError, ServeContext


def create_app(ctx: ServeContext) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        ctx.jobs.shutdown()

    app = FastAPI(title="factpatch serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.ctx = ctx
    add_security_headers(app)
    app.mount("/static", StaticFiles(packages=[("factpatch.serve", "static")]), name="static")
    app.include_router(lab.router(ctx))
    app.include_router(openai_api.router(ctx))
    app.include_router(patches_api.router(ctx))

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return ApiError(exc.status_code, str(exc.detail)).response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return ApiError(400, f"bad request: {exc.errors()}").response()

    def limit_for(path: str) -> int:
        return ctx.limits.upload_bytes if path == "/v1/patches" else ctx.limits.body_bytes

    app.add_middleware(BodyLimit, limit_for=limit_for)

    return app
