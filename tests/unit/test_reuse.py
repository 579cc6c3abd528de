"""stas.fabric.reuse: may an existing kernel controller be adopted for a TID (and DC/IOC heuristics)."""

from __future__ import annotations

import dataclasses

import pytest

from stas.fabric.reuse import (
    kernel_ctrl_matches,
    kernel_value,
    looks_like_dc,
    looks_like_ioc,
    parse_sysfs_address,
)
from stas.fabric.tid import kernel_ctrl_matches as reexported
from stas.model import WELL_KNOWN_DISC_NQN, KernelController, Role, TransportId

HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:host-1'
NQN = 'nqn.1988-11.com.example:subsys-1'

IFACES = {
    'eth0': {4: ['10.0.0.5', '10.0.0.6'], 6: ['fe80::5']},
    'eth1': ['192.168.1.5', '2001:db8::15'],
    'eth2': ['10.2.0.5'],  # no IPv6 address
}


def tid(**kw):
    base = dict(
        transport='tcp',
        traddr='10.0.0.20',
        trsvcid='4420',
        subsysnqn=NQN,
        host_traddr='',
        host_iface='',
        host_nqn=HOSTNQN,
    )
    base.update(kw)
    return TransportId(**base)


def kctrl(**kw):
    base = dict(
        device='nvme1',
        transport='tcp',
        traddr='10.0.0.20',
        trsvcid='4420',
        host_traddr='none',
        host_iface='none',
        src_addr='',
        subsysnqn=NQN,
        hostnqn=HOSTNQN,
        cntrltype='io',
        has_namespaces=True,
    )
    base.update(kw)
    return KernelController(**base)


def test_reexported_from_tid_module():
    assert reexported is kernel_ctrl_matches


# ---- rules 1-3: mandatory fields ---------------------------------------------------------------


@pytest.mark.parametrize(
    ('t', 'k', 'match'),
    [
        (tid(), kctrl(), True),
        (tid(transport='rdma'), kctrl(), False),
        (tid(trsvcid='4421'), kctrl(), False),
        (tid(host_nqn='nqn.other'), kctrl(), False),
        (tid(host_nqn=''), kctrl(hostnqn='none'), True),  # 'none' and '' are both unset
        (tid(host_nqn=''), kctrl(hostnqn=''), True),
        (tid(subsysnqn='nqn.other'), kctrl(), False),
        # TP8013: the well-known NQN in the TID matches a DC's unique NQN
        (tid(subsysnqn=WELL_KNOWN_DISC_NQN), kctrl(subsysnqn='nqn.dc:unique'), True),
        # ...but not the other way round
        (tid(subsysnqn='nqn.dc:unique'), kctrl(subsysnqn=WELL_KNOWN_DISC_NQN), False),
        (tid(traddr='10.0.0.21'), kctrl(), False),
        (tid(traddr='10.0.0.20'), kctrl(traddr='::ffff:10.0.0.20'), True),  # v4-mapped
        (tid(traddr='fe80::20'), kctrl(traddr='FE80:0::20'), True),
        (tid(traddr='fe80::20%eth0'), kctrl(traddr='fe80::20'), True),
        (tid(transport='tcp'), kctrl(transport='TCP'), True),
    ],
)
def test_mandatory_fields(t, k, match):
    assert kernel_ctrl_matches(t, k, IFACES) is match


# ---- rule 4: tcp with src_addr (kernel >= 6.1) ------------------------------------------------


@pytest.mark.parametrize(
    ('host_traddr', 'host_iface', 'src_addr', 'k_iface', 'match'),
    [
        ('', '', '10.0.0.5', 'none', True),  # TID does not care
        ('10.0.0.5', '', '10.0.0.5', 'none', True),
        ('10.0.0.6', '', '10.0.0.5', 'none', False),  # another address on the same interface
        ('10.0.0.5', '', '::ffff:10.0.0.5', 'none', True),
        ('', 'eth0', '10.0.0.5', 'none', True),  # eth0 owns src_addr
        ('', 'eth1', '10.0.0.5', 'none', False),
        ('', 'eth0', '10.0.0.6', 'eth1', True),  # the owner decides, not the kernel's host_iface...
        ('', 'eth1', '10.9.9.9', 'eth1', True),  # ...unless nobody owns src_addr any more
        ('', 'eth0', '10.9.9.9', 'none', False),
        ('10.0.0.5', 'eth0', '10.0.0.5', 'none', True),
        ('10.0.0.5', 'eth1', '10.0.0.5', 'none', False),
        ('fe80::5', 'eth0', 'fe80::5', 'none', True),
    ],
)
def test_tcp_with_src_addr(host_traddr, host_iface, src_addr, k_iface, match):
    t = tid(host_traddr=host_traddr, host_iface=host_iface)
    k = kctrl(src_addr=src_addr, host_iface=k_iface)
    assert kernel_ctrl_matches(t, k, IFACES) is match


# ---- rule 4: tcp legacy (no src_addr) ---------------------------------------------------------


@pytest.mark.parametrize(
    ('host_traddr', 'host_iface', 'k_traddr', 'k_iface', 'match'),
    [
        # host_traddr wanted
        ('10.0.0.5', '', '10.0.0.5', 'none', True),
        ('10.0.0.5', '', '10.0.0.6', 'none', False),
        ('10.0.0.5', '', 'none', 'eth0', True),  # eth0's primary IPv4 is 10.0.0.5
        ('10.0.0.6', '', 'none', 'eth0', False),  # 10.0.0.6 is secondary: the kernel used .5
        ('10.0.0.6', '', 'none', 'eth9', True),  # unknown interface: no address to check
        ('fe80::5', '', 'none', 'eth0', True),  # eth0's primary IPv6 is fe80::5
        ('2001:db8::99', '', 'none', 'eth0', False),
        ('2001:db8::99', '', 'none', 'eth2', True),
        ('10.0.0.5', '', 'none', 'none', True),  # nothing known: optimistic
        # host_iface wanted
        ('', 'eth0', 'none', 'eth0', True),
        ('', 'eth0', 'none', 'eth1', False),
        ('', 'eth0', '10.0.0.6', 'none', True),  # the interface owning host_traddr
        ('', 'eth1', '10.0.0.6', 'none', False),
        ('', 'eth0', 'none', 'none', True),  # nothing known: optimistic
        # both
        ('10.0.0.5', 'eth0', '10.0.0.5', 'eth0', True),
        ('10.0.0.5', 'eth1', '10.0.0.5', 'eth0', False),
    ],
)
def test_tcp_legacy_without_src_addr(host_traddr, host_iface, k_traddr, k_iface, match):
    t = tid(host_traddr=host_traddr, host_iface=host_iface)
    k = kctrl(host_traddr=k_traddr, host_iface=k_iface, src_addr='')
    assert kernel_ctrl_matches(t, k, IFACES) is match


def test_legacy_primary_v6_check_uses_first_v6_address():
    # eth1's primary v6 is 2001:db8::15
    t = tid(host_traddr='2001:db8::16')
    k = kctrl(host_traddr='none', host_iface='eth1')
    assert kernel_ctrl_matches(t, k, IFACES) is False
    assert kernel_ctrl_matches(tid(host_traddr='2001:db8::15'), k, IFACES) is True


# ---- rules 5 and 6: fc and rdma ---------------------------------------------------------------


FC_T = 'nn-0x20000090fa942779:pn-0x10000090fa942779'
FC_H = 'nn-0x200000109b579ef6:pn-0x100000109b579ef6'


@pytest.mark.parametrize(
    ('t', 'k', 'match'),
    [
        (tid(transport='fc', traddr=FC_T, trsvcid='', host_traddr=FC_H), None, True),
        (tid(transport='fc', traddr=FC_T.upper(), trsvcid='', host_traddr=FC_H.upper()), None, True),
        (tid(transport='fc', traddr=FC_T, trsvcid='', host_traddr=''), None, False),  # mandatory
        (tid(transport='fc', traddr=FC_T, trsvcid='', host_traddr='nn-0x1:pn-0x2'), None, False),
        (tid(transport='fc', traddr='nn-0x1:pn-0x1', trsvcid='', host_traddr=FC_H), None, False),
    ],
)
def test_fc(t, k, match):
    k = kctrl(transport='fc', traddr=FC_T, trsvcid='none', host_traddr=FC_H, host_iface='none')
    assert kernel_ctrl_matches(t, k, IFACES) is match


@pytest.mark.parametrize(
    ('host_traddr', 'k_host_traddr', 'match'),
    [
        ('', '10.0.0.5', True),
        ('', 'none', True),
        ('10.0.0.5', '::ffff:10.0.0.5', True),
        ('10.0.0.5', '10.0.0.6', False),
        ('10.0.0.5', 'none', False),
    ],
)
def test_rdma_host_traddr_compared_as_ip_when_set(host_traddr, k_host_traddr, match):
    t = tid(transport='rdma', host_traddr=host_traddr, host_iface='ib0')  # host_iface ignored for rdma
    k = kctrl(transport='rdma', host_traddr=k_host_traddr, host_iface='none')
    assert kernel_ctrl_matches(t, k, IFACES) is match


def test_loop_compares_traddr_without_case():
    t = tid(transport='loop', traddr='Port1', trsvcid='')
    assert kernel_ctrl_matches(t, kctrl(transport='loop', traddr='port1', trsvcid='none'), {}) is True
    assert kernel_ctrl_matches(t, kctrl(transport='loop', traddr='port2', trsvcid='none'), {}) is False


# ---- DC / IOC heuristics ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('cntrltype', 'subsysnqn', 'has_ns', 'is_dc', 'is_ioc'),
    [
        ('discovery', NQN, False, True, False),
        ('io', NQN, False, False, True),  # an IOC without namespaces, on a kernel that says so
        ('io', WELL_KNOWN_DISC_NQN, False, False, True),  # the kernel's word wins
        ('', WELL_KNOWN_DISC_NQN, False, True, False),
        ('', WELL_KNOWN_DISC_NQN, True, True, True),  # contradictory sysfs: both heuristics fire
        ('', NQN, False, True, False),  # old kernel: no children means DC (as upstream)
        ('', NQN, True, False, True),
        ('none', NQN, True, False, True),
    ],
)
def test_dc_ioc_heuristics(cntrltype, subsysnqn, has_ns, is_dc, is_ioc):
    k = kctrl(cntrltype=cntrltype, subsysnqn=subsysnqn, has_namespaces=has_ns)
    assert looks_like_dc(k) is is_dc
    assert looks_like_ioc(k) is is_ioc


def test_role_filter():
    dc_k = kctrl(cntrltype='discovery', subsysnqn='nqn.dc:unique', has_namespaces=False)
    t = tid(subsysnqn=WELL_KNOWN_DISC_NQN)
    assert kernel_ctrl_matches(t, dc_k, IFACES, role=Role.DC) is True
    assert kernel_ctrl_matches(t, dc_k, IFACES, role=Role.IOC) is False
    assert kernel_ctrl_matches(t, dataclasses.replace(dc_k, cntrltype='io'), IFACES, role=Role.DC) is False


# ---- sysfs helpers ------------------------------------------------------------------------------


def test_kernel_value():
    assert kernel_value('none') == ''
    assert kernel_value(' None\n') == ''
    assert kernel_value(None) == ''
    assert kernel_value(' eth0 ') == 'eth0'


def test_parse_sysfs_address():
    text = 'traddr=10.0.0.20,trsvcid=4420,host_traddr=none,src_addr=10.0.0.5\n'
    assert parse_sysfs_address(text) == {
        'traddr': '10.0.0.20',
        'trsvcid': '4420',
        'host_traddr': '',
        'src_addr': '10.0.0.5',
    }
    assert parse_sysfs_address('traddr=a,junk,traddr=b,=x') == {'traddr': 'a'}
    assert parse_sysfs_address('') == {}
