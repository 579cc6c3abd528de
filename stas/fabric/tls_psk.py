"""NVMe/TCP TLS pre-shared keys: the PSK interchange format an admin configures, and the key the
kernel's TLS handshake uses, derived from it for one host and one subsystem.

An interchange string ``NVMeTLSkey-1:<hh>:<base64 of key + CRC-32>:`` holds a configured PSK of
32 or 48 bytes. ``hh`` says how the retained PSK is made from it: 00 the configured PSK is
used as is, 01 through HKDF with SHA-256, 02 with SHA-384 (the key is then 32 or 48 bytes).
The TLS PSK the handshake uses is derived from the retained one and the key's identity, the
string ``NVMe0R<cc> <host NQN> <subsystem NQN>`` under which it is filed in the kernel's
``.nvme`` keyring (``cc`` is the cipher suite's hash: 01 SHA-256, 02 SHA-384, the key's
length deciding for hh=00). Both derivations are HKDF-Extract with no salt and HKDF-Expand
with a TLS 1.3 style label (RFC 8446's HkdfLabel): "tls13 HostNQN" with the host NQN for the
retained PSK, "tls13 nvme-tls-psk" with the identity for the TLS PSK: the derivation nvme-cli's
``--insert`` follows, so that a target provisioned with nvme-cli from the same string and a host
provisioned by the daemons file the same key.

Pure: no I/O. The worker's ``keyring_io`` files the result in the keyring.
"""

from __future__ import annotations

import struct
from typing import Tuple

from ..record import record
from . import nvme_secrets

ACCEPTED = (
    'NVMeTLSkey-1:<00|01|02>:<base64 of a 32 or 48 byte key and its CRC-32>: '
    '(e.g. from "nvme gen-tls-key"; 01 needs a 32 byte key, 02 a 48 byte one)'
)
# hh / cipher code -> hashlib's name of the hash. hashlib and hmac are imported only where a key
# is derived (in a worker): they load libcrypto, which a supervisor that only checks the strings
# need not map.
_HASHES = {1: 'sha256', 2: 'sha384'}
# a transformed key is as long as its hash's output
INTERCHANGE = nvme_secrets.SecretFormat(
    'NVMeTLSkey-1', 'a TLS PSK in the interchange format', {0: (32, 48), 1: (32,), 2: (48,)}
)

# an interchange string that is not one; the message never holds the key
BadPsk = nvme_secrets.BadSecret


@record
class ConfiguredPsk:
    """A configured PSK: ``transform`` (the interchange string's hh) and the key bytes."""

    transform: int
    key: bytes

    def __repr__(self) -> str:  # never the key, whatever prints it
        return f'ConfiguredPsk(transform={self.transform:02d}, {len(self.key)} bytes)'

    @property
    def cipher(self) -> int:
        """The identity's hash code: the transform's, or for hh=00 the one the length implies."""
        return self.transform or (1 if len(self.key) == 32 else 2)


def parse_interchange(text: str) -> ConfiguredPsk:
    """The configured PSK of an interchange string. Raises ``BadPsk`` naming what is wrong."""
    transform, key = nvme_secrets.parse(text.strip(), INTERCHANGE)
    return ConfiguredPsk(transform, key)


def _hkdf(hash_name: str, key: bytes, label: str, context: bytes, length: int) -> bytes:
    """HKDF-Extract (no salt) then HKDF-Expand with the info ``uint16 length, uint8 len, label,
    uint8 len, context``."""
    import hashlib
    import hmac

    digest = getattr(hashlib, hash_name)
    prk = hmac.new(b'\0' * digest().digest_size, key, digest).digest()
    info = struct.pack('>H', length) + bytes([len(label)]) + label.encode() + bytes([len(context)]) + context
    out, block, counter = b'', b'', 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), digest).digest()
        out += block
        counter += 1
    return out[:length]


def retained_psk(psk: ConfiguredPsk, hostnqn: str) -> bytes:
    """The retained PSK this host keeps from ``psk``."""
    if psk.transform == 0:
        return psk.key
    return _hkdf(_HASHES[psk.transform], psk.key, 'tls13 HostNQN', hostnqn.encode(), len(psk.key))


def identity(psk: ConfiguredPsk, hostnqn: str, subnqn: str) -> str:
    """The keyring description (TLS PSK identity) of ``psk`` for this host and subsystem."""
    return f'NVMe0R{psk.cipher:02d} {hostnqn} {subnqn}'


def tls_psk(psk: ConfiguredPsk, hostnqn: str, subnqn: str) -> Tuple[str, bytes]:
    """``(identity, TLS PSK)``: what is filed in the keyring for a TLS connection of ``hostnqn``
    to ``subnqn``."""
    name = identity(psk, hostnqn, subnqn)
    retained = retained_psk(psk, hostnqn)
    return name, _hkdf(_HASHES[psk.cipher], retained, 'tls13 nvme-tls-psk', name.encode(), len(psk.key))
