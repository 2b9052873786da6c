"""``ocaudit dashboard`` in a real browser: Voilà on a free port, headless Chromium, select a rule.

The server is the real command (a subprocess in its own process group, killed at the end); the
page is the real app. Checks: the verdict and the rule rows are shown, no code cell or input
area is visible, choosing a rule in the control leaves exactly that rule's violation ids of the
run store in the record list, marking one record of it justified (name, note, save) writes exactly
that mark to ``review_marks`` and shows it in the row, and every resource the page loaded came from 127.0.0.1 (nothing
from a CDN). Screenshots before and after are kept under ``build/test-artifacts/dashboard/``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from tests.fixtures.chrome import headless_chrome
from tests.fixtures.secutil import ROOT, env
from tests.reporting_fixtures import RUN2, build_fixture_db
from toolkit.store import files

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = ROOT / "build" / "test-artifacts" / "dashboard"
RULE = "ec.witnessed_intake"  # 11 findings in the fixture run: one page, so the whole list is compared
NOTE = "救急搬送のため emergency transfer"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fixture_db(tmp_path_factory.mktemp("dash") / "fx.duckdb")


@pytest.fixture(scope="module")
def server(db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``ocaudit dashboard --no-browser --port P`` running; its URL. The process group is killed after."""
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        pytest.skip("chromium/chromedriver not installed (run `make browser` to install Debian's packages)")
    pytest.importorskip("voila", reason="Voilà not installed: pip install 'ocaudit[notebooks]'")
    port = _free_port()
    log = tmp_path_factory.mktemp("dashlog") / "server.log"
    with open(log, "wb") as out:  # noqa: SIM115 - the child writes to it until the end of the module
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "toolkit",
                "dashboard",
                "--db",
                str(db),
                "--port",
                str(port),
                "--no-browser",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env(),
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/"

    def served() -> bool:
        if proc.poll() is not None:
            raise AssertionError(
                f"dashboard exited {proc.returncode}: {log.read_text(errors='replace')[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback only
                return r.status == 200
        except OSError:
            return False

    try:
        _wait_until(served, 60, "the dashboard server")
        printed = log.read_text(errors="replace")
        assert url in printed and "ブラウザで開く open in a browser" in printed
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _violation_ids(db: Path, rule_id: str) -> set[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT entity_id FROM violations WHERE run_id = ? AND rule_id = ?", [RUN2, rule_id]
        ).fetchall()
    finally:
        con.close()
    return {r[0] for r in rows}


def _marks(db: Path) -> list[tuple[str, str, str, str, str]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            "SELECT rule_id, entity_id, state, marked_by, note FROM review_marks ORDER BY mark_id"
        ).fetchall()
    finally:
        con.close()


def _save(png: bytes, tmp_path: Path, name: str) -> None:
    files.write_bytes(tmp_path / name, png)
    files.make_dirs(ARTIFACTS, fix_existing=True)
    files.write_bytes(ARTIFACTS / name, png)


def test_dashboard_select_rule_shows_its_records_and_loads_nothing_remote(
    server: str, db: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser = headless_chrome(CHROMIUM, DRIVER, tmp_path / "chrome-profile", "1280,2400")
    try:
        browser.get(server)
        js = browser.execute_script
        _wait_until(
            lambda: js(
                "return document.querySelectorAll('table.ocaudit-rules tr.rule-row').length > 0"
                " && document.querySelectorAll('.ocaudit-verdict').length > 0"
                " && document.querySelectorAll('.ocaudit-rules-chart svg, .ocaudit-rules-chart canvas').length > 0"
            ),
            60,
            "the verdict, rule rows and the chart",
        )
        text = js("return document.body.innerText")
        assert "判定 不適合 not compliant" in text
        assert js("return document.querySelectorAll('table.ocaudit-rules tr.rule-row').length") == 8
        code = js(
            "return Array.from(document.querySelectorAll('.jp-InputArea, .jp-InputPrompt, .CodeMirror, .cm-editor'))"
            ".filter(e => e.offsetParent !== null).length"
        )
        assert code == 0 and "import os" not in text and "Dashboard(DB)" not in text
        _save(browser.get_screenshot_as_png(), tmp_path, "before.png")

        select = browser.find_element(By.CSS_SELECTOR, ".ocaudit-rule-control select")
        (option,) = [o for o in select.find_elements(By.TAG_NAME, "option") if o.text.startswith(RULE + " ")]
        option.click()
        _wait_until(
            lambda: f"規則 {RULE}:" in js("return document.querySelector('.record-summary').innerText"),
            20,
            "the record list of the selected rule",
        )
        shown = js(
            "return Array.from(document.querySelectorAll('table.ocaudit-records tbody tr'))"
            ".map(r => [r.querySelector('td.rule-id').innerText, r.querySelector('td.entity-id').innerText])"
        )
        expected = _violation_ids(db, RULE)
        assert 0 < len(expected) <= 50
        assert {rule for rule, _ in shown} == {RULE}
        assert sorted(eid for _, eid in shown) == sorted(expected)
        assert f"{len(expected)} 件" in js("return document.querySelector('.record-summary').innerText")
        assert js("return document.querySelector('tr.rule-row.selected').dataset.rule") == RULE
        _save(browser.get_screenshot_as_png(), tmp_path, "after.png")

        # mark one record of the list justified, with a name and a note; the DB and the row show it
        picker = Select(browser.find_element(By.CSS_SELECTOR, ".ocaudit-mark-picker select"))
        chosen = picker.options[0].text.split()[0]
        picker.select_by_index(0)
        Select(browser.find_element(By.CSS_SELECTOR, ".ocaudit-mark-state select")).select_by_visible_text(
            "正当な例外 justified"
        )
        browser.find_element(By.CSS_SELECTOR, ".ocaudit-mark-who input").send_keys("qa-07")
        browser.find_element(By.CSS_SELECTOR, ".ocaudit-mark-note textarea").send_keys(NOTE)
        browser.find_element(By.CSS_SELECTOR, "button.ocaudit-mark-save").click()
        _wait_until(
            lambda: (
                "1 件を記録しました" in js("return document.querySelector('.ocaudit-mark-status').innerText")
            ),
            20,
            "the saved-mark message",
        )
        assert _marks(db) == [(RULE, chosen, "justified", "qa-07", NOTE)]
        states = js(
            "return Object.fromEntries(Array.from(document.querySelectorAll('table.ocaudit-records tbody tr'))"
            ".map(r => [r.querySelector('td.entity-id').innerText, r.querySelector('td.review-state').innerText]))"
        )
        assert states[chosen].startswith("正当な例外 justified") and NOTE in states[chosen]
        assert all(v.startswith("未対応 open") for k, v in states.items() if k != chosen)
        browser.execute_script("document.querySelector('.ocaudit-review-panel').scrollIntoView()")
        _save(browser.get_screenshot_as_png(), tmp_path, "marked.png")

        loaded = js("return [document.URL].concat(performance.getEntriesByType('resource').map(e => e.name))")
        remote = [
            u for u in loaded if not u.startswith(("http://127.0.0.1:", "ws://127.0.0.1:", "data:", "blob:"))
        ]
        assert remote == [], remote
        assert len(loaded) > 5  # the page really loaded its scripts and styles (from 127.0.0.1)
    finally:
        browser.quit()
