"""One JSON value per line, encoded and decoded without the per-call cost of json.dumps() and
json.loads(): the journal's lines and the messages between the supervisor and its workers are a
few hundred bytes each, thousands a second, and json's entry points cost a fifth of the work on
such a line (JSONEncoder.encode makes a new C encoder on every call; loads goes through
raw_decode's whitespace matching). The output and the errors are json's own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json.encoder import c_make_encoder, encode_basestring, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def encoder(*, ensure_ascii: bool = True, separators: tuple[str, str] = (", ", ": ")) -> Callable[[Any], str]:
    """json.JSONEncoder(ensure_ascii=..., separators=...).encode, its C encoder made once."""
    plain = json.JSONEncoder(ensure_ascii=ensure_ascii, separators=separators).encode
    item_separator, key_separator = separators
    strings = encode_basestring_ascii if ensure_ascii else encode_basestring
    try:  # (markers None: no check for circular references; what we encode is plain data)
        make = c_make_encoder(None, _not_json, strings, None, key_separator, item_separator, False, False, True)
    except TypeError:  # no C speedups (c_make_encoder is None), or another signature: json's own way
        return plain

    def encode(value: Any) -> str:
        return "".join(make(value, 0))

    return encode


encode = encoder()  # json.dumps(value) with json's defaults

# What decoding JSON that anybody may have written raises: malformed (a ValueError), or nested
# deeper than the decoder follows (a RecursionError: `[[[[...` a few thousand levels deep).
DECODE_ERRORS = (ValueError, RecursionError)
# (value, end): the JSON value that starts at a position of a string; StopIteration if none does
scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def decode(line: bytes | str) -> Any:
    """json.loads(line) for a line of UTF-8 (the only encoding simplejob writes)."""
    text = line.decode() if isinstance(line, bytes) else line
    try:
        value, end = scan_once(text, 0)
    except StopIteration:
        return json.loads(text)  # no value at the start: json says why (or skips leading blanks)
    if end != len(text):
        return json.loads(text)  # trailing blanks are fine; json says what else follows
    return value
