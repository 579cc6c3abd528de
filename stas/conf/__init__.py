"""Configuration of nvme-stas: stafd.conf, stacd.conf and sys.conf.

Parsing and validation are pure (text in, typed objects and ``Problem``s out); ``files`` is
the only module that reads files, ``check`` serves ``--check-config``. Import the public
names from here.

Daemon start and SIGHUP::

    config, problems = load_stafd(args.conf_file)   # or load_stacd / load_daemon_config
    identity, sys_problems = load_sysconf()          # None when the host NQN/ID is unusable

What the daemons log and publish of the problems is bounded (``--check-config`` lists them
all)::

    for line in bounded(problems, LOG_PROBLEM_LIMIT, daemon='stafd', conf_file=..., sys_conf=...):
        log.warning('%s', line)
    published = bounded(problems, DBUS_PROBLEM_LIMIT, daemon='stafd', conf_file=..., sys_conf=...)
"""

from __future__ import annotations

from .check import CheckReport, check_config
from .controllers import ConfiguredController, ExcludeEntry, parse_controller, parse_exclude
from .daemons import (
    DaemonConfig,
    StacdConfig,
    StafdConfig,
    default_config,
    parse_daemon_config,
    parse_stacd,
    parse_stafd,
)
from .files import (
    LoadedConfig,
    load_daemon_config,
    load_stacd,
    load_stafd,
    load_sysconf,
    read_config,
    read_daemon_config,
    read_text,
)
from .ini import UnreadableConfig
from .paths import DAEMON_CONF, STACD_CONF, STAFD_CONF, SYS_CONF
from .problems import (
    DBUS_PROBLEM_LIMIT,
    LOG_PROBLEM_LIMIT,
    MAX_MESSAGE_CHARS,
    Code,
    Problem,
    Severity,
    bounded,
    check_command,
    is_secret_key,
)
from .schema import STACD, STAFD, DisconnectScope
from .sysconf import parse_sysconf
from .timeparse import timeparse

__all__ = [
    'CheckReport',
    'Code',
    'ConfiguredController',
    'DAEMON_CONF',
    'DBUS_PROBLEM_LIMIT',
    'DaemonConfig',
    'DisconnectScope',
    'ExcludeEntry',
    'LoadedConfig',
    'LOG_PROBLEM_LIMIT',
    'MAX_MESSAGE_CHARS',
    'Problem',
    'STACD',
    'STACD_CONF',
    'STAFD',
    'STAFD_CONF',
    'SYS_CONF',
    'Severity',
    'StacdConfig',
    'StafdConfig',
    'UnreadableConfig',
    'bounded',
    'check_command',
    'check_config',
    'default_config',
    'is_secret_key',
    'load_daemon_config',
    'load_stacd',
    'load_stafd',
    'load_sysconf',
    'parse_controller',
    'parse_daemon_config',
    'parse_exclude',
    'read_daemon_config',
    'parse_stacd',
    'parse_stafd',
    'parse_sysconf',
    'read_config',
    'read_text',
    'timeparse',
]
