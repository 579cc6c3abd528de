"""The INI tokenizer: configparser's reading rules as nvme-stas 2.x sets them up, plus lines."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stas.conf.ini import MAX_CONFIG_BYTES, UnreadableConfig, split_lines, tokenize
from stas.conf.problems import Code
from stas.errors import ConfigError


def entries(text: str):
    return [(e.section, e.key, e.value, e.line) for e in tokenize(text, 'f.conf').entries]


@pytest.mark.parametrize(
    'text, expected',
    [
        ('[Global]\nkato=30\n', [('Global', 'kato', '30', 2)]),
        # keys are case-insensitive (lower-cased), values keep their case
        ('[Global]\nKATO = Thirty \n', [('Global', 'kato', 'Thirty', 2)]),
        # section names are case-sensitive and kept as written
        ('[global]\nkato=1\n', [('global', 'kato', '1', 2)]),
        # only '=' delimits; the key ends at the FIRST '='
        ('[Controllers]\ncontroller = a=b;c=d==\n', [('Controllers', 'controller', 'a=b;c=d==', 2)]),
        # full-line comments with '#' or ';', indented or not; no inline comments at this level
        ('[Global]\n# kato=1\n  ; kato=2\nkato=3 # three\n', [('Global', 'kato', '3 # three', 4)]),
        # repeated keys are all kept in order with their own lines
        ('[C]\nk=1\nk=2\n\nk=3\n', [('C', 'k', '1', 2), ('C', 'k', '2', 3), ('C', 'k', '3', 5)]),
        # a repeated section merges (strict=False)
        ('[A]\nx=1\n[B]\ny=2\n[A]\nz=3\n', [('A', 'x', '1', 2), ('B', 'y', '2', 4), ('A', 'z', '3', 6)]),
        # empty value
        ('[A]\nx=\n', [('A', 'x', '', 2)]),
        # text after the closing bracket that is a comment is fine
        ('[A] # the A section\nx=1\n', [('A', 'x', '1', 2)]),
        # the section name runs to the LAST ']' as configparser's greedy pattern does
        ('[a]b]\nx=1\n', [('a]b', 'x', '1', 2)]),
        # a UTF-8 byte order mark is not part of the first line
        ('\ufeff[A]\nx=1\n', [('A', 'x', '1', 2)]),
        # keys may contain spaces (configparser keeps them)
        ('[A]\nfoo bar = 1\n', [('A', 'foo bar', '1', 2)]),
    ],
)
def test_reading_rules(text, expected):
    doc = tokenize(text, 'f.conf')
    assert entries(text) == expected
    assert not [p for p in doc.problems if p.code != Code.CONTINUATION]


@pytest.mark.parametrize(
    'text, lines',
    [
        ('[A]\r\nx=1\r\ny=2\r\n', {'x': 2, 'y': 3}),
        ('[A]\rx=1\ry=2', {'x': 2, 'y': 3}),
        ('[A]\n\n\nx=1\n', {'x': 4}),
    ],
)
def test_universal_newlines_keep_line_numbers(text, lines):
    doc = tokenize(text, 'f.conf')
    assert {e.key: e.line for e in doc.entries} == lines


def test_bytes_are_decoded_as_utf8():
    doc = tokenize('[Host]\nsymname=café\n'.encode(), 'f.conf')
    assert doc.entries[0].value == 'café'


def test_continuation_line_is_one_more_value_with_its_own_line_and_a_warning():
    text = '[Controllers]\ncontroller = transport=tcp;traddr=1.1.1.1\n\n    transport=tcp;traddr=2.2.2.2\n'
    doc = tokenize(text, 'f.conf')
    assert [(e.value, e.line, e.continuation) for e in doc.entries] == [
        ('transport=tcp;traddr=1.1.1.1', 2, False),
        ('transport=tcp;traddr=2.2.2.2', 4, True),
    ]
    assert [(p.line, p.code) for p in doc.problems] == [(4, Code.CONTINUATION)]
    assert 'continues line 2' in doc.problems[0].message


def test_indented_key_after_a_section_header_is_a_key_not_a_continuation():
    doc = tokenize('[A]\n   x=1\n   y=2\n', 'f.conf')
    assert [(e.key, e.continuation) for e in doc.entries] == [('x', False), ('y', False)]
    assert doc.problems == ()


@pytest.mark.parametrize(
    'text, line, fragment',
    [
        ('kato=30\n[Global]\n', 1, '"kato=30" is outside any section'),
        ('[Global\n', 1, '"[Global" is not a section header'),
        ('[]\n', 1, '"[]" is not a section header'),
        ('[A] junk\n', 1, '[A]: text after the section header is ignored: "junk"'),
        ('[A]\njust words\n', 2, '[A] "just words" is not a key=value line; ignored'),
        ('[A]\nkato: 30\n', 2, '[A] "kato: 30" is not a key=value line'),
        ('[A]\n= value\n', 2, 'has no key before "="'),
        ('[A]\nx=\x00\x01\n', None, None),  # control characters are values like any other
    ],
)
def test_garbage_lines_are_problems_not_crashes(text, line, fragment):
    doc = tokenize(text, 'g.conf')
    if fragment is None:
        assert doc.problems == ()
        return
    assert len(doc.problems) == 1
    problem = doc.problems[0]
    assert (problem.line, problem.code) == (line, Code.SYNTAX)
    assert fragment in problem.message
    assert str(problem).startswith(f'g.conf:{line}: ')


def test_keys_after_a_bad_header_are_outside_any_section():
    doc = tokenize('[A\nx=1\n', 'g.conf')
    assert doc.entries == ()
    assert [p.line for p in doc.problems] == [1, 2]


def test_not_utf8_raises_the_typed_error_naming_the_line():
    with pytest.raises(UnreadableConfig) as info:
        tokenize(b'[A]\nx=1\nname=\xff\xfe\n', 'bad.conf')
    assert isinstance(info.value, ConfigError)
    assert info.value.path == 'bad.conf'
    assert str(info.value) == 'bad.conf: line 3: not UTF-8 text (byte 0xff at offset 13)'


def test_too_large_raises_the_typed_error():
    with pytest.raises(UnreadableConfig, match='too large'):
        tokenize('#' * (MAX_CONFIG_BYTES + 1), 'big.conf')


def test_document_lookups():
    doc = tokenize('[A]\nx=1\n[B]\nx=2\n[A]\nx=3\n', 'f.conf')
    assert doc.section_names() == ['A', 'B']
    assert [e.value for e in doc.get_all('A', 'x')] == ['1', '3']
    last = doc.get_last('A', 'x')
    assert last is not None and last.line == 6
    assert doc.get_last('A', 'y') is None
    assert doc.line_count == 6


def test_split_lines_counts_like_a_text_file():
    assert split_lines('') == []
    assert split_lines('a') == ['a']
    assert split_lines('a\n') == ['a']
    assert split_lines('a\n\n') == ['a', '']
    assert split_lines('a\r\nb\rc\n') == ['a', 'b', 'c']


# -- fuzzing ---------------------------------------------------------------------------------------

_INI_ALPHABET = st.sampled_from(list('[]=;#:, \t\n\r\x00abcXYZ-_.é\u2028\x0b\x0c\x85'))
_INI_LIKE = st.lists(
    st.one_of(
        st.sampled_from(
            ['[Global]', '[Controllers]', 'kato=30', '  indented', 'controller=a=b;c', '# c', '']
        ),
        st.text(_INI_ALPHABET, max_size=20),
    ),
    max_size=25,
).map('\n'.join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), _INI_LIKE))
def test_fuzz_text_never_raises_and_lines_stay_in_the_file(text):
    doc = tokenize(text, 'fuzz.conf')
    n = doc.line_count
    for item in doc.entries + doc.sections:
        assert 1 <= item.line <= n
    for p in doc.problems:
        assert p.line is not None and 1 <= p.line <= n
        assert str(p).startswith(f'fuzz.conf:{p.line}: ')
        assert str(p).isprintable()  # no NUL, newline or other control character
    for e in doc.entries:
        assert e.key == e.key.lower() and e.key and '=' not in e.key
        assert e.value == e.value.strip()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_bytes_raise_only_the_typed_error(data):
    try:
        doc = tokenize(data, 'fuzz.conf')
    except ConfigError:
        return
    for item in doc.entries:
        assert 1 <= item.line <= doc.line_count


def test_secrets_are_masked_even_in_unparseable_lines():
    doc = tokenize('[Controllers]\ndhchap-secret DHHC-1:01:c2VjcmV0c2VjcmV0:\n', 'f.conf')
    assert [p.message for p in doc.problems] == [
        '[Controllers] "dhchap-secret DHHC-1:<secret>" is not a key=value line; ignored'
    ]


# -- what messages show of the file ------------------------------------------------------------------


@pytest.mark.parametrize(
    'text, message',
    [
        # secrets in lines that could not be parsed
        (
            '[Controllers]\npsk NVMeTLSkey-1:01:c2VjcmV0c2VjcmV0:\n',
            '[Controllers] "psk NVMeTLSkey-1:<secret>" is not a key=value line; ignored',
        ),
        (
            '[Global]\nsecret hunter2\n',
            '[Global] "secret <secret, 7 characters>" is not a key=value line; ignored',
        ),
        (
            '[Global]\nDHCHAP_SECRET: hunter2\n',
            '[Global] "DHCHAP_SECRET: <secret, 7 characters>" is not a key=value line; ignored',
        ),
        (
            'password:hunter2\n',
            '"password:<secret, 7 characters>" is outside any section; ignored '
            '(put it under a [Section] header)',
        ),
        (
            '[A] token: hunter2\n',
            '[A]: text after the section header is ignored: "token: <secret, 7 characters>"',
        ),
        # control characters in section names and raw lines are escaped
        ('[A\x00B]\njunk\n', '[A\\x00B] "junk" is not a key=value line; ignored'),
        ('[A]\njunk\x1b[2J\n', '[A] "junk\\x1b[2J" is not a key=value line; ignored'),
        ('[A\x07] x\n', '[A\\x07]: text after the section header is ignored: "x"'),
    ],
)
def test_messages_mask_secrets_and_escape_control_characters(text, message):
    doc = tokenize(text, 'f.conf')
    assert [p.message for p in doc.problems] == [message]


@pytest.mark.parametrize(
    'text, message',
    [
        # an indented line continuing a controller= whose fields hold a misspelled secret key
        (
            '[Controllers]\ncontroller=transport=tcp;traddr=1.1.1.1\n  transport=tcp;dhchap_secret=hunter2\n',
            '[Controllers] indented line "transport=tcp;dhchap_secret=<secret, 7 characters>" is read as one '
            'more controller= value (it continues line 2); remove the indentation if it is a line of its own',
        ),
        # an indented line continuing a secret-looking key is a secret as a whole
        (
            '[Global]\nmy-psk=abc\n  hunter2 hunter3\n',
            '[Global] indented line "<secret, 15 characters>" is read as one more my-psk= value '
            '(it continues line 2); remove the indentation if it is a line of its own',
        ),
        (
            '[G\x00]\nk\x01=1\n  2\n',
            '[G\\x00] indented line "2" is read as one more k\\x01= value '
            '(it continues line 2); remove the indentation if it is a line of its own',
        ),
    ],
)
def test_continuation_messages_mask_secrets(text, message):
    doc = tokenize(text, 'f.conf')
    assert [p.message for p in doc.problems] == [message]
    assert 'hunter' not in message


def test_huge_names_give_bounded_messages():
    text = '[' + 'S' * 500_000 + '] trailer\n[A]\n' + 'k' * 400_000 + '=1\n  more\n'
    doc = tokenize(text, 'f.conf')
    assert [p.line for p in doc.problems] == [1, 4]
    assert all(len(p.message) < 300 for p in doc.problems)
    assert (
        doc.problems[0].message == '[' + 'S' * 59 + '…]: text after the section header is ignored: "trailer"'
    )
    assert doc.problems[1].message.startswith(
        '[A] indented line "more" is read as one more ' + 'k' * 59 + '…= value'
    )
