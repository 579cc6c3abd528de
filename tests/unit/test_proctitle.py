"""The names the daemons' processes give themselves (stas.proctitle): pure functions."""

from __future__ import annotations

import pytest

from stas.model import WorkerKey
from stas.proctitle import COMM_BYTES, forkserver_names, supervisor_title, worker_comm, worker_title
from stas.workers.spec import WorkerSpec


@pytest.mark.parametrize(
    ('transport', 'iface', 'comm'),
    [
        ('tcp', 'eth0', 'stafd:eth0/tcp'),  # the key as the logs show it, when it fits
        ('tcp', 'enp129s0f0np0', 'stafd:29s0f0np0'),  # else the end of the interface name
        ('tcp', 'enp129s0f1np1', 'stafd:29s0f1np1'),
        ('rdma', 'enp129s0f0np0', 'stafd:s0f0np0/r'),  # another transport keeps a letter
        ('tcp', 'ens1f0.100', 'stafd:ns1f0.100'),
        ('tcp', 'ens1f0.200', 'stafd:ns1f0.200'),
        ('fc', '', 'stafd:fc'),
        ('tcp', '', 'stafd:tcp'),
    ],
)
def test_worker_comm(transport, iface, comm):
    assert worker_comm('stafd', transport, iface) == comm
    assert len(comm.encode()) <= COMM_BYTES


def test_worker_comm_never_exceeds_15_bytes_even_with_multibyte_names():
    comm = worker_comm('stacd', 'rdma', 'ñññññññññññññ')
    assert len(comm.encode()) <= COMM_BYTES
    assert comm.startswith('stacd:') and comm.endswith('/r')


def test_titles():
    assert supervisor_title('stafd', '/etc/stas/stafd.conf', '/etc/stas/stafd.conf') == 'stafd: supervisor'
    assert (
        supervisor_title('stacd', '/tmp/x.conf', '/etc/stas/stacd.conf') == 'stacd: supervisor -f /tmp/x.conf'
    )
    assert forkserver_names('stacd') == ('stacd: forkserver', 'stacd:forksrv')
    assert worker_title('stafd', 'tcp', 'eth0') == 'stafd: worker eth0/tcp'
    assert worker_title('stafd', 'fc', '') == 'stafd: worker -/fc'


def test_a_spec_is_named_after_its_daemon_not_its_engine():
    spec = WorkerSpec(key=WorkerKey('tcp', 'eth1'), daemon='idle', service='stacd')
    assert (spec.title, spec.comm) == ('stacd: worker eth1/tcp', 'stacd:eth1/tcp')
    bare = WorkerSpec(key=WorkerKey('tcp', 'eth1'), daemon='stafd')
    assert (bare.title, bare.comm) == ('stafd: worker eth1/tcp', 'stafd:eth1/tcp')
