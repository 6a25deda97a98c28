"""How the state file and the reports write dates and durations. Its own small module: a worker
process imports it at start-up, and should not load the whole model to write a log line."""

from __future__ import annotations

from datetime import datetime

DATE_FORMAT = "%Y/%m/%d %H:%M:%S.%f"
_second_text: tuple[int, str] = (-1, "")


def format_datetime(timestamp: float) -> str:
    """Local time as DATE_FORMAT; the text of the second is reused (jobs end many to a second)."""
    global _second_text
    second = int(timestamp)
    if _second_text[0] != second:
        _second_text = (second, datetime.fromtimestamp(second).strftime("%Y/%m/%d %H:%M:%S"))
    micros = min(999_999, round((timestamp - second) * 1_000_000))
    return f"{_second_text[1]}.{micros:06d}"


def format_elapsed(seconds: float | None) -> str | None:
    """HH:MM:SS.ffffff with six fraction digits (the reference forgot to pad them)."""
    if seconds is None:
        return None
    micros = max(0, round(seconds * 1_000_000))
    whole, fraction = divmod(micros, 1_000_000)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{fraction:06d}"
