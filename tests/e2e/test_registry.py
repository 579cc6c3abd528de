"""stacd and nvme-cli's ownership registry (/run/nvme/registry/nvmeN/{owner,seqnum}) in the guest.

One stacd with configured controllers (and a stafd with nothing to find, so that stacd audits)
and three subsystems on one port:

* k2 connected by hand with ``nvme connect`` and registered by hand to another owner: stacd's
  configuration wants it, yet stacd neither adopts it nor makes a second connection, and later,
  under disconnect-scope=all-connections-matching-disconnect-trtypes, does not disconnect it;
* k3 connected by hand and registered to nobody: stacd adopts it and claims it as ``stas``;
* k1 connected by stacd: its entry says ``stas`` and is stamped with a uevent sequence number
  taken after the controller was added;
* each entry of stacd's goes when stacd disconnects its controller; the other owner's stays.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Dict, Optional

import pytest

from .daemons import RunningDaemon
from .guest import scaled, wait_for
from .initiator import HOSTID, HOSTNQN, controllers, ctrl_attr
from .test_stacd import kernel_iocs, reload, short

pytestmark = pytest.mark.e2e

REGISTRY = '/run/nvme/registry'
SCOPE_ALL = (
    '[I/O controller connection management]\ndisconnect-scope=all-connections-matching-disconnect-trtypes\n'
)


def nvme_connect(nqn: str) -> str:
    """``nvme connect`` as an admin types it (the tests' host identity, pinned to tb0); the new
    controller's name."""
    nvme = shutil.which('nvme')
    assert nvme, 'nvme-cli is needed in the guest'
    before = set(controllers())
    subprocess.run(
        [nvme, 'connect', '-t', 'tcp', '-a', '192.0.2.1', '-s', '4420', '-n', nqn, '--host-iface', 'tb0',
         '--hostnqn', HOSTNQN, '--hostid', HOSTID],
        check=True,
        capture_output=True,
        timeout=scaled(3),
    )  # fmt: skip
    [new] = wait_for(
        lambda: set(controllers()) - before, scaled(1), f'the controller nvme connect made for {nqn}'
    )
    return new


def entry(device: str) -> Dict[str, str]:
    """The files of ``device``'s registry entry ({} when there is none)."""
    path = os.path.join(REGISTRY, device)
    try:
        out = {}
        for name in os.listdir(path):
            with open(os.path.join(path, name)) as f:
                out[name] = f.read()
        return out
    except FileNotFoundError:  # none, or removed (renamed away whole) while it was read
        return {} if not os.path.isdir(path) else entry(device)


def uevent_seqnum() -> int:
    with open('/sys/kernel/uevent_seqnum') as f:
        return int(f.read())


def detailed(stacd: RunningDaemon) -> Dict[str, dict]:
    return {short(c['subsysnqn']): c for c in stacd.ctl_json('ls', '-d')}


def connected_as(stacd: RunningDaemon, subs) -> Optional[Dict[str, str]]:
    """short subsystem name -> device of what stacd reports connected, when that is ``subs``."""
    now = {k: c['device'] for k, c in detailed(stacd).items() if c['connected'] == 'True'}
    return now if sorted(now) == sorted(subs) else None


def conf(*subs, scope: str = '') -> str:
    lines = ''.join(
        f'controller=transport=tcp;traddr=192.0.2.1;trsvcid=4420;host-iface=tb0;nqn={s.nqn}\n' for s in subs
    )
    return '[Controllers]\n' + lines + scope


def test_stacd_records_what_it_connects_and_leaves_another_owners_controller_alone(
    fabric, start_daemon, uevents
):
    tb0 = fabric.interface('tb0', '192.0.2.1/24')
    port = fabric.port(tb0, trsvcid=4420)
    k1, k2, k3 = (fabric.subsystem(f'k{i}', size_mb=4) for i in (1, 2, 3))
    for sub in (k1, k2, k3):
        port.link(sub)
    theirs = nvme_connect(k2.nqn)
    os.makedirs(f'{REGISTRY}/{theirs}')
    with open(f'{REGISTRY}/{theirs}/owner', 'w') as f:
        f.write('nvme-cli\n')
    unowned = nvme_connect(k3.nqn)
    assert entry(unowned) == {}
    before = uevent_seqnum()

    # stafd runs (with nothing to find) so that stacd knows its word: stacd audits the kernel's
    # other I/O controllers only then
    stafd = start_daemon('stafd', '[Service Discovery]\nzeroconf=disabled\n')
    stacd = start_daemon('stacd', conf(k1, k2, k3))
    ours = wait_for(lambda: connected_as(stacd, ['k1', 'k3']), scaled(4), 'k1 connected and k3 adopted')
    assert sorted(kernel_iocs().values()) == ['k1', 'k2', 'k3']  # one controller each
    assert ours['k3'] == unowned  # adopted, not connected again
    made = ours['k1']
    assert made not in (theirs, unowned)

    # k1: stacd's own connection, stamped after the kernel added the controller
    added = uevents.wait(lambda d: d.sys_name == made and d.action == 'add', scaled(1), f'the add of {made}')
    record = entry(made)
    assert record['owner'] == 'stas\n' and record['seqnum'].endswith('\n'), record
    stamp = int(record['seqnum'])
    assert before < int(added.properties['SEQNUM']) <= stamp <= uevent_seqnum()
    # k3: found connected and unowned, claimed
    claimed = entry(unowned)
    assert claimed['owner'] == 'stas\n' and before <= int(claimed['seqnum']) <= uevent_seqnum()
    # k2: another owner's, neither adopted nor connected a second time; stacd says why
    assert entry(theirs) == {'owner': 'nvme-cli\n'}
    assert list(kernel_iocs().values()).count('k2') == 1 and theirs in kernel_iocs()
    view = detailed(stacd)
    assert view['k2']['connected'] == 'False' and view['k2']['device'] == 'nvme?'
    assert f"{theirs} is this connection, owned by 'nvme-cli' per {REGISTRY}" in view['k2']['last error']
    assert (view['k1']['owner'], view['k3']['owner']) == ('stas', 'stas')
    assert ctrl_attr(theirs, 'state') == 'live'

    # k3 no longer wanted, and the scope that disconnects every unwanted tcp IOC: stacd's claimed
    # k3 goes with its entry; the other owner's k2 stays, entry and all
    reload(stacd, conf(k1, scope=SCOPE_ALL))
    wait_for(lambda: unowned not in kernel_iocs(), scaled(3), 'k3 disconnected')
    audited = f"audit: {theirs} ({k2.nqn}) left alone: owned by 'nvme-cli' per {REGISTRY}"
    wait_for(lambda: audited in stacd.logs(), scaled(2), 'the audit to leave k2 alone')
    wait_for(lambda: not entry(unowned), scaled(1), "k3's entry removed")
    assert theirs in kernel_iocs() and entry(theirs) == {'owner': 'nvme-cli\n'}
    assert entry(made) == record

    # k1 no longer wanted: disconnected, its entry removed; k2 still stays
    reload(stacd, conf(scope=SCOPE_ALL))
    wait_for(lambda: made not in kernel_iocs(), scaled(3), 'k1 disconnected')
    wait_for(lambda: not entry(made), scaled(1), "k1's entry removed")
    assert kernel_iocs() == {theirs: 'k2'} and entry(theirs) == {'owner': 'nvme-cli\n'}
    assert stafd.proc.poll() is None
