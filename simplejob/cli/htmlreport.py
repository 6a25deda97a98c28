"""The HTML report (filled in by the next commit)."""

from __future__ import annotations

from . import status


def write(view: status.View, output: str) -> None:
    raise NotImplementedError(output)
