"""Pronoun scrubbing: gender-neutralising bios before tokenisation, in one of two modes.

``reference`` (the default) follows the rule of the reference implementation's data loading.
The text is cut into whitespace-separated tokens, and a token is rewritten only when it is
exactly one of these forms:

=====================================================  ======================================
``He``, ``She`` (also ``He.``, ``He,``, ``She.`` ...)  ``They`` (keeping the ``.`` or ``,``)
``His``, ``Her``, ``Him`` (also with ``.`` or ``,``)   ``Their`` (keeping the ``.`` or ``,``)
``he``, ``she``                                        ``they``
``his``, ``her``, ``him``                              ``their``
=====================================================  ======================================

Every other token is left alone: ``hers``, ``himself``, ``herself``, ``he's``, ``(She``,
``HE``, a lowercase form with punctuation (``her.``, ``her;``) and a capitalised form with
other punctuation (``Her;``, ``His:``). Whitespace is kept exactly: the text is split on runs
of whitespace with the runs themselves kept and put back unchanged, so newlines, tabs and
double spaces survive. (The reference cuts on single spaces, strips each piece and rejoins
with single spaces; on one-line, space-separated text, which is what bios are, both give the
same output. Where a pronoun touches a newline or tab, e.g. ``"done.\\nShe"``, this module
still rewrites it, and it never drops a newline or tab.)

``thorough`` also catches what the reference rule misses: whole words (regex word boundaries,
so "Sheila", "other" or "shepherd" are untouched) next to any punctuation, in any case, with
the case of the original kept (``he`` -> ``they``, ``He`` -> ``They``, ``HE`` -> ``THEY``):

=============================  ============
he, she                        they
his, her, him                  their
hers                           theirs
himself, herself               themself
=============================  ============

In both modes ``her`` and ``him`` become ``their`` even where "them" would be grammatical, and
verbs are not changed ("she works" -> "they works"), as in the reference. In ``thorough`` a
contraction keeps its tail ("he's" -> "they's"). Names and kinship words (husband, mother,
...) are not scrubbed by either mode.
"""

from __future__ import annotations

import re

SCRUB_MODES = ("reference", "thorough")

# reference mode: the capitalised forms and what they become.
_REFERENCE_BASE = {"He": "They", "She": "They", "Her": "Their", "Him": "Their", "His": "Their"}
# Every token the reference rule rewrites, mapped to its replacement: the capitalised form,
# that form followed by "." or ",", and the bare lowercase form.
REFERENCE_TOKENS = {
    **{form + tail: value + tail
       for form, value in _REFERENCE_BASE.items() for tail in ("", ".", ",")},
    **{form.lower(): value.lower() for form, value in _REFERENCE_BASE.items()},
}
_WHITESPACE = re.compile(r"(\s+)")

# thorough mode
PRONOUN_REPLACEMENTS = {
    "he": "they",
    "she": "they",
    "his": "their",
    "her": "their",
    "him": "their",
    "hers": "theirs",
    "himself": "themself",
    "herself": "themself",
}

_PRONOUN_PATTERN = re.compile(
    r"\b(" + "|".join(sorted(PRONOUN_REPLACEMENTS, key=len, reverse=True)) + r")\b",
    re.IGNORECASE,
)


def _match_case(original: str, replacement: str) -> str:
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[0].isupper():
        return replacement.capitalize()
    return replacement


def _replace(match: re.Match[str]) -> str:
    word = match.group(0)
    return _match_case(word, PRONOUN_REPLACEMENTS[word.lower()])


def scrub_reference(text: str) -> str:
    """``text`` with the reference rule applied (see the module's first table)."""
    # Odd positions hold the whitespace runs, even positions the tokens (possibly empty).
    pieces = _WHITESPACE.split(text)
    pieces[::2] = [REFERENCE_TOKENS.get(token, token) for token in pieces[::2]]
    return "".join(pieces)


def scrub_thorough(text: str) -> str:
    """``text`` with every whole-word gendered pronoun replaced (see the second table)."""
    return _PRONOUN_PATTERN.sub(_replace, text)


def scrub_pronouns(text: str, mode: str = "reference") -> str:
    """``text`` with gendered pronouns replaced by "they"-forms, by ``mode`` (reference or
    thorough)."""
    if mode == "reference":
        return scrub_reference(text)
    if mode == "thorough":
        return scrub_thorough(text)
    raise ValueError(f"unknown scrub mode {mode!r} (use one of {', '.join(SCRUB_MODES)})")
