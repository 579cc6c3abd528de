"""NVMe completion statuses as an admin reads them: ``Invalid Field in Command (0x4002, do not
retry)`` rather than a bare number.

The kernel's admin passthrough returns the completion's status field without its phase bit:
the status code in bits 7:0, its type in bits 10:8, the retry delay index in 12:11, More in 13
and Do Not Retry in 14. Only the codes a discovery controller plausibly answers with are named;
any other is shown by type and number.
"""

from __future__ import annotations

DNR = 0x4000

_GENERIC = {
    0x00: 'Successful Completion',
    0x01: 'Invalid Command Opcode',
    0x02: 'Invalid Field in Command',
    0x03: 'Command ID Conflict',
    0x04: 'Data Transfer Error',
    0x06: 'Internal Error',
    0x07: 'Command Abort Requested',
    0x0C: 'Command Sequence Error',
    0x0D: 'Invalid SGL Segment Descriptor',
    0x0F: 'Data SGL Length Invalid',
    0x11: 'SGL Descriptor Type Invalid',
    0x20: 'Namespace is Write Protected',
    0x22: 'Transient Transport Error',
}
_COMMAND_SPECIFIC = {
    0x05: 'Asynchronous Event Request Limit Exceeded',
    0x09: 'Invalid Log Page',
    0x80: 'Incompatible Format',
    0x81: 'Controller Busy',
    0x82: 'Connect Invalid Parameters',
    0x83: 'Connect Restart Discovery',
    0x84: 'Connect Invalid Host',
    0x90: 'Discover Restart',
    0x91: 'Authentication Required',
}
_TYPES = {0: _GENERIC, 1: _COMMAND_SPECIFIC}
_TYPE_NAMES = {0: 'generic', 1: 'command specific', 2: 'media error', 3: 'path related'}


def do_not_retry(status: int) -> bool:
    """Whether the controller asked not to send the same command again."""
    return bool(status & DNR)


def describe(status: int) -> str:
    """``Invalid Field in Command (0x4002, do not retry)``; an unnamed code by its type."""
    sct, sc = (status >> 8) & 0x7, status & 0xFF
    name = _TYPES.get(sct, {}).get(sc)
    if name is None:
        name = f'{_TYPE_NAMES.get(sct, f"type {sct}")} status 0x{sc:02x}'
    return f'{name} (0x{status:04x}{", do not retry" if do_not_retry(status) else ""})'
