"""What a process of the daemons is called in ps, top and ``systemctl status``.

Each process sets two names:

* its **title**, what ``ps -o args``, ``top -c`` and ``systemctl status`` show (the memory of its
  command line, rewritten by ``setproctitle``): ``stafd: supervisor``, ``stafd: forkserver``,
  ``stafd: worker enp129s0f0np0/tcp``. Without it every process of a daemon shows the same
  command line (``python3 /usr/sbin/stafd --syslog``), and a replacement forkserver a long
  ``python3 -B -c from multiprocess.forkserver import main; ...``.
* its **comm**, the kernel's 15-byte name: what ``top``, ``ps -e``, ``pgrep`` and the journal's
  ``_COMM`` field show. ``stafd`` for the supervisor (``pgrep -x stafd`` finds it, whatever
  interpreter runs it), ``stafd:forksrv`` for the forkserver and ``stafd:<short key>`` for a
  worker (``worker_comm``).

A worker's short key is its key as the logs show it (``eth0/tcp``) when that fits in the 9 bytes
left after ``stafd:``. Otherwise it is the *end* of the interface name, because that is where
names of the same kind differ: ``enp129s0f0np0`` and ``enp129s0f1np1`` (ports of one card),
``ens1f0.100`` and ``ens1f0.200`` (VLANs). A transport other than tcp, which the same interface
may also carry (rdma on an RDMA-capable NIC), keeps one letter after a '/', which no interface
name contains: ``stafd:29s0f0np0`` is tcp, ``stafd:s0f0np0/r`` rdma on the same port. A key
without interface shows its transport: ``stafd:fc``.
"""

from __future__ import annotations

COMM_BYTES = 15  # TASK_COMM_LEN - 1: what the kernel keeps of a process's name
SUPERVISOR = 'supervisor'
FORKSERVER = 'forkserver'
FORKSERVER_COMM = 'forksrv'


def set_process_title(title: str, comm: str) -> None:
    """Show ``title`` as this process's command line and ``comm`` as its name (cut to 15 bytes)."""
    from setproctitle import setproctitle, setthreadtitle

    try:
        setproctitle(title)
        # after setproctitle, which sets the name to the start of the title: the name we choose
        setthreadtitle(_cut(comm, COMM_BYTES))
    except ValueError:  # a name that cannot be encoded (never an interface that has a worker)
        pass


def supervisor_title(daemon: str, conf_file: str = '', default_conf: str = '') -> str:
    """``stafd: supervisor``, with the configuration file when it is not the default one."""
    title = f'{daemon}: {SUPERVISOR}'
    if conf_file and conf_file != default_conf:
        title += f' -f {conf_file}'
    return title


def forkserver_names(daemon: str) -> tuple[str, str]:
    """(title, comm) of the workers' forkserver."""
    return f'{daemon}: {FORKSERVER}', f'{daemon}:{FORKSERVER_COMM}'


def worker_title(daemon: str, transport: str, host_iface: str) -> str:
    return f'{daemon}: worker {host_iface or "-"}/{transport}'


def worker_comm(daemon: str, transport: str, host_iface: str) -> str:
    """The 15-byte name of a worker (see the module's docstring)."""
    room = COMM_BYTES - _nbytes(daemon) - 1
    if not host_iface:
        short = transport
    else:
        short = f'{host_iface}/{transport}'
        if _nbytes(short) > room:
            mark = '' if transport == 'tcp' else f'/{transport[:1]}'
            short = _tail(host_iface, room - len(mark)) + mark
    return _cut(f'{daemon}:{short}', COMM_BYTES)


def _tail(text: str, nbytes: int) -> str:
    """The longest end of ``text`` whose UTF-8 form has at most ``nbytes`` bytes."""
    out = text
    while _nbytes(out) > max(nbytes, 0):
        out = out[1:]
    return out


def _cut(text: str, nbytes: int) -> str:
    """The longest start of ``text`` whose UTF-8 form has at most ``nbytes`` bytes."""
    out = text
    while _nbytes(out) > nbytes:
        out = out[:-1]
    return out


def _nbytes(text: str) -> int:
    return len(text.encode('utf-8', 'surrogateescape'))
