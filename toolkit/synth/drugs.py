"""Drug codes the generator prescribes, and how the shipped drug master classifies them.

The generator never guesses a drug's flags: it reads the drug master the toolkit ships
(``toolkit/data/drug_master.csv``; exact code first, else the longest matching prefix) and
sorts its candidate codes into *roles* by the flags the master gives them. When the master
is missing, the built-in flags below stand in (they follow YJ 薬効分類 prefixes).
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

from toolkit.resources import DRUG_MASTER

MASTER_PATH = DRUG_MASTER
MISUSE_CLASSES = frozenset({"hypnotic", "diuretic", "antidiabetic", "pde5"})


@dataclass(frozen=True)
class DrugFlags:
    """Classification of one drug code (unmatched codes are "not flagged")."""

    narcotic: bool = False
    psychotropic: bool = False
    high_risk: bool = False
    emergency_contraceptive: bool = False
    first_visit_caution: bool = False
    misuse_class: str | None = None

    @property
    def misuse(self) -> bool:
        """True when the misuse class is one of the V-1-(5)-④ signals."""
        return (self.misuse_class or "") in MISUSE_CLASSES


#: candidate codes: (code, name, built-in flags used only when no master file exists)
CANDIDATES: tuple[tuple[str, str, DrugFlags], ...] = (
    ("2171022F1020", "アムロジピン錠5mg", DrugFlags()),
    ("2325003F1010", "ファモチジン錠20mg", DrugFlags()),
    ("4490023F1020", "フェキソフェナジン塩酸塩錠60mg", DrugFlags()),
    ("1149019F1010", "ロキソプロフェンナトリウム錠60mg", DrugFlags()),
    ("6149003F1020", "クラリスロマイシン錠200mg", DrugFlags()),
    ("2233002F1010", "カルボシステイン錠500mg", DrugFlags()),
    ("2189016F1020", "ロスバスタチン錠2.5mg", DrugFlags()),
    (
        "1124007F1028",
        "トリアゾラム錠0.25mg",
        DrugFlags(psychotropic=True, misuse_class="hypnotic", first_visit_caution=True),
    ),
    (
        "1129009F1023",
        "ゾルピデム酒石酸塩錠5mg",
        DrugFlags(psychotropic=True, misuse_class="hypnotic", first_visit_caution=True),
    ),
    ("8119002C1020", "オキシコドン塩酸塩徐放錠5mg", DrugFlags(narcotic=True, first_visit_caution=True)),
    ("8114004F1020", "モルヒネ硫酸塩徐放錠10mg", DrugFlags(narcotic=True, first_visit_caution=True)),
    ("3332001F1010", "ワルファリンカリウム錠1mg", DrugFlags(high_risk=True, first_visit_caution=True)),
    (
        "3962002F1010",
        "メトホルミン塩酸塩錠250mg",
        DrugFlags(high_risk=True, misuse_class="antidiabetic", first_visit_caution=True),
    ),
    ("2139005F1010", "フロセミド錠20mg", DrugFlags(misuse_class="diuretic")),
    ("2590010F1020", "シルデナフィル錠50mg", DrugFlags(misuse_class="pde5")),
    ("2549008F1022", "レボノルゲストレル錠1.5mg", DrugFlags(emergency_contraceptive=True)),
)

#: EC tablets a vendor may send that the master does not list (a new generic's code): no master
#: code is a prefix of them, so the audit cannot tell they are EC (dq.ec_unclassified_drug)
UNLISTED_EC: tuple[tuple[str, str], ...] = (("2549099F1020", "レボノルゲストレル錠1.5mg（マスタ未収載）"),)

#: looser fallbacks when the master has no code for the strict role (the truth stays exact:
#: it is evaluated, not assumed; only the one-defect-one-rule purity is lost)
LOOSE_ROLES = {
    "benign": lambda f: not (f.narcotic or f.psychotropic or f.high_risk or f.emergency_contraceptive),
    "narcotic": lambda f: f.narcotic or f.psychotropic,
    "high_risk": lambda f: f.high_risk,
    "misuse": lambda f: f.misuse or f.psychotropic,
    "ec": lambda f: f.emergency_contraceptive,
    "chronic": lambda f: not f.emergency_contraceptive,
}

#: roles → predicate over flags
ROLES = {
    "benign": lambda f: (
        not (f.narcotic or f.psychotropic or f.high_risk or f.emergency_contraceptive or f.misuse)
    ),
    "narcotic": lambda f: (
        f.narcotic and not (f.psychotropic or f.high_risk or f.emergency_contraceptive or f.misuse)
    ),
    "high_risk": lambda f: (
        f.high_risk and not (f.narcotic or f.psychotropic or f.emergency_contraceptive or f.misuse)
    ),
    "misuse": lambda f: (
        f.misuse and not (f.narcotic or f.psychotropic or f.high_risk or f.emergency_contraceptive)
    ),
    "ec": lambda f: (
        f.emergency_contraceptive and not (f.narcotic or f.psychotropic or f.high_risk or f.misuse)
    ),
    "chronic": lambda f: not (f.narcotic or f.emergency_contraceptive),
}


def _bool(text: str | None) -> bool:
    return (text or "").strip().lower() in {"true", "1", "yes", "y", "t", "はい", "有", "あり"}


class DrugMaster:
    """Exact-then-longest-prefix classification, as the audit does it."""

    def __init__(self, rows: dict[str, tuple[str, DrugFlags]], source: str, sha256: str | None) -> None:
        self.rows = rows
        self.source = source
        self.sha256 = sha256
        self._lengths = sorted({len(k) for k in rows}, reverse=True)

    @classmethod
    def load(cls, path: Path | None = None) -> DrugMaster:
        """Read the shipped master, or fall back to the built-in candidate flags."""
        path = MASTER_PATH if path is None else Path(path)
        if path.exists():
            data = path.read_bytes()
            rows: dict[str, tuple[str, DrugFlags]] = {}
            text = data.decode("utf-8-sig")
            for rec in csv.DictReader(text.splitlines()):
                code = (rec.get("drug_code") or rec.get("code_prefix") or "").strip()
                if not code:
                    continue
                mc = (rec.get("misuse_class") or "").strip() or None
                rows[code] = (
                    rec.get("drug_name") or "",
                    DrugFlags(
                        _bool(rec.get("narcotic")),
                        _bool(rec.get("psychotropic")),
                        _bool(rec.get("high_risk")),
                        _bool(rec.get("emergency_contraceptive")),
                        _bool(rec.get("first_visit_caution")),
                        mc,
                    ),
                )
            return cls(rows, str(path), hashlib.sha256(data).hexdigest())
        return cls({c: (n, f) for c, n, f in CANDIDATES}, "built-in", None)

    def _match(self, code: str) -> DrugFlags | None:
        """Flags of the master row for ``code`` (exact, else the longest prefix), None if no row matches."""
        hit = self.rows.get(code)
        if hit is not None:
            return hit[1]
        for n in self._lengths:
            if n < len(code) and code[:n] in self.rows:
                return self.rows[code[:n]][1]
        return None

    def classify(self, code: str) -> DrugFlags:
        """Flags of ``code``: exact match, else the longest prefix, else not flagged."""
        return self._match(code) or DrugFlags()

    def is_classified(self, code: str) -> bool:
        """True when some master row matches ``code`` (exactly or as a prefix): the master knows the drug."""
        return self._match(code) is not None

    def unlisted_ec(self) -> list[tuple[str, str]]:
        """The :data:`UNLISTED_EC` codes this master does not classify (empty if it knows them all)."""
        return [(c, n) for c, n in UNLISTED_EC if not self.is_classified(c)]

    def roles(self) -> dict[str, list[tuple[str, str]]]:
        """Candidate (code, name) per role, by the master's own classification.

        Candidates come from the built-in list and from the master's full (12-char) codes,
        so every role is filled whenever the master can fill it.
        """
        pool = [(c, n) for c, n, _ in CANDIDATES]
        seen = {c for c, _ in pool}
        for code, (name, _) in sorted(self.rows.items()):
            if len(code) == 12 and code not in seen:
                pool.append((code, name or code))
                seen.add(code)
        out: dict[str, list[tuple[str, str]]] = {r: [] for r in ROLES}
        for code, name in pool:
            f = self.classify(code)
            for role, pred in ROLES.items():
                if pred(f):
                    out[role].append((code, name))
        for role, v in out.items():
            if not v:
                v.extend((c, n) for c, n in pool if LOOSE_ROLES[role](self.classify(c)))
        missing = [r for r, v in out.items() if not v]
        if missing:
            raise RuntimeError(f"drug master {self.source} has no code for generator roles: {missing}")
        return out
