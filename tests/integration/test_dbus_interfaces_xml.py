"""The committed D-Bus introspection XML (dbus/, installed under /usr/share/dbus-1/interfaces)
is what the daemons' objects serve: tools/gen-docs exports them on a private dbus-daemon and
asks them, and so does this test."""

from __future__ import annotations

import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO / 'tools') not in sys.path:
    sys.path.insert(0, str(REPO / 'tools'))

from docgen import outputs  # noqa: E402

pytestmark = pytest.mark.integration

INTERFACES = [
    f'org.nvmexpress.{svc}{part}' for svc in ('staf', 'stac') for part in ('', '.debug', '.workers')
]


@pytest.fixture(scope='module')
def served():
    if shutil.which('dbus-daemon') is None:
        pytest.skip('dbus-daemon is not installed')
    return outputs.dbus_interfaces()


def test_one_file_per_interface_and_no_other(served):
    assert sorted(p.name for p in served) == sorted(f'{name}.xml' for name in INTERFACES)
    assert sorted(p.name for p in outputs.DBUS_DIR.glob('*.xml')) == sorted(p.name for p in served)


def test_committed_files_are_what_the_daemons_serve(served):
    for path, text in served.items():
        assert path.read_text() == text, f'{path.relative_to(REPO)} is out of date: run tools/gen-docs'


def test_files_name_their_interface_and_its_members():
    staf = ET.parse(outputs.DBUS_DIR / 'org.nvmexpress.staf.xml').getroot()
    interface = staf.find('interface')
    assert interface.get('name') == 'org.nvmexpress.staf'
    assert {m.get('name') for m in interface.findall('method')} == {
        'list_controllers',
        'get_log_pages',
        'get_all_log_pages',
    }
    assert {s.get('name') for s in interface.findall('signal')} == {'log_pages_changed', 'dc_removed'}
    debug = ET.parse(outputs.DBUS_DIR / 'org.nvmexpress.stac.debug.xml').getroot().find('interface')
    tron = next(p for p in debug.findall('property') if p.get('name') == 'tron')
    assert (tron.get('type'), tron.get('access')) == ('b', 'readwrite')
