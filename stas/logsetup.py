"""Logging for the daemons and their workers: every process logs for itself.

Foreground (stderr): one line per record, tagged with the process's place in the daemon:
``stafd[eth0/tcp] INFO ...`` for a worker, ``stafd INFO ...`` for the supervisor.

Journal (``--syslog``, or automatically when systemd runs us): records go to journald's native
socket with structured fields, so an admin can follow one interface::

    journalctl -u stafd STAS_IFACE=eth0          # everything about eth0 (worker + supervisor)
    journalctl -u stafd STAS_WORKER=eth0/tcp -f   # just that worker, live

Supervisor records about one worker pass ``extra={'stas_worker': 'eth0/tcp'}`` and carry the
same fields.

Fields: SYSLOG_IDENTIFIER (stafd/stacd), STAS_ROLE (supervisor|worker), STAS_IFACE,
STAS_TRANSPORT, STAS_WORKER (iface/transport), plus CODE_FILE/CODE_LINE/CODE_FUNC and
PRIORITY. If the journal socket is missing, records fall back to stderr.

No dependency: the native journal protocol is a datagram of ``KEY=value`` lines (values with a
newline use the length-prefixed binary form).
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
from typing import Dict, Optional

JOURNAL_SOCKET = '/run/systemd/journal/socket'

_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


def _priority(levelno: int) -> int:
    for level, prio in sorted(_PRIORITY.items(), reverse=True):
        if levelno >= level:
            return prio
    return 7


def _field(name: str, value: str) -> bytes:
    data = value.encode('utf-8', 'replace')
    if b'\n' in data:
        return name.encode() + b'\n' + struct.pack('<Q', len(data)) + data + b'\n'
    return name.encode() + b'=' + data + b'\n'


class JournalHandler(logging.Handler):
    """Sends records to journald with fixed extra fields."""

    def __init__(self, identifier: str, fields: Dict[str, str], path: str = JOURNAL_SOCKET):
        super().__init__()
        self._identifier = identifier
        self._fields = fields
        self._path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            parts = [
                _field('MESSAGE', self.format(record)),
                _field('PRIORITY', str(_priority(record.levelno))),
                _field('SYSLOG_IDENTIFIER', self._identifier),
                _field('CODE_FILE', record.pathname),
                _field('CODE_LINE', str(record.lineno)),
                _field('CODE_FUNC', record.funcName),
            ]
            fields = dict(self._fields)
            about = getattr(record, 'stas_worker', None)  # a supervisor record about one worker
            if about:
                iface, _, transport = str(about).partition('/')
                fields.update(STAS_WORKER=str(about), STAS_IFACE=iface, STAS_TRANSPORT=transport)
            parts += [_field(k, v) for k, v in fields.items()]
            self._sock.sendto(b''.join(parts), self._path)
        except Exception:  # noqa: BLE001 - logging must never take the daemon down
            self.handleError(record)

    def close(self) -> None:
        self._sock.close()
        super().close()


def journal_available(path: str = JOURNAL_SOCKET) -> bool:
    return os.path.exists(path)


def under_systemd() -> bool:
    """systemd sets JOURNAL_STREAM when our stderr is connected to the journal."""
    return bool(os.environ.get('JOURNAL_STREAM')) or bool(os.environ.get('INVOCATION_ID'))


def setup(
    daemon: str,
    *,
    worker: Optional[str] = None,
    level: str = 'INFO',
    target: str = 'stderr',
) -> None:
    """Configure the root logger of this process.

    ``worker`` is the worker's ``iface/transport`` (None for the supervisor); ``target`` is
    'stderr' or 'journal' (falls back to stderr when journald is not there).
    """
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    handler: logging.Handler
    if target == 'journal' and journal_available():
        fields = {'STAS_ROLE': 'worker' if worker else 'supervisor'}
        if worker:
            iface, _, transport = worker.partition('/')
            fields.update(STAS_WORKER=worker, STAS_IFACE=iface, STAS_TRANSPORT=transport)
        handler = JournalHandler(daemon, fields)
        tag = f'[{worker}] ' if worker else ''
        handler.setFormatter(logging.Formatter(tag + '%(message)s'))
    else:
        handler = logging.StreamHandler(sys.stderr)
        tag = f'{daemon}[{worker}]' if worker else daemon
        handler.setFormatter(logging.Formatter(f'%(asctime)s {tag} %(levelname)s %(message)s'))
    root.addHandler(handler)
    root.setLevel(level)
