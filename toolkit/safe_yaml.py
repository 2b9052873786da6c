"""The one YAML loader of the toolkit: size-capped, aliases refused, nesting bounded.

Every YAML file ocaudit reads (vendor mappings, attestation checklists, the rule catalogue) goes
through :func:`load_file`. PyYAML's ``safe_load`` builds no objects but still expands aliases: a
"billion laughs" of a few hundred bytes (``a: &a [x, x, …]``, ``b: &b [*a, *a, …]`` …) grows to
gigabytes. Here:

* the file must be a regular file of at most :data:`MAX_YAML_BYTES` (read with a bounded read, so a
  symlink to ``/dev/zero`` or a FIFO cannot hang or fill memory);
* the parse events are checked before any value is built: anchors and aliases (``&name`` /
  ``*name``, and so ``<<: *name`` merges) are refused at the first one, so nothing is ever
  expanded; nesting deeper than :data:`MAX_YAML_DEPTH` and more than :data:`MAX_YAML_NODES` values
  are refused too (both keep the parse time and memory bounded).

Every problem raises :class:`YamlFileError` (a :class:`~toolkit.errors.UserError`, exit 2) naming
the file and what is wrong.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from toolkit.errors import UserError

#: Largest YAML file read (256 KiB): mappings and checklists are a few KiB, the catalogue ≈ 32 KiB.
MAX_YAML_BYTES = 256 << 10
#: Most values (scalars, lists, mappings) in one file (the catalogue has ≈ 1 000).
MAX_YAML_NODES = 50_000
#: Deepest nesting of mappings/lists accepted (the toolkit's files nest 4 levels at most).
MAX_YAML_DEPTH = 32


class YamlFileError(UserError):
    """A YAML file is too big, not a regular file, not UTF-8, not YAML, or uses aliases."""


#: libyaml's parser when PyYAML has it (≈ 50x faster than the pure-Python one), else the pure one.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STARTS = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_ENDS = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


def _check_events(text: str) -> None:
    """Walk the parse events (no node is built): refuse anchors/aliases, deep nesting, too many nodes."""
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused(
                f"line {event.start_mark.line + 1}: YAML anchors and aliases (&name / *name) are not "
                "allowed in ocaudit files; write the value out in full"
            )
        if isinstance(event, _ENDS):
            depth -= 1
            continue
        if isinstance(event, (*_STARTS, yaml.ScalarEvent)):
            nodes += 1
            if nodes > MAX_YAML_NODES:
                raise _Refused(f"more than {MAX_YAML_NODES} values; ocaudit files are far smaller")
        if isinstance(event, _STARTS):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise _Refused(
                    f"line {event.start_mark.line + 1}: nested more than {MAX_YAML_DEPTH} levels deep"
                )


class _Refused(Exception):
    pass


def read_at_most(fd: int, limit: int) -> bytes | None:
    """Read an open file to its end, at most ``limit`` bytes; None when it holds more.

    Reads in 64 KiB steps and never more than ``limit + 1`` bytes, so a file that grows while it is
    read, or a device that never ends, costs at most ``limit`` bytes of memory.
    """
    chunks, total = [], 0
    while total <= limit:
        chunk = os.read(fd, min(1 << 16, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return None if total > limit else b"".join(chunks)


def read_capped(path: str | os.PathLike[str], what: str, limit: int = MAX_YAML_BYTES) -> bytes:
    """The bytes of ``path``, which must be a regular file of at most ``limit`` bytes.

    Opens without blocking (a FIFO does not hang), checks the opened file is regular and reads at
    most ``limit + 1`` bytes. :class:`YamlFileError` naming the file (``what`` says which kind) else.
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise YamlFileError(f"{p}: {what} not found") from None
    except OSError as exc:
        raise YamlFileError(f"{p}: cannot open the {what} ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise YamlFileError(f"{p}: the {what} is not a regular file (a folder, device or pipe)")
        if st.st_size > limit:
            raise YamlFileError(f"{p}: the {what} is {st.st_size} bytes; the limit is {limit} bytes")
        data = read_at_most(fd, limit)
        if data is None:
            raise YamlFileError(f"{p}: the {what} is larger than the limit of {limit} bytes")
        return data
    except OSError as exc:
        raise YamlFileError(f"{p}: cannot read the {what} ({exc.strerror})") from None
    finally:
        os.close(fd)


def loads(text: str, where: str = "<yaml>") -> Any:
    """Parse YAML text with anchors/aliases refused and nesting bounded; :class:`YamlFileError` else."""
    try:
        _check_events(text)
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader; aliases refused above
    except _Refused as exc:
        raise YamlFileError(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())[:300]
        if "maximum nesting depth" in detail:  # libyaml's own limit, hit while scanning ahead
            raise YamlFileError(f"{where}: nested more than {MAX_YAML_DEPTH} levels deep") from None
        raise YamlFileError(f"{where}: not valid YAML ({detail})") from None
    except RecursionError:
        raise YamlFileError(f"{where}: nested too deeply") from None


def load_file(path: str | os.PathLike[str], what: str = "YAML file") -> Any:
    """Read and parse one YAML file safely (see the module docstring); UTF-8, a BOM allowed."""
    data = read_capped(path, what)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise YamlFileError(f"{path}: the {what} is not UTF-8 text (byte {exc.start})") from None
    return loads(text, str(path))
