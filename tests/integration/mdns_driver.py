"""Runs ``AvahiBrowser`` for one interface and prints every list it reports as a JSON line.

Started by test_mdns_avahi.py inside the stafd side's network namespace (the browser's
interface and its TCP reachability checks live there). Each stdin line is a command:
``stypes <t1,t2|->`` and ``families <ipv4,ipv6>`` reconfigure the browser; EOF stops it.
Usage: python mdns_driver.py IFACE [RETRY_DELAYS_S, comma separated]
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sys

from stas.fabric.mdns import NVME_DISC_STYPES
from stas.workers.mdns_io import AvahiBrowser


def emit(msg) -> None:
    print(json.dumps([dataclasses.asdict(s) for s in msg.services]), flush=True)
    print(f'reported avahi={msg.avahi}', file=sys.stderr, flush=True)


async def main(iface: str, delays) -> None:
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format='%(levelname)s %(message)s')
    browser = AvahiBrowser(
        iface, emit, discovery_nqn_supported=True, retry_delays=delays, kick_interval_s=1.0
    )
    stypes, families = NVME_DISC_STYPES, ('ipv4', 'ipv6')
    browser.configure(stypes, families)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode()
        if not line:
            break
        cmd, _, arg = line.strip().partition(' ')
        values = () if arg in ('', '-') else tuple(arg.split(','))
        if cmd == 'stypes':
            stypes = values
        elif cmd == 'families':
            families = values
        browser.configure(stypes, families)
    await browser.close()


if __name__ == '__main__':
    retry = tuple(float(x) for x in sys.argv[2].split(',')) if len(sys.argv) > 2 else (5.0,)
    asyncio.run(main(sys.argv[1], retry))
