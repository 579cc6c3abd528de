"""Which kernel controller is a spec's connection (stas.fabric.adoption): the TID a connect
adopts by, and stacd's audit and release rules, which share it."""

from __future__ import annotations

from stas.fabric.adoption import adoption_tid, adopts_as, audit_verdicts, pinned_iface, release_matches
from stas.model import ControllerSpec, Role, TransportId
from stas.testing.iocs import HOSTNQN, IFACES, NQN, kctrl, spec

# ---- the TID a spec adopts by -------------------------------------------------------------------


def test_a_spec_adopts_by_the_connection_a_connect_would_make():
    configured = ControllerSpec(
        tid=TransportId('tcp', '192.0.2.1', '4420', NQN + 'a', '', 'tb0', 'nqn.configured-host'),
        role=Role.IOC,
    )
    assert adoption_tid(configured, HOSTNQN) == TransportId(
        'tcp', '192.0.2.1', '4420', NQN + 'a', '', 'tb0', HOSTNQN
    )
    unpinned = ControllerSpec(tid=configured.tid, role=Role.IOC, pin_iface=False)
    assert adoption_tid(unpinned, HOSTNQN).host_iface == ''


def test_a_pin_the_kernel_cannot_make_is_no_pin():
    assert pinned_iface(spec('a')) == 'tb0'  # the kernel's options unknown: pinned as asked
    assert pinned_iface(spec('a'), ('transport', 'host_iface')) == 'tb0'
    assert pinned_iface(spec('a'), ('transport', 'host_traddr')) == ''
    assert adoption_tid(spec('a'), HOSTNQN, ('transport',)).host_iface == ''


def test_adopts_as_requires_the_hosts_nqn_and_the_pinned_interface():
    assert adopts_as(spec('a'), kctrl('nvme1', 'a'), HOSTNQN, IFACES)
    assert not adopts_as(spec('a'), kctrl('nvme1', 'a', hostnqn='nqn.another-host'), HOSTNQN, IFACES)
    on_tb1 = kctrl('nvme1', 'a', host_iface='', src_addr='198.51.100.5')
    assert not adopts_as(spec('a'), on_tb1, HOSTNQN, IFACES)
    unpinned = ControllerSpec(tid=spec('a').tid, role=Role.IOC, pin_iface=False)
    assert adopts_as(unpinned, on_tb1, HOSTNQN, IFACES)  # the kernel routes it: any source
    assert not adopts_as(spec('a'), kctrl('nvme1', 'a', cntrltype='discovery'), HOSTNQN, IFACES)


# ---- stacd: the audit and the release of a previous run's IOCs ----------------------------------


def test_audit_verdicts_pick_the_unwanted_iocs_of_this_interface_and_transport():
    found = [
        kctrl('nvme1', 'gone'),
        kctrl('nvme2', 'wanted'),
        kctrl('nvme3', 'other-iface', host_iface='', src_addr='198.51.100.5'),
        kctrl('nvme4', 'dc', cntrltype='discovery'),
        kctrl('nvme5', 'held'),
        kctrl('nvme6', 'rdma', transport='rdma', host_iface=''),
        kctrl('nvme7', 'owned'),
        kctrl('nvme8', 'unpinned-match', host_iface='', src_addr='192.0.2.5'),
    ]
    verdicts = audit_verdicts(
        found,
        host_iface='tb0',
        trtypes=('tcp',),
        desired=[spec('wanted'), spec('unpinned-match')],
        hostnqn=HOSTNQN,
        held={'nvme5'},
        iface_addrs=IFACES,
        owner_of=lambda k: 'owned by x' if k.device == 'nvme7' else '',
    )
    got = {k.device: why for k, why in verdicts}
    assert got == {
        'nvme1': '',
        'nvme2': f'wanted as {spec("wanted").tid}',
        'nvme7': 'owned by x',
        'nvme8': f'wanted as {spec("unpinned-match").tid}',
    }


def test_release_matches_the_previous_runs_iocs_that_nobody_wants_or_holds():
    found = [
        kctrl('nvme1', 'removed'),
        kctrl('nvme2', 'wanted-again'),
        kctrl('nvme3', 'held'),
        kctrl('nvme4', 'never-ours'),
        kctrl('nvme5', 'removed', cntrltype='discovery'),
        kctrl('nvme6', 'removed', hostnqn='nqn.another-host'),
    ]
    release = [spec('removed'), spec('wanted-again'), spec('held')]
    got = release_matches(found, release, [spec('wanted-again')], HOSTNQN, {'nvme3'}, IFACES)
    assert [(k.device, s.tid) for k, s in got] == [('nvme1', spec('removed').tid)]


def test_the_interface_less_worker_audits_the_other_transports():
    verdicts = audit_verdicts(
        [kctrl('nvme6', 'r', transport='rdma', host_iface=''), kctrl('nvme1', 't')],
        host_iface='',
        trtypes=('rdma', 'tcp'),
        desired=[],
        hostnqn=HOSTNQN,
        held=(),
        iface_addrs=IFACES,
        owner_of=lambda k: '',
    )
    assert [(k.device, why) for k, why in verdicts] == [('nvme6', '')]
