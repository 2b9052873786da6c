"""``ocaudit dashboard``: serve ``00_dashboard.ipynb`` with Voilà on 127.0.0.1, code cells hidden.

Voilà runs the notebook in a fresh kernel per browser tab with ``OCAUDIT_DB`` set to the
database; the page shows only the app's output (Voilà never shows code cells unless asked with
``--strip_sources=False``, which is not passed). The server listens on 127.0.0.1 only and asks
for no token: only programs on this computer can reach it (see README, "Dashboard").
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

from toolkit import resources
from toolkit.errors import UserError

NOTEBOOK = "00_dashboard.ipynb"
HOST = "127.0.0.1"
#: Holds voila/templates/ocaudit: Voilà's lab template without its CDN stylesheet links.
TEMPLATES_ROOT = Path(__file__).resolve().parent / "jupyter"
DEFAULT_PORT = 8866


def notebook_path() -> Path:
    """The dashboard notebook: the checkout's ``notebooks/`` or the copy inside the installed package."""
    return resources.shipped_dir("notebooks") / NOTEBOOK


def _check_port(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError as exc:
            raise UserError(
                f"port {port} on {HOST} is in use ({exc.strerror}); ポート {port} は使用中です。"
                " give another one with --port N"
            ) from exc


def voila_command(db: Path, port: int, open_browser: bool) -> list[str]:
    """The Voilà command line serving the dashboard notebook for ``db`` on 127.0.0.1:``port``."""
    cmd = [
        sys.executable,
        "-m",
        "voila",
        str(notebook_path()),
        f"--port={port}",
        f"--Voila.ip={HOST}",
        "--show_tracebacks=False",
        "--theme=light",
        "--template=ocaudit",
        # one kernel runs the notebook ahead of the first visit (and again after each), so a page opens
        # without waiting for the kernel start and the imports
        "--preheat_kernel=True",
        "--pool_size=1",
    ]
    if not open_browser:
        cmd.append("--no-browser")
    return cmd


def cli_dashboard(args: argparse.Namespace) -> int:
    """Check the database and Voilà, print the URL (JA/EN), then run Voilà until Ctrl+C."""
    from toolkit.dashboard import queries

    db = Path(args.db).resolve()
    if importlib.util.find_spec("voila") is None or importlib.util.find_spec("ipywidgets") is None:
        raise UserError(
            "Voilà と ipywidgets がインストールされていません。 Voilà and ipywidgets are not installed: "
            "pip install 'ocaudit[notebooks]' (in a checkout: make venv)"
        )
    run_id = queries.check_database(db)  # missing file, no run store, or no complete run: UserError
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: give a port between 1 and 65535")
    _check_port(args.port)
    url = f"http://{HOST}:{args.port}/"
    print(
        f"ダッシュボードを起動します starting the dashboard for {db.name} (監査 run {run_id})\n"
        f"  ブラウザで開く open in a browser: {url}\n"
        "  この端末からのみ接続できます reachable from this computer only (127.0.0.1); Ctrl+C で終了 to stop",
        flush=True,
    )
    jupyter_path = os.pathsep.join(p for p in (str(TEMPLATES_ROOT), os.environ.get("JUPYTER_PATH", "")) if p)
    env = {**os.environ, "OCAUDIT_DB": str(db), "JUPYTER_PATH": jupyter_path}
    try:
        return subprocess.call(voila_command(db, args.port, not args.no_browser), env=env)
    except KeyboardInterrupt:
        return 0
