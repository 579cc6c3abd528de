"""Reading a JSON list an item at a time, and what two texts share at their ends
(``stas.stacd.json_items``): the same values as ``json.loads``, the same refusals."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stas.stacd import json_items

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)
space = st.sampled_from(['', ' ', '\n', ' \t\r\n '])


def read(text: str):
    opening = json_items.list_start(text)
    return None if opening is None else json_items.read_items(text, opening, after_item=False)


@settings(max_examples=300, deadline=None)
@given(st.lists(values, max_size=5), st.lists(space, min_size=12, max_size=12))
def test_each_item_decodes_as_json_loads_decodes_it_and_is_where_it_says(items, gaps):
    parts = [gaps[0], '[', gaps[1]]
    for i, value in enumerate(items):
        if i:
            parts += [gaps[(2 * i) % 10 + 2], ',', gaps[(2 * i + 1) % 10 + 2]]
        parts.append(json.dumps(value))
    parts += [gaps[11], ']', gaps[10]]
    text = ''.join(parts)
    found = read(text)
    assert found is not None
    assert [value for _, _, value in found] == json.loads(text)
    for start, end, value in found:
        assert json.loads(text[start:end]) == value


@pytest.mark.parametrize(
    'text',
    ['', '[', ']', '[1,]', '[,1]', '[1 2]', '[1]x', '[1],', '{"a": [1]}', '"[1]"', '[1, [2]', '\ufeff[1]'],
)
def test_what_is_not_a_json_list_is_not_read(text):
    assert read(text) is None


def test_reading_stops_at_an_item_known_to_follow():
    text = '[1, {"a": 2} ,  [3], 4]'
    whole = read(text)
    assert whole is not None
    first_end = whole[0][1]
    third_start = whole[2][0]
    middle = json_items.read_items(text, first_end, after_item=True, stop=third_start)
    assert middle == [whole[1]]
    assert json_items.read_items(text, first_end, after_item=True, stop=third_start - 1) is None
    assert json_items.read_items(text, first_end, after_item=True, stop=whole[1][0]) == []


def _naive_ends(a: str, b: str):
    n = min(len(a), len(b))
    head = 0
    while head < n and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < n - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    return head, tail


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet='ab', max_size=40), st.data())
def test_the_shared_ends_are_the_longest_and_never_overlap(a, data):
    # each edit at a place: '' deletes a character, 'c' replaces one, 'a' and 'b' insert one
    edit = st.tuples(st.integers(0, 40), st.sampled_from(['', 'a', 'b', 'c']))
    b = a
    for place, what in data.draw(st.lists(edit, max_size=3)):
        at = min(place, len(b))
        b = b[:at] + what + b[at + (1 if what in ('', 'c') else 0) :]
    old_block = json_items._BLOCK
    try:
        for block in (1, 3, 7, old_block):
            json_items._BLOCK = block
            head = json_items.shared_start(a, b)
            assert (head, json_items.shared_end(a, b, min(len(a), len(b)) - head)) == _naive_ends(a, b)
            assert json_items.shared_end(a, b, len(a) + len(b)) == _naive_ends(a[::-1], b[::-1])[0]
    finally:
        json_items._BLOCK = old_block
