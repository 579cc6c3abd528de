"""Host name lookups for configured controllers, off the event loop.

nvme-stas 2.x accepts a host name as the ``traddr`` of a tcp/rdma ``controller=`` entry and
resolves it before connecting (the kernel takes IP literals only). The supervisor does the
same before each planning pass: every name is looked up once per pass, all names at once,
through ``loop.getaddrinfo`` (a thread of the default executor), so D-Bus requests, worker
reports and signals keep being served while a slow DNS server answers. Which address is used,
and what happens to a name that does not resolve, is policy (``stas.supervisor.policy``).

A lookup is not cached across passes: a reload (or a replan after a referral change) sees a
name's current addresses, as 2.x does on each configuration pass.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional, Tuple

from .policy import Resolved

# Longer than glibc's default (5 s per server, 2 attempts) would make a pass wait on a dead
# DNS server for no gain; the name is looked up again at the next pass anyway.
LOOKUP_TIMEOUT_S = 10.0

GetAddrInfo = Callable[..., Awaitable[List[Tuple[Any, ...]]]]


async def _lookup_one(name: str, getaddrinfo: GetAddrInfo, timeout_s: float) -> Resolved:
    try:
        infos = await asyncio.wait_for(getaddrinfo(name, None, type=socket.SOCK_STREAM), timeout_s)
    except asyncio.TimeoutError:
        return (), f'no answer within {timeout_s:g} s'
    except socket.gaierror as exc:
        return (), exc.strerror or str(exc)
    except (OSError, UnicodeError) as exc:
        return (), str(exc)
    addresses: List[str] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            address = str(sockaddr[0])
            if address not in addresses:
                addresses.append(address)
    return tuple(addresses), ('' if addresses else 'no IPv4 or IPv6 address')


async def lookup(
    names: Iterable[str],
    *,
    timeout_s: float = LOOKUP_TIMEOUT_S,
    getaddrinfo: Optional[GetAddrInfo] = None,
) -> Dict[str, Resolved]:
    """Each of ``names`` -> (its addresses in resolver order, '') or ((), why it failed).

    All lookups run concurrently; none raises. ``getaddrinfo`` replaces the loop's (tests)."""
    unique = list(dict.fromkeys(names))
    if not unique:
        return {}
    if getaddrinfo is None:
        getaddrinfo = asyncio.get_running_loop().getaddrinfo
    results = await asyncio.gather(*(_lookup_one(n, getaddrinfo, timeout_s) for n in unique))
    return dict(zip(unique, results))


__all__ = ['LOOKUP_TIMEOUT_S', 'lookup']
