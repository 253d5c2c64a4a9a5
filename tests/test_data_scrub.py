"""Pronoun scrubbing: whole words, case kept, exactly the documented words."""

from __future__ import annotations

import pytest

from sdm_jax.data import scrub_pronouns
from sdm_jax.data.scrub import PRONOUN_REPLACEMENTS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("He is a nurse. She is a poet.", "They is a nurse. They is a poet."),
        ("his book, her book, with him", "their book, their book, with their"),
        ("HE said HIS", "THEY said THEIR"),
        ("She taught herself; he taught himself.", "They taught themself; they taught themself."),
        ("The pen is hers.", "The pen is theirs."),
        ("he's here", "they's here"),
        ("(She)", "(They)"),
    ],
)
def test_pronouns_become_they_forms(text, expected):
    assert scrub_pronouns(text) == expected


def test_words_containing_pronouns_are_untouched():
    text = "Sheila and Hermann met the shepherd; other heroes hid their theme in Chelsea."
    assert scrub_pronouns(text) == text


def test_kinship_words_and_names_stay():
    assert scrub_pronouns("Her husband Mark") == "Their husband Mark"


def test_replacement_table_is_what_the_docs_promise():
    assert PRONOUN_REPLACEMENTS == {
        "he": "they", "she": "they", "his": "their", "her": "their", "him": "their",
        "hers": "theirs", "himself": "themself", "herself": "themself",
    }  # fmt: skip
