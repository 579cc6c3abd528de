"""Value checkers shared by [Global] options, ``controller=``/``exclude=`` fields and sys.conf.

A checker takes the text of one value and returns the typed value, or raises ``BadValue``
saying what is wrong and what is accepted. A checker may instead return ``Adjusted`` when it
accepts the value after a documented change that the user should hear about (for example
``connect-attempts-on-ncc=1`` becomes 2).

Checkers accept exactly what nvme-stas 2.x accepts, with these deliberate differences:

* integers must be plain ASCII decimals (``int()`` would also take ``1_000`` or non-ASCII
  digits), and each has a range, including the ones nvme-stas never checked but the kernel
  refuses (``reconnect-delay=0``, ``nr-io-queues=0``, ``kato=-5``);
* DH-HMAC-CHAP secrets are checked for the ``DHHC-1:<hash>:<base64>:`` shape the kernel wants.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from typing import Any, Callable, Optional, Tuple

from ..fabric import nvme_secrets, tls_psk
from ..lazy_pattern import LazyPattern
from ..model import NQN_MAX_LEN, TRANSPORTS
from ..record import record
from .problems import shown
from .timeparse import timeparse

INT32_MAX = 2**31 - 1
SUBNQN_MAX_LEN = 256  # the discovery log page field; host NQNs are limited to NQN_MAX_LEN (223)
TRADDR_MAX_LEN = 256
IFNAME_MAX_LEN = 15  # IFNAMSIZ - 1
SYMNAME_MAX_LEN = 256  # the DIM host symbolic name field

UUID_NQN_PREFIX = 'nqn.2014-08.org.nvmexpress:uuid:'

_HEX = '[0-9a-fA-F]'
_CANONICAL_UUID = LazyPattern(rf'^{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}$')
_DECIMAL = LazyPattern(r'^[+-]?[0-9]+$')
_CONTROL = LazyPattern(r'[\x00-\x1f\x7f]')
_CONTROL_COMMA_SPACE = LazyPattern(r'[\x00-\x20\x7f,]|\s')
_HOSTNAME = LazyPattern(r'^[a-z0-9_]([a-z0-9_.-]{0,252}[a-z0-9_.])?$', re.I)
_FC_ADDR = LazyPattern(r'^nn-0x[0-9a-f]{1,16}[:,]pn-0x[0-9a-f]{1,16}$', re.I)
_IFNAME_BAD = LazyPattern(r'[/:,\s\x00-\x1f\x7f]')
_INLINE_COMMENT = LazyPattern(r'(?:^|\s)#')

FC_ADDR_FORMAT = 'nn-0x<16 hex digits>:pn-0x<16 hex digits>'


class BadValue(Exception):
    """A value is refused: ``reason`` says why, ``accepted`` what would do."""

    def __init__(self, reason: str, accepted: str):
        super().__init__(f'{reason}; accepted: {accepted}')
        self.reason = reason
        self.accepted = accepted


@record
class Adjusted:
    """A value accepted after a change the user should hear about."""

    value: Any
    note: str


Checker = Callable[[str], Any]


def strip_inline_comment(text: str) -> str:
    """``text`` without a trailing `` # comment`` (a ``#`` preceded by white space, or first).

    nvme-stas 2.x has no inline comments: the ``# ...`` became part of the value, so its own
    documented ``exclude = ... # Eliminate a specific address`` never matched. Here a ``#``
    that follows white space starts a comment in stafd.conf and stacd.conf values (none of
    those values can contain white space followed by ``#``); a ``#`` inside a word is kept.
    """
    m = _INLINE_COMMENT.search(text)
    return text[: m.start()].rstrip() if m else text


# -- scalar option checkers ------------------------------------------------------------------


def check_bool(text: str) -> bool:
    low = text.lower()
    if low == 'true':
        return True
    if low == 'false':
        return False
    raise BadValue('not a boolean', 'true, false')


def check_enabled(text: str) -> bool:
    low = text.lower()
    if low == 'enabled':
        return True
    if low == 'disabled':
        return False
    raise BadValue('not enabled/disabled', 'enabled, disabled')


def int_range_text(lo: int, hi: Optional[int], extra: str = '') -> str:
    if hi is None:
        return f'an integer >= {lo}{extra}'
    return f'an integer in {lo}..{hi}{extra}'


def int_checker(lo: int, hi: Optional[int] = None, extra: str = '') -> Checker:
    """A checker for decimal integers in ``lo..hi`` (``hi`` None: up to 2**31-1)."""
    accepted = int_range_text(lo, hi, extra)
    top = INT32_MAX if hi is None else hi

    def check(text: str) -> int:
        if not _DECIMAL.match(text) or len(text) > 12:
            raise BadValue('not an integer', accepted)
        value = int(text)
        if not lo <= value <= top:
            raise BadValue('out of range', accepted)
        return value

    return check


IP_FAMILIES = {'ipv4': (4,), 'ipv6': (6,), 'ipv4+ipv6': (4, 6), 'ipv6+ipv4': (4, 6)}


def check_ip_family(text: str) -> Tuple[int, ...]:
    try:
        return IP_FAMILIES[text]
    except KeyError:
        raise BadValue('not an IP family', ', '.join(IP_FAMILIES)) from None


def ip_family_text(families: Tuple[int, ...]) -> str:
    return '+'.join(f'ipv{v}' for v in families)


def choice_checker(choices: Tuple[str, ...]) -> Checker:
    """Exactly one of ``choices`` (case-sensitive, as nvme-stas compares them)."""

    def check(text: str) -> str:
        if text in choices:
            return text
        hint = ' (values are case-sensitive)' if text.lower() in choices else ''
        raise BadValue('not one of the accepted values' + hint, ', '.join(choices))

    return check


def check_timespan(text: str) -> float:
    """Seconds; any negative value means "never"."""
    seconds = timeparse(text)
    if seconds is None:
        raise BadValue(
            'not a time span',
            'seconds (-1 = never, 0 = at once) or a span such as 72hours, "3 days 5 hours", 1:30',
        )
    return float(seconds)


def check_poll_interval(text: str) -> float:
    """Seconds between two reads of a parked discovery controller: a time span above zero."""
    seconds = timeparse(text)
    if seconds is None or seconds <= 0:
        raise BadValue('not a time span above zero', 'seconds or a span such as 15min, 1h, "1 hour 30 min"')
    return float(seconds)


PROM_FILE_ACCEPTED = (
    'an absolute path ending in .prom (the textfile collector of node_exporter reads only *.prom '
    'files), e.g. /var/lib/prometheus/node-exporter/stafd.prom'
)


def check_prom_file(text: str) -> str:
    """The metrics file for node_exporter's textfile collector (``[Metrics] textfile``)."""
    if _CONTROL.search(text):
        raise BadValue('has control characters', PROM_FILE_ACCEPTED)
    if not text.startswith('/'):
        raise BadValue('not an absolute path', PROM_FILE_ACCEPTED)
    path = posixpath.normpath(text)
    name = posixpath.basename(path)
    if not name.endswith('.prom') or name == '.prom' or text.endswith('/'):
        raise BadValue('not a file name ending in .prom', PROM_FILE_ACCEPTED)
    return path


# -- controller= field checkers ------------------------------------------------------------------


def check_transport(text: str) -> str:
    if text.lower() in TRANSPORTS:
        return text
    raise BadValue('not a transport', ', '.join(TRANSPORTS))


def _check_plain(text: str, max_len: int, accepted: str) -> None:
    if len(text.encode('utf-8', 'surrogatepass')) > max_len:
        raise BadValue(f'longer than {max_len} bytes', accepted)
    if _CONTROL_COMMA_SPACE.search(text):
        raise BadValue('contains white space, a comma or a control character', accepted)


def is_ip_address(text: str) -> bool:
    s = text[1:-1] if text.startswith('[') and text.endswith(']') else text
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


def is_fc_address(text: str) -> bool:
    return bool(_FC_ADDR.match(text))


def check_traddr(transport: str, text: str) -> str:
    """The controller address: IP literal or host name (tcp, rdma), FC address (fc), any (loop)."""
    t = transport.lower()
    if t == 'fc':
        accepted = FC_ADDR_FORMAT
        _check_plain(text, TRADDR_MAX_LEN, accepted)
        if not is_fc_address(text):
            raise BadValue('not an FC address', accepted)
        return text
    if t == 'loop':
        _check_plain(text, TRADDR_MAX_LEN, 'any text without white space or commas')
        return text
    accepted = 'an IPv4 or IPv6 address or a host name'
    _check_plain(text, TRADDR_MAX_LEN, accepted)
    if not (is_ip_address(text) or _HOSTNAME.match(text)):
        raise BadValue('not an IP address or host name', accepted)
    return text


def check_host_traddr(transport: str, text: str) -> str:
    """The host-side address: an IP literal (tcp, rdma) or an FC address (fc)."""
    t = transport.lower()
    if t == 'fc':
        _check_plain(text, TRADDR_MAX_LEN, FC_ADDR_FORMAT)
        if not is_fc_address(text):
            raise BadValue('not an FC address', FC_ADDR_FORMAT)
        return text
    accepted = 'an IPv4 or IPv6 address of this host'
    _check_plain(text, TRADDR_MAX_LEN, accepted)
    if t in ('tcp', 'rdma') and not is_ip_address(text):
        raise BadValue('not an IP address', accepted)
    return text


def check_trsvcid(transport: str, text: str) -> str:
    t = transport.lower()
    if t in ('tcp', 'rdma'):
        accepted = 'a port number in 1..65535'
        if not text.isdigit() or not text.isascii() or len(text) > 5 or not 0 < int(text) <= 65535:
            raise BadValue('not a port number', accepted)
        return text
    _check_plain(text, 32, 'up to 32 characters without white space')
    return text


def check_iface(text: str) -> str:
    accepted = f'a network interface name (1..{IFNAME_MAX_LEN} characters, no / : , or white space)'
    if len(text) > IFNAME_MAX_LEN or text in ('.', '..') or _IFNAME_BAD.search(text):
        raise BadValue('not an interface name', accepted)
    return text


def check_subsysnqn(text: str) -> str:
    accepted = f'an NQN of at most {SUBNQN_MAX_LEN} bytes, e.g. nqn.2014-08.org.example:subsystem1'
    if len(text.encode('utf-8', 'surrogatepass')) > SUBNQN_MAX_LEN:
        raise BadValue(f'longer than {SUBNQN_MAX_LEN} bytes', accepted)
    if _CONTROL.search(text) or ',' in text:
        raise BadValue('contains a comma or a control character', accepted)
    return text


def check_host_nqn(text: str) -> str:
    """A host NQN: starts with ``nqn.``, at most 223 bytes; a uuid-form NQN has a real UUID."""
    accepted = f'"nqn." followed by at most {NQN_MAX_LEN - 4} more bytes, e.g. {UUID_NQN_PREFIX}<uuid>'
    if not text.startswith('nqn.'):
        raise BadValue('does not start with "nqn."', accepted)
    size = len(text.encode('utf-8', 'surrogatepass'))
    if size > NQN_MAX_LEN:
        raise BadValue(f'{size} bytes is longer than {NQN_MAX_LEN}', accepted)
    if _CONTROL.search(text) or re.search(r'[\s,]', text):
        raise BadValue('contains white space, a comma or a control character', accepted)
    if text.startswith(UUID_NQN_PREFIX):
        tail = text[len(UUID_NQN_PREFIX) :]
        if not _CANONICAL_UUID.match(tail):
            raise BadValue(
                f'"{shown(tail, 60)}" after "{UUID_NQN_PREFIX}" is not a UUID', f'{UUID_NQN_PREFIX}<uuid>'
            )
    return text


def check_host_id(text: str) -> str:
    accepted = 'a UUID such as 2f5ecb06-a2c3-4a47-8cc1-1d1c6b3e8a5e'
    if not _CANONICAL_UUID.match(text):
        raise BadValue('not a UUID', accepted)
    return text


def check_dhchap_secret(text: str) -> str:
    """A DH-HMAC-CHAP secret in the NVMe representation ``DHHC-1:<hh>:<base64 key+crc>:``."""
    accepted = (
        'DHHC-1:<00..03>:<base64 of a 32, 48 or 64 byte key and its CRC-32>: '
        '(e.g. from "nvme gen-dhchap-key")'
    )
    try:
        # a key mistyped or cut when copied is refused here: the kernel would refuse it at connect time
        nvme_secrets.parse(text, nvme_secrets.DHCHAP_SECRET)
    except nvme_secrets.BadSecret as exc:
        raise BadValue(str(exc), accepted) from None
    return text


def check_tls_key(text: str) -> str:
    """A TLS pre-shared key in the interchange format ``NVMeTLSkey-1:<hh>:<base64 key+crc>:``."""
    try:
        tls_psk.parse_interchange(text)
    except tls_psk.BadPsk as exc:
        raise BadValue(str(exc), tls_psk.ACCEPTED) from None
    return text


# a keyring's description: printable, no blank (the kernel's own is ".nvme")
_KEYRING_NAME = LazyPattern(r'[!-~]{1,64}\Z')


def check_keyring(text: str) -> str:
    """A kernel keyring, by its description (``.nvme``, or one made with ``keyctl newring``) or
    by its serial number (decimal or 0x hex); the worker looks it up when it connects."""
    accepted = 'a keyring name such as .nvme, or its serial number (decimal or 0x...)'
    if not _KEYRING_NAME.match(text):
        raise BadValue('not a keyring name or serial', accepted)
    return text


def check_symname(text: str) -> str:
    size = len(text.encode('utf-8', 'surrogatepass'))
    if size > SYMNAME_MAX_LEN:
        raise BadValue(f'{size} bytes is longer than {SYMNAME_MAX_LEN}', f'at most {SYMNAME_MAX_LEN} bytes')
    if _CONTROL.search(text):
        raise BadValue('contains a control character', 'printable text')
    return text
