"""Finding a keyring by name in /proc/keys, and what filing a PSK says when it cannot."""

from __future__ import annotations

import pytest

from stas.errors import KernelError
from stas.workers import keyring_io

PROC_KEYS = """\
0a1b2c3d I--Q---     1 perm 3f030000     0     0 keyring   .nvme: 2
1f00aa01 I--Q---     2 perm 3f010000     0     0 keyring   my ring: empty
2200bb02 I--Q---     1 perm 3f010000     0     0 psk       NVMe0R01 nqn.host nqn.sub: 32
33cc0003 I--Q---     1 perm 3f010000     0     0 keyring   _ses: 1
"""


@pytest.fixture
def proc_keys(tmp_path):
    path = tmp_path / 'keys'
    path.write_text(PROC_KEYS)
    return str(path)


def test_a_keyring_is_found_by_its_description(proc_keys) -> None:
    assert keyring_io.find_keyring('.nvme', proc_keys) == 0x0A1B2C3D
    assert keyring_io.find_keyring('my ring', proc_keys) == 0x1F00AA01


def test_a_serial_is_taken_as_given(proc_keys) -> None:
    assert keyring_io.find_keyring('0x1f00aa01', proc_keys) == 0x1F00AA01
    assert keyring_io.find_keyring('12345', proc_keys) == 12345


def test_a_missing_keyring_is_named(proc_keys, tmp_path) -> None:
    with pytest.raises(KernelError, match=r"no keyring 'NVMe0R01 nqn.host nqn.sub'"):
        keyring_io.find_keyring('NVMe0R01 nqn.host nqn.sub', proc_keys)  # a key, not a keyring
    empty = tmp_path / 'empty'
    empty.write_text('')
    with pytest.raises(KernelError, match='the kernel has no .nvme keyring .*nvme-keyring'):
        keyring_io.find_keyring('.nvme', str(empty))
    with pytest.raises(KernelError, match=r"cannot read .* to find keyring '.nvme'"):
        keyring_io.find_keyring('.nvme', str(tmp_path / 'absent'))


def test_filing_without_the_psk_key_type_says_so() -> None:
    """This machine's kernel has no NVMe: no "psk" key type (the guest's tests file real ones)."""
    with pytest.raises(KernelError) as raised:
        keyring_io.file_psk(-2, 'NVMe0R01 nqn.host nqn.sub', b'\x01' * 32)  # the process keyring
    assert str(raised.value).startswith('cannot file the TLS PSK "NVMe0R01 nqn.host nqn.sub" in keyring -2: ')
    assert '\x01' not in str(raised.value)
