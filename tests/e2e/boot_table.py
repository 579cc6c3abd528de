"""The NBFT the test guest's firmware carries, so stafd and stacd read a boot table the way they
do on a host that booted from NVMe/TCP: through /sys/firmware/acpi/tables/NBFT.

``tools/e2e`` writes it with ``python -m tests.e2e.boot_table FILE`` and boots the guest with
``run-in-vm --acpi-table FILE``. The tests about boot tables build the fabric it describes:

* HFI 1: MAC ``HFI1_MAC``, no VLAN; DC 1 at ``DC1_ADDR``:8009 through it; the boot subsystem
  ``BOOT_NAME`` at ``DC1_ADDR``:4420 (an SSNS descriptor).
* HFI 2: MAC ``HFI2_MAC`` on VLAN ``HFI2_VLAN`` (the VLAN interface shares its parent's MAC, so
  only the VLAN id tells them apart); DC 2 at ``DC2_ADDR`` with a URI that has no port (8009).

Every other test points the daemons at an empty directory (``RunningDaemon(nbft_path=None)``).
"""

from __future__ import annotations

import sys

from stas.model import WELL_KNOWN_DISC_NQN
from stas.testing.nbft_table import DiscoverySpec, HfiSpec, SubsystemSpec, build_nbft

from .fabric import NQN_PREFIX
from .initiator import HOSTID, HOSTNQN

FIRMWARE_DIR = '/sys/firmware/acpi/tables'
HFI1_MAC, HFI1_ADDR = '02:00:5e:00:53:b1', '192.0.2.61'
HFI2_MAC, HFI2_ADDR, HFI2_VLAN = '02:00:5e:00:53:b2', '198.51.100.61', 7
DC1_ADDR, DC2_ADDR = '192.0.2.60', '198.51.100.60'
BOOT_NAME = 'nbft-boot'


def table() -> bytes:
    return build_nbft(
        HOSTNQN,
        HOSTID,
        hfis=[
            HfiSpec(mac=HFI1_MAC, ip=HFI1_ADDR, prefix=24),
            HfiSpec(mac=HFI2_MAC, ip=HFI2_ADDR, prefix=24, vlan=HFI2_VLAN),
        ],
        discoveries=[
            DiscoverySpec(uri=f'nvme+tcp://{DC1_ADDR}:8009/', nqn=WELL_KNOWN_DISC_NQN, hfi=1),
            DiscoverySpec(uri=f'nvme+tcp://{DC2_ADDR}/', hfi=2),
        ],
        subsystems=[
            SubsystemSpec(traddr=DC1_ADDR, trsvcid='4420', nqn=NQN_PREFIX + BOOT_NAME, hfis=(1,), discovery=1)
        ],
    )


if __name__ == '__main__':
    if len(sys.argv) != 2:
        sys.exit('usage: python -m tests.e2e.boot_table FILE')
    with open(sys.argv[1], 'wb') as f:
        f.write(table())
