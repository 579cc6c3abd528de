"""What an admin reads in ps, top and ``systemctl status``: each process of a real daemon (idle
workers, private bus) names itself, and two workers of long interface names stay apart in the
kernel's 15-byte name.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from stas.testing.processes import children

from .daemons import running, wait_until, worker_replaced
from .test_faults import netns_with

pytestmark = pytest.mark.integration

# 15 characters each, the most an interface name can have; alike but for the port
IFACES = ('enp129s0f0np0.9', 'enp129s0f1np1.9')


def args(pid: int) -> str:
    """What ``ps -o args`` shows: the command line's memory up to its padding."""
    return Path(f'/proc/{pid}/cmdline').read_bytes().rstrip(b'\0').replace(b'\0', b' ').decode()


def comm(pid: int) -> str:
    return Path(f'/proc/{pid}/comm').read_text().rstrip('\n')


def alive(pid: int) -> bool:
    try:
        return Path(f'/proc/{pid}/stat').read_text().rsplit(') ', 1)[1][0] != 'Z'
    except OSError:
        return False


def forkserver_of(d) -> int:
    found = [p for p in children(d.proc.pid) if alive(p)]
    assert len(found) == 1, [(p, args(p)) for p in children(d.proc.pid)]
    return found[0]


def conf_for(name: str) -> str:
    if name == 'stafd':
        return '[Service Discovery]\nzeroconf=disabled\n[Controllers]\n' + ''.join(
            f'controller=transport=tcp;traddr=198.51.100.{9 + i};host-iface={n}\n'
            for i, n in enumerate(IFACES, start=1)
        )
    return '[Controllers]\n' + ''.join(
        f'controller=transport=tcp;traddr=198.51.100.{9 + i};nqn=nqn.2024-01.io.x:s{i};host-iface={n}\n'
        for i, n in enumerate(IFACES, start=1)
    )


def running_workers(d) -> dict:
    return wait_until(
        lambda: (
            (w := d.workers())
            and sorted(w) == sorted(IFACES)
            and all(x['state'] == 'running' for x in w.values())
            and w
        ),
        15,
        'both workers running',
    )


@pytest.mark.parametrize('name', ['stafd', 'stacd'])
def test_every_process_shows_its_part_and_workers_of_long_names_stay_apart(name, workdir, module_system_bus):
    with (
        netns_with(*(n.encode() for n in IFACES)) as ns,
        running(name, workdir, module_system_bus, conf_for(name), netns=ns) as d,
    ):
        workers = running_workers(d)
        # the supervisor: its part, and the file it runs on (not the default one here)
        assert args(d.proc.pid) == f'{name}: supervisor -f {d.conf}'
        assert comm(d.proc.pid) == name
        forkserver = forkserver_of(d)
        assert args(forkserver) == f'{name}: forkserver'
        assert comm(forkserver) == f'{name}:forksrv'
        names = {}
        for iface in IFACES:
            pid = workers[iface]['pid']
            assert args(pid) == f'{name}: worker {iface}/tcp'
            names[iface] = comm(pid)
        # the end of each name, where they differ
        assert names == {IFACES[0]: f'{name}:s0f0np0.9', IFACES[1]: f'{name}:s0f1np1.9'}

        # a replacement forkserver is a new interpreter: it names itself as well, and so do
        # the workers it starts
        os.kill(forkserver, signal.SIGKILL)
        wait_until(lambda: 'new forkserver pid' in d.logs(), 15, 'a new forkserver')
        second = forkserver_of(d)
        assert second != forkserver
        # named once its interpreter is up, before it serves
        wait_until(lambda: args(second) == f'{name}: forkserver', 15, 'the new forkserver named')
        assert comm(second) == f'{name}:forksrv'
        old = workers[IFACES[1]]['pid']
        os.kill(old, signal.SIGKILL)
        again = worker_replaced(d, IFACES[1], old, 15, 'the worker started by the new forkserver')
        pid = again[IFACES[1]]['pid']
        assert args(pid) == f'{name}: worker {IFACES[1]}/tcp'
        assert comm(pid) == f'{name}:s0f1np1.9'


def test_each_worker_leaves_its_profile_when_asked_to(workdir, module_system_bus):
    """With STAS_WORKER_PROFILE_DIR set, every worker runs under cProfile and leaves a profile
    named after its daemon, interface and transport when it ends."""
    import pstats

    from stas.workers.main import PROFILE_DIR_ENV

    profiles = workdir / 'profiles'
    profiles.mkdir()
    with (
        netns_with(*(n.encode() for n in IFACES)) as ns,
        running(
            'stacd',
            workdir,
            module_system_bus,
            conf_for('stacd'),
            netns=ns,
            env_extra={PROFILE_DIR_ENV: str(profiles)},
        ) as d,
    ):
        running_workers(d)
    left = sorted(p.name.rsplit('-', 1)[0] for p in profiles.glob('*.prof'))
    assert left == [f'stacd-{n}-tcp' for n in sorted(IFACES)]
    for path in profiles.glob('*.prof'):
        functions = {f'{name}' for _, _, name in pstats.Stats(str(path)).stats}
        assert '_worker_life' in functions
