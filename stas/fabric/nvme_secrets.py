"""NVMe secrets as an admin writes them, ``<prefix>:<hh>:<base64 of the key and its CRC-32>:``:
DH-HMAC-CHAP secrets (``DHHC-1``, as ``nvme gen-dhchap-key`` prints them) and TLS pre-shared
keys in the interchange format (``NVMeTLSkey-1``, as ``nvme gen-tls-key`` prints them).

The CRC-32 of the key ends the base64, little endian, so that a key mistyped or cut when copied
is refused here rather than by the kernel when it connects. What ``hh`` means, and which key
lengths go with which ``hh``, differ from one kind of secret to the other: a ``SecretFormat``
holds them, and ``parse`` checks a string against one.

A ``BadSecret`` names what is wrong and never holds the string nor the key: its message ends up
in logs and configuration warnings.

Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
from typing import Iterable, Mapping, Tuple

from ..lazy_pattern import LazyPattern
from ..record import record

CRC_SIZE = 4

_SHAPE = LazyPattern(r'(?P<prefix>[^:]*):(?P<hh>[0-9]{2}):(?P<key>[A-Za-z0-9+/=]+):')


class BadSecret(ValueError):
    """A string that is not a secret of the format asked for; the message never holds it."""


@record
class SecretFormat:
    """One kind of secret: its ``prefix``, ``what`` it is (for the message about a string that
    is not one) and, for each ``hh`` it accepts, the key lengths that ``hh`` accepts."""

    prefix: str
    what: str
    key_lengths: Mapping[int, Tuple[int, ...]]

    @property
    def lengths_depend_on_hh(self) -> bool:
        return len(set(self.key_lengths.values())) > 1


DHCHAP_KEY_LENGTHS = (32, 48, 64)
# hh: the hash the key is transformed with before it is used (00 none, 01 SHA-256, 02 SHA-384,
# 03 SHA-512), whatever the key's length
DHCHAP_SECRET = SecretFormat('DHHC-1', 'a DH-HMAC-CHAP secret', {hh: DHCHAP_KEY_LENGTHS for hh in range(4)})


def parse(text: str, fmt: SecretFormat) -> Tuple[int, bytes]:
    """``(hh, key)`` of ``text``, a secret of format ``fmt``, the CRC checked and removed; raises
    ``BadSecret`` naming what is wrong. Callers keep the key in a type of their own whose repr
    hides it. ``text`` is taken as it is, blanks included: a caller that allows blanks
    around a secret strips them first."""
    m = _SHAPE.fullmatch(text)
    if not m or m.group('prefix') != fmt.prefix:
        raise BadSecret(f'not {fmt.what}')
    hh = int(m.group('hh'))
    if hh not in fmt.key_lengths:
        raise BadSecret(
            f'the hash indicator {m.group("hh")} is not {_either(f"{n:02d}" for n in fmt.key_lengths)}'
        )
    try:
        raw = base64.b64decode(m.group('key'), validate=True)
    except (binascii.Error, ValueError):
        raise BadSecret('the key part is not valid base64') from None
    key, crc = raw[:-CRC_SIZE], raw[-CRC_SIZE:]
    accepted = fmt.key_lengths[hh]
    if len(key) not in accepted:
        if fmt.lengths_depend_on_hh:
            raise BadSecret(
                f'the key is {len(key)} bytes; with hash indicator {hh:02d} it must be {_either(accepted)}'
            )
        # where hh does not decide the length, the message counts all the key part decodes to,
        # CRC included: a string cut short may not even hold a whole CRC
        raise BadSecret(
            f'the key part decodes to {len(raw)} bytes, not {_either(n + CRC_SIZE for n in accepted)}'
        )
    if int.from_bytes(crc, 'little') != binascii.crc32(key):
        raise BadSecret("the CRC-32 at the key's end does not match the key")
    return hh, key


def _either(choices: Iterable[object]) -> str:
    """``a``, ``a or b``, ``a, b or c``..."""
    *most, last = [str(choice) for choice in choices]
    return f'{", ".join(most)} or {last}' if most else last
