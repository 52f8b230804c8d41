"""The HTTP API on a tiny model: OpenAI-style completions that name their stack, patch upload
validation, hot apply/revert, jobs, and the security rules (token, CSRF, Origin, Host, sizes)."""

from __future__ import annotations

import json
import time

import pytest
from serve_helpers import TOKEN, rank_one_patch

from factpatch.serve.context import Limits

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "The Eiffel Tower is located in the city of"


def complete(client, **extra):
    body = {"prompt": PROMPT, "max_tokens": 8, "temperature": 0, **extra}
    return client.post("/v1/completions", json=body)


def wait_job(client, job: dict, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = client.get(f"/v1/jobs/{job['id']}").json()
        if state["state"] in ("done", "failed"):
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.1)


def test_completion_names_its_stack_and_changes_with_a_hot_patch(make_server, client_for, patch_file):
    ctx, app = make_server()
    client = client_for(app)
    lm = ctx.host.lm
    models = client.get("/v1/models").json()
    assert models["data"][0]["id"] == lm.name

    before = complete(client)
    assert before.status_code == 200, before.text
    assert before.headers["X-Factpatch-Stack"] == "v0: none"
    assert before.json()["factpatch"]["stack"] == {"version": 0, "patches": []}
    assert before.json()["usage"]["completion_tokens"] == 8

    patch = rank_one_patch(lm, 1, scale=50.0)
    r = client.post("/v1/patches", content=patch_file(patch).read_bytes(),
                    headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    assert r.json()["applied"] == patch.id
    listed = client.get("/v1/patches").json()
    assert [p["id"] for p in listed["data"]] == [patch.id] and listed["data"][0]["method"] == "rome"

    after = complete(client)
    assert after.headers["X-Factpatch-Stack"] == f"v1: {patch.id}"
    assert after.json()["choices"][0]["text"] != before.json()["choices"][0]["text"]

    download = client.get(f"/v1/patches/{patch.id[:8]}/file")
    assert download.status_code == 200 and download.content[:8] == patch_file(patch).read_bytes()[:8]

    r = client.delete(f"/v1/patches/{patch.id}")
    assert r.status_code == 200, r.text
    assert r.json()["reverted"] == [patch.id]
    back = complete(client)
    assert back.json()["choices"][0]["text"] == before.json()["choices"][0]["text"]
    assert back.headers["X-Factpatch-Stack"] == "v2: none"
    assert client.delete("/v1/patches/abcdef").status_code == 404


def test_stream_sends_chunks_that_add_up_to_the_completion(make_server, client_for):
    _, app = make_server()
    client = client_for(app)
    whole = complete(client).json()["choices"][0]["text"]
    with client.stream("POST", "/v1/completions", json={"prompt": PROMPT, "max_tokens": 8, "temperature": 0,
                                                        "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["X-Factpatch-Stack"] == "v0: none"
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_chat_without_a_template_is_a_clear_400(make_server, client_for):
    _, app = make_server()
    r = client_for(app).post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400 and "chat template" in r.json()["error"]["message"]


@pytest.mark.parametrize("body, reason", [
    (b"", "empty"),
    (b"this is not a safetensors file at all", "not a readable patch file"),
    (b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}", "not a readable patch file"),
])
def test_malformed_uploads_are_400_with_the_reason(make_server, client_for, body, reason):
    _, app = make_server()
    r = client_for(app).post("/v1/patches", content=body, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 400, r.text
    assert reason in r.json()["error"]["message"]


def test_a_foreign_or_misshapen_patch_is_refused_with_the_reason(make_server, client_for, patch_file, fresh_tiny):
    ctx, app = make_server()
    client = client_for(app)
    foreign = rank_one_patch(fresh_tiny("llama", seed=3))
    r = client.post("/v1/patches", content=patch_file(foreign).read_bytes(),
                    headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 400 and "made on another model" in r.json()["error"]["message"]
    other_family = rank_one_patch(fresh_tiny("gpt2"), fingerprint=ctx.host.lm.fingerprint)
    r = client.post("/v1/patches", content=patch_file(other_family).read_bytes(),
                    headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 400 and "does not have" in r.json()["error"]["message"]
    nan = rank_one_patch(ctx.host.lm)
    nan.deltas[0].left[0] = float("nan")
    r = client.post("/v1/patches", content=patch_file(nan).read_bytes(),
                    headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 400 and "non-finite" in r.json()["error"]["message"]
    assert ctx.host.view().version == 0


def test_bodies_over_the_limit_are_413_before_being_read(make_server, client_for, patch_file):
    ctx, app = make_server(limits=Limits(body_bytes=1000, upload_bytes=2000))
    client = client_for(app)
    r = client.post("/v1/completions", content=b"{" + b" " * 5000 + b"}", headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    big = patch_file(rank_one_patch(ctx.host.lm)).read_bytes() + b"\0" * 2000
    r = client.post("/v1/patches", content=big, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 413

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b"x" * 500

    r = client.post("/v1/patches", content=chunks(), headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 413


def test_a_token_guards_every_api_route_and_the_page(make_server, client_for):
    _, app = make_server(token=TOKEN, loopback=False)
    client = client_for(app)
    assert client.get("/v1/models").status_code == 401
    assert complete(client).status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer wrong-token-123456"}).status_code == 403
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/v1/models", headers=auth).status_code == 200
    assert client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 2}, headers=auth).status_code == 200
    page = client.get("/")
    assert page.status_code == 401 and "Sign in" in page.text
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    refused = client.post("/login", data={"csrf": csrf, "token": "nope"})
    assert refused.status_code == 403 and "not right" in refused.text
    csrf = refused.text.split('name="csrf" value="')[1].split('"')[0]  # each form has its own
    r = client.post("/login", data={"csrf": csrf, "token": TOKEN}, follow_redirects=False)
    assert r.status_code == 303
    page = client.get("/")
    assert page.status_code == 200 and 'id="locate"' in page.text
    # signed in through the page: mutations need the page's CSRF token
    lab_csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
    assert client.delete("/v1/patches").status_code == 403
    assert client.delete("/v1/patches", headers={"X-CSRF-Token": lab_csrf}).status_code == 200


def test_cross_site_requests_are_refused_on_an_open_loopback_server(make_server, client_for, patch_file):
    ctx, app = make_server()
    client = client_for(app)
    evil = {"Origin": "http://evil.example"}
    assert client.post("/v1/completions", json={"prompt": PROMPT}, headers=evil).status_code == 403
    # a plain cross-site form can't post a patch: it has no CSRF token
    data = patch_file(rank_one_patch(ctx.host.lm)).read_bytes()
    r = client.post("/v1/patches", files={"file": ("p.safetensors", data)})
    assert r.status_code == 403
    # nor a text/plain body (what a cross-site form can send) to a JSON route
    r = client.post("/v1/completions", content=json.dumps({"prompt": PROMPT}), headers={"Content-Type": "text/plain"})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]["message"]
    # DNS rebinding: a foreign Host name
    assert client.get("/v1/models", headers={"Host": "evil.example:8000"}).status_code == 400
    # the page's own form, with its token, is accepted
    csrf = client.get("/").text.split('name="csrf-token" content="')[1].split('"')[0]
    r = client.post("/v1/patches", files={"file": ("p.safetensors", data)}, data={"csrf": csrf})
    assert r.status_code == 201, r.text


def test_pages_send_the_security_headers(make_server, client_for):
    _, app = make_server()
    r = client_for(app).get("/")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.headers["X-Frame-Options"] == "DENY"
    assert "<script src=\"/static/lab.js\"" in r.text and "<script>" not in r.text


def test_trace_and_edit_run_as_jobs_with_their_results(make_server, client_for):
    ctx, app = make_server()
    client = client_for(app)
    assert client.post("/v1/traces", json={"prompt": PROMPT, "subject": "Louvre"}).status_code == 400
    job = client.post("/v1/traces", json={"prompt": PROMPT, "subject": "Eiffel Tower", "samples": 2})
    assert job.status_code == 202, job.text
    done = wait_job(client, job.json())
    assert done["state"] == "done", done
    trace = done["result"]
    assert set(trace["kinds"]) == {"hidden", "mlp", "attn"} and trace["samples"] == 2
    assert 0 <= trace["suggested_layer"] < ctx.host.lm.n_layers

    job = client.post("/v1/edits", json={"prompt": PROMPT, "subject": "Eiffel Tower", "target_new": "Rome",
                                         "target_true": "Paris", "layer": 1, "probes": ["The Eiffel Tower is in"],
                                         "neighbours": ["The Louvre is in"]})
    assert job.status_code == 202, job.text
    done = wait_job(client, job.json())
    assert done["state"] == "done", done
    result = done["result"]
    assert [r["group"] for r in result["rows"]] == ["prompt", "probes", "neighbours"]
    assert ctx.host.view().patch_ids == (result["patch"],)
    prompt_row = result["rows"][0]
    assert prompt_row["after"]["Rome"] != prompt_row["before"]["Rome"]
    again = client.post("/v1/probabilities", json={"texts": [PROMPT], "targets": ["Rome", "Paris"]}).json()
    assert again["probabilities"][PROMPT]["Rome"] == pytest.approx(prompt_row["after"]["Rome"], rel=1e-5)
    client.delete("/v1/patches")
    reverted = client.post("/v1/probabilities", json={"texts": [PROMPT], "targets": ["Rome", "Paris"]}).json()
    assert reverted["probabilities"][PROMPT] == prompt_row["before"]  # exactly


def test_compare_generates_with_and_without_the_patches(make_server, client_for):
    ctx, app = make_server()
    client = client_for(app)
    ctx.host.apply(rank_one_patch(ctx.host.lm, 1, scale=50.0))
    r = client.post("/v1/compare", json={"prompt": PROMPT, "max_tokens": 8, "seed": 3})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["with_patches"] != result["without_patches"]
    assert result["with_patches"] == complete(client).json()["choices"][0]["text"][: len(result["with_patches"])]
    assert ctx.host.view().version == 1  # compare leaves the stack as it was


def test_stop_strings_cut_the_text_streamed_or_not(make_server, client_for):
    _, app = make_server()
    client = client_for(app)
    whole = complete(client, max_tokens=12).json()["choices"][0]["text"]
    stop = whole[len(whole) // 2 : len(whole) // 2 + 2]
    expected = whole[: whole.find(stop)]
    plain = complete(client, max_tokens=12, stop=[stop]).json()["choices"][0]
    assert plain["text"] == expected and plain["finish_reason"] == "stop"
    with client.stream("POST", "/v1/completions", json={"prompt": PROMPT, "max_tokens": 12, "temperature": 0,
                                                        "stream": True, "stop": stop}) as r:
        chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    assert "".join(c["choices"][0]["text"] for c in chunks) == expected
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("body, reason", [
    ({"prompt": PROMPT, "n": 2}, "n = 1"),
    ({"prompt": PROMPT, "logprobs": 3}, "not supported"),
    ({"prompt": PROMPT, "temperature": "hot"}, "bad sampling parameter"),
    ({"prompt": PROMPT, "max_tokens": 10_000}, "max_new_tokens"),
    ({"prompt": 42}, "prompt must be"),
    ({"prompt": PROMPT, "model": "gpt-4"}, "this server serves"),
])
def test_bad_completion_requests_are_4xx_with_the_reason(make_server, client_for, body, reason):
    _, app = make_server()
    r = client_for(app).post("/v1/completions", json=body)
    assert 400 <= r.status_code < 500 and reason in r.json()["error"]["message"], r.text


def test_concurrent_streams_each_see_one_stack_while_a_patch_lands(make_server, client_for, live_server, patch_file):
    """Six streaming clients and a hot apply at once: every stream finishes, and each one's text is
    exactly the greedy text of the stack version its header names."""
    import threading

    import httpx

    ctx, app = make_server()
    patch = rank_one_patch(ctx.host.lm, 1, scale=50.0)
    data = patch_file(patch).read_bytes()
    body = {"prompt": PROMPT, "max_tokens": 24, "temperature": 0}
    with live_server(app) as server:
        expected = {"v0: none": httpx.post(server.url + "/v1/completions", json=body).json()["choices"][0]["text"]}
        results: list[tuple[str, str]] = []

        def stream() -> None:
            with httpx.stream("POST", server.url + "/v1/completions", json={**body, "stream": True}, timeout=60) as r:
                text = "".join(json.loads(line[6:])["choices"][0]["text"] for line in r.iter_lines()
                               if line.startswith("data: {"))
                results.append((r.headers["x-factpatch-stack"], text))

        threads = [threading.Thread(target=stream) for _ in range(6)]
        for i, t in enumerate(threads):
            t.start()
            if i == 2:
                r = httpx.post(server.url + "/v1/patches", content=data, headers={"Content-Type": "application/octet-stream"})
                assert r.status_code == 201
        for t in threads:
            t.join(60)
        expected[f"v1: {patch.id}"] = httpx.post(server.url + "/v1/completions", json=body).json()["choices"][0]["text"]
    assert len(results) == 6
    assert expected["v0: none"] != expected[f"v1: {patch.id}"]
    for label, text in results:
        assert text == expected[label], label
