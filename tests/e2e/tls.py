"""NVMe/TCP TLS in the guest: tlshd for the handshakes and retained PSKs in the .nvme keyring.

The kernel's host and target both hand their TLS handshakes to tlshd (ktls-utils), which the
guest gets unpacked from Debian trixie (``STAS_E2E_TLSHD``, see vm/build-artifacts). Both look
up the pre-shared key in the kernel's ``.nvme`` keyring by its identity: for TLS 1.3 with a
retained SHA-256 PSK, ``NVMe0R01 <host NQN> <subsystem NQN>``, the key type being ``psk``. A
discovery controller over TLS needs one for the discovery NQN. The keys are added with the
add_key system call, as ``nvme gen-tls-key --insert`` does (the guest has no keyutils).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import time
from pathlib import Path
from typing import Iterator, List

import pytest

from stas.fabric.connect_args import psk_identity

from .guest import kernel_has_nvme_tls, scaled

SYS_ADD_KEY = 248  # x86_64
SYS_KEYCTL = 250
KEYCTL_REVOKE = 3


def nvme_keyring() -> int:
    """The serial of the kernel's .nvme keyring (from /proc/keys)."""
    for line in Path('/proc/keys').read_text().splitlines():
        fields = line.split()
        if len(fields) > 8 and fields[7] == 'keyring' and fields[8].rstrip(':') == '.nvme':
            return int(fields[0], 16)
    raise AssertionError('the kernel has no .nvme keyring (is nvme-keyring loaded?)')


def insert_psk(hostnqn: str, subnqn: str, psk: bytes) -> int:
    """Add a retained SHA-256 PSK for ``hostnqn`` and ``subnqn``; its key serial."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    serial = libc.syscall(
        ctypes.c_long(SYS_ADD_KEY),
        b'psk',
        psk_identity(hostnqn, subnqn).encode(),
        psk,
        ctypes.c_size_t(len(psk)),
        ctypes.c_int(nvme_keyring()),
    )
    if serial < 0:
        err = ctypes.get_errno()
        raise OSError(err, f'add_key psk {psk_identity(hostnqn, subnqn)!r}: {os.strerror(err)}')
    return serial


def revoke(serial: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall(ctypes.c_long(SYS_KEYCTL), ctypes.c_int(KEYCTL_REVOKE), ctypes.c_int(serial))


@contextlib.contextmanager
def psks(hostnqn: str, subnqns: List[str]) -> Iterator[List[int]]:
    """One PSK per subsystem NQN for ``hostnqn`` while the block runs (revoked after)."""
    serials = [
        insert_psk(hostnqn, nqn, bytes((n * 7 + i) % 256 for i in range(32))) for n, nqn in enumerate(subnqns)
    ]
    try:
        yield serials
    finally:
        for serial in serials:
            revoke(serial)


@contextlib.contextmanager
def running_tlshd(log_path: Path) -> Iterator[subprocess.Popen]:
    """tlshd in the foreground, logging to ``log_path``; skips the test where TLS cannot run."""
    if not kernel_has_nvme_tls():
        pytest.skip('this kernel has no NVMe/TCP TLS (Debian 6.1 is built without it)')
    tlshd = os.environ.get('STAS_E2E_TLSHD', '')
    if not tlshd or not os.access(tlshd, os.X_OK):
        pytest.skip('no tlshd for the guest (STAS_E2E_TLSHD; tests/e2e/vm/build-artifacts fetches it)')
    with open(log_path, 'w') as log:
        proc = subprocess.Popen([tlshd, '-s'], stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(scaled(0.1))  # until it listens on the kernel's handshake netlink family
        assert proc.poll() is None, f'tlshd exited ({proc.returncode}): {log_path.read_text()[-500:]}'
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
