"""stafd and stacd as users start them: real supervisor and worker processes, a private system
bus, sd_notify on a socket of the test's own, signals, and the CLI reading it all back.

Workers run the idle engine (``--worker-engine idle``): these tests are about the process
model (isolation, restart, reload, interfaces), not NVMe, which the e2e tests cover.
Timers are scaled down (STAS_TIMEOUT_SCALE) so hangs and backoffs show within seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from stas.testing.nbft_table import DiscoverySpec, HfiSpec, build_nbft
from stas.testing.processes import daemon_processes

from .daemons import (
    HOSTID,
    HOSTNQN,
    ROOT,
    STAFD_NO_ZEROCONF,
    TWO_IFACES,
    Daemon,
    running,
    wait_until,
    worker_replaced,
)


def test_one_worker_per_interface_and_kill_9_is_repaired_in_isolation(workdir, module_system_bus):
    with running('stafd', workdir, module_system_bus, STAFD_NO_ZEROCONF + TWO_IFACES) as d:
        before = wait_until(
            lambda: (w := d.workers()) and all(x['state'] == 'running' for x in w.values()) and w,
            10,
            'workers running',
        )
        assert sorted(before) == ['tbA', 'tbB']
        t0 = time.monotonic()
        os.kill(before['tbA']['pid'], signal.SIGKILL)
        after = worker_replaced(d, 'tbA', before['tbA']['pid'], 2, 'tbA replaced')
        assert time.monotonic() - t0 < 2
        assert after['tbA']['restarts'] == 1 and 'SIGKILL' in after['tbA']['last_exit']
        assert after['tbB']['pid'] == before['tbB']['pid'] and after['tbB']['restarts'] == 0
        assert after['tbB']['uptime_s'] >= before['tbB']['uptime_s']
        # the CLI's JSON is what the daemon's typed D-Bus member reports
        raw = subprocess.run(
            [
                'busctl',
                f'--address={module_system_bus}',
                '--json=short',
                'call',
                'org.nvmexpress.staf',
                '/org/nvmexpress/staf',
                'org.nvmexpress.staf.workers',
                'list_workers',
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        rows = json.loads(raw.stdout)['data'][0]
        cli = d.workers()
        assert sorted((r[0], r[2], r[3]) for r in rows) == sorted(
            (k, w['pid'], w['state']) for k, w in cli.items()
        )
        assert d.stop() == 0
        assert d.notify.seen('STOPPING', '1')
        for w in after.values():
            with pytest.raises(ProcessLookupError):
                os.kill(w['pid'], 0)


def test_the_firmware_nbft_adds_configured_dcs_and_status_says_what_was_read(workdir, module_system_bus):
    tables = workdir / 'tables'
    tables.mkdir()
    (tables / 'NBFT').write_bytes(
        build_nbft(
            HOSTNQN,
            hfis=[HfiSpec(mac='02:00:5e:00:53:77', ip='192.0.2.9', prefix=24)],
            discoveries=[DiscoverySpec(uri='nvme+tcp://192.0.2.7/', hfi=1)],
        )
    )
    (tables / 'NBFT1').write_bytes(b'NBFT' + bytes(60))
    with running('stafd', workdir, module_system_bus, STAFD_NO_ZEROCONF, nbft_path=str(tables)) as d:
        [dc] = json.loads(d.ctl('ls', '-d', '--json').stdout)
        # no interface has the HFI's MAC here: connected without host-iface, and said so
        assert (dc['traddr'], dc['trsvcid'], dc['host-iface'], dc['origin']) == (
            '192.0.2.7',
            '8009',
            '',
            'configured',
        )
        assert 'no network interface has the MAC 02:00:5e:00:53:77 of HFI 1' in d.logs()
        nbft = json.loads(d.ctl('status', '--json').stdout)['nbft']
        assert (nbft['path'], nbft['tables']) == (str(tables), [str(tables / 'NBFT')])
        [problem] = nbft['problems']
        assert problem.startswith(f'{tables / "NBFT1"}: ') and problem.endswith(
            '; its controllers are ignored'
        )
        # every planning pass finds the unmatched MAC again; it is said once
        d.signal(signal.SIGHUP)
        wait_until(
            lambda: json.loads(d.ctl('status', '--json').stdout)['config generation'] == 2, 10, 'the reload'
        )
        assert d.logs().count('no network interface has the MAC 02:00:5e:00:53:77') == 1


def test_a_hung_worker_is_detected_and_replaced(workdir, module_system_bus):
    # tbB reports an operation in flight for good (stuck-op), so it keeps the busy pace: a worker
    # of the idle engine goes to the idle pace 0.4 s after its last message, and a hang is then
    # found only after two and a half idle intervals (150 s here), however quickly the test
    # stops it after it is seen running
    with running(
        'stacd',
        workdir,
        module_system_bus,
        TWO_IFACES.replace(
            'controller=transport=tcp;', 'controller=transport=tcp;nqn=nqn.2024-01.com.example:s1;'
        ),
        env_extra={'STAS_WORKER_FAULTS': 'tbB=stuck-op'},
    ) as d:
        before = wait_until(
            lambda: (w := d.workers()) and all(x['state'] == 'running' for x in w.values()) and w,
            10,
            'workers running',
        )
        os.kill(before['tbB']['pid'], signal.SIGSTOP)
        after = worker_replaced(
            d, 'tbB', before['tbB']['pid'], 30, 'hung tbB replaced'
        )  # heartbeat deadline: 75 s x 0.2
        assert 'no heartbeat' in after['tbB']['last_exit']
        assert after['tbA']['pid'] == before['tbA']['pid']


def test_a_worker_that_hung_while_idle_is_found_once_the_supervisor_sends_it_something(
    workdir, module_system_bus
):
    # an idle worker may be silent for 150 s here (two and a half idle intervals, scaled), but
    # once it is sent a message (tron: the new log level) it must answer within the busy pace's
    # 15 s, or it is replaced
    with running('stafd', workdir, module_system_bus, STAFD_NO_ZEROCONF + TWO_IFACES) as d:
        before = wait_until(
            lambda: (w := d.workers()) and all(x['state'] == 'running' for x in w.values()) and w,
            10,
            'workers running',
        )
        time.sleep(5)  # quiet for 0.4 s, a worker announces the idle pace
        os.kill(before['tbB']['pid'], signal.SIGSTOP)
        d.ctl('tron')
        after = worker_replaced(d, 'tbB', before['tbB']['pid'], 30, 'tbB replaced after the message')
        assert 'no heartbeat within 15 s of a message from the supervisor' in after['tbB']['last_exit']
        assert after['tbA']['pid'] == before['tbA']['pid']


def test_every_process_of_a_daemon_declines_transparent_huge_pages(workdir, module_system_bus):
    def thp_enabled(pid: int) -> str:
        status = Path(f'/proc/{pid}/status').read_text().splitlines()
        return next(line.split()[1] for line in status if line.startswith('THP_enabled:'))

    with running('stafd', workdir, module_system_bus, STAFD_NO_ZEROCONF + TWO_IFACES) as d:
        wait_until(
            lambda: (w := d.workers()) and all(x['state'] == 'running' for x in w.values()),
            10,
            'workers running',
        )
        kinds = daemon_processes(d.proc.pid)
        assert [len(kinds[k]) for k in ('supervisor', 'forkserver', 'worker')] == [1, 1, 2]
        assert {kind: [thp_enabled(p) for p in pids] for kind, pids in kinds.items()} == {
            'supervisor': ['0'],
            'forkserver': ['0'],
            'worker': ['0', '0'],
        }


def test_a_worker_crashing_at_start_goes_fatal_and_restart_clears_it(workdir, module_system_bus):
    env = {'STAS_WORKER_FAULTS': 'tbA=crash-at-start'}
    with running('stafd', workdir, module_system_bus, STAFD_NO_ZEROCONF + TWO_IFACES, env_extra=env) as d:
        fatal = wait_until(lambda: (w := d.workers())['tbA']['state'] == 'fatal' and w, 15, 'tbA fatal')
        assert fatal['tbA']['last_exit'] == 'exited with status 3'
        assert fatal['tbB']['state'] == 'running'
        assert 'failing' in d.notify.poll()[-1].get('STATUS', '') or any(
            'failing' in m.get('STATUS', '') for m in d.notify.poll()
        )
        out = d.ctl('restart', 'tbA')
        assert 'tbA/tcp' in out.stdout
        states = wait_until(
            lambda: (w := d.workers())['tbA']['state'] != 'fatal' and w, 5, 'tbA leaves fatal'
        )
        assert states['tbA']['restarts'] > fatal['tbA']['restarts']
        bad = d.ctl('restart', 'nosuch0', check=False)
        assert bad.returncode == 1 and 'nosuch0' in bad.stderr


def test_sighup_with_a_broken_config_keeps_the_old_one_and_says_why(workdir, module_system_bus):
    # systemd's watchdog asks for a ping at least every 0.4 s
    env = {'WATCHDOG_USEC': '400000'}
    with running('stafd', workdir, module_system_bus, STAFD_NO_ZEROCONF + TWO_IFACES, env_extra=env) as d:
        wait_until(lambda: d.notify.seen('WATCHDOG', '1'), 5, 'WATCHDOG=1')
        assert any(m.get('STATUS') == '2 of 2 workers running' for m in d.notify.poll()) or wait_until(
            lambda: any(m.get('STATUS') == '2 of 2 workers running' for m in d.notify.poll()), 5, 'STATUS'
        )
        wait_until(lambda: sorted(d.workers()) == ['tbA', 'tbB'], 10, 'two workers')
        d.conf.write_text('[Global]\nthis line is not an option\n[Controllers\n')
        d.signal(signal.SIGHUP)
        status = wait_until(
            lambda: (s := json.loads(d.ctl('status', '--json').stdout))['config problems'] and s,
            10,
            'reload refused',
        )
        assert any(p.startswith('reload refused:') and ':2:' in p for p in status['config problems'])
        assert sorted(d.workers()) == ['tbA', 'tbB']
        assert d.notify.seen('RELOADING', '1')
        # a good configuration is taken, workers follow it
        d.conf.write_text(
            STAFD_NO_ZEROCONF + '[Controllers]\ncontroller=transport=tcp;traddr=192.0.2.3;host-iface=tbC\n'
        )
        d.signal(signal.SIGHUP)
        wait_until(lambda: sorted(d.workers()) == ['tbC'], 10, 'workers follow the new configuration')
        status = json.loads(d.ctl('status', '--json').stdout)
        assert status['config problems'] == []
        assert status['config generation'] == 2


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which('ip') is None, reason='needs root and iproute2')
def test_an_interface_appearing_and_going_gets_and_loses_its_worker(workdir, module_system_bus):
    ns = f'stas-it-{os.getpid()}'
    subprocess.run(['ip', 'netns', 'add', ns], check=True)
    try:
        subprocess.run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'], check=True)
        # zeroconf (the default) wants a worker on every up interface with an address
        with running('stafd', workdir, module_system_bus, '[Global]\n', netns=ns) as d:
            assert d.workers() == {}
            subprocess.run(
                ['ip', '-n', ns, 'link', 'add', 'tbv0', 'type', 'veth', 'peer', 'name', 'tbv1'], check=True
            )
            subprocess.run(['ip', '-n', ns, 'addr', 'add', '198.51.100.1/24', 'dev', 'tbv0'], check=True)
            subprocess.run(['ip', '-n', ns, 'link', 'set', 'tbv0', 'up'], check=True)
            w = wait_until(
                lambda: (w := d.workers()).get('tbv0', {}).get('state') == 'running' and w,
                10,
                'worker for tbv0',
            )
            assert sorted(w) == ['tbv0']
            subprocess.run(['ip', '-n', ns, 'link', 'del', 'tbv0'], check=True)
            wait_until(lambda: d.workers() == {}, 10, 'worker for tbv0 gone')
            assert 'interface tbv0 appeared' in d.logs() and 'interface tbv0 disappeared' in d.logs()
    finally:
        subprocess.run(['ip', 'netns', 'del', ns], check=False)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which('ip') is None, reason='needs root and iproute2')
def test_zeroconf_workers_go_where_avahi_daemon_browses(workdir, module_system_bus):
    import sdbus

    ns = f'stas-av-{os.getpid()}'

    def ip(*args):
        subprocess.run(['ip', '-n', ns, *args], check=True)

    def workers_of(d):
        return sorted(n for n, w in d.workers().items() if w['state'] == 'running')

    avahi_conf = workdir / 'avahi-daemon.conf'
    avahi_conf.write_text('[server]\nuse-ipv4=yes\ndeny-interfaces=tbd1\n')
    subprocess.run(['ip', 'netns', 'add', ns], check=True)
    try:
        ip('link', 'set', 'lo', 'up')
        for i, name in enumerate(('tbm0', 'tbd0', 'tbd1'), start=1):
            ip('link', 'add', name, 'type', 'veth', 'peer', 'name', f'peer{i}')  # a veth can multicast
            ip('addr', 'add', f'198.51.100.{i}/24', 'dev', name)
            ip('link', 'set', name, 'up')
        ip('link', 'set', 'tbd0', 'multicast', 'off')  # as a dummy or WireGuard interface
        with running('stafd', workdir, module_system_bus, '[Global]\n', netns=ns) as d:
            # tbd0 cannot multicast, tbd1 is denied: Avahi browses neither, nor lo
            wait_until(lambda: workers_of(d) == ['tbm0'], 10, 'a worker for tbm0 alone')
            assert d.status()['avahi']['interfaces'] == {
                'from': str(avahi_conf),
                'allow-interfaces': [],
                'deny-interfaces': ['tbd1'],
                'allow-point-to-point': False,
                'problem': '',
            }
            # an admin restricts Avahi to tbd1 and reloads stafd
            avahi_conf.write_text('[server]\nallow-interfaces=TBD1\n')
            d.signal(signal.SIGHUP)
            wait_until(lambda: workers_of(d) == ['tbd1'], 10, 'the worker moved to tbd1')
            assert 'zeroconf: interfaces as avahi-daemon browses them: ' in d.logs()
            ip('link', 'set', 'tbd0', 'multicast', 'on')
            time.sleep(1)
            assert workers_of(d) == ['tbd1']  # multicast now, but not allowed
            # a file Avahi would refuse restricts nothing; read again when Avahi (re)starts
            avahi_conf.write_text('[server]\nallow-interfaces tbd1\n')
            bus = sdbus.sd_bus_open_system()
            try:
                bus.request_name('org.freedesktop.Avahi', 0)
                wait_until(lambda: workers_of(d) == ['tbd0', 'tbd1', 'tbm0'], 10, 'every interface browsed')
            finally:
                bus.close()
            problem = f"{avahi_conf}:2: 'allow-interfaces tbd1': not a key=value line"
            assert d.status()['avahi']['interfaces']['problem'] == problem
            assert f'{problem}: browsing every interface that can multicast, as Avahi by default' in d.logs()
            assert 'Traceback' not in d.logs()
    finally:
        subprocess.run(['ip', 'netns', 'del', ns], check=False)


def test_no_daemon_means_exit_69(workdir, module_system_bus):
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=module_system_bus, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, '-m', 'stas.cli.stacctl', 'workers'],
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=30,
    )
    assert done.returncode == 69
    assert 'stacd' in done.stderr


def check_config(conf: Path, sysconf: Path) -> subprocess.CompletedProcess:
    """``stafd --check-config`` as an admin runs it."""
    return subprocess.run(
        [
            sys.executable,
            '-m',
            'stas.supervisor',
            'stafd',
            '--check-config',
            '-f',
            str(conf),
            '--sys-conf',
            str(sysconf),
        ],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        check=False,
        text=True,
        timeout=30,
    )


def test_check_config_reports_file_and_line(workdir):
    conf = workdir / 'stafd.conf'
    conf.write_text('[Global]\nkato=30\nqueue-size=8\n')
    sysconf = workdir / 'sys.conf'
    sysconf.write_text(f'[Host]\nnqn={HOSTNQN}\nid={HOSTID}\n')
    done = check_config(conf, sysconf)
    assert done.returncode == 1, done
    assert f'{conf}:3: [Global] queue-size=8' in done.stdout and '16..1024' in done.stdout
    conf.write_text('[Global]\nkato=30\n')
    done = check_config(conf, sysconf)
    assert done.returncode == 0 and 'no problems' in done.stdout
    assert check_config(workdir / 'missing.conf', sysconf).returncode == 2


def test_workers_exit_when_their_supervisor_dies(workdir, module_system_bus):
    with running('stafd', workdir, module_system_bus, STAFD_NO_ZEROCONF + TWO_IFACES) as d:
        workers = wait_until(
            lambda: (w := d.workers()) and all(x['state'] == 'running' for x in w.values()) and w,
            10,
            'workers running',
        )
        d.signal(signal.SIGKILL)
        d.proc.wait(timeout=10)

        def all_gone():
            for w in workers.values():
                try:
                    os.kill(w['pid'], 0)
                except ProcessLookupError:
                    continue
                return False
            return True

        # their channel closes with the supervisor: each worker exits on its own
        wait_until(all_gone, 10, 'orphaned workers to exit')


# ---- the state file in the runtime directory ---------------------------------------------------------

STATE_FILES = {'stafd': 'log-pages.json', 'stacd': 'stafd-log-pages.json'}
ONE_DC = STAFD_NO_ZEROCONF + '[Controllers]\ncontroller=transport=tcp;traddr=192.0.2.1;host-iface=tbA\n'
ONE_IOC = (
    '[Controllers]\ncontroller=transport=tcp;traddr=192.0.2.1;host-iface=tbA;nqn=nqn.2024-01.com.example:s1\n'
)
CONFS = {'stafd': ONE_DC, 'stacd': ONE_IOC}


def status_of(d: Daemon) -> dict:
    return json.loads(d.ctl('status', '--json').stdout)


@pytest.mark.parametrize('name', ['stafd', 'stacd'])
def test_a_malformed_state_file_is_set_aside_and_the_daemon_starts_without_it(
    name, workdir, module_system_bus
):
    run = workdir / 'run'
    run.mkdir()
    path = run / STATE_FILES[name]
    key = 'tid' if name == 'stafd' else 'dc'
    path.write_text(f'{{"version": 1, "dcs": [{{"{key}": []}}]}}')
    (run / (STATE_FILES[name] + '.bad')).write_text('an older bad file')
    with running(name, workdir, module_system_bus, CONFS[name]) as d:
        status = status_of(d)  # it serves D-Bus
        assert status['runtime directory'] == str(run) and status['runtime directory problem'] is None
        assert (
            f'ignoring {path}: entry 0: "{key}" is a list, not an object; '
            f'set aside as {path}.bad, starting without it'
        ) in d.logs()
        assert (run / (STATE_FILES[name] + '.bad')).read_text().startswith('{"version": 1')
        # the state of this run is saved afresh
        wait_until(path.exists, 10, f'{path} written')
        assert 'Traceback' not in d.logs()


@pytest.mark.parametrize('name', ['stafd', 'stacd'])
def test_a_fifo_as_the_state_file_does_not_hang_the_start(name, workdir, module_system_bus):
    run = workdir / 'run'
    run.mkdir()
    path = run / STATE_FILES[name]
    os.mkfifo(path)

    def unblock():  # a daemon stuck opening the FIFO gets an end of file after 10 s
        time.sleep(10)
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

    threading.Thread(target=unblock, daemon=True).start()
    t0 = time.monotonic()
    with running(name, workdir, module_system_bus, CONFS[name]) as d:
        assert time.monotonic() - t0 < 8, 'the start waited for the FIFO'
        assert f'ignoring {path}: not a regular file (a FIFO); set aside as {path}.bad' in d.logs()
        assert (run / (STATE_FILES[name] + '.bad')).is_fifo()
        assert status_of(d)['runtime directory problem'] is None


@pytest.mark.parametrize('name', ['stafd', 'stacd'])
def test_a_runtime_directory_that_is_a_file_is_said_and_the_daemon_runs_on(name, workdir, module_system_bus):
    run = workdir / 'run'
    run.write_text('not a directory\n')
    with running(name, workdir, module_system_bus, CONFS[name]) as d:
        problem = (
            f'runtime directory {run}: not a directory (a regular file); '
            'state is kept in memory only, not saved'
        )
        assert status_of(d)['runtime directory problem'] == problem
        # the controller it wants is planned (and a save tried) all the same, said once
        wait_until(
            lambda: [c['traddr'] for c in json.loads(d.ctl('ls', '--json').stdout)] == ['192.0.2.1'],
            10,
            'the controller',
        )
        d.signal(signal.SIGHUP)
        wait_until(lambda: status_of(d)['config generation'] == 2, 10, 'the reload')
        assert d.logs().count(problem) == 1 and 'Traceback' not in d.logs()
        assert run.read_text() == 'not a directory\n'


# ---- nvme-cli's udev autoconnect rule ------------------------------------------------------------
def test_stafd_shadows_nvme_clis_autoconnect_rule_while_it_runs_and_as_configured(workdir, module_system_bus):
    """The file is there from start to stop; SIGHUP with nvme-cli-autoconnect=enabled removes it,
    back to disabled writes it again; a bad value is named, and the default (shadow) stays."""
    rule = workdir / 'udev-rules.d' / '70-nvmf-autoconnect.rules'

    def generation_is(n):
        return lambda: json.loads(d_ctl_status(d))['config generation'] == n

    def d_ctl_status(d):
        return d.ctl('status', '--json').stdout

    with running('stafd', workdir, module_system_bus, STAFD_NO_ZEROCONF) as d:
        assert rule.read_text().startswith('# nvme-stas stafd: shadows nvme-cli 70-nvmf-autoconnect.rules')
        assert f'(pid {d.proc.pid}, ' in rule.read_text().splitlines()[0]
        d.conf.write_text(STAFD_NO_ZEROCONF + '[Global]\nnvme-cli-autoconnect=enabled\n')
        d.signal(signal.SIGHUP)
        wait_until(generation_is(2), 10, 'the reload')
        assert not rule.exists()
        d.conf.write_text(STAFD_NO_ZEROCONF + '[Global]\nnvme-cli-autoconnect=sometimes\n')
        d.signal(signal.SIGHUP)
        wait_until(generation_is(3), 10, 'the reload')
        assert rule.exists()
        problems = json.loads(d_ctl_status(d))['config problems']
        assert any(
            '[Global] nvme-cli-autoconnect=sometimes: not enabled/disabled, default used (disabled); '
            'accepted: enabled, disabled' in p
            for p in problems
        ), problems
        assert d.stop() == 0
        assert not rule.exists()
        assert 'Traceback' not in d.logs()


def test_a_rule_file_stafd_did_not_write_survives_stafd(workdir, module_system_bus):
    rules = workdir / 'udev-rules.d'
    rules.mkdir()
    (rules / '70-nvmf-autoconnect.rules').write_text("# the admin's\n")
    with running('stafd', workdir, module_system_bus, STAFD_NO_ZEROCONF) as d:
        d.stop()
        assert 'stafd did not write it: left as it is' in d.logs()
    assert (rules / '70-nvmf-autoconnect.rules').read_text() == "# the admin's\n"


@pytest.mark.parametrize('name', ['stafd', 'stacd'])
def test_sighup_reads_sys_conf_again(name, workdir, module_system_bus):
    """sys.conf.doc says no restart is needed after a change of the host identity."""
    other_id = '6b2d5f3a-4c1e-4f8a-9b7d-2e3f4a5b6c7d'
    other_nqn = f'nqn.2014-08.org.nvmexpress:uuid:{other_id}'
    with running(name, workdir, module_system_bus, STAFD_NO_ZEROCONF if name == 'stafd' else '') as d:
        assert (d.status()['hostnqn'], d.status()['hostid']) == (HOSTNQN, HOSTID)
        (workdir / 'sys.conf').write_text(f'[Host]\nnqn={other_nqn}\nid={other_id}\n')
        d.signal(signal.SIGHUP)
        wait_until(lambda: d.status()['hostnqn'] == other_nqn, 10, 'the new host NQN in status')
        assert d.status()['hostid'] == other_id
