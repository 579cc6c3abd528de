"""The kernel keyrings a TLS connection's pre-shared keys live in: finding a keyring by name,
and filing a derived TLS PSK in it for the kernel (and tlshd) to use.

The key type is the kernel's ``psk`` (the nvme-keyring module registers it and makes the
``.nvme`` keyring, where both the NVMe host and target look PSKs up by identity). The system
calls are made through libc's ``syscall``: glibc has no wrappers for them and keyutils is not a
dependency of this project.
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Optional

from ..errors import KernelError

DEFAULT_KEYRING = '.nvme'
PSK_KEY_TYPE = 'psk'
PROC_KEYS = '/proc/keys'

# add_key's system call number per architecture (asm-generic's for the 64-bit ARM/RISC-V ones)
_SYS_ADD_KEY = {'x86_64': 248, 'aarch64': 217, 'riscv64': 217, 'ppc64le': 269, 's390x': 278, 'i686': 286}

_libc: Optional[ctypes.CDLL] = None


def _syscall():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    return _libc.syscall


def find_keyring(name: str, proc_keys: str = PROC_KEYS) -> int:
    """The serial of the keyring ``name`` (its description, e.g. ``.nvme``) or of the serial
    ``name`` itself (decimal or 0x hex). Raises ``KernelError`` naming the keyring."""
    try:
        return int(name, 0)
    except ValueError:
        pass
    try:
        with open(proc_keys, encoding='utf-8', errors='replace') as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise KernelError(f'cannot read {proc_keys} to find keyring {name!r}: {exc.strerror}') from None
    for line in lines:
        # serial flags usage expiry perm uid gid type description: summary
        fields = line.split(None, 8)
        if len(fields) == 9 and fields[7] == 'keyring':
            description = fields[8].rsplit(': ', 1)[0] if ': ' in fields[8] else fields[8]
            if description == name:
                return int(fields[0], 16)
    if name == DEFAULT_KEYRING:
        raise KernelError(
            'the kernel has no .nvme keyring (the nvme-keyring module makes it: is it loaded, '
            'and is the kernel built with NVMe/TCP TLS?)'
        )
    raise KernelError(f'no keyring {name!r} (the keyring= option; see /proc/keys)')


def file_psk(keyring: int, identity: str, psk: bytes) -> int:
    """File ``psk`` under ``identity`` in ``keyring`` (a key of that identity there is replaced)
    and return the key's serial. Raises ``KernelError`` naming the identity, never the key."""
    number = _SYS_ADD_KEY.get(os.uname().machine)
    if number is None:
        raise KernelError(f'filing a TLS PSK is not supported on {os.uname().machine}')
    serial = _syscall()(
        ctypes.c_long(number),
        PSK_KEY_TYPE.encode(),
        identity.encode(),
        psk,
        ctypes.c_size_t(len(psk)),
        ctypes.c_int(keyring),
    )
    if serial < 0:
        err = ctypes.get_errno()
        why = os.strerror(err)
        if err == errno.ENODEV:
            why = 'the kernel has no "psk" key type (is nvme-keyring loaded?)'
        raise KernelError(f'cannot file the TLS PSK "{identity}" in keyring {keyring}: {why}')
    return int(serial)
