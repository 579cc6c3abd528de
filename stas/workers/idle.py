"""A worker engine with no mechanism: it answers the protocol and manages nothing.

Used by the supervisor's own tests and benchmarks, where what matters is the process model
(spawn, heartbeats, restart, isolation), not NVMe.
"""

from __future__ import annotations

from typing import Dict

from ..errors import InvalidArgument
from ..ipc.messages import OP_DUMP, Configure


class IdleEngine:
    libnvme_version = ''
    kernel_caps: tuple = ()

    def __init__(self) -> None:
        self.generation = -1
        self.controllers = 0

    async def start(self, emit) -> None:
        self._emit = emit

    async def configure(self, msg: Configure) -> None:
        self.generation = msg.generation
        self.controllers = len(msg.controllers)

    async def request(self, op: str, args: Dict[str, str]) -> Dict[str, str]:
        if op == OP_DUMP:
            return {'generation': str(self.generation), 'controllers': str(self.controllers)}
        raise InvalidArgument(f'operation {op!r} is not supported by this worker')

    async def shutdown(self, keep_connections: bool) -> None:
        return None

    def load(self) -> tuple:
        return (0, 0.0)
