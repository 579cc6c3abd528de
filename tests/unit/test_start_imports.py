"""What a supervisor loads while it starts, and what it leaves out: every module and shared
library it loads costs each start CPU (seconds in an emulated guest) and memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stas.supervisor import spawner
from stas.testing import start_imports

ROOT = Path(__file__).resolve().parents[2]

# what both supervisors import as they start (the union of stafd's and stacd's), and what of
# it ends up in the process
SUPERVISOR_IMPORTS = (
    start_imports.supervisor_start('stafd')
    + start_imports.supervisor_side('stacd')
    + """with open('/proc/self/maps') as maps:
    libraries = sorted({line.split()[-1].rsplit('/', 1)[-1] for line in maps if '.so' in line})
print(json.dumps({'modules': sorted(sys.modules), 'libraries': libraries}))
"""
)


def _run(code: str) -> dict:
    out = subprocess.run(
        [sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, check=False, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_supervisor_loads_no_tls_or_hash_library():
    """No libssl, no libcrypto: the supervisor neither speaks TLS nor derives keys (its workers
    do, through libnvme and tls_psk)."""
    loaded = _run(SUPERVISOR_IMPORTS)
    assert not {'ssl', '_ssl', 'hashlib', '_hashlib', 'hmac'} & set(loaded['modules'])
    assert not [lib for lib in loaded['libraries'] if lib.startswith(('libssl', 'libcrypto'))]


def test_a_supervisor_loads_multiprocess_without_dill():
    loaded = _run(SUPERVISOR_IMPORTS)
    assert not [m for m in loaded['modules'] if m == 'dill' or m.startswith('dill.')]


def test_a_supervisor_leaves_the_controller_machine_to_its_workers():
    """It plans which controllers exist; their state machine and its events run in the workers."""
    modules = set(_run(SUPERVISOR_IMPORTS)['modules'])
    assert not {'stas.fabric.controller', 'stas.fabric.controller_events', 'stas.fabric.dim'} & modules


def test_a_supervisor_leaves_out_what_only_rare_paths_need():
    """uuid (and the platform module it imports), gzip (and zlib), difflib and shlex are
    imported where a UUID is decoded, /proc/config.gz read, a misspelt key hinted at, or a file
    outside the defaults named in a command: not on every start (a CRC-32 is binascii's)."""
    modules = set(_run(SUPERVISOR_IMPORTS)['modules'])
    assert not {'uuid', 'platform', 'gzip', 'zlib', 'difflib', 'shlex'} & modules


def test_a_supervisor_decodes_links_without_pyroute2s_plugins_and_configuration():
    """pyroute2's full link message imports a module per kind of link and, through pyroute2's
    configuration, platform and the standard multiprocessing: the inventory's own link message
    (stas.supervisor.link_codec) needs none of them."""
    modules = set(_run(SUPERVISOR_IMPORTS)['modules'])
    assert 'stas.supervisor.link_codec' in modules
    assert not {'pyroute2.netlink.rtnl.ifinfmsg', 'pyroute2.config', 'multiprocessing'} & modules


def test_asyncio_without_ssl_runs_and_leaves_ssl_importable():
    loaded = _run(
        'import json, sys\n'
        'from stas.lean_imports import asyncio_without_ssl\n'
        'asyncio = asyncio_without_ssl()\n'
        'without = "ssl" not in sys.modules\n'
        'answer = asyncio.run(asyncio.sleep(0, result=42))\n'
        'import ssl\n'
        'print(json.dumps({"without": without, "answer": answer, "ssl": ssl.OPENSSL_VERSION != ""}))\n'
    )
    assert loaded == {'without': True, 'answer': 42, 'ssl': True}


def test_multiprocess_without_dill_pickles_with_the_standard_pickle():
    loaded = _run(
        'import json, pickle, sys\n'
        'from stas.lean_imports import multiprocess_without_dill\n'
        'multiprocess_without_dill()\n'
        'from multiprocess import reduction\n'
        'without = "dill" not in sys.modules\n'
        'data = bytes(reduction.ForkingPickler.dumps({"a": (1, "b")}))\n'
        'import dill\n'
        'print(json.dumps({"without": without, "std": reduction.pickle is pickle, '
        '"back": pickle.loads(data) == {"a": (1, "b")}}))\n'
    )
    assert loaded == {'without': True, 'std': True, 'back': True}


def test_a_library_imported_already_is_left_as_it_is():
    loaded = _run(
        'import json, sys, asyncio\n'
        'from stas.lean_imports import asyncio_without_ssl\n'
        'asyncio_without_ssl()\n'
        'print(json.dumps({"ssl": "ssl" in sys.modules, "tls": asyncio.base_events.ssl is not None}))\n'
    )
    assert loaded == {'ssl': True, 'tls': True}


REPORT_MODULES = 'print(json.dumps({"modules": sorted(sys.modules), "libraries": []}))\n'


def _modules(code: str) -> set:
    return set(_run(code + REPORT_MODULES)['modules'])


@pytest.mark.parametrize(
    ('engine', 'daemon'), [('stafd', 'stafd'), ('stacd', 'stacd'), ('idle', 'stafd'), ('idle', 'stacd')]
)
def test_what_supervisor_and_workers_both_import_is_imported_once_before_the_fork(engine, daemon):
    """A module both sides import after the fork is imported twice, on two CPUs, into two
    private copies: SHARED lists every one of them. And only those: a module that one side
    does without would just hold the fork back."""
    shared = spawner.SHARED[engine]
    before = _modules(start_imports.before_fork(engine))
    after = start_imports.before_fork(engine, shared=False)
    supervisor = _modules(after + start_imports.supervisor_side(daemon))
    forkserver = _modules(after + start_imports.forkserver_side(engine))
    twice = sorted((supervisor & forkserver) - before)
    assert twice == [], twice
    assert [name for name in shared if name not in supervisor] == []
    assert [name for name in shared if name not in forkserver] == []


def test_stacds_forkserver_and_workers_leave_libnvme_unloaded(tmp_path):
    """An I/O controller is connected, adopted and deleted through the fabrics device and sysfs:
    stacd's forkserver does not preload libnvme and a worker's kernel access does not import
    it (stafd's forkserver preloads it, for its discovery controllers)."""
    assert 'libnvme.nvme' in spawner.PRELOAD['stafd']
    code = start_imports.before_fork('stacd') + start_imports.forkserver_side('stacd')
    code += f'from stas.workers.nvme_io import NvmeIo\nNvmeIo(sysfs_root={str(tmp_path)!r}).kernel_caps()\n'
    modules = _modules(code)
    assert 'stas.workers.nvme_io' in modules
    assert not [m for m in modules if m == 'libnvme.nvme' or m.startswith('libnvme._')]


# Patterns matched on a hot path (log page entries, transport ids, stacd's JSON items, the
# configuration's lines) are compiled as their module is imported; every other module's
# patterns are LazyPattern, compiled where they are first used.
COMPILED_AT_IMPORT = {
    'stas.conf.ini',
    'stas.fabric.addr',
    'stas.fabric.dlpe',
    'stas.fabric.tid',
    'stas.stacd.json_items',
}


def test_a_supervisor_compiles_only_hot_patterns_as_it_imports():
    code = (
        'import re, sys\n'
        'compiled = set()\n'
        'plain = re._compile\n'
        'def spy(pattern, flags):\n'
        '    caller = sys._getframe(1)\n'
        '    while caller.f_globals.get("__name__", "") in ("re", "enum"):\n'
        '        caller = caller.f_back\n'
        '    name = caller.f_globals.get("__name__", "")\n'
        '    if name.startswith("stas") and caller.f_code.co_name == "<module>":\n'
        '        compiled.add(name)\n'
        '    return plain(pattern, flags)\n'
        're._compile = spy\n'
    )
    code += SUPERVISOR_IMPORTS.replace(
        'print(json.dumps({', 'print(json.dumps({"compiled": sorted(compiled), '
    )
    loaded = _run(code)
    assert set(loaded['compiled']) <= COMPILED_AT_IMPORT, loaded['compiled']
