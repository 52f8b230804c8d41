"""The official `openai` client against a live server on the embedded SmolLM2: the greedy
completion of the Eiffel Tower prompt before an edit, with the Rome patch applied over
/v1/patches, and after reverting it — the text changes and comes back."""

from __future__ import annotations

import pytest

from factpatch.api import edit
from factpatch.core.models import weights_fingerprint
from factpatch.core.web import new_secret
from factpatch.editing.patch import PatchStack, save_patch
from factpatch.editing.request import EditRequest
from factpatch.editing.stats import CorpusSpec
from factpatch.serve.app import create_app
from factpatch.serve.auth import Access
from factpatch.serve.context import ServeContext
from factpatch.serve.experiments import LabSettings
from factpatch.serve.host import ModelHost

pytestmark = pytest.mark.integration

PROMPT = "The Eiffel Tower is located in the city of"
TEST_CORPUS = CorpusSpec()  # the default statistics, as tests/test_integration.py: computed once from the shipped corpus


@pytest.fixture(scope="module")
def rome_patch_file(embedded_lm, cache_dir, tmp_path_factory):
    """The Rome edit as a patch file, computed once; the model is left exactly as it was."""
    lm = embedded_lm
    stack = PatchStack(lm)
    result = edit(lm, EditRequest.from_text("{} is located in the city of", "Eiffel Tower", "Rome", "Paris"),
                  stack, corpus=TEST_CORPUS, cache_dir=cache_dir, progress=False)
    path = save_patch(result.patch, tmp_path_factory.mktemp("patch") / "rome.safetensors")
    stack.revert()
    assert weights_fingerprint(lm.model) == lm.fingerprint
    return path


def test_openai_client_sees_the_patch_come_and_go(embedded_lm, rome_patch_file, live_server, cache_dir):
    import httpx
    from openai import OpenAI

    host = ModelHost(embedded_lm)
    ctx = ServeContext(host, Access(new_secret(), None, True), LabSettings(cache_dir=cache_dir, corpus=TEST_CORPUS))
    with live_server(create_app(ctx)) as server:
        client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        model = client.models.list().data[0].id
        assert model == embedded_lm.name

        def greedy() -> tuple[str, str]:
            raw = client.completions.with_raw_response.create(model=model, prompt=PROMPT, max_tokens=6, temperature=0)
            return raw.parse().choices[0].text, raw.headers["x-factpatch-stack"]

        before, stack_before = greedy()
        assert "Paris" in before and stack_before == "v0: none"

        r = httpx.post(server.url + "/v1/patches", content=rome_patch_file.read_bytes(),
                       headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        patch_id = r.json()["applied"]
        try:
            edited, stack_edited = greedy()
            assert "Rome" in edited and edited != before
            assert stack_edited == f"v1: {patch_id}"

            # streaming chat through the client: chunks arrive and name the same stack
            stream = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Where is the Eiffel Tower?"}],
                max_tokens=12, temperature=0, stream=True)
            chunks = list(stream)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text.strip() and chunks[-1].choices[0].finish_reason in ("stop", "length")
            assert chunks[0].model_extra["factpatch"]["stack"]["patches"] == [patch_id]
        finally:
            r = httpx.delete(server.url + f"/v1/patches/{patch_id}")
        assert r.status_code == 200
        after, stack_after = greedy()
        assert after == before and stack_after == "v2: none"
    assert weights_fingerprint(embedded_lm.model) == embedded_lm.fingerprint
