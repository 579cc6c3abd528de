"""stafd and stacd against a central discovery controller: the test CDC (stas.testing.cdc),
reached by the kernel's NVMe/TCP host exactly as a real one, with real nvmet subsystems behind
its entries, so the I/O controllers stacd makes are real.

Linux nvmet has no DIM, no Supported Log Pages on a discovery controller, ignores PLEO and
says it is no CDC; these are the tests of what a CDC-managed fabric asks of the daemons:
registration with the host's entry, port-local entries when the CDC offers them, AEN -> new log
page -> stacd connects and disconnects, per-host zones, the CDC dropping its connections, and a
refused registration.

The CDC, the nvmet port behind it and the helpers are in cdc_site.py.
"""

from __future__ import annotations

import pytest

from stas.fabric.dlpe import parse_log_page
from stas.model import WELL_KNOWN_DISC_NQN
from stas.testing.cdc import log_pages as lp
from stas.testing.cdc.sqe import SC_INTERNAL

from .cdc_site import (
    CDC_ADDR,
    CDC_PORT,
    FAR,
    LID_DISCOVERY,
    LID_SUPPORTED,
    LSP_PLEO,
    NVMET_ADDR,
    OP_DIM,
    OP_GET_LOG_PAGE,
    OTHER_HOST,
    STAFD_CONF,
    commands,
    entry,
    read_log,
)
from .daemons import RunningDaemon, subsystems_seen
from .guest import scaled, wait_for
from .initiator import HOSTID, HOSTNQN, controllers, controllers_of, ctrl_attr

pytestmark = pytest.mark.e2e


def test_stafd_registers_updates_and_deregisters(cdc, nvmet_port, fabric, stafd_factory):
    sub1 = fabric.subsystem('sub1')
    nvmet_port.link(sub1)
    cdc.call(lambda s: s.set_entries([entry(sub1)]))

    d = stafd_factory(STAFD_CONF)

    wait_for(lambda: subsystems_seen(d).get(CDC_ADDR) == [sub1.nqn], scaled(3), 'the CDC log page')
    # registered with the host's entry; the address is the one the CDC saw the connection from
    wait_for(lambda: cdc.call(lambda s: s.registrations()), scaled(2), 'a DIM registration')
    (reg,) = cdc.call(lambda s: s.registrations())
    assert (reg.hostnqn, reg.hostid, reg.symname, reg.task) == (HOSTNQN, HOSTID, '', 'register')
    assert reg.traddr in (NVMET_ADDR, CDC_ADDR) and reg.trtype == 3
    (dc,) = [c for c in d.ctl_json('ls') if c['traddr'] == CDC_ADDR]
    assert ctrl_attr(dc['device'], 'state') == 'live'

    # a new symbolic name in sys.conf and a reload: the CDC gets it as an update
    d.sys_conf.write_text(d.sys_conf.read_text() + 'symname=rack12-host7\n')
    d.reload()
    wait_for(
        lambda: (
            [(r.symname, r.task) for r in cdc.call(lambda s: s.registrations())]
            == [('rack12-host7', 'update')]
        ),
        scaled(3),
        'the registration updated',
    )

    # the CDC drops every connection: the kernel reconnects, stafd registers and reads again
    before = len(commands(cdc, OP_DIM))
    assert cdc.call(lambda s: s.drop_connections()) == 1
    wait_for(lambda: len(commands(cdc, OP_DIM)) > before, scaled(4), 'registration after the reconnect')
    assert [c['hostnqn'] for c in cdc.call(lambda s: s.connections())] == [HOSTNQN]
    assert subsystems_seen(d).get(CDC_ADDR) == [sub1.nqn]

    # the CDC removed from the configuration: deregistered, then disconnected
    d.reload('[Service Discovery]\nzeroconf=disabled\n')
    wait_for(lambda: not cdc.call(lambda s: s.registrations()), scaled(3), 'the deregistration')
    wait_for(lambda: not cdc.call(lambda s: s.connections()), scaled(3), 'the disconnect')
    assert 'deregistered from the discovery controller' in d.logs()


def test_stafd_asks_a_ddc_for_port_local_entries_when_it_offers_them(cdc, nvmet_port, fabric, stafd_factory):
    sub1 = fabric.subsystem('sub1')
    nvmet_port.link(sub1)
    cdc.call(lambda s: s.set_dctype('ddc'))
    cdc.call(lambda s: s.set_entries([entry(sub1), FAR]))

    d = stafd_factory(STAFD_CONF)

    # Supported Log Pages says PLEO: stafd asks for port-local entries, so FAR is not in its page
    wait_for(lambda: subsystems_seen(d).get(CDC_ADDR) == [sub1.nqn], scaled(3), 'the port-local page')
    assert commands(cdc, OP_GET_LOG_PAGE, LID_SUPPORTED), 'Supported Log Pages never read'
    reads = commands(cdc, OP_GET_LOG_PAGE, LID_DISCOVERY)
    assert reads and all(r.lsp & LSP_PLEO for r in reads), [(r.lsp, r.offset, r.length) for r in reads]


def test_stafd_stopping_without_persistent_connections_deregisters(cdc, nvmet_port, fabric, stafd_factory):
    sub1 = fabric.subsystem('sub1')
    nvmet_port.link(sub1)
    cdc.call(lambda s: s.set_entries([entry(sub1)]))
    d = stafd_factory(
        STAFD_CONF + '[Discovery controller connection management]\npersistent-connections=false\n'
    )
    wait_for(lambda: cdc.call(lambda s: s.registrations()), scaled(3), 'a DIM registration')

    assert d.stop() == 0

    assert cdc.call(lambda s: s.registrations()) == []
    wait_for(lambda: not cdc.call(lambda s: s.connections()), scaled(2), 'the disconnect')


def test_without_pleo_support_a_ddc_is_read_whole(cdc, nvmet_port, fabric, stafd_factory):
    sub1 = fabric.subsystem('sub1')
    nvmet_port.link(sub1)
    cdc.call(lambda s: s.set_dctype('ddc'))
    cdc.call(lambda s: s.set_pleos(False))
    cdc.call(lambda s: s.set_entries([entry(sub1), FAR]))

    d = stafd_factory(STAFD_CONF)

    both = sorted([sub1.nqn, FAR.subnqn])
    wait_for(lambda: subsystems_seen(d).get(CDC_ADDR) == both, scaled(3), 'the whole page')
    reads = commands(cdc, OP_GET_LOG_PAGE, LID_DISCOVERY)
    assert reads and not any(r.lsp & LSP_PLEO for r in reads), [r.lsp for r in reads]


def test_each_host_sees_its_own_zone(cdc, nvmet_port, fabric, stafd_factory):
    mine, theirs = fabric.subsystem('mine'), fabric.subsystem('theirs')
    nvmet_port.link(mine)
    other = OTHER_HOST.hostnqn
    cdc.call(lambda s: s.set_entries([entry(mine)], hostnqn=HOSTNQN))
    cdc.call(lambda s: s.set_entries([entry(theirs)], hostnqn=other))
    cdc.call(lambda s: s.set_entries([FAR]))  # every other host

    d = stafd_factory(STAFD_CONF)

    wait_for(lambda: subsystems_seen(d).get(CDC_ADDR) == [mine.nqn], scaled(3), "this host's zone")
    # a change in another host's zone alone brings this host no new entry
    cdc.call(lambda s: s.set_entries([entry(theirs), FAR], hostnqn=other))
    # a change in this host's zone does, through the AEN
    cdc.call(lambda s: s.set_entries([entry(mine), FAR], hostnqn=HOSTNQN))
    wait_for(
        lambda: subsystems_seen(d).get(CDC_ADDR) == sorted([mine.nqn, FAR.subnqn]), scaled(2), 'the new zone'
    )
    assert theirs.nqn not in subsystems_seen(d).get(CDC_ADDR, [])
    # a CDC is never asked for port-local entries, though it offers them
    assert not any(r.lsp & LSP_PLEO for r in commands(cdc, OP_GET_LOG_PAGE, LID_DISCOVERY))


def cdc_device(d: RunningDaemon) -> str:
    """The kernel device of ``d``'s one discovery controller on the CDC ('' unless it lists one)."""
    rows = [c for c in d.ctl_json('ls') if c['traddr'] == CDC_ADDR]
    return rows[0]['device'] if len(rows) == 1 else ''


def page_on(device: str) -> list:
    """The subsystems of the log page the kernel reads on ``device`` (the AEN stays masked)."""
    return sorted(e.subnqn for e in parse_log_page(read_log(device, rae=True)).entries)


def test_two_hosts_with_a_stafd_each_see_their_own_zones(cdc, nvmet_port, fabric, start_daemon):
    """Two hosts of the fabric in one guest: a stafd with this host's NQN and a second one (its
    own bus and runtime directory) with another NQN and host ID, on the same CDC. Each gets its
    own zone through its own kernel connection, registers under its own NQN, and leaves the other
    host's discovery controller alone (no adoption at start, no disconnect when it drops its own)."""
    mine, theirs = fabric.subsystem('mine'), fabric.subsystem('theirs')
    nvmet_port.link(mine)
    nvmet_port.link(theirs)
    cdc.call(lambda s: s.set_entries([entry(mine)], hostnqn=HOSTNQN))
    cdc.call(lambda s: s.set_entries([entry(theirs)], hostnqn=OTHER_HOST.hostnqn))
    cdc.call(lambda s: s.set_entries([FAR]))  # every other host

    a = start_daemon('stafd', STAFD_CONF)
    wait_for(lambda: subsystems_seen(a).get(CDC_ADDR) == [mine.nqn], scaled(3), "host A's zone")
    a_device = cdc_device(a)
    # host B starts with A's discovery controller already there: it makes one of its own
    b = start_daemon('stafd', STAFD_CONF, host=OTHER_HOST, own_bus=True)
    wait_for(lambda: subsystems_seen(b).get(CDC_ADDR) == [theirs.nqn], scaled(3), "host B's zone")
    b_device = cdc_device(b)
    assert a_device != b_device
    assert sorted(controllers()) == sorted([a_device, b_device])
    assert (ctrl_attr(a_device, 'hostnqn'), ctrl_attr(b_device, 'hostnqn')) == (HOSTNQN, OTHER_HOST.hostnqn)
    # what each kernel connection reads is its host's zone, whoever asks
    assert (page_on(a_device), page_on(b_device)) == ([mine.nqn], [theirs.nqn])
    # the CDC has one connection and one registration per host, each with that host's identity
    assert sorted(c['hostnqn'] for c in cdc.call(lambda s: s.connections())) == sorted(
        [HOSTNQN, OTHER_HOST.hostnqn]
    )
    wait_for(lambda: len(cdc.call(lambda s: s.registrations())) == 2, scaled(3), 'both registrations')
    regs = sorted((r.hostnqn, r.hostid, r.task) for r in cdc.call(lambda s: s.registrations()))
    assert regs == sorted(
        [(HOSTNQN, HOSTID, 'register'), (OTHER_HOST.hostnqn, OTHER_HOST.hostid, 'register')]
    )

    # B's zone changes: B reads its new page after the AEN; A's page and A's reads stay as they were
    a_reads = [c.seq for c in commands(cdc, OP_GET_LOG_PAGE, LID_DISCOVERY) if c.hostnqn == HOSTNQN]
    cdc.call(lambda s: s.set_entries([entry(theirs), FAR], hostnqn=OTHER_HOST.hostnqn))
    both = sorted([theirs.nqn, FAR.subnqn])
    wait_for(lambda: subsystems_seen(b).get(CDC_ADDR) == both, scaled(3), "host B's new zone")
    assert subsystems_seen(a).get(CDC_ADDR) == [mine.nqn]
    assert [c.seq for c in commands(cdc, OP_GET_LOG_PAGE, LID_DISCOVERY) if c.hostnqn == HOSTNQN] == a_reads

    # A restarts (its connection stays): it adopts its own discovery controller, not B's
    assert a.stop() == 0
    a.start()
    wait_for(lambda: subsystems_seen(a).get(CDC_ADDR) == [mine.nqn], scaled(3), "host A's zone again")
    wait_for(lambda: cdc_device(a) == a_device, scaled(3), f'A to adopt {a_device}')
    assert sorted(controllers()) == sorted([a_device, b_device])

    # A drops the CDC from its configuration: it deregisters and disconnects its own controller
    # only; B stays connected and registered, and still reads its zone
    a.reload('[Service Discovery]\nzeroconf=disabled\n')
    wait_for(lambda: controllers() == [b_device], scaled(3), f"A's {a_device} to go")
    wait_for(
        lambda: [r.hostnqn for r in cdc.call(lambda s: s.registrations())] == [OTHER_HOST.hostnqn],
        scaled(2),
        "A's deregistration",
    )
    assert [c['hostnqn'] for c in cdc.call(lambda s: s.connections())] == [OTHER_HOST.hostnqn]
    assert ctrl_attr(b_device, 'state') == 'live'
    assert cdc_device(b) == b_device
    assert page_on(b_device) == both


def test_a_change_on_the_cdc_reaches_stacd(cdc, nvmet_port, fabric, start_daemon):
    sub1, sub2 = fabric.subsystem('sub1'), fabric.subsystem('sub2')
    nvmet_port.link(sub1)
    nvmet_port.link(sub2)
    cdc.call(lambda s: s.set_entries([entry(sub1)]))
    stafd = start_daemon('stafd', STAFD_CONF)
    start_daemon('stacd', '')
    wait_for(lambda: controllers_of(sub1.nqn), scaled(4), 'sub1 connected by stacd')

    # a new entry: AEN -> stafd reads the page -> stacd connects it
    cdc.call(lambda s: s.set_entries([entry(sub1), entry(sub2)]))
    wait_for(lambda: controllers_of(sub2.nqn), scaled(3), 'sub2 connected after the AEN')
    assert len(controllers_of(sub1.nqn)) == 1
    assert subsystems_seen(stafd).get(CDC_ADDR) == sorted([sub1.nqn, sub2.nqn])

    # an entry withdrawn: stacd disconnects what it connected
    cdc.call(lambda s: s.set_entries([entry(sub2)]))
    wait_for(lambda: not controllers_of(sub1.nqn), scaled(3), 'sub1 disconnected once withdrawn')
    assert len(controllers_of(sub2.nqn)) == 1


def test_a_refused_registration_is_reported_by_name_and_retried(cdc, nvmet_port, fabric, stafd_factory):
    sub1 = fabric.subsystem('sub1')
    nvmet_port.link(sub1)
    cdc.call(lambda s: s.set_entries([entry(sub1)]))
    cdc.call(lambda s: s.fail(OP_DIM, status=SC_INTERNAL, count=1))  # without Do Not Retry

    d = stafd_factory(STAFD_CONF)

    # the page is read all the same, and the registration alone is sent again 5 s later
    wait_for(lambda: subsystems_seen(d).get(CDC_ADDR) == [sub1.nqn], scaled(3), 'the CDC log page')
    wait_for(lambda: cdc.call(lambda s: s.registrations()), scaled(4), 'the retried registration')
    assert [c.status for c in commands(cdc, OP_DIM)] == [SC_INTERNAL, 0]
    assert 'Registration error. NvmeStatus: Internal Error (0x0006); registration retried in 5 s' in d.logs()


def self_entry(eflags: int) -> lp.Entry:
    """The CDC's entry for itself (the current discovery subsystem)."""
    return lp.Entry(WELL_KNOWN_DISC_NQN, CDC_ADDR, str(CDC_PORT), subtype=lp.SUBTYPE_DISCOVERY, eflags=eflags)


def dc_state(d) -> str:
    (dc,) = [c for c in d.ctl_json('ls', '-d') if c['traddr'] == CDC_ADDR]
    return dc.get('state', '')


def test_persistent_auto_keeps_a_dc_that_sets_epcsd_and_parks_one_that_does_not(
    cdc, nvmet_port, fabric, start_daemon
):
    sub1, sub2 = fabric.subsystem('sub1'), fabric.subsystem('sub2')
    nvmet_port.link(sub1)
    nvmet_port.link(sub2)
    cdc.call(lambda s: s.set_entries([self_entry(lp.EFLAG_EPCSD), entry(sub1)]))
    conf = (
        STAFD_CONF + '[Discovery controller connection management]\npersistent=auto\nepcsd-poll-interval=3\n'
    )
    stafd = start_daemon('stafd', conf)
    start_daemon('stacd', '')
    wait_for(lambda: controllers_of(sub1.nqn), scaled(4), 'sub1 connected by stacd')
    # EPCSD set: the connection stays (its AENs keep working)
    assert [c['hostnqn'] for c in cdc.call(lambda s: s.connections())] == [HOSTNQN]

    # the CDC stops offering persistent connections: after its next read, stafd parks it
    cdc.call(lambda s: s.set_entries([self_entry(0), entry(sub1)]))
    wait_for(lambda: not cdc.call(lambda s: s.connections()), scaled(3), 'the DC parked')
    wait_for(lambda: dc_state(stafd) == 'parked', scaled(2), 'stafd to show it parked')
    # its log page stays published, and stacd keeps what it connected
    assert subsystems_seen(stafd).get(CDC_ADDR) == [sub1.nqn]
    assert len(controllers_of(sub1.nqn)) == 1

    # no AEN reaches a parked DC: the poll finds the new entry and stacd connects it
    reads = len(commands(cdc, OP_GET_LOG_PAGE, LID_DISCOVERY))
    cdc.call(lambda s: s.set_entries([self_entry(0), entry(sub1), entry(sub2)]))
    wait_for(lambda: controllers_of(sub2.nqn), scaled(4), 'sub2 connected after a poll')
    assert len(commands(cdc, OP_GET_LOG_PAGE, LID_DISCOVERY)) > reads
    wait_for(lambda: not cdc.call(lambda s: s.connections()), scaled(3), 'the DC parked again')


def test_persistent_no_parks_even_a_dc_that_sets_epcsd(cdc, nvmet_port, fabric, stafd_factory):
    sub1 = fabric.subsystem('sub1')
    nvmet_port.link(sub1)
    cdc.call(lambda s: s.set_entries([self_entry(lp.EFLAG_EPCSD), entry(sub1)]))
    conf = STAFD_CONF.replace('host-iface=tb0', 'host-iface=tb0;persistent=no')

    d = stafd_factory(conf)

    wait_for(lambda: subsystems_seen(d).get(CDC_ADDR) == [sub1.nqn], scaled(3), 'the CDC log page')
    wait_for(lambda: dc_state(d) == 'parked', scaled(3), 'the DC parked')
    assert not cdc.call(lambda s: s.connections())
    assert [r.hostnqn for r in cdc.call(lambda s: s.registrations())] == [HOSTNQN]  # kept when parked
