"""What every connection of one test discovery controller shares: the log page contents per
host (zoning), referrals, the generation counter, registrations, injected faults, settings
(DCTYPE, PLEOS, port), the DH-HMAC-CHAP secrets per host and a record of the commands received.

Zoning: a host NQN with a zone of its own sees that zone's entries; every other host sees the
default zone. Referrals follow the zone entries on every host's page. GENCTR is one counter
for the whole controller, bumped by every change of any zone or of the referrals; a connected
host whose page content changed is told through its session (``log_changed``), which turns it
into an asynchronous event when the host allows one.

Authentication: a host NQN with secrets (``set_host_keys``) must authenticate with DH-HMAC-CHAP
after its Connect; the others need not. A change applies from the host's next Connect on.

Nothing here does I/O: the server (or a unit test) owns the sessions' sockets.
"""

from __future__ import annotations

import collections
from typing import Deque, Dict, Iterable, List, Optional, Protocol, Set, Tuple

from ...model import WELL_KNOWN_DISC_NQN
from ...record import record
from .auth import HostKeys, host_keys
from .identify import DCTYPE_CDC, DCTYPES
from .log_pages import Entry
from .sqe import DNR, SC_INTERNAL

MAX_CNTLID = 0xFFEF  # FFF0h and above have special meanings
FAULT_ACTIONS = ('status', 'close', 'ignore')


class Session(Protocol):
    hostnqn: str

    def log_changed(self) -> None: ...


@record
class Registration:
    """A host's DIM registration. ``traddr``/``adrfam``: the address the connection came from
    (what the host claimed is ``claimed_traddr``, often empty: "the address you see")."""

    hostnqn: str
    traddr: str
    adrfam: int
    trtype: int
    trsvcid: str
    hostid: str
    symname: str
    claimed_traddr: str
    entity_name: str
    entity_version: str
    cntlid: int
    task: str


@record
class Fault:
    """Answer commands with ``opcode`` (and, when set, Fabrics ``fctype`` or log page ``lid``)
    by ``action``: 'status' completes them with ``status``; 'close' drops the connection
    without answering; 'ignore' never answers. ``count``: how many commands, None for all."""

    opcode: int
    status: int = SC_INTERNAL | DNR
    fctype: Optional[int] = None
    lid: Optional[int] = None
    action: str = 'status'
    count: Optional[int] = None

    def __post_init__(self) -> None:
        if self.action not in FAULT_ACTIONS:
            raise ValueError(f'fault action {self.action!r}; accepted: {", ".join(FAULT_ACTIONS)}')
        if self.count is not None and self.count < 1:
            raise ValueError(f'fault count {self.count!r}: at least 1, or None for every command')
        if not 0 <= self.opcode <= 0xFF:
            raise ValueError(f'fault opcode {self.opcode!r}: from 0 to 0xff')
        if not 0 <= self.status <= 0x7FFF:
            raise ValueError(f'fault status {self.status!r}: a status field from 0 to 0x7fff')

    def matches(self, opcode: int, fctype: Optional[int], lid: Optional[int]) -> bool:
        return (
            self.opcode == opcode
            and (self.fctype is None or self.fctype == fctype)
            and (self.lid is None or self.lid == lid)
        )


@record(frozen=False)
class CommandSeen:
    """A command as received. ``status`` is None while it is held (an AER) or unanswered."""

    seq: int
    cntlid: int
    hostnqn: str
    opcode: int
    fctype: Optional[int] = None
    lid: Optional[int] = None
    lsp: int = 0
    rae: bool = False
    offset: int = 0
    length: int = 0
    status: Optional[int] = None


class DiscoveryService:
    def __init__(
        self,
        subnqn: str = WELL_KNOWN_DISC_NQN,
        dctype: int = DCTYPE_CDC,
        pleos: bool = True,
        portid: int = 1,
        max_seen: int = 10000,
        secrets: Optional[Dict[str, Tuple[str, str]]] = None,
    ) -> None:
        """``secrets``: host NQN -> (host secret, controller secret or ''), as ``set_host_keys``."""
        self.subnqn = subnqn
        self.dctype = dctype
        self.pleos = pleos
        self.portid = portid
        self.genctr = 0
        self._zones: Dict[Optional[str], Tuple[Entry, ...]] = {None: ()}
        self._referrals: Tuple[Entry, ...] = ()
        self.registrations: Dict[str, Registration] = {}
        self.faults: List[Fault] = []
        self.sessions: Set[Session] = set()
        self.seen: Deque[CommandSeen] = collections.deque(maxlen=max_seen)
        self._seq = 0
        self._next_cntlid = 1
        self._host_keys: Dict[str, HostKeys] = {}
        for hostnqn, (host_secret, ctrl_secret) in (secrets or {}).items():
            self.set_host_keys(hostnqn, host_secret, ctrl_secret)

    # ---- settings -------------------------------------------------------------------------------

    def set_dctype(self, dctype: object) -> None:
        """1 or 'ddc', 2 or 'cdc', 0 or 'none'; hosts see it at their next Identify."""
        if isinstance(dctype, str):
            if dctype not in DCTYPES:
                raise ValueError(f'dctype {dctype!r}; accepted: {", ".join(DCTYPES)} or 0, 1, 2')
            dctype = DCTYPES[dctype]
        if dctype not in DCTYPES.values():
            raise ValueError(f'dctype {dctype!r}; accepted: {", ".join(DCTYPES)} or 0, 1, 2')
        self.dctype = dctype

    def set_pleos(self, enabled: bool) -> None:
        self.pleos = bool(enabled)

    # ---- authentication ---------------------------------------------------------------------------

    def set_host_keys(self, hostnqn: str, host_secret: str, ctrl_secret: str = '') -> None:
        """From its next Connect on, ``hostnqn`` must authenticate with ``host_secret``; with
        ``ctrl_secret`` the controller can prove itself too, when the host asks. An empty
        ``host_secret``: no authentication. Secrets are ``DHHC-1:hh:<base64>:``; a malformed one
        raises ValueError (``auth.SecretError``)."""
        if not host_secret:
            if ctrl_secret:
                raise ValueError('a controller secret without a host secret')
            self._host_keys.pop(hostnqn, None)
            return
        self._host_keys[hostnqn] = host_keys(host_secret, ctrl_secret)

    def keys_for(self, hostnqn: str) -> Optional[HostKeys]:
        """The secrets ``hostnqn`` authenticates with; None: it need not."""
        return self._host_keys.get(hostnqn)

    # ---- log page contents ------------------------------------------------------------------

    def entries_for(self, hostnqn: str) -> Tuple[Entry, ...]:
        zone = self._zones.get(hostnqn, self._zones[None])
        return zone + self._referrals

    def zones(self) -> Dict[Optional[str], Tuple[Entry, ...]]:
        return dict(self._zones)

    @property
    def referrals(self) -> Tuple[Entry, ...]:
        return self._referrals

    def set_entries(self, entries: Iterable[Entry], hostnqn: Optional[str] = None) -> int:
        """Replace the entries of ``hostnqn``'s zone (None: the default zone). Returns GENCTR."""
        entries = _checked(entries)
        return self._change(lambda: self._zones.__setitem__(hostnqn, entries))

    def clear_zone(self, hostnqn: str) -> int:
        """``hostnqn`` sees the default zone again."""
        if hostnqn is None:
            raise ValueError('the default zone cannot be removed; set_entries([]) empties it')
        return self._change(lambda: self._zones.pop(hostnqn, None))

    def set_referrals(self, referrals: Iterable[Entry]) -> int:
        referrals = _checked(referrals)
        return self._change(lambda: setattr(self, '_referrals', referrals))

    def _change(self, apply) -> int:
        before = {s: self.entries_for(s.hostnqn) for s in self.sessions if s.hostnqn}
        apply()
        self.genctr = (self.genctr + 1) & 0xFFFFFFFFFFFFFFFF
        for session, old in before.items():
            if self.entries_for(session.hostnqn) != old:
                session.log_changed()
        return self.genctr

    # ---- connections ----------------------------------------------------------------------------

    def new_cntlid(self) -> int:
        cntlid = self._next_cntlid
        self._next_cntlid = cntlid % MAX_CNTLID + 1
        return cntlid

    def attach(self, session: Session) -> None:
        self.sessions.add(session)

    def detach(self, session: Session) -> None:
        self.sessions.discard(session)

    # ---- registrations --------------------------------------------------------------------------

    def register(self, registration: Registration) -> None:
        self.registrations[registration.hostnqn] = registration

    def deregister(self, hostnqn: str) -> bool:
        return self.registrations.pop(hostnqn, None) is not None

    # ---- faults ---------------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        self.faults.append(fault)

    def clear_faults(self) -> None:
        self.faults.clear()

    def take_fault(self, opcode: int, fctype: Optional[int], lid: Optional[int]) -> Optional[Fault]:
        """The first fault matching the command, counted as used once."""
        for i, fault in enumerate(self.faults):
            if fault.matches(opcode, fctype, lid):
                if fault.count is not None:
                    if fault.count <= 1:
                        del self.faults[i]
                    else:
                        self.faults[i] = Fault(
                            fault.opcode, fault.status, fault.fctype, fault.lid, fault.action, fault.count - 1
                        )
                return fault
        return None

    # ---- what was received ----------------------------------------------------------------------

    def saw(self, **fields) -> CommandSeen:
        self._seq += 1
        seen = CommandSeen(seq=self._seq, **fields)
        self.seen.append(seen)
        return seen

    def answered(self, seen: CommandSeen, status: int) -> None:
        """Record the status a command was completed with."""
        seen.status = status

    def commands_since(self, seq: int = 0) -> List[CommandSeen]:
        return [c for c in self.seen if c.seq > seq]


def _checked(entries: Iterable[Entry]) -> Tuple[Entry, ...]:
    out = tuple(entries)
    for e in out:
        if not isinstance(e, Entry):
            raise TypeError(f'{e!r} is not a log page Entry')
    return out
