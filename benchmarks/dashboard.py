"""Dashboard timings on an audited database: first render and a click, medians of N, peak RSS.

    python benchmarks/dashboard.py --db /tmp/dash1m/db.duckdb --repeat 3
    python benchmarks/dashboard.py --db /work/bench10m.duckdb --repeat 3 --browser

What it measures (nothing asserts a time):

- **import** — importing the app and bundling vega-embed offline (``alt.JupyterChart.enable_offline``),
  once per kernel;
- **first render** — ``Dashboard(db)``: the run's choices, verdict, per-rule rates, funnel, trend,
  the first record page, the run comparison and the three chart specs (what a Voilà kernel does
  after its imports);
- **click** — selecting a rule (the must rule with most findings, then back to all rules): every
  part below the chart re-read and redrawn;
- with ``--browser``: ``ocaudit dashboard`` served by Voilà, loaded in headless Chromium: page
  open → rule rows shown (kernel start, imports, render, widget transfer), and choosing the rule in
  the control → record list of that rule shown, and → every chart redrawn (the trend chart, sent
  last, shows the rule in its drawn subtitle).

Peak RSS is this process's high-water mark (VmHWM) after the in-process part; the one-minute
load average is printed with the figures (other work on the machine changes them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _median(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} s (min {min(xs):.2f}, max {max(xs):.2f})"


def _busiest_rule(db: str, run_id: str) -> str:
    import duckdb

    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute(
            "SELECT rule_id FROM rule_results WHERE run_id = ? AND level = 'must'"
            " ORDER BY violated + not_evidenced DESC, rule_id LIMIT 1",
            [run_id],
        ).fetchone()[0]
    finally:
        con.close()


def in_process(db: str, repeat: int) -> str:
    """Time the import, ``repeat`` first renders and ``repeat`` rule clicks; the rule clicked."""
    t = time.perf_counter()
    import altair as alt

    from toolkit.dashboard.app import Dashboard

    alt.JupyterChart.enable_offline()
    print(f"import + offline bundle: {time.perf_counter() - t:.2f} s")
    builds, clicks, backs = [], [], []
    app = None
    for _ in range(repeat):
        t = time.perf_counter()
        app = Dashboard(db, export_dir="/tmp/ocaudit-dashboard-bench")
        builds.append(time.perf_counter() - t)
    assert app is not None
    rule = _busiest_rule(db, app.sel.run_id)
    for _ in range(repeat):
        t = time.perf_counter()
        app.select_rule(rule)
        clicks.append(time.perf_counter() - t)
        t = time.perf_counter()
        app.select_rule(None)
        backs.append(time.perf_counter() - t)
    print(f"first render (Dashboard build): {_median(builds)}")
    print(f"click: select rule {rule}: {_median(clicks)}  ({app.records.total:,} records of all rules after)")
    print(f"click: back to all rules: {_median(backs)}")
    print(f"peak RSS (this process): {_hwm_mib():.0f} MiB")
    return rule


def in_browser(db: str, repeat: int, rule: str) -> None:
    """Serve with ``ocaudit dashboard`` and time page → rule rows, and choosing ``rule`` → its records."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    server = subprocess.Popen(
        [sys.executable, "-m", "toolkit", "dashboard", "--db", db, "--port", str(port), "--no-browser"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,2000"):
        opts.add_argument(flag)
    browser = webdriver.Chrome(
        service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts
    )

    def wait(pred, timeout: float = 300):  # type: ignore[no-untyped-def]
        end = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > end:
                raise TimeoutError("dashboard did not answer")
            time.sleep(0.05)

    def up() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            return False

    try:
        wait(up, 120)
        loads, clicks, redrawn = [], [], []
        for _ in range(repeat):
            t = time.perf_counter()
            browser.get(url)
            wait(lambda: browser.execute_script("return document.querySelectorAll('tr.rule-row').length > 0"))
            loads.append(time.perf_counter() - t)
            select = browser.find_element(By.CSS_SELECTOR, ".ocaudit-rule-control select")
            (option,) = [
                o for o in select.find_elements(By.TAG_NAME, "option") if o.text.startswith(rule + " ")
            ]
            t = time.perf_counter()
            option.click()
            wait(
                lambda: (
                    f"規則 {rule}:"
                    in (
                        browser.execute_script("return document.querySelector('.record-summary').innerText")
                        or ""
                    )
                )
            )
            clicks.append(time.perf_counter() - t)
            # the trend chart is sent last: its drawn subtitle names the rule once every part is redrawn
            wait(
                lambda: browser.execute_script(
                    "return [...document.querySelectorAll('.ocaudit-trend-chart svg text')]"
                    ".some(t => t.textContent.includes(arguments[0]))",
                    rule,
                )
            )
            redrawn.append(time.perf_counter() - t)
        print(f"browser: page open -> rule rows shown: {_median(loads)}")
        print(f"browser: choose rule -> its record list shown: {_median(clicks)}")
        print(f"browser: choose rule -> every chart redrawn: {_median(redrawn)}")
    finally:
        browser.quit()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)


def main() -> None:
    """Parse the arguments and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", required=True, help="audited DuckDB file")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--browser", action="store_true", help="also time the served app in headless Chromium")
    args = ap.parse_args()
    print(
        f"database {args.db} ({Path(args.db).stat().st_size / 2**20:.0f} MiB); load average {os.getloadavg()[0]:.1f}"
    )
    rule = in_process(args.db, args.repeat)
    if args.browser:
        in_browser(args.db, args.repeat, rule)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
