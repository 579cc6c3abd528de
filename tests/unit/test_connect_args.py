"""The fabrics device write of a connect: tokens, kernel capabilities, secrets, refusals."""

from __future__ import annotations

import errno

import pytest

from stas.errors import InvalidArgument
from stas.fabric.connect_args import TlsKeys, describe_connect_error, kernel_connect, parse_connect_reply
from stas.model import WELL_KNOWN_DISC_NQN, ConnectOptions, ControllerSpec, HostIdentity, Role, TransportId

# Linux 6.1's /dev/nvme-fabrics option names
CAPS_6_1 = (
    'instance',
    'cntlid',
    'transport',
    'traddr',
    'trsvcid',
    'nqn',
    'queue_size',
    'nr_io_queues',
    'reconnect_delay',
    'ctrl_loss_tmo',
    'keep_alive_tmo',
    'hostnqn',
    'host_traddr',
    'host_iface',
    'hostid',
    'duplicate_connect',
    'disable_sqflow',
    'hdr_digest',
    'data_digest',
    'nr_write_queues',
    'nr_poll_queues',
    'tos',
    'fast_io_fail_tmo',
    'discovery',
    'dhchap_secret',
    'dhchap_ctrl_secret',
)
HOST = HostIdentity('nqn.2014-08.org.nvmexpress:uuid:aaaa', 'aaaa-bbbb')
KEY1 = 'DHHC-1:00:ZmFrZWtleWZha2VrZXlmYWtla2V5ZmFrZWtleTG5hd0=:'
KEY2 = 'DHHC-1:00:c2Vjb25kc2Vjb25kc2Vjb25kc2Vjb25kc2Vjb24dYW8=:'
IOC = TransportId('tcp', '192.0.2.1', '4420', 'nqn.2024-01.io.example:sub1', host_iface='eth0')
DC = TransportId('tcp', '192.0.2.1', '8009', WELL_KNOWN_DISC_NQN)


def test_an_io_controller_gets_its_address_host_and_set_options_in_order() -> None:
    spec = ControllerSpec(
        IOC, Role.IOC, ConnectOptions(kato=30, queue_size=64, nr_io_queues=4, hdr_digest=True)
    )
    got = kernel_connect(spec, HOST, 'eth0', CAPS_6_1)
    assert got.text() == (
        'nqn=nqn.2024-01.io.example:sub1,transport=tcp,traddr=192.0.2.1,trsvcid=4420,host_iface=eth0,'
        'hostnqn=nqn.2014-08.org.nvmexpress:uuid:aaaa,hostid=aaaa-bbbb,nr_io_queues=4,queue_size=64,'
        'keep_alive_tmo=30,hdr_digest'
    )
    assert got.ignored == ()


def test_a_discovery_controller_is_flagged_and_gets_no_io_queue_options() -> None:
    spec = ControllerSpec(DC, Role.DC, ConnectOptions(queue_size=64, nr_io_queues=4, kato=30))
    got = kernel_connect(spec, HOST, '', CAPS_6_1)
    assert got.text() == (
        f'nqn={WELL_KNOWN_DISC_NQN},transport=tcp,traddr=192.0.2.1,trsvcid=8009,'
        'hostnqn=nqn.2014-08.org.nvmexpress:uuid:aaaa,hostid=aaaa-bbbb,discovery,keep_alive_tmo=30'
    )
    # a DC without an NQN is one at the well-known NQN
    bare = ControllerSpec(TransportId('tcp', '192.0.2.1', '8009'), Role.DC)
    assert kernel_connect(bare, HOST, '', CAPS_6_1).tokens[0] == ('nqn', WELL_KNOWN_DISC_NQN)


def test_secrets_go_to_discovery_and_io_controllers_and_never_into_the_shown_form() -> None:
    for tid, role in ((IOC, Role.IOC), (DC, Role.DC)):
        spec = ControllerSpec(tid, role, ConnectOptions(dhchap_secret=KEY1, dhchap_ctrl_secret=KEY2))
        got = kernel_connect(spec, HOST, '', CAPS_6_1)
        assert f'dhchap_secret={KEY1},dhchap_ctrl_secret={KEY2}' in got.text()
        shown = got.shown()
        assert KEY1 not in shown and KEY2 not in shown
        assert 'dhchap_secret=<secret>,dhchap_ctrl_secret=<secret>' in shown
        assert KEY1 not in repr(got) and KEY2 not in repr(got)


def test_the_host_key_of_sys_conf_is_the_default_host_secret() -> None:
    keyed = HostIdentity(HOST.hostnqn, HOST.hostid, hostkey=KEY1)
    got = kernel_connect(ControllerSpec(DC, Role.DC), keyed, '', CAPS_6_1)
    assert ('dhchap_secret', KEY1) in got.tokens
    own = ControllerSpec(DC, Role.DC, ConnectOptions(dhchap_secret=KEY2))
    assert ('dhchap_secret', KEY2) in kernel_connect(own, keyed, '', CAPS_6_1).tokens


def test_options_the_kernel_does_not_list_are_left_out_and_named() -> None:
    old = [c for c in CAPS_6_1 if c not in ('host_iface', 'dhchap_secret', 'dhchap_ctrl_secret')]
    spec = ControllerSpec(IOC, Role.IOC, ConnectOptions(dhchap_secret=KEY1, dhchap_ctrl_secret=KEY2))
    got = kernel_connect(spec, HOST, 'eth0', old)
    assert got.ignored == ('host_iface', 'dhchap_secret', 'dhchap_ctrl_secret')
    assert 'host_iface' not in got.text() and 'dhchap' not in got.text()
    # a kernel that cannot list its options (before 5.17) gets every set option
    assert kernel_connect(spec, HOST, 'eth0', ()).ignored == ()
    # no discovery flag where the kernel does not know it
    assert ('discovery', None) not in kernel_connect(ControllerSpec(DC, Role.DC), HOST, '', old[:-1]).tokens


@pytest.mark.parametrize(
    'tid,host,named',
    [
        (TransportId('tcp', '192.0.2.1', '4420', 'nqn.x,dhchap_secret=evil'), HOST, 'subsystem NQN'),
        (TransportId('tcp', '192.0.2.1\n', '4420', 'nqn.x'), HOST, 'traddr'),
        (TransportId('tcp', '192.0.2.1', '4420,tos=1', 'nqn.x'), HOST, 'trsvcid'),
        (TransportId('tcp', '192.0.2.1', '4420', 'nqn.x'), HostIdentity('nqn.h,x', 'id'), 'host NQN'),
    ],
)
def test_a_value_that_would_split_into_more_options_is_refused_by_name(tid, host, named) -> None:
    with pytest.raises(InvalidArgument, match=f'^{named} .*comma, newline or NUL'):
        kernel_connect(ControllerSpec(tid, Role.IOC), host, '', CAPS_6_1)


def test_an_io_controller_without_nqn_is_refused() -> None:
    with pytest.raises(InvalidArgument, match='needs a subsystem NQN'):
        kernel_connect(ControllerSpec(TransportId('tcp', '192.0.2.1', '4420'), Role.IOC), HOST, '', CAPS_6_1)


def test_the_reply_gives_instance_and_cntlid() -> None:
    assert parse_connect_reply('instance=3,cntlid=1\n') == (3, 1)
    for bad in ('', 'instance=-1,cntlid=-1', 'instance=x,cntlid=1', 'transport=%s,traddr=%s'):
        with pytest.raises(InvalidArgument, match='nvme-fabrics answered'):
            parse_connect_reply(bad)


def test_refusals_are_named_for_an_admin() -> None:
    assert describe_connect_error(errno.EKEYREJECTED).startswith('authentication failed: ')
    assert describe_connect_error(errno.EKEYREJECTED).endswith('(EKEYREJECTED)')
    assert describe_connect_error(errno.ECONNREFUSED).startswith('connection refused')
    assert describe_connect_error(errno.EALREADY).startswith('the kernel already has this connection')
    assert describe_connect_error(errno.EPERM) == 'Operation not permitted (EPERM)'


def test_tls_is_a_flag_and_never_silently_dropped() -> None:
    spec = ControllerSpec(IOC, Role.IOC, ConnectOptions(tls=True))
    assert kernel_connect(spec, HOST, '', (*CAPS_6_1, 'tls', 'keyring', 'tls_key')).tokens[-1] == (
        'tls',
        None,
    )
    assert kernel_connect(spec, HOST, '', ()).tokens[-1] == ('tls', None)  # a kernel that cannot say
    with pytest.raises(InvalidArgument, match=r'NVMe/TCP TLS .* is asked for, but this kernel has none'):
        kernel_connect(spec, HOST, '', CAPS_6_1)  # 6.1: a plain connection would be a downgrade
    assert (
        'tls'
        not in kernel_connect(ControllerSpec(IOC, Role.IOC, ConnectOptions(tls=False)), HOST, '', ()).text()
    )


CAPS_TLS = (*CAPS_6_1, 'tls', 'keyring', 'tls_key')


def test_a_filed_tls_key_and_a_keyring_are_named_by_serial() -> None:
    spec = ControllerSpec(IOC, Role.IOC, ConnectOptions(tls_key='NVMeTLSkey-1:01:x:', keyring='.mine'))
    tokens = kernel_connect(spec, HOST, '', CAPS_TLS, TlsKeys(keyring=0x1234, tls_key=77)).tokens
    # a tls-key implies TLS, without tls= set
    assert tokens[-3:] == (('tls', None), ('tls_key', '77'), ('keyring', str(0x1234)))
    # a keyring alone (tls=true, the kernel picks the PSK by identity in it)
    spec = ControllerSpec(IOC, Role.IOC, ConnectOptions(tls=True, keyring='.mine'))
    assert kernel_connect(spec, HOST, '', CAPS_TLS, TlsKeys(keyring=5)).tokens[-2:] == (
        ('tls', None),
        ('keyring', '5'),
    )
    # no TLS: no keyring either
    spec = ControllerSpec(IOC, Role.IOC, ConnectOptions(keyring='.mine'))
    assert 'keyring' not in kernel_connect(spec, HOST, '', CAPS_TLS, TlsKeys(keyring=5)).text()


def test_concat_needs_the_kernel_a_secret_and_no_tls() -> None:
    concat = ConnectOptions(concat=True, dhchap_secret=KEY1)
    with pytest.raises(InvalidArgument, match=r'secure channel concatenation .* this kernel has none'):
        kernel_connect(ControllerSpec(IOC, Role.IOC, concat), HOST, '', CAPS_TLS)
    caps = (*CAPS_TLS, 'concat')
    assert kernel_connect(ControllerSpec(IOC, Role.IOC, concat), HOST, '', caps).tokens[-1] == (
        'concat',
        None,
    )
    with pytest.raises(InvalidArgument, match='concat and tls .* exclude each other'):
        kernel_connect(
            ControllerSpec(IOC, Role.IOC, ConnectOptions(concat=True, tls=True, dhchap_secret=KEY1)),
            HOST,
            '',
            caps,
        )
    with pytest.raises(InvalidArgument, match='concat needs a DH-HMAC-CHAP secret'):
        kernel_connect(ControllerSpec(IOC, Role.IOC, ConnectOptions(concat=True)), HOST, '', caps)


def test_a_missing_key_is_named_for_what_the_connect_asked() -> None:
    identity = (
        f'"NVMe0R01 {HOST.hostnqn} {IOC.subsysnqn}": nvme gen-tls-key --insert, or tls-key= on the '
        'controller= line)'
    )
    secret = ConnectOptions(tls=True, dhchap_secret=KEY1)
    said = describe_connect_error(
        errno.ENOKEY, kernel_connect(ControllerSpec(IOC, Role.IOC, secret), HOST, '', ())
    )
    assert said.startswith('no key: the kernel found no TLS pre-shared key') and said.endswith(
        f'{identity} (ENOKEY)'
    )
    # TLS and no secret: either key may be the missing one
    tls = kernel_connect(ControllerSpec(IOC, Role.IOC, ConnectOptions(tls=True)), HOST, '', ())
    said = describe_connect_error(errno.ENOKEY, tls)
    assert identity in said and ', or authentication failed: the controller requires DH-HMAC-CHAP' in said
    plain = kernel_connect(ControllerSpec(IOC, Role.IOC), HOST, '', ())
    assert describe_connect_error(errno.ENOKEY, plain) == (
        'authentication failed: the controller requires DH-HMAC-CHAP and no secret is set '
        '(dhchap-secret, or key= in sys.conf) (ENOKEY)'
    )
    assert describe_connect_error(errno.ESRCH).startswith('no TLS handshake: tlshd is not running')
    # a PSK of its own, filed by the worker, or a keyring of the admin's: named
    filed = kernel_connect(
        ControllerSpec(IOC, Role.IOC, ConnectOptions(tls_key='k', dhchap_secret=KEY1)),
        HOST,
        '',
        (),
        TlsKeys(tls_key=9),
    )
    assert describe_connect_error(errno.ENOKEY, filed) == (
        'no key: the TLS pre-shared key filed from tls-key (key 9) could not be used (ENOKEY)'
    )
    ring = ControllerSpec(IOC, Role.IOC, ConnectOptions(tls=True, dhchap_secret=KEY1))
    said = describe_connect_error(errno.ENOKEY, kernel_connect(ring, HOST, '', (), TlsKeys(keyring=12)))
    assert 'no TLS pre-shared key for this host and subsystem in keyring 12 ' in said


def test_an_io_error_with_secrets_points_at_the_authentication_too() -> None:
    keyed = kernel_connect(ControllerSpec(IOC, Role.IOC, ConnectOptions(dhchap_secret=KEY1)), HOST, '', ())
    assert 'DH-HMAC-CHAP exchange' in describe_connect_error(errno.EIO, keyed)
    plain = kernel_connect(ControllerSpec(IOC, Role.IOC), HOST, '', ())
    assert describe_connect_error(errno.EIO, plain).startswith('the controller refused the connection (see')
