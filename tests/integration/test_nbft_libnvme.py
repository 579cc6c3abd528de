"""Differential test: stas.fabric.nbft.parse_nbft against libnvme's ``nvme.nbft_get``.

Tables are built with stas.testing.nbft_table, written to files and read by both. Our result is
converted to the dictionary shape libnvme's Python binding returns, then the two are compared
whole, so any field that differs shows in the diff.

libnvme runs in a child process: some inputs crash its binding (a 0 byte in an SSNS secondary
HFI list, or descriptor indexes with a gap, make it dereference NULL or leave list slots unset).
A repeated index in that list followed by a new one does the same. The tables compared here
avoid those inputs; the places where the two readers disagree on
purpose have their own tests below, which pin libnvme's current behaviour too.

Shape of ``nbft_get(path)`` (libnvme 1.16): None when the table is rejected, else
``{'host': {...}, 'hfi': [...], 'discovery': [...], 'subsystem': [...]}`` where
* host: ``nqn``, ``id`` (UUID text, zeros included), ``host_id_configured``,
  ``host_nqn_configured``, ``primary_admin_host_flag`` (never decoded: always 'not indicated');
* hfi[i] (i = index - 1): ``trtype``, ``pcidev`` ('%x:%x:%x.%x'), ``mac_addr``, ``vlan``,
  ``ip_origin``, ``ipaddr``, ``subnet_mask_prefix``, ``gateway_ipaddr``, ``route_metric``,
  ``primary_dns_ipaddr``, ``secondary_dns_ipaddr``, ``dhcp_server_ipaddr`` ('' unless DHCP
  override), ``host_name`` (only when present), ``this_hfi_is_default_route``, ``dhcp_override``;
  an all-zero address is '::';
* discovery[i]: ``uri``, ``nqn``, ``hfi_index`` (HFI index - 1, only when it resolves);
  security profiles are not parsed, so no ``security_index``;
* subsystem[i]: ``hfi_indexes`` (HFI indexes - 1, primary first), ``trtype``, ``traddr``,
  ``trsvcid``, ``subsys_port_id``, ``nsid``, ``nid_type`` ('eui64'/'nguid'/'uuid') and ``nid``
  (only for those types), ``subsys_nqn``, ``controller_id`` and ``asqsz`` (0 when absent),
  ``dhcp_root_path_string`` (only when present), ``pdu_header_digest_required``,
  ``data_digest_required``.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

from stas.fabric import nbft as layout
from stas.fabric.nbft import Nbft, NbftError, parse_nbft
from stas.testing.nbft_table import DiscoverySpec, HfiSpec, SubsystemSpec, build_nbft, set_checksum
from stas.testing.nbft_table import main as nbft_table_main

pytest.importorskip('libnvme')

READER = (
    'import json, sys\n'
    'from libnvme import nvme\n'
    'print(json.dumps([nvme.nbft_get(path) for path in sys.argv[1:]]))\n'
)

HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:7d3c0e2a-91b4-4f55-a0c6-2e8d1f6b9a70'
HOSTID = '7d3c0e2a-91b4-4f55-a0c6-2e8d1f6b9a70'
DISC_NQN = 'nqn.2014-08.org.nvmexpress.discovery'
NID_NAMES = {layout.NID_TYPE_EUI64: 'eui64', layout.NID_TYPE_NGUID: 'nguid', layout.NID_TYPE_UUID: 'uuid'}


def _run_reader(paths: Sequence[Path]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, '-c', READER, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def libnvme_read(paths: Sequence[Path]) -> List[Optional[dict]]:
    """libnvme's nbft_get result for each file, read in one child process."""
    proc = _run_reader(paths)
    if proc.returncode != 0:
        culprit = next((p for p in paths if _run_reader([p]).returncode != 0), None)
        pytest.fail(f'libnvme nbft_get exited {proc.returncode} reading {culprit}:\n{proc.stderr[-2000:]}')
    return json.loads(proc.stdout)


def as_libnvme(table: Nbft) -> dict:
    """Our parse result in the shape (and spelling) of libnvme's nbft_get dictionary."""

    def addr(text: str) -> str:
        return text or '::'

    host: Dict[str, object] = {
        'id': table.host.hostid or '00000000-0000-0000-0000-000000000000',
        'host_id_configured': table.host.id_configured,
        'host_nqn_configured': table.host.nqn_configured,
    }
    if table.host.nqn is not None:
        host['nqn'] = table.host.nqn
    hfis = []
    for hfi in sorted(table.hfis, key=lambda h: h.index):
        entry = {
            'trtype': hfi.transport,
            'pcidev': hfi.pci_address,
            'mac_addr': hfi.mac,
            'vlan': hfi.vlan,
            'ip_origin': hfi.ip_origin,
            'ipaddr': addr(hfi.ipaddr),
            'subnet_mask_prefix': hfi.subnet_prefix,
            'gateway_ipaddr': addr(hfi.gateway),
            'route_metric': hfi.route_metric,
            'primary_dns_ipaddr': addr(hfi.primary_dns),
            'secondary_dns_ipaddr': addr(hfi.secondary_dns),
            'dhcp_server_ipaddr': addr(hfi.dhcp_server) if hfi.dhcp_override else '',
            'this_hfi_is_default_route': hfi.default_route,
            'dhcp_override': hfi.dhcp_override,
        }
        if hfi.host_name is not None:
            entry['host_name'] = hfi.host_name
        hfis.append(entry)
    discoveries = []
    for disc in sorted(table.discoveries, key=lambda d: d.index):
        entry = {'uri': disc.uri}
        if disc.nqn is not None:
            entry['nqn'] = disc.nqn
        if disc.hfi_index is not None:
            entry['hfi_index'] = disc.hfi_index - 1
        discoveries.append(entry)
    subsystems = []
    for sub in sorted(table.subsystems, key=lambda s: s.index):
        entry = {
            'hfi_indexes': [i - 1 for i in sub.hfi_indexes],
            'trtype': sub.transport,
            'traddr': addr(sub.traddr),
            'trsvcid': sub.trsvcid,
            'subsys_port_id': sub.subsys_port_id,
            'nsid': sub.nsid,
            'subsys_nqn': sub.subsys_nqn,
            'controller_id': sub.controller_id or 0,
            'asqsz': sub.asqsz or 0,
            'pdu_header_digest_required': sub.pdu_header_digest,
            'data_digest_required': sub.data_digest,
        }
        if sub.nid_type in NID_NAMES:
            entry['nid_type'] = NID_NAMES[sub.nid_type]
            entry['nid'] = sub.nid
        if sub.dhcp_root_path is not None:
            entry['dhcp_root_path_string'] = sub.dhcp_root_path
        subsystems.append(entry)
    return {'host': host, 'hfi': hfis, 'discovery': discoveries, 'subsystem': subsystems}


def without_primary_flag(theirs: dict) -> dict:
    # libnvme 1.x never decodes the primary-admin bits; ours are checked in the unit tests
    theirs = json.loads(json.dumps(theirs))
    theirs['host'].pop('primary_admin_host_flag')
    return theirs


# ---- tables both readers must read alike -----------------------------------------------------

HFI_A = HfiSpec(
    mac='52:54:00:00:00:0a',
    ip='192.0.2.10',
    prefix=24,
    gateway='192.0.2.1',
    vlan=100,
    ip_origin=1,
    route_metric=500,
    primary_dns='192.0.2.53',
    host_name='boot-a',
    pci_sbdf=0x0000_3A08,
)
HFI_B = HfiSpec(
    mac='52:54:00:00:00:0B',
    ip='2001:db8:1::20',
    prefix=64,
    gateway='fe80::1',
    secondary_dns='2001:db8:1::53',
    dhcp_override=True,
    dhcp_server='2001:db8:1::2',
    default_route=True,
    pci_sbdf=0x0001_FF07,
)

CASES = {
    'ipv4-one-of-each': dict(
        hfis=[HFI_A],
        discoveries=[DiscoverySpec('nvme+tcp://192.0.2.1:8009/', DISC_NQN, hfi=1)],
        # libnvme needs a secondary HFI list, so the primary is repeated there (both readers drop it)
        subsystems=[SubsystemSpec('192.0.2.1', 'nqn.2014-08.org.example:a', hfis=(1, 1), discovery=1)],
    ),
    'ipv6-dhcp-extended-info': dict(
        hostid=None,
        hfis=[HFI_B],
        discoveries=[DiscoverySpec('nvme+tcp://[2001:db8:1::1]:8009/', 'nqn.2014-08.org.example:cdc', hfi=1)],
        subsystems=[
            SubsystemSpec(
                '2001:db8:1::1',
                'nqn.2014-08.org.example:b',
                trsvcid='4421',
                nsid=0,
                hfis=(1, 1),
                subsys_port_id=2,
                nid_type=layout.NID_TYPE_UUID,
                nid=bytes.fromhex('0d7c5a1e3b2f4c6d8e9fa0b1c2d3e4f5'),
                controller_id=0x21,
                asqsz=64,
                dhcp_root_path='nvme+tcp://[2001:db8:1::1]:4421/nqn.2014-08.org.example:b',
                pdu_header_digest=True,
                data_digest=True,
            )
        ],
        hostid_configured=False,
        hostnqn_configured=False,
    ),
    'two-interfaces': dict(
        hfis=[HFI_A, HFI_B],
        discoveries=[
            DiscoverySpec('nvme+tcp://192.0.2.1:8009/', DISC_NQN, hfi=1),
            DiscoverySpec('nvme+tcp://[2001:db8:1::1]:8009/', DISC_NQN, hfi=2),
            DiscoverySpec('nvme+tcp://dc.example.com/', DISC_NQN),
        ],
        subsystems=[
            SubsystemSpec('192.0.2.1', 'nqn.2014-08.org.example:c1', hfis=(1, 2), discovery=1),
            SubsystemSpec(
                '2001:db8:1::1',
                'nqn.2014-08.org.example:c2',
                hfis=(2, 1),
                nid_type=layout.NID_TYPE_EUI64,
                nid=bytes.fromhex('0123456789abcdef'),
                unavailable=True,
            ),
            SubsystemSpec(
                '192.0.2.3',
                'nqn.2014-08.org.example:c3',
                nsid=9,
                hfis=(1, 2, 2, 1),
                nid_type=layout.NID_TYPE_NGUID,
                nid=bytes.fromhex('00112233445566778899aabbccddeeff'),
                controller_id=4,
            ),
        ],
    ),
    'indexes-out-of-order': dict(
        hfis=[
            HfiSpec(mac='02:00:00:00:00:02', ip='10.0.2.2', prefix=16, index=2),
            HfiSpec(mac='02:00:00:00:00:01', ip='10.0.1.2', prefix=16, index=1),
        ],
        discoveries=[
            DiscoverySpec('nvme+tcp://10.0.2.1:8009/', DISC_NQN, hfi=2, index=2),
            DiscoverySpec('nvme+tcp://10.0.1.1:8009/', DISC_NQN, hfi=1, index=1),
        ],
        subsystems=[
            SubsystemSpec('10.0.2.1', 'nqn.2014-08.org.example:d2', hfis=(2, 1), index=2),
            SubsystemSpec('10.0.1.1', 'nqn.2014-08.org.example:d1', hfis=(1, 2), index=1),
        ],
    ),
    'unusual-addresses': dict(
        hfis=[
            HfiSpec(
                mac='fe:ff:ff:ff:ff:ff',
                ip='::1.2.3.4',
                prefix=96,
                gateway='::ffff:0.0.0.0',
                primary_dns='::1',
                secondary_dns='2001:0:0:1::1',
                dhcp_override=True,
                dhcp_server='',
                vlan=4095,
                route_metric=65535,
                ip_origin=255,
                pci_sbdf=0xFFFF_FFFF,
            ),
            HfiSpec(mac='00:00:00:00:00:00', ip='', prefix=0),
        ],
        subsystems=[SubsystemSpec('fe80::abcd:1', 'nqn.2014-08.org.example:e', trsvcid='1', hfis=(2, 1))],
    ),
    'invalid-descriptors-at-the-end': dict(
        hfis=[HFI_A, HfiSpec(mac='02:00:00:00:00:09', ip='10.9.9.9', prefix=8, valid=False)],
        discoveries=[
            DiscoverySpec('nvme+tcp://192.0.2.1:8009/', DISC_NQN, hfi=1),
            DiscoverySpec('nvme+tcp://192.0.2.2:8009/', DISC_NQN, hfi=1, valid=False),
        ],
        subsystems=[
            SubsystemSpec('192.0.2.1', 'nqn.2014-08.org.example:f', hfis=(1, 1)),
            SubsystemSpec('192.0.2.2', 'nqn.2014-08.org.example:g', hfis=(1, 1), valid=False),
        ],
    ),
}


def random_case(rng: random.Random) -> dict:
    """A random table within what libnvme reads without crashing: indexes 1..n, discoveries with an
    NQN, subsystems with a non-empty secondary HFI list without 0 bytes, whose repeated indexes
    (which both readers drop) come after every new one."""
    n_hfi = rng.randint(1, 4)

    def ip(v6: bool) -> str:
        if v6:
            return f'2001:db8:{rng.randrange(0x10000):x}::{rng.randrange(1, 0x10000):x}'
        return f'{rng.randint(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randint(1, 254)}'

    hfis = []
    for _ in range(n_hfi):
        v6 = rng.random() < 0.4
        hfis.append(
            HfiSpec(
                mac=':'.join(f'{rng.randrange(256):02x}' for _ in range(6)),
                ip=ip(v6),
                prefix=rng.randint(0, 128 if v6 else 32),
                gateway=rng.choice(['', ip(v6)]),
                vlan=rng.randrange(4096),
                ip_origin=rng.randrange(256),
                route_metric=rng.randrange(65536),
                primary_dns=rng.choice(['', ip(v6)]),
                secondary_dns=rng.choice(['', ip(not v6)]),
                dhcp_override=rng.random() < 0.5,
                dhcp_server=rng.choice(['', ip(v6)]),
                default_route=rng.random() < 0.5,
                host_name=rng.choice([None, f'host-{rng.randrange(1000)}']),
                pci_sbdf=rng.randrange(1 << 32),
            )
        )
    discoveries = []
    for _ in range(rng.randint(0, 4)):
        v6 = rng.random() < 0.4
        host = f'[{ip(True)}]' if v6 else ip(False)
        port = rng.choice(['', f':{rng.randint(1, 65535)}'])
        discoveries.append(
            DiscoverySpec(
                f'nvme+tcp://{host}{port}/',
                rng.choice([DISC_NQN, f'nqn.2014-08.org.example:dc{rng.randrange(100)}']),
                hfi=rng.randint(0, n_hfi),
            )
        )
    subsystems = []
    for number in range(rng.randint(0, 4)):
        primary = rng.randint(1, n_hfi)
        others = [i for i in range(1, n_hfi + 1) if i != primary]
        rng.shuffle(others)
        secondary = others[: rng.randint(1, len(others))] if others else [primary]
        hfi_list = [primary, *secondary]
        hfi_list += [rng.choice(hfi_list) for _ in range(rng.randint(0, 2))]
        nid_type = rng.randrange(4)
        subsystems.append(
            SubsystemSpec(
                ip(rng.random() < 0.4),
                f'nqn.2014-08.org.example:r{number}',
                trsvcid=str(rng.randint(1, 65535)),
                nsid=rng.randrange(1 << 32),
                hfis=tuple(hfi_list),
                discovery=rng.randint(0, len(discoveries)),
                subsys_port_id=rng.randrange(65536),
                nid_type=nid_type,
                nid=bytes(rng.randrange(256) for _ in range(16)),
                pdu_header_digest=rng.random() < 0.5,
                data_digest=rng.random() < 0.5,
                controller_id=rng.choice([None, rng.randrange(1, 65536)]),
                asqsz=rng.choice([None, rng.randrange(1, 65536)]),
            )
        )
    return dict(
        hostid=rng.choice([None, HOSTID]),
        hfis=hfis,
        discoveries=discoveries,
        subsystems=subsystems,
        hostid_configured=rng.random() < 0.5,
        hostnqn_configured=rng.random() < 0.5,
    )


def build(case: dict) -> bytes:
    case = dict(case)
    hostid = case.pop('hostid', HOSTID)
    return build_nbft(HOSTNQN, hostid, **case)


@pytest.mark.parametrize('name', sorted(CASES))
def test_named_table_reads_the_same_as_libnvme(name, tmp_path):
    path = tmp_path / 'NBFT1'
    path.write_bytes(build(CASES[name]))
    (theirs,) = libnvme_read([path])
    ours = parse_nbft(path.read_bytes(), str(path))
    assert theirs is not None
    assert ours.warnings == ()
    assert as_libnvme(ours) == without_primary_flag(theirs)


def test_random_tables_read_the_same_as_libnvme(tmp_path):
    rng = random.Random(20240917)
    paths = []
    for number in range(60):
        path = tmp_path / f'NBFT{number}'
        path.write_bytes(build(random_case(rng)))
        paths.append(path)
    results = libnvme_read(paths)
    compared = {'hfi': 0, 'discovery': 0, 'subsystem': 0}
    for path, theirs in zip(paths, results):
        ours = parse_nbft(path.read_bytes(), str(path))
        assert theirs is not None, path
        assert as_libnvme(ours) == without_primary_flag(theirs), path
        for key in compared:
            compared[key] += len(theirs[key])
    assert min(compared.values()) > 40, compared  # the comparison covered every kind of descriptor


def test_table_from_the_command_line_reads_the_same_as_libnvme(tmp_path):
    path = tmp_path / 'NBFT'
    argv = ['--out', str(path), '--hostnqn', HOSTNQN, '--hostid', HOSTID]
    argv += ['--hfi', 'mac=52:54:00:12:34:56,ip=10.0.2.15,prefix=24,gateway=10.0.2.2,hostname=guest']
    argv += ['--discovery', 'uri=nvme+tcp://10.0.2.2:8009/,hfi=1']
    argv += ['--subsystem', 'traddr=10.0.2.2,nqn=nqn.2014-08.org.example:cli,hfi=1+1,discovery=1,ddgst=yes']
    assert nbft_table_main(argv) == 0
    (theirs,) = libnvme_read([path])
    ours = parse_nbft(path.read_bytes(), str(path))
    assert as_libnvme(ours) == without_primary_flag(theirs)
    assert theirs['discovery'] == [{'uri': 'nvme+tcp://10.0.2.2:8009/', 'nqn': DISC_NQN, 'hfi_index': 0}]


def test_libnvme_and_we_report_the_same_host_flags(tmp_path):
    path = tmp_path / 'NBFT'
    path.write_bytes(build_nbft(HOSTNQN, HOSTID, hostid_configured=True, hostnqn_configured=False))
    (theirs,) = libnvme_read([path])
    ours = parse_nbft(path.read_bytes(), str(path))
    assert theirs['host'] == {
        'nqn': HOSTNQN,
        'id': HOSTID,
        'host_id_configured': True,
        'host_nqn_configured': False,
        'primary_admin_host_flag': 'not indicated',
    }
    assert (ours.host.nqn, ours.host.hostid, ours.host.id_configured, ours.host.nqn_configured) == (
        HOSTNQN,
        HOSTID,
        True,
        False,
    )


# ---- tables both readers reject --------------------------------------------------------------


def _patched(offset: int, value: int, seal: bool = True) -> bytes:
    data = bytearray(build(CASES['two-interfaces']))
    data[offset] = value
    return set_checksum(bytes(data)) if seal else bytes(data)


REJECTED = {
    'bad-signature': lambda: _patched(3, ord('X')),
    'bad-checksum': lambda: _patched(9, build(CASES['two-interfaces'])[9] ^ 0x01, seal=False),
    'truncated': lambda: build(CASES['two-interfaces'])[:-16],
    'major-revision-2': lambda: _patched(8, 2),
    'host-not-valid': lambda: _patched(layout.MIN_TABLE_SIZE + 1, 0),
    'wrong-control-id': lambda: _patched(layout.CONTROL_OFFSET, 7),
    'too-short': lambda: build(CASES['two-interfaces'])[:100],
}


@pytest.mark.parametrize('name', sorted(REJECTED))
def test_both_readers_reject(name, tmp_path):
    path = tmp_path / 'NBFT'
    path.write_bytes(REJECTED[name]())
    (theirs,) = libnvme_read([path])
    assert theirs is None
    with pytest.raises(NbftError):
        parse_nbft(path.read_bytes(), str(path))


# ---- where the two differ on purpose ---------------------------------------------------------


def read_both(tmp_path: Path, data: bytes):
    path = tmp_path / 'NBFT'
    path.write_bytes(data)
    (theirs,) = libnvme_read([path])
    try:
        ours = parse_nbft(data, str(path))
    except NbftError as exc:
        ours = exc
    return ours, theirs


def test_divergence_control_descriptor_not_valid(tmp_path):
    ours, theirs = read_both(tmp_path, build_nbft(HOSTNQN, HOSTID, hfis=[HFI_A], control_valid=False))
    assert theirs == {
        'host': {
            'host_id_configured': False,
            'host_nqn_configured': False,
            'primary_admin_host_flag': 'not indicated',
        },
        'hfi': [],
        'discovery': [],
        'subsystem': [],
    }
    assert isinstance(ours, NbftError) and 'lack VALID' in str(ours)


def test_divergence_minor_revision(tmp_path):
    ours, theirs = read_both(tmp_path, build_nbft(HOSTNQN, HOSTID, hfis=[HFI_A], minor_revision=1))
    assert theirs is None
    assert isinstance(ours, Nbft) and ours.hfis[0].mac == '52:54:00:00:00:0a'


def test_divergence_trailing_bytes_after_the_table(tmp_path):
    ours, theirs = read_both(tmp_path, build_nbft(HOSTNQN, HOSTID) + bytes(8))
    assert theirs is not None and theirs['host']['nqn'] == HOSTNQN
    assert isinstance(ours, NbftError) and 'the table has' in str(ours)


def test_divergence_discovery_without_nqn(tmp_path):
    data = build_nbft(
        HOSTNQN,
        HOSTID,
        discoveries=[
            DiscoverySpec('nvme+tcp://192.0.2.1:8009/', DISC_NQN),
            DiscoverySpec('nvme+tcp://192.0.2.2:8009/', None),  # last, so libnvme's list has no gap
        ],
    )
    ours, theirs = read_both(tmp_path, data)
    assert [d['uri'] for d in theirs['discovery']] == ['nvme+tcp://192.0.2.1:8009/']
    assert [(d.traddr, d.nqn) for d in ours.discoveries] == [('192.0.2.1', DISC_NQN), ('192.0.2.2', None)]


def test_divergence_subsystem_without_secondary_hfi_list(tmp_path):
    data = build_nbft(
        HOSTNQN, HOSTID, hfis=[HFI_A], subsystems=[SubsystemSpec('192.0.2.1', 'nqn.x:h', hfis=(1,))]
    )
    ours, theirs = read_both(tmp_path, data)
    assert theirs['subsystem'] == []
    assert [(s.subsys_nqn, s.hfi_indexes) for s in ours.subsystems] == [('nqn.x:h', (1,))]


def test_divergence_host_without_nqn(tmp_path):
    ours, theirs = read_both(tmp_path, build_nbft(None, HOSTID))
    assert theirs is None
    assert isinstance(ours, Nbft) and (ours.host.nqn, ours.host.hostid) == (None, HOSTID)


def test_divergence_all_zero_host_id(tmp_path):
    ours, theirs = read_both(tmp_path, build_nbft(HOSTNQN, None))
    assert theirs['host']['id'] == '00000000-0000-0000-0000-000000000000'
    assert ours.host.hostid is None
