"""stas.testing.cdc.controller and service, without sockets: what the test discovery controller
answers, field by field, and what it records."""

from __future__ import annotations

import struct
from typing import List, Tuple

import pytest

from stas.fabric import dim, dlpe
from stas.fabric.dlpe import parse_log_page
from stas.model import WELL_KNOWN_DISC_NQN
from stas.testing.cdc import connect, identify, pdu, sqe
from stas.testing.cdc import log_pages as lp
from stas.testing.cdc.controller import AEN_DISCOVERY_LOG_CHANGE, ControllerSession
from stas.testing.cdc.service import DiscoveryService, Fault

HOST_A = 'nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-0000-0000-000000000001'
HOST_B = 'nqn.2014-08.org.nvmexpress:uuid:bbbbbbbb-0000-0000-0000-000000000002'
HOSTID = '11111111-2222-3333-4444-555555555555'
INVALID_FIELD = sqe.SC_INVALID_FIELD | sqe.DNR
SEQUENCE_ERROR = sqe.SC_COMMAND_SEQUENCE_ERROR | sqe.DNR


# ---- a host, in a few lines --------------------------------------------------------------------


def session(service=None, peer=('192.0.2.10', 40000)) -> ControllerSession:
    s = ControllerSession(service or DiscoveryService(), peer, ('192.0.2.1', 8009))
    assert isinstance(s.receive(pdu.IcReq())[0], pdu.IcResp)
    return s


def completion_and_data(out: List[pdu.Pdu]) -> Tuple[sqe.Completion, bytes]:
    assert out and isinstance(out[-1], pdu.CapsuleResp), out
    data = b''
    for p in out[:-1]:
        assert isinstance(p, pdu.C2HData) and p.datao == len(data)
        data += p.data
    return sqe.decode_completion(out[-1].cqe), data


def run(s: ControllerSession, cmd: sqe.Command, data: bytes = b'') -> Tuple[sqe.Completion, bytes]:
    return completion_and_data(s.receive(pdu.CapsuleCmd(sqe.encode_command(cmd), data)))


def admin(s, opcode, cdw=(), length=0, data=b'', cid=10, sgl_type=None):
    cdw = tuple(cdw) + (0,) * (6 - len(cdw))
    if sgl_type is None:
        sgl_type = sqe.SGL_IN_CAPSULE if data else sqe.SGL_TRANSPORT
    cmd = sqe.Command(opcode, cid, sgl_type=sgl_type, sgl_len=len(data) or length, cdw=cdw)
    return run(s, cmd, data)


def fabrics(s, fctype, specific=b'', data=b'', cid=1, sgl_type=None):
    cdw = struct.unpack('<6I', specific.ljust(24, b'\0'))
    if sgl_type is None:
        sgl_type = sqe.SGL_IN_CAPSULE if data else sqe.SGL_TRANSPORT
    cmd = sqe.Command(sqe.OPC_FABRICS, cid, nsid=fctype, sgl_type=sgl_type, sgl_len=len(data), cdw=cdw)
    return run(s, cmd, data)


def do_connect(s, hostnqn=HOST_A, subnqn=WELL_KNOWN_DISC_NQN, qid=0, sqsize=31, kato=30000, **kw):
    params = connect.encode_params(connect.ConnectParams(0, qid, sqsize, 0, kato))
    data = connect.encode_data(connect.ConnectData(HOSTID, 0xFFFF, subnqn, hostnqn))
    return fabrics(s, sqe.FCTYPE_CONNECT, params, data, **kw)[0]


def prop_get(s, offset, size=4):
    return fabrics(s, sqe.FCTYPE_PROPERTY_GET, struct.pack('<B3xI', 1 if size == 8 else 0, offset))[0]


def prop_set(s, offset, value, size=4):
    return fabrics(s, sqe.FCTYPE_PROPERTY_SET, struct.pack('<B3xIQ', 1 if size == 8 else 0, offset, value))[0]


def up(service=None, hostnqn=HOST_A, peer=('192.0.2.10', 40000)) -> ControllerSession:
    s = session(service, peer)
    assert do_connect(s, hostnqn).ok
    assert prop_set(s, 0x14, 1).ok
    return s


def get_log(s, lid, length, offset=0, lsp=0, rae=False, sgl_len=None, cid=20):
    numd = length // 4 - 1
    cdw10 = lid | lsp << 8 | int(rae) << 15 | (numd & 0xFFFF) << 16
    cmd = sqe.Command(
        sqe.OPC_GET_LOG_PAGE,
        cid,
        sgl_len=length if sgl_len is None else sgl_len,
        cdw=(cdw10, numd >> 16, offset & 0xFFFFFFFF, offset >> 32, 0, 0),
    )
    return run(s, cmd)


def read_page(s, lsp=0, rae=False) -> bytes:
    cqe, head = get_log(s, 0x70, 1024, lsp=lsp, rae=True)
    assert cqe.ok
    (numrec,) = struct.unpack_from('<Q', head, 8)
    cqe, page = get_log(s, 0x70, 1024 * (numrec + 1), lsp=lsp, rae=rae)
    assert cqe.ok
    return page


def subsystems(page: bytes) -> List[str]:
    return [e.subnqn for e in parse_log_page(page).entries]


def aer(s, cid=100):
    out = s.receive(pdu.CapsuleCmd(sqe.encode_command(sqe.Command(sqe.OPC_ASYNC_EVENT_REQUEST, cid))))
    return out


def events(s) -> List[sqe.Completion]:
    return [sqe.decode_completion(p.cqe) for p in s.take_outbox()]


def enable_aen(s):
    assert admin(s, sqe.OPC_SET_FEATURES, (0x0B, 1 << 31))[0].ok


# ---- initialization ----------------------------------------------------------------------------


def test_icresp_echoes_the_requested_digests():
    s = ControllerSession(DiscoveryService())
    (resp,) = s.receive(pdu.IcReq(dgst=pdu.DGST_HEADER | pdu.DGST_DATA))
    assert resp == pdu.IcResp(pfv=0, cpda=0, dgst=3, maxh2cdata=0x40000)
    assert s.digests == pdu.Digests(header=True, data=True)
    assert resp.maxh2cdata % 4 == 0 and resp.maxh2cdata >= 4096


def test_icreq_rules():
    s = ControllerSession(DiscoveryService())
    with pytest.raises(pdu.UnexpectedPdu):
        s.receive(pdu.CapsuleCmd(bytes(64)))
    with pytest.raises(pdu.PduError) as info:
        s.receive(pdu.IcReq(pfv=1))
    assert info.value.fes == pdu.FES_UNSUPPORTED_PARAMETER and 'PFV=1' in str(info.value)
    s.receive(pdu.IcReq())
    with pytest.raises(pdu.UnexpectedPdu):
        s.receive(pdu.IcReq())


def test_h2c_term_req_closes():
    s = session()
    assert s.receive(pdu.TermReq(pdu.H2C_TERM_REQ, 1)) == []
    assert s.closing


# ---- Connect and properties --------------------------------------------------------------------


def test_connect_returns_a_cntlid_and_records_the_host():
    service = DiscoveryService()
    a, b = session(service), session(service)
    ca, cb = do_connect(a, HOST_A, kato=15000), do_connect(b, HOST_B)
    assert ca.ok and cb.ok and ca.cid == 1
    assert ca.dw0 & 0xFFFF == a.cntlid and cb.dw0 & 0xFFFF == b.cntlid
    assert a.cntlid != b.cntlid and ca.dw0 >> 16 == 0  # no authentication asked for
    assert (a.hostnqn, a.hostid, a.kato) == (HOST_A, HOSTID, 15000)
    assert a in service.sessions


def test_connect_to_a_unique_subsystem_nqn():
    service = DiscoveryService(subnqn='nqn.2024-01.test:cdc')
    assert do_connect(session(service), subnqn='nqn.2024-01.test:cdc').ok
    assert do_connect(session(service), subnqn=WELL_KNOWN_DISC_NQN).ok


@pytest.mark.parametrize(
    ('kw', 'dw0'),
    [
        ({'subnqn': 'nqn.2014-08.org.example:other'}, 1 << 16 | 256),
        ({'hostnqn': ''}, 1 << 16 | 512),
        ({'qid': 1}, 42),
        ({'sqsize': 128}, 44),
    ],
)
def test_connect_invalid_parameters_name_the_field(kw, dw0):
    cqe = do_connect(session(), **kw)
    assert cqe.status == sqe.SC_CONNECT_INVALID_PARAMETERS | sqe.DNR
    assert cqe.dw0 == dw0


def test_connect_data_must_be_in_the_capsule_and_whole():
    s = session()
    params = connect.encode_params(connect.ConnectParams(0, 0, 31, 0, 0))
    data = connect.encode_data(connect.ConnectData(HOSTID, 0xFFFF, WELL_KNOWN_DISC_NQN, HOST_A))
    cqe, _ = fabrics(s, sqe.FCTYPE_CONNECT, params, data, sgl_type=sqe.SGL_TRANSPORT)
    assert cqe.status == sqe.SC_SGL_DESCRIPTOR_TYPE_INVALID | sqe.DNR
    cqe, _ = fabrics(s, sqe.FCTYPE_CONNECT, params, data[:512])
    assert cqe.status == sqe.SC_DATA_SGL_LENGTH_INVALID | sqe.DNR


def test_command_order():
    s = session()
    assert prop_get(s, 0).status == SEQUENCE_ERROR  # before Connect
    assert admin(s, sqe.OPC_IDENTIFY, (1,), 4096)[0].status == SEQUENCE_ERROR
    assert do_connect(s).ok
    assert do_connect(s).status == SEQUENCE_ERROR  # once only
    assert admin(s, sqe.OPC_IDENTIFY, (1,), 4096)[0].status == SEQUENCE_ERROR  # not enabled yet
    assert prop_set(s, 0x14, 1).ok
    assert admin(s, sqe.OPC_IDENTIFY, (1,), 4096)[0].ok


def test_properties():
    s = session()
    do_connect(s)
    cap = prop_get(s, 0x00, 8).result64
    assert cap & 0xFFFF == 127  # MQES
    assert cap >> 16 & 1 == 1  # CQR
    assert cap >> 24 & 0xFF > 0  # TO
    assert cap >> 37 & 1 == 1  # CSS: NVM command set
    assert cap >> 48 & 0xF == 0  # MPSMIN: 4 KiB pages
    assert prop_get(s, 0x08).dw0 >= 0x00010300
    assert prop_get(s, 0x1C).dw0 == 0
    assert prop_set(s, 0x14, 0x00460001).ok
    assert prop_get(s, 0x14).dw0 == 0x00460001
    assert prop_get(s, 0x1C).dw0 & 1 == 1  # RDY follows EN
    assert prop_set(s, 0x14, 0x00464001).ok  # SHN: normal shutdown
    assert prop_get(s, 0x1C).dw0 >> 2 & 3 == 2  # SHST: complete
    assert prop_set(s, 0x14, 0).ok
    assert prop_get(s, 0x1C).dw0 == 0


@pytest.mark.parametrize(
    ('offset', 'size'),
    [(0x00, 4), (0x08, 8), (0x1C, 8), (0x20, 4), (0x0C, 4)],
)
def test_property_get_of_an_unknown_offset_or_wrong_size_is_an_invalid_field(offset, size):
    s = session()
    do_connect(s)
    assert prop_get(s, offset, size).status == INVALID_FIELD


def test_only_cc_can_be_set():
    s = session()
    do_connect(s)
    assert prop_set(s, 0x1C, 1).status == INVALID_FIELD
    assert prop_set(s, 0x00, 1, size=8).status == INVALID_FIELD


# ---- Identify ----------------------------------------------------------------------------------


def test_identify_controller_fields():
    service = DiscoveryService()
    s = up(service)
    cqe, data = admin(s, sqe.OPC_IDENTIFY, (1,), 4096)
    assert cqe.ok and len(data) == 4096
    assert struct.unpack_from('<H', data, 78)[0] == s.cntlid
    assert struct.unpack_from('<I', data, 80)[0] >= 0x00010300
    assert struct.unpack_from('<I', data, 92)[0] & 1 << 31  # OAES: discovery log change notices
    assert data[111] == 2  # CNTRLTYPE: discovery
    assert data[261] & 0x4  # LPA: extended Get Log Page fields
    assert struct.unpack_from('<H', data, 320)[0] > 0  # KAS
    assert struct.unpack_from('<H', data, 514)[0] > 0  # MAXCMD
    assert struct.unpack_from('<I', data, 536)[0] & 0x3  # SGLS
    nqn = WELL_KNOWN_DISC_NQN.encode()
    assert data[768 : 768 + len(nqn)] == nqn and data[768 + len(nqn)] == 0
    assert struct.unpack_from('<IIH', data, 1792) == (4, 1, 0)  # IOCCSZ, IORCSZ, ICDOFF
    assert data[1806] == 2  # DCTYPE: CDC
    service.set_dctype('ddc')
    assert admin(s, sqe.OPC_IDENTIFY, (1,), 4096)[1][1806] == 1
    service.set_dctype(0)
    assert admin(s, sqe.OPC_IDENTIFY, (1,), 4096)[1][1806] == 0


def test_identify_other_cns_is_an_invalid_field():
    s = up()
    assert admin(s, sqe.OPC_IDENTIFY, (0,), 4096)[0].status == INVALID_FIELD
    assert admin(s, sqe.OPC_IDENTIFY, (6,), 4096)[0].status == INVALID_FIELD


def test_dctype_values_are_checked():
    with pytest.raises(ValueError, match="'xdc'.*cdc"):
        DiscoveryService().set_dctype('xdc')
    with pytest.raises(ValueError):
        DiscoveryService().set_dctype(3)


# ---- discovery log page ------------------------------------------------------------------------

ENTRIES = [
    lp.nvme_entry('nqn.2014-08.org.example:sub1', '192.0.2.20', '4420', portid=1, eflags=lp.EFLAG_EPCSD),
    lp.nvme_entry('nqn.2014-08.org.example:sub2', '2001:db8::20', '4421', portid=2, eflags=lp.EFLAG_NCC),
    lp.referral('198.51.100.1', '8009', portid=1, eflags=lp.EFLAG_DUPRETINFO),
]


def test_log_page_bytes():
    service = DiscoveryService()
    service.set_entries(ENTRIES)
    s = up(service)
    page = read_page(s)
    assert len(page) == 1024 * 4
    assert struct.unpack_from('<QQH', page, 0) == (service.genctr, 3, 0)
    assert page[18:1024] == bytes(1006)
    e = page[1024:2048]
    assert struct.unpack_from('<BBBBHHHH', e, 0) == (3, 1, 2, 0, 1, 0xFFFF, 32, lp.EFLAG_EPCSD)
    assert e[32:36] == b'4420' and e[36] == 0
    assert e[256 : 256 + 28] == b'nqn.2014-08.org.example:sub1'
    assert e[512 : 512 + 10] == b'192.0.2.20'
    assert e[768] == 0  # TSAS: SECTYPE none
    assert page[2048 + 1] == 2  # ADRFAM: IPv6
    assert page[3072 + 2] == 1  # SUBTYPE: referral
    parsed = parse_log_page(page)  # the daemons' own decoder agrees
    assert parsed.dropped == ()
    assert [(x.subnqn, x.traddr, x.trsvcid, x.subtype, x.eflags) for x in parsed.entries] == [
        ('nqn.2014-08.org.example:sub1', '192.0.2.20', '4420', dlpe.SUBTYPE_NVME, 2),
        ('nqn.2014-08.org.example:sub2', '2001:db8::20', '4421', dlpe.SUBTYPE_NVME, 4),
        (WELL_KNOWN_DISC_NQN, '198.51.100.1', '8009', dlpe.SUBTYPE_REFERRAL, 1),
    ]


def test_log_page_in_pieces_equals_the_whole():
    service = DiscoveryService()
    service.set_entries(ENTRIES)
    s = up(service)
    whole = read_page(s)
    pieces = b''.join(get_log(s, 0x70, 512, offset=o)[1] for o in range(0, len(whole), 512))
    assert pieces == whole
    cqe, tail = get_log(s, 0x70, 1024, offset=len(whole) - 8)  # past the end: zeros
    assert cqe.ok and tail == whole[-8:] + bytes(1016)


def test_numdu_carries_the_upper_half_of_numd():
    service = DiscoveryService()
    service.set_entries([lp.nvme_entry(f'nqn.2014-08.org.example:s{i}', '192.0.2.9') for i in range(300)])
    s = up(service)
    length = 1024 * 301  # more than 0x10000 dwords
    assert (length // 4 - 1) >> 16 == 1
    cqe, page = get_log(s, 0x70, length)
    assert cqe.ok and len(page) == length
    assert struct.unpack_from('<Q', page, 8)[0] == 300
    assert len(subsystems(page)) == 300


@pytest.mark.parametrize('offset', [1, 2, 1022])
def test_a_log_page_offset_must_be_dword_aligned(offset):
    assert get_log(up(), 0x70, 64, offset=offset)[0].status == INVALID_FIELD


def test_log_page_offset_past_the_end_and_unknown_lids():
    s = up()
    assert get_log(s, 0x70, 64, offset=1028)[0].status == INVALID_FIELD
    assert get_log(s, 0x02, 512)[0].status == sqe.SC_INVALID_LOG_PAGE | sqe.DNR
    assert get_log(s, 0x70, 4096, sgl_len=1024)[0].status == sqe.SC_DATA_SGL_LENGTH_INVALID | sqe.DNR


def test_genctr_counts_changes():
    service = DiscoveryService()
    s = up(service)
    g0 = struct.unpack_from('<Q', read_page(s))[0]
    service.set_entries(ENTRIES[:1])
    service.set_referrals([lp.referral('198.51.100.2')])
    g2 = struct.unpack_from('<Q', read_page(s))[0]
    assert g2 == g0 + 2 == service.genctr


def test_port_local_entries_only():
    service = DiscoveryService(portid=1)
    service.set_entries(ENTRIES)
    s = up(service)
    assert subsystems(read_page(s, lsp=lp.LSP_PLEO)) == ['nqn.2014-08.org.example:sub1', WELL_KNOWN_DISC_NQN]
    assert len(subsystems(read_page(s))) == 3
    assert get_log(s, 0x70, 1024, lsp=0x01)[0].status == INVALID_FIELD  # unknown LSP bit
    service.set_pleos(False)
    assert get_log(s, 0x70, 1024, lsp=lp.LSP_PLEO)[0].status == INVALID_FIELD


def test_supported_log_pages():
    service = DiscoveryService(pleos=True)
    s = up(service)
    cqe, data = get_log(s, 0x00, 1024, rae=True)
    words = struct.unpack('<256I', data)
    assert cqe.ok and words[0] & 1 and words[0x70] & 1
    assert words[0x70] >> 16 & 0x2  # PLEOS, as the daemons read it
    assert sum(1 for w in words if w) == 2
    service.set_pleos(False)
    assert struct.unpack_from('<I', get_log(s, 0x00, 1024)[1], 0x70 * 4)[0] == 1
    assert get_log(s, 0x00, 1024, lsp=1)[0].status == INVALID_FIELD


# ---- asynchronous events -----------------------------------------------------------------------


def test_aen_on_change_then_masked_until_read_without_rae():
    service = DiscoveryService()
    s = up(service)
    enable_aen(s)
    assert aer(s, cid=101) == []  # held
    service.set_entries(ENTRIES[:1])
    (event,) = events(s)
    assert (event.cid, event.dw0, event.status) == (101, AEN_DISCOVERY_LOG_CHANGE, 0)
    assert event.dw0 & 0x7 == 2 and event.dw0 >> 8 & 0xFF == 0xF0 and event.dw0 >> 16 & 0xFF == 0x70
    assert aer(s, cid=102) == []
    service.set_entries(ENTRIES[:2])
    assert events(s) == []  # masked
    read_page(s, rae=True)
    service.set_entries(ENTRIES)
    assert events(s) == []  # still masked: the read kept the event
    read_page(s, rae=False)
    service.set_entries(ENTRIES[:1])
    assert [e.cid for e in events(s)] == [102]


def test_a_change_without_a_held_aer_is_sent_with_the_next_one():
    service = DiscoveryService()
    s = up(service)
    enable_aen(s)
    service.set_entries(ENTRIES)
    assert events(s) == []
    (resp,) = aer(s, cid=7)
    assert sqe.decode_completion(resp.cqe).dw0 == AEN_DISCOVERY_LOG_CHANGE


def test_no_aen_unless_enabled_or_when_the_page_is_the_same():
    service = DiscoveryService()
    s = up(service)
    aer(s)
    service.set_entries(ENTRIES)
    assert events(s) == []  # Async Event Configuration bit 31 clear
    enable_aen(s)
    service.set_entries(ENTRIES)  # same content
    assert events(s) == []
    assert admin(s, sqe.OPC_GET_FEATURES, (0x0B,))[0].dw0 == 1 << 31


def test_aer_limit():
    s = up()
    for cid in range(4):
        assert aer(s, cid) == []
    cqe, _ = completion_and_data(aer(s, 9))
    assert cqe.status == sqe.SC_AER_LIMIT_EXCEEDED


def test_zoning_per_host_nqn():
    service = DiscoveryService()
    a, b = up(service, HOST_A), up(service, HOST_B)
    for s in (a, b):
        enable_aen(s)
        aer(s)
    service.set_entries(ENTRIES[:1], hostnqn=HOST_A)
    assert len(events(a)) == 1 and events(b) == []
    read_page(a)
    aer(a)
    service.set_entries(ENTRIES[1:2])  # the default zone: B's
    assert events(a) == [] and len(events(b)) == 1
    assert subsystems(read_page(a)) == ['nqn.2014-08.org.example:sub1']
    assert subsystems(read_page(b)) == ['nqn.2014-08.org.example:sub2']
    service.clear_zone(HOST_A)
    assert len(events(a)) == 1
    assert subsystems(read_page(a)) == ['nqn.2014-08.org.example:sub2']


# ---- features, keep alive, unknown opcodes -----------------------------------------------------


def test_features():
    s = up()
    assert admin(s, sqe.OPC_SET_FEATURES, (0x0F, 120000))[0].ok
    assert admin(s, sqe.OPC_GET_FEATURES, (0x0F,))[0].dw0 == 120000 == s.kato
    assert admin(s, sqe.OPC_GET_FEATURES, (0x0F | 3 << 8,))[0].dw0 == 0x4
    assert admin(s, sqe.OPC_SET_FEATURES, (0x07, 1))[0].status == INVALID_FIELD
    assert admin(s, sqe.OPC_GET_FEATURES, (0x02,))[0].status == INVALID_FIELD


def test_keep_alive_and_unknown_opcodes():
    s = up()
    assert admin(s, sqe.OPC_KEEP_ALIVE)[0].ok and s.keep_alives == 1
    assert admin(s, 0x01)[0].status == sqe.SC_INVALID_OPCODE | sqe.DNR
    assert admin(s, 0x80)[0].status == sqe.SC_INVALID_OPCODE | sqe.DNR
    assert fabrics(s, 0x09)[0].status == sqe.SC_INVALID_OPCODE | sqe.DNR


def test_sqhd_advances_per_command():
    s = session()
    first = do_connect(s)
    second = prop_get(s, 0x1C)
    assert second.sqhd == (first.sqhd + 1) % 32


# ---- registrations -----------------------------------------------------------------------------


def registration_data(hostnqn=HOST_A, **entry):
    fields = {'nqn': hostnqn, 'hostid': HOSTID, 'symname': 'host-a', 'trsvcid': '', 'traddr': ''}
    fields.update(entry)
    return dim.encode_dim(hostnqn, [dim.DimEntry(**fields)], ename='host-a.example', ever='Linux 6.1')


def test_dim_register_update_deregister():
    service = DiscoveryService()
    s = up(service, peer=('192.0.2.10', 40000))
    data = registration_data(traddr='10.9.9.9')
    cqe, _ = admin(s, sqe.OPC_DISCOVERY_INFO_MGMT, (dim.TAS_REGISTER,), data=data)
    assert cqe.ok
    reg = service.registrations[HOST_A]
    assert (reg.traddr, reg.adrfam, reg.claimed_traddr) == ('192.0.2.10', 1, '10.9.9.9')  # the socket's
    assert (reg.hostid, reg.symname, reg.entity_name, reg.entity_version) == (
        HOSTID,
        'host-a',
        'host-a.example',
        'Linux 6.1',
    )
    assert (reg.cntlid, reg.task, reg.trtype) == (s.cntlid, 'register', 3)
    data = registration_data(symname='renamed')
    assert admin(s, sqe.OPC_DISCOVERY_INFO_MGMT, (dim.TAS_UPDATE,), data=data)[0].ok
    assert service.registrations[HOST_A].symname == 'renamed'
    assert service.registrations[HOST_A].task == 'update'
    assert admin(s, sqe.OPC_DISCOVERY_INFO_MGMT, (dim.TAS_DEREGISTER,), data=data)[0].ok
    assert service.registrations == {}


def test_dim_from_an_ipv4_mapped_peer_records_the_ipv4_address():
    service = DiscoveryService()
    s = up(service, peer=('::ffff:192.0.2.44', 5))
    assert admin(s, sqe.OPC_DISCOVERY_INFO_MGMT, (0,), data=registration_data())[0].ok
    assert (service.registrations[HOST_A].traddr, service.registrations[HOST_A].adrfam) == ('192.0.2.44', 1)
    s6 = up(service, HOST_B, peer=('2001:db8::7', 5))
    assert admin(s6, sqe.OPC_DISCOVERY_INFO_MGMT, (0,), data=registration_data(HOST_B))[0].ok
    assert service.registrations[HOST_B].adrfam == 2


def test_dim_bad_requests():
    s = up()
    good = registration_data()
    opc = sqe.OPC_DISCOVERY_INFO_MGMT
    assert admin(s, opc, (3,), data=good)[0].status == INVALID_FIELD  # no such task
    assert admin(s, opc, (0,), data=registration_data(HOST_B))[0].status == INVALID_FIELD  # not itself
    bad_format = bytearray(good)
    struct.pack_into('<H', bad_format, 16, 3)  # ENTFMT
    assert admin(s, opc, (0,), data=bytes(bad_format))[0].status == INVALID_FIELD
    bad_tel = bytearray(good)
    struct.pack_into('<I', bad_tel, 1024 + 1024, 1033)
    assert admin(s, opc, (0,), data=bytes(bad_tel))[0].status == INVALID_FIELD
    assert admin(s, opc, (0,), data=good[:900])[0].status == INVALID_FIELD
    cqe, _ = admin(s, opc, (0,), length=len(good), sgl_type=sqe.SGL_TRANSPORT)
    assert cqe.status == sqe.SC_SGL_DESCRIPTOR_TYPE_INVALID | sqe.DNR
    assert s.service.registrations == {}


def test_dim_needs_a_dctype():
    service = DiscoveryService(dctype=identify.DCTYPE_NOT_REPORTED)
    s = up(service)
    cqe, _ = admin(s, sqe.OPC_DISCOVERY_INFO_MGMT, (0,), data=registration_data())
    assert cqe.status == sqe.SC_INVALID_OPCODE | sqe.DNR


@pytest.mark.parametrize(
    ('mutate', 'named'),
    [
        (lambda b: struct.pack_into('<I', b, 0, 99999), 'TDL=99999'),
        (lambda b: struct.pack_into('<Q', b, 8, 50), 'NUMENT=50'),
        (lambda b: struct.pack_into('<H', b, 1024 + 1028, 9), 'NUMEXAT=9'),
        (lambda b: struct.pack_into('<H', b, 1024 + 1032 + 2, 15), 'EXATLEN=15'),
        (lambda b: struct.pack_into('<H', b, 1024 + 1032 + 2, 12), 'HOSTID attribute of 12 bytes'),
    ],
)
def test_dim_decoding_names_the_bad_field(mutate, named):
    raw = bytearray(registration_data())
    mutate(raw)
    with pytest.raises(dim.DimError, match=named):
        dim.decode_dim(bytes(raw))


def test_dim_layout():
    raw = registration_data(trsvcid='4420')
    assert struct.unpack_from('<I4xQHHBxH', raw, 0) == (len(raw), 1, 2, 1, 0, 0x5F)
    assert raw[24 : 24 + len(HOST_A)] == HOST_A.encode()
    assert raw[280:294] == b'host-a.example' and raw[536:545] == b'Linux 6.1'
    die = raw[1024:]
    assert die[32:36] == b'4420' and die[256 : 256 + len(HOST_A)] == HOST_A.encode()
    tel, numexat = struct.unpack_from('<IH', die, 1024)
    assert tel == len(die) == 1032 + 20 + 12 and numexat == 2
    assert struct.unpack_from('<HH', die, 1032) == (1, 16)
    assert struct.unpack_from('<HH', die, 1052) == (2, 8) and die[1056:1064] == b'host-a  '


# ---- faults and the record of commands ---------------------------------------------------------


def test_failing_a_log_page_once():
    service = DiscoveryService()
    s = up(service)
    service.add_fault(Fault(sqe.OPC_GET_LOG_PAGE, status=0x4006, lid=0x70, count=1))
    assert get_log(s, 0x00, 1024)[0].ok  # another LID
    assert get_log(s, 0x70, 1024)[0].status == 0x4006
    assert get_log(s, 0x70, 1024)[0].ok
    assert service.faults == []


def test_failing_connect_and_dropping_or_ignoring_commands():
    service = DiscoveryService()
    service.add_fault(Fault(sqe.OPC_FABRICS, status=sqe.SC_CONNECT_INVALID_HOST | sqe.DNR, fctype=1, count=1))
    s = session(service)
    assert do_connect(s).status == sqe.SC_CONNECT_INVALID_HOST | sqe.DNR
    assert do_connect(s).ok
    prop_set(s, 0x14, 1)
    service.add_fault(Fault(sqe.OPC_IDENTIFY, action='ignore'))
    cmd = sqe.Command(sqe.OPC_IDENTIFY, 5, sgl_len=4096, cdw=(1, 0, 0, 0, 0, 0))
    assert s.receive(pdu.CapsuleCmd(sqe.encode_command(cmd))) == []
    assert not s.closing
    service.add_fault(Fault(sqe.OPC_KEEP_ALIVE, action='close'))
    assert s.receive(pdu.CapsuleCmd(sqe.encode_command(sqe.Command(sqe.OPC_KEEP_ALIVE, 6)))) == []
    assert s.closing


def test_fault_values_are_checked():
    with pytest.raises(ValueError, match="'explode'"):
        Fault(2, action='explode')
    with pytest.raises(ValueError, match='count 0'):
        Fault(2, count=0)


def test_commands_are_recorded():
    service = DiscoveryService()
    s = up(service)
    mark = service.commands_since()[-1].seq
    get_log(s, 0x70, 1024, offset=0, lsp=0, rae=True)
    aer(s)
    seen = service.commands_since(mark)
    assert [(c.opcode, c.lid, c.rae, c.length, c.status) for c in seen] == [
        (0x02, 0x70, True, 1024, 0),
        (0x0C, None, False, 0, None),
    ]
    assert {c.hostnqn for c in seen} == {HOST_A}


def test_entry_values_are_checked():
    with pytest.raises(ValueError, match='portid'):
        lp.Entry('nqn.x', '1.2.3.4', portid=70000)
    with pytest.raises(ValueError, match="'colour'.*unknown"):
        lp.entry_from_dict({'subnqn': 'nqn.x', 'traddr': '1.2.3.4', 'colour': 'red'})
    with pytest.raises(ValueError, match='traddr'):
        lp.Entry('nqn.x', 'a' * 300)
