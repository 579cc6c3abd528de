"""stas.errors: codes and the bounded quoting of bad values in messages."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stas.errors import SHOWN_VALUE_CHARS, IllegalTransition, InvalidArgument, StasError, shown_value


@pytest.mark.parametrize(
    ('value', 'shown'),
    [
        ('eth0', "'eth0'"),
        ('', "''"),
        ('a' * 64, repr('a' * 64)),  # 64 characters: shown whole
        ('a\nb', "'a\\nb'"),
        ("it's", '"it\'s"'),
        (42, '42'),
        (None, 'None'),
        ('a' * 65, "'" + 'a' * 61 + "…' (65 characters)"),
        ('x\x07' * 100, "'" + 'x\\x07' * 12 + "x…' (200 characters)"),
        ('\x00' * 1000, "'" + '\\x00' * 15 + "…' (1,000 characters)"),
        ('\U000e0001' * 30, "'" + '\\U000e0001' * 6 + "…' (30 characters)"),
        (b'\xff' * 100, "b'" + '\\xff' * 15 + "…' (100 bytes)"),
    ],
)
def test_shown_value(value, shown):
    assert shown_value(value) == shown


def test_shown_value_of_megabytes_is_short_and_quick():
    text = shown_value('x' * (8 * 1024 * 1024))
    assert text == "'" + 'x' * 61 + "…' (8,388,608 characters)"
    assert shown_value(list(range(1_000_000))).startswith('[0, 1, 2')
    assert len(shown_value({'k': 'v' * 10_000, 'l': list(range(10_000))})) <= SHOWN_VALUE_CHARS


def test_shown_value_limit():
    assert shown_value('abcdefghijkl', limit=8) == "'abcde…' (12 characters)"
    with pytest.raises(ValueError, match='at least 8'):
        shown_value('x', limit=7)


@given(st.text(max_size=300))
def test_shown_value_is_printable_bounded_and_a_prefix_of_the_repr(value):
    text = shown_value(value)
    assert text.isprintable()
    assert len(text) <= SHOWN_VALUE_CHARS + len(f' ({len(value):,} characters)') + 2
    if text != repr(value):  # the repr of a prefix of the value, without its closing quote
        head = text[: text.rindex('…')]
        assert any(repr(value[:n])[:-1] == head for n in range(len(value)))
        assert text.endswith(f' ({len(value):,} characters)')


def test_codes_survive_error_info():
    err = StasError.from_info(InvalidArgument('bad').to_info())
    assert type(err) is InvalidArgument and err.message == 'bad'


def test_an_illegal_transition_names_the_machine_the_event_and_the_state():
    exc = IllegalTransition('worker slot', 'eth0/tcp', 'HelloReceived', 'state running')
    assert str(exc) == 'worker slot eth0/tcp: HelloReceived in state running'
    why = IllegalTransition(
        'controller', 'tid', 'StartRequested', 'phase connecting', 'it starts in phase idle only'
    )
    assert str(why) == 'controller tid: StartRequested in phase connecting: it starts in phase idle only'
    assert (why.machine, why.subject, why.event, why.state, why.why) == (
        'controller',
        'tid',
        'StartRequested',
        'phase connecting',
        'it starts in phase idle only',
    )


def test_an_illegal_transition_is_a_bug_not_an_expected_error():
    assert not issubclass(IllegalTransition, StasError)


def test_an_illegal_transition_survives_a_pickle_whole():
    exc = IllegalTransition('controller', 'tid', 'StartRequested', 'phase connecting', 'why')
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is IllegalTransition and str(back) == str(exc) and back.why == 'why'
