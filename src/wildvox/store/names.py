"""Speaker names: one normal form, one look-alike key, and the rules a new name must meet.

A name is stored in its *normal form*: Unicode NFC, format characters removed (zero-width
space and joiners, byte-order mark, soft hyphen, bidirectional overrides and isolates: every
character of category ``Cf``), every run of white space (including no-break and ideographic
spaces) turned into one space, and the ends trimmed. A name is refused when it holds control
characters (C0, DEL, C1: tabs, newlines, ANSI escapes) or lone surrogates, is empty after
normalisation, or is longer than :data:`MAX_NAME_LENGTH` characters.

Names keep the case they were given but are unique case-insensitively: the store looks names
up by :func:`name_key` (the normal form, case-folded), so ``"Alice"`` finds ``"alice"`` and
enrolling ``" alice\\u200b"`` adds to ``alice`` instead of creating a second speaker.

    >>> normalize_name("  Ann\\u200b  Lee ")
    'Ann Lee'
    >>> name_key("ANN lee") == name_key("ann\\u00a0Lee")
    True
    >>> normalize_name("ann\\x1b[31m")
    Traceback (most recent call last):
    ...
    ValueError: speaker name 'ann\\x1b[31m' contains a control character ('\\x1b')
"""

from __future__ import annotations

import unicodedata

__all__ = ["MAX_NAME_LENGTH", "name_key", "normalize_name"]

#: Longest speaker name accepted, in characters of the normal form.
MAX_NAME_LENGTH = 200

_REFUSED = frozenset({"Cc", "Cs"})  # control characters, lone surrogates


def _fold_form(name: str) -> str:
    """NFC, format characters dropped, white space collapsed and trimmed (refuses nothing)."""
    nfc = unicodedata.normalize("NFC", name)
    kept = "".join(ch for ch in nfc if unicodedata.category(ch) != "Cf")
    return " ".join(kept.split())


def normalize_name(name: object) -> str:
    """The normal form of a new speaker name (see the module docstring).

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: a control character or lone surrogate, an empty name, or one longer than
            :data:`MAX_NAME_LENGTH`; the message names the problem.
    """
    if not isinstance(name, str):
        raise TypeError(f"speaker name must be a string, got {type(name).__name__}")
    for ch in name:
        if unicodedata.category(ch) in _REFUSED:
            raise ValueError(f"speaker name {name!r} contains a control character ({ch!r})")
    form = _fold_form(name)
    if not form:
        raise ValueError(f"speaker name {name!r} is empty once white space is trimmed")
    if len(form) > MAX_NAME_LENGTH:
        raise ValueError(
            f"speaker name is {len(form)} characters long; the limit is {MAX_NAME_LENGTH}"
        )
    return form


def name_key(name: str) -> str:
    """The look-alike key of ``name``: its normal form, case-folded (then NFC again).

    Never raises for a string, so names stored before these rules (with control characters,
    say) still have a key and can be found and removed.
    """
    return unicodedata.normalize("NFC", _fold_form(name).casefold())
