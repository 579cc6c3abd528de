"""Identify Controller (CNS 01h) data of a discovery controller: 4096 bytes.

The fields the Linux host checks, at their byte offsets: CNTLID (78, two bytes) must equal the
one Connect returned; VER (80); OAES (92, bit 31: discovery log page change notices);
CNTRLTYPE (111: 2, discovery); AERL (259, zero-based); LPA (261, bit 2: the extended Get Log
Page fields, NUMDU and the 64-bit offset); KAS (320, in 100 ms units); MAXCMD (514, non-zero);
SGLS (536, bit 0 or 1: SGLs supported, which NVMe/TCP needs; bit 20: an in-capsule data
descriptor holds an offset); SUBNQN (768, 256 bytes); and the fabrics fields IOCCSZ (1792) and
IORCSZ (1796) in 16-byte units, ICDOFF (1800, must be 0), MSDBD (1803) and DCTYPE (1806: 1
direct discovery controller, 2 central discovery controller, 0 not reported).
"""

from __future__ import annotations

import struct

from ...record import record

IDENTIFY_SIZE = 4096
CNS_CONTROLLER = 0x01

CNTRLTYPE_DISCOVERY = 2
DCTYPE_NOT_REPORTED = 0
DCTYPE_DDC = 1
DCTYPE_CDC = 2
DCTYPES = {'none': DCTYPE_NOT_REPORTED, 'ddc': DCTYPE_DDC, 'cdc': DCTYPE_CDC}

OAES_DISCOVERY_CHANGE = 1 << 31
LPA_EXTENDED_DATA = 1 << 2
SGLS_SUPPORTED = 1 << 0
SGLS_OFFSET = 1 << 20

VERSION_1_3 = 0x00010300
AERL = 3  # zero based: four AERs held at once

# byte offsets
OFF_SN = 4
OFF_MN = 24
OFF_FR = 64
OFF_CNTLID = 78
OFF_VER = 80
OFF_OAES = 92
OFF_CNTRLTYPE = 111
OFF_AERL = 259
OFF_LPA = 261
OFF_KAS = 320
OFF_SQES = 512
OFF_CQES = 513
OFF_MAXCMD = 514
OFF_SGLS = 536
OFF_SUBNQN = 768
OFF_IOCCSZ = 1792
OFF_IORCSZ = 1796
OFF_ICDOFF = 1800
OFF_MSDBD = 1803
OFF_DCTYPE = 1806


@record
class ControllerIdentity:
    cntlid: int
    subnqn: str
    dctype: int = DCTYPE_CDC
    serial: str = 'stas-test-cdc'
    model: str = 'nvme-stas test discovery controller'
    firmware: str = '1.0'
    kas: int = 10  # 1 s
    maxcmd: int = 128
    aerl: int = AERL


def _ascii(value: str, width: int) -> bytes:
    # SN, MN and FR are space padded, not NUL terminated
    return value.encode()[:width].ljust(width, b' ')


def encode_identify_controller(ident: ControllerIdentity) -> bytes:
    buf = bytearray(IDENTIFY_SIZE)
    buf[OFF_SN : OFF_SN + 20] = _ascii(ident.serial, 20)
    buf[OFF_MN : OFF_MN + 40] = _ascii(ident.model, 40)
    buf[OFF_FR : OFF_FR + 8] = _ascii(ident.firmware, 8)
    struct.pack_into('<H', buf, OFF_CNTLID, ident.cntlid)
    struct.pack_into('<I', buf, OFF_VER, VERSION_1_3)
    struct.pack_into('<I', buf, OFF_OAES, OAES_DISCOVERY_CHANGE)
    buf[OFF_CNTRLTYPE] = CNTRLTYPE_DISCOVERY
    buf[OFF_AERL] = ident.aerl
    buf[OFF_LPA] = LPA_EXTENDED_DATA
    struct.pack_into('<H', buf, OFF_KAS, ident.kas)
    buf[OFF_SQES] = 0x66  # 64-byte entries (required and maximum, as powers of two)
    buf[OFF_CQES] = 0x44  # 16-byte entries
    struct.pack_into('<H', buf, OFF_MAXCMD, ident.maxcmd)
    struct.pack_into('<I', buf, OFF_SGLS, SGLS_SUPPORTED | SGLS_OFFSET)
    nqn = ident.subnqn.encode()[:255]
    buf[OFF_SUBNQN : OFF_SUBNQN + len(nqn)] = nqn
    struct.pack_into('<I', buf, OFF_IOCCSZ, 64 // 16)  # a discovery controller has no I/O queues
    struct.pack_into('<I', buf, OFF_IORCSZ, 16 // 16)
    struct.pack_into('<H', buf, OFF_ICDOFF, 0)
    buf[OFF_MSDBD] = 1
    buf[OFF_DCTYPE] = ident.dctype
    return bytes(buf)
