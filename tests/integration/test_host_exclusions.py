"""nvme-cli's host-wide exclusion files in running daemons (idle workers): read at start, followed
as they change without a SIGHUP, shown by ``status``, fail-open on bad input."""

from __future__ import annotations

import json
import shutil
import signal
import time

import pytest

from .daemons import STAFD_NO_ZEROCONF, TWO_IFACES, Daemon, running, wait_until

NQN1 = 'nqn.2024-01.com.example:s1'
NQN2 = 'nqn.2024-01.com.example:s2'
TWO_IOCS = (
    '[Controllers]\n'
    f'controller=transport=tcp;traddr=192.0.2.1;host-iface=tbA;nqn={NQN1}\n'
    f'controller=transport=tcp;traddr=192.0.2.2;host-iface=tbB;nqn={NQN2}\n'
)
CONFS = {'stafd': STAFD_NO_ZEROCONF + TWO_IFACES, 'stacd': TWO_IOCS}


def listed(d: Daemon) -> list:
    return sorted(c['traddr'] for c in json.loads(d.ctl('ls', '--json').stdout))


def status(d: Daemon) -> dict:
    return json.loads(d.ctl('status', '--json').stdout)


@pytest.mark.parametrize('name', ['stafd', 'stacd'])
def test_exclusion_files_are_followed_without_a_reload(name, workdir, module_system_bus):
    nvme = workdir / 'nvme'  # does not exist yet: its parent is watched for it
    main = nvme / 'exclusions.conf'
    dropins = nvme / 'exclusions.conf.d'
    with running(name, workdir, module_system_bus, CONFS[name]) as d:
        assert listed(d) == ['192.0.2.1', '192.0.2.2']
        assert status(d)['exclusion files'] == []
        assert 'host exclusions: no exclusion file' in d.logs()

        nvme.mkdir()
        main.write_text('[exclusions]\nexclusion = transport=tcp;traddr=192.0.2.2\n')
        wait_until(lambda: listed(d) == ['192.0.2.1'], 10, '192.0.2.2 excluded')
        assert status(d)['exclusion files'] == [str(main)]
        assert f'host exclusions: 1 exclusion(s) from {main}' in d.logs()
        # the controller let go of is named, with the entry that excluded it
        assert any(
            '192.0.2.2, ' in line and f'(excluded by {main}:2)' in line for line in d.logs().splitlines()
        )
        assert 'configuration reloaded' not in d.logs()  # no SIGHUP was needed

        # a bad drop-in is said with its line and excludes nothing more; the good one applies
        dropins.mkdir()
        (dropins / 'lab.conf').write_text(
            '[exclusions]\nexclusion = subsysnqn=x\nexclusion = host-iface=tbA\n'
        )
        wait_until(lambda: listed(d) == [], 10, 'tbA excluded by the drop-in')
        problems = status(d)['config problems']
        assert any(p.startswith(f'{dropins / "lab.conf"}:2: ') and 'did you mean nqn?' in p for p in problems)

        # an editor saving by rename, then the files going away: everything is back
        tmp = nvme / '.exclusions.conf.tmp'
        tmp.write_text('[exclusions]\nexclusion = host-iface=tbB\n')
        tmp.rename(main)
        shutil.rmtree(dropins)
        wait_until(lambda: listed(d) == ['192.0.2.1'], 10, 'only tbB excluded')
        main.unlink()
        wait_until(lambda: listed(d) == ['192.0.2.1', '192.0.2.2'], 10, 'nothing excluded')
        assert status(d)['config problems'] == []
        assert d.proc.poll() is None


def test_sighup_rereads_the_exclusion_files_even_when_the_config_is_refused(workdir, module_system_bus):
    """A file edited where the watch cannot see it (the target of a symbolic link, as
    configuration tools install them) is read again at SIGHUP, whatever becomes of the
    configuration file."""
    nvme = workdir / 'nvme'
    nvme.mkdir()
    real = workdir / 'managed' / 'exclusions.conf'
    real.parent.mkdir()
    real.write_text(f'[exclusions]\nexclusion = nqn={NQN2}\n')
    (nvme / 'exclusions.conf').symlink_to(real)
    with running('stacd', workdir, module_system_bus, TWO_IOCS) as d:
        assert listed(d) == ['192.0.2.1']  # read at start
        real.write_text(f'[exclusions]\nexclusion = nqn={NQN1}\n')
        time.sleep(1)
        assert listed(d) == ['192.0.2.1']  # not seen: the link's directory did not change
        d.conf.write_text('[Controllers\n')  # a reload of this is refused
        d.signal(signal.SIGHUP)
        wait_until(lambda: listed(d) == ['192.0.2.2'], 10, 'the new exclusions in force')
        assert any('reload refused' in p for p in status(d)['config problems'])
