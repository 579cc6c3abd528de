"""The two parsers of the supervisors' state files, stafd's log page cache and stacd's log page
entries of record: every wrong type refused by name, a malformed file set aside, and no content
at all (arbitrary bytes, arbitrary JSON in any place) escaping a loader as an exception.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stas.model import ControllerSpec, Origin, Role, TransportId
from stas.stacd.state_file import parse_state
from stas.stacd.view import StacView
from stas.stafd import cache
from stas.supervisor import state_files
from stas.testing.log_entries import log_entry

NQN = 'nqn.2024-01.com.example:s1'
DISC = 'nqn.2014-08.org.nvmexpress.discovery'
DC = TransportId('tcp', '192.0.2.1', '8009', DISC, '', 'tb0', 'nqn.2014-08.org.nvmexpress:uuid:1')
IOC = TransportId('tcp', '192.0.2.1', '4420', NQN, '', 'tb0', 'nqn.2014-08.org.nvmexpress:uuid:1')
ENTRY = log_entry(
    trtype='tcp',
    adrfam='ipv4',
    subtype='nvme',
    treq='not specified',
    portid='1',
    trsvcid='4420',
    subnqn=NQN,
    traddr='192.0.2.1',
    eflags='0',
)


def stafd_doc() -> dict:
    return json.loads(cache.dump([(DC, Origin.CONFIGURED, 7, (ENTRY,))]))


def stacd_doc() -> dict:
    view = StacView()
    view.pages = {DC: (ENTRY,)}
    return json.loads(view.dump([ControllerSpec(tid=IOC, role=Role.IOC)]))


def test_the_valid_documents_parse():
    assert cache.parse(json.dumps(stafd_doc())) == [(DC, Origin.CONFIGURED, 7, (ENTRY,))]
    assert parse_state(json.dumps(stacd_doc())) == ({DC: (ENTRY,)}, ((IOC, True),))


# ---- the two parsers: every wrong type named -----------------------------------------------------


def put(doc: dict, path: tuple, value) -> dict:
    doc = copy.deepcopy(doc)
    where = doc
    for key in path[:-1]:
        where = where[key]
    if value is DELETE:
        del where[path[-1]]
    else:
        where[path[-1]] = value
    return doc


DELETE = object()
STAFD_CASES = [
    ((), None, 'the document is null, not an object'),
    ((), [], 'the document is a list, not an object'),
    (('version',), '1', 'not a version 1 log page cache'),
    (('version',), True, 'not a version 1 log page cache'),
    (('version',), 1.0, 'not a version 1 log page cache'),
    (('version',), 2, 'not a version 1 log page cache'),
    (('dcs',), 5, '"dcs" is an integer, not a list'),
    (('dcs',), {}, '"dcs" is an object, not a list'),
    (('dcs', 0), 5, 'entry 0 is an integer, not an object'),
    (('dcs', 0), None, 'entry 0 is null, not an object'),
    (('dcs', 0, 'tid'), [], 'entry 0: "tid" is a list, not an object'),
    (('dcs', 0, 'tid'), None, 'entry 0: "tid" is null, not an object'),
    (('dcs', 0, 'tid'), DELETE, 'entry 0: "tid" is missing'),
    (('dcs', 0, 'tid', 'traddr'), 5, 'entry 0: "tid" field "traddr" is an integer, not a string'),
    (('dcs', 0, 'tid', 'traddr'), DELETE, 'entry 0: "tid" has no "traddr"'),
    (('dcs', 0, 'tid', 'color'), 'red', 'entry 0: "tid" has the unknown key \'color\''),
    (('dcs', 0, 'tid', 'traddr'), 'a\nb', 'entry 0: "tid" field "traddr" is not short printable text'),
    (('dcs', 0, 'tid', 'traddr'), 'x' * 2000, 'entry 0: "tid" field "traddr" is not short printable text'),
    (('dcs', 0, 'origin'), 'found', 'entry 0: "origin" \'found\' is not one of'),
    (('dcs', 0, 'origin'), 1, 'entry 0: "origin" is an integer, not a string'),
    (('dcs', 0, 'genctr'), '7', 'entry 0: "genctr" is a string, not an integer'),
    (('dcs', 0, 'genctr'), True, 'entry 0: "genctr" is true or false, not an integer'),
    (('dcs', 0, 'genctr'), 7.5, 'entry 0: "genctr" is a number, not an integer'),
    (('dcs', 0, 'genctr'), -1, 'entry 0: "genctr" -1 is out of range'),
    (('dcs', 0, 'genctr'), 2**64, 'entry 0: "genctr" 18446744073709551616 is out of range'),
    (('dcs', 0, 'log-pages'), {}, 'entry 0: "log-pages" is an object, not a list'),
    (('dcs', 0, 'log-pages', 0), None, 'entry 0: "log-pages" item 0: log page entry None is not a dict'),
    (('dcs', 0, 'log-pages', 0, 'traddr'), [], 'entry 0: "log-pages" item 0: log page entry traddr=[]'),
]
STACD_CASES = [
    ((), None, 'the document is null, not an object'),
    (('version',), '1', 'not a version 1 stacd state file'),
    (('version',), True, 'not a version 1 stacd state file'),
    (('dcs',), 5, '"dcs" is an integer, not a list'),
    (('dcs', 0), [5], 'entry 0 is a list, not an object'),
    (('dcs', 0, 'dc'), [], 'entry 0: "dc" is a list, not an object'),
    (('dcs', 0, 'dc'), None, 'entry 0: "dc" is null, not an object'),
    (('dcs', 0, 'dc', 'host_nqn'), {}, 'entry 0: "dc" field "host_nqn" is an object, not a string'),
    (('dcs', 0, 'log-pages'), None, 'entry 0: "log-pages" is null, not a list'),
    (('dcs', 0, 'log-pages'), DELETE, 'entry 0: "log-pages" is missing'),
    (('dcs', 0, 'log-pages', 0), 'x', 'entry 0: "log-pages" item 0: log page entry \'x\' is not a dict'),
    (('wanted',), {}, '"wanted" is an object, not a list'),
    (('wanted', 0), 'x', 'wanted 0 is a string, not an object'),
    (('wanted', 0, 'tid'), [], 'wanted 0: "tid" is a list, not an object'),
    (('wanted', 0, 'pin-iface'), 1, 'wanted 0: "pin-iface" is an integer, not true or false'),
    (('wanted', 0, 'pin-iface'), None, 'wanted 0: "pin-iface" is null, not true or false'),
]


def _malformed(doc: dict, path: tuple, value) -> str:
    return json.dumps(value if path == () else put(doc, path, value))


@pytest.mark.parametrize('path, value, why', STAFD_CASES)
def test_the_stafd_cache_parser_names_what_is_wrong(path, value, why):
    with pytest.raises(ValueError) as info:
        cache.parse(_malformed(stafd_doc(), path, value))
    assert str(info.value).startswith(why)


@pytest.mark.parametrize('path, value, why', STACD_CASES)
def test_the_stacd_state_parser_names_what_is_wrong(path, value, why):
    with pytest.raises(ValueError) as info:
        parse_state(_malformed(stacd_doc(), path, value))
    assert str(info.value).startswith(why)


@pytest.mark.parametrize('path, value, why', STAFD_CASES[:8] + STAFD_CASES[-4:])
def test_a_malformed_cache_is_set_aside_with_one_message(tmp_path, path, value, why):
    (tmp_path / cache.FILE_NAME).write_text(_malformed(stafd_doc(), path, value))
    (tmp_path / (cache.FILE_NAME + '.bad')).write_text('an older bad file')
    loaded, problem = cache.load(str(tmp_path))
    target = tmp_path / cache.FILE_NAME
    assert loaded == []
    assert problem.startswith(f'ignoring {target}: {why}')
    assert problem.endswith(f'; set aside as {target}.bad, starting without it')
    assert not target.exists()
    assert (tmp_path / (cache.FILE_NAME + '.bad')).read_text() == _malformed(stafd_doc(), path, value)


# ---- arbitrary content never escapes ------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
LOADERS = [
    ('stafd', cache.load, cache.FILE_NAME, []),
    (
        'stacd',
        lambda d: state_files.load(os.path.join(d, 'stafd-log-pages.json'), parse_state, None),
        'stafd-log-pages.json',
        None,
    ),
]


def _try_all_loaders(data: bytes) -> None:
    for _name, load, file_name, empty in LOADERS:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, file_name)
            with open(path, 'wb') as f:
                f.write(data)
            value, problem = load(d)
            if problem:
                assert value == empty and problem.startswith(f'ignoring {path}: ')
                assert os.path.exists(path + '.bad') and not os.path.exists(path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_a_loader(data):
    _try_all_loaders(data)


def _skeletons(value) -> list:
    """``value`` as the whole document and in each place of both documents."""
    docs = [value]
    for doc in (stafd_doc(), stacd_doc()):
        for path in (
            ('dcs',),
            ('dcs', 0),
            ('dcs', 0, 'tid'),
            ('dcs', 0, 'dc'),
            ('dcs', 0, 'genctr'),
            ('dcs', 0, 'origin'),
            ('dcs', 0, 'log-pages'),
            ('dcs', 0, 'log-pages', 0),
            ('dcs', 0, 'log-pages', 0, 'tsas'),
            ('dcs', 0, 'log-pages', 0, 'portid'),
            ('wanted',),
            ('wanted', 0),
            ('wanted', 0, 'tid'),
            ('wanted', 0, 'tid', 'traddr'),
            ('wanted', 0, 'pin-iface'),
        ):
            try:
                docs.append(put(doc, path, value))
            except (KeyError, IndexError):
                pass  # not a place of this document
    return docs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_values_never_escape_a_loader(value):
    for doc in _skeletons(value):
        _try_all_loaders(json.dumps(doc).encode())
