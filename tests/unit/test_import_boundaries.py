"""The import boundaries of the package, checked by importing every module of the
package in a fresh interpreter and looking at what it pulled in.

Pure layers must stay pure (no I/O libraries, no event loop), the supervisor never loads libnvme
or pyudev (a native crash there would take the whole daemon down), and the CLI stays light so
`stafctl ls` starts fast.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = ROOT / 'stas'

IO_LIBS = {'asyncio', 'socket', 'subprocess', 'sdbus', 'pyroute2', 'libnvme', 'pyudev', 'multiprocess'}

# module-name prefix -> modules it must never import (directly or indirectly)
RULES = {
    'stas.model': IO_LIBS | {'msgpack'},
    'stas.errors': IO_LIBS | {'msgpack'},
    'stas.fabric': IO_LIBS | {'msgpack'},
    'stas.conf': IO_LIBS | {'msgpack'},
    'stas.ipc.codec': IO_LIBS,
    'stas.ipc.messages': IO_LIBS,
    'stas.supervisor': {'libnvme', 'pyudev'},
    # each daemon's room, the D-Bus layer and the metrics live in the supervisor process too
    'stas.stafd': {'libnvme', 'pyudev'},
    'stas.stacd': {'libnvme', 'pyudev'},
    'stas.dbus': {'libnvme', 'pyudev'},
    'stas.metrics': {'libnvme', 'pyudev'},
    'stas.cli': {'libnvme', 'pyudev', 'pyroute2', 'multiprocess', 'asyncio', 'sdbus', 'prometheus_client'},
    # the fakes stand in for libnvme and pyudev: tests that use them run where neither is installed
    'stas.testing': {'libnvme', 'pyudev'},
    # the Protocols of the worker's I/O edges: every worker loads them
    'stas.workers.edges': IO_LIBS | {'msgpack'},
    # the D-Bus names: the daemons, the command-line tools and stacd's client of stafd share them
    'stas.dbus.contract': IO_LIBS | {'msgpack', 'jeepney'},
    # prometheus_client (some 170 modules) is loaded when metrics are first asked for: never on
    # the start path of a daemon or a tool, never in a worker
    'stas.supervisor.main': {'prometheus_client'},
    'stas.supervisor.daemon': {'prometheus_client'},
    'stas.dbus.objects': {'prometheus_client'},
    'stas.metrics.counters': {'prometheus_client'},
    'stas.metrics.textfile': {'prometheus_client'},
    'stas.workers': {'prometheus_client'},
}

# the test discovery controller's codec, byte layouts and connection state machine do no I/O:
# its server (stas.testing.cdc.server) owns the sockets
for _name in ('crc32c', 'pdu', 'sqe', 'connect', 'identify', 'log_pages', 'auth', 'service', 'controller'):
    RULES[f'stas.testing.cdc.{_name}'] = IO_LIBS | {'msgpack'}

# msgpack is the codec's business alone
MSGPACK_OWNER = 'stas.ipc.codec'


def all_modules() -> list[str]:
    mods = []
    for path in sorted(PACKAGE.rglob('*.py')):
        rel = path.relative_to(ROOT).with_suffix('')
        parts = list(rel.parts)
        if parts[-1] == '__init__':
            parts = parts[:-1]
        mods.append('.'.join(parts))
    return mods


def forbidden_for(module: str) -> set[str]:
    banned: set[str] = set()
    for prefix, libs in RULES.items():
        if module == prefix or module.startswith(prefix + '.'):
            banned |= libs
    return banned


def imported_top_levels(module: str) -> set[str]:
    code = (
        'import importlib, json, sys\n'
        f'importlib.import_module({module!r})\n'
        'print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))\n'
    )
    out = subprocess.run(
        [sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, check=False, timeout=60
    )
    assert out.returncode == 0, f'importing {module} failed:\n{out.stderr}'
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize('module', [m for m in all_modules() if forbidden_for(m)])
def test_module_respects_its_import_boundary(module):
    pulled = imported_top_levels(module) & forbidden_for(module)
    assert not pulled, f'{module} imports {sorted(pulled)}'


@pytest.mark.parametrize(
    'module', [m for m in all_modules() if m != MSGPACK_OWNER and not m.startswith('stas.ipc')]
)
def test_only_the_codec_imports_msgpack(module):
    source = ROOT / (module.replace('.', '/') + '.py')
    if not source.exists():
        source = ROOT / module.replace('.', '/') / '__init__.py'
    text = source.read_text()
    assert 'import msgpack' not in text and 'from msgpack' not in text, module


# the one module of the generic core that knows both daemons: it picks the role
ENTRY_POINT = 'stas.supervisor.main'
DAEMON_ROOMS = ('stas.stafd', 'stas.stacd')


def _imports_of(module: str) -> list[str]:
    """The absolute module names ``module``'s source imports, eagerly or inside a function."""
    import ast

    source = ROOT / (module.replace('.', '/') + '.py')
    if not source.exists():
        source = ROOT / module.replace('.', '/') / '__init__.py'
    package = module if source.name == '__init__.py' else module.rpartition('.')[0]
    names = []
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split('.')[: len(package.split('.')) - node.level + 1] if node.level else []
            target = '.'.join(base + ([node.module] if node.module else []))
            names += [target] + [f'{target}.{a.name}' for a in node.names]
    return names


@pytest.mark.parametrize(
    'module', [m for m in all_modules() if m.startswith(('stas.supervisor', 'stas.dbus', 'stas.metrics'))]
)
def test_the_generic_core_knows_neither_daemon(module):
    """The supervisor's process model, the D-Bus layer and the metrics serve either daemon
    through its role: only the entry point names stafd's or stacd's room."""
    if module == ENTRY_POINT:
        return
    named = [n for n in _imports_of(module) if n.startswith(DAEMON_ROOMS)]
    assert not named, f'{module} imports {named}'


def test_the_daemons_rooms_do_not_import_each_other():
    for own, other in (('stas.stafd', 'stas.stacd'), ('stas.stacd', 'stas.stafd')):
        for module in [m for m in all_modules() if m.startswith(own)]:
            named = [n for n in _imports_of(module) if n.startswith(other)]
            assert not named, f'{module} imports {named}'


def test_the_worker_edge_protocols_load_nothing_but_typing():
    code = (
        'import __future__, json, sys, typing\n'
        'before = set(sys.modules)\n'
        'import stas.workers.edges\n'
        'print(json.dumps(sorted(set(sys.modules) - before)))\n'
    )
    out = subprocess.run(
        [sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, check=False, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ['stas', 'stas.workers', 'stas.workers.edges']


def test_the_rules_cover_real_modules():
    # a renamed package must not silently escape its rule
    mods = all_modules()
    for prefix in RULES:
        assert any(m == prefix or m.startswith(prefix + '.') for m in mods), prefix
