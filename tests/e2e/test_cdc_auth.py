"""DH-HMAC-CHAP with a discovery controller that requires it: the test CDC (stas.testing.cdc),
given secrets for the tests' host NQN. nvmet's discovery controller never asks for
authentication, so this is where a DC refusing a secret can be shown: the kernel's own exchange
with the CDC, and stafd naming the failure, retrying, and connecting once a reload brings the
right secrets. Debian's 6.1 kernel has no NVMe authentication: the tests skip there.

The CDC, the nvmet port behind it and the helpers are in cdc_site.py.
"""

from __future__ import annotations

import errno

import pytest

from stas.model import WELL_KNOWN_DISC_NQN
from stas.testing.cdc.sqe import FCTYPE_AUTH_RECEIVE, FCTYPE_AUTH_SEND, FCTYPE_CONNECT, OPC_FABRICS

from .cdc_site import CDC_ADDR, CDC_PORT, STAFD_CONF, entry, read_log
from .daemons import subsystems_seen
from .guest import kernel_has_nvme_auth, scaled, wait_for
from .initiator import HOSTID, HOSTNQN, controllers_of, ctrl_attr, fabrics_connect
from .test_auth import dhchap_secret

pytestmark = pytest.mark.e2e

HOST_KEY, CTRL_KEY, WRONG = dhchap_secret(11), dhchap_secret(12), dhchap_secret(13)


@pytest.fixture(autouse=True)
def _needs_nvme_auth():
    if not kernel_has_nvme_auth():
        pytest.skip('this kernel has no NVMe authentication (Debian 6.1 is built without it)')


def fabric_commands(cdc, fctype: int) -> list:
    seen = cdc.call(lambda s: s.commands())
    return [c for c in seen if c.opcode == OPC_FABRICS and c.fctype == fctype]


def cdc_controllers() -> list:
    return controllers_of(WELL_KNOWN_DISC_NQN)


def kernel_connect(**secrets: str) -> str:
    return fabrics_connect(
        transport='tcp',
        traddr=CDC_ADDR,
        trsvcid=CDC_PORT,
        nqn=WELL_KNOWN_DISC_NQN,
        hostnqn=HOSTNQN,
        hostid=HOSTID,
        **secrets,
    )


@pytest.mark.parametrize('bidirectional', [False, True], ids=['unidirectional', 'bidirectional'])
def test_the_kernel_authenticates_to_the_test_cdc(cdc, fabric, bidirectional):
    ctrl_key = CTRL_KEY if bidirectional else ''
    cdc.call(lambda s: s.set_host_keys(HOSTNQN, HOST_KEY, ctrl_key))
    both = {'dhchap_ctrl_secret': ctrl_key} if bidirectional else {}

    # a wrong host secret: the CDC sends FAILURE1, the kernel's write fails
    with pytest.raises(OSError) as refused:
        kernel_connect(dhchap_secret=WRONG, **both)
    assert refused.value.errno == errno.EKEYREJECTED, refused.value
    assert cdc_controllers() == []
    assert fabric_commands(cdc, FCTYPE_AUTH_SEND) and fabric_commands(cdc, FCTYPE_AUTH_RECEIVE)

    if bidirectional:
        # the right host secret, another controller secret: the kernel finds R2 wrong
        with pytest.raises(OSError) as refused:
            kernel_connect(dhchap_secret=HOST_KEY, dhchap_ctrl_secret=WRONG)
        assert refused.value.errno == errno.EKEYREJECTED, refused.value
        assert cdc_controllers() == []

    # the right secrets: connected, authenticated, the log page read through it
    name = kernel_connect(dhchap_secret=HOST_KEY, **both)
    assert ctrl_attr(name, 'state') == 'live'
    (conn,) = cdc.call(lambda s: s.connections())
    assert (conn['hostnqn'], conn['auth']) == (HOSTNQN, 'authenticated')
    assert len(read_log(name, rae=True)) == 1024


@pytest.mark.parametrize(
    'case',
    ['unidirectional', 'bidirectional', 'wrong-ctrl-secret'],
)
def test_stafd_reports_a_dc_refusing_its_secret_and_recovers_on_reload(
    cdc, nvmet_port, fabric, stafd_factory, case
):
    sub1 = fabric.subsystem('sub1')
    nvmet_port.link(sub1)
    cdc.call(lambda s: s.set_entries([entry(sub1)]))
    bidirectional = case != 'unidirectional'
    cdc.call(lambda s: s.set_host_keys(HOSTNQN, HOST_KEY, CTRL_KEY if bidirectional else ''))
    wrong = {
        'unidirectional': f'dhchap-secret={WRONG}',
        'bidirectional': f'dhchap-secret={WRONG};dhchap-ctrl-secret={CTRL_KEY}',
        'wrong-ctrl-secret': f'dhchap-secret={HOST_KEY};dhchap-ctrl-secret={WRONG}',
    }[case]
    right = f'dhchap-secret={HOST_KEY}' + (f';dhchap-ctrl-secret={CTRL_KEY}' if bidirectional else '')
    conf = STAFD_CONF.rstrip('\n')

    stafd = stafd_factory(f'{conf};{wrong}\n')

    def failed_attempt():
        (dc,) = stafd.ctl_json('ls', '-d')
        return dc if 'authentication failed' in dc.get('last error', '') else None

    dc = wait_for(failed_attempt, scaled(6), 'a failed connect with the wrong secret')
    assert 'EKEYREJECTED' in dc['last error'], dc['last error']
    # stafd tries again (its first retry comes after a few seconds), never reading a log page
    first = len(fabric_commands(cdc, FCTYPE_CONNECT))
    wait_for(lambda: len(fabric_commands(cdc, FCTYPE_CONNECT)) > first, scaled(6), 'another attempt')
    # the kernel shows each attempt's controller until it fails: none may stay
    wait_for(lambda: cdc_controllers() == [], scaled(6), 'no controller left by the refused attempts')
    assert not subsystems_seen(stafd).get(CDC_ADDR)  # listed, with no page
    assert not [c for c in cdc.call(lambda s: s.commands()) if c.opcode == 0x02 and c.status == 0]

    stafd.reload(f'{conf};{right}\n')

    wait_for(lambda: subsystems_seen(stafd).get(CDC_ADDR) == [sub1.nqn], scaled(8), "the DC's log page")
    (dc,) = stafd.ctl_json('ls', '-d')
    assert dc['security'] == ('dh-hmac-chap (bidirectional)' if bidirectional else 'dh-hmac-chap')
    assert ctrl_attr(dc['device'], 'state') == 'live'
    assert [c['auth'] for c in cdc.call(lambda s: s.connections())] == ['authenticated']
    logs = stafd.logs()
    assert not [k for k in (HOST_KEY, CTRL_KEY, WRONG) if k in logs]
