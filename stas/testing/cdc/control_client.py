"""A blocking client of a test discovery controller's control socket (``control.py``), for a
test in another process than the controller."""

from __future__ import annotations

import json
import socket
import time
from typing import Any, Dict, Iterable, List, Optional, Union

from .log_pages import Entry

EntryLike = Union[Entry, Dict[str, Any]]


class CdcControlError(Exception):
    """The controller refused a request, or could not be reached."""


def _entry(e: EntryLike) -> Dict[str, Any]:
    return e.as_dict() if isinstance(e, Entry) else dict(e)


class CdcControl:
    def __init__(self, path: str, timeout: float = 10) -> None:
        self.path = path
        self.timeout = timeout

    def call(self, op: str, **args: Any) -> Any:
        request = json.dumps({'op': op, **args}).encode() + b'\n'
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.path)
                sock.sendall(request)
                buf = b''
                while not buf.endswith(b'\n'):
                    chunk = sock.recv(1 << 16)
                    if not chunk:
                        break
                    buf += chunk
        except OSError as exc:
            raise CdcControlError(f'control socket {self.path}: {exc}') from None
        if not buf:
            raise CdcControlError(f'control socket {self.path}: closed without an answer to {op}')
        answer = json.loads(buf)
        if not answer.get('ok'):
            raise CdcControlError(answer.get('error', repr(answer)))
        return answer.get('result')

    @classmethod
    def wait_ready(cls, path: str, timeout: float = 30, poll_s: float = 0.1) -> CdcControl:
        """A client once the controller answers a ping, within ``timeout`` seconds."""
        client = cls(path)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.call('ping')
                return client
            except CdcControlError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(poll_s)

    # ---- the operations ----------------------------------------------------------------------

    def status(self) -> Dict[str, Any]:
        return self.call('status')

    def set_entries(self, entries: Iterable[EntryLike], hostnqn: Optional[str] = None) -> int:
        return self.call('set_entries', entries=[_entry(e) for e in entries], hostnqn=hostnqn)

    def clear_zone(self, hostnqn: str) -> int:
        return self.call('clear_zone', hostnqn=hostnqn)

    def set_referrals(self, referrals: Iterable[EntryLike]) -> int:
        return self.call('set_referrals', referrals=[_entry(e) for e in referrals])

    def zones(self) -> Dict[str, List[Dict[str, Any]]]:
        return self.call('zones')

    def registrations(self) -> List[Dict[str, Any]]:
        return self.call('registrations')

    def connections(self) -> List[Dict[str, Any]]:
        return self.call('connections')

    def drop_connections(self) -> int:
        return self.call('drop_connections')

    def fail(self, opcode: int, **fields: Any) -> Dict[str, Any]:
        """``status``, ``lid``, ``fctype``, ``action`` ('status', 'close', 'ignore'), ``count``."""
        return self.call('fail', opcode=opcode, **fields)

    def clear_faults(self) -> None:
        self.call('clear_faults')

    def set_dctype(self, dctype: Union[int, str]) -> None:
        self.call('set_dctype', dctype=dctype)

    def set_pleos(self, enabled: bool) -> None:
        self.call('set_pleos', enabled=enabled)

    def set_host_keys(self, hostnqn: str, host_secret: str, ctrl_secret: str = '') -> None:
        self.call('set_host_keys', hostnqn=hostnqn, host_secret=host_secret, ctrl_secret=ctrl_secret)

    def commands(self, since: int = 0) -> List[Dict[str, Any]]:
        return self.call('commands', since=since)

    def stop(self) -> None:
        self.call('stop')

    def wait_for_command(self, timeout: float = 10, since: int = 0, **match: Any) -> Dict[str, Any]:
        """The first command recorded after ``since`` whose fields equal ``match`` (for example
        ``opcode=2, lid=0x70``), polling until ``timeout`` seconds have passed."""
        deadline = time.monotonic() + timeout
        while True:
            for command in self.commands(since):
                if all(command.get(k) == v for k, v in match.items()):
                    return command
            if time.monotonic() > deadline:
                raise TimeoutError(f'no command matching {match} after seq {since} within {timeout} s')
            time.sleep(0.05)
