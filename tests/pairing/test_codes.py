"""Invite codes: made from entropy, printed, typed back, and checked before any traffic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pairing_support import seeded

from ganglion.errors import ConfigError, InviteCodeError
from ganglion.pairing._words import EVEN, ODD
from ganglion.pairing.codes import MAX_NAMEPLATE, WORDS, InviteCode, make_code, parse_code


def test_the_word_lists_are_the_pgp_lists_of_256_distinct_words_each() -> None:
    assert len(EVEN) == len(ODD) == 256
    assert len(set(EVEN) | set(ODD)) == 512
    assert (EVEN[0], ODD[0], EVEN[255], ODD[255]) == ("aardvark", "adroitness", "zulu", "yucatan")
    assert all(w.isascii() and w.isalpha() and w.islower() for w in EVEN + ODD)


def test_a_made_code_is_a_nameplate_and_three_alternating_words() -> None:
    code = make_code(lambda n: bytes([6, 0x69, 0xA5, 0x94])[:n])
    assert code == InviteCode(7, ("guitarist", "reindeer", "molecule"))
    assert str(code) == "7-guitarist-reindeer-molecule"
    assert code.password == b"7-guitarist-reindeer-molecule"


def test_made_codes_spread_over_the_nameplates_and_words() -> None:
    entropy = seeded(3)
    codes = [make_code(entropy) for _ in range(2000)]
    assert {c.nameplate for c in codes} == set(range(1, MAX_NAMEPLATE + 1))
    assert len({c.words for c in codes}) > 1990  # 2^24 choices: repeats are rare
    assert all(len(c.words) == WORDS for c in codes)


@given(st.binary(min_size=WORDS + 1, max_size=WORDS + 1))
def test_every_made_code_parses_back_to_itself(raw: bytes) -> None:
    code = make_code(lambda n: raw[:n])
    assert parse_code(str(code)) == code
    assert parse_code(str(code).upper().replace("-", "  ")) == code


@pytest.mark.parametrize("typed", [
    "7-guitarist-reindeer-molecule", " 7 Guitarist reindeer MOLECULE ", "7_guitarist_reindeer_molecule",
    "7 - guitarist - reindeer - molecule\n", "007-guitarist-reindeer-molecule",
])
def test_parsing_forgives_case_spaces_and_separators(typed: str) -> None:
    assert str(parse_code(typed)) == "7-guitarist-reindeer-molecule"


def test_a_misspelt_word_is_named_with_the_nearest_words() -> None:
    with pytest.raises(InviteCodeError, match=r"'guitarst' .* position 1; did you mean 'guitarist'"):
        parse_code("7-guitarst-reindeer-molecule")


def test_swapped_words_are_caught_by_the_alternating_lists() -> None:
    with pytest.raises(InviteCodeError, match="position 1; is a word missing or two words swapped"):
        parse_code("7-reindeer-guitarist-molecule")


@pytest.mark.parametrize("typed", ["", "guitarist-reindeer-molecule", "x7-guitarist-reindeer",
                                   "123456-guitarist-reindeer-molecule"])
def test_a_code_without_its_number_is_refused(typed: str) -> None:
    with pytest.raises(InviteCodeError, match="starts with its number"):
        parse_code(typed)


@pytest.mark.parametrize("typed", ["7", "7-guitarist",
                                   "7-" + "-".join(["guitarist", "reindeer"] * 5)])
def test_a_code_with_too_few_or_too_many_words_is_refused(typed: str) -> None:
    with pytest.raises(InviteCodeError, match="words"):
        parse_code(typed)


def test_code_errors_are_config_errors_so_commands_report_them_plainly() -> None:
    assert issubclass(InviteCodeError, ConfigError)


@pytest.mark.parametrize(("nameplate", "words"), [
    (0, ("guitarist", "reindeer")), (65536, ("guitarist", "reindeer")),
    (7, ("reindeer", "guitarist")), (7, ("guitarist",)),
])
def test_an_invite_code_checks_itself(nameplate: int, words: tuple[str, ...]) -> None:
    with pytest.raises(InviteCodeError):
        InviteCode(nameplate, words)


def test_make_code_refuses_an_impossible_word_count() -> None:
    with pytest.raises(InviteCodeError):
        make_code(words=1)
