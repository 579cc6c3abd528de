"""The one parser of NVMe secret strings (stas.fabric.nvme_secrets): DH-HMAC-CHAP secrets and TLS
PSKs in the interchange format, each way a string can be wrong named, and never the secret in
what is said about it."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stas.fabric import nvme_secrets
from stas.fabric.nvme_secrets import DHCHAP_SECRET, BadSecret, SecretFormat, parse
from stas.fabric.tls_psk import INTERCHANGE as TLS_PSK


def written(prefix: str, hh: str, key: bytes, crc_of: bytes = b'') -> str:
    """A secret as nvme-cli writes one: the key and its CRC-32 (little endian), base64."""
    crc = struct.pack('<I', zlib.crc32(crc_of or key))
    return f'{prefix}:{hh}:' + base64.b64encode(key + crc).decode() + ':'


KEY32 = bytes(range(32))
KEY48 = bytes(range(100, 148))
KEY64 = bytes(range(150, 214))


@pytest.mark.parametrize('hh', ['00', '01', '02', '03'])
@pytest.mark.parametrize('key', [KEY32, KEY48, KEY64])
def test_a_dhchap_secret_of_any_hh_and_length_parses(hh, key) -> None:
    assert parse(written('DHHC-1', hh, key), DHCHAP_SECRET) == (int(hh), key)


@pytest.mark.parametrize(('hh', 'key'), [('00', KEY32), ('00', KEY48), ('01', KEY32), ('02', KEY48)])
def test_a_tls_psk_parses_with_the_lengths_its_hh_takes(hh, key) -> None:
    assert parse(written('NVMeTLSkey-1', hh, key), TLS_PSK) == (int(hh), key)


def test_only_the_lengths_of_the_tls_psk_depend_on_hh() -> None:
    assert TLS_PSK.lengths_depend_on_hh and not DHCHAP_SECRET.lengths_depend_on_hh


GOOD_DHCHAP = written('DHHC-1', '01', KEY32)
GOOD_KEY_PART = GOOD_DHCHAP.split(':')[2]
# digits to str.isdigit() and int(), but hh is two ASCII digits
ARABIC_INDIC_01 = '\u0660\u0661'

BAD = [
    # the shape
    ('', DHCHAP_SECRET, 'not a DH-HMAC-CHAP secret'),
    (written('NVMeTLSkey-1', '01', KEY32), DHCHAP_SECRET, 'not a DH-HMAC-CHAP secret'),
    (written('DHHC-1', '01', KEY32), TLS_PSK, 'not a TLS PSK in the interchange format'),
    (written('DHHC-2', '01', KEY32), DHCHAP_SECRET, 'not a DH-HMAC-CHAP secret'),
    (GOOD_DHCHAP[:-1], DHCHAP_SECRET, 'not a DH-HMAC-CHAP secret'),  # no closing colon
    (GOOD_DHCHAP + ':', DHCHAP_SECRET, 'not a DH-HMAC-CHAP secret'),
    (' ' + GOOD_DHCHAP, DHCHAP_SECRET, 'not a DH-HMAC-CHAP secret'),
    (GOOD_DHCHAP + '\n', DHCHAP_SECRET, 'not a DH-HMAC-CHAP secret'),
    ('DHHC-1:01::', DHCHAP_SECRET, 'not a DH-HMAC-CHAP secret'),
    ('DHHC-1:1:' + GOOD_KEY_PART + ':', DHCHAP_SECRET, 'not a DH-HMAC-CHAP secret'),
    ('DHHC-1:x1:' + GOOD_KEY_PART + ':', DHCHAP_SECRET, 'not a DH-HMAC-CHAP secret'),
    ('DHHC-1:' + ARABIC_INDIC_01 + ':' + GOOD_KEY_PART + ':', DHCHAP_SECRET, 'not a DH-HMAC-CHAP secret'),
    ('DHHC-1:01:' + GOOD_KEY_PART[:-4] + '!!!!:', DHCHAP_SECRET, 'not a DH-HMAC-CHAP secret'),
    # hh
    (written('DHHC-1', '04', KEY32), DHCHAP_SECRET, 'the hash indicator 04 is not 00, 01, 02 or 03'),
    (written('NVMeTLSkey-1', '03', KEY32), TLS_PSK, 'the hash indicator 03 is not 00, 01 or 02'),
    # base64
    ('DHHC-1:01:AAAA=A:', DHCHAP_SECRET, 'the key part is not valid base64'),
    ('DHHC-1:01:AAAAA:', DHCHAP_SECRET, 'the key part is not valid base64'),
    ('DHHC-1:01:=AAA:', DHCHAP_SECRET, 'the key part is not valid base64'),
    # the key's length
    ('DHHC-1:01:YWJj:', DHCHAP_SECRET, 'the key part decodes to 3 bytes, not 36, 52 or 68'),
    (
        written('DHHC-1', '00', KEY32[:31]),
        DHCHAP_SECRET,
        'the key part decodes to 35 bytes, not 36, 52 or 68',
    ),
    (
        written('DHHC-1', '00', KEY64 + b'x'),
        DHCHAP_SECRET,
        'the key part decodes to 69 bytes, not 36, 52 or 68',
    ),
    (
        written('NVMeTLSkey-1', '00', KEY64),
        TLS_PSK,
        'the key is 64 bytes; with hash indicator 00 it must be 32 or 48',
    ),
    (
        written('NVMeTLSkey-1', '01', KEY48),
        TLS_PSK,
        'the key is 48 bytes; with hash indicator 01 it must be 32',
    ),
    (
        written('NVMeTLSkey-1', '02', KEY32),
        TLS_PSK,
        'the key is 32 bytes; with hash indicator 02 it must be 48',
    ),
    ('NVMeTLSkey-1:01:YWJj:', TLS_PSK, 'the key is 0 bytes; with hash indicator 01 it must be 32'),
    # the CRC
    (
        written('DHHC-1', '01', KEY32, crc_of=KEY48),
        DHCHAP_SECRET,
        "the CRC-32 at the key's end does not match the key",
    ),
    (
        written('NVMeTLSkey-1', '02', KEY48, crc_of=KEY32),
        TLS_PSK,
        "the CRC-32 at the key's end does not match the key",
    ),
]


@pytest.mark.parametrize(('text', 'fmt', 'why'), BAD)
def test_a_bad_string_is_named_without_its_secret(text, fmt, why) -> None:
    with pytest.raises(BadSecret) as raised:
        parse(text, fmt)
    assert str(raised.value) == why
    key_part = text.split(':')[2] if text.count(':') >= 3 else ''
    assert not key_part or key_part not in str(raised.value)


def test_a_key_changed_after_its_crc_is_refused() -> None:
    raw = bytearray(base64.b64decode(GOOD_KEY_PART))
    raw[0] ^= 1
    changed = 'DHHC-1:01:' + base64.b64encode(bytes(raw)).decode() + ':'
    with pytest.raises(BadSecret, match='CRC-32'):
        parse(changed, DHCHAP_SECRET)


def test_a_format_lists_what_it_accepts_in_its_messages() -> None:
    odd = SecretFormat('X-1', 'an odd secret', {5: (16,)})
    with pytest.raises(BadSecret, match=r'^the hash indicator 00 is not 05$'):
        parse(written('X-1', '00', bytes(16)), odd)
    with pytest.raises(BadSecret, match=r'^the key part decodes to 21 bytes, not 20$'):
        parse(written('X-1', '05', bytes(17)), odd)
    assert parse(written('X-1', '05', bytes(16)), odd) == (5, bytes(16))


def test_the_crc_is_of_the_key_alone() -> None:
    assert nvme_secrets.CRC_SIZE == 4
    raw = base64.b64decode(GOOD_KEY_PART)
    assert raw[-4:] == struct.pack('<I', zlib.crc32(raw[:-4]))


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.sampled_from(['DHHC-1', 'NVMeTLSkey-1']),
    hh=st.sampled_from(['00', '01', '02', '03', '07']),
    key=st.binary(min_size=1, max_size=80),
    crc_ok=st.booleans(),
)
def test_no_message_holds_the_key_or_its_base64(prefix, hh, key, crc_ok) -> None:
    text = written(prefix, hh, key, crc_of=b'' if crc_ok else key + b'!')
    key_part = text.split(':')[2]
    for fmt in (DHCHAP_SECRET, TLS_PSK):
        try:
            parsed = parse(text, fmt)
        except BadSecret as exc:
            message = str(exc)
            assert key_part not in message and text not in message
            assert len(key) < 4 or key.hex() not in message
        else:
            assert parsed == (int(hh), key)
