"""Facts the prose of the man pages quotes, taken from the code that decides them (``@{name}``
in a source). A page that says how long a worker may stay silent says what the code does."""

from __future__ import annotations

from typing import Dict

from stas import __version__
from stas.conf import paths
from stas.dbus.contract import bus_name, error_prefix, interface_name, object_path, service_of
from stas.supervisor import cli_args
from stas.supervisor.worker_slot import RestartPolicy


def _seconds(value: float) -> str:
    return f'{value:g}'


def facts() -> Dict[str, str]:
    policy = RestartPolicy()
    found = {
        'version': __version__,
        'restart.backoff': ', '.join(_seconds(s) for s in policy.backoff_s),
        'restart.backoff_max': _seconds(policy.backoff_s[-1]),
        'restart.fast_failure': _seconds(policy.fast_failure_s),
        'restart.max_fast_failures': str(policy.max_fast_failures),
        'restart.hello_timeout': _seconds(policy.hello_timeout_s),
        'restart.heartbeat_interval': _seconds(policy.heartbeat_interval_s),
        'restart.heartbeat_timeout': _seconds(policy.heartbeat_timeout_s),
        'restart.idle_heartbeat_interval': _seconds(policy.idle_heartbeat_interval_s),
        'restart.idle_heartbeat_timeout': _seconds(
            policy.idle_heartbeat_interval_s * policy.heartbeat_timeout_s / policy.heartbeat_interval_s
        ),
        'restart.kill_grace': _seconds(policy.kill_grace_s),
        'path.sys_conf': paths.SYS_CONF,
        'path.nbft': cli_args.DEFAULT_NBFT_DIR,
        'path.exclusions': cli_args.DEFAULT_EXCLUSIONS_DIR,
        'path.registry': cli_args.DEFAULT_REGISTRY_DIR,
    }
    for daemon in ('stafd', 'stacd'):
        service = service_of(daemon)
        found[f'{daemon}.conf'] = paths.DAEMON_CONF[daemon]
        found[f'{daemon}.bus_name'] = bus_name(daemon)
        found[f'{daemon}.object_path'] = object_path(daemon)
        found[f'{daemon}.interface'] = interface_name(service)
        found[f'{daemon}.interface.debug'] = interface_name(service, '.debug')
        found[f'{daemon}.interface.workers'] = interface_name(service, '.workers')
        found[f'{daemon}.errors'] = error_prefix(service)
    return found
