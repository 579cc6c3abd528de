"""Supervisor <-> worker IPC: messages (``messages``), the framed msgpack codec (``codec``) and
an asyncio channel over a socketpair (``channel``).

Nothing is imported here on purpose: ``stas.ipc.codec`` and ``stas.ipc.messages`` are pure and
must stay importable without pulling in asyncio through this package.
"""
