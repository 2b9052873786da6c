"""Seeded synthetic data set in the contract format, with its exact ground truth.

``generate_dataset`` writes every contract table except ``drug_master`` (the toolkit ships
one; the generator prescribes codes the shipped master classifies), plus
``ground_truth.csv`` (``rule_id,entity,entity_id,status`` for every violated or not-evidenced
(rule, entity) an audit implementing docs/rule-semantics.md must report) and
``generation.json`` (parameters, counts, injected defects per rule, the ``as_of`` date, and
``annual_report``: the expected figures of ``ocaudit survey annual --year 2026``, counted by
:mod:`toolkit.synth.annual` from its own random streams so the v1 tables are unchanged).

How: sessions are generated clean in self-contained chunks (see :mod:`toolkit.synth.chunk`),
defects are injected into distinct records (:mod:`toolkit.synth.inject`), and the ground
truth is then *evaluated* on the chunk's final rows by an independent implementation of the
rule semantics (:mod:`toolkit.synth.truth`). Memory is bounded by the chunk size.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from toolkit.contract import CONTRACT_VERSION
from toolkit.errors import UserError
from toolkit.store.files import make_dirs, open_owner_only, write_text
from toolkit.synth.annual import AnnualChunk, AnnualTruth, institution_codes
from toolkit.synth.chunk import AS_OF, DAYS, PERIOD_START_DAY, World, build_chunk
from toolkit.synth.drugs import DrugMaster
from toolkit.synth.inject import Injector
from toolkit.synth.io import NULL_I, Sink, to_arrow
from toolkit.synth.truth import ALL_RULES, evaluate

DEFAULT_CHUNK = 200_000
TABLES_OUT = (
    "institutions",
    "doctors",
    "patients",
    "care_plans",
    "sessions",
    "prescriptions",
    "ec_cases",
    "in_person_visits",
    "access_log",
)
PREFECTURES = [
    "東京都",
    "大阪府",
    "神奈川県",
    "愛知県",
    "福岡県",
    "北海道",
    "京都府",
    "兵庫県",
    "埼玉県",
    "千葉県",
    "宮城県",
    "広島県",
    "沖縄県",
    "長野県",
]
NAME_A = [
    "さくら",
    "あおば",
    "みなと",
    "ひかり",
    "みどり",
    "つばさ",
    "やまと",
    "はるか",
    "こすもす",
    "ひまわり",
    "けやき",
    "すずらん",
]
NAME_B = [
    "内科クリニック",
    "医院",
    "こどもクリニック",
    "レディースクリニック",
    "診療所",
    "総合クリニック",
    "ファミリークリニック",
]
SPECIALTIES = ["internal", "general", "pediatrics", "psychiatry", "dermatology", "obgyn"]


def _day(text: str) -> int:
    return int(np.datetime64(text, "D").astype(np.int64))


def build_world(
    sessions: int, seed: int, inject: bool, rate: float, master: DrugMaster
) -> tuple[World, dict[str, dict[str, np.ndarray]], Counter]:
    """Institutions and doctors (with their global defects) and the drug roles."""
    rng = np.random.default_rng([seed, 0])
    n_inst = max(3, int(round(sessions / 2000)))
    n_doc = max(10, int(round(sessions / 300)), 3 * n_inst)
    counts: Counter[tuple[str, str]] = Counter()
    inst_ids = np.array([f"I{j + 1:04d}" for j in range(n_inst)], dtype=object)
    doc_ids = np.array([f"D{j + 1:05d}" for j in range(n_doc)], dtype=object)
    weight = rng.lognormal(0.0, 0.35, n_inst)
    weight /= weight.sum()
    doc_inst = np.arange(n_doc) % n_inst
    rank = np.arange(n_doc) // n_inst
    specialty = np.array(SPECIALTIES, dtype=object)[
        rng.choice(len(SPECIALTIES), n_doc, p=[0.35, 0.25, 0.1, 0.1, 0.1, 0.1])
    ]
    specialty[rank == 0] = "obgyn"
    specialty[rank == 1] = "internal"
    ec_tr = np.where(
        (rng.random(n_doc) < 0.2) & (rank != 1), _day("2024-01-01") + rng.integers(0, 780, n_doc), NULL_I
    )
    ec_tr[rank == 1] = PERIOD_START_DAY + DAYS + 20  # EC training booked after the period
    online_tr = _day("2023-01-01") + rng.integers(0, 1150, n_doc)
    qualified = (specialty == "obgyn") | ((ec_tr != NULL_I) & (ec_tr <= PERIOD_START_DAY))
    late = np.zeros(n_doc, bool)
    doc_inst_out = inst_ids[doc_inst].copy()
    compliance = np.ones(n_inst, np.int8)
    if inject:
        cand = np.nonzero(rank >= 1)[0]
        n_late = min(max(1, int(round(rate * n_doc * DAYS / 45))), max(1, len(cand) // 3))
        pick = rng.choice(cand, n_late, replace=False)
        late[pick] = True
        online_tr[pick] = PERIOD_START_DAY + 45
        counts[("training.doctor_online", "violated")] += int(n_late)  # doctors; sessions in the truth
        free = np.setdiff1d(np.arange(n_doc), pick)
        n_aff = max(1, int(round(rate * n_doc)))
        aff = rng.choice(free, min(len(free), n_aff + 1), replace=False)
        doc_inst_out[aff[:-1]] = [f"I9{j:04d}" for j in range(len(aff) - 1)]  # closed, unknown ids
        doc_inst_out[aff[-1]] = None
        counts[("place.doctor_affiliated", "violated")] += len(aff) - 1
        counts[("place.doctor_affiliated", "not_evidenced")] += 1
        n_comp = max(1, int(round(rate * n_inst)))
        comp = rng.choice(n_inst, min(n_inst, n_comp + 1), replace=False)
        compliance[comp[:-1]] = 0
        compliance[comp[-1]] = -1
        counts[("place.compliance_published", "violated")] += len(comp) - 1
        counts[("place.compliance_published", "not_evidenced")] += 1
    names = np.array(
        [
            f"{NAME_A[rng.integers(0, len(NAME_A))]}{NAME_B[rng.integers(0, len(NAME_B))]}"
            for _ in range(n_inst)
        ],
        dtype=object,
    )
    institutions = {
        "institution_id": inst_ids,
        "name": names,
        "prefecture": np.array(PREFECTURES, dtype=object)[rng.integers(0, len(PREFECTURES), n_inst)],
        "contact_published": np.ones(n_inst, np.int8),
        "compliance_published": compliance,
        "in_person_backup_id": np.where(rng.random(n_inst) < 0.7, np.roll(inst_ids, 1), None),
    }
    doctors = {
        "doctor_id": doc_ids,
        "institution_id": doc_inst_out,
        "specialty": specialty,
        "online_training_on": online_tr,
        "ec_training_on": ec_tr,
    }
    world = World(
        n_inst=n_inst,
        n_doc=n_doc,
        inst_weight=weight,
        doc_inst=doc_inst,
        doc_ids=doc_ids,
        inst_ids=inst_ids,
        doc_qualified_ec=qualified,
        doc_late_training=late,
        doc_no_ec_training=(specialty != "obgyn") & (ec_tr == NULL_I),
        inst_docs=[np.nonzero(doc_inst == i)[0] for i in range(n_inst)],
        roles=master.roles(),
        unlisted_ec=master.unlisted_ec(),
    )
    return world, {"institutions": institutions, "doctors": doctors}, counts


def _chunk_plan(sessions: int, chunk_size: int) -> list[tuple[int, np.ndarray]]:
    n_chunks = min(DAYS, max(1, math.ceil(sessions / chunk_size)))
    plan = []
    done_days = 0
    for c in range(n_chunks):
        days = np.arange(c, DAYS, n_chunks)
        lo = sessions * done_days // DAYS
        done_days += len(days)
        hi = sessions * done_days // DAYS
        plan.append((hi - lo, days))
    return plan


def _rx_flags(rx: dict[str, np.ndarray], master: DrugMaster) -> dict[str, np.ndarray]:
    codes = rx["drug_code"]
    out = {
        k: np.full(len(codes), -1, np.int8)
        for k in ("f_narcotic", "f_psychotropic", "f_high_risk", "f_ec", "f_misuse", "f_classified")
    }
    cache: dict[str, tuple[int, ...]] = {}
    for i, c in enumerate(codes):
        if c is None:
            continue
        v = cache.get(c)
        if v is None:
            f = master.classify(c)
            v = cache[c] = (
                int(f.narcotic),
                int(f.psychotropic),
                int(f.high_risk),
                int(f.emergency_contraceptive),
                int(f.misuse),
                int(master.is_classified(c)),
            )
        for k, x in zip(out, v, strict=True):
            out[k][i] = x
    return out


def _register_eval(
    con: duckdb.DuckDBPyConnection, tables: dict[str, dict[str, np.ndarray]], master: DrugMaster | None
) -> None:
    alias = {
        "sessions": "s",
        "patients": "p",
        "care_plans": "cp",
        "prescriptions": "rx",
        "ec_cases": "ec",
        "access_log": "al",
        "doctors": "d",
        "institutions": "i",
    }
    for name, cols in tables.items():
        if name not in alias:
            continue  # in_person_visits: no rule reads it (the annual truth is counted apart)
        tab = to_arrow(name, cols, "eval")
        if name == "prescriptions" and master is not None:
            for k, v in _rx_flags(cols, master).items():
                tab = tab.append_column(k, pa.array(v == 1, type=pa.bool_(), mask=v < 0))
        con.register(alias[name], tab)


def generate_dataset(
    out_dir: str | Path,
    sessions: int,
    seed: int,
    fmt: str = "parquet",
    violation_rate: float = 0.02,
    clean: bool = False,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    progress: bool = False,
) -> dict[str, Any]:
    """Write a synthetic data set and its ground truth into ``out_dir``; return the summary.

    ``clean`` (or ``violation_rate`` 0) injects nothing: the ground truth is then empty.
    Otherwise every rule of the catalogue is broken at about ``violation_rate`` of its in-scope
    records (at least one per chunk where the chunk has a candidate), plus not-evidenced cases
    (NULL in a needed field) for the rules where that is possible.
    """
    if sessions < 1:
        raise UserError("--sessions must be at least 1")
    if not 0.0 <= violation_rate < 0.5:
        raise UserError("--violation-rate must be in [0, 0.5)")
    if fmt not in ("parquet", "csv"):
        raise UserError("--format must be parquet or csv")
    t0 = time.time()
    inject = not clean and violation_rate > 0
    out = make_dirs(out_dir, fix_existing=True)
    master = DrugMaster.load()
    world, glob, injected = build_world(sessions, seed, inject, violation_rate, master)
    sinks = {t: Sink(out, t, fmt) for t in TABLES_OUT}
    truth_counts: Counter[tuple[str, str]] = Counter()
    truth_path = out / "ground_truth.csv"
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    con.execute("SET memory_limit = '600MB'")
    # v1.1 columns from their own random streams: every v1 column above stays as it was
    inst_codes, far_inst = institution_codes(glob["institutions"]["prefecture"])
    glob["institutions"]["municipality_code"] = inst_codes
    annual = AnnualTruth(world.inst_ids, inst_codes)
    _register_eval(con, glob, None)
    plan = _chunk_plan(sessions, chunk_size)
    with open_owner_only(truth_path, "wb") as tfh:
        tfh.write(b"rule_id,entity,entity_id,status\n")
        for c, (n, days) in enumerate(plan):
            if n == 0:
                continue
            min_ec = min(16, n // 25) if inject else 0
            tables = build_chunk(world, c, n, days, seed, min_ec)
            if inject:
                injected.update(Injector(world, tables, violation_rate, seed, c).run())
            AnnualChunk(
                tables, world.inst_ids, inst_codes, far_inst, world.inst_docs, world.doc_ids, seed, c, inject
            ).run()
            annual.add(tables)
            _register_eval(con, tables, master)
            truth = evaluate(con, AS_OF, "chunk")
            _write_truth(tfh, truth, truth_counts)
            for t in (
                "patients",
                "care_plans",
                "sessions",
                "prescriptions",
                "ec_cases",
                "in_person_visits",
                "access_log",
            ):
                sinks[t].write(tables[t])
            del tables, truth
            if progress:
                print(f"  chunk {c + 1}/{len(plan)}: {n:,} sessions ({time.time() - t0:.0f} s)", flush=True)
        truth = evaluate(con, AS_OF, "global")
        _write_truth(tfh, truth, truth_counts)
    for t in ("institutions", "doctors"):
        sinks[t].write(glob[t])
    for sk in sinks.values():
        sk.close()
    con.close()
    summary = {
        "generator": "toolkit.synth.generate",
        "contract_version": CONTRACT_VERSION,
        "seed": seed,
        "sessions": sessions,
        "format": fmt,
        "violation_rate": violation_rate if inject else 0.0,
        "clean": not inject,
        "chunk_size": chunk_size,
        "chunks": len(plan),
        "period": {
            "from": str(np.datetime64(PERIOD_START_DAY, "D")),
            "to": str(np.datetime64(PERIOD_START_DAY + DAYS - 1, "D")),
        },
        "as_of": AS_OF,
        "drug_master": {
            "source": "toolkit/data/drug_master.csv" if master.sha256 else "built-in",
            "sha256": master.sha256,
        },
        "counts": {t: sinks[t].rows for t in TABLES_OUT},
        "injected": {
            r: {st: injected[(r, st)] for st in ("violated", "not_evidenced") if injected[(r, st)]}
            for r in ALL_RULES
            if injected[(r, "violated")] or injected[(r, "not_evidenced")]
        },
        "injected_note": (
            "records changed per rule; training.doctor_online 'violated' counts doctors "
            "trained after the period start, place.* count doctors/institutions"
        ),
        "ground_truth": {
            r: {st: truth_counts[(r, st)] for st in ("violated", "not_evidenced")}
            for r in ALL_RULES
            if truth_counts[(r, "violated")] or truth_counts[(r, "not_evidenced")]
        },
        "ground_truth_rows": sum(truth_counts.values()),
        "annual_report": annual.summary(),
    }
    write_text(out / "generation.json", json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    summary["seconds"] = round(time.time() - t0, 1)
    return summary


def _write_truth(fh, truth: pa.Table, counts: Counter) -> None:
    if truth.num_rows == 0:
        return
    pacsv.write_csv(truth, fh, write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    counts.update(zip(truth.column("rule_id").to_pylist(), truth.column("status").to_pylist(), strict=True))


def read_ground_truth(path: str | Path) -> list[tuple[str, str, str, str]]:
    """Rows of a ``ground_truth.csv`` as tuples (rule_id, entity, entity_id, status)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return [(r["rule_id"], r["entity"], r["entity_id"], r["status"]) for r in csv.DictReader(fh)]


def compare_truth(truth_path: str | Path, violations_path: str | Path) -> dict[str, dict[str, int]]:
    """Per rule: ``expected``, ``found``, ``missing`` (in the truth, not in the audit's violations CSV)
    and ``extra`` (reported but not in the truth), matching on (rule_id, entity, entity_id, status).

    Precision and recall are 1.0 exactly when every rule has ``missing == extra == 0``.
    """
    exp = set(read_ground_truth(truth_path))
    got = set(read_ground_truth(violations_path))
    out: dict[str, dict[str, int]] = {}
    for rule in sorted({r[0] for r in exp | got}):
        e = {x for x in exp if x[0] == rule}
        g = {x for x in got if x[0] == rule}
        out[rule] = {"expected": len(e), "found": len(g), "missing": len(e - g), "extra": len(g - e)}
    return out


def cli_generate(args: argparse.Namespace) -> int:
    """``ocaudit generate``: write the data set, print a short summary; exit code 0."""
    summary = generate_dataset(
        args.out,
        args.sessions,
        args.seed,
        args.format,
        args.violation_rate,
        args.clean,
        progress=args.sessions >= 500_000,
    )
    counts = ", ".join(f"{t} {n:,}" for t, n in summary["counts"].items())
    print(f"ocaudit generate: {summary['sessions']:,} sessions (seed {summary['seed']}) → {args.out}")
    print(f"  {counts}")
    print(
        f"  ground truth: {summary['ground_truth_rows']:,} rows over {len(summary['ground_truth'])} rules; "
        f"audit with --as-of {summary['as_of']}  ({summary['seconds']} s)"
    )
    return 0
