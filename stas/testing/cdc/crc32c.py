"""CRC32C (Castagnoli), the checksum of NVMe/TCP header and data digests.

The standard library has only the other CRC32 (zlib's polynomial), so this is the reflected
table-driven form of polynomial 0x1EDC6F41. Pure Python is slow per byte, but the digests here
cover PDU headers and at most a few KiB of admin data.
"""

from __future__ import annotations

from typing import List

_REFLECTED_POLY = 0x82F63B78


def _table() -> List[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _REFLECTED_POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """The CRC32C of ``data``; pass a previous result as ``crc`` to continue it."""
    crc ^= 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
