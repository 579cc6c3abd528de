"""More of what a CDC-managed fabric asks of the daemons, against the test CDC (cdc_site.py):

- entries with NCC set (the subsystem is not connected to the CDC, so the CDC cannot vouch for
  its reachability): stacd connects one that answers like any other, and gives one that does not
  up after ``connect-attempts-on-ncc`` failed attempts, until its entry's NCC bit clears or the
  admin reloads stacd; with ``connect-attempts-on-ncc=0`` it never gives up;
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
)
from .daemons import RunningDaemon, subsystems_seen
from .guest import scaled, wait_for
from .initiator import HOSTNQN, controllers, controllers_of, ctrl_attr

pytestmark = pytest.mark.e2e

NCC_ATTEMPTS = 2
STACD_CONF = f'[I/O controller connection management]\nconnect-attempts-on-ncc={NCC_ATTEMPTS}\n'
GIVING_UP = f'Giving up after {NCC_ATTEMPTS} failed attempts'
# the longest wait between two connect attempts: 60 s after the second failure in a row, stretched
# by up to 10 % per controller (stas.fabric.controller_policy)
LONGEST_RETRY_S = 66


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

    wait_for(lambda: controllers_of(sub1.nqn), scaled(4), 'sub1 connected by stacd')
    (device,) = controllers_of(sub1.nqn)
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
    assert GIVING_UP in stacd.logs()
    assert not controllers_of(sub1.nqn)

    # sub1 now answers behind its entry, and a new page comes (sub2 added) with NCC still set on
    # sub1: stacd connects sub2 and leaves sub1 given up, with no further attempt
    fabric.port(SPARE_ADDR).link(sub1)
    cdc.call(lambda s: s.set_entries([lost, entry(sub2)]))
    wait_for(lambda: controllers_of(sub2.nqn), scaled(3), 'sub2 connected after the AEN')
    row = ioc(stacd, sub1.nqn)
    assert (row['state'], row['connect attempts']) == ('gave-up', str(NCC_ATTEMPTS)), row
    assert not controllers_of(sub1.nqn)

    # the CDC clears NCC on sub1's entry: stacd tries again at once, and connects it
    cdc.call(lambda s: s.set_entries([entry(sub1, traddr=SPARE_ADDR), entry(sub2)]))
    wait_for(lambda: controllers_of(sub1.nqn), scaled(3), 'sub1 connected once NCC cleared')
    row = wait_for(
        lambda: ioc_in_state(stacd, sub1.nqn, 'connected'), scaled(2), 'stacd to list sub1 connected'
    )
    assert row['dlpe.eflags.ncc'] == 'False', row
    assert 'NCC cleared: connecting now' in stacd.logs()
    assert ctrl_attr(row['device'], 'address').startswith(f'traddr={SPARE_ADDR},')
    assert len(controllers_of(sub2.nqn)) == 1


def failed_and_waiting(stacd: RunningDaemon, nqn: str, attempts: int) -> Optional[dict]:
    """stacd's row for ``nqn`` once ``attempts`` attempts failed and a retry is pending."""
    row = ioc_in_state(stacd, nqn, 'backoff')
    return row if row is not None and row['connect attempts'] == str(attempts) else None


def unreachable_ncc_entry(fabric, cdc):
    """sub1, behind an NCC entry that points to an address of tb0 where nothing listens (every
    connect is refused) until the test links sub1 to a port there."""
    sub1 = fabric.subsystem('sub1')
    cdc.call(lambda s: s.set_entries([entry(sub1, eflags=lp.EFLAG_NCC, traddr=SPARE_ADDR)]))
    return sub1


def test_with_connect_attempts_on_ncc_0_an_ncc_entry_is_retried_until_it_answers(cdc, fabric, start_daemon):
    sub1 = unreachable_ncc_entry(fabric, cdc)
    start_daemon('stafd', STAFD_CONF)
    stacd = start_daemon('stacd', '[I/O controller connection management]\nconnect-attempts-on-ncc=0\n')

    # as many failures as connect-attempts-on-ncc=2 gives up after: stacd waits for its next try
    row = wait_for(
        lambda: failed_and_waiting(stacd, sub1.nqn, NCC_ATTEMPTS),
        scaled(5),
        f'{NCC_ATTEMPTS} failed attempts',
    )
    assert (row['dlpe.eflags.ncc'], row['connected']) == ('True', 'False'), row
    assert 'Giving up' not in stacd.logs()

    # sub1 answers now: the next attempt, past where a limit of 2 stops, connects it
    fabric.port(SPARE_ADDR).link(sub1)
    wait_for(
        lambda: controllers_of(sub1.nqn), LONGEST_RETRY_S + scaled(3), 'sub1 connected by a later attempt'
    )
    row = wait_for(
        lambda: ioc_in_state(stacd, sub1.nqn, 'connected'), scaled(2), 'stacd to list sub1 connected'
    )
    assert row['dlpe.eflags.ncc'] == 'True', row
    assert ctrl_attr(row['device'], 'address').startswith(f'traddr={SPARE_ADDR},')
    assert 'Giving up' not in stacd.logs()


def test_a_reload_retries_an_ncc_entry_that_was_given_up(cdc, fabric, start_daemon):
    sub1 = unreachable_ncc_entry(fabric, cdc)
    start_daemon('stafd', STAFD_CONF)
    stacd = start_daemon('stacd', STACD_CONF)
    wait_for(lambda: ioc_in_state(stacd, sub1.nqn, 'gave-up'), scaled(5), 'stacd to give sub1 up')

    # a reload while nothing answers: a fresh round of attempts, given up again after as many
    stacd.reload()
    wait_for(lambda: stacd.logs().count(GIVING_UP) == 2, scaled(5), 'sub1 given up a second time')
    assert stacd.logs().count('Reload: retrying to connect') == 1
    row = ioc(stacd, sub1.nqn)
    assert (row['state'], row['connect attempts']) == ('gave-up', str(NCC_ATTEMPTS)), row
    assert not controllers_of(sub1.nqn)

    # sub1 answers now (its entry still has NCC set): the admin's reload has stacd connect it
    fabric.port(SPARE_ADDR).link(sub1)
    stacd.reload()
    wait_for(lambda: controllers_of(sub1.nqn), scaled(3), 'sub1 connected after the reload')
    row = wait_for(
        lambda: ioc_in_state(stacd, sub1.nqn, 'connected'), scaled(2), 'stacd to list sub1 connected'
    )
    assert row['dlpe.eflags.ncc'] == 'True', row
    assert stacd.logs().count('Reload: retrying to connect') == 2
    assert ctrl_attr(row['device'], 'address').startswith(f'traddr={SPARE_ADDR},')


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
