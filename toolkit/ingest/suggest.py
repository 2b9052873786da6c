"""Which contract column a vendor header probably means: hints for warnings, refusals and mappings.

Data, not magic: a small table of common Japanese header words (:data:`JA_WORDS`), then
``difflib`` on the header normalised to ``snake_case`` (``Session ID``, ``sessionId`` and
``SESSION-ID`` all read ``session_id``). Used for "did you mean `consent_at`?" in the ingest
warnings and refusals, and for the column guesses of ``ocaudit mapping init``. A guess is only
ever a hint: nothing is renamed without a mapping file.
"""

from __future__ import annotations

import difflib
import re
import shlex
import unicodedata
from collections.abc import Iterable

from toolkit.contract import TABLES
from toolkit.errors import InputFileError
from toolkit.ingest.readers import SourceFile, detect_encoding

#: Common Japanese header words of vendor exports → contract column. A word applies to the tables
#: that have the column; a header containing a word (``診療開始日時`` ⊃ ``開始日時``) matches too,
#: the longest word first.
JA_WORDS: dict[str, str] = {
    "受診ID": "session_id",
    "診療ID": "session_id",
    "セッションID": "session_id",
    "受付番号": "session_id",
    "患者ID": "patient_id",
    "患者番号": "patient_id",
    "患者コード": "patient_id",
    "カルテ番号": "patient_id",
    "医師ID": "doctor_id",
    "医師番号": "doctor_id",
    "医師コード": "doctor_id",
    "担当医ID": "doctor_id",
    "医療機関ID": "institution_id",
    "医療機関コード": "institution_id",
    "施設ID": "institution_id",
    "施設コード": "institution_id",
    "医療機関名": "name",
    "施設名": "name",
    "都道府県": "prefecture",
    "診療科": "specialty",
    "専門": "specialty",
    "研修修了日": "online_training_on",
    "研修受講日": "online_training_on",
    "緊急避妊研修": "ec_training_on",
    "生年月日": "birth_date",
    "生年": "birth_year",
    "性別": "sex",
    "診療区分": "kind",
    "区分": "kind",
    "診療形態": "care_form",
    "開始日時": "started_at",
    "開始時刻": "started_at",
    "終了日時": "ended_at",
    "終了時刻": "ended_at",
    "初診": "is_first_visit",
    "かかりつけ": "is_regular_doctor",
    "通信手段": "modality",
    "同意日時": "consent_at",
    "合意日時": "consent_at",
    "説明日時": "explained_at",
    "転帰": "outcome",
    "紹介日時": "referred_at",
    "急変": "is_emergency",
    "緊急": "is_emergency",
    "本人確認": "patient_id_method",
    "録画": "recording_saved",
    "通信断": "network_interruptions",
    "切断回数": "network_interruptions",
    "計画ID": "care_plan_id",
    "診療計画ID": "care_plan_id",
    "処方ID": "rx_id",
    "処方番号": "rx_id",
    "薬剤コード": "drug_code",
    "医薬品コード": "drug_code",
    "YJコード": "drug_code",
    "薬剤名": "drug_name",
    "医薬品名": "drug_name",
    "薬品名": "drug_name",
    "数量": "quantity",
    "処方量": "quantity",
    "処方日数": "days_supply",
    "投与日数": "days_supply",
    "日数": "days_supply",
    "院内外": "dispensing",
    "調剤区分": "dispensing",
    "薬局ID": "pharmacy_id",
    "調剤日時": "dispensed_at",
    "面前内服": "witnessed_intake",
    "作成日時": "created_at",
    "対面診察日時": "in_person_assessed_at",
    "削除日時": "deleted_at",
    "理由": "reason",
    "避妊指導": "contraception_counselled",
    "受診予定日": "follow_up_due_on",
    "受診日": "follow_up_visited_on",
    "日時": "at",
    "イベント": "event",
    "操作者": "actor",
    "多要素認証": "mfa",
}

#: Below this difflib ratio a contract column is no candidate.
CUTOFF = 0.6


def normalise_header(name: str) -> str:
    """``snake_case`` ASCII-ish form of a header: NFKC, camelCase split, separators → ``_``."""
    text = unicodedata.normalize("NFKC", name).strip()
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    return "_".join(t for t in re.split(r"[\s\-_./]+", text.lower()) if t)


def _ja(header: str, columns: tuple[str, ...]) -> list[tuple[str, float]]:
    """Contract columns named by Japanese header words: an exact word (1.0), then contained ones (0.9)."""
    text = unicodedata.normalize("NFKC", header).strip()
    exact = JA_WORDS.get(text)
    out = [(exact, 1.0)] if exact in columns else []
    for word in sorted(JA_WORDS, key=len, reverse=True):
        col = JA_WORDS[word]
        if word in text and col in columns and all(col != c for c, _ in out):
            out.append((col, 0.9))
    return out


def scored_candidates(header: str, table: str, exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
    """(contract column, score 0–1) that ``header`` may mean, best first; scores below :data:`CUTOFF` left out.

    1.0: an exact Japanese word or the same name once normalised (``Session ID``); 0.9: a Japanese
    word inside the header; otherwise the difflib ratio of the normalised names.
    """
    t = TABLES[table]
    skip = set(exclude)
    columns = tuple(c for c in (*t.column_names, *t.alternatives) if c not in skip)
    out = _ja(header, columns)
    norm = normalise_header(header)
    if norm in columns and all(norm != c for c, _ in out):
        out.insert(0, (norm, 1.0))
    seen = {c for c, _ in out}
    ratios = [(c, difflib.SequenceMatcher(None, norm, c).ratio()) for c in columns if c not in seen]
    out += sorted(((c, r) for c, r in ratios if r >= CUTOFF), key=lambda cr: -cr[1])
    return out


def candidates(header: str, table: str, *, n: int = 3, exclude: Iterable[str] = ()) -> list[str]:
    """Contract columns of ``table`` that ``header`` may mean, closest first (at most ``n``).

    ``exclude``: columns already given by another header (not offered again).
    """
    return [c for c, _ in scored_candidates(header, table, exclude)][:n]


def did_you_mean(header: str, table: str, exclude: Iterable[str] = ()) -> str:
    """`` (did you mean `x`?)`` for the closest contract column, or empty text."""
    best = candidates(header, table, n=1, exclude=exclude)
    return f" (did you mean `{best[0]}`?)" if best else ""


_DATA_LIKE = re.compile(r"^[\s0-9０-９+\-.:/T]+$|^[0-9０-９]")


def looks_like_data(header: list[str]) -> bool:
    """True when a "header" looks like a data line (numbers, dates, true/false): never print it."""
    from toolkit.contract import FALSE_WORDS, TRUE_WORDS

    words = TRUE_WORDS | FALSE_WORDS
    return any(_DATA_LIKE.search(h) or h.strip().lower() in words for h in header if h)


def mapping_init_hint(path: str, table: str) -> str:
    """The command that writes a mapping skeleton for this file."""
    return (
        f"write a mapping skeleton to review with: ocaudit mapping init {shlex.quote(path)} "
        f"--table {table} --out mapping.yaml"
    )


def encoding_hint(sf: SourceFile, forced: str, source: str, malformed: int, read: int) -> str:
    """A hint when rows were malformed under a forced encoding the file is not in; else empty text.

    ``source``: where the encoding was forced (``--encoding`` or the mapping's ``encoding:``).
    """
    try:
        detected = detect_encoding(sf, None)
    except InputFileError:
        return ""
    if detected.replace("-sig", "") == forced.replace("-sig", ""):
        return ""
    return (
        f"{sf.display}: {malformed} of {read} row(s) are malformed under {source} {forced}, but the file "
        f"decodes as {detected}: ingest again with --encoding {detected} (or without --encoding: "
        "the encoding is detected)"
    )
