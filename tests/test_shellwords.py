"""simplejob.shellwords.split against shlex.split, which it replaces for speed: the same
arguments for every string, the same ValueError for every string shlex cannot read."""

from __future__ import annotations

import os
import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simplejob import shellwords

SCALE = int(os.environ.get("SIMPLEJOB_PROPERTY_SCALE", "1"))
FIXED = SCALE == 1  # the suite runs the same examples every time (see test_properties.py)

# Every character that means something to shlex, the whitespace it does not split on, and letters.
ALPHABET = " \t\r\n\x0b\x0c\x1c\x85\xa0\u2000\u3000'\"\\#$`;|&()*?ab é"


def shlex_result(command: str) -> list[str] | str:
    try:
        return shlex.split(command)
    except ValueError as error:
        return f"ValueError: {error}"


def our_result(command: str) -> list[str] | str:
    try:
        return shellwords.split(command)
    except ValueError as error:
        return f"ValueError: {error}"


@settings(max_examples=1500 * SCALE, deadline=None, derandomize=FIXED)
@given(st.text(alphabet=ALPHABET, max_size=30))
def test_split_is_shlex_split_on_random_strings(command):
    assert our_result(command) == shlex_result(command)


@pytest.mark.parametrize(
    "command",
    [
        "",
        "   ",
        "true",
        "convert 'in dir/img 1.png' -resize 50% \"out/img 1.jpg\"",
        "a''b '' \"\"",
        'say "a \\" b \\\\ c \\$ d \\n"',
        "a\\ b \\'c\\\" d\\\\",
        "x'y z'w\"1 2\"v",
        "tab\there\nnewline\rcr",
        "vt\x0bis\x0cnot space\xa0here",
        "#not a comment",
        "open 'quote",
        'open "quote',
        'open "quote \\"',
        "trailing \\",
        "'",
        '"',
        "\\",
    ],
)
def test_split_is_shlex_split_on_the_cases_that_matter(command):
    assert our_result(command) == shlex_result(command)


def test_a_command_shlex_cannot_read_raises_its_error():
    with pytest.raises(ValueError, match="No closing quotation"):
        shellwords.split("echo 'unclosed")
    with pytest.raises(ValueError, match="No escaped character"):
        shellwords.split("echo \\")


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "command",
    [
        "a" * 20_000 + "'",
        "a " * 10_000 + '"',
        "'a' " * 5_000 + "\\",
        '"\\' * 10_000,
        "a'b'" * 5_000 + '"' + "c" * 10_000,
    ],
)
def test_a_long_command_that_cannot_be_read_is_refused_without_backtracking(command):
    """An earlier version read the command with one regular expression whose nested repetitions
    took exponential time to fail on an argument followed by a quote left open."""
    assert our_result(command) == shlex_result(command)


@settings(max_examples=1500 * SCALE, deadline=None, derandomize=FIXED)
@given(st.text(alphabet=ALPHABET, max_size=30))
def test_readable_and_problem_say_whether_shlex_can_split_and_why_not(command):
    expected = shlex_result(command)
    assert shellwords.readable(command) == isinstance(expected, list)
    assert shellwords.problem(command) == (
        None if isinstance(expected, list) else expected.removeprefix("ValueError: ")
    )
