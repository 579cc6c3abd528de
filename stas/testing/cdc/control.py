"""The control API of a ``CdcServer`` over a unix socket, for a test in another process.

One JSON object per line each way. A request names its operation and arguments,
``{"op": "set_entries", "hostnqn": null, "entries": [{"subnqn": ..., "traddr": ...}]}``, and the
answer is ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``. Entries are
objects with the field names of ``log_pages.Entry``; registrations and recorded commands come
back as objects with the field names of ``service.Registration`` and ``service.CommandSeen``.
``control_client.CdcControl`` is the blocking client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
from typing import Any, Callable, Dict, List, Optional

from .log_pages import Entry, entry_from_dict
from .server import CdcServer

log = logging.getLogger('stas.testing.cdc')

MAX_LINE = 4 << 20  # a request of a few thousand entries fits


def _entries(items: object, what: str) -> List[Entry]:
    if not isinstance(items, list):
        raise ValueError(f'{what} must be a list of entry objects, not {type(items).__name__}')
    return [entry_from_dict(item) for item in items]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return value


class _Ops:
    """The operations; each takes the server and the request's arguments by name."""

    def __init__(self, server: CdcServer, stop: asyncio.Event) -> None:
        self.server = server
        self.stop_event = stop

    def ping(self) -> str:
        return 'pong'

    def status(self) -> Dict[str, Any]:
        svc = self.server.service
        return {
            'host': self.server.host,
            'port': self.server.port,
            'genctr': svc.genctr,
            'dctype': svc.dctype,
            'pleos': svc.pleos,
            'portid': svc.portid,
            'subnqn': svc.subnqn,
        }

    def set_entries(self, entries: list, hostnqn: Optional[str] = None) -> int:
        return self.server.set_entries(_entries(entries, 'entries'), hostnqn)

    def clear_zone(self, hostnqn: str) -> int:
        return self.server.clear_zone(hostnqn)

    def set_referrals(self, referrals: list) -> int:
        return self.server.set_referrals(_entries(referrals, 'referrals'))

    def zones(self) -> Dict[str, list]:
        zones = self.server.service.zones()
        return {(k or ''): [e.as_dict() for e in v] for k, v in zones.items()}

    def registrations(self) -> list:
        return [_plain(r) for r in self.server.registrations()]

    def connections(self) -> list:
        return self.server.connections()

    def drop_connections(self) -> int:
        return self.server.drop_connections()

    def fail(self, opcode: int, **fields: Any) -> Dict[str, Any]:
        return _plain(self.server.fail(opcode, **fields))

    def clear_faults(self) -> None:
        self.server.clear_faults()

    def set_dctype(self, dctype: object) -> None:
        self.server.set_dctype(dctype)

    def set_pleos(self, enabled: bool) -> None:
        self.server.set_pleos(enabled)

    def set_host_keys(self, hostnqn: str, host_secret: str, ctrl_secret: str = '') -> None:
        self.server.set_host_keys(hostnqn, host_secret, ctrl_secret)

    def commands(self, since: int = 0) -> list:
        return [_plain(c) for c in self.server.commands(since)]

    def stop(self) -> None:
        self.stop_event.set()


def _handle(ops: _Ops, line: bytes) -> Dict[str, Any]:
    try:
        request = json.loads(line)
    except ValueError as exc:
        return {'ok': False, 'error': f'not JSON: {exc}'}
    if not isinstance(request, dict) or not isinstance(request.get('op'), str):
        return {'ok': False, 'error': 'a request is an object with "op" naming the operation'}
    name = request.pop('op')
    op: Optional[Callable[..., Any]] = getattr(ops, name, None) if not name.startswith('_') else None
    if op is None or name in ('server', 'stop_event'):
        known = sorted(n for n in dir(ops) if not n.startswith('_') and n not in ('server', 'stop_event'))
        return {'ok': False, 'error': f'operation {name!r} is unknown; accepted: {", ".join(known)}'}
    try:
        return {'ok': True, 'result': op(**request)}
    except (TypeError, ValueError, KeyError) as exc:
        return {'ok': False, 'error': f'{name}: {exc}'}


async def serve_control(
    server: CdcServer, path: str, stop: Optional[asyncio.Event] = None
) -> asyncio.AbstractServer:
    """Answer control requests on the unix socket ``path`` (replaced if it exists). A "stop"
    request sets ``stop``."""
    ops = _Ops(server, stop or asyncio.Event())

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readuntil(b'\n')
                except asyncio.LimitOverrunError:
                    answer = {'ok': False, 'error': f'request longer than {MAX_LINE} bytes'}
                    writer.write(json.dumps(answer).encode() + b'\n')
                    break
                except asyncio.IncompleteReadError:
                    break
                writer.write(json.dumps(_handle(ops, line)).encode() + b'\n')
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    if os.path.exists(path):
        os.unlink(path)
    return await asyncio.start_unix_server(client, path, limit=MAX_LINE)
