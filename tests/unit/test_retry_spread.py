"""Retries of many controllers that failed together are spread, each controller by a fraction
of its own that stays the same from one start to the next."""

from __future__ import annotations

import statistics

import pytest

from stas.fabric.controller_policy import MAX_SPREAD, RetryPolicy, retry_spread
from stas.model import TransportId


def tid(i: int) -> TransportId:
    return TransportId(
        'tcp', f'192.0.2.{i % 250 + 1}', '4420', f'nqn.2024-01.com.example:s{i}', '', 'tb0', ''
    )


def test_a_controller_keeps_its_spread_and_many_controllers_spread_evenly():
    spreads = [retry_spread(str(tid(i))) for i in range(2000)]
    assert spreads[:5] == [retry_spread(str(tid(i))) for i in range(5)]  # stable
    assert all(0 <= s < MAX_SPREAD for s in spreads)
    assert len({round(s, 3) for s in spreads}) > 90  # many distinct moments, not a few
    assert abs(statistics.mean(spreads) - MAX_SPREAD / 2) < 0.005
    # of 2000 controllers retrying after 60 s, at most a few percent fall in any one 0.1 s
    moments = [round(60 * (1 + s), 1) for s in spreads]
    assert max(moments.count(m) for m in set(moments)) < 2000 * 0.03


def test_spread_stretches_connect_retries_and_the_periodic_read_only():
    policy = RetryPolicy(connect_attempts_on_ncc=3).spread(0.05)
    assert policy.connect_backoff_s == (3.15, 63.0)
    assert policy.after_removal_s == 3.15
    assert policy.refresh_s == 630.0
    assert (policy.register_retry_s, policy.log_page_retry_s, policy.connect_attempts_on_ncc) == (
        5.0,
        20.0,
        3,
    )
    assert RetryPolicy().spread(0) == RetryPolicy()


@pytest.mark.parametrize('fraction', [-0.01, MAX_SPREAD + 0.001])
def test_a_spread_out_of_range_is_refused(fraction):
    with pytest.raises(ValueError, match='accepted are 0..0.1'):
        RetryPolicy().spread(fraction)
