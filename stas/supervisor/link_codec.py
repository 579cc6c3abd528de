"""The rtnetlink link message the interface inventory reads, on pyroute2's netlink codec.

pyroute2's own ``ifinfmsg`` describes every attribute and every kind of link the kernel knows:
importing it loads a plugin module per kind (bond, vxlan, vti, ...) and, through pyroute2's
configuration, ``platform``. That was more than half of what the supervisor's rtnetlink codecs
cost to import, and the supervisor imports them before it owns its bus name. The inventory reads
four things of a link: its index and flags (``struct ifinfomsg``), its name, its link-layer
address and, for a VLAN, its 802.1Q id. ``LinkMessage`` names only those; pyroute2 keeps any
other attribute of a message undecoded, and encodes a request (index and family) as it would
with ``ifinfmsg``.

The attribute numbers are the kernel's ABI (linux/if_link.h).
"""

from __future__ import annotations

from pyroute2.netlink import nla, nlmsg

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_LINKINFO = 18
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFLA_VLAN_ID = 1


class LinkMessage(nlmsg):
    """RTM_NEWLINK / RTM_DELLINK / RTM_GETLINK, as far as the inventory reads them."""

    prefix = 'IFLA_'
    fields = (
        ('family', 'B'),
        ('__align', 'x'),
        ('ifi_type', 'H'),
        ('index', 'i'),
        ('flags', 'I'),
        ('change', 'I'),
    )
    nla_map = (
        (IFLA_ADDRESS, 'IFLA_ADDRESS', 'l2addr'),
        (IFLA_IFNAME, 'IFLA_IFNAME', 'asciiz'),
        (IFLA_LINKINFO, 'IFLA_LINKINFO', 'linkinfo'),
    )

    class linkinfo(nla):  # noqa: N801 - pyroute2 finds a nested attribute's class by this name
        prefix = 'IFLA_INFO_'
        nla_map = (
            (IFLA_INFO_KIND, 'IFLA_INFO_KIND', 'asciiz'),
            (IFLA_INFO_DATA, 'IFLA_INFO_DATA', 'info_data'),
        )

        @staticmethod
        def info_data(info, *argv, **kwarg):  # pyroute2 passes the attribute being decoded
            """The class of IFLA_INFO_DATA, which depends on the link's kind (IFLA_INFO_KIND
            comes first): a VLAN's is decoded, any other kind's is kept as it came."""
            return info.vlan_data if info.get_attr('IFLA_INFO_KIND') == 'vlan' else info.hex

        class vlan_data(nla):  # noqa: N801
            nla_map = ((IFLA_VLAN_ID, 'IFLA_VLAN_ID', 'uint16'),)
