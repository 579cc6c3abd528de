"""sysfs_io against a fake /sys tree laid out as kernel 6.1 lays it out (see the module docstring)."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest

from stas.model import WELL_KNOWN_DISC_NQN, KernelController, Role, TransportId
from stas.testing.sysfs import HOSTNQN, FakeSys
from stas.workers import sysfs_io

SUB1 = 'nqn.2024-01.com.example:sub1'
SUB2 = 'nqn.2024-01.com.example:sub2'
IFACES = {'tb0': ['192.0.2.5'], 'tb1': ['198.51.100.5']}


@pytest.fixture
def fake(tmp_path: Path) -> FakeSys:
    return FakeSys(tmp_path / 'sys')


def dc_tid(**kw: str) -> TransportId:
    values = dict(
        transport='tcp',
        traddr='192.0.2.1',
        trsvcid='8009',
        subsysnqn=WELL_KNOWN_DISC_NQN,
        host_iface='tb0',
        host_nqn=HOSTNQN,
    )
    values.update(kw)
    return TransportId(**values)


# ---- reading one controller ---------------------------------------------------------------------


def test_scan_reads_every_field_of_a_discovery_controller(fake: FakeSys) -> None:
    fake.controller('nvme0')
    assert sysfs_io.scan_controllers(str(fake.root)) == [
        KernelController(
            device='nvme0',
            transport='tcp',
            traddr='192.0.2.1',
            trsvcid='8009',
            host_traddr='',
            host_iface='tb0',
            src_addr='192.0.2.5',
            subsysnqn=WELL_KNOWN_DISC_NQN,
            hostnqn=HOSTNQN,
            cntrltype='discovery',
            dctype='none',
            has_namespaces=False,
        )
    ]


def test_missing_attributes_read_as_empty(fake: FakeSys) -> None:
    # a 5.10 kernel: no cntrltype/dctype, no src_addr, host_traddr given
    fake.controller(
        'nvme3', address='traddr=10.0.0.1,trsvcid=4420,host_traddr=10.0.0.9', cntrltype=None, dctype=None
    )
    (kctrl,) = sysfs_io.scan_controllers(str(fake.root))
    assert (kctrl.cntrltype, kctrl.dctype, kctrl.src_addr, kctrl.host_iface) == ('', '', '', '')
    assert (kctrl.traddr, kctrl.trsvcid, kctrl.host_traddr) == ('10.0.0.1', '4420', '10.0.0.9')


def test_none_in_the_address_reads_as_empty(fake: FakeSys) -> None:
    fake.controller('nvme1', address='traddr=192.0.2.1,trsvcid=8009,host_traddr=none,host_iface=none')
    (kctrl,) = sysfs_io.scan_controllers(str(fake.root))
    assert (kctrl.host_traddr, kctrl.host_iface) == ('', '')


def test_controllers_come_in_instance_order_and_other_entries_are_ignored(fake: FakeSys) -> None:
    for name in ('nvme10', 'nvme2', 'nvme0'):
        fake.controller(name)
    (fake.root / 'class' / 'nvme' / 'nvme-fabrics').mkdir()  # not a controller name
    assert sysfs_io.list_controllers(str(fake.root)) == ['nvme0', 'nvme2', 'nvme10']
    assert [k.device for k in sysfs_io.scan_controllers(str(fake.root))] == ['nvme0', 'nvme2', 'nvme10']


def test_no_nvme_class_at_all_is_an_empty_scan(tmp_path: Path) -> None:
    assert sysfs_io.scan_controllers(str(tmp_path)) == []
    assert sysfs_io.find_adoptable(dc_tid(), Role.DC, IFACES, str(tmp_path)) is None


def test_a_controller_deleted_before_it_is_read_is_skipped(fake: FakeSys) -> None:
    fake.controller('nvme0')
    assert sysfs_io.read_controller('nvme1', str(fake.root)) is None
    fake.remove('nvme0')
    assert sysfs_io.read_controller('nvme0', str(fake.root)) is None


@pytest.mark.parametrize('child', ['nvme0n1', 'nvme0c0n1'])
def test_namespaces_below_the_controller_count(fake: FakeSys, child: str) -> None:
    path = fake.controller('nvme0', cntrltype='io', subsysnqn=SUB1)
    (path / child).mkdir()
    (kctrl,) = sysfs_io.scan_controllers(str(fake.root))
    assert kctrl.has_namespaces is True


def test_namespace_heads_of_the_subsystem_count(fake: FakeSys) -> None:
    fake.controller('nvme0', cntrltype='io', subsysnqn=SUB1)
    fake.controller('nvme1')
    fake.subsystem('nvme-subsys0', ['nvme0'], heads=['nvme0n1'])
    fake.subsystem('nvme-subsys1', ['nvme1'])
    by_name = {k.device: k.has_namespaces for k in sysfs_io.scan_controllers(str(fake.root))}
    assert by_name == {'nvme0': True, 'nvme1': False}


def test_one_controller_read_alone_looks_only_at_the_subsystems_of_its_nqn(fake: FakeSys) -> None:
    fake.controller('nvme0', subsysnqn=SUB1)
    fake.controller('nvme1', subsysnqn=SUB2)
    fake.subsystem('nvme-subsys0', ['nvme0'], heads=['nvme0n1'], nqn=SUB1)
    fake.subsystem('nvme-subsys1', ['nvme1'], nqn=SUB2)
    subsystems = sysfs_io.SubsystemNqns(str(fake.root))
    assert sysfs_io.read_controller('nvme0', str(fake.root), subsystems=subsystems).has_namespaces is True
    assert sysfs_io.read_controller('nvme1', str(fake.root), subsystems=subsystems).has_namespaces is False
    # a subsystem of another NQN that lists the device (it cannot, in a real kernel) is not read
    fake.subsystem('nvme-subsys2', ['nvme1'], heads=['nvme1n1'], nqn=SUB1)
    assert sysfs_io.read_controller('nvme1', str(fake.root), subsystems=subsystems).has_namespaces is False


def test_subsystem_nqns_are_read_once_per_sysfs_node(fake: FakeSys) -> None:
    first = fake.subsystem('nvme-subsys0', [], nqn=SUB1)
    subsystems = sysfs_io.SubsystemNqns(str(fake.root))
    assert subsystems.dirs_of(SUB1) == [str(first)]
    (first / 'subsysnqn').write_text(SUB2 + '\n')  # not read again: the same node
    assert subsystems.dirs_of(SUB1) == [str(first)]
    shutil.rmtree(first)  # gone: forgotten
    second = fake.subsystem('nvme-subsys1', [], nqn=SUB2)  # new: read
    assert subsystems.dirs_of(SUB1) == [] and subsystems.dirs_of(SUB2) == [str(second)]


def test_other_children_are_not_namespaces(fake: FakeSys) -> None:
    path = fake.controller('nvme0')
    for child in ('power', 'hwmon0', 'device'):
        (path / child).mkdir()
    (kctrl,) = sysfs_io.scan_controllers(str(fake.root))
    assert kctrl.has_namespaces is False


def test_read_attrs_and_state(fake: FakeSys) -> None:
    fake.controller('nvme4', state='connecting', kato='7')
    attrs = sysfs_io.read_attrs('nvme4', ('state', 'kato', 'ctrl_loss_tmo'), str(fake.root))
    assert attrs == {'state': 'connecting', 'kato': '7', 'ctrl_loss_tmo': ''}
    assert sysfs_io.controller_state('nvme4', str(fake.root)) == 'connecting'
    assert sysfs_io.controller_state('nvme5', str(fake.root)) == ''
    assert sysfs_io.device_exists('nvme4', str(fake.root)) is True
    assert sysfs_io.device_exists('nvme5', str(fake.root)) is False


@pytest.mark.parametrize('bad', ['nvme', 'nvme0n1', '../nvme0', 'nvme-fabrics', 'sda'])
def test_names_that_are_not_controllers_are_refused(fake: FakeSys, bad: str) -> None:
    with pytest.raises(ValueError, match='not an nvme controller name'):
        sysfs_io.read_attr(bad, 'state', str(fake.root))


def test_connection_fingerprint_ignores_source_address_and_cntlid(fake: FakeSys) -> None:
    path = fake.controller('nvme0', cntlid='1')
    root = str(fake.root)
    before = sysfs_io.connection_fingerprint('nvme0', root)
    assert before == ('tcp', WELL_KNOWN_DISC_NQN, HOSTNQN, '192.0.2.1', '8009', '', 'tb0')
    # a reconnect: new cntlid, another source address, same connection
    (path / 'cntlid').write_text('7\n')
    (path / 'address').write_text('traddr=192.0.2.1,trsvcid=8009,host_iface=tb0,src_addr=192.0.2.6\n')
    assert sysfs_io.connection_fingerprint('nvme0', root) == before


def test_connection_fingerprint_tells_a_recycled_name(fake: FakeSys) -> None:
    fake.controller('nvme0')
    root = str(fake.root)
    before = sysfs_io.connection_fingerprint('nvme0', root)
    fake.remove('nvme0')
    assert sysfs_io.connection_fingerprint('nvme0', root) is None
    (fake.root / 'class' / 'nvme').joinpath('nvme0').mkdir()  # the name, now another connection
    (fake.root / 'class' / 'nvme' / 'nvme0' / 'transport').write_text('tcp\n')
    (fake.root / 'class' / 'nvme' / 'nvme0' / 'subsysnqn').write_text(SUB1 + '\n')
    after = sysfs_io.connection_fingerprint('nvme0', root)
    assert after is not None
    assert after != before


# ---- adoption -----------------------------------------------------------------------------------


def test_find_adoptable_returns_the_matching_controller(fake: FakeSys) -> None:
    fake.controller('nvme0', address='traddr=192.0.2.2,trsvcid=8009,host_iface=tb0,src_addr=192.0.2.5')
    fake.controller('nvme1')
    assert sysfs_io.find_adoptable(dc_tid(), Role.DC, IFACES, str(fake.root)) == 'nvme1'


def test_find_adoptable_respects_the_role(fake: FakeSys) -> None:
    # an I/O controller to the same address must not be taken for the discovery controller
    fake.controller('nvme0', cntrltype='io', subsysnqn=SUB1)
    assert sysfs_io.find_adoptable(dc_tid(), Role.DC, IFACES, str(fake.root)) is None
    assert sysfs_io.find_adoptable(dc_tid(subsysnqn=SUB1), Role.IOC, IFACES, str(fake.root)) == 'nvme0'


def test_find_adoptable_reads_whole_only_the_controllers_of_the_same_subsystem(
    fake: FakeSys, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(5):
        fake.controller(f'nvme{n}', cntrltype='io', subsysnqn=f'{SUB1}-other{n}')
    fake.controller('nvme7', cntrltype='io', subsysnqn=f'  {SUB1}\n')  # as the kernel pads it
    read = []
    real = sysfs_io.read_controller
    monkeypatch.setattr(sysfs_io, 'read_controller', lambda d, *a, **k: read.append(d) or real(d, *a, **k))
    assert sysfs_io.find_adoptable(dc_tid(subsysnqn=SUB1), Role.IOC, IFACES, str(fake.root)) == 'nvme7'
    assert read == ['nvme7']


def test_controller_nqns_reads_each_controller_once_and_again_when_its_name_is_reused(
    fake: FakeSys, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.controller('nvme0', cntrltype='io', subsysnqn=SUB1)
    fake.controller('nvme1', cntrltype='io', subsysnqn='')  # still being set up
    reads = []
    real = sysfs_io.read_attr
    monkeypatch.setattr(sysfs_io, 'read_attr', lambda d, n, *a: reads.append(d) or real(d, n, *a))
    nqns = sysfs_io.ControllerNqns(str(fake.root))
    assert nqns.now() == [('nvme0', SUB1)]
    assert nqns.now() == [('nvme0', SUB1)]
    assert sorted(reads) == ['nvme0', 'nvme1', 'nvme1']  # '' is read again, a known value is not
    (fake.root / 'class' / 'nvme' / 'nvme1' / 'subsysnqn').write_text(SUB1 + '-b\n')
    # the name, another node: its class entry made before the old one goes, so that it has
    # another inode, as sysfs gives it
    fake.controller('nvme9', cntrltype='io', subsysnqn=SUB1 + '-c')
    entries = fake.root / 'class' / 'nvme'
    (entries / 'nvme9').rename(entries / 'nvme0')
    reads.clear()
    assert nqns.now() == [('nvme0', SUB1 + '-c'), ('nvme1', SUB1 + '-b')]
    assert sorted(reads) == ['nvme0', 'nvme1']


def test_controller_nqns_devices_of_one_subsystem_reads_nothing_it_knows(
    fake: FakeSys, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.controller('nvme0', cntrltype='io', subsysnqn=SUB1)
    fake.controller('nvme1', cntrltype='io', subsysnqn=SUB1 + '-b')
    fake.controller('nvme2', cntrltype='io', subsysnqn=SUB1)
    nqns = sysfs_io.ControllerNqns(str(fake.root))
    assert sorted(nqns.devices_of(SUB1)) == ['nvme0', 'nvme2']
    reads = []
    real = sysfs_io.read_attr
    monkeypatch.setattr(sysfs_io, 'read_attr', lambda d, n, *a: reads.append(d) or real(d, n, *a))
    assert nqns.devices_of(SUB1 + '-b') == ['nvme1']
    assert nqns.devices_of('nqn.2014-08.org.example:none') == []
    assert reads == []  # nothing known is read again
    fake.controller('nvme3', cntrltype='io', subsysnqn=SUB1)
    reads.clear()
    assert sorted(nqns.devices_of(SUB1)) == ['nvme0', 'nvme2', 'nvme3']
    assert reads == ['nvme3']  # the new one only


def test_a_fingerprint_needs_the_controller_there_to_its_last_read(fake: FakeSys, monkeypatch) -> None:
    fake.controller('nvme0')
    root = str(fake.root)
    real = sysfs_io.read_attr

    def vanishing(device, name, *args):
        return '' if name == 'transport' else real(device, name, *args)  # deleted meanwhile

    monkeypatch.setattr(sysfs_io, 'read_attr', vanishing)
    assert sysfs_io.connection_fingerprint('nvme0', root) is None


def test_find_adoptable_requires_the_same_host_nqn(fake: FakeSys) -> None:
    fake.controller('nvme0', hostnqn='nqn.2014-08.org.nvmexpress:uuid:other')
    assert sysfs_io.find_adoptable(dc_tid(), Role.DC, IFACES, str(fake.root)) is None


def test_find_adoptable_checks_the_interface_through_src_addr(fake: FakeSys) -> None:
    fake.controller('nvme0', address='traddr=192.0.2.1,trsvcid=8009,src_addr=198.51.100.5')
    assert sysfs_io.find_adoptable(dc_tid(), Role.DC, IFACES, str(fake.root)) is None
    assert sysfs_io.find_adoptable(dc_tid(host_iface='tb1'), Role.DC, IFACES, str(fake.root)) == 'nvme0'


def test_find_adoptable_skips_excluded_and_dying_controllers(fake: FakeSys) -> None:
    fake.controller('nvme0')
    fake.controller('nvme1', state='deleting')
    fake.controller('nvme2', state='dead')
    fake.controller('nvme3', state='deleting (no IO)')
    root = str(fake.root)
    assert sysfs_io.find_adoptable(dc_tid(), Role.DC, IFACES, root) == 'nvme0'
    assert sysfs_io.find_adoptable(dc_tid(), Role.DC, IFACES, root, exclude={'nvme0'}) is None


def test_find_adoptable_prefers_live_then_lowest_instance(fake: FakeSys) -> None:
    fake.controller('nvme2', state='connecting')
    fake.controller('nvme7')
    fake.controller('nvme5')
    root = str(fake.root)
    assert sysfs_io.find_adoptable(dc_tid(), Role.DC, IFACES, root) == 'nvme5'
    assert sysfs_io.find_adoptable(dc_tid(), Role.DC, IFACES, root, exclude={'nvme5', 'nvme7'}) == 'nvme2'


def test_find_adoptable_passes_over_controllers_another_tool_owns(fake: FakeSys) -> None:
    fake.controller('nvme1')
    fake.controller('nvme2', address='traddr=192.0.2.9,trsvcid=8009,host_iface=tb0')  # no match: never asked
    fake.controller('nvme3', state='deleting')  # going away: not asked about either
    asked = []

    def owned_elsewhere(device: str) -> str:
        asked.append(device)
        return "owned by 'discoverd'" if device == 'nvme1' else ''

    passed_over: list = []
    root = str(fake.root)
    found = sysfs_io.find_adoptable(
        dc_tid(), Role.DC, IFACES, root, owned_elsewhere=owned_elsewhere, passed_over=passed_over
    )
    assert found is None and passed_over == [('nvme1', "owned by 'discoverd'")] and asked == ['nvme1']
    fake.controller('nvme4', state='connecting')  # an unowned match is chosen over an owned live one
    assert (
        sysfs_io.find_adoptable(dc_tid(), Role.DC, IFACES, root, owned_elsewhere=owned_elsewhere) == 'nvme4'
    )


# ---- /dev/nvme-fabrics --------------------------------------------------------------------------

KERNEL_61_OPTIONS = (
    'instance=-1,cntlid=-1,transport=%s,traddr=%s,trsvcid=%s,nqn=%s,queue_size=%d,nr_io_queues=%d,'
    'reconnect_delay=%d,ctrl_loss_tmo=%d,keep_alive_tmo=%d,hostnqn=%s,host_traddr=%s,host_iface=%s,'
    'hostid=%s,duplicate_connect,disable_sqflow,hdr_digest,data_digest,nr_write_queues=%d,'
    'nr_poll_queues=%d,tos=%d,fast_io_fail_tmo=%d,discovery,dhchap_secret=%s,dhchap_ctrl_secret=%s\n'
)


def test_kernel_caps_lists_option_names(tmp_path: Path) -> None:
    dev = tmp_path / 'nvme-fabrics'
    dev.write_text(KERNEL_61_OPTIONS)
    caps, reason = sysfs_io.kernel_caps(str(dev))
    assert reason == ''
    assert caps[:4] == ('instance', 'cntlid', 'transport', 'traddr')
    assert len(caps) == 26
    for name in ('host_iface', 'discovery', 'dhchap_secret', 'dhchap_ctrl_secret', 'duplicate_connect'):
        assert name in caps
    assert not any('=' in c or '%' in c for c in caps)


def test_kernel_caps_reads_the_first_line_only_and_drops_repeats(tmp_path: Path) -> None:
    dev = tmp_path / 'nvme-fabrics'
    dev.write_text('transport=%s,discovery,transport=%s\nbogus=%s\n')
    assert sysfs_io.kernel_caps(str(dev)) == (('transport', 'discovery'), '')


def test_kernel_caps_of_a_missing_device_says_why(tmp_path: Path) -> None:
    caps, reason = sysfs_io.kernel_caps(str(tmp_path / 'nvme-fabrics'))
    assert caps == ()
    assert 'does not exist' in reason
    assert 'nvme-fabrics' in reason


def test_kernel_caps_of_an_empty_device_says_why(tmp_path: Path) -> None:
    dev = tmp_path / 'nvme-fabrics'
    dev.write_text('')
    assert sysfs_io.kernel_caps(str(dev)) == ((), f'{dev} returned no options')


def test_kernel_caps_without_permission_says_why(tmp_path: Path, monkeypatch) -> None:
    def refuse(path, flags):
        raise PermissionError(13, 'Permission denied', path)

    monkeypatch.setattr(sysfs_io.os, 'open', refuse)
    dev = str(tmp_path / 'nvme-fabrics')
    assert sysfs_io.kernel_caps(dev) == ((), f'{dev}: permission denied (root is needed to read it)')


def test_kernel_caps_of_an_old_kernel_says_why(tmp_path: Path, monkeypatch) -> None:
    dev = tmp_path / 'nvme-fabrics'
    dev.write_text(KERNEL_61_OPTIONS)

    def einval(fd, size):
        raise OSError(errno.EINVAL, 'Invalid argument')

    monkeypatch.setattr(sysfs_io.os, 'read', einval)
    assert sysfs_io.kernel_caps(str(dev)) == ((), f'{dev} does not list its options (kernel older than 5.17)')


def test_connection_security_says_what_a_connection_was_made_with(fake: FakeSys) -> None:
    root = str(fake.root)
    secret = 'DHHC-1:00:c2Vjb25kc2Vjb25kc2Vjb25kc2Vjb25kc2Vjb24dYW8=:'
    fake.controller('nvme0', dhchap_secret='none', dhchap_ctrl_secret='none')
    fake.controller('nvme1', tls_key='1b2c3d4e', dhchap_secret=secret, dhchap_ctrl_secret=secret)
    fake.controller('nvme2', dhchap_secret=secret)  # a kernel without the ctrl secret attribute
    fake.controller('nvme3', tls_key='1b2c3d4e')
    got = [sysfs_io.connection_security(f'nvme{i}', root) for i in range(4)]
    assert got == ['none', 'tls, dh-hmac-chap (bidirectional)', 'dh-hmac-chap', 'tls']
    # it is one of the details a status carries, and no secret is
    details = sysfs_io.ControllerDetails(root).read('nvme1')
    assert details['security'] == 'tls, dh-hmac-chap (bidirectional)'
    assert secret not in details.values()
