"""Discovery log page entries: from raw log pages (``stas.fabric.dlpe``) and from and to 2.x and
libnvme dictionaries (``stas.dbus.dlpe_dicts``), which must agree; and the queries on them."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stas.dbus import dlpe_dicts
from stas.errors import InvalidArgument
from stas.fabric import dlpe
from stas.model import LogEntry

IOC_NQN = 'nqn.1988-11.com.example:subsys-1'
DC2_NQN = 'nqn.2014-08.com.example:dc-2'


def libnvme_item(**over):
    """An item shaped like libnvme 1.x ctrl.discover() output (tcp, with eflags and tsas)."""
    item = {
        'trtype': 'tcp',
        'adrfam': 'ipv4',
        'traddr': '10.0.0.20',
        'trsvcid': '4420',
        'subnqn': IOC_NQN,
        'subtype': 'nvme',
        'treq': 'not specified',
        'tsas': {'sectype': 'none'},
        'portid': 1,
        'cntlid': 65535,
        'asqsz': 32,
        'eflags': 0,
    }
    item.update(over)
    return item


# ---- libnvme dicts -----------------------------------------------------------------------------


def test_libnvme_item_read_into_numbers():
    assert dlpe_dicts.entry_from_dict(libnvme_item()) == LogEntry(
        trtype=dlpe.TRTYPE_TCP,
        adrfam=dlpe.ADRFAM_IPV4,
        subtype=dlpe.SUBTYPE_NVME,
        treq=0,
        portid=1,
        trsvcid='4420',
        subnqn=IOC_NQN,
        traddr='10.0.0.20',
        cntlid=65535,
        asqsz=32,
        eflags=0,
        tsas=(('sectype', 'none'),),
    )


def test_numbers_as_strings_and_trailing_spaces_give_the_same_entry():
    as_str = libnvme_item(
        traddr='10.0.0.20   ',
        trsvcid=' 4420 ',
        subnqn=IOC_NQN + ' ',
        portid='1',
        cntlid=' 65535',
        asqsz='32',
        eflags='0',
        tsas="{'sectype': 'none'} ",
    )
    assert dlpe_dicts.entry_from_dict(as_str) == dlpe_dicts.entry_from_dict(libnvme_item())


def test_codes_are_read_from_numbers_and_names_and_shown_by_name_when_they_have_one():
    e = dlpe_dicts.entry_from_dict(libnvme_item(trtype=9, adrfam=254, subtype=7, treq=6))
    assert (e.trtype, e.adrfam, e.subtype, e.treq) == (9, 254, 7, 6)
    assert [dlpe_dicts.entry_as_dict(e)[k] for k in ('trtype', 'adrfam', 'subtype', 'treq')] == [
        '9',
        '254',
        '7',
        '6',
    ]
    e = dlpe_dicts.entry_from_dict(libnvme_item(trtype='3', subtype=1, treq='Disable SQflow '))
    assert (e.trtype, e.subtype, e.treq) == (3, 1, 4)
    assert [dlpe_dicts.entry_as_dict(e)[k] for k in ('trtype', 'subtype', 'treq')] == [
        'tcp',
        'referral',
        'disable sqflow',
    ]


def test_old_libnvme_without_eflags_and_tsas():
    item = libnvme_item()
    del item['eflags'], item['tsas'], item['cntlid'], item['asqsz']
    e = dlpe_dicts.entry_from_dict(item)
    assert (e.eflags, e.tsas, e.cntlid, e.asqsz) == (None, (), None, None)
    assert dlpe_dicts.entry_as_dict(e) == {
        'trtype': 'tcp',
        'adrfam': 'ipv4',
        'traddr': '10.0.0.20',
        'trsvcid': '4420',
        'subnqn': IOC_NQN,
        'subtype': 'nvme',
        'treq': 'not specified',
        'portid': '1',
    }


def test_rdma_tsas_dict():
    e = dlpe_dicts.entry_from_dict(
        libnvme_item(trtype='rdma', tsas={'qptype': 'connected', 'prtype': 'roce', 'cms': 'cm'})
    )
    assert e.tsas == (('qptype', 'connected'), ('prtype', 'roce'), ('cms', 'cm'))
    assert dlpe_dicts.entry_as_dict(e)['tsas'] == "{'qptype': 'connected', 'prtype': 'roce', 'cms': 'cm'}"


def test_dbus_dict_has_upstream_keys_in_libnvme_order():
    d = dlpe_dicts.entry_as_dict(dlpe_dicts.entry_from_dict(libnvme_item(eflags=4)))
    assert list(d) == [
        'trtype',
        'adrfam',
        'traddr',
        'trsvcid',
        'subnqn',
        'subtype',
        'treq',
        'tsas',
        'portid',
        'cntlid',
        'asqsz',
        'eflags',
    ]
    assert d['eflags'] == '4'
    assert all(isinstance(v, str) for v in d.values())
    # and it converts back to the same entry (stacd receives these dicts from stafd)
    assert dlpe_dicts.entry_from_dict(d) == dlpe_dicts.entry_from_dict(libnvme_item(eflags=4))


@pytest.mark.parametrize(
    ('over', 'message'),
    [
        ({'traddr': None}, 'traddr=None is not a string'),
        ({'traddr': 'a' * 257}, 'longer than 256 bytes'),
        ({'subnqn': 'n' * 257}, 'longer than 256 bytes'),
        ({'trsvcid': '1' * 33}, 'longer than 32 bytes'),
        ({'traddr': '10.0.0.1,hostnqn=evil'}, 'contains a comma'),
        ({'subnqn': 'nqn.x,traddr=1.2.3.4'}, 'contains a comma'),
        ({'traddr': '10.0.0.1\x00x'}, 'non-printable'),
        ({'trsvcid': '44 20'}, "trsvcid='44 20'"),
        ({'portid': 70000}, 'portid=70000 is out of range 0..65535'),
        ({'portid': -1}, 'portid=-1 is out of range'),
        ({'portid': 'one'}, "portid='one' is not a number"),
        ({'portid': True}, 'portid=True is neither a number nor a string'),
        ({'eflags': 1.5}, 'eflags=1.5 is neither'),
        ({'trtype': 300}, 'trtype=300 is out of range 0..255'),
        ({'trtype': ''}, "trtype='' is not a number 0..255 or one of 'unspecified', 'rdma'"),
        ({'subtype': 'x' * 40}, "is not a number 0..255 or one of 'referral', 'nvme', 'discovery'"),
        ({'treq': 'optional'}, "treq='optional' is not a number 0..255 or one of 'not specified'"),
        (
            {'tsas': 'sectype=none'},
            "tsas='sectype=none' is not a dictionary of names like {'sectype': 'none'}",
        ),
        ({'tsas': "{'sectype': 'none',}"}, 'is not a dictionary of names'),
        ({'tsas': ['none']}, 'tsas=[' + "'none'] is neither a dict nor a string"),
        ({'tsas': {'sectype': None}}, 'tsas item'),
        ({'tsas': {str(i): 'x' for i in range(9)}}, 'tsas has 9 items'),
    ],
)
def test_malformed_items_raise_invalid_argument_naming_field(over, message):
    with pytest.raises(InvalidArgument) as info:
        dlpe_dicts.entry_from_dict(libnvme_item(**over))
    assert message in info.value.message


def test_missing_keys_and_non_dicts():
    item = libnvme_item()
    del item['traddr'], item['portid']
    with pytest.raises(InvalidArgument, match='has no portid, traddr'):
        dlpe_dicts.entry_from_dict(item)
    with pytest.raises(InvalidArgument, match='is not a dict'):
        dlpe_dicts.entry_from_dict(['trtype'])


@pytest.mark.parametrize(
    ('over', 'dropped'),
    [
        ({'traddr': ''}, True),
        ({'traddr': '   '}, True),
        ({'traddr': '0.0.0.0'}, True),
        ({'traddr': '::'}, True),
        ({'traddr': '0:0::0', 'adrfam': 'ipv6'}, True),
        ({'traddr': '10.0.0.20'}, False),
        ({'trtype': 'fc', 'adrfam': 'fc', 'traddr': ''}, True),
        ({'trtype': 'fc', 'adrfam': 'fc', 'traddr': 'nn-0x1:pn-0x2'}, False),
        ({'trtype': 'loop', 'adrfam': 254, 'traddr': ''}, False),
    ],
)
def test_unusable_addresses_are_dropped_with_a_reason(over, dropped):
    entry, reason = dlpe_dicts.screen_entry(libnvme_item(**over))
    assert (entry is None) is dropped
    assert bool(reason) is dropped


# ---- queries -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('eflags', 'expected'), [(0, False), (4, True), (5, True), (3, False), (0xFFFF, True), (None, False)]
)
def test_ncc(eflags, expected):
    item = libnvme_item()
    if eflags is None:
        del item['eflags']
    else:
        item['eflags'] = eflags
    assert dlpe.ncc(dlpe_dicts.entry_from_dict(item)) is expected


def test_ncc_without_entry():
    assert dlpe.ncc(None) is False


def test_referrals_and_io_entries():
    items = [
        libnvme_item(subtype='nvme'),
        libnvme_item(subtype='referral', subnqn=DC2_NQN),
        libnvme_item(subtype='discovery'),
        libnvme_item(subtype=9),
    ]
    entries = [dlpe_dicts.entry_from_dict(item) for item in items]
    assert [e.subnqn for e in dlpe.referrals(entries)] == [DC2_NQN]
    assert [e.subtype for e in dlpe.io_entries(entries)] == [dlpe.SUBTYPE_NVME]


# ---- raw log pages -----------------------------------------------------------------------------


def _field(text: bytes, size: int, pad: bytes = b'\0') -> bytes:
    assert len(text) <= size
    return text + pad * (size - len(text))


def raw_record(codes, numbers, trsvcid, subnqn, traddr, *, tsas=b''):
    """One 1024-byte nvmf_disc_log_entry, field by field at its spec offsets.

    codes: (trtype, adrfam, subtype, treq); numbers: (portid, cntlid, asqsz, eflags).
    """
    rec = bytes(codes)  # 0..3
    rec += struct.pack('<HHHH', *numbers)  # 4..11
    rec += bytes(20)  # 12..31 reserved
    rec += _field(trsvcid, 32, b' ')  # 32..63, space padded as some targets do
    rec += bytes(192)  # 64..255 reserved
    rec += _field(subnqn, 256)  # 256..511
    rec += _field(traddr, 256, b' ')  # 512..767
    rec += _field(tsas, 256)  # 768..1023
    assert len(rec) == 1024
    return rec


def raw_page(genctr, records, numrec=None, recfmt=0):
    header = struct.pack('<QQH', genctr, len(records) if numrec is None else numrec, recfmt)
    header += bytes(1024 - len(header))
    return header + b''.join(records)


GOLDEN_RECORDS = [
    # tcp IOC, TLS 1.3 required
    raw_record((3, 1, 2, 1), (1, 0xFFFF, 32, 0), b'4420', IOC_NQN.encode(), b'10.0.0.20', tsas=bytes([2])),
    # tcp referral to another DC over IPv6, NCC set
    raw_record((3, 2, 1, 4), (2, 0xFFFF, 32, 4), b'8009', DC2_NQN.encode(), b'fe80::20', tsas=bytes([0])),
    # rdma IOC: RoCEv2, connected, rdma_cm
    raw_record(
        (1, 1, 2, 2), (3, 0xFFFE, 128, 0), b'4420', IOC_NQN.encode(), b'192.168.1.20', tsas=bytes([1, 4, 1])
    ),
]
GOLDEN = raw_page(0x1_0000_0002, GOLDEN_RECORDS)


def test_golden_page_header():
    assert dlpe.parse_log_header(GOLDEN) == (0x1_0000_0002, 3, 0)
    assert dlpe.parse_log_header(GOLDEN[:18]) == (0x1_0000_0002, 3, 0)


def as_libnvme_item(record: bytes) -> dict:
    """What libnvme's ``discover()`` makes of one raw record, from the standard's layout: the
    other input ``stas.fabric.dlpe`` accepts, which must give the same entry."""
    trtype, adrfam, subtype, treq, portid, cntlid, asqsz, eflags = struct.unpack_from('<BBBBHHHH', record)

    def text(start, end):
        return record[start:end].split(b'\0', 1)[0].decode('utf-8', 'replace').rstrip(' ')

    traddr = text(512, 768)
    item = {
        'trtype': dlpe.TRTYPES.get(trtype, trtype),
        'adrfam': dlpe.ADRFAMS.get(adrfam, adrfam),
        'traddr': traddr.replace(',', ':', 1) if trtype == 2 else traddr,
        'trsvcid': text(32, 64),
        'subnqn': text(256, 512),
        'subtype': dlpe.SUBTYPES.get(subtype, subtype),
        'treq': dlpe.TREQS.get(treq, treq),
        'portid': portid,
        'cntlid': cntlid,
        'asqsz': asqsz,
        'eflags': eflags,
    }
    tsas = record[768:]
    if trtype == 3:
        item['tsas'] = {'sectype': dlpe.TCP_SECTYPES.get(tsas[0], 'reserved')}
    elif trtype == 1:
        item['tsas'] = {
            'qptype': dlpe.RDMA_QPTYPES.get(tsas[0], 'reserved'),
            'prtype': dlpe.RDMA_PRTYPES.get(tsas[1], 'reserved'),
            'cms': dlpe.RDMA_CMS.get(tsas[2], 'reserved'),
        }
    return item


def same_from_both_inputs(record: bytes) -> None:
    page = dlpe.parse_log_page(raw_page(1, [record]))
    entry, reason = dlpe_dicts.screen_entry(as_libnvme_item(record))
    assert page.entries == ((entry,) if entry else ())
    assert page.dropped == ((f'entry 0: {reason}',) if reason else ())
    # and 2.x's dictionary of it (D-Bus, the state files) reads back into the same entry
    assert all(dlpe_dicts.entry_from_dict(dlpe_dicts.entry_as_dict(e)) == e for e in page.entries)


def test_the_layout_is_the_standards_record():
    assert [name for name, _ in dlpe.ENTRY_LAYOUT if name] == [
        'trtype', 'adrfam', 'subtype', 'treq', 'portid', 'cntlid', 'asqsz', 'eflags',
        'trsvcid', 'subnqn', 'traddr', 'tsas',
    ]  # fmt: skip
    assert struct.calcsize('<' + ''.join(code for _, code in dlpe.ENTRY_LAYOUT)) == dlpe.ENTRY_SIZE


@pytest.mark.parametrize('record', GOLDEN_RECORDS, ids=['tcp-tls', 'tcp-referral', 'rdma'])
def test_golden_records_give_what_libnvme_items_give(record):
    same_from_both_inputs(record)


_TEXT_BYTES = st.one_of(  # at most 32 bytes: they fit every text field, trsvcid's too
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=32).map(str.encode),
    st.binary(max_size=32),
)


@settings(max_examples=300)
@given(
    st.tuples(
        st.sampled_from([0, 1, 2, 3, 9, 254, 255]), st.integers(0, 255), st.integers(0, 4), st.integers(0, 7)
    ),
    st.tuples(*[st.integers(0, 0xFFFF)] * 4),
    _TEXT_BYTES,
    _TEXT_BYTES,
    st.one_of(_TEXT_BYTES, st.sampled_from([b'0.0.0.0', b'::', b'nn-0x1,pn-0x2', b'10.0.0.1', b''])),
    st.binary(min_size=3, max_size=3),
)
def test_any_record_gives_what_its_libnvme_item_gives(codes, numbers, trsvcid, subnqn, traddr, tsas):
    same_from_both_inputs(raw_record(codes, numbers, trsvcid, subnqn, traddr, tsas=tsas))


def test_a_raw_page_keeps_going_past_bad_entries():
    records = [
        GOLDEN_RECORDS[0],
        raw_record((3, 1, 2, 0), (1, 1, 1, 0), b'4420', IOC_NQN.encode(), b'0.0.0.0'),
        raw_record((3, 1, 2, 0), (1, 1, 1, 0), b'4420', IOC_NQN.encode(), b'10.0.0.1,kato=1'),
        GOLDEN_RECORDS[1],
    ]
    page = dlpe.parse_log_page(raw_page(3, records))
    assert [e.subtype for e in page.entries] == [dlpe.SUBTYPE_NVME, dlpe.SUBTYPE_REFERRAL]
    assert len(page.dropped) == 2
    assert page.dropped[0].startswith('entry 1: nvme entry for')
    assert "unspecified traddr '0.0.0.0'" in page.dropped[0]
    assert (
        page.dropped[1]
        == "entry 2: log page entry traddr='10.0.0.1,kato=1' contains a comma or a non-printable character"
    )


def test_an_fc_address_with_a_comma_is_read_as_libnvme_reads_it():
    record = raw_record((2, 4, 2, 0), (1, 1, 1, 0), b'', IOC_NQN.encode(), b'nn-0x1,pn-0x2')
    (entry,) = dlpe.parse_log_page(raw_page(1, [record])).entries
    assert entry.traddr == 'nn-0x1:pn-0x2'


def test_golden_page_entries():
    page = dlpe.parse_log_page(GOLDEN)
    assert page.genctr == 0x1_0000_0002
    assert page.dropped == ()
    assert page.entries == (
        LogEntry(3, 1, 2, 1, 1, '4420', IOC_NQN, '10.0.0.20', 65535, 32, 0, (('sectype', 'tls1.3'),)),
        LogEntry(3, 2, 1, 4, 2, '8009', DC2_NQN, 'fe80::20', 65535, 32, 4, (('sectype', 'none'),)),
        LogEntry(
            1,
            1,
            2,
            2,
            3,
            '4420',
            IOC_NQN,
            '192.168.1.20',
            65534,
            128,
            0,
            (('qptype', 'connected'), ('prtype', 'rocev2'), ('cms', 'cm')),
        ),
    )
    # and as 2.x shows them
    assert [dlpe_dicts.entry_as_dict(e) for e in page.entries][0] == {
        'trtype': 'tcp',
        'adrfam': 'ipv4',
        'traddr': '10.0.0.20',
        'trsvcid': '4420',
        'subnqn': IOC_NQN,
        'subtype': 'nvme',
        'treq': 'required',
        'tsas': "{'sectype': 'tls1.3'}",
        'portid': '1',
        'cntlid': '65535',
        'asqsz': '32',
        'eflags': '0',
    }
    assert [dlpe.ncc(e) for e in page.entries] == [False, True, False]
    assert [e.subnqn for e in dlpe.referrals(page.entries)] == [DC2_NQN]


def test_raw_page_unknown_codes_and_unusable_entries():
    records = [
        raw_record((9, 7, 8, 6), (1, 1, 1, 0), b'1', b'nqn.x', b'10.0.0.1'),  # all codes unnamed
        raw_record((3, 1, 2, 0), (1, 1, 1, 0), b'4420', b'nqn.x', b'0.0.0.0'),  # unspecified address
        raw_record((2, 4, 2, 0), (1, 1, 1, 0), b'', b'nqn.x', b'nn-0x1:pn-0x2'),  # fc: no tsas
    ]
    page = dlpe.parse_log_page(raw_page(5, records))
    assert [(e.trtype, e.adrfam, e.subtype, e.treq, e.tsas) for e in page.entries] == [
        (9, 7, 8, 6, ()),
        (dlpe.TRTYPE_FC, 4, dlpe.SUBTYPE_NVME, 0, ()),
    ]
    assert len(page.dropped) == 1 and page.dropped[0].startswith('entry 1:')


def test_raw_page_extra_bytes_after_last_record_ignored():
    assert dlpe.parse_log_page(GOLDEN + b'\xff' * 100).entries == dlpe.parse_log_page(GOLDEN).entries


def test_empty_page():
    page = dlpe.parse_log_page(raw_page(0, []))
    assert (page.genctr, page.entries, page.dropped) == (0, (), ())


@pytest.mark.parametrize(
    ('buf', 'message'),
    [
        (GOLDEN[:1000], 'log page of 1000 bytes is shorter than its 1024-byte header'),
        (GOLDEN[:-1], 'log page of 4095 bytes cannot hold NUMREC=3 records (4096 bytes)'),
        (raw_page(1, GOLDEN_RECORDS[:1], numrec=2), 'cannot hold NUMREC=2 records'),
        (raw_page(1, [], numrec=2**64 - 1), f'NUMREC={2**64 - 1} exceeds the 65536 records accepted'),
        (raw_page(1, [], numrec=65537), 'NUMREC=65537 exceeds'),
        ('not bytes', 'is not bytes'),
    ],
)
def test_truncated_and_oversize_pages(buf, message):
    with pytest.raises(InvalidArgument) as info:
        dlpe.parse_log_page(buf)
    assert message in info.value.message


def test_short_header_read():
    with pytest.raises(InvalidArgument, match='header of 17 bytes is shorter than 18'):
        dlpe.parse_log_header(GOLDEN[:17])


def test_max_entries_is_a_parameter():
    with pytest.raises(InvalidArgument, match='NUMREC=3 exceeds the 2 records accepted'):
        dlpe.parse_log_page(GOLDEN, max_entries=2)
    assert len(dlpe.parse_log_page(bytearray(GOLDEN), max_entries=3).entries) == 3
    assert len(dlpe.parse_log_page(memoryview(GOLDEN)).entries) == 3


# ---- fuzzing -----------------------------------------------------------------------------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=300),
)
_VALUES = st.one_of(_SCALARS, st.dictionaries(st.text(max_size=5), _SCALARS, max_size=10), st.lists(_SCALARS))
_KEYS = st.sampled_from(
    list(dlpe_dicts.entry_as_dict(dlpe_dicts.entry_from_dict(libnvme_item()))) + ['other']
)


@given(st.one_of(st.dictionaries(_KEYS, _VALUES, max_size=14), _VALUES))
def test_fuzz_converter_raises_only_invalid_argument(item):
    try:
        e = dlpe_dicts.entry_from_dict(item)
    except InvalidArgument:
        return
    for value in (e.traddr, e.trsvcid, e.subnqn):
        assert ',' not in value and value.isprintable()
    assert len(e.traddr.encode('utf-8', 'surrogatepass')) <= 256


@given(st.builds(libnvme_item, traddr=st.text(max_size=20), eflags=st.integers(0, 0xFFFF)))
def test_fuzz_screen_never_raises(item):
    entry, reason = dlpe_dicts.screen_entry(item)
    assert (entry is None) == bool(reason)


@settings(max_examples=200)
@given(st.binary(max_size=4096))
def test_fuzz_raw_page_raises_only_invalid_argument(data):
    try:
        page = dlpe.parse_log_page(data)
    except InvalidArgument:
        return
    _genctr, numrec, _recfmt = dlpe.parse_log_header(data)
    assert 1024 + numrec * 1024 <= len(data)
    assert len(page.entries) + len(page.dropped) == numrec


@given(
    st.lists(
        st.tuples(
            st.integers(0, 255),
            st.integers(0, 255),
            st.integers(0, 255),
            st.integers(0, 255),
            st.binary(min_size=1024 - 4, max_size=1024 - 4),
        ),
        max_size=4,
    ),
    st.integers(0, 2**64 - 1),
)
def test_fuzz_raw_records_with_valid_header(recs, genctr):
    data = raw_page(genctr, [bytes(r[:4]) + r[4] for r in recs])
    page = dlpe.parse_log_page(data)
    assert page.genctr == genctr
    assert len(page.entries) + len(page.dropped) == len(recs)


def test_a_log_page_of_thousands_of_records_is_read_whole():
    # 4,096 records was the bound once: a CDC serving a big fabric lists more
    records = [GOLDEN_RECORDS[0]] * 5000
    page = dlpe.parse_log_page(raw_page(9, records))
    assert len(page.entries) == 5000 and page.genctr == 9


@pytest.mark.parametrize(
    'over,required',
    [
        ({'tsas': {'sectype': 'tls1.3'}, 'treq': 1}, True),  # secure channel required
        ({'tsas': {'sectype': 'tls1.3'}, 'treq': 5}, True),  # required, and sqflow disabled
        ({'tsas': {'sectype': 'tls'}, 'treq': 1}, True),
        ({'tsas': {'sectype': 'tls1.3'}, 'treq': 2}, False),  # TLS offered, not required
        ({'tsas': {'sectype': 'tls1.3'}, 'treq': 0}, False),
        ({'tsas': {'sectype': 'none'}, 'treq': 1}, False),
        ({'trtype': 'rdma', 'tsas': {'qptype': 'connected'}, 'treq': 1}, False),
    ],
)
def test_an_entry_requires_tls_when_its_port_takes_only_tls(over, required):
    assert dlpe.requires_tls(dlpe_dicts.entry_from_dict(libnvme_item(**over))) is required
    assert dlpe.requires_tls(None) is False
