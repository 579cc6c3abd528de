"""``python -m stas.testing.cdc``: a test discovery controller as a process of its own, driven
through its control socket (``control_client.CdcControl``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from typing import List, Optional

from .control import serve_control
from .identify import DCTYPES
from .log_pages import entry_from_dict
from .server import CdcServer
from .service import DiscoveryService


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='python -m stas.testing.cdc', description=__doc__)
    p.add_argument('--address', default='127.0.0.1', help='address to listen on (default 127.0.0.1)')
    p.add_argument('--port', type=int, default=8009, help='TCP port (default 8009; 0: any free one)')
    p.add_argument('--control', metavar='PATH', help='unix socket of the control API')
    p.add_argument('--dctype', choices=sorted(DCTYPES), default='cdc', help='DCTYPE reported (default cdc)')
    p.add_argument('--no-pleos', action='store_true', help='do not report PLEOS (port local entries only)')
    p.add_argument('--subnqn', help='a unique discovery subsystem NQN (default: the well-known one)')
    p.add_argument('--portid', type=int, default=1, help="this port's PORTID, for PLEO (default 1)")
    p.add_argument('--entries', metavar='FILE', help='JSON list of entries for the default zone')
    p.add_argument(
        '--host-keys',
        metavar='FILE',
        help='JSON object: host NQN -> [host secret, controller secret or ""]; these hosts must '
        'authenticate with DH-HMAC-CHAP (a file keeps the secrets off the command line)',
    )
    p.add_argument('-v', '--verbose', action='store_true')
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    service = DiscoveryService(dctype=DCTYPES[args.dctype], pleos=not args.no_pleos, portid=args.portid)
    if args.subnqn:
        service.subnqn = args.subnqn
    if args.host_keys:
        with open(args.host_keys) as f:
            for hostnqn, (host_secret, ctrl_secret) in json.load(f).items():
                service.set_host_keys(hostnqn, host_secret, ctrl_secret)
    if args.entries:
        with open(args.entries) as f:
            service.set_entries([entry_from_dict(d) for d in json.load(f)])
    server = await CdcServer(service, args.address, args.port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    control = await serve_control(server, args.control, stop) if args.control else None
    print(f'test CDC listening on {args.address} port {server.port}, control {args.control}', flush=True)
    try:
        await stop.wait()
    finally:
        if control is not None:
            control.close()
        await server.stop()


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr)
    asyncio.run(run(args))
    return 0


if __name__ == '__main__':
    sys.exit(main())
