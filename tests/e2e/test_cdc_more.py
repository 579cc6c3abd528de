"""More of what a CDC-managed fabric asks of the daemons, against the test CDC (cdc_site.py):

- entries with NCC set (the subsystem is not connected to the CDC, so the CDC cannot vouch for
  its reachability): stacd connects one that answers like any other, and gives one that does not
  up after ``connect-attempts-on-ncc`` failed attempts, until its entry's NCC bit clears;
- the CDC restarting, its registrations lost: the kernel reconnects its discovery controller
  by itself, and stafd registers again and reads the new CDC's page.
"""

from __future__ import annotations

from typing import Optional

import pytest

from stas.testing.cdc import log_pages as lp

from .cdc_site import (
    CDC_ADDR,
    LID_DISCOVERY,
    OP_GET_LOG_PAGE,
    SPARE_ADDR,
    STAFD_CONF,
    commands,
    entry,
    io_controllers_of,
)
from .daemons import RunningDaemon, subsystems_seen
from .guest import scaled, wait_for
from .initiator import HOSTNQN, controllers, ctrl_attr

pytestmark = pytest.mark.e2e

NCC_ATTEMPTS = 2
STACD_CONF = f'[I/O controller connection management]\nconnect-attempts-on-ncc={NCC_ATTEMPTS}\n'


def ioc(stacd: RunningDaemon, nqn: str) -> Optional[dict]:
    """stacd's detailed row for the I/O controller of ``nqn`` (None while it lists none)."""
    rows = [c for c in stacd.ctl_json('ls', '-d') if c['subsysnqn'] == nqn]
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


def ioc_in_state(stacd: RunningDaemon, nqn: str, state: str) -> Optional[dict]:
    row = ioc(stacd, nqn)
    return row if row is not None and row['state'] == state else None


def test_an_ncc_entry_that_answers_is_simply_connected(cdc, nvmet_port, fabric, start_daemon):
    sub1 = fabric.subsystem('sub1')
    nvmet_port.link(sub1)
    cdc.call(lambda s: s.set_entries([entry(sub1, eflags=lp.EFLAG_NCC)]))
    start_daemon('stafd', STAFD_CONF)
    stacd = start_daemon('stacd', STACD_CONF)

    wait_for(lambda: io_controllers_of(sub1.nqn), scaled(4), 'sub1 connected by stacd')
    (device,) = io_controllers_of(sub1.nqn)
    row = wait_for(
        lambda: ioc_in_state(stacd, sub1.nqn, 'connected'), scaled(2), 'stacd to list it connected'
    )
    assert (row['device'], row['dlpe.eflags.ncc'], row['connected']) == (device, 'True', 'True'), row
    assert ctrl_attr(device, 'state') == 'live'
    assert 'Giving up' not in stacd.logs()


def test_an_ncc_entry_nothing_answers_is_given_up_until_its_ncc_bit_clears(
    cdc, nvmet_port, fabric, start_daemon
):
    sub1, sub2 = fabric.subsystem('sub1'), fabric.subsystem('sub2')
    nvmet_port.link(sub2)
    # sub1's entry points to an address of tb0 where nothing listens: every connect is refused
    lost = entry(sub1, eflags=lp.EFLAG_NCC, traddr=SPARE_ADDR)
    cdc.call(lambda s: s.set_entries([lost]))
    start_daemon('stafd', STAFD_CONF)
    stacd = start_daemon('stacd', STACD_CONF)

    row = wait_for(lambda: ioc_in_state(stacd, sub1.nqn, 'gave-up'), scaled(5), 'stacd to give sub1 up')
    assert (row['connect attempts'], row['dlpe.eflags.ncc'], row['connected']) == (
        str(NCC_ATTEMPTS),
        'True',
        'False',
    ), row
    assert f'Giving up after {NCC_ATTEMPTS} failed attempts' in stacd.logs()
    assert not io_controllers_of(sub1.nqn)

    # sub1 now answers behind its entry, and a new page comes (sub2 added) with NCC still set on
    # sub1: stacd connects sub2 and leaves sub1 given up, with no further attempt
    fabric.port(SPARE_ADDR).link(sub1)
    cdc.call(lambda s: s.set_entries([lost, entry(sub2)]))
    wait_for(lambda: io_controllers_of(sub2.nqn), scaled(3), 'sub2 connected after the AEN')
    row = ioc(stacd, sub1.nqn)
    assert (row['state'], row['connect attempts']) == ('gave-up', str(NCC_ATTEMPTS)), row
    assert not io_controllers_of(sub1.nqn)

    # the CDC clears NCC on sub1's entry: stacd tries again at once, and connects it
    cdc.call(lambda s: s.set_entries([entry(sub1, traddr=SPARE_ADDR), entry(sub2)]))
    wait_for(lambda: io_controllers_of(sub1.nqn), scaled(3), 'sub1 connected once NCC cleared')
    row = wait_for(
        lambda: ioc_in_state(stacd, sub1.nqn, 'connected'), scaled(2), 'stacd to list sub1 connected'
    )
    assert row['dlpe.eflags.ncc'] == 'False', row
    assert 'NCC cleared: connecting now' in stacd.logs()
    assert ctrl_attr(row['device'], 'address').startswith(f'traddr={SPARE_ADDR},')
    assert len(io_controllers_of(sub2.nqn)) == 1


def test_a_restarted_cdc_is_reconnected_registered_with_again_and_read_again(
    cdc, nvmet_port, fabric, stafd_factory
):
    sub1, sub2 = fabric.subsystem('sub1'), fabric.subsystem('sub2')
    nvmet_port.link(sub1)
    nvmet_port.link(sub2)
    cdc.call(lambda s: s.set_entries([entry(sub1)]))
    d = stafd_factory(STAFD_CONF)
    wait_for(lambda: cdc.call(lambda s: s.registrations()), scaled(3), 'the first registration')
    wait_for(lambda: subsystems_seen(d).get(CDC_ADDR) == [sub1.nqn], scaled(2), 'the first page')
    (dc,) = [c for c in d.ctl_json('ls') if c['traddr'] == CDC_ADDR]
    device = dc['device']
    # stafd sets neither reconnect-delay nor ctrl-loss-tmo unless configured, so the kernel's
    # defaults decide how soon it tries again and how long it keeps at it
    delay = int(ctrl_attr(device, 'reconnect_delay'))
    loss = ctrl_attr(device, 'ctrl_loss_tmo')
    assert loss == 'off' or int(loss) >= 10 * delay, (delay, loss)

    # the CDC goes down and comes back knowing nothing of this host, with a changed page
    cdc.stop()
    wait_for(lambda: ctrl_attr(device, 'state') != 'live', scaled(2), f'{device} to lose the CDC')
    cdc.start([entry(sub1), entry(sub2)])

    wait_for(lambda: ctrl_attr(device, 'state') == 'live', scaled(3) + 2 * delay, f'{device} reconnected')
    wait_for(lambda: cdc.call(lambda s: s.registrations()), scaled(3), 'the registration with the new CDC')
    (reg,) = cdc.call(lambda s: s.registrations())
    assert (reg.hostnqn, reg.task) == (HOSTNQN, 'register')
    assert [c['hostnqn'] for c in cdc.call(lambda s: s.connections())] == [HOSTNQN]
    # no AEN told of the new page (it was there from the new CDC's start): stafd read it anyway
    both = sorted([sub1.nqn, sub2.nqn])
    wait_for(lambda: subsystems_seen(d).get(CDC_ADDR) == both, scaled(3), "the new CDC's page")
    assert commands(cdc, OP_GET_LOG_PAGE, LID_DISCOVERY)
    # the kernel's own controller came back: stafd made no second one
    (dc,) = [c for c in d.ctl_json('ls') if c['traddr'] == CDC_ADDR]
    assert dc['device'] == device
    assert controllers() == [device]
