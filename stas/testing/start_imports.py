"""What a daemon's processes import as they start, as Python source for a fresh interpreter.

The import tests and ``bench/start_imports.py`` run these in a new interpreter and read what it
loaded. They follow ``stas.supervisor.main.main()``:

1. before the forkserver is forked: the entry point, its command line and the spawner, then
   (``shared``) the modules both sides need (``spawner.SHARED`` of the workers' engine);
2. then one side of the fork:
   - the supervisor: its daemon loop, D-Bus objects and role, and what it loads as it starts
     (the rtnetlink codecs; stafd's firmware tables);
   - the forkserver: what it preloads for its workers (``spawner.PRELOAD`` of the engine).

The source ends with no output of its own: the caller appends what it reports.
"""

from __future__ import annotations


def before_fork(engine: str, *, shared: bool = True) -> str:
    """What ``main()`` imports before it forks the forkserver of ``engine``'s workers."""
    code = (
        'import importlib, json, sys\n'
        'import stas.supervisor.main, stas.supervisor.cli_args\n'
        'from stas.supervisor import spawner\n'
    )
    if shared:
        code += f'for name in spawner.SHARED[{engine!r}]:\n    importlib.import_module(name)\n'
    return code


def supervisor_side(daemon: str) -> str:
    """What ``daemon``'s supervisor imports after the fork, until its event loop runs."""
    code = (
        f'import stas.supervisor.daemon, stas.dbus.objects, stas.{daemon}.role\n'
        'from stas.supervisor import netlink\n'
        'netlink._load_codecs()\n'
    )
    if daemon == 'stafd':
        code += 'import stas.stafd.nbft_source\n'
    return code


def forkserver_side(engine: str) -> str:
    """What the forkserver of ``engine``'s workers imports after the fork."""
    return f'spawner._preload(spawner.PRELOAD[{engine!r}])\n'


def supervisor_start(daemon: str) -> str:
    """Everything ``daemon``'s supervisor imports before its event loop runs."""
    return before_fork(daemon) + supervisor_side(daemon)
