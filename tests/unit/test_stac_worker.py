"""The stacd side of the worker engine (stas.workers.controllers): the disconnect-scope audit,
connections owned by others (nvme-cli registry, NBFT), reload retries, forgetting what is kept.

The engine runs on a real event loop with a fake libnvme edge, a fake udev and a fake /sys; its
kernel operations run inline (``InlineExecutor``), so nothing here waits on a clock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from pathlib import Path
from typing import Dict, List

import pytest

from stas.fabric.controller import Phase
from stas.fabric.controller_policy import RetryPolicy, retry_spread
from stas.ipc.messages import Configure, CtrlGone, CtrlStatus, WorkerOptions
from stas.model import WELL_KNOWN_DISC_NQN, ControllerSpec, HostIdentity, Role, TransportId
from stas.testing.iocs import HOSTNQN, IFACES, NQN, kctrl, spec
from stas.testing.nbft_table import DiscoverySpec, HfiSpec, SubsystemSpec, build_nbft
from stas.testing.nvme import FakeNvmeIo, InlineExecutor
from stas.testing.sysfs import FakeSys
from stas.testing.udev import FakeUdev
from stas.workers import controllers
from stas.workers.controllers import ControllerEngine, delete_kernel_controller, foreign_owner
from stas.workers.ownership import Registry

HOST = HostIdentity(HOSTNQN, '0c5d3f4e-1111-4222-8333-944455556666')


# ---- connections owned by others ----------------------------------------------------------------


def test_the_registry_protects_connections_of_other_owners(tmp_path: Path):
    registry = tmp_path / 'registry'
    for device, owner in (('nvme1', 'nvme-cli\n'), ('nvme2', 'stas\n'), ('nvme3', '')):
        (registry / device).mkdir(parents=True)
        (registry / device / 'owner').write_text(owner)
    reg = Registry(str(registry))
    assert foreign_owner(kctrl('nvme1', 'a'), reg, []) == f"owned by 'nvme-cli' per {registry}"
    assert foreign_owner(kctrl('nvme2', 'a'), reg, []) == ''  # ours
    assert foreign_owner(kctrl('nvme3', 'a'), reg, []) == ''  # empty: no owner, as libnvme reads it
    assert foreign_owner(kctrl('nvme4', 'a'), reg, []) == ''  # not registered
    assert foreign_owner(kctrl('nvme4', 'a'), Registry(str(tmp_path / 'no-registry')), []) == ''


def test_a_registry_entry_that_cannot_be_read_protects_its_controller_without_blocking(tmp_path: Path):
    registry = tmp_path / 'registry'
    (registry / 'nvme1').mkdir(parents=True)
    os.mkfifo(registry / 'nvme1' / 'owner')  # opened for reading, it would wait for a writer
    (registry / 'nvme2' / 'owner').mkdir(parents=True)
    for device in ('nvme1', 'nvme2'):
        why = foreign_owner(kctrl(device, 'a'), Registry(str(registry)), [])
        assert why.startswith(f'registry entry {registry}/{device}/owner cannot be read (not a regular file')
        assert why.endswith("it counts as another owner's")


def test_the_nbft_protects_every_connection_to_a_boot_subsystem(tmp_path: Path):
    nbft = tmp_path / 'NBFT'
    nbft.write_bytes(
        build_nbft(
            HOSTNQN,
            hfis=[HfiSpec(mac='02:00:5e:00:53:01', ip='192.0.2.9', prefix=24)],
            # a discovery NQN in the table is not a boot subsystem
            discoveries=[DiscoverySpec(uri='nvme+tcp://192.0.2.1:8009/', nqn=NQN + 'data', hfi=1)],
            subsystems=[SubsystemSpec(traddr='192.0.2.1', nqn=NQN + 'boot')],
        )
    )
    assert (
        foreign_owner(kctrl('nvme1', 'boot'), Registry(str(tmp_path)), [str(nbft)])
        == f'boot connection: its subsystem is in {nbft}'
    )
    assert foreign_owner(kctrl('nvme2', 'data'), Registry(str(tmp_path)), [str(nbft)]) == ''
    missing = str(tmp_path / 'NBFT1')
    assert foreign_owner(kctrl('nvme2', 'data'), Registry(str(tmp_path)), [missing]) == ''


def test_an_nbft_that_cannot_be_read_or_decoded_protects_everything(tmp_path: Path):
    nbft = tmp_path / 'NBFT'
    nbft.mkdir()  # reading it fails whoever we are (a mode of 0 would not stop root)
    assert 'cannot be read' in foreign_owner(kctrl('nvme2', 'data'), Registry(str(tmp_path)), [str(nbft)])
    garbled = tmp_path / 'NBFT1'
    garbled.write_bytes(b'NBFT\x00\x01' + b'\x00' * 60)
    why = foreign_owner(kctrl('nvme2', 'data'), Registry(str(tmp_path)), [str(garbled)])
    assert why.startswith(f'{garbled}: ') and why.endswith(': it may describe this boot connection')


def test_deleting_a_kernel_controller_writes_its_delete_file(tmp_path: Path):
    sys = FakeSys(tmp_path / 'sys')
    ctl = sys.controller('nvme4')
    assert delete_kernel_controller('nvme4', str(sys.root)) is True
    assert (ctl / 'delete_controller').read_text() == '1'
    assert delete_kernel_controller('nvme9', str(sys.root)) is False


# ---- the engine ----------------------------------------------------------------------------------


TB0_ADDRESS = 'traddr=192.0.2.1,trsvcid=4420,host_iface=tb0,src_addr=192.0.2.5'


class Harness:
    def __init__(self, tmp_path: Path, daemon: str = 'stacd') -> None:
        self.io = FakeNvmeIo(label=lambda tid: tid.subsysnqn[len(NQN) :])
        self.sys = FakeSys(tmp_path / 'sys', hostnqn=HOSTNQN)
        self.registry = tmp_path / 'registry'
        self.sent: list = []
        self.engine = ControllerEngine(
            daemon,
            io=self.io,
            udev_factory=FakeUdev,
            sysfs_root=str(self.sys.root),
            host_iface='tb0',
            registry_dir=str(self.registry),
            nbft_glob=str(tmp_path / 'NBFT*'),
        )
        self.engine._executor = InlineExecutor()  # noqa: SLF001 - operations complete inline
        self.generation = 1

    async def emit(self, msg) -> None:
        self.sent.append(msg)

    async def start(self) -> None:
        await self.engine.start(self.emit)

    async def configure(
        self, *specs: ControllerSpec, new_generation: bool = False, release=(), **options
    ) -> None:
        if new_generation:
            self.generation += 1
        msg = Configure(
            generation=self.generation,
            host=HOST,
            options=WorkerOptions(**options),
            controllers=tuple(specs),
            release=tuple(release),
            interfaces=IFACES,
        )
        await self.engine.configure(msg)
        await settle()

    def kernel_ctrl(
        self, device: str, sub: str, address: str, cntrltype: str = 'io', hostnqn: str = HOSTNQN
    ) -> Path:
        """A kernel controller of subsystem ``NQN + sub`` in the fake /sys."""
        return self.sys.controller(
            device, subsysnqn=NQN + sub, address=address, cntrltype=cntrltype, hostnqn=hostnqn
        )

    def machine(self, sub: str):
        return next(m for t, m in self.engine._machines.items() if t.subsysnqn == NQN + sub)  # noqa: SLF001


async def settle() -> None:
    for _ in range(20):  # completions come back through call_soon: a few turns of the loop
        await asyncio.sleep(0)


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize('daemon', ['stafd', 'stacd'])
def test_a_controller_owned_by_another_tool_is_forgotten_not_disconnected(tmp_path, daemon):
    async def scenario():
        h = Harness(tmp_path, daemon)
        await h.start()
        a, b = spec('a'), spec('b')
        h.io.devices = {a.tid: 'nvme1', b.tid: 'nvme2'}
        h.kernel_ctrl('nvme1', 'a', TB0_ADDRESS)
        h.kernel_ctrl('nvme2', 'b', TB0_ADDRESS)
        await h.configure(a, b)
        assert h.machine('a').phase is Phase.CONNECTED and h.machine('b').phase is Phase.CONNECTED
        (h.registry / 'nvme1' / 'owner').write_text('nvme-discoverd\n')  # handed over to another tool
        await h.configure()
        assert ('forget', 'nvme1') in h.io.calls and ('disconnect', 'nvme1') not in h.io.calls
        assert ('disconnect', 'nvme2') in h.io.calls
        assert sorted(m.tid.subsysnqn for m in h.sent if isinstance(m, CtrlGone)) == [NQN + 'a', NQN + 'b']

    run(scenario())


def test_no_disconnect_forgets_and_lets_libnvme_go_of_the_device(tmp_path):
    async def scenario():
        h = Harness(tmp_path)
        await h.start()
        a = spec('a')
        h.io.devices = {a.tid: 'nvme1'}
        await h.configure(a, disconnect_unwanted=False)
        await h.configure(disconnect_unwanted=False)
        assert h.io.calls == [('connect', 'a'), ('forget', 'nvme1')]

    run(scenario())


class HeldExecutor(concurrent.futures.Executor):
    """Holds each call until ``finish_all``: an operation that completes when the test says."""

    def __init__(self) -> None:
        self.held: list = []

    def submit(self, fn, /, *args, **kwargs):
        future: concurrent.futures.Future = concurrent.futures.Future()
        self.held.append((future, lambda: fn(*args, **kwargs)))
        return future

    def finish_all(self) -> None:
        held, self.held = self.held, []
        for future, call in held:
            future.set_result(call())

    def shutdown(self, wait=True, **kwargs):
        return None  # as the engine asks: what is in flight is not waited for


@pytest.mark.parametrize('daemon', ['stafd', 'stacd'])
def test_a_connect_completing_after_shutdown_stays_in_the_kernel_and_is_reported_by_nobody(tmp_path, daemon):
    """The supervisor went away during a connect: the worker shuts down keeping connections and
    does not wait for the connect. When it completes, the engine is frozen: no report on the
    closing channel, no retry timer, no new work; the connection stays for the next worker."""

    async def scenario():
        h = Harness(tmp_path, daemon)
        h.engine._executor = executor = HeldExecutor()  # noqa: SLF001
        await h.start()
        a = spec('a')
        h.io.devices = {a.tid: 'nvme1'}
        await h.configure(a)
        assert len(executor.held) == 1 and h.machine('a').op_in_flight
        sent_before = list(h.sent)
        await h.engine.shutdown(keep_connections=True)
        executor.finish_all()
        await settle()
        assert h.io.calls == [('connect', 'a')] and h.machine('a').device == ''
        assert h.sent == sent_before
        assert executor.held == [] and h.engine._timers == {}  # noqa: SLF001
        assert asyncio.all_tasks() == {asyncio.current_task()}

    run(scenario())


def test_a_previous_runs_unwanted_connection_is_let_go_of_once_as_the_scope_says(tmp_path):
    async def scenario():
        h = Harness(tmp_path)
        await h.start()
        removed = h.kernel_ctrl('nvme1', 'removed', TB0_ADDRESS)
        owned = h.kernel_ctrl('nvme2', 'owned', TB0_ADDRESS)
        write_entry(h.registry, 'nvme2', 'nvme-cli\n')
        kept = h.kernel_ctrl('nvme3', 'kept', TB0_ADDRESS)
        # disconnect-scope=no-disconnect: nothing is disconnected, even a previous run's IOC
        await h.configure(release=[spec('kept')], disconnect_unwanted=False)
        assert not (kept / 'delete_controller').exists()
        await h.configure(release=[spec('removed'), spec('owned')])
        assert (removed / 'delete_controller').read_text() == '1'
        assert not (owned / 'delete_controller').exists()  # another tool's
        (removed / 'delete_controller').unlink()
        await h.configure(release=[spec('removed'), spec('owned')])  # once per spec and worker
        assert not (removed / 'delete_controller').exists()
        assert h.io.calls == []  # nothing connected, no machine made

    run(scenario())


def test_a_new_generation_retries_an_ioc_that_gave_up(tmp_path):
    async def scenario():
        h = Harness(tmp_path)
        await h.start()
        a = spec('a', ncc=True)
        h.io.devices = {a.tid: 'nvme1'}
        h.io.fail = 'refused'
        await h.configure(a, connect_attempts_on_ncc=2)
        m = h.machine('a')
        assert m.phase is Phase.BACKOFF
        h.engine._timer_fired(m, 'connect', m.armed_timers['connect'])  # noqa: SLF001 - the 3 s retry
        await settle()
        assert m.phase is Phase.GAVE_UP
        await h.configure(a, connect_attempts_on_ncc=2)  # a replan: same generation, no retry
        assert m.phase is Phase.GAVE_UP
        h.io.fail = None
        await h.configure(a, connect_attempts_on_ncc=2, new_generation=True)  # SIGHUP
        assert m.phase is Phase.CONNECTED and h.io.calls.count(('connect', 'a')) == 3

    run(scenario())


def test_the_audit_disconnects_unwanted_iocs_and_leaves_the_rest(tmp_path):
    async def scenario():
        h = Harness(tmp_path)
        await h.start()
        a = spec('a')
        h.io.devices = {a.tid: 'nvme1'}
        h.kernel_ctrl('nvme1', 'a', TB0_ADDRESS)  # ours, held by a machine
        stray = h.kernel_ctrl('nvme2', 'stray', TB0_ADDRESS, hostnqn='nqn.other')
        wanted = h.kernel_ctrl('nvme3', 'b', TB0_ADDRESS)  # matches a desired spec
        other = h.kernel_ctrl('nvme4', 'c', 'traddr=198.51.100.1,trsvcid=4420,src_addr=198.51.100.5')
        dc = h.kernel_ctrl('nvme5', 'd', TB0_ADDRESS, cntrltype='discovery')
        owned = h.kernel_ctrl('nvme6', 'e', TB0_ADDRESS)
        write_entry(h.registry, 'nvme6', 'nbft\n')
        await h.configure(a, spec('b'), adopt_trtypes=())
        assert not (stray / 'delete_controller').exists()  # no audit without adopt_trtypes
        await h.configure(a, spec('b'), adopt_trtypes=('tcp',))
        # the audit ran at once; b's connect is still failing, so nvme3 is no machine's yet
        assert (stray / 'delete_controller').read_text() == '1'
        for path in (wanted, other, dc, owned, h.sys.root / 'class' / 'nvme' / 'nvme1'):
            assert not (path / 'delete_controller').exists(), path.name

    run(scenario())


def test_the_module_names_the_registry_and_nbft_locations():
    assert controllers.REGISTRY_DIR == '/run/nvme/registry' == Registry().root
    assert controllers.NBFT_GLOB == '/sys/firmware/acpi/tables/NBFT*'


def test_each_controller_retries_on_a_schedule_spread_from_its_neighbours(tmp_path):
    async def scenario():
        h = Harness(tmp_path)
        await h.start()
        a, b = spec('a'), spec('b')
        await h.configure(a, b, connect_attempts_on_ncc=3)
        for sub, s in (('a', a), ('b', b)):
            expected = RetryPolicy(connect_attempts_on_ncc=3).spread(retry_spread(str(s.tid)))
            assert h.machine(sub).policy == expected
        assert h.machine('a').policy.connect_backoff_s != h.machine('b').policy.connect_backoff_s
        await h.configure(a, b, connect_attempts_on_ncc=3, new_generation=True)  # WantedAgain: the same
        assert h.machine('a').policy == RetryPolicy(connect_attempts_on_ncc=3).spread(
            retry_spread(str(a.tid))
        )

    run(scenario())


# ---- nvme-cli's ownership registry, for both daemons ----------------------------------------------


def dc_spec(traddr: str = '192.0.2.1') -> ControllerSpec:
    return ControllerSpec(
        TransportId('tcp', traddr, '8009', WELL_KNOWN_DISC_NQN, '', 'tb0', HOSTNQN), Role.DC
    )


def own_spec(daemon: str, sub: str) -> ControllerSpec:
    """stafd's controllers are DCs (one address each), stacd's IOCs."""
    return dc_spec(f'192.0.2.{10 + ord(sub) - ord("a")}') if daemon == 'stafd' else spec(sub)


def entry_of(h: Harness, device: str) -> Dict[str, str]:
    path = h.registry / device
    return {name: (path / name).read_text() for name in sorted(os.listdir(path))} if path.exists() else {}


async def started_with_nvme1(tmp_path: Path, daemon: str, *, adopted: bool):
    """A started harness and the spec of 'a', whose controller is 'nvme1' in the kernel: already
    there, so that a connect adopts it (``adopted``), or made by the connect."""
    h = Harness(tmp_path, daemon)
    await h.start()
    a = own_spec(daemon, 'a')
    if adopted:
        h.io.existing = {a.tid: 'nvme1'}
    else:
        h.io.devices = {a.tid: 'nvme1'}
    h.kernel_ctrl('nvme1', 'a', TB0_ADDRESS)
    return h, a


def write_entry(registry: Path, device: str, owner, seqnum: str = '') -> None:
    """A registry entry as another tool (or a previous run) left it: ``owner`` as text or bytes."""
    (registry / device).mkdir(parents=True)
    if isinstance(owner, bytes):
        (registry / device / 'owner').write_bytes(owner)
    else:
        (registry / device / 'owner').write_text(owner)
    if seqnum:
        (registry / device / 'seqnum').write_text(seqnum + '\n')


def owners_reported(h: Harness) -> List[str]:
    return [
        dict(m.status.attrs).get('owner') for m in h.sent if isinstance(m, CtrlStatus) and m.status.device
    ]


DAEMONS = pytest.mark.parametrize('daemon', ['stafd', 'stacd'])


@DAEMONS
def test_what_a_worker_connects_is_recorded_as_ours_and_unrecorded_when_it_disconnects(tmp_path, daemon):
    async def scenario():
        h, a = await started_with_nvme1(tmp_path, daemon, adopted=False)
        write_entry(h.registry, 'nvme1', 'discoverd\n')  # a previous nvme1's, left behind
        h.sys.seqnum(4321)
        await h.configure(a)
        [m] = h.engine._machines.values()  # noqa: SLF001
        assert m.phase is Phase.CONNECTED and m.device == 'nvme1'
        assert entry_of(h, 'nvme1') == {'owner': 'stas\n', 'seqnum': '4321\n'}
        assert set(owners_reported(h)) == {'stas'}  # what ls -d shows
        await h.configure()
        assert ('disconnect', 'nvme1') in h.io.calls and entry_of(h, 'nvme1') == {}

    run(scenario())


@DAEMONS
def test_a_connection_found_made_is_claimed_when_nobody_owns_it_and_its_stamp_kept_when_ours(
    tmp_path, daemon
):
    async def scenario():
        h = Harness(tmp_path, daemon)
        await h.start()
        a, b = own_spec(daemon, 'a'), own_spec(daemon, 'b')
        h.io.existing = {a.tid: 'nvme1', b.tid: 'nvme2'}
        h.kernel_ctrl('nvme1', 'a', TB0_ADDRESS)
        h.kernel_ctrl('nvme2', 'b', TB0_ADDRESS)
        write_entry(h.registry, 'nvme2', 'stas\n', '77')  # a previous run's
        await h.configure(a, b)
        assert entry_of(h, 'nvme1') == {'owner': 'stas\n', 'seqnum': '100\n'}
        assert entry_of(h, 'nvme2') == {'owner': 'stas\n', 'seqnum': '77\n'}
        await h.configure()
        assert {('disconnect', 'nvme1'), ('disconnect', 'nvme2')} <= set(h.io.calls)
        assert entry_of(h, 'nvme1') == entry_of(h, 'nvme2') == {}

    run(scenario())


@DAEMONS
def test_a_connection_another_tool_owns_is_neither_adopted_nor_made_again_until_it_lets_go(tmp_path, daemon):
    async def scenario():
        h, a = await started_with_nvme1(tmp_path, daemon, adopted=True)
        write_entry(h.registry, 'nvme1', 'nvme-cli\n')
        await h.configure(a)
        [m] = h.engine._machines.values()  # noqa: SLF001
        assert m.phase is Phase.BACKOFF and m.device == ''
        assert (
            m.last_error.code == 'OwnedElsewhere'
            and f"owned by 'nvme-cli' per {h.registry}" in m.last_error.message
        )
        assert entry_of(h, 'nvme1') == {'owner': 'nvme-cli\n'}
        await h.configure()  # unwanted: nothing to disconnect
        assert [c for c in h.io.calls if c[0] != 'connect'] == [] and entry_of(h, 'nvme1') == {
            'owner': 'nvme-cli\n'
        }
        await h.configure(a)
        [m] = h.engine._machines.values()  # noqa: SLF001
        (h.registry / 'nvme1' / 'owner').unlink()  # the other tool let go of it
        h.engine._timer_fired(m, 'connect', m.armed_timers['connect'])  # noqa: SLF001 - the retry
        await settle()
        assert m.phase is Phase.CONNECTED and m.device == 'nvme1'
        assert entry_of(h, 'nvme1') == {'owner': 'stas\n', 'seqnum': '100\n'}

    run(scenario())


@DAEMONS
def test_a_claim_lost_to_another_tool_lets_go_of_the_connection(tmp_path, daemon):
    async def scenario():
        h, a = await started_with_nvme1(tmp_path, daemon, adopted=True)

        def another_tool_claims(device):
            write_entry(h.registry, device, 'discoverd\n')

        h.io.on_adopt = another_tool_claims
        await h.configure(a)
        [m] = h.engine._machines.values()  # noqa: SLF001
        assert m.phase is Phase.BACKOFF and m.last_error.code == 'OwnedElsewhere'
        assert ('forget', 'nvme1') in h.io.calls and entry_of(h, 'nvme1') == {'owner': 'discoverd\n'}

    run(scenario())


@DAEMONS
def test_an_entry_of_ours_written_for_a_later_controller_of_the_name_is_not_removed(tmp_path, daemon):
    async def scenario():
        h, a = await started_with_nvme1(tmp_path, daemon, adopted=False)
        await h.configure(a)
        h.sys.seqnum(150)
        Registry(str(h.registry), str(h.sys.root)).record('nvme1')  # another connection of ours since
        await h.configure()
        assert ('disconnect', 'nvme1') in h.io.calls
        assert entry_of(h, 'nvme1') == {'owner': 'stas\n', 'seqnum': '150\n'}

    run(scenario())


@DAEMONS
def test_an_unreadable_entry_keeps_a_daemon_off_its_controller(tmp_path, daemon):
    async def scenario():
        h = Harness(tmp_path, daemon)
        await h.start()
        a, b = own_spec(daemon, 'a'), own_spec(daemon, 'b')
        h.io.existing = {a.tid: 'nvme1'}
        h.io.devices = {b.tid: 'nvme2'}
        h.kernel_ctrl('nvme1', 'a', TB0_ADDRESS)
        h.kernel_ctrl('nvme2', 'b', TB0_ADDRESS)
        write_entry(h.registry, 'nvme1', b'\xff\n')
        await h.configure(a, b)
        ma, mb = (next(m for m in h.engine._machines.values() if m.spec is s) for s in (a, b))  # noqa: SLF001
        assert ma.phase is Phase.BACKOFF and 'is not UTF-8 text' in ma.last_error.message
        (h.registry / 'nvme2' / 'owner').write_bytes(b'\xff\n')  # spoilt after we connected it
        await h.configure()
        assert ('forget', 'nvme2') in h.io.calls and ('disconnect', 'nvme2') not in h.io.calls
        assert mb.phase is Phase.REMOVED

    run(scenario())


def test_the_audit_and_the_release_of_a_previous_runs_iocs_remove_our_entries_with_them(tmp_path):
    async def scenario():
        h = Harness(tmp_path)
        await h.start()
        previous = h.kernel_ctrl('nvme1', 'previous', TB0_ADDRESS)  # a previous run's, ours
        stray = h.kernel_ctrl('nvme2', 'stray', TB0_ADDRESS, hostnqn='nqn.other')  # ours too
        for device, stamp in (('nvme1', '11'), ('nvme2', '12')):
            write_entry(h.registry, device, 'stas\n', stamp)
        await h.configure(release=[spec('previous')])
        assert (previous / 'delete_controller').read_text() == '1' and entry_of(h, 'nvme1') == {}
        assert entry_of(h, 'nvme2') == {'owner': 'stas\n', 'seqnum': '12\n'}
        await h.configure(adopt_trtypes=('tcp',))
        assert (stray / 'delete_controller').read_text() == '1' and entry_of(h, 'nvme2') == {}

    run(scenario())


def identified(node: Path, serial: str) -> Path:
    """``node`` (a fake controller's sysfs directory) with the identity attributes a status reads."""
    for name, value in (('hostid', HOST.hostid), ('model', 'Linux'), ('serial', serial), ('dctype', 'none')):
        (node / name).write_text(value + '\n')
    return node


def test_a_status_reads_a_controllers_identity_once_per_sysfs_node_and_its_state_each_time(
    tmp_path, monkeypatch
):
    reads: List[tuple] = []
    real = controllers.sysfs_io.read_attr
    monkeypatch.setattr(
        controllers.sysfs_io, 'read_attr', lambda d, name, *a: reads.append((d, name)) or real(d, name, *a)
    )

    async def scenario():
        h = Harness(tmp_path)
        await h.start()
        a = spec('a')
        h.io.devices = {a.tid: 'nvme1'}
        node = identified(h.kernel_ctrl('nvme1', 'a', TB0_ADDRESS), 'abc')
        await h.configure(a)
        m = h.machine('a')
        details = dict(h.engine._status_of(m).attrs)  # noqa: SLF001
        assert (details['model'], details['serial'], details['state']) == ('Linux', 'abc', 'live')
        reads.clear()
        (node / 'state').write_text('connecting\n')
        details = dict(h.engine._status_of(m).attrs)  # noqa: SLF001
        assert details['state'] == 'connecting' and details['serial'] == 'abc'
        assert [name for _d, name in reads] == ['state']
        # the name reused by another controller: another sysfs node, read whole again
        renamed = node.with_name('old')
        node.rename(renamed)
        identified(h.kernel_ctrl('nvme1', 'a', TB0_ADDRESS), 'xyz')
        assert dict(h.engine._status_of(m).attrs)['serial'] == 'xyz'  # noqa: SLF001

    run(scenario())
