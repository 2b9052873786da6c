"""The data contract (v1.1): canonical tables, columns, types and enumerations.

This module is data, not logic. It mirrors ``shared/spec/data-contract.md``; ingest,
the generator, the audit and the docs all read it, so a column is described once.

Types (``Column.type``):
    ``str``, ``bool``, ``int``, ``decimal``, ``date``, ``timestamptz``, ``enum``.

Ranges (``Column.min`` / ``max``, else :data:`TYPE_BOUNDS` for dates and timestamps) are data too:
ingest quarantines a value outside them and ``docs/ingest.md`` lists them (``python -m tools.docs``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

CONTRACT_VERSION = "1.1"

DUCKDB_TYPES: dict[str, str] = {
    "str": "VARCHAR",
    "bool": "BOOLEAN",
    "int": "BIGINT",
    "decimal": "DECIMAL(18,4)",
    "date": "DATE",
    "timestamptz": "TIMESTAMPTZ",
    "enum": "VARCHAR",
}

#: Default time zone for timestamps without an offset (Japan time).
DEFAULT_TZ_OFFSET = "+09:00"

TRUE_WORDS = frozenset({"true", "1", "yes", "y", "t", "はい", "有", "あり"})
FALSE_WORDS = frozenset({"false", "0", "no", "n", "f", "いいえ", "無", "なし"})
#: Whitespace stripped from both ends of every id at ingest: ASCII and Unicode spaces, 全角 space,
#: line breaks. Invisible characters (zero-width space, direction marks) are kept; ids that differ
#: only by them or by width are reported as ``dq.lookalike_ids``, never merged.
ID_WHITESPACE = " \t\r\n\x0b\x0c\x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(
    chr(c) for c in range(0x2000, 0x200B)
)


#: Values every column of a type must lie in (inclusive), unless the column narrows it: dates and
#: timestamps are years 0001–9999 written as ISO 8601 (not ``infinity``, ``epoch``, year 10000 …);
#: a timestamp bound without an offset is Japan time, like the values.
TYPE_BOUNDS: dict[str, tuple[str | None, str | None]] = {
    "date": ("0001-01-01", "9999-12-31"),
    "timestamptz": ("0001-01-01 00:00:00", "9999-12-31 23:59:59.999999"),
}

Bound = int | float | str | None


@dataclass(frozen=True)
class Column:
    """One contract column.

    ``min`` / ``max``: the smallest / largest value allowed (inclusive); a value outside is a
    contract error (the row is quarantined with the reason), as a value of the wrong type is.
    """

    name: str
    type: str
    optional: bool = False
    key: bool = False
    enum: tuple[str, ...] = ()
    meaning: str = ""
    min: Bound = None
    max: Bound = None

    @property
    def duckdb_type(self) -> str:
        """The DuckDB type the column is stored as."""
        return DUCKDB_TYPES[self.type]

    @property
    def is_id(self) -> bool:
        """True for an id (a text key, or text named ``*_id``): stripped of :data:`ID_WHITESPACE`."""
        return self.type == "str" and (self.key or self.name.endswith("_id"))

    @property
    def bounds(self) -> tuple[Bound, Bound]:
        """(min, max) allowed, inclusive: the column's own, else its type's (None = no bound)."""
        tmin, tmax = TYPE_BOUNDS.get(self.type, (None, None))
        return (tmin if self.min is None else self.min, tmax if self.max is None else self.max)

    def range_text(self) -> str:
        """The allowed range in words (``≥ 1``, ``0001-01-01 … 9999-12-31``); empty when unbounded."""
        lo, hi = self.bounds
        if lo is not None and hi is not None:
            return f"{lo} … {hi}"
        if lo is not None:
            return f"≥ {lo}"
        return f"≤ {hi}" if hi is not None else ""


@dataclass(frozen=True)
class Table:
    """One contract table."""

    name: str
    columns: tuple[Column, ...]
    meaning: str = ""
    #: alternatives: a column that may stand in for another (patients.birth_year for birth_date)
    alternatives: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, ...]:
        """Names of the key columns (empty for tables without a key, e.g. access_log)."""
        return tuple(c.name for c in self.columns if c.key)

    @property
    def column_names(self) -> tuple[str, ...]:
        """All column names in contract order."""
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        """The column called ``name`` (KeyError naming the valid columns otherwise)."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} has no column {name!r}; columns: {', '.join(self.column_names)}")


def _c(
    name: str,
    type_: str,
    *,
    optional: bool = False,
    key: bool = False,
    enum: tuple[str, ...] = (),
    meaning: str = "",
    min: Bound = None,
    max: Bound = None,
) -> Column:
    return Column(
        name=name, type=type_, optional=optional, key=key, enum=enum, meaning=meaning, min=min, max=max
    )


SESSION_KINDS = ("pre_consultation", "online_care", "online_referral")
CARE_FORMS = ("d_to_p", "d_to_p_with_n", "d_to_p_with_d")
PRIOR_INFO_SOURCES = (
    "chart",
    "referral_letter",
    "health_check",
    "regional_network",
    "medication_notebook",
    "phr",
    "none",
)
MODALITIES = ("video", "audio", "text", "photo", "recorded_video")
OUTCOMES = ("completed", "switched_to_in_person", "referred", "abandoned")
PATIENT_ID_METHODS = ("photo_id", "two_ids", "one_id_plus_questions", "known_in_person", "none")
DOCTOR_LOCATIONS = ("institution", "home", "other_private", "public")
PATIENT_LOCATIONS = (
    "home",
    "medical_facility",
    "online_care_facility",
    "workplace",
    "care_facility",
    "other",
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "institutions",
            (
                _c("institution_id", "str", key=True),
                _c("name", "str"),
                _c("prefecture", "str", meaning="都道府県 name or JIS code"),
                _c(
                    "contact_published",
                    "bool",
                    meaning="affiliation and contact point are public (V-2-(1)-②-i)",
                ),
                _c("compliance_published", "bool", meaning="guideline compliance published (V-2-(1)-②-vi)"),
                _c(
                    "in_person_backup_id",
                    "str",
                    optional=True,
                    meaning="institution taking sudden deterioration",
                ),
                _c(
                    "municipality_code",
                    "str",
                    optional=True,
                    meaning="JIS X 0402 市区町村コード of the institution (5 digits, or 6 with check digit) — v1.1",
                ),
            ),
            meaning="医療機関",
        ),
        Table(
            "doctors",
            (
                _c("doctor_id", "str", key=True),
                _c("institution_id", "str"),
                _c("specialty", "str", meaning="obgyn, internal, psychiatry, pediatrics, general, …"),
                _c("online_training_on", "date", meaning="MHLW online-care training completed (V-3-(1))"),
                _c(
                    "ec_training_on",
                    "date",
                    optional=True,
                    meaning="MHLW EC training completed (V-1-(2)-②-ix)",
                ),
            ),
            meaning="医師",
        ),
        Table(
            "patients",
            (
                _c("patient_id", "str", key=True),
                _c("birth_date", "date", optional=True),
                _c("birth_year", "int", optional=True, min=1800, max=9999),
                _c("sex", "enum", enum=("female", "male", "other", "unknown")),
                _c(
                    "municipality_code",
                    "str",
                    optional=True,
                    meaning="JIS X 0402 code of where the patient lives (quasi-identifier: shown aggregated only) — v1.1",
                ),
            ),
            meaning="患者 (pseudonymous)",
            alternatives={"birth_year": "birth_date"},
        ),
        Table(
            "sessions",
            (
                _c("session_id", "str", key=True),
                _c("patient_id", "str"),
                _c("doctor_id", "str"),
                _c("institution_id", "str"),
                _c("kind", "enum", enum=SESSION_KINDS),
                _c("care_form", "enum", enum=CARE_FORMS),
                _c("started_at", "timestamptz"),
                _c("ended_at", "timestamptz"),
                _c("is_first_visit", "bool", meaning="初診"),
                _c("is_regular_doctor", "bool", meaning="かかりつけの医師"),
                _c("prior_info_source", "enum", optional=True, enum=PRIOR_INFO_SOURCES),
                _c("prior_info_recorded", "bool", optional=True),
                _c("preceded_by_session_id", "str", optional=True),
                _c("modality", "enum", enum=MODALITIES),
                _c("initiated_by", "enum", enum=("patient", "institution")),
                _c("platform", "enum", enum=("dedicated", "general_purpose")),
                _c("consent_at", "timestamptz"),
                _c("wish_confirmed", "bool"),
                _c("explained_at", "timestamptz"),
                _c("feasibility", "enum", enum=("appropriate", "not_appropriate")),
                _c("info_sufficient", "bool"),
                _c("outcome", "enum", enum=OUTCOMES),
                _c("referred_at", "timestamptz", optional=True),
                _c("is_emergency", "bool", meaning="急病急変"),
                _c("unsuitable_symptom", "bool", optional=True),
                _c("patient_id_method", "enum", enum=PATIENT_ID_METHODS),
                _c("doctor_id_shown", "bool"),
                _c("doctor_qualification_shown", "bool"),
                _c("doctor_location", "enum", enum=DOCTOR_LOCATIONS),
                _c("doctor_location_private", "bool"),
                _c("patient_location", "enum", enum=PATIENT_LOCATIONS),
                _c("patient_location_private", "bool"),
                _c("third_party_present", "bool"),
                _c("third_party_consent", "bool"),
                _c("staff_present", "bool"),
                _c("staff_consent", "bool"),
                _c("recording_saved", "bool"),
                _c("recording_agreed", "bool"),
                _c("tls_version", "str", optional=True),
                _c("network_interruptions", "int", optional=True, min=0),
                _c("care_plan_id", "str", optional=True),
                _c("substitute_doctor", "bool", optional=True),
                _c("substitute_consent", "bool", optional=True),
                _c("meds_confirmed", "bool"),
                _c("chart_marked_online", "bool"),
                _c(
                    "insurance_billed",
                    "bool",
                    optional=True,
                    meaning="billed under insurance (初診料/再診料「情報通信機器を用いた場合」); private pay false — v1.1",
                ),
                _c(
                    "patient_municipality_code",
                    "str",
                    optional=True,
                    meaning="JIS X 0402 code of where the patient was for this session; else the patient's — v1.1",
                ),
            ),
            meaning="one row per remote encounter",
        ),
        Table(
            "prescriptions",
            (
                _c("rx_id", "str", key=True),
                _c("session_id", "str"),
                _c("drug_code", "str", meaning="YJ code (12 chars) or receipt code"),
                _c("drug_name", "str"),
                _c("quantity", "decimal", min=0, meaning="units dispensed; never negative"),
                _c(
                    "days_supply",
                    "int",
                    min=1,
                    meaning="投与日数, at least 1 day; NULL for as-needed lines",
                ),
                _c("dispensing", "enum", enum=("outside", "inside")),
                _c("pharmacy_id", "str", optional=True),
                _c("dispensed_at", "timestamptz", optional=True),
                _c("pharmacist_trained", "bool", optional=True),
                _c("witnessed_intake", "bool", optional=True),
            ),
            meaning="one row per drug line",
        ),
        Table(
            "drug_master",
            (
                _c(
                    "drug_code",
                    "str",
                    key=True,
                    meaning="YJ code, or a prefix such as the 3–4 digit 薬効分類",
                ),
                _c("drug_name", "str", optional=True),
                _c("narcotic", "bool"),
                _c("psychotropic", "bool"),
                _c("high_risk", "bool"),
                _c("emergency_contraceptive", "bool"),
                _c("first_visit_caution", "bool"),
                _c(
                    "misuse_class",
                    "str",
                    optional=True,
                    meaning="hypnotic, diuretic, antidiabetic, pde5 (V-1-(5)-④ signals)",
                ),
            ),
            meaning="reference: drug classification by YJ code or prefix",
            alternatives={"code_prefix": "drug_code"},
        ),
        Table(
            "care_plans",
            (
                _c("care_plan_id", "str", key=True),
                _c("patient_id", "str"),
                _c("created_at", "timestamptz"),
                _c("in_person_assessed_at", "timestamptz", optional=True),
                _c("has_content", "bool"),
                _c("has_schedule", "bool"),
                _c("has_hours", "bool"),
                _c("has_method", "bool"),
                _c("has_stop_conditions", "bool"),
                _c("has_cooperation", "bool"),
                _c("has_emergency_plan", "bool"),
                _c("has_doctor_names", "bool"),
                _c("has_security_scope", "bool"),
                _c("doctors", "str", meaning="doctor ids allowed to take turns, ';'-separated"),
                _c("deleted_at", "timestamptz", optional=True),
            ),
            meaning="診療計画",
        ),
        Table(
            "ec_cases",
            (
                _c("session_id", "str", key=True),
                _c("reason", "enum", enum=("geographic", "psychological")),
                _c("referred_by_support_center", "bool"),
                _c("assault_suspected", "bool"),
                _c("police_or_onestop_referred", "bool"),
                _c("child_guidance_notified", "bool", optional=True),
                _c("contraception_counselled", "bool"),
                _c("follow_up_due_on", "date"),
                _c("follow_up_visited_on", "date", optional=True),
            ),
            meaning="emergency contraception from a first online visit",
        ),
        Table(
            "in_person_visits",
            (
                _c("visit_id", "str", key=True),
                _c("patient_id", "str"),
                _c("institution_id", "str"),
                _c("doctor_id", "str", optional=True),
                _c("visited_at", "timestamptz"),
                _c("is_first_visit", "bool", meaning="初診料 billed (else 再診料 / 外来診療料)"),
                _c("insurance_billed", "bool", optional=True, meaning="billed under insurance"),
            ),
            meaning="対面診療: one row per in-person visit (for the annual report) — v1.1",
        ),
        Table(
            "access_log",
            (
                _c("session_id", "str"),
                _c("at", "timestamptz"),
                _c("event", "enum", enum=("join", "leave", "drop", "reconnect")),
                _c("actor", "enum", enum=("doctor", "patient", "nurse", "supporter", "other")),
                _c("mfa", "bool", optional=True),
            ),
            meaning="optional connection events",
        ),
    )
}

#: Load order: referenced tables first.
TABLE_ORDER: tuple[str, ...] = (
    "institutions",
    "doctors",
    "patients",
    "drug_master",
    "care_plans",
    "sessions",
    "prescriptions",
    "ec_cases",
    "in_person_visits",
    "access_log",
)

#: v1.1 columns no rule reads but the annual report (``ocaudit survey annual``) does; without them it
#: says what it omits (ingest names them in its notes).
ANNUAL_REPORT_COLUMNS: frozenset[str] = frozenset(
    {
        "institutions.municipality_code",
        "patients.municipality_code",
        "sessions.insurance_billed",
        "sessions.patient_municipality_code",
        "in_person_visits.insurance_billed",
    }
)

#: Column names that look like direct identifiers; refused unless the mapping drops them.
#: A header is normalised first (NFKC, invisible characters removed, case-folded: see
#: :func:`toolkit.ingest.parse.normalise_header`). ASCII patterns match whole words of the name
#: (``patient_name``, ``PatientName``, ``last-name``); one of 5 letters or more also matches inside a
#: word (``lastname``, ``phonenumber``). Japanese patterns match anywhere in the name.
DIRECT_IDENTIFIER_PATTERNS: tuple[str, ...] = (
    # names, name parts and their readings
    "name",
    "patient_name",
    "full_name",
    "fullname",
    "lastname",
    "firstname",
    "middlename",
    "surname",
    "given_name",
    "givenname",
    "family_name",
    "familyname",
    "forename",
    "kana",
    "furigana",
    "yomigana",
    "shimei",
    "namae",
    "seimei",
    "myoji",
    "kanji_name",
    # phone, mail, address, postal code
    "phone",
    "tel",
    "telno",
    "telephone",
    "fax",
    "mobile",
    "cellphone",
    "keitai",
    "denwa",
    "email",
    "mail",
    "address",
    "addr",
    "jusho",
    "street",
    "zip",
    "zipcode",
    "postal",
    "postcode",
    "post_code",
    "yubin",
    # insurance and individual numbers
    "insurance",
    "insurer",
    "insured",
    "insurer_number",
    "hokensha",
    "hihokensha",
    "hokenshabango",
    "my_number",
    "mynumber",
    "kojin_bango",
    "individual_number",
    # Japanese (matched after NFKC, so half-width ｶﾅ is カナ)
    "氏名",
    "名前",
    "患者名",
    "姓名",
    "苗字",
    "名字",
    "カナ",
    "かな",
    "フリガナ",
    "ふりがな",
    "住所",
    "電話",
    "携帯",
    "連絡先",
    "メール",
    "郵便",
    "〒",
    "保険者番号",
    "被保険者",
    "保険証",
    "記号",
    "マイナンバー",
    "個人番号",
)

#: Columns whose name contains a pattern above but are part of the contract (allowed).
CONTRACT_ALLOWED_IDENTIFIER_LIKE: frozenset[str] = frozenset({"name", "drug_name"})


def table(name: str) -> Table:
    """The contract table ``name``; KeyError naming the known tables otherwise."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; contract tables: {', '.join(TABLE_ORDER)}") from None
