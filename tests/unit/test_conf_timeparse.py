"""Time spans of zeroconf-connections-persistence (nvme-stas's timeparse formats)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stas.conf.timeparse import timeparse


@pytest.mark.parametrize(
    'text, expected, kind',
    [
        # plain numbers are floats, as nvme-stas returns them
        ('-1', -1.0, float),
        ('0', 0.0, float),
        ('0.5', 0.5, float),
        ('259200', 259200.0, float),
        ('1e3', 1000.0, float),
        # spans are whole seconds
        ('72hours', 259200, int),
        ('72 hours', 259200, int),
        ('72h', 259200, int),
        ('3 days 5 hours', 277200, int),
        ('3d5h', 277200, int),
        ('1 day, 2 hrs, 3 mins, 4 secs', 93784, int),
        ('1 minute, 24 secs', 84, int),
        ('1m24s', 84, int),
        ('2 MINUTES', 120, int),
        ('1.2 minutes', 72, int),
        ('1.5 days', 129600, int),
        ('1/2/3', None, None),
        # clock forms
        ('1:01', 61, int),
        ('1:24', 84, int),
        (':22', 22, int),
        ('1:02:03', 3723, int),
        ('2 days 1:00:00', 176400, int),
        ('1:00:00:00', 86400, int),
        # fractional seconds give a float
        ('1.2 seconds', 1.2, float),
        ('1:01.5', 61.5, float),
        # a sign applies to the whole span
        ('- 1 minute', -60, int),
        ('+ 1 minute', 60, int),
        ('-1 minute, 30 secs', -90, int),
        # not time spans
        ('', None, None),
        ('soon', None, None),
        ('forever', None, None),
        ('72 lightyears', None, None),
        ('1..2 hours', None, None),
        ('inf', None, None),
        ('nan', None, None),
        ('-', None, None),
        ('5 hours 3 days', None, None),
        ('1' * 200, None, None),
    ],
)
def test_timeparse(text, expected, kind):
    result = timeparse(text)
    assert result == expected
    if kind is not None:
        assert type(result) is kind


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('0123456789.:,/+- dhmsayourinecDHMS\t')), max_size=40))
def test_fuzz_timeparse_returns_a_number_or_none(text):
    result = timeparse(text)
    assert result is None or isinstance(result, (int, float))
