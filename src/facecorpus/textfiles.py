"""Text files a user hands us (recipes, label CSVs): decoded strictly, or one error line naming where.

A byte-order mark is a declaration and wins: UTF-8, UTF-16 and UTF-32 files that start with one are
read whatever else was declared. Without a BOM the declared encoding is used (recipes: UTF-8; label
files: the source's `encoding` key, UTF-8 by default). Bytes the encoding cannot decode are never
replaced or guessed at — the error names the file, the line and column, the byte and the encoding,
and what to change.
"""

from __future__ import annotations

import codecs

from .errors import UserError

#: longest first: the UTF-32 LE mark begins with the UTF-16 LE one
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def check_encoding(name: str) -> str:
    """`name` if Python knows the encoding; ValueError otherwise (recipe validators turn it into one line)."""
    try:
        codecs.lookup(name)
    except LookupError:
        raise ValueError(f"unknown text encoding {name!r} (e.g. utf-8, latin-1, cp1252, utf-16)") from None
    return name


def encoding_of(data: bytes, declared: str) -> str:
    """The encoding to read `data` with: the one its BOM names, else `declared`."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    return declared


def decode_text(data: bytes, declared: str, what: str, fix: str) -> str:
    """`data` decoded (BOM first, else `declared`); UserError 'WHAT line L column C: …; FIX' when it cannot be."""
    encoding = encoding_of(data, declared)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        before = data[: e.start].decode(encoding, errors="replace")
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        bad = data[e.start : min(e.end, e.start + 4)].hex(" ")
        raise UserError(f"{what} line {line} column {column}: not valid {encoding} (byte {bad}); {fix}") from None
