"""Aggregate-only survey packages: write one per institution, verify and merge many.

A package is a folder of CSV files (one per table: ``table,row,col,value`` exact counts of the
table's own cells — no patient rows, no ids except the institution id) and ``manifest.json``
(institution, period, versions, as-of, created_at and the SHA-256 of each file). The survey
office merges packages: every manifest is checked first and any problem rejects the whole merge.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit import __version__
from toolkit.errors import UserError
from toolkit.periods import months_of
from toolkit.safe_yaml import read_at_most
from toolkit.store.files import make_dirs, open_owner_only, write_text
from toolkit.survey.tables import TABLE_IDS, TABLE_SCHEMA_VERSION, build_layout

PACKAGE_FORMAT = "ocaudit-ec-survey-package"
MANIFEST = "manifest.json"


class PackageRejected(UserError):
    """A package failed verification; the message names the package and the reason."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def write_package(
    out_dir: str | os.PathLike[str],
    values: dict[str, int],
    *,
    institution_id: str,
    period: str,
    months: list[str],
    as_of: dt.date,
    audit_run_available: bool,
) -> Path:
    """Write the package folder (CSV of exact counts per table + manifest.json); return its path."""
    out = make_dirs(out_dir, fix_existing=True)
    for old in out.glob("*"):
        if old.is_file() and (old.suffix == ".csv" or old.name == MANIFEST):
            old.unlink()
    layout = build_layout(months)
    files = {}
    for tid in TABLE_IDS:
        name = f"{tid.lower()}_counts.csv"
        with open_owner_only(out / name, "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["table", "row", "col", "value"])
            for cid in layout.owned[tid]:
                t, r, c = cid.split("|")
                w.writerow([t, r, c, int(values[cid])])
        files[name] = sha256_file(out / name)
    manifest = {
        "format": PACKAGE_FORMAT,
        "institution_id": institution_id,
        "period": period,
        "months": months,
        "toolkit_version": __version__,
        "table_schema_version": TABLE_SCHEMA_VERSION,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "as_of": as_of.isoformat(),
        "audit_run_available": audit_run_available,
        "files": files,
    }
    write_text(out / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
    return out


@dataclass
class Package:
    """A verified package: its manifest, the manifest's own hash and its exact cell values."""

    path: Path
    manifest: dict[str, Any]
    manifest_sha256: str
    values: dict[str, int]


#: Largest file of a package read: the manifest and each count CSV are a few KiB.
MAX_PACKAGE_FILE_BYTES = 4 << 20
_MANIFEST_TYPES: dict[str, tuple[type, ...]] = {
    "format": (str,),
    "institution_id": (str, int),
    "period": (str,),
    "months": (list,),
    "toolkit_version": (str,),
    "table_schema_version": (int, str),
    "files": (dict,),
}


def _read_member(pkg: Path, fname: str) -> bytes:
    """The bytes of ``pkg/fname``: a regular file (no symlink, device or pipe), at most the size cap."""
    name = str(pkg)
    if not fname or "/" in fname or "\\" in fname or fname in (".", ".."):
        raise PackageRejected(f"package {name}: file name {fname!r} is not a plain file name in the package")
    path = pkg / fname
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            raise PackageRejected(
                f"package {name}: {fname} is a symbolic link; package files must be regular files"
            )
        if not stat.S_ISREG(st.st_mode):
            raise PackageRejected(
                f"package {name}: {fname} is not a regular file (a folder, device or pipe); "
                "package files must be regular files"
            )
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise PackageRejected(f"package {name}: no {fname}") from None
    except OSError as exc:
        raise PackageRejected(f"package {name}: cannot read {fname} ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # replaced between lstat and open
            raise PackageRejected(f"package {name}: {fname} is not a regular file")
        if st.st_size > MAX_PACKAGE_FILE_BYTES:
            raise PackageRejected(
                f"package {name}: {fname} is {st.st_size} bytes; package files are at most "
                f"{MAX_PACKAGE_FILE_BYTES} bytes"
            )
        data = read_at_most(fd, MAX_PACKAGE_FILE_BYTES)
        if data is None:
            raise PackageRejected(f"package {name}: {fname} is larger than {MAX_PACKAGE_FILE_BYTES} bytes")
        return data
    except OSError as exc:
        raise PackageRejected(f"package {name}: cannot read {fname} ({exc.strerror})") from None
    finally:
        os.close(fd)


def _check_manifest(name: str, manifest: Any) -> None:
    """Reject a manifest that is not an ocaudit EC survey manifest or has a value of the wrong type."""
    if not isinstance(manifest, dict):
        raise PackageRejected(f"package {name}: {MANIFEST} is not a JSON object")
    missing = [k for k in _MANIFEST_TYPES if k not in manifest]
    if missing or manifest.get("format") != PACKAGE_FORMAT:
        raise PackageRejected(
            f"package {name}: not an ocaudit EC survey manifest (missing {missing or 'format'})"
        )
    for key, types in _MANIFEST_TYPES.items():
        value = manifest[key]
        if not isinstance(value, types) or isinstance(value, bool):
            want = " or ".join(
                {"str": "text", "int": "a number", "list": "a list", "dict": "an object"}[t.__name__]
                for t in types
            )
            raise PackageRejected(
                f"package {name}: {MANIFEST}: {key!r} is {json.dumps(value, ensure_ascii=False)[:60]}; expected {want}"
            )
    if not all(isinstance(m, str) for m in manifest["months"]):
        raise PackageRejected(f"package {name}: {MANIFEST}: 'months' must be a list of YYYY-MM texts")
    for fname, digest in manifest["files"].items():
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise PackageRejected(
                f"package {name}: {MANIFEST}: the SHA-256 of {fname!r} is not 64 hex digits"
            )
    try:
        months = months_of(manifest["period"])
    except UserError:
        raise PackageRejected(
            f"package {name}: {MANIFEST}: period {manifest['period']!r} is not YYYY-MM..YYYY-MM"
        ) from None
    if months != list(manifest["months"]):
        raise PackageRejected(f"package {name}: manifest months do not match its period")


def read_package(path: str | os.PathLike[str]) -> Package:
    """Read and verify one package; raise :class:`PackageRejected` naming it and the reason.

    Every file read is a regular file inside the package folder (no symbolic link, device or
    pipe) of at most :data:`MAX_PACKAGE_FILE_BYTES`; each is read once, and the bytes hashed are
    the bytes parsed.
    """
    p = Path(path)
    name = str(p)
    if not p.is_dir():
        raise PackageRejected(f"package {name}: not a folder")
    raw_manifest = _read_member(p, MANIFEST)
    try:
        manifest = json.loads(raw_manifest.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise PackageRejected(f"package {name}: {MANIFEST} is not valid JSON ({exc})") from None
    _check_manifest(name, manifest)
    listed = set(manifest["files"])
    present = {f.name for f in p.iterdir() if f.name != MANIFEST}
    if present - listed:
        raise PackageRejected(
            f"package {name}: tampered — extra file(s) not in the manifest: "
            f"{', '.join(sorted(present - listed))}"
        )
    if listed - present:
        raise PackageRejected(
            f"package {name}: tampered — file(s) missing: {', '.join(sorted(listed - present))}"
        )
    expected = {f"{t.lower()}_counts.csv" for t in TABLE_IDS}
    if listed != expected:
        raise PackageRejected(f"package {name}: file set differs from schema {TABLE_SCHEMA_VERSION}")
    contents: dict[str, bytes] = {}
    for fname, digest in manifest["files"].items():
        contents[fname] = _read_member(p, fname)
        if hashlib.sha256(contents[fname]).hexdigest() != digest:
            raise PackageRejected(
                f"package {name}: tampered — {fname} does not match its SHA-256 in the manifest"
            )
    layout = build_layout(list(manifest["months"]))
    values: dict[str, int] = {}
    for tid in TABLE_IDS:
        fname = f"{tid.lower()}_counts.csv"
        try:
            rows = list(csv.reader(io.StringIO(contents[fname].decode("utf-8"), newline="")))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise PackageRejected(f"package {name}: {fname} is not a UTF-8 CSV ({exc})") from None
        if not rows or rows[0] != ["table", "row", "col", "value"]:
            raise PackageRejected(f"package {name}: {fname} has an unexpected header")
        owned = set(layout.owned[tid])
        for row in rows[1:]:
            cid = "|".join(row[:3])
            if len(row) != 4 or cid not in owned or cid in values:
                raise PackageRejected(f"package {name}: {fname} has an unexpected row {row!r}"[:300])
            try:
                v = int(row[3])
            except ValueError:
                raise PackageRejected(
                    f"package {name}: {fname}: value {row[3][:40]!r} is not a count"
                ) from None
            if v < 0:
                raise PackageRejected(f"package {name}: {fname}: negative count")
            values[cid] = v
        if owned - set(values):
            raise PackageRejected(f"package {name}: {fname} lacks cells of table {tid}")
    return Package(p, manifest, hashlib.sha256(raw_manifest).hexdigest(), values)


def verify_all(paths: list[str]) -> list[Package]:
    """Verify every package and their consistency; raise on the first problem, writing nothing."""
    if not paths:
        raise UserError("no packages given")
    pkgs = [read_package(p) for p in paths]
    first = pkgs[0]
    seen_inst: dict[str, Path] = {}
    for i, pk in enumerate(pkgs):
        m = pk.manifest
        for q in pkgs[:i]:
            if q.manifest_sha256 == pk.manifest_sha256:
                raise PackageRejected(f"package {pk.path}: duplicate — identical to package {q.path}")
        inst = str(m["institution_id"])
        if inst in seen_inst:
            raise PackageRejected(
                f"package {pk.path}: duplicate — institution {inst} already in {seen_inst[inst]}"
            )
        seen_inst[inst] = pk.path
        for key, what in (
            ("period", "period"),
            ("table_schema_version", "table schema version"),
            ("toolkit_version", "toolkit version"),
        ):
            if m[key] != first.manifest[key]:
                raise PackageRejected(
                    f"package {pk.path}: {what} {m[key]!r} differs from {first.path} "
                    f"({first.manifest[key]!r}); merge packages of one {what} only"
                )
    if first.manifest["table_schema_version"] != TABLE_SCHEMA_VERSION:
        raise PackageRejected(
            f"package {first.path}: table schema version {first.manifest['table_schema_version']} "
            f"is not the one this toolkit merges ({TABLE_SCHEMA_VERSION})"
        )
    return pkgs


def add_values(pkgs: list[Package]) -> dict[str, int]:
    """Cell-by-cell sum of the packages' exact counts."""
    total: dict[str, int] = {}
    for pk in pkgs:
        for cid, v in pk.values.items():
            total[cid] = total.get(cid, 0) + v
    return total
