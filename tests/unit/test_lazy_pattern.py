"""LazyPattern: compiled on its first use, then the same answers as the compiled pattern."""

from __future__ import annotations

import re

from stas.lazy_pattern import LazyPattern


def test_nothing_is_compiled_before_the_first_use():
    pattern = LazyPattern(r'(?P<n>\d+)s', re.I)
    assert not pattern.is_compiled
    assert pattern.fullmatch('12S').group('n') == '12'
    assert pattern.is_compiled
    compiled = pattern.compiled
    pattern.search('x 3s')
    assert pattern.compiled is compiled  # once


def test_each_method_answers_as_re_does():
    lazy, plain = LazyPattern(r'[a-c]+', re.I), re.compile(r'[a-c]+', re.I)
    text = 'xxABcx ca'
    assert lazy.match(text) == plain.match(text) is None
    assert lazy.match(text, 2).span() == plain.match(text, 2).span()
    assert lazy.fullmatch('cab').span() == plain.fullmatch('cab').span()
    assert lazy.search(text).span() == plain.search(text).span()
    assert lazy.sub('-', text) == plain.sub('-', text) == 'xx-x -'
    assert lazy.findall(text) == plain.findall(text) == ['ABc', 'ca']


def test_a_bytes_pattern_with_flags():
    symbol = LazyPattern(rb'\snvme_init_ctrl(?:\s|$)', re.M)
    assert symbol.search(b'ffff t nvme_init_ctrl\nffff t other') is not None
    assert symbol.search(b'ffff t nvme_init_ctrl_x') is None
    assert 'nvme_init_ctrl' in repr(symbol)
