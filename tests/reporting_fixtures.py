"""A small, realistic run store for the reporting tests (real DuckDB, no mocks).

Two audit runs (RUN1 then RUN2) over three institutions, six doctors (one with an id that is an
XSS payload) and three months. Strata are drawn from a seeded generator; ``violations`` rows are
written to match the strata counts exactly and ``rule_results`` rows are the strata sums, as the
audit stage guarantees. Run 2 keeps part of run 1's violating entity ids (persisting) and adds
new ones. A few ``sessions`` rows of doctor D1 overlap, for the timeline chart.
"""

from __future__ import annotations

import json
import random
from html.parser import HTMLParser
from pathlib import Path

import duckdb

from toolkit import store

RUN1, RUN2 = "run-20260915-0001", "run-20261015-0001"
XSS = "<img src=x onerror=alert(1)>"
INSTITUTIONS = {"I1": ["D1", "D2", "D3"], "I2": ["D4", "D5"], "I3": [XSS]}
MONTHS = ["2026-07", "2026-08", "2026-09"]

#: rule_id, section, level, entity, title_en, title_ja, kind of strata
RULES = [
    (
        "consent.recorded",
        "V-1-(1)-②-i",
        "must",
        "session",
        "Consent recorded before the session",
        "同意の記録",
        "dated",
    ),
    (
        "judgement.each_session",
        "V-1-(1)-②-iii",
        "must",
        "session",
        "Feasibility judged each session",
        "実施の都度の判断",
        "dated",
    ),
    (
        "first_visit.basis",
        "V-1-(2)-②-iii,iv",
        "must",
        "session",
        "Basis for an online first visit",
        "初診の要件",
        "dated",
    ),
    (
        "exam.one_patient_at_a_time",
        "V-1-(6)-②-iii",
        "must",
        "session",
        "One patient at a time",
        "同時に複数の患者を診察しない",
        "dated",
    ),
    (
        "place.compliance_published",
        "V-2-(1)-②-vi",
        "must",
        "institution",
        "Compliance published",
        "指針遵守の公表",
        "institution",
    ),
    (
        "ec.witnessed_intake",
        "V-1-(2)-②-ix",
        "must",
        "ec_case",
        "Witnessed intake at the pharmacy",
        "薬剤師の面前での内服",
        "ec",
    ),
    (
        "ec.follow_up",
        "V-1-(2)-②-ix",
        "must",
        "ec_case",
        "Follow-up visit 3 weeks later",
        "約3週間後の受診",
        "ec",
    ),
    (
        "training.doctor_online",
        "V-3-(1)",
        "must",
        "session",
        "Doctor trained for online care",
        "オンライン診療研修の修了",
        "dated",
    ),
    (
        "evidence.chart_marked_online",
        "V-3-(3)",
        "should",
        "session",
        "Chart marked as online",
        "カルテにオンライン診療と明記",
        "dated",
    ),
    ("network.stable", "V-2-(1)-②-iii", "should", "session", "Stable connection", "通信の安定", "dated"),
]
NOT_EVALUABLE = (
    "security.mfa",
    "V-2-(5)-1-1",
    "should",
    "session",
    "Multi-factor authentication",
    "多要素認証",
)


def _strata(seed: int, worse_rule: str | None = None) -> list[tuple]:
    """(rule_id, institution, doctor, month, denominator, violated, not_evidenced) rows.

    ``worse_rule`` gets a much higher violation rate (a change beyond chance between runs).
    """
    rnd = random.Random(seed)
    rows = []
    for rule_id, *_rest, kind in RULES:
        for inst, doctors in INSTITUTIONS.items():
            if kind == "institution":
                rows.append((rule_id, inst, None, None, 1, int(inst == "I2"), 0))
                continue
            for doc in doctors:
                for month in MONTHS:
                    n = rnd.randint(2, 8) if kind == "ec" else rnd.randint(30, 120)
                    bad_p = 0.25 if doc in ("D5", XSS) else 0.04
                    if rule_id == worse_rule:
                        bad_p = 0.30
                    v = sum(rnd.random() < bad_p for _ in range(n))
                    ne = sum(rnd.random() < 0.02 for _ in range(n - v))
                    if (rule_id, doc, month) == ("exam.one_patient_at_a_time", "D1", "2026-08"):
                        v = max(v, 2)  # the overlapping sessions S-1 and S-2 below
                    if rule_id == "training.doctor_online":
                        v = ne = 0  # a rule that always passes
                    rows.append((rule_id, inst, doc, month, n, v, ne))
    return rows


def _insert_run(
    con,
    run_id: str,
    started: str,
    as_of: str,
    seed: int,
    keep_from: list[tuple] | None,
    worse_rule: str | None = None,
) -> list:
    strata = _strata(seed, worse_rule)
    con.execute(
        "INSERT INTO audit_runs VALUES (?, ?, ?, ?, '0.1.0', 'sha256:abc', ['ing-1'], ?)",
        [
            run_id,
            started,
            started,
            as_of,
            json.dumps({"as_of": as_of, "rules": None, "network_interruptions_max": 3}),
        ],
    )
    con.executemany(
        "INSERT INTO rule_results_strata VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [(run_id, *r) for r in strata]
    )
    previous = {}
    for r in keep_from or []:
        previous.setdefault((r[1], r[5], r[6], r[7]), []).append(r)
    viol = []
    for rule_id, inst, doc, month, _n, v, ne in strata:
        old = previous.get((rule_id, inst, doc, month), [])
        for i in range(v + ne):
            status = "violated" if i < v else "not_evidenced"
            # keep about half of the earlier run's ids in the same stratum (persisting)
            if i < len(old) // 2 + 1 and i < len(old):
                entity_id = old[i][3]
            else:
                entity_id = f"{run_id[-9:-5]}-{rule_id.split('.')[0]}-{inst}-{doc}-{month}-{i}"
            entity = next(x[3] for x in RULES if x[0] == rule_id)
            if entity == "institution":
                entity_id = inst
            viol.append((run_id, rule_id, entity, entity_id, status, inst, doc, month))
    con.executemany("INSERT INTO violations VALUES (?, ?, ?, ?, ?, ?, ?, ?)", viol)
    for rule_id, section, level, entity, t_en, t_ja, _kind in RULES:
        sub = [r for r in strata if r[0] == rule_id]
        n, v, ne = (sum(r[i] for r in sub) for i in (4, 5, 6))
        status = "failed" if v + ne else "passed"
        con.execute(
            "INSERT INTO rule_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, [], ?)",
            [run_id, rule_id, section, level, entity, t_en, t_ja, status, n, v, ne, ""],
        )
    rid, section, level, entity, t_en, t_ja = NOT_EVALUABLE
    con.execute(
        "INSERT INTO rule_results VALUES (?, ?, ?, ?, ?, ?, ?, 'not_evaluable', 0, 0, 0, ['mfa'], ?)",
        [run_id, rid, section, level, entity, t_en, t_ja, "access_log.mfa was not supplied"],
    )
    con.executemany(
        "INSERT INTO dq_results VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                run_id,
                "fk.sessions.doctor_id",
                "sessions",
                "Unknown doctor id",
                "未登録の医師ID",
                3,
                "3 sessions",
            ),
            (
                run_id,
                "quarantine.sessions",
                "sessions",
                "Quarantined rows",
                "隔離された行",
                5,
                "<script>alert(2)</script> bad dates",
            ),
        ],
    )
    con.executemany(
        "INSERT INTO attestations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                run_id,
                "place.clean_safe",
                "V-2-(2)-②-i",
                "Patient place is clean and safe",
                "患者の所在が清潔かつ安全",
                True,
                "QA office",
                as_of,
                None,
            ),
            (
                run_id,
                "emergency.setup",
                "V-1-(6)-②-v",
                "Emergency set-up in place",
                "急変時の体制",
                None,
                None,
                None,
                "not answered",
            ),
        ],
    )
    return viol


def _insert_sessions(con) -> None:
    """Doctor D1: four sessions on 2026-08-03 (Japan time), two of them overlapping."""
    rows = [
        ("S-1", "09:00", "09:15"),
        ("S-2", "09:10", "09:25"),
        ("S-3", "09:30", "09:40"),
        ("S-4", "10:00", "10:20"),
    ]
    for sid, a, b in rows:
        con.execute(
            "INSERT INTO sessions (session_id, patient_id, doctor_id, institution_id, kind, started_at,"
            " ended_at) VALUES (?, 'P-1', 'D1', 'I1', 'online_care', ?, ?)",
            [sid, f"2026-08-03 {a}:00+09", f"2026-08-03 {b}:00+09"],
        )
    rowids = [
        r[0]
        for r in con.execute(
            "SELECT rowid FROM violations WHERE run_id = ? AND rule_id = 'exam.one_patient_at_a_time'"
            " AND doctor_id = 'D1' AND month = '2026-08' AND status = 'violated' ORDER BY rowid LIMIT 2",
            [RUN2],
        ).fetchall()
    ]
    for sid, rowid in zip(("S-1", "S-2"), rowids, strict=True):
        con.execute("UPDATE violations SET entity_id = ? WHERE rowid = ?", [sid, rowid])


def build_fixture_db(path: str | Path, runs: int = 2) -> Path:
    """Create the fixture DuckDB at ``path`` with ``runs`` (0, 1 or 2) audit runs; returns the path."""
    path = Path(path)
    con = store.connect(path)
    try:
        store.ensure_schema(con)
        if runs >= 1:
            v1 = _insert_run(con, RUN1, "2026-09-15 03:00:00+00", "2026-09-15", seed=11, keep_from=None)
        if runs >= 2:
            _insert_run(
                con,
                RUN2,
                "2026-10-15 03:00:00+00",
                "2026-10-15",
                seed=12,
                keep_from=v1,
                worse_rule="first_visit.basis",
            )
            _insert_sessions(con)
    finally:
        con.close()
    return path


class _RowParser(HTMLParser):
    """Collects the attributes of every element whose class list contains ``cls``."""

    def __init__(self, cls: str) -> None:
        super().__init__()
        self.cls, self.rows = cls, []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if self.cls in (a.get("class") or "").split():
            self.rows.append(a)


def query(db: str | Path, sql: str, params: list | None = None) -> list[tuple]:
    """Rows of ``sql`` on the DuckDB file ``db``, opened read-only for this query only."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def html_rows(html: str, cls: str) -> list[dict[str, str | None]]:
    """Attributes (data-* included) of the elements of class ``cls`` in ``html``, in document order."""
    p = _RowParser(cls)
    p.feed(html)
    return p.rows


def element_attrs(html: str, element_id: str) -> dict[str, str | None]:
    """Attributes of the element with id ``element_id``."""

    class _P(HTMLParser):
        found: dict = {}

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if dict(attrs).get("id") == element_id:
                type(self).found = dict(attrs)

    _P().feed(html)
    return _P.found


SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"
SAMPLE_AS_OF = "2026-10-15"


def pipeline_available() -> str | None:
    """None when ingest and audit can run on sample_data, else the reason they cannot."""
    import importlib.util

    for mod in ("toolkit.ingest.run", "toolkit.audit.run"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not in this checkout yet"
    if not (SAMPLE_DATA / "sessions.csv").exists():
        return f"{SAMPLE_DATA} holds no sessions.csv"
    return None


def build_pipeline_db(path: str | Path, audits: int = 2) -> Path:
    """The real pipeline: `ocaudit ingest` of sample_data's contract tables, then `ocaudit audit` ``audits`` times.

    Only the files named after contract tables are ingested (copied to a folder next to ``path``),
    so other files the sample folder carries (ground truth, generation notes) do not matter.
    """
    import shutil

    from toolkit.cli import main
    from toolkit.contract import TABLE_ORDER

    path = Path(path)
    src = path.parent / "sample_tables"
    src.mkdir(parents=True, exist_ok=True)
    for f in SAMPLE_DATA.iterdir():
        if f.is_file() and f.name.split(".")[0] in TABLE_ORDER:
            shutil.copy(f, src / f.name)
    assert main(["ingest", "--db", str(path), str(src)]) == 0
    gen = SAMPLE_DATA / "generation.json"
    as_of = (
        json.loads(gen.read_text(encoding="utf-8")).get("as_of") if gen.exists() else None
    ) or SAMPLE_AS_OF
    audit = ["audit", "--db", str(path), "--as-of", as_of, "--quiet"]
    if (SAMPLE_DATA / "attestation.yaml").exists():
        audit += ["--attestation", str(SAMPLE_DATA / "attestation.yaml")]
    for _ in range(audits):
        assert main(audit) == 0
    return path


def generated_db(
    tmp: Path, sessions: int = 3000, seed: int = 7, name: str = "generated"
) -> tuple[Path, Path]:
    """``ocaudit generate`` of ``sessions`` (seed ``seed``) into ``tmp/data`` and ``ocaudit ingest`` of
    it into ``tmp/<name>.duckdb``; (data folder, database)."""
    from toolkit.cli import main

    data = tmp / "data"
    assert main(["generate", "--sessions", str(sessions), "--seed", str(seed), "--out", str(data)]) == 0
    db = tmp / f"{name}.duckdb"
    assert main(["ingest", "--db", str(db), str(data)]) == 0
    return data, db
