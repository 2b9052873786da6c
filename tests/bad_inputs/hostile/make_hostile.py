"""Re-create the hostile configuration / package / database corpus (issue 15, items 3, 4, 5, 9).

    python tests/bad_inputs/hostile/make_hostile.py

The files are committed; ``tests/test_hostile_inputs.py`` says what the toolkit must do with each.
Symlinks to devices and FIFOs are made by the tests themselves (git cannot hold a FIFO).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def bomb(key: str, levels: int = 9) -> str:
    """A "billion laughs": 10 ** ``levels`` copies of one string under ``key`` after expansion."""
    lines = ['a0: &a0 "lol"']
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    lines.append(f"{key}: *a{levels}")
    return "\n".join(lines) + "\n"


def w(name: str, data: str | bytes) -> None:
    (HERE / name).write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))


def main() -> None:
    """Write every file of the corpus."""
    w("attestation-alias-bomb.yaml", bomb("attested_by"))
    w("mapping-alias-bomb.yaml", bomb("vendor"))
    w("mapping-merge-key.yaml", 'base: &b {files: ["x*.csv"]}\ntables:\n  sessions:\n    <<: *b\n')
    w("mapping-deep-nesting.yaml", "vendor: " + "[" * 5000 + "]" * 5000 + "\n")
    w("attestation-items-list.yaml", "institution_id: I1\nitems:\n  - attest.in_person_backup\n")
    w("attestation-notes-list.yaml", "institution_id: I1\nnotes:\n  - a note\n")
    w("db-random-bytes.duckdb", bytes((i * 7919 + 13) % 256 for i in range(64 * 1024)))
    w("db-is-a-csv.duckdb", "session_id,patient_id\nS1,P1\n")
    # headers that spell direct identifiers in ways a plain lower-case match misses
    for tag, col in (
        ("lastname", "lastname"),
        ("firstname", "FirstName"),
        ("telno", "telno"),
        ("fullwidth-name", "ｎａｍｅ"),
        ("zero-width", "氏\u200b名"),
        ("kana", "ﾌﾘｶﾞﾅ"),
        ("shimei", "shimei"),
        ("insurer-number", "被保険者番号"),
        ("my-number", "My-Number"),
        ("postal", "postcode"),
    ):
        w(
            f"patients-ident-{tag}.csv",
            f"patient_id,sex,{col}\nP1,female,SECRET-{tag}\nP2,bogus,SECRET2-{tag}\n",
        )


if __name__ == "__main__":
    main()
