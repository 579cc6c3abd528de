"""nvme-cli's udev autoconnect rule against stafd, with the real systemd-udevd and nvme-cli's rules.

nvme-cli's ``70-nvmf-autoconnect.rules`` answers a discovery controller's Discovery Log Page
Change AEN with ``/usr/bin/systemctl --no-block start nvmf-connect@<args>.service``, which runs
``nvme connect-all <args>``. The guest has no systemd to run that unit, so a stand-in is bind
mounted over /usr/bin/systemctl (in the guest only, for this test only) that does what the unit
does: ``nvme connect-all --quiet`` with the arguments of the unit's instance name, decoded as the
unit decodes them (``echo -e``). Every call is written to a file, so the test sees whether udev ran
nvme-cli's rule at all.

One test, one fabric, as few daemon starts as possible:

1. control: stafd with ``nvme-cli-autoconnect=enabled`` leaves nvme-cli's rule alone: an AEN on
   its discovery controller makes the stand-in connect (so the checks below can fail);
2. SIGHUP with the default (disabled): stafd writes /run/udev/rules.d/70-nvmf-autoconnect.rules;
   with stacd running and excluding one subsystem, a subsystem linked on the target is connected
   once (stacd's), the excluded one stays unconnected, the stand-in is never called for stafd's
   discovery controller; but a discovery controller made by hand still has nvme-cli's rule
   connect what its AEN announces;
3. stafd stops (its discovery controller connection persists): the file is gone, and the next
   AEN makes the stand-in connect again, the excluded subsystem included.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import List

import pytest

from .daemons import subsystems_seen
from .fabric import NQN_PREFIX
from .guest import scaled, wait_for
from .initiator import (
    HOSTID,
    HOSTNQN,
    controllers,
    controllers_of,
    ctrl_attr,
    delete_controller,
    fabrics_connect,
)

pytestmark = pytest.mark.e2e

SYSTEMCTL = '/usr/bin/systemctl'
NVME_CLI_RULE = '/usr/lib/udev/rules.d/70-nvmf-autoconnect.rules'
RULE_FILE_NAME = '70-nvmf-autoconnect.rules'
OVERRIDE = Path('/run/udev/rules.d/' + RULE_FILE_NAME)
DISCOVERY_NQN = 'nqn.2014-08.org.nvmexpress.discovery'

STAFD_CONF = (
    '[Service Discovery]\nzeroconf=disabled\n'
    '[Controllers]\ncontroller=transport=tcp;traddr=192.0.2.1;host-iface=tb0\n'
)
AUTOCONNECT_ENABLED = '[Global]\nnvme-cli-autoconnect=enabled\n'

STANDIN = """#!/bin/sh
# systemctl stand-in for udev's RUN: does what nvmf-connect@.service does
echo "systemctl $*" >> {calls}
for arg in "$@"; do
    case $arg in
        nvmf-connect@*.service) instance=${{arg#nvmf-connect@}}; instance=${{instance%.service}} ;;
    esac
done
[ -n "$instance" ] || exit 0
args=$(/bin/echo -e "$instance")
/usr/sbin/nvme connect-all --quiet $args >> {calls} 2>&1
echo "connect-all exit $?" >> {calls}
"""


@pytest.fixture
def systemctl_standin(tmp_path) -> Path:
    """/usr/bin/systemctl replaced by the stand-in for this test; yields the file of its calls."""
    for path in (SYSTEMCTL, NVME_CLI_RULE, '/usr/sbin/nvme'):
        if not os.path.exists(path):
            pytest.fail(f'{path} is missing: install nvme-cli and systemd', pytrace=False)
    calls = tmp_path / 'systemctl-calls'
    calls.touch()
    script = tmp_path / 'systemctl'
    script.write_text(STANDIN.format(calls=calls))
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    subprocess.run(['mount', '--bind', str(script), SYSTEMCTL], check=True)
    try:
        yield calls
    finally:
        subprocess.run(['umount', SYSTEMCTL], check=True)


def short(nqn: str) -> str:
    return nqn[len(NQN_PREFIX) :] if nqn.startswith(NQN_PREFIX) else nqn


def iocs() -> List[str]:
    """The short subsystem names of the kernel's I/O controllers, one per controller (sorted)."""
    found = []
    for device in controllers():
        try:
            nqn = ctrl_attr(device, 'subsysnqn')
        except OSError:
            continue
        if nqn != DISCOVERY_NQN:
            found.append(short(nqn))
    return sorted(found)


def delete_iocs() -> None:
    for device in controllers():
        try:
            if ctrl_attr(device, 'subsysnqn') != DISCOVERY_NQN:
                delete_controller(device)
        except OSError:
            continue
    wait_for(lambda: not iocs(), scaled(3), 'the I/O controllers to go')


def dcs() -> List[str]:
    return controllers_of(DISCOVERY_NQN)


PROBE_RULE = Path('/run/udev/rules.d/99-nvme-stas-test-probe.rules')


def programs_run_on_change(device: str) -> List[str]:
    """The lines of ``udevadm test`` (the rules as udevd would run them, without RUN) that say
    a program ran for a ``change`` event of ``device``."""
    out = subprocess.run(
        ['udevadm', 'test', '--action=change', f'/sys/class/nvme/{device}'],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = (out.stdout + out.stderr).splitlines()
    assert any(RULE_FILE_NAME in line for line in lines), 'udevadm test read no autoconnect rules'
    return [line for line in lines if '/bin/cat' in line and 'PROGRAM' in line.upper()]


def connect_alls(calls: Path) -> int:
    return calls.read_text().count('connect-all exit')


def test_nvme_cli_autoconnect_rule_is_shadowed_only_while_stafd_runs(
    fabric, start_daemon, udevd, host_identity, systemctl_standin
):
    calls = systemctl_standin
    assert not OVERRIDE.exists(), f'{OVERRIDE} left by an earlier test: {OVERRIDE.read_text()}'
    tb0 = fabric.interface('tb0', '192.0.2.1/24')
    p0 = fabric.port(tb0)
    s1, s2, s3, s4 = (fabric.subsystem(f'u{i}', size_mb=4) for i in range(1, 5))
    p0.link(s1)

    # 1. control: nvme-cli's rule left alone, an AEN makes the stand-in connect
    stafd = start_daemon('stafd', AUTOCONNECT_ENABLED + STAFD_CONF)
    wait_for(lambda: subsystems_seen(stafd).get('192.0.2.1') == [s1.nqn], scaled(3), "u1 in stafd's log page")
    assert not OVERRIDE.exists()
    p0.link(s2)
    wait_for(lambda: connect_alls(calls) >= 1 and 'u2' in iocs(), scaled(3), 'the stand-in to connect u2')
    assert 'nvmf-connect@--device=nvme' in calls.read_text()
    assert sorted(set(iocs())) == ['u1', 'u2']  # nvme-cli connected the whole log page
    delete_iocs()

    # 2. stafd shadows the rule (SIGHUP with the default): only stacd connects, exclude= holds
    stafd.reload(STAFD_CONF)
    wait_for(OVERRIDE.exists, scaled(2), f'{OVERRIDE}')
    text = OVERRIDE.read_text()
    assert text.startswith('# nvme-stas stafd:') and f'(pid {stafd.proc.pid}, ' in text
    # stafd's own discovery controllers skip nvme-cli's rules, which follow, all of them
    assert 'RESULT=="stas", GOTO=' in text and 'NVME_AEN' in text and 'SUBSYSTEM=="fc"' in text
    before = calls.read_text()
    stacd = start_daemon('stacd', f'[Controllers]\nexclude=nqn={s2.nqn}\n')
    wait_for(lambda: iocs() == ['u1'], scaled(4), 'stacd to connect u1')
    # the guard's program runs for the events nvme-cli acts on, not for every change event (the
    # kernel sends one per connect): udevd forks nothing for an I/O controller's plain change
    ioc = next(d for d in controllers() if ctrl_attr(d, 'subsysnqn') == s1.nqn)
    assert not programs_run_on_change(ioc), text
    PROBE_RULE.write_text(f'ACTION=="change", SUBSYSTEM=="nvme", PROGRAM=="/bin/cat {PROBE_RULE}"\n')
    try:  # control: the same look sees a program where a rule has one
        assert programs_run_on_change(ioc)
    finally:
        PROBE_RULE.unlink()
    p0.link(s3)
    wait_for(lambda: iocs() == ['u1', 'u3'], scaled(4), 'stacd to connect u3 after the AEN')
    wait_for(
        lambda: subsystems_seen(stafd).get('192.0.2.1') == sorted([s1.nqn, s2.nqn, s3.nqn]),
        scaled(2),
        "u3 in stafd's log page",
    )
    assert iocs() == ['u1', 'u3']  # one controller each, stacd's; the excluded u2 never connected
    assert calls.read_text() == before, 'udev ran nvme-cli rule while stafd shadowed it'
    assert 'udev rules: wrote' in stafd.logs()

    # ... while a discovery controller stafd does not manage (made by hand, as nvme discover
    # --persistent does) still has nvme-cli's rule answer its AENs
    p1 = fabric.port(tb0, trsvcid=8010)
    s5 = fabric.subsystem('u5', size_mb=4)
    hand_dc = fabrics_connect(
        transport='tcp',
        traddr='192.0.2.1',
        trsvcid='8010',
        nqn=DISCOVERY_NQN,
        hostnqn=HOSTNQN,
        hostid=HOSTID,
        host_iface='tb0',
        keep_alive_tmo=30,
    )
    p1.link(s5)
    wait_for(lambda: 'u5' in iocs(), scaled(4), "nvme-cli's rule to connect u5 through the hand-made DC")
    assert f'nvmf-connect@--device={hand_dc}' in calls.read_text()
    assert iocs() == ['u1', 'u3', 'u5']

    def hand_made_gone() -> bool:
        # step 3 wants stafd's controllers only: those on port 8010 go (the hand-made DC and
        # u5), deleted again at every look, since nvme-cli's stand-in, started by the DC's AEN,
        # may still connect u5 after a delete
        for device in controllers():
            try:
                if 'trsvcid=8010' in ctrl_attr(device, 'address'):
                    delete_controller(device)
            except OSError:
                continue
        return iocs() == ['u1', 'u3'] and len(dcs()) == 1

    wait_for(hand_made_gone, scaled(3), 'the hand-made controllers to go', interval=1.0)
    before = calls.read_text()

    # 3. stafd stops (its DC connection persists): the file goes, nvme-cli's rule works again
    stacd.stop()
    dc = dcs()
    assert len(dc) == 1
    assert stafd.stop() == 0
    assert not OVERRIDE.exists()
    assert dcs() == dc  # persistent-connections: the AENs of this DC now go to nvme-cli's rule
    p0.link(s4)
    wait_for(
        lambda: connect_alls(calls) > before.count('connect-all exit'),
        scaled(4),
        'udev to run nvme-cli rule after stafd stopped',
    )
    wait_for(lambda: {'u2', 'u4'} <= set(iocs()), scaled(2), 'the stand-in to connect u4 and the excluded u2')
