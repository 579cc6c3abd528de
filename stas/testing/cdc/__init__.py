"""A userspace NVMe/TCP discovery controller for tests: a central discovery controller (or a
direct one) that the kernel's NVMe/TCP host, or the small host in ``host.py``, connects to.

Modules, each owning one thing:

* ``crc32c``: the digest checksum.
* ``pdu``: NVMe/TCP PDU framing, bounded parsing and named framing errors.
* ``sqe``: commands, completions, opcodes and status codes.
* ``connect``, ``identify``, ``log_pages``, ``dim``: the byte layouts of Connect data,
  Identify Controller, the discovery and Supported Log Pages pages, and DIM data.
* ``auth``: DH-HMAC-CHAP (in-band authentication): secrets, responses, messages, and both sides
  of an exchange.
* ``service``: what all connections share (zones, referrals, GENCTR, registrations, faults,
  the DH-HMAC-CHAP secrets per host).
* ``controller``: one connection, without I/O.
* ``server``: the asyncio server and the in-process control API (``CdcServer``).
* ``control``: the same control over a line-delimited JSON unix socket, and its client.
* ``host``: a minimal NVMe/TCP host for tests on machines without the kernel's.

``python -m stas.testing.cdc --help`` runs one as a process.
"""
