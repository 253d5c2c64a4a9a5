"""Pronoun scrubbing: the reference's token rule and the thorough whole-word rule."""

from __future__ import annotations

import typing

import pytest

from sdm_jax.data import SCRUB_MODES, DataSpec, scrub_pronouns
from sdm_jax.data.scrub import PRONOUN_REPLACEMENTS, REFERENCE_TOKENS, scrub_thorough

# ------------------------------------------------------------------------- thorough


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
def test_thorough_replaces_every_whole_word_pronoun(text, expected):
    assert scrub_pronouns(text, "thorough") == expected
    assert scrub_thorough(text) == expected


def test_thorough_leaves_words_containing_pronouns():
    text = "Sheila and Hermann met the shepherd; other heroes hid their theme in Chelsea."
    assert scrub_pronouns(text, "thorough") == text


def test_kinship_words_and_names_stay():
    for mode in SCRUB_MODES:
        assert scrub_pronouns("Her husband Mark", mode) == "Their husband Mark"


def test_thorough_table_is_what_the_docs_promise():
    assert PRONOUN_REPLACEMENTS == {
        "he": "they", "she": "they", "his": "their", "her": "their", "him": "their",
        "hers": "theirs", "himself": "themself", "herself": "themself",
    }  # fmt: skip


# ------------------------------------------------------------------------- reference


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("He is a nurse. She is a poet.", "They is a nurse. They is a poet."),
        ("his book and her book with him", "their book and their book with their"),
        ("she said he left", "they said they left"),
        ("Praise for Him.", "Praise for Their."),
        ("His, then Her. Then She, He.", "Their, then Their. Then They, They."),
    ],
)
def test_reference_rewrites_its_token_forms(text, expected):
    assert scrub_pronouns(text) == expected
    assert scrub_pronouns(text, "reference") == expected


@pytest.mark.parametrize(
    "text",
    [
        "The pen is hers.",
        "She taught herself",  # herself stays, She goes
        "he taught himself",
        "he's here",
        "(She said so)",
        "HE SAID HIS",
        "with her; then",
        "for her. Then",
        "for him, then",
        "Her; and His: and He!",
        "Sheila and Hermann, shepherd",
    ],
)
def test_reference_leaves_every_other_token(text):
    kept = {"She taught herself": "They taught herself", "he taught himself": "they taught himself"}
    assert scrub_pronouns(text, "reference") == kept.get(text, text)


@pytest.mark.parametrize(
    ("text", "reference", "thorough"),
    [
        ("hers", "hers", "theirs"),
        ("himself", "himself", "themself"),
        ("he's", "he's", "they's"),
        ("(She", "(She", "(They"),
        ("HE", "HE", "THEY"),
        ("His,", "Their,", "Their,"),
        ("Her.", "Their.", "Their."),
        ("her;", "her;", "their;"),
        ("her.", "her.", "their."),
    ],
)
def test_the_modes_differ_exactly_where_documented(text, reference, thorough):
    assert scrub_pronouns(text, "reference") == reference
    assert scrub_pronouns(text, "thorough") == thorough


def test_reference_keeps_the_whitespace_between_tokens():
    text = "  He works.\nShe  rests,\this book\r\n her  "
    expected = "  They works.\nThey  rests,\ttheir book\r\n their  "
    assert scrub_pronouns(text, "reference") == expected
    assert scrub_pronouns("", "reference") == ""
    assert scrub_pronouns(" \n ", "reference") == " \n "


def test_reference_table_is_what_the_docs_promise():
    capitals = {"He": "They", "She": "They", "Her": "Their", "Him": "Their", "His": "Their"}
    expected = {}
    for form, value in capitals.items():
        expected |= {form: value, form + ".": value + ".", form + ",": value + ","}
        expected[form.lower()] = value.lower()
    assert REFERENCE_TOKENS == expected and len(expected) == 20


# ------------------------------------------------------------------------- modes


def test_unknown_mode_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"unknown scrub mode 'full' \(use one of reference, th"):
        scrub_pronouns("he", "full")


def test_data_spec_modes_match_the_scrub_modes():
    assert typing.get_args(typing.get_type_hints(DataSpec)["scrub"]) == SCRUB_MODES
    assert DataSpec().scrub == "reference" and DataSpec().scrub_pronouns is True
