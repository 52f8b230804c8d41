"""The lab page at / and its sign-in. The page is server-rendered (Jinja2, autoescaped) and driven
by static/lab.js, which calls the /v1 routes with the page's CSRF token; nothing is loaded from
another site and no script is inline (the CSP forbids both)."""

from __future__ import annotations

import secrets

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from ..core.web import new_token
from ..editing.registry import method_params
from .auth import LOGIN_CSRF_COOKIE, SESSION_COOKIE
from .context import ServeContext
from .experiments import LAB_METHODS


def router(ctx: ServeContext) -> APIRouter:
    page = APIRouter()
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("factpatch.serve", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    templates = Jinja2Templates(env=env)
    lm, access = ctx.host.lm, ctx.access

    def login_page(request: Request, status: int, error: str | None = None) -> HTMLResponse:
        nonce = new_token()
        response = templates.TemplateResponse(request, "login.html", {"csrf": nonce, "error": error,
                                                                      "model": lm.name}, status_code=status)
        response.set_cookie(LOGIN_CSRF_COOKIE, nonce, httponly=True, samesite="strict", path="/login",
                            secure=request.url.scheme == "https")
        return response

    @page.get("/", response_class=HTMLResponse)
    def lab(request: Request) -> HTMLResponse:
        if not access.host_ok(request.headers):
            return HTMLResponse("this server answers to loopback addresses only", status_code=400)
        if not access.open and not access.signed_in(request.cookies):
            return login_page(request, 401)
        layer = method_params(lm, "rome").layer
        context = {
            "model": lm.name, "n_layers": lm.n_layers, "default_layer": layer, "methods": LAB_METHODS,
            "csrf": access.csrf_token(), "signed_in": not access.open, "upload_limit": ctx.limits.upload_bytes,
        }
        return templates.TemplateResponse(request, "lab.html", context)

    @page.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=4)
        expected = request.cookies.get(LOGIN_CSRF_COOKIE)
        if not expected or not secrets.compare_digest(expected, str(form.get("csrf", ""))):
            return login_page(request, 403, "The sign-in form expired. Please try again.")
        if access.open or not access.token_ok(str(form.get("token", "")).strip()):
            return login_page(request, 403, "That token is not right.")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, access.session_value(), httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return response

    @page.post("/logout")
    async def logout(request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=4)
        if not access.csrf_ok(request.headers, str(form.get("csrf", "")) or None):
            return HTMLResponse("Sign-out could not be verified.", status_code=403)
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return page
