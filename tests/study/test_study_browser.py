"""End to end in a real browser: Playwright drives Debian's chromium through a whole study.

Screenshots go to $FACTPATCH_STUDY_SCREENSHOTS when set (the docs' pictures come from
`FACTPATCH_STUDY_SCREENSHOTS=docs/img pytest tests/study -m browser`), else to a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from factpatch.study import db
from factpatch.study.analyze import analyze_study
from factpatch.study.app import create_app
from factpatch.study.create import create_study
from factpatch.study.scenarios import Scenario

pytestmark = pytest.mark.browser

@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("FACTPATCH_STUDY_SCREENSHOTS") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def ranks_shown(page, criterion: str) -> dict[str, str]:
    """{label: rank} as the page's radio buttons hold them now."""
    return page.evaluate(
        """(c) => Object.fromEntries(Array.from(
            document.querySelectorAll(`input[name^="${c}-"]:checked`), (r) => [r.name.slice(-1), r.value]))""",
        criterion,
    )


def test_rater_completes_study_and_analysis_sees_it(browser, study, live_server, shots, tmp_path):
    given: dict[int, dict[str, dict[str, str]]] = {}  # position -> criterion -> label -> rank
    with live_server(create_app(study.db_path)) as server:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))

        page.goto(server.url + study.paths[0])
        assert page.locator("h1").inner_text() == "Instructions"
        page.screenshot(path=shots / "study-instructions.png", full_page=True)
        page.get_by_role("button", name="Begin").click()

        # Scenario 1: consistency with the mouse, fluency with the keyboard only.
        page.wait_for_selector("text=Scenario 1 of 4")
        # study.js runs under the CSP: it has filled in the grid's status line
        assert page.locator(".grid-status").first.inner_text() == "Still to rank: texts A, B and C."
        page.screenshot(path=shots / "study-scenario.png", full_page=True)
        for label, rank in (("B", 1), ("C", 2), ("A", 3)):
            page.locator(f'input[name="consistency-{label}"][value="{rank}"]').click()
        page.locator('input[name="fluency-A"][value="1"]').focus()
        page.keyboard.press("Space")  # A: 1st
        page.keyboard.press("Tab")
        page.keyboard.press("ArrowRight")  # B: 2nd
        page.keyboard.press("Tab")
        page.keyboard.press("ArrowRight")  # C: 2nd for a moment: a tie, shown, not resolved behind its back
        assert "have the same rank" in page.locator(".rank-grid").nth(1).inner_text()
        page.keyboard.press("ArrowRight")  # C: 3rd
        given[1] = {"consistency": ranks_shown(page, "consistency"), "fluency": ranks_shown(page, "fluency")}
        assert given[1] == {"consistency": {"A": "3", "B": "1", "C": "2"}, "fluency": {"A": "1", "B": "2", "C": "3"}}
        page.screenshot(path=shots / "study-scenario-ranked.png", full_page=True)
        page.get_by_role("button", name="Submit and continue").focus()
        page.keyboard.press("Enter")

        # Scenario 2: an incomplete ranking is held back in the page, then a swap keeps it complete.
        page.wait_for_selector("text=Scenario 2 of 4")
        page.locator('input[name="consistency-A"][value="1"]').click()
        page.get_by_role("button", name="Submit and continue").click()
        assert "Consistency: still to rank: texts B and C." in page.locator(".form-status").inner_text()
        assert "Scenario 2 of 4" in page.content()  # nothing was sent
        for label, rank in (("B", 2), ("C", 3)):
            page.locator(f'input[name="consistency-{label}"][value="{rank}"]').click()
        page.locator('input[name="consistency-C"][value="1"]').click()  # C takes 1st, A gets C's 3rd
        assert ranks_shown(page, "consistency") == {"A": "3", "B": "2", "C": "1"}
        for label, rank in (("A", 2), ("B", 3), ("C", 1)):
            page.locator(f'input[name="fluency-{label}"][value="{rank}"]').click()
        given[2] = {"consistency": ranks_shown(page, "consistency"), "fluency": ranks_shown(page, "fluency")}
        page.get_by_role("button", name="Submit and continue").click()

        # Coming back later resumes at scenario 3.
        page.wait_for_selector("text=Scenario 3 of 4")
        page.close()
        page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=1, is_mobile=True,
                                has_touch=True)
        page.goto(server.url + study.paths[0])
        assert "Scenario 3 of 4" in page.content()
        page.screenshot(path=shots / "study-scenario-phone.png", full_page=True)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
        for position in (3, 4):
            for criterion in ("consistency", "fluency"):
                for label, rank in (("A", 1), ("B", 2), ("C", 3)):
                    page.locator(f'input[name="{criterion}-{label}"][value="{rank}"]').tap()
            given[position] = {c: ranks_shown(page, c) for c in ("consistency", "fluency")}
            page.locator("button[type=submit]").tap()
            if position == 3:
                page.wait_for_selector("text=Scenario 4 of 4")
        page.wait_for_selector("text=Thank you!")
        page.screenshot(path=shots / "study-done.png", full_page=True)
        page.close()

        # The admin signs in with the token and sees the answers.
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(server.url + "/admin")
        assert "Admin sign-in" in page.content()
        page.screenshot(path=shots / "study-admin-login.png")
        page.fill("#token", study.admin_token)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector("text=Answers so far")
        assert "4 of 12 scenario rankings submitted" in page.content()
        page.screenshot(path=shots / "study-admin.png", full_page=True)
        with page.expect_download() as download:
            page.get_by_role("link", name="Export CSV").click()
        csv_text = Path(download.value.path()).read_text()
        assert len(csv_text.strip().splitlines()) == 1 + 4 * 2 * 3
        page.close()
        assert errors == []

    # What the browser sent is what the database holds and what the analysis counts.
    conn = db.connect(study.db_path)
    rows = db.ranking_rows(conn)
    conn.close()
    stored: dict[int, dict[str, dict[str, str]]] = {}
    for r in rows:
        stored.setdefault(r.position, {}).setdefault(r.criterion, {})[r.label] = str(r.rank)
    assert stored == given
    analysis = analyze_study(study.db_path, tmp_path / "analysis", n_boot=200)
    assert (analysis.answers, analysis.raters_answering) == (4, 1)
    assert sum(sum(v) for v in analysis.criteria[0].rank_counts.values()) == 4 * 3


def test_hostile_text_shows_as_text_and_never_runs(browser, tmp_path, live_server, shots):
    hostile = '<script>window.pwned = 1</script><img src="x" onerror="window.pwned = 2">'
    scenario = Scenario("x", 'The <i>Eiffel Tower</i> is in "Rome"', "p", {"a": "Fine text. " + hostile, "b": "Other."})
    invites = create_study(tmp_path / "h.db", [scenario], raters=1, seed=0)
    with live_server(create_app(invites.db_path)) as server:
        page = browser.new_page()
        page.goto(server.url + invites.paths[0])
        page.get_by_role("button", name="Begin").click()
        page.wait_for_selector("text=Scenario 1 of 1")
        assert page.evaluate("window.pwned") is None
        shown = page.locator("article.text").all_inner_texts()
        assert any(hostile in t for t in shown)
        assert page.locator(".claim").inner_text() == 'The <i>Eiffel Tower</i> is in "Rome"'
        assert page.locator("article.text script, article.text img, .claim i").count() == 0
        page.close()
