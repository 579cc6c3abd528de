"""The worker engine's I/O edges (stas.workers.edges): the real adapters and the fakes of
stas.testing offer every operation of the Protocols, with parameters a caller of the Protocol
can pass, and the engine asks its libnvme edge for nothing the Protocol leaves out."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from stas.testing.nvme import FakeNvmeIo
from stas.testing.udev import FakeUdev
from stas.workers import controllers
from stas.workers.edges import NvmeOps, UdevFactory, UdevSource
from stas.workers.nvme_io import NvmeIo
from stas.workers.udev_io import UdevMonitor


def operations(protocol: type) -> list:
    return sorted(
        name for name, value in vars(protocol).items() if callable(value) and not name.startswith('_')
    )


def assert_callable_as(impl, declared) -> None:
    """``impl`` accepts every call ``declared`` allows: the same parameters, by name and in
    order, and nothing more it requires."""
    wanted = list(inspect.signature(declared).parameters.values())
    offered = list(inspect.signature(impl).parameters.values())
    if wanted and wanted[0].name == 'self':
        wanted, offered = wanted[1:], offered[1:]
    assert [p.name for p in offered[: len(wanted)]] == [p.name for p in wanted], impl
    for want, offer in zip(wanted, offered):
        if want.default is not inspect.Parameter.empty:
            assert offer.default is not inspect.Parameter.empty, f'{impl}: {offer.name} must be optional'
    for extra in offered[len(wanted) :]:
        assert extra.default is not inspect.Parameter.empty or extra.kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ), f'{impl}: {extra.name} is required'


@pytest.mark.parametrize('edge', [NvmeIo, FakeNvmeIo])
def test_the_libnvme_edges_offer_every_operation(edge):
    for name in operations(NvmeOps):
        assert_callable_as(getattr(edge, name), getattr(NvmeOps, name))


@pytest.mark.parametrize('source', [UdevMonitor, FakeUdev])
def test_the_udev_sources_offer_start_and_stop_and_are_made_from_a_callback(source):
    for name in operations(UdevSource):
        assert_callable_as(getattr(source, name), getattr(UdevSource, name))
    assert_callable_as(source.__init__, UdevFactory.__call__)


def test_the_engine_asks_its_libnvme_edge_only_what_the_protocol_offers():
    source = Path(controllers.__file__).read_text()
    used = set(re.findall(r'self\._io\.(\w+)', source))
    assert used and used <= set(operations(NvmeOps)), used - set(operations(NvmeOps))
    assert set(re.findall(r'self\._udev\.(\w+)', source)) <= set(operations(UdevSource))
