"""Where nvme-stas keeps its configuration (the same paths as nvme-stas 2.x)."""

from __future__ import annotations

STAFD_CONF = '/etc/stas/stafd.conf'
STACD_CONF = '/etc/stas/stacd.conf'
SYS_CONF = '/etc/stas/sys.conf'

DAEMON_CONF = {'stafd': STAFD_CONF, 'stacd': STACD_CONF}
