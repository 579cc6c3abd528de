"""The faults the supervisor's tests inject into workers (``STAS_WORKER_FAULTS``)."""

from __future__ import annotations

import pytest

from stas.errors import ConfigError
from stas.workers import faults
from stas.workers.idle import IdleEngine


def test_faults_are_read_per_interface_and_an_unknown_one_is_refused_by_name():
    assert faults.parse('tbA=stuck-op, tbB=crash-at-start,') == {'tbA': 'stuck-op', 'tbB': 'crash-at-start'}
    with pytest.raises(ConfigError, match=r"'tbA=explode'.*stuck-op"):
        faults.parse('tbA=explode')


def test_a_stuck_operation_shows_in_the_load_and_the_engine_is_otherwise_itself():
    engine = IdleEngine()
    assert engine.load()[0] == 0
    stuck = faults.engine_with('stuck-op', engine)
    in_flight, oldest_s = stuck.load()
    assert in_flight == 1 and oldest_s >= 0
    assert stuck.load()[1] >= oldest_s  # the same operation, older each time
    assert stuck.configure == engine.configure  # everything else is the engine's own
    assert engine.load()[0] == 0  # the engine itself is left as it was
    assert faults.engine_with('', engine) is engine
