"""The test central discovery controller (stas.testing.cdc) against the kernel's NVMe/TCP host:
the kernel connects to it through /dev/nvme-fabrics as to a real CDC, reads its log page, gets
its AEN, and registers with it (DIM) through the admin passthrough ioctl and through libnvme.

No nvmet here: the controller runs in this process (``BackgroundCdc``, in a thread) on
127.0.0.1, on a port of its own. Every controller the kernel made is deleted before the test
controller stops, so the kernel is not left reconnecting to nothing.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, List, Optional, Tuple

import pytest

from stas.fabric import dim
from stas.fabric.dlpe import parse_log_page, subtype_name
from stas.model import WELL_KNOWN_DISC_NQN
from stas.testing.cdc import log_pages as lp
from stas.testing.cdc.server import BackgroundCdc
from stas.workers.nvme_io import send_dim

from .cdc_site import read_log
from .guest import scaled, wait_for
from .initiator import (
    AEN_DISCOVERY_LOG_CHANGE,
    HOSTID,
    HOSTNQN,
    controllers,
    ctrl_attr,
    delete_all_controllers,
    fabrics_connect,
)

pytestmark = pytest.mark.e2e

SUB1 = lp.nvme_entry('nqn.2014-08.org.example:cdc-sub1', '192.0.2.50', '4420')
SUB2 = lp.nvme_entry('nqn.2014-08.org.example:cdc-sub2', '192.0.2.51', '4420', eflags=lp.EFLAG_NCC)
FAR = lp.referral('198.51.100.50', '8009')


def entries(page: bytes) -> List[Tuple[str, str, str, Optional[int]]]:
    return [(subtype_name(e), e.subnqn, e.traddr, e.eflags) for e in parse_log_page(page).entries]


@pytest.fixture
def cdc(host_identity) -> Iterator[BackgroundCdc]:
    """A test CDC on 127.0.0.1 (any free port); the kernel's controllers go before it does."""
    server = BackgroundCdc(host='127.0.0.1', port=0).start()
    try:
        yield server
    finally:
        try:
            delete_all_controllers(scaled(5))
        finally:
            server.stop()


def connect(cdc: BackgroundCdc, **options: Any) -> str:
    return fabrics_connect(
        transport='tcp',
        traddr='127.0.0.1',
        trsvcid=cdc.port,
        nqn=WELL_KNOWN_DISC_NQN,
        hostnqn=HOSTNQN,
        hostid=HOSTID,
        keep_alive_tmo=30,
        **options,
    )


def held_aers(cdc: BackgroundCdc) -> int:
    return sum(c['held_aers'] for c in cdc.call(lambda s: s.connections()))


def test_the_kernel_takes_the_test_cdc_for_a_cdc(cdc) -> None:
    cdc.call(lambda s: s.set_entries([SUB1, FAR]))

    name = connect(cdc)

    assert ctrl_attr(name, 'state') == 'live'
    assert ctrl_attr(name, 'subsysnqn') == WELL_KNOWN_DISC_NQN
    assert ctrl_attr(name, 'transport') == 'tcp'
    (conn,) = cdc.call(lambda s: s.connections())
    assert int(ctrl_attr(name, 'cntlid')) == conn['cntlid']
    assert (conn['hostnqn'], conn['hostid'], conn['kato']) == (HOSTNQN, HOSTID, 30000)
    assert conn['enabled']
    for attr, value in (('cntrltype', 'discovery'), ('dctype', 'cdc')):
        if os.path.exists(f'/sys/class/nvme/{name}/{attr}'):
            assert ctrl_attr(name, attr) == value
    assert entries(read_log(name)) == [
        ('nvme', SUB1.subnqn, '192.0.2.50', 0),
        ('referral', WELL_KNOWN_DISC_NQN, '198.51.100.50', 0),
    ]
    seen = cdc.call(lambda s: s.commands())
    assert {c.opcode for c in seen} >= {0x7F, 0x06, 0x02}  # Connect and properties, Identify, the page


def test_a_log_page_change_reaches_the_kernel_as_an_aen(cdc, uevents) -> None:
    cdc.call(lambda s: s.set_entries([SUB1]))
    name = connect(cdc)
    # the kernel enables the notice and posts its AER on its own once the controller is live
    wait_for(lambda: held_aers(cdc) == 1, scaled(3), f'{name} to post an AER')
    assert [e[1] for e in entries(read_log(name, rae=False))] == [SUB1.subnqn]
    mark = cdc.call(lambda s: s.commands()[-1].seq)

    cdc.call(lambda s: s.set_entries([SUB1, SUB2]))

    assert uevents.wait_for_aen(name, scaled(3)) == AEN_DISCOVERY_LOG_CHANGE
    wait_for(lambda: held_aers(cdc) == 1, scaled(3), f'{name} to post its next AER')
    assert entries(read_log(name)) == [
        ('nvme', SUB1.subnqn, '192.0.2.50', 0),
        ('nvme', SUB2.subnqn, '192.0.2.51', lp.EFLAG_NCC),
    ]
    reads = [c for c in cdc.call(lambda s: s.commands(mark)) if c.opcode == 0x02 and c.lid == 0x70]
    assert reads and reads[-1].rae is False and reads[-1].status == 0


def test_registration_through_the_admin_passthrough(cdc) -> None:
    name = connect(cdc)
    data = dim.encode_dim(
        HOSTNQN, [dim.DimEntry(HOSTNQN, hostid=HOSTID, symname='e2e-host')], ename='guest', ever='Linux'
    )

    status = send_dim(f'/dev/{name}', dim.TAS_REGISTER, data)

    assert status == 0
    (reg,) = cdc.call(lambda s: s.registrations())
    assert (reg.hostnqn, reg.traddr, reg.adrfam, reg.hostid, reg.symname) == (
        HOSTNQN,
        '127.0.0.1',
        1,
        HOSTID,
        'e2e-host',
    )
    status = send_dim(f'/dev/{name}', dim.TAS_DEREGISTER, data)
    assert status == 0
    assert cdc.call(lambda s: s.registrations()) == []
    status = send_dim(f'/dev/{name}', 7, data)
    assert status & 0x7FF == 0x002  # Invalid Field: no such task


def test_libnvme_registers_with_the_test_cdc(cdc) -> None:
    from libnvme import nvme  # noqa: PLC0415 (in the guest only)

    cdc.call(lambda s: s.set_entries([SUB1]))
    root = nvme.root()
    host = nvme.host(root, hostnqn=HOSTNQN, hostid=HOSTID)
    ctrl = nvme.ctrl(
        root, subsysnqn=WELL_KNOWN_DISC_NQN, transport='tcp', traddr='127.0.0.1', trsvcid=str(cdc.port)
    )
    ctrl.discovery_ctrl = True
    ctrl.connect(host, {'keep_alive_tmo': 30})

    assert ctrl.is_registration_supported()
    assert ctrl.registration_ctlr(nvme.NVMF_DIM_TAS_REGISTER) is None
    (reg,) = cdc.call(lambda s: s.registrations())
    assert (reg.hostnqn, reg.traddr, reg.hostid, reg.claimed_traddr) == (HOSTNQN, '127.0.0.1', HOSTID, '')
    log = ctrl.discover()
    assert [(e['subtype'], e['subnqn'], e['traddr']) for e in log] == [('nvme', SUB1.subnqn, '192.0.2.50')]
    ctrl.disconnect()
    wait_for(lambda: not controllers(), scaled(5), 'the discovery controller to go away')


def test_a_dropped_connection_is_reconnected_by_the_kernel(cdc) -> None:
    name = connect(cdc, reconnect_delay=1)
    (first,) = cdc.call(lambda s: s.connections())

    assert cdc.call(lambda s: s.drop_connections()) == 1

    def back() -> bool:
        conns = cdc.call(lambda s: s.connections())
        return bool(conns) and conns[0]['cntlid'] != first['cntlid'] and conns[0]['enabled']

    wait_for(back, scaled(5), f'{name} to reconnect to the test CDC')
    wait_for(lambda: ctrl_attr(name, 'state') == 'live', scaled(5), f'{name} to be live again')
    (again,) = cdc.call(lambda s: s.connections())
    assert again['hostnqn'] == HOSTNQN
