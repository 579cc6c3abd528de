"""The inventory's link message against pyroute2's full one: what ``ifinfmsg`` encodes (as the
kernel lays it out), ``LinkMessage`` reads the same, and a request it encodes is the same bytes."""

from __future__ import annotations

import pytest

from stas.supervisor.link_codec import LinkMessage
from stas.supervisor.netlink import _vlan_id

ifinfmsg = pytest.importorskip('pyroute2.netlink.rtnl.ifinfmsg').ifinfmsg


def encoded(index: int, flags: int, attrs: list) -> bytes:
    msg = ifinfmsg()
    msg['family'] = 0
    msg['index'] = index
    msg['flags'] = flags
    msg['attrs'] = attrs
    msg.encode()
    return bytes(msg.data)


def decoded(data: bytes) -> LinkMessage:
    msg = LinkMessage(data)
    msg.decode()
    return msg


def linkinfo(kind: str, data: list) -> tuple:
    return ('IFLA_LINKINFO', {'attrs': [('IFLA_INFO_KIND', kind), ('IFLA_INFO_DATA', {'attrs': data})]})


def test_a_vlan_link_reads_its_index_flags_name_address_and_id():
    data = encoded(
        7,
        0x10043,
        [
            ('IFLA_IFNAME', 'eth0.42'),
            ('IFLA_MTU', 1500),
            ('IFLA_ADDRESS', '02:FC:00:00:00:01'),
            linkinfo('vlan', [('IFLA_VLAN_ID', 42)]),
        ],
    )
    msg = decoded(data)
    assert (msg['index'], msg['flags']) == (7, 0x10043)
    assert msg.get_attr('IFLA_IFNAME') == 'eth0.42'
    assert msg.get_attr('IFLA_ADDRESS') == '02:fc:00:00:00:01'
    assert _vlan_id(msg) == 42


def test_another_kind_of_link_has_no_vlan_id_and_its_data_is_left_as_it_came():
    msg = decoded(encoded(9, 0, [('IFLA_IFNAME', 'vx0'), linkinfo('vxlan', [('IFLA_VXLAN_ID', 42)])]))
    assert msg.get_nested('IFLA_LINKINFO', 'IFLA_INFO_KIND') == 'vxlan'
    assert _vlan_id(msg) == 0
    assert msg.get_attr('IFLA_IFNAME') == 'vx0'


def test_a_link_without_kind_or_address_reads_as_nothing_there():
    msg = decoded(encoded(1, 0x1, [('IFLA_IFNAME', 'lo')]))
    assert msg.get_attr('IFLA_ADDRESS') is None
    assert _vlan_id(msg) == 0


def test_a_name_that_is_not_utf8_comes_as_bytes():
    # the inventory sets such an interface aside by this sign (see stas.supervisor.netlink)
    data = encoded(5, 0, [('IFLA_IFNAME', 'ethX')])
    raw = data.replace(b'ethX', b'et\xffX')
    assert decoded(raw).get_attr('IFLA_IFNAME') == b'et\xffX'


def test_a_request_is_the_bytes_ifinfmsg_makes():
    ours = LinkMessage()
    ours['family'] = 0
    ours['index'] = 3
    ours.encode()
    theirs = ifinfmsg()
    theirs['family'] = 0
    theirs['index'] = 3
    theirs.encode()
    assert bytes(ours.data) == bytes(theirs.data)
