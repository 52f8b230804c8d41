"""The lab in a real browser (Playwright, Debian's chromium) on the embedded SmolLM2: trace a
prompt and see the heatmaps, edit Eiffel Tower → Rome and see the probabilities change, compare
generations, revert and see the original probabilities back exactly, and have a foreign patch refused.

Screenshots go to $FACTPATCH_SERVE_SCREENSHOTS when set (docs/lab.md's pictures come from
`FACTPATCH_SERVE_SCREENSHOTS=docs/img pytest tests/serve -m browser`), else to a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect
from serve_helpers import rank_one_patch

from factpatch.core.models import weights_fingerprint
from factpatch.core.web import new_secret
from factpatch.editing.patch import save_patch
from factpatch.editing.registry import edit_layer
from factpatch.editing.stats import CorpusSpec
from factpatch.serve.app import create_app
from factpatch.serve.auth import Access
from factpatch.serve.context import ServeContext
from factpatch.serve.experiments import LabSettings
from factpatch.serve.host import ModelHost

pytestmark = [pytest.mark.browser, pytest.mark.integration]

TEST_CORPUS = CorpusSpec()  # the default statistics, as tests/test_integration.py: computed once from the shipped corpus


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("FACTPATCH_SERVE_SCREENSHOTS") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cells(page, column: str) -> list[float]:
    return page.eval_on_selector_all(f"#probabilities tbody td.{column}", "tds => tds.map(td => Number(td.dataset.p))")


def test_the_whole_loop_in_the_lab(browser, embedded_lm, live_server, cache_dir, shots, tmp_path, fresh_tiny):
    lm = embedded_lm
    ctx = ServeContext(ModelHost(lm), Access(new_secret(), None, True),
                       LabSettings(cache_dir=cache_dir, corpus=TEST_CORPUS))
    foreign = save_patch(rank_one_patch(fresh_tiny("llama")), tmp_path / "foreign.safetensors")
    with live_server(create_app(ctx)) as server:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url + "/")
        page.wait_for_selector("text=No patches applied")

        # 1. locate: three heatmaps with token labels, the subject marked, values on hover
        page.fill("#trace-samples", "2")  # the plumbing, not a smooth map: a few times quicker than 10
        page.click("#trace-run")
        page.wait_for_selector("#trace-progress:not([hidden])")
        page.wait_for_selector("svg.heatmap >> nth=2", timeout=600_000)
        kinds = page.eval_on_selector_all("svg.heatmap", "maps => maps.map(m => m.dataset.kind)")
        assert kinds == ["hidden", "mlp", "attn"]
        subject_labels = page.eval_on_selector_all("svg.heatmap[data-kind=mlp] text.subject", "ts => ts.map(t => t.textContent)")
        assert subject_labels and all(label.endswith(" *") for label in subject_labels)
        assert "Tower" in "".join(subject_labels)
        n_tokens = len(page.query_selector_all("svg.heatmap[data-kind=hidden] text.token"))
        n_cells = len(page.query_selector_all("svg.heatmap[data-kind=hidden] rect.cell"))
        assert n_cells == n_tokens * lm.n_layers
        page.hover("svg.heatmap[data-kind=mlp] rect.cell >> nth=40")
        assert "P(" in page.inner_text("#heat-value") and "layer" in page.inner_text("#heat-value")
        assert page.is_visible("svg.heatmap[data-kind=mlp] rect.suggested")
        suggested = page.inner_text("#suggested")
        assert "Suggested edit layer" in suggested
        page.screenshot(path=shots / "lab-trace.png", full_page=True)
        page.click("#use-suggested")
        assert page.input_value("#edit-layer") == suggested.split(":")[1].split("(")[0].strip()
        page.fill("#edit-layer", str(edit_layer(lm)))  # the layer whose statistics the suite has cached

        # 2. edit: Eiffel Tower → Rome, the probabilities change
        page.click("#edit-run")
        page.wait_for_selector("#edit-status >> text=applied", timeout=600_000)
        before, after = cells(page, "before-new"), cells(page, "after-new")
        groups = page.eval_on_selector_all("#probabilities tbody tr", "rows => rows.map(r => r.dataset.group)")
        assert groups == ["prompt", "probes", "neighbours"]
        assert after[0] > 0.5 > before[0]  # P(Rome) on the prompt
        expect(page.locator("#patch-table tbody tr[data-id]")).to_have_count(1)  # the table refreshes after the edit
        page.screenshot(path=shots / "lab-edit.png", full_page=True)

        # 3. compare: the same prompt with and without the patch, same seed
        page.click("#compare-run")
        page.wait_for_selector("#compare-status >> text=seed", timeout=60_000)
        assert "Rome" in page.inner_text("#with-patches")
        assert "Paris" in page.inner_text("#without-patches")
        page.locator("#compare").screenshot(path=shots / "lab-compare.png")

        # 4. revert: the original probabilities, exactly
        page.click("#patch-table button.revert")
        page.wait_for_selector("text=No patches applied")
        page.wait_for_selector("#edit-status >> text=original weights")
        assert cells(page, "now-new") == before
        assert weights_fingerprint(lm.model) == lm.fingerprint
        page.locator("#edit").screenshot(path=shots / "lab-reverted.png")

        # 5. upload a foreign model's patch: refused with the reason
        page.set_input_files("#upload-file", str(foreign))
        page.click("#upload-run")
        page.wait_for_selector("#upload-status >> text=refused")
        assert "made on another model" in page.inner_text("#upload-status")
        assert ctx.host.view().patch_ids == ()
        page.locator("#patches").screenshot(path=shots / "lab-upload-refused.png")
        page.close()
        # the browser logs the refused upload's 400 itself; anything else is the page's fault
        assert [e for e in errors if "status of 400" not in e] == [], errors
