"""Reports: plain dicts whose str() is the indented JSON the documentation shows."""

from __future__ import annotations

import json
from typing import Any


class Report(dict[str, Any]):
    """A dict; print(report) shows it as indented JSON, as in the documentation."""

    def __str__(self) -> str:
        return json.dumps(self, indent=4, ensure_ascii=False)
