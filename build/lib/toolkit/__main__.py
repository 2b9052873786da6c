"""Allow ``python -m toolkit`` (the same as the ``ocaudit`` command)."""

from toolkit.cli import console

raise SystemExit(console())
