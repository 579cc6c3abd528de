"""The worker's kernel edges (stas.workers.nvme_io, udev_io, sysfs_io) against the real kernel.

What the guest's stack says, pinned here: nvmet (6.1) reports dctype 'none' for its discovery
controllers, so it takes no DIM registration, and it answers Supported Log Pages with an error
status (Invalid Field), so it offers no PLEO. DH-HMAC-CHAP secrets reach the kernel for
discovery and I/O controllers alike; where the kernel has NVMe authentication (6.12, not Debian's
6.1) a secret the target rejects is a connect failure named "authentication failed".
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import gc
import struct
import zlib
from typing import Callable, Iterator, List, Optional

import pytest

from stas.dbus.dlpe_dicts import screen_entry
from stas.errors import KernelError, NotFound
from stas.fabric import dim, nvme_status
from stas.fabric.dlpe import ADRFAM_IPV4, ADRFAM_IPV6, subtype_name, trtype_name
from stas.model import (
    AEN_DISCOVERY_LOG_CHANGE,
    WELL_KNOWN_DISC_NQN,
    ConnectOptions,
    ControllerSpec,
    HostIdentity,
    KernelController,
    Role,
    TransportId,
)
from stas.workers import nvme_io, sysfs_io
from stas.workers.nvme_io import ConnectResult, NvmeIo
from stas.workers.udev_io import NvmeUevent, UdevMonitor

from .fabric import Fabric, Port
from .guest import kernel_has_nvme_auth, scaled, wait_for
from .initiator import controllers, ctrl_attr, delete_controller, fabrics_connect, namespaces_of

pytestmark = pytest.mark.e2e

IFACES = {'tb0': ['192.0.2.1'], 'tb1': ['198.51.100.1']}


def tid(port: Port, subsysnqn: str = WELL_KNOWN_DISC_NQN, host_iface: str = 'tb0', **kw: str) -> TransportId:
    return TransportId(
        transport='tcp',
        traddr=port.traddr,
        trsvcid=kw.pop('trsvcid', port.trsvcid_str),
        subsysnqn=subsysnqn,
        host_iface=host_iface,
        **kw,
    )


def dc_spec(port: Port, options: Optional[ConnectOptions] = None, **kw) -> ControllerSpec:
    pin = kw.pop('pin_iface', True)
    return ControllerSpec(tid(port, **kw), Role.DC, options or ConnectOptions(kato=30), pin_iface=pin)


def ioc_spec(port: Port, nqn: str, options: Optional[ConnectOptions] = None, **kw) -> ControllerSpec:
    return ControllerSpec(tid(port, nqn, **kw), Role.IOC, options or ConnectOptions(kato=30))


def dhchap_secret(seed: int) -> str:
    """A well-formed DH-CHAP secret (DHHC-1, untransformed 32-byte key, CRC-32 appended)."""
    key = bytes((seed + i) % 256 for i in range(32))
    return 'DHHC-1:00:' + base64.b64encode(key + struct.pack('<I', zlib.crc32(key))).decode() + ':'


@pytest.fixture
def io() -> Iterator[NvmeIo]:
    instance = NvmeIo()
    yield instance
    instance.close()


@pytest.fixture
def tb0(fabric: Fabric):
    return fabric.interface('tb0', '192.0.2.1/24')


def by_subtype(entries, subtype: str) -> set:
    """The entries of ``subtype`` ('nvme', 'referral', 'discovery') by NQN, address and port ID."""
    return {(e.subnqn, e.traddr, e.trsvcid, e.portid) for e in entries if subtype_name(e) == subtype}


# ---- facts about the kernel and the binding -----------------------------------------------------


def test_kernel_caps_lists_the_connect_options_of_the_guest_kernel() -> None:
    caps, reason = sysfs_io.kernel_caps()
    assert reason == ''
    for name in ('transport', 'traddr', 'nqn', 'host_iface', 'discovery', 'keep_alive_tmo', 'queue_size'):
        assert name in caps
    assert ('dhchap_secret' in caps, 'dhchap_ctrl_secret' in caps) == (True, True)
    assert NvmeIo().kernel_caps() == (caps, '')


def test_the_libnvme_binding_has_the_names_nvme_io_relies_on(host_identity: HostIdentity) -> None:
    from libnvme import nvme

    settable = {name for name, p in vars(nvme.ctrl).items() if isinstance(p, property) and p.fset}
    assert {'discovery_ctrl', 'dhchap_host_key', 'dhchap_key', 'persistent'} <= settable
    assert 'dhchap_ctrl_key' not in vars(nvme.ctrl)  # the libnvme 3.x spelling does not exist here
    for method in ('init', 'connect', 'disconnect', 'discover', 'supported_log_pages', 'registration_ctlr'):
        assert callable(getattr(nvme.ctrl, method))
    assert callable(nvme.ctrl.is_registration_supported)
    assert isinstance(vars(nvme.host)['dhchap_key'], property)
    assert (nvme.NVMF_DIM_TAS_REGISTER, nvme.NVMF_LOG_DISC_LSP_PLEO) == (0, nvme_io.NVMF_LOG_DISC_LSP_PLEO)

    import libnvme

    assert nvme_io.libnvme_version() == libnvme.__version__

    # Why every attribute goes through _set_property: a misspelt one is silently accepted.
    root = nvme.root()
    ctrl = nvme.ctrl(root, subsysnqn=WELL_KNOWN_DISC_NQN, transport='tcp', traddr='192.0.2.9', trsvcid='8009')
    ctrl.dhchap_ctrl_key = 'typo'  # no error: a plain Python attribute that libnvme never sees
    with pytest.raises(KernelError, match='no settable ctrl.dhchap_ctrl_key'):
        nvme_io._set_property(ctrl, 'dhchap_ctrl_key', 'x')
    nvme_io._set_property(ctrl, 'dhchap_key', 'DHHC-1:00:x:')
    assert ctrl.dhchap_key == 'DHHC-1:00:x:'
    nvme_io._destroy(ctrl)
    nvme_io._destroy(root)


# ---- connect, discover, adopt -------------------------------------------------------------------


def test_dc_connects_on_its_interface_and_reads_the_log_page(
    fabric: Fabric, tb0, io: NvmeIo, host_identity: HostIdentity
) -> None:
    disc = fabric.port(tb0)
    far = fabric.port(fabric.interface('tb1', '198.51.100.1/24'), trsvcid=4420)
    sub1, sub2, sub3 = (fabric.subsystem(n, backing=None) for n in ('sub1', 'sub2', 'sub3'))
    disc.link(sub1)
    far.link(sub2)
    disc.add_referral(far)

    result = io.connect(dc_spec(disc), host_identity, IFACES)

    assert controllers() == [result.device]
    assert result == ConnectResult(result.device, adopted=False, dctype='none', registration_supported=False)
    assert (
        ctrl_attr(result.device, 'address')
        == 'traddr=192.0.2.1,trsvcid=8009,host_iface=tb0,src_addr=192.0.2.1'
    )
    assert ctrl_attr(result.device, 'kato') == '30'
    assert io.managed() == (result.device,)

    genctr, entries, dropped = io.discover(result.device)

    assert dropped == []
    assert genctr > 0
    assert by_subtype(entries, 'nvme') == {(sub1.nqn, '192.0.2.1', '8009', disc.portid)}
    assert by_subtype(entries, 'referral') == {(WELL_KNOWN_DISC_NQN, '198.51.100.1', '4420', far.portid)}
    assert by_subtype(entries, 'discovery') == {(WELL_KNOWN_DISC_NQN, '192.0.2.1', '8009', disc.portid)}
    assert {trtype_name(e) for e in entries} == {'tcp'}

    disc.link(sub3)
    genctr2, entries2, _ = io.discover(result.device)

    assert genctr2 > genctr
    assert {e[0] for e in by_subtype(entries2, 'nvme')} == {sub1.nqn, sub3.nqn}
    assert io.read_genctr(result.device) == genctr2


def test_a_restarted_worker_adopts_the_controller_instead_of_duplicating_it(
    fabric: Fabric, tb0, host_identity: HostIdentity
) -> None:
    disc = fabric.port(tb0)
    sub = fabric.subsystem('sub1', backing=None)
    disc.link(sub)
    first = NvmeIo()
    dc = first.connect(dc_spec(disc), host_identity, IFACES)
    ioc = first.connect(ioc_spec(disc, sub.nqn), host_identity, IFACES)
    assert (dc.adopted, ioc.adopted) == (False, False)
    first.close()  # the worker went away; the kernel keeps its controllers

    second = NvmeIo()
    try:
        dc2 = second.connect(dc_spec(disc), host_identity, IFACES)
        ioc2 = second.connect(ioc_spec(disc, sub.nqn), host_identity, IFACES)
        again = second.connect(dc_spec(disc), host_identity, IFACES)  # already managed: reused

        assert dc2 == ConnectResult(dc.device, adopted=True, dctype='none', registration_supported=False)
        assert ioc2 == ConnectResult(ioc.device, adopted=True)
        assert again.device == dc.device
        assert controllers() == sorted([dc.device, ioc.device], key=lambda n: int(n[4:]))
        _, entries, _ = second.discover(dc2.device)
        assert {e[0] for e in by_subtype(entries, 'nvme')} == {sub.nqn}
    finally:
        second.close()


def test_adoption_needs_the_same_role_and_interface(fabric: Fabric, tb0, io: NvmeIo, host_identity) -> None:
    disc = fabric.port(tb0)
    sub = fabric.subsystem('sub1', backing=None)
    disc.link(sub)
    ioc = io.connect(ioc_spec(disc, sub.nqn), host_identity, IFACES)
    unpinned = NvmeIo()
    try:
        # the well-known NQN matches any subsystem NQN, but an I/O controller is no DC
        dc = unpinned.connect(dc_spec(disc, pin_iface=False), host_identity, IFACES)
        assert dc.adopted is False
        assert dc.device != ioc.device
        assert 'host_iface' not in ctrl_attr(dc.device, 'address')
    finally:
        unpinned.close()
    assert len(controllers()) == 2


def test_connect_failure_is_a_kernel_error_naming_the_controller(
    fabric: Fabric, tb0, io: NvmeIo, host_identity
) -> None:
    disc = fabric.port(tb0)
    with pytest.raises(KernelError, match=r'\(tcp, 192\.0\.2\.1, 4444, .*connect failed: connection refused'):
        io.connect(dc_spec(disc, trsvcid='4444'), host_identity, IFACES)  # nothing listens there
    assert controllers() == []
    assert io.managed() == ()


def test_concurrent_connects_each_get_their_own_outcome(
    fabric: Fabric, tb0, io: NvmeIo, host_identity
) -> None:
    """The connects that wait (in the kernel, which serialises them) behind one that fails each
    report their own success."""
    disc = fabric.port(tb0)
    lo = fabric.port('127.0.0.1')
    subs = [fabric.subsystem(f'sub{i}', backing=None) for i in (1, 2)]
    for sub in subs:
        disc.link(sub)
    # 192.0.2.9 is on tb0's subnet but nobody has it (a dummy link drops every packet): the kernel
    # waits for the TCP handshake until it gives up, seconds later, with the others queued behind
    silent = TransportId('tcp', '192.0.2.9', '8009', WELL_KNOWN_DISC_NQN, host_iface='tb0')
    specs = [
        dc_spec(disc),
        dc_spec(lo, host_iface=''),
        ioc_spec(disc, subs[0].nqn),
        ioc_spec(disc, subs[1].nqn, host_iface=''),
    ]
    with concurrent.futures.ThreadPoolExecutor(max_workers=5) as pool:
        hung = pool.submit(io.connect, ControllerSpec(silent, Role.DC), host_identity, IFACES)
        futures = [pool.submit(io.connect, s, host_identity, IFACES) for s in specs]
        with pytest.raises(KernelError, match=r'\(tcp, 192\.0\.2\.9, 8009, .*connect failed: '):
            hung.result()
        results = [f.result() for f in futures]

    devices = [r.device for r in results]
    assert len(set(devices)) == 4
    assert io.managed() == tuple(sorted(devices, key=lambda n: int(n[4:])))
    assert controllers() == list(io.managed())
    assert [ctrl_attr(d, 'cntrltype') for d in devices] == ['discovery', 'discovery', 'io', 'io']


def test_the_raw_log_page_reads_what_libnvme_reads(fabric: Fabric, tb0, io: NvmeIo, host_identity) -> None:
    from libnvme import nvme

    disc = fabric.port(tb0)
    far = fabric.port(fabric.interface('tbv0', '2001:db8::1/64', kind='veth', peer='tbv1'), trsvcid=4420)
    for i in range(6):  # 1 + 6 + 1 records of 1 KiB: the page spans three 4 KiB commands
        disc.link(fabric.subsystem(f'sub{i}', backing=None))
    disc.add_referral(far)
    device = io.connect(dc_spec(disc), host_identity, IFACES).device

    genctr, entries, dropped = io.discover(device)

    root = nvme.root()
    host = nvme.host(root, hostnqn=host_identity.hostnqn, hostid=host_identity.hostid)
    ctrl = nvme.ctrl(root, subsysnqn=WELL_KNOWN_DISC_NQN, transport='tcp', traddr='192.0.2.1', trsvcid='8009')
    assert ctrl.init(host, int(device[4:]))
    try:
        screened = [screen_entry(item) for item in ctrl.discover()]
    finally:
        for obj in (ctrl, host, root):
            nvme_io._destroy(obj)

    assert list(entries) == [entry for entry, _ in screened if entry is not None]
    assert dropped == [f'entry {i}: {why}' for i, (_, why) in enumerate(screened) if why]
    assert len(entries) == 8
    assert by_subtype(entries, 'referral') == {(WELL_KNOWN_DISC_NQN, '2001:db8::1', '4420', far.portid)}
    assert {e.adrfam for e in entries} == {ADRFAM_IPV4, ADRFAM_IPV6}
    assert io.read_genctr(device) == genctr


# ---- options, registration, PLEO ----------------------------------------------------------------


def test_ioc_connect_options_reach_the_kernel(fabric: Fabric, tb0, io: NvmeIo, host_identity) -> None:
    disc = fabric.port(tb0)
    sub = fabric.subsystem('sub1', backing=None)
    disc.link(sub)
    options = ConnectOptions(
        kato=7,
        ctrl_loss_tmo=30,
        reconnect_delay=4,
        nr_io_queues=1,
        queue_size=64,
        hdr_digest=True,
        data_digest=True,
    )

    result = io.connect(ioc_spec(disc, sub.nqn, options), host_identity, IFACES)

    assert result == ConnectResult(result.device, adopted=False, ignored_options=())
    attrs = sysfs_io.read_attrs(result.device, ('kato', 'ctrl_loss_tmo', 'reconnect_delay', 'queue_count'))
    # the kernel rounds ctrl_loss_tmo up to a multiple of reconnect_delay; 1 I/O queue + admin
    assert attrs == {'kato': '7', 'ctrl_loss_tmo': '32', 'reconnect_delay': '4', 'queue_count': '2'}
    assert ctrl_attr(result.device, 'sqsize') == '63'  # 64 entries (sqsize is 0-based)
    assert ctrl_attr(result.device, 'cntrltype') == 'io'
    assert io.is_registration_supported(result.device) is False


def test_dhchap_secrets_go_to_discovery_and_io_controllers(
    fabric: Fabric, tb0, io: NvmeIo, host_identity
) -> None:
    disc = fabric.port(tb0)
    sub = fabric.subsystem('sub1', backing=None)
    disc.link(sub)
    keys = dhchap_secret(1), dhchap_secret(2)
    secrets = ConnectOptions(kato=30, dhchap_secret=keys[0], dhchap_ctrl_secret=keys[1])

    ioc = io.connect(ioc_spec(disc, sub.nqn, secrets), host_identity, IFACES)
    dc = io.connect(dc_spec(disc, secrets), host_identity, IFACES)

    for result in (ioc, dc):
        assert result.ignored_options == ()
        assert ctrl_attr(result.device, 'state') == 'live'  # the target asks for no authentication
        if kernel_has_nvme_auth():  # 6.1 takes the options but keeps no secret
            got = (ctrl_attr(result.device, 'dhchap_secret'), ctrl_attr(result.device, 'dhchap_ctrl_secret'))
            assert got == keys


def test_a_rejected_secret_is_named_authentication_failed(
    fabric: Fabric, nvmet, tb0, io: NvmeIo, host_identity
):
    """An I/O controller: nvmet's discovery controller never asks for authentication (a DC
    connect with a wrong secret succeeds in this guest), so a DC's rejection cannot be shown
    here; it takes the same connect path."""
    if not kernel_has_nvme_auth():
        pytest.skip('this kernel has no NVMe authentication (Debian 6.1 is built without it)')
    disc = fabric.port(tb0)
    sub = fabric.subsystem('secure', backing=None, allowed_hosts=[host_identity.hostnqn])
    disc.link(sub)
    nvmet.set_host_keys(host_identity.hostnqn, dhchap_secret(1), dhchap_secret(2))
    wrong = ConnectOptions(kato=30, dhchap_secret=dhchap_secret(3))

    with pytest.raises(KernelError, match=r'connect failed: authentication failed: .*\(EKEYREJECTED\)'):
        io.connect(ioc_spec(disc, sub.nqn, wrong), host_identity, IFACES)
    assert controllers() == []
    # no secret at all for a controller that requires one
    with pytest.raises(KernelError, match=r'connect failed: authentication failed: '):
        io.connect(ioc_spec(disc, sub.nqn), host_identity, IFACES)
    assert controllers() == []


def test_nvmet_offers_no_pleo_and_no_registration(fabric: Fabric, tb0, io: NvmeIo, host_identity) -> None:
    disc = fabric.port(tb0)
    sub = fabric.subsystem('sub1', backing=None)
    disc.link(sub)
    device = io.connect(dc_spec(disc), host_identity, IFACES).device

    # nvmet answers Supported Log Pages with an error status: stable False, never random bits
    assert [io.supported_log_pages(device) for _ in range(3)] == [False, False, False]
    assert ctrl_attr(device, 'dctype') == 'none'
    assert io.is_registration_supported(device) is False
    # nvmet knows no DIM command: Invalid Command Opcode, do not retry
    data = dim.host_dim(host_identity.hostnqn, host_identity.hostid, '', 'tcp', disc.traddr, 'guest', 'Linux')
    status = io.send_dim(device, dim.TAS_REGISTER, data)
    assert nvme_status.describe(status).startswith('Invalid Command Opcode')
    assert nvme_status.do_not_retry(status)
    # the PLEO LSP is accepted and changes nothing on nvmet
    assert io.discover(device, lsp=nvme_io.NVMF_LOG_DISC_LSP_PLEO)[1] == io.discover(device)[1]


# ---- sysfs scan on the real kernel --------------------------------------------------------------


def test_scan_controllers_describes_discovery_and_io_controllers(
    fabric: Fabric, tb0, io: NvmeIo, host_identity
) -> None:
    disc = fabric.port(tb0)
    sub = fabric.subsystem('data', size_mb=8)
    disc.link(sub)
    dc = io.connect(dc_spec(disc), host_identity, IFACES).device
    ioc = io.connect(ioc_spec(disc, sub.nqn, host_iface=''), host_identity, IFACES).device
    wait_for(lambda: namespaces_of(ioc), scaled(5), f'a namespace of {ioc}')

    found = {k.device: k for k in sysfs_io.scan_controllers()}

    assert found[dc] == KernelController(
        device=dc,
        transport='tcp',
        traddr='192.0.2.1',
        trsvcid='8009',
        host_iface='tb0',
        src_addr='192.0.2.1',
        subsysnqn=WELL_KNOWN_DISC_NQN,
        hostnqn=host_identity.hostnqn,
        cntrltype='discovery',
        dctype='none',
        has_namespaces=False,
    )
    assert (found[ioc].cntrltype, found[ioc].host_iface, found[ioc].has_namespaces) == ('io', '', True)
    assert sysfs_io.controller_state(dc) == 'live'


# ---- disconnect ---------------------------------------------------------------------------------


def test_disconnect_deletes_the_controller_and_tolerates_one_already_gone(
    fabric: Fabric, tb0, io: NvmeIo, host_identity
) -> None:
    disc = fabric.port(tb0)
    first = io.connect(dc_spec(disc), host_identity, IFACES).device

    io.disconnect(first)

    assert controllers() == []
    assert io.managed() == ()
    with pytest.raises(NotFound, match=f'{first} is not a controller this worker manages'):
        io.disconnect(first)

    second = io.connect(dc_spec(disc), host_identity, IFACES).device
    delete_controller(second)  # the kernel or an admin removes it behind our back
    wait_for(lambda: not controllers(), scaled(5), f'{second} to go away')
    io.disconnect(second)  # not an error
    assert io.managed() == ()

    third = io.connect(dc_spec(disc), host_identity, IFACES).device
    delete_controller(third)
    wait_for(lambda: not controllers(), scaled(5), f'{third} to go away')
    fourth = io.connect(dc_spec(disc), host_identity, IFACES)  # the managed one is gone: connect anew
    assert fourth.adopted is False
    assert controllers() == [fourth.device]


def test_disconnect_leaves_alone_another_controller_that_took_the_name(
    fabric: Fabric, tb0, io: NvmeIo, host_identity
) -> None:
    disc = fabric.port(tb0)
    lo = fabric.port('127.0.0.1')
    ours = io.connect(dc_spec(disc), host_identity, IFACES).device
    delete_controller(ours)
    wait_for(lambda: not controllers(), scaled(5), f'{ours} to go away')
    # someone else connects; the kernel hands out the lowest free instance number: ours
    theirs = fabrics_connect(
        transport='tcp',
        traddr='127.0.0.1',
        trsvcid='8009',
        nqn=WELL_KNOWN_DISC_NQN,
        hostnqn=host_identity.hostnqn,
        # with a host NQN but no host ID, 6.12 takes the default host's ID and refuses the pair
        # (EINVAL, "found same hostid ... but different hostnqn"); 6.1 accepted it
        hostid=host_identity.hostid,
    )
    assert theirs == ours

    io.disconnect(ours)

    assert controllers() == [theirs]
    assert ctrl_attr(theirs, 'state') == 'live'
    assert io.managed() == ()
    assert lo.is_listening()


def test_io_controller_disconnect_deletes_it_and_leaves_a_newcomer_with_its_name_alone(
    fabric: Fabric, tb0, io: NvmeIo, host_identity
) -> None:
    # an I/O controller is managed by name and sysfs alone (no libnvme object): its disconnect is
    # the sysfs write, guarded by the same fingerprint as a discovery controller's
    disc = fabric.port(tb0)
    sub = fabric.subsystem('sub1', backing=None)
    disc.link(sub)
    first = io.connect(ioc_spec(disc, sub.nqn), host_identity, IFACES).device
    io.disconnect(first)
    assert controllers() == []
    assert io.managed() == ()

    ours = io.connect(ioc_spec(disc, sub.nqn), host_identity, IFACES).device
    delete_controller(ours)
    wait_for(lambda: not controllers(), scaled(5), f'{ours} to go away')
    theirs = fabrics_connect(
        transport='tcp',
        traddr=disc.traddr,
        trsvcid=disc.trsvcid,
        nqn=WELL_KNOWN_DISC_NQN,
        hostnqn=host_identity.hostnqn,
        hostid=host_identity.hostid,
    )
    assert theirs == ours  # the kernel reuses the lowest free instance number

    io.disconnect(ours)

    assert controllers() == [theirs]
    assert ctrl_attr(theirs, 'state') == 'live'
    assert io.managed() == ()


def test_close_frees_libnvme_and_keeps_the_kernel_controllers(fabric: Fabric, tb0, host_identity) -> None:
    disc = fabric.port(tb0)
    sub = fabric.subsystem('sub1', backing=None)
    disc.link(sub)
    io = NvmeIo()
    devices = [
        io.connect(dc_spec(disc), host_identity, IFACES).device,
        io.connect(ioc_spec(disc, sub.nqn), host_identity, IFACES).device,
    ]
    try:
        io.connect(dc_spec(disc, trsvcid='4444'), host_identity, IFACES)
    except KernelError as e:
        kept = e  # a stored error keeps libnvme proxies alive through its traceback
    io.close()
    gc.collect()

    assert controllers() == sorted(devices, key=lambda n: int(n[4:]))
    assert kept.code == 'KernelError'
    with pytest.raises(KernelError, match='closed'):
        io.connect(dc_spec(disc), host_identity, IFACES)
    for device in devices:
        assert ctrl_attr(device, 'state') == 'live'


# ---- uevents ------------------------------------------------------------------------------------


async def next_event(
    queue: asyncio.Queue, predicate: Callable[[NvmeUevent], bool], timeout: float, seen: List
):
    async def find() -> NvmeUevent:
        while True:
            event = await queue.get()
            seen.append(event)
            if predicate(event):
                return event

    try:
        return await asyncio.wait_for(find(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f'no matching uevent within {timeout:.0f}s; seen: {seen[-10:]}') from None


@pytest.mark.parametrize('source', [None, 'udev'], ids=['default-kernel', 'udevd'])
def test_udev_monitor_delivers_connect_aen_and_remove(
    fabric: Fabric, tb0, io: NvmeIo, host_identity, udevd, source
) -> None:
    disc = fabric.port(tb0)
    subs = [fabric.subsystem(f'sub{i}', backing=None) for i in (1, 2, 3)]
    disc.link(subs[0])
    seen: List[NvmeUevent] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        # the default is the kernel's own events, even with udevd running: the same ones, sooner
        monitor = (
            UdevMonitor(queue.put_nowait) if source is None else UdevMonitor(queue.put_nowait, source=source)
        )
        monitor.start(loop)
        try:
            assert monitor.source == (source or 'kernel')
            result = await loop.run_in_executor(None, io.connect, dc_spec(disc), host_identity, IFACES)
            device = result.device
            connected = await next_event(
                queue, lambda e: e.device == device and e.event == 'connected', scaled(3), seen
            )
            assert connected.action == 'change'
            assert connected.get('NVME_TRADDR') == '192.0.2.1'
            assert connected.get('NVME_HOST_IFACE') == 'tb0'
            assert connected.get('NVME_HOST_TRADDR') == ''  # the kernel's 'none'

            await loop.run_in_executor(None, io.discover, device)  # reading the page arms the AEN
            await loop.run_in_executor(None, disc.link, subs[1])
            aen = await next_event(queue, lambda e: e.device == device and e.has('NVME_AEN'), scaled(3), seen)
            assert (aen.action, aen.aen) == ('change', AEN_DISCOVERY_LOG_CHANGE)

            await loop.run_in_executor(None, io.read_genctr, device)  # RAE=1: no effect on the AEN
            await loop.run_in_executor(None, io.discover, device)
            await loop.run_in_executor(None, disc.link, subs[2])
            aen2 = await next_event(
                queue, lambda e: e.device == device and e.has('NVME_AEN'), scaled(3), seen
            )
            assert aen2.aen == AEN_DISCOVERY_LOG_CHANGE

            await loop.run_in_executor(None, io.disconnect, device)
            removed = await next_event(
                queue, lambda e: e.device == device and e.action == 'remove', scaled(3), seen
            )
            assert removed.properties == (
                ('NVME_TRTYPE', 'tcp'),
                ('NVME_TRADDR', '192.0.2.1'),
                ('NVME_TRSVCID', '8009'),
                ('NVME_HOST_TRADDR', ''),
                ('NVME_HOST_IFACE', 'tb0'),
            )
            assert [(e.action, e.event, e.get('NVME_AEN')) for e in seen if e.device == device] == [
                ('add', '', ''),
                ('change', 'connected', ''),
                ('change', '', '0x70f002'),
                ('change', '', '0x70f002'),
                ('remove', '', ''),
            ]
            assert (monitor.delivered, monitor.errors) == (len(seen), 0)
        finally:
            monitor.stop()
        assert not monitor.running

    asyncio.run(scenario())


def test_udev_monitor_survives_a_failing_callback(fabric: Fabric, io: NvmeIo, host_identity) -> None:
    port = fabric.port('127.0.0.1')
    seen: List[NvmeUevent] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def callback(event: NvmeUevent) -> None:
            if event.action == 'add':
                raise RuntimeError('consumer bug')  # logged, counted, and the reader keeps going
            queue.put_nowait(event)

        monitor = UdevMonitor(callback, source='kernel')
        monitor.start(loop)
        try:
            spec = dc_spec(port, host_iface='')
            device = (await loop.run_in_executor(None, io.connect, spec, host_identity, IFACES)).device
            await next_event(queue, lambda e: e.device == device and e.event == 'connected', scaled(3), seen)
            assert (monitor.source, monitor.errors) == ('kernel', 1)
            assert monitor.delivered == 2  # the add (whose callback failed) and the change
        finally:
            monitor.stop()

    asyncio.run(scenario())
    assert [e.action for e in seen] == ['change']
