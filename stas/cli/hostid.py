"""Where a host NQN and a host ID come from.

The host NQN has the UUID form ``nqn.2014-08.org.nvmexpress:uuid:<UUID>``. The UUID is taken
from the first source that gives one, in the same order as nvme-stas 2.x so that a host keeps
the NQN it would have had there:

1. ``/etc/machine-id``, never used as is: machine-id(5) asks applications to derive their own ID
   from it with a keyed hash. The key is ``b'$nvmexpress.org$'``, the hash HMAC-SHA256 over the 16
   bytes of the machine ID; the first 16 bytes of the digest become a version-4 UUID (the same
   recipe as systemd's ``sd_id128_get_machine_app_specific()``).
2. ``/sys/class/dmi/id/product_uuid`` (root only), with its first three groups byte-swapped as
   SMBIOS stores them little-endian (DMTF SMBIOS 3.0, 7.2.1). The all-zero and all-ones values,
   which SMBIOS defines as "no ID", are skipped.
3. ``/proc/device-tree/ibm,partition-uuid`` (POWER partitions).
4. A random UUID.

Each source is validated (a garbled machine-id or product_uuid falls through to the next source
instead of ending the program), and UUIDs are written in the canonical lower-case form.

Paths, the privilege check and the random generator are parameters so that tests can feed
temporary files.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid
from typing import Callable, Optional

from ..errors import InvalidArgument, PermissionDenied
from ..model import NQN_MAX_LEN
from ..record import record

NQN_UUID_PREFIX = 'nqn.2014-08.org.nvmexpress:uuid:'
MACHINE_APP_KEY = b'$nvmexpress.org$'

# A UUID file holds 36 characters and a newline; anything much longer is not a UUID.
_MAX_READ = 256
_NO_ID_VALUES = frozenset({uuid.UUID(int=0), uuid.UUID(int=(1 << 128) - 1)})


@record
class IdentitySources:
    """The files a host UUID may be derived from, in order of preference."""

    machine_id: str = '/etc/machine-id'
    product_uuid: str = '/sys/class/dmi/id/product_uuid'
    partition_uuid: str = '/proc/device-tree/ibm,partition-uuid'


@record
class DerivedUuid:
    """A host UUID and the source it came from ('machine-id', 'product_uuid', 'partition-uuid', 'random')."""

    value: str
    source: str


def machine_app_specific_uuid(machine_id_text: str, app_key: bytes = MACHINE_APP_KEY) -> Optional[str]:
    """The application-specific UUID for a machine ID, or None if the text is not a machine ID.

    A machine ID is 32 hexadecimal digits (surrounding whitespace ignored). systemd writes
    'uninitialized' during first boot: that is not an ID.
    """
    text = machine_id_text.strip()
    if len(text) != 32:
        return None
    try:
        machine = uuid.UUID(hex=text)
    except ValueError:
        return None
    digest = hmac.new(app_key, machine.bytes, hashlib.sha256).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def smbios_uuid_to_network_order(text: str) -> Optional[str]:
    """Swap the first three groups of an SMBIOS system UUID, or None if it is no usable UUID."""
    parsed = _parse_uuid(text)
    if parsed is None or parsed in _NO_ID_VALUES:
        return None
    # bytes_le reverses the first three fields: exactly the SMBIOS swap.
    return str(uuid.UUID(bytes=parsed.bytes_le))


def partition_uuid(text: str) -> Optional[str]:
    """The canonical form of a device-tree partition UUID, or None if it is no usable UUID."""
    parsed = _parse_uuid(text)
    if parsed is None or parsed in _NO_ID_VALUES:
        return None
    return str(parsed)


def nqn_from_uuid(value: str) -> str:
    """The UUID-form host NQN for ``value``, validated."""
    nqn = NQN_UUID_PREFIX + value
    validate_host_nqn(nqn)
    return nqn


def validate_host_nqn(nqn: str) -> None:
    """Raise InvalidArgument unless ``nqn`` is an acceptable host NQN (as the daemons check it)."""
    if not nqn.startswith('nqn.'):
        raise InvalidArgument(f'host NQN {nqn!r} does not start with "nqn."')
    size = len(nqn.encode('utf-8'))
    if size > NQN_MAX_LEN:
        raise InvalidArgument(f'host NQN {nqn!r} is {size} bytes long; at most {NQN_MAX_LEN} are allowed')


def derive_host_uuid(
    sources: IdentitySources = IdentitySources(),
    *,
    geteuid: Callable[[], int] = os.geteuid,
    random_uuid: Callable[[], uuid.UUID] = uuid.uuid4,
) -> DerivedUuid:
    """The host UUID from the first usable source (see the module docstring).

    Raises PermissionDenied when the machine ID gives nothing and the caller is not root: the
    remaining system sources are readable by root only, and silently falling back to a random
    UUID would give the host an identity that changes with every run.
    """
    text = read_small_text(sources.machine_id)
    value = machine_app_specific_uuid(text) if text is not None else None
    if value:
        return DerivedUuid(value, 'machine-id')

    if geteuid() != 0:
        raise PermissionDenied(
            f'Permission denied: {sources.machine_id} holds no usable machine ID and reading '
            f'{sources.product_uuid} requires root privileges.'
        )

    text = read_small_text(sources.product_uuid)
    value = smbios_uuid_to_network_order(text) if text is not None else None
    if value:
        return DerivedUuid(value, 'product_uuid')

    text = read_small_text(sources.partition_uuid)
    value = partition_uuid(text) if text is not None else None
    if value:
        return DerivedUuid(value, 'partition-uuid')

    return DerivedUuid(str(random_uuid()), 'random')


def derive_host_nqn(
    sources: IdentitySources = IdentitySources(),
    *,
    geteuid: Callable[[], int] = os.geteuid,
    random_uuid: Callable[[], uuid.UUID] = uuid.uuid4,
) -> DerivedUuid:
    """The host NQN (in ``value``) and the source of its UUID."""
    derived = derive_host_uuid(sources, geteuid=geteuid, random_uuid=random_uuid)
    return DerivedUuid(nqn_from_uuid(derived.value), derived.source)


def new_host_id(random_uuid: Callable[[], uuid.UUID] = uuid.uuid4) -> str:
    """A new host ID: a random UUID, as nvme-stas 2.x generates it."""
    return str(random_uuid())


def read_small_text(path: str, limit: int = _MAX_READ) -> Optional[str]:
    """The first ``limit`` characters of a file, or None if it cannot be read.

    The sources above are optional by nature: a missing, unreadable or binary file simply
    means "try the next one".
    """
    try:
        with open(path, encoding='utf-8', errors='strict') as f:
            return f.read(limit)
    except (OSError, UnicodeDecodeError):
        return None


def _parse_uuid(text: str) -> Optional[uuid.UUID]:
    # Device-tree properties end with a NUL byte.
    text = text.strip().strip('\0').strip()
    if len(text) != 36:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
