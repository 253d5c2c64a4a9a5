"""Pronoun scrubbing: the reference's gender-neutralisation of bios, applied to every source.

Whole words only (regex word boundaries, so "Sheila", "other" or "shepherd" are untouched),
any case, and the case of the original word is kept (``he`` -> ``they``, ``He`` -> ``They``,
``HE`` -> ``THEY``). Exactly these words are replaced:

=============================  ============
he, she                        they
his, her, him                  their
hers                           theirs
himself, herself               themself
=============================  ============

``her`` and ``him`` become ``their`` even where "them" would be grammatical, and verbs are not
changed ("she works" -> "they works"), as in the reference. A contraction keeps its tail
("he's" -> "they's"). Names and kinship words (husband, mother, ...) are not scrubbed.
"""

from __future__ import annotations

import re

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


def scrub_pronouns(text: str) -> str:
    """``text`` with gendered pronouns replaced by "they"-forms (see the module table)."""
    return _PRONOUN_PATTERN.sub(_replace, text)
