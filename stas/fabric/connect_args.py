"""What to write to /dev/nvme-fabrics to ask the kernel for a controller, and what its refusal means.

A connect is one write of comma-separated tokens, ``key=value`` or a bare flag, to the fabrics
device; the kernel answers by making the controller (``instance=N,cntlid=M`` is then read back)
or by failing the write with an errno. The kernel splits the string at every ',' and newline,
so a value holding either would smuggle in options of its own: such a value (a hostile NQN in a
log page, say) is refused here, naming the field. A token the running kernel does not know fails
the whole write with EINVAL, so only tokens the kernel lists in /dev/nvme-fabrics are written;
an option it cannot take is named in ``ignored`` for the caller to report.

The string can hold DH-HMAC-CHAP secrets: ``KernelConnect.shown()`` is the form for logs.

Pure: no I/O. The worker's ``nvme_io`` does the write.
"""

from __future__ import annotations

import errno
import os
from typing import List, Optional, Sequence, Set, Tuple

from ..errors import InvalidArgument
from ..model import WELL_KNOWN_DISC_NQN, ConnectOptions, ControllerSpec, HostIdentity, Role
from ..record import record

SECRET_TOKENS = ('dhchap_secret', 'dhchap_ctrl_secret')

# ConnectOptions field -> kernel token, in the order nvme-cli writes them. The queue options
# are an I/O controller's only: the kernel gives a discovery controller none.
_IO_QUEUE_OPTIONS = (
    ('nr_io_queues', 'nr_io_queues'),
    ('nr_write_queues', 'nr_write_queues'),
    ('nr_poll_queues', 'nr_poll_queues'),
    ('queue_size', 'queue_size'),
)
_INT_OPTIONS = (
    ('kato', 'keep_alive_tmo'),
    ('reconnect_delay', 'reconnect_delay'),
    ('ctrl_loss_tmo', 'ctrl_loss_tmo'),
)
_FLAG_OPTIONS = (
    ('disable_sqflow', 'disable_sqflow'),
    ('hdr_digest', 'hdr_digest'),
    ('data_digest', 'data_digest'),
)


@record
class KernelConnect:
    """The fabrics device write for one connect. ``tokens``: (name, value or None for a flag);
    ``ignored``: set options the running kernel cannot take (kernel token names)."""

    tokens: Tuple[Tuple[str, Optional[str]], ...]
    ignored: Tuple[str, ...] = ()

    def text(self) -> str:
        """What is written to the device (secrets included)."""
        return ','.join(name if value is None else f'{name}={value}' for name, value in self.tokens)

    def shown(self) -> str:
        """The same with every secret replaced: the form for logs."""
        return ','.join(
            name if value is None else f'{name}={"<secret>" if name in SECRET_TOKENS else value}'
            for name, value in self.tokens
        )

    def __repr__(self) -> str:  # a traceback or a debug print never shows a secret either
        return f'KernelConnect({self.shown()!r}, ignored={self.ignored!r})'


def _checked(field: str, value: str) -> str:
    if any(c in value for c in ',\n\0'):
        raise InvalidArgument(
            f'{field} {value!r}: a comma, newline or NUL cannot be passed to the kernel '
            '(it separates connect options)'
        )
    return value


@record
class TlsKeys:
    """The key serials a TLS connect names: the keyring to look PSKs up in (None: the kernel's
    .nvme) and the PSK to use (None: the kernel picks one by identity)."""

    keyring: Optional[int] = None
    tls_key: Optional[int] = None


def _require_kernel(known: Set[str], token: str, what: str) -> None:
    """Refuse, naming ``what`` (and the kernel it takes), a connect the kernel has no option for."""
    if known and token not in known:
        raise InvalidArgument(
            f'{what} is asked for, but this kernel has none (no "{token}" option in /dev/nvme-fabrics)'
        )


def kernel_connect(
    spec: ControllerSpec,
    host: HostIdentity,
    host_iface: str,
    caps: Sequence[str],
    keys: TlsKeys = TlsKeys(),
) -> KernelConnect:
    """The write that connects ``spec`` as ``host``, pinned to ``host_iface`` when given.

    ``caps``: the option names the kernel lists (empty when it cannot say: kernels before 5.17;
    then every set option is written, as nvme-cli does). DH-HMAC-CHAP secrets go to discovery and
    I/O controllers alike: the option's own secret, else the host key of sys.conf. TLS (``tls``,
    or a ``tls-key`` of the controller's, filed by the worker as ``keys.tls_key``) and secure
    channel concatenation are asked for only where the kernel offers them: never a plain
    connection in their place. Raises ``InvalidArgument`` for a value the kernel would split,
    or for what the kernel cannot do.
    """
    tid = spec.tid
    options: ConnectOptions = spec.options
    is_dc = spec.role is Role.DC
    nqn = tid.subsysnqn or (WELL_KNOWN_DISC_NQN if is_dc else '')
    if not nqn:
        raise InvalidArgument(f'{tid}: an I/O controller needs a subsystem NQN')
    known = set(caps)
    tokens: List[Tuple[str, Optional[str]]] = []
    ignored: List[str] = []

    def add(name: str, value: Optional[str]) -> None:
        if known and name not in known:
            ignored.append(name)
        else:
            tokens.append((name, value))

    tokens.append(('nqn', _checked('subsystem NQN', nqn)))
    tokens.append(('transport', _checked('transport', tid.transport)))
    for name, value in (('traddr', tid.traddr), ('trsvcid', tid.trsvcid), ('host_traddr', tid.host_traddr)):
        if value:
            tokens.append((name, _checked(name, value)))
    if host_iface:
        add('host_iface', _checked('host_iface', host_iface))
    tokens.append(('hostnqn', _checked('host NQN', host.hostnqn)))
    if host.hostid:
        tokens.append(('hostid', _checked('host ID', host.hostid)))
    if is_dc and 'discovery' in known:
        tokens.append(('discovery', None))  # a unique discovery NQN is a DC too
    host_key = options.dhchap_secret or host.hostkey
    if host_key:
        add('dhchap_secret', _checked('dhchap-secret', host_key))
    if options.dhchap_ctrl_secret:
        add('dhchap_ctrl_secret', _checked('dhchap-ctrl-secret', options.dhchap_ctrl_secret))
    for field, name in (() if is_dc else _IO_QUEUE_OPTIONS) + _INT_OPTIONS:
        value = getattr(options, field)
        if value is not None:
            add(name, str(int(value)))
    for field, name in _FLAG_OPTIONS:
        if getattr(options, field):
            add(name, None)
    if options.concat:
        _require_kernel(known, 'concat', 'secure channel concatenation (concat: Linux 6.15 or later)')
        if options.tls or options.tls_key:
            # the kernel refuses both: concatenation makes its own TLS key
            raise InvalidArgument('concat and tls (or tls-key) exclude each other: choose one')
        if not host_key:
            raise InvalidArgument('concat needs a DH-HMAC-CHAP secret (dhchap-secret, or key= in sys.conf)')
        tokens.append(('concat', None))
    elif options.tls or options.tls_key:
        # never a plain connection where TLS was asked for
        _require_kernel(known, 'tls', 'NVMe/TCP TLS (Linux 6.7 or later, built with CONFIG_NVME_TCP_TLS)')
        tokens.append(('tls', None))
        if keys.tls_key is not None:
            _require_kernel(known, 'tls_key', 'a TLS PSK of its own (tls-key: Linux 6.7 or later)')
            tokens.append(('tls_key', str(keys.tls_key)))
    if keys.keyring is not None and (options.concat or options.tls or options.tls_key):
        add('keyring', str(keys.keyring))
    return KernelConnect(tuple(tokens), tuple(ignored))


def parse_connect_reply(text: str) -> Tuple[int, int]:
    """``(instance, cntlid)`` from the fabrics device's answer to a connect
    (``instance=3,cntlid=1``). Raises ``InvalidArgument`` for anything else."""
    fields = {}
    for token in text.strip().split(','):
        key, sep, value = token.partition('=')
        if sep:
            fields[key.strip()] = value.strip()
    try:
        instance, cntlid = int(fields['instance']), int(fields['cntlid'])
    except (KeyError, ValueError):
        raise InvalidArgument(
            f'nvme-fabrics answered {text.strip()!r}: expected "instance=N,cntlid=M"'
        ) from None
    if instance < 0:
        raise InvalidArgument(f'nvme-fabrics answered {text.strip()!r}: no controller instance')
    return instance, cntlid


# errno of a failed fabrics write -> what it means to an admin. The kernel passes up what its
# transport and the Connect command reported; these are the ones a fabric produces.
_MEANINGS = {
    errno.EKEYREJECTED: 'authentication failed: the controller rejected the DH-HMAC-CHAP exchange '
    '(wrong dhchap-secret or dhchap-ctrl-secret, or a secret is required and none is set)',
    errno.ESRCH: 'no TLS handshake: tlshd is not running (the kernel found nobody to take its '
    'handshake request)',
    errno.ECONNREFUSED: 'connection refused: nothing listens at this address and port',
    errno.ETIMEDOUT: 'timed out: no answer from this address',
    errno.EHOSTUNREACH: 'host unreachable: no route to this address',
    errno.ENETUNREACH: 'network unreachable: no route to this address',
    errno.EADDRNOTAVAIL: 'the source address (host-traddr) is not on this host',
    errno.EALREADY: 'the kernel already has this connection (a duplicate connect is refused)',
    errno.EINVAL: 'the kernel refused the connect options (invalid argument; see the kernel log)',
    errno.EIO: 'the controller refused the connection (see the kernel log: e.g. this host NQN is not '
    'allowed, or no such subsystem)',
    errno.ENODEV: 'no such transport in the kernel (is its module loaded?)',
    errno.ENOMEM: 'the kernel is out of memory',
}


def psk_identity(hostnqn: str, subnqn: str) -> str:
    """The identity of a retained TLS 1.3 PSK (SHA-256) for this host and subsystem, as
    ``nvme gen-tls-key --insert`` files it in the .nvme keyring."""
    return f'NVMe0R01 {hostnqn} {subnqn}'


def describe_connect_error(err: int, request: Optional[KernelConnect] = None) -> str:
    """An admin's words for the errno of a failed connect, with its symbolic name; for a missing
    TLS key, the identity of the key that would do (from ``request``)."""
    name = errno.errorcode.get(err, str(err))
    meaning = _MEANINGS.get(err)
    if meaning is None:
        meaning = os.strerror(err)
    if err == errno.ENOKEY:
        meaning = _missing_key(request)
    elif err == errno.EIO and request is not None and 'dhchap_secret' in dict(request.tokens):
        # a lost DH-HMAC-CHAP failure message ends in an NVMe status, not EKEYREJECTED
        meaning = (
            'the controller refused the connection or its DH-HMAC-CHAP exchange (see the kernel '
            'log: "authentication failed" there means a wrong secret)'
        )
    return f'{meaning} ({name})'


def _missing_key(request: Optional[KernelConnect]) -> str:
    """ENOKEY: the kernel lacked a key, the TLS PSK or the host's DH-HMAC-CHAP secret (a
    controller that requires authentication, and no secret given)."""
    fields = dict(request.tokens) if request is not None else {}
    no_secret = (
        'authentication failed: the controller requires DH-HMAC-CHAP and no secret is set '
        '(dhchap-secret, or key= in sys.conf)'
    )
    if 'tls' not in fields:
        return no_secret if request is not None else 'no key: a TLS pre-shared key or a DH-HMAC-CHAP secret'
    identity = psk_identity(fields.get('hostnqn') or '', fields.get('nqn') or '')
    keyring = f'keyring {fields["keyring"]}' if fields.get('keyring') else 'its .nvme keyring'
    if fields.get('tls_key'):
        psk = f'no key: the TLS pre-shared key filed from tls-key (key {fields["tls_key"]}) could not be used'
    else:
        psk = (
            f'no key: the kernel found no TLS pre-shared key for this host and subsystem in {keyring} '
            f'(e.g. "{identity}": nvme gen-tls-key --insert, or tls-key= on the controller= line)'
        )
    return psk if 'dhchap_secret' in fields else f'{psk}, or {no_secret}'
