"""What the benchmarks that run in the e2e test guest share: the guest check, starting and
stopping a daemon from its console script, reading its log, asking a daemon for its workers over
D-Bus, and reading a process tree's CPU time and memory from /proc.

The scripts next to this module run as ``bench/run-in-guest -- bench/SCRIPT.py``; Python puts
bench/ first on sys.path, so they ``import _guest``. Importing it also puts the project root on
sys.path, for ``stas`` and ``tests.e2e``.
"""

from __future__ import annotations

import datetime
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.e2e.guest import IN_GUEST, missing_kernel_support  # noqa: E402 - after the path set-up
from tests.e2e.initiator import HOSTID, HOSTNQN  # noqa: E402

BIN = Path(sys.executable).parent  # the venv's console scripts: stafd, stacd, stafctl, ...
CLK_TCK = os.sysconf('SC_CLK_TCK')


def guest_problem(script: str) -> Optional[int]:
    """None when this runs in the test guest with the kernel's NVMe-oF stack; otherwise print
    why not and return the exit code. In the guest, also write /etc/nvme/hostnqn and hostid
    (the guest has none): libnvme and nvme-cli read them."""
    if not IN_GUEST:
        print(f'{script} runs in the test guest: bench/run-in-guest -- {script}')
        return 2
    missing = missing_kernel_support()
    if missing:
        print('the guest lacks ' + ', '.join(missing))
        return 1
    os.makedirs('/etc/nvme', exist_ok=True)
    Path('/etc/nvme/hostnqn').write_text(HOSTNQN + '\n')
    Path('/etc/nvme/hostid').write_text(HOSTID + '\n')
    return None


# ---- daemons -------------------------------------------------------------------------------------


def spawn_daemon(
    name: str, workdir: Path, conf: str, env: Optional[Dict[str, str]] = None
) -> Tuple[subprocess.Popen, Path]:
    """Start ``name`` (stafd or stacd) as an admin would, with its own configuration file, the
    test host identity and a runtime directory, all in ``workdir`` (created), in ``env`` (None:
    this process's). Returns the process and its log file (stdout and stderr). It does not wait
    for anything."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f'{name}.conf').write_text(conf)
    (workdir / 'sys.conf').write_text(f'[Host]\nnqn={HOSTNQN}\nid={HOSTID}\n')
    log_path = workdir / f'{name}.log'
    log = open(log_path, 'w')  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(
        [
            str(BIN / name),
            '-f',
            str(workdir / f'{name}.conf'),
            '--sys-conf',
            str(workdir / 'sys.conf'),
            '--runtime-dir',
            str(workdir / 'run'),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    log.close()
    return proc, log_path


# our daemons stamp each log line to the millisecond: ``2026-01-02 03:04:05,678 stafd ...``
LOG_STAMP_LEN = 23
FAILURE_LOG_LINES = 60


def log_line_time(line: str) -> Optional[float]:
    """When (a time.time()) one of our daemons logged ``line``; None for an unstamped line (a
    traceback's)."""
    try:
        return datetime.datetime.strptime(line[:LOG_STAMP_LEN], '%Y-%m-%d %H:%M:%S,%f').timestamp()
    except ValueError:
        return None


def timed_log_lines(path: Path, since: float) -> Iterator[Tuple[float, str]]:
    """(seconds after ``since``, a time.time(), and the rest of the line) of each stamped line of
    the log at ``path``."""
    for line in path.read_text(errors='replace').splitlines():
        at = log_line_time(line)
        if at is not None:
            yield at - since, line[LOG_STAMP_LEN + 1 :]


def print_log_tail(path: Path, count: int = FAILURE_LOG_LINES) -> None:
    """The last ``count`` lines of a daemon's log, to say why a step failed."""
    try:
        lines = path.read_text(errors='replace').splitlines()
    except OSError as e:
        print(f'    {path}: {e}')
        return
    print(f'    the last {min(len(lines), count)} of {len(lines)} lines of {path}:')
    for line in lines[-count:]:
        print(f'      {line[:200]}')


def stop_processes(procs: Sequence[subprocess.Popen], timeout: float = 120) -> List[Optional[int]]:
    """One SIGTERM to each at once, then wait; SIGKILL what is left after ``timeout`` s. Exit
    codes in order. One signal only: a second one could land after a daemon's event loop has
    closed (its handler gone) and kill it on its way out."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return [proc.returncode for proc in procs]


def stop_process(proc: Optional[subprocess.Popen], timeout: float = 120) -> Optional[int]:
    """``stop_processes`` for one process; None if there was none."""
    return None if proc is None else stop_processes([proc], timeout)[0]


def dbus_call(conn, service: str, interface: str, member: str, signature: str = '', body: tuple = ()):
    """Call ``member`` of ``interface`` on the object of service ``staf`` or ``stac`` through a
    jeepney blocking connection; the reply's body. An error reply raises
    ``jeepney.DBusErrorResponse`` (e.g. while no daemon owns the name)."""
    from jeepney import DBusAddress, new_method_call
    from jeepney.wrappers import unwrap_msg

    addr = DBusAddress(
        f'/org/nvmexpress/{service}', bus_name=f'org.nvmexpress.{service}', interface=interface
    )
    return unwrap_msg(conn.send_and_get_reply(new_method_call(addr, member, signature, body), timeout=60))


def daemon_workers(conn, service: str) -> List[Tuple[str, int]]:
    """(label, pid) of each worker of the daemon of ``service`` (staf or stac)."""
    [rows] = dbus_call(conn, service, f'org.nvmexpress.{service}.workers', 'list_workers')
    return [(f'worker {iface or "-"}/{transport}', pid) for iface, transport, pid, *_ in rows]


# ---- /proc ---------------------------------------------------------------------------------------


def descendants(pid: int) -> List[int]:
    """``pid`` and every process below it."""
    children: Dict[int, List[int]] = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    ppid = int(f.read().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ticks(pid: int) -> int:
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def user_system(pid: int) -> Tuple[int, int]:
    """(utime+cutime, stime+cstime) of ``pid``: its own and what it reaped; (0, 0) once it is gone."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return int(fields[11]) + int(fields[13]), int(fields[12]) + int(fields[14])
    except (OSError, IndexError, ValueError):
        return 0, 0


def memory_kib(pid: int) -> Dict[str, int]:
    """/proc/PID/smaps_rollup's figures in KiB (Pss, Private_Dirty, ...); {} if the process is gone."""
    found: Dict[str, int] = {}
    try:
        with open(f'/proc/{pid}/smaps_rollup') as f:
            for line in f:
                key, _, rest = line.partition(':')
                if rest.strip().endswith('kB'):
                    found[key] = int(rest.split()[0])
    except OSError:
        pass
    return found


def private_by_mapping(pid: int) -> Dict[str, int]:
    """Private (clean + dirty) KiB of one process per mapping name from /proc/PID/smaps: the
    file's base name, or [heap], [stack], [anon] ...; {} if the process is gone. Says where a
    process's own memory lies: the interpreter's heap, malloc arenas of threads, a library's
    data."""
    found: Dict[str, int] = {}
    name = '?'
    try:
        with open(f'/proc/{pid}/smaps') as f:
            for line in f:
                head = line.split(None, 6)
                if '-' in head[0] and len(head) >= 5 and ':' not in head[0]:
                    name = os.path.basename(head[5].strip()) if len(head) > 5 else '[anon]'
                elif head[0] in ('Private_Clean:', 'Private_Dirty:'):
                    found[name] = found.get(name, 0) + int(head[1])
    except OSError:
        pass
    return found


def pss_kib(pid: int) -> int:
    """Proportional set size in KiB; -1 if the process is gone."""
    return memory_kib(pid).get('Pss', -1)


def private_kib(pid: int) -> int:
    """Memory only this process uses (private clean + dirty pages) in KiB; -1 if it is gone."""
    mem = memory_kib(pid)
    return mem['Private_Clean'] + mem['Private_Dirty'] if mem else -1


def comm(pid: int) -> str:
    """A short name for a helper process of the supervisor (the worker start machinery)."""
    with open(f'/proc/{pid}/cmdline', 'rb') as f:
        text = f.read().replace(b'\0', b' ').decode(errors='replace')
    for marker in ('forkserver', 'resource_tracker', 'semaphore_tracker'):
        if marker in text:
            return f'multiprocess {marker}'
    return text if len(text) <= 50 else text[:47] + '...'


def process_labels(supervisor: int, workers: List[Tuple[str, int]]) -> List[Tuple[str, int]]:
    """(label, pid) of the supervisor, its workers, then any other process below it."""
    labelled = [('supervisor', supervisor)] + workers
    known = {pid for _, pid in labelled}
    others = []
    for p in descendants(supervisor):
        if p not in known:
            try:
                others.append((f'other: {comm(p)}', p))
            except OSError:
                continue  # it ended while we looked
    return labelled + others


def spread(values: Sequence[float], unit: float = 1000.0, suffix: str = 'ms') -> str:
    v = [x * unit for x in values]
    return (
        f'median {statistics.median(v):.0f} {suffix}, min {min(v):.0f}, max {max(v):.0f} '
        f'(n={len(v)}: {", ".join(f"{x:.0f}" for x in v)})'
    )
