"""TLS PSKs from the interchange format: parsing with named errors that never show the key, and
the derivation of the retained and TLS PSKs, checked against an HKDF that is not ours (the
cryptography package's) with the labels written out here as the NVMe/TCP rules give them."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from stas.fabric import tls_psk

HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:0c468c4d-a385-47e0-8299-6e95051277db'
SUBNQN = 'nqn.2014-08.org.nvmexpress:sub1'


def interchange(hh: str, key: bytes, crc_of: bytes = b'') -> str:
    crc = zlib.crc32(crc_of or key)
    return f'NVMeTLSkey-1:{hh}:' + base64.b64encode(key + struct.pack('<I', crc)).decode() + ':'


KEY32 = bytes(range(32))
KEY48 = bytes(range(100, 148))


def their_hkdf(algorithm, ikm: bytes, label: bytes, context: bytes, length: int) -> bytes:
    info = struct.pack('>H', length) + bytes([len(label)]) + label + bytes([len(context)]) + context
    return HKDF(algorithm=algorithm, length=length, salt=None, info=info).derive(ikm)


@pytest.mark.parametrize(
    ('hh', 'key', 'algorithm', 'cipher'),
    [
        ('01', KEY32, hashes.SHA256(), '01'),
        ('02', KEY48, hashes.SHA384(), '02'),
    ],
)
def test_a_transformed_key_derives_as_the_rules_say(hh, key, algorithm, cipher) -> None:
    psk = tls_psk.parse_interchange(interchange(hh, key))
    retained = their_hkdf(algorithm, key, b'tls13 HostNQN', HOSTNQN.encode(), len(key))
    assert tls_psk.retained_psk(psk, HOSTNQN) == retained
    identity, derived = tls_psk.tls_psk(psk, HOSTNQN, SUBNQN)
    assert identity == f'NVMe0R{cipher} {HOSTNQN} {SUBNQN}'
    assert derived == their_hkdf(algorithm, retained, b'tls13 nvme-tls-psk', identity.encode(), len(key))
    assert derived != retained and len(derived) == len(key)


@pytest.mark.parametrize(
    ('key', 'algorithm', 'cipher'), [(KEY32, hashes.SHA256(), '01'), (KEY48, hashes.SHA384(), '02')]
)
def test_an_untransformed_key_is_its_own_retained_key_and_its_length_picks_the_hash(
    key, algorithm, cipher
) -> None:
    psk = tls_psk.parse_interchange(interchange('00', key))
    assert tls_psk.retained_psk(psk, HOSTNQN) == key
    identity, derived = tls_psk.tls_psk(psk, HOSTNQN, SUBNQN)
    assert identity == f'NVMe0R{cipher} {HOSTNQN} {SUBNQN}'
    assert derived == their_hkdf(algorithm, key, b'tls13 nvme-tls-psk', identity.encode(), len(key))


def test_the_psk_depends_on_the_host_and_the_subsystem() -> None:
    psk = tls_psk.parse_interchange(interchange('01', KEY32))
    one = tls_psk.tls_psk(psk, HOSTNQN, SUBNQN)[1]
    assert tls_psk.tls_psk(psk, HOSTNQN + 'x', SUBNQN)[1] != one
    assert tls_psk.tls_psk(psk, HOSTNQN, SUBNQN + 'x')[1] != one


@pytest.mark.parametrize(
    ('text', 'why'),
    [
        (
            'DHHC-1:00:' + base64.b64encode(KEY32 + b'\0' * 4).decode() + ':',
            'not a TLS PSK in the interchange format',
        ),
        (interchange('03', KEY32), 'the hash indicator 03 is not 00, 01 or 02'),
        (interchange('01', KEY48), 'the key is 48 bytes; with hash indicator 01 it must be 32'),
        (interchange('02', KEY32), 'the key is 32 bytes; with hash indicator 02 it must be 48'),
        (interchange('00', KEY32[:31]), 'the key is 31 bytes; with hash indicator 00 it must be 32 or 48'),
        (interchange('01', KEY32, crc_of=KEY48), "the CRC-32 at the key's end does not match the key"),
        ('NVMeTLSkey-1:01:AAAA=A:', 'the key part is not valid base64'),
        ('NVMeTLSkey-1:01:', 'not a TLS PSK in the interchange format'),
    ],
)
def test_a_bad_string_is_named_without_its_key(text, why) -> None:
    with pytest.raises(tls_psk.BadPsk) as raised:
        tls_psk.parse_interchange(text)
    assert str(raised.value) == why
    middle = text.split(':')[2] if text.count(':') >= 3 else ''
    assert not middle or middle not in str(raised.value)


def test_a_configured_psk_never_shows_its_key() -> None:
    psk = tls_psk.parse_interchange(interchange('01', KEY32))
    assert repr(psk) == 'ConfiguredPsk(transform=01, 32 bytes)'
    assert KEY32.hex() not in repr(psk) and str(list(KEY32)) not in repr(psk)
