"""Facts about where the e2e tests run: inside the test guest or not, and how slow it is.

The guest (tests/e2e/vm, started by tools/e2e) exports STAS_E2E_GUEST=1. It runs under qemu's TCG
emulation: Python is about 12x slower on CPU-bound code and 20-40x slower on imports and process
starts than on the host, so every timeout in an e2e test goes through ``scaled()``.
STAS_E2E_SLOW overrides the factor (the guest sets 20 unless the caller chose another value).
"""

from __future__ import annotations

import os
import time
from typing import Callable, List, Optional, TypeVar

T = TypeVar('T')

IN_GUEST = os.environ.get('STAS_E2E_GUEST') == '1'
SKIP_REASON = (
    'e2e test: needs the kernel NVMe-oF stack (nvme-tcp, nvmet) of the test guest; run it with tools/e2e'
)
# A guest booted with systemd as PID 1 (tools/e2e --systemd), which runs the tests as a service.
UNDER_SYSTEMD = IN_GUEST and os.path.isdir('/run/systemd/system')
# Kernel modules the guest loads at boot (module names as /sys/module spells them).
REQUIRED_MODULES = ('nvme_tcp', 'nvme_fabrics', 'nvmet', 'nvmet_tcp')


def kernel_has_nvme_auth() -> bool:
    """Whether the guest kernel's NVMe host does DH-HMAC-CHAP. Debian's 6.12 builds it in, and its
    nvme-core then needs the nvme_auth module, which the guest loads with it; Debian's 6.1 has
    neither (see tests/e2e/vm/build-artifacts for the kernels)."""
    return os.path.isdir('/sys/module/nvme_auth')


def kernel_has_nvme_tls() -> bool:
    """Whether the guest kernel's NVMe/TCP host does TLS: 6.12 lists ``tls`` among the options of
    /dev/nvme-fabrics, 6.1 does not. The handshake itself needs tlshd (``STAS_E2E_TLSHD``)."""
    try:
        with open('/dev/nvme-fabrics') as f:
            options = f.read()
    except OSError:
        return False
    return 'tls' in (o.split('=')[0] for o in options.strip().split(','))


def slow_factor() -> float:
    value = os.environ.get('STAS_E2E_SLOW', '')
    if not value:
        return 20.0 if IN_GUEST else 1.0
    try:
        factor = float(value)
    except ValueError:
        raise ValueError(f'STAS_E2E_SLOW={value!r} is not a number (e.g. 20)') from None
    if factor <= 0:
        raise ValueError(f'STAS_E2E_SLOW={value!r} must be greater than 0')
    return factor


def scaled(seconds: float) -> float:
    """A timeout of ``seconds`` on a normal machine, stretched for the emulated guest."""
    return seconds * slow_factor()


def missing_kernel_support() -> List[str]:
    """What the guest lacks for the tests (empty when all is there)."""
    missing = [f'module {m}' for m in REQUIRED_MODULES if not os.path.isdir(f'/sys/module/{m}')]
    if not os.path.isdir('/sys/kernel/config/nvmet'):
        missing.append('configfs with /sys/kernel/config/nvmet')
    if not os.path.exists('/dev/nvme-fabrics'):
        missing.append('/dev/nvme-fabrics')
    return missing


def wait_for(probe: Callable[[], Optional[T]], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy and return that; raise TimeoutError
    naming ``what`` after ``timeout`` seconds (already scaled by the caller)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f'gave up after {timeout:.1f}s waiting for {what}')
        time.sleep(interval)
