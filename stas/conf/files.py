"""The file-reading edge of ``stas.conf``: the only module of the package that touches files,
besides ``exclusions`` (nvme-cli's host-wide exclusion files, from reading to matching).

Everything else parses text handed to it. The daemons call ``load_*`` at start and on
SIGHUP; ``check.check_config`` calls the same readers for ``--check-config``.

Missing files: a missing stafd.conf/stacd.conf means "run on defaults", like nvme-stas 2.x;
when the path is not the default one, a warning says so (a typo in ``-f`` should not pass
unnoticed). A missing sys.conf means its defaults apply (``file:///etc/nvme/hostnqn``...).

Blank files (nothing but white space) run on defaults too, with a warning. At a reload of a
daemon whose configuration came from the file's content, a file now missing or blank is
refused instead (``read_daemon_config(..., had_content=True)``): an editor or a configuration
tool that truncates the file and writes it anew must not make the daemon drop every
controller in between. A deliberately empty configuration is a file that says so, with at
least a comment line.

A file that exists but cannot be read (permissions, a directory, not UTF-8, over 1 MiB)
raises ``UnreadableConfig`` (a ``ConfigError``) naming the path and the reason: at start the
daemon cannot know what was meant, and on reload it keeps the old configuration (DESIGN
section 4.7).
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Tuple

from ..files import NotRegularFile, TooLarge, read_regular_file
from ..model import HostIdentity
from . import paths
from .daemons import DaemonConfig, StacdConfig, StafdConfig, parse_daemon_config
from .ini import MAX_CONFIG_BYTES, UnreadableConfig, decode
from .problems import Code, Problem, Severity
from .sysconf import ReadFile, parse_sysconf


def read_text(path: str) -> str:
    """The text of ``path``. Raises ``OSError`` as open() does (``FileNotFoundError`` among
    them), ``UnreadableConfig`` (a ``ConfigError``) when it is not a regular file (a FIFO would
    block the reader for good), too large or not UTF-8."""
    try:
        data = read_regular_file(path, MAX_CONFIG_BYTES)
    except (NotRegularFile, TooLarge) as exc:
        raise UnreadableConfig(path, exc.strerror) from None
    return decode(data, path)


def read_config(path: str) -> Optional[str]:
    """The text of a configuration file, None when it does not exist.

    Raises ``UnreadableConfig`` (a ``ConfigError``) when it exists but cannot be read.
    """
    try:
        return read_text(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnreadableConfig(path, f'cannot read: {exc.strerror or exc}') from None


def _not_found(path: str, default_path: str, what: str) -> List[Problem]:
    if path == default_path:
        return []
    return [Problem(path, None, Severity.WARNING, f'no such file; {what}', Code.MISSING)]


class LoadedConfig(NamedTuple):
    config: DaemonConfig
    problems: List[Problem]
    has_content: bool  # the file exists and holds more than white space


def read_daemon_config(daemon: str, path: Optional[str] = None, *, had_content: bool = False) -> LoadedConfig:
    """The effective configuration of ``daemon`` ('stafd' or 'stacd') read from ``path``
    (default: /etc/stas/<daemon>.conf), defaults applied, its problems, and whether the file
    had content.

    ``had_content``: the configuration in force came from this file's content (a reload); a
    file now missing or blank raises ``UnreadableConfig`` rather than meaning "defaults".
    """
    default_path = paths.DAEMON_CONF.get(daemon, '')
    path = path or default_path
    text = read_config(path)
    has_content = bool(text and text.strip())
    if had_content and not has_content:
        what = 'no such file' if text is None else 'the file is empty'
        raise UnreadableConfig(
            path,
            f'{what}; the configuration in force stays (for a deliberately empty one, '
            'leave at least a comment line in the file)',
        )
    config, problems = parse_daemon_config(daemon, text, path)
    if text is None:
        problems = _not_found(path, default_path, 'running on defaults') + problems
    elif not has_content:
        problems = [
            Problem(path, None, Severity.WARNING, 'the file is empty; running on defaults', Code.EMPTY)
        ]
    return LoadedConfig(config, problems, has_content)


def load_daemon_config(daemon: str, path: Optional[str] = None) -> Tuple[DaemonConfig, List[Problem]]:
    """The effective configuration of ``daemon`` ('stafd' or 'stacd') read from ``path``
    (default: /etc/stas/<daemon>.conf), defaults applied, and its problems."""
    loaded = read_daemon_config(daemon, path)
    return loaded.config, loaded.problems


def load_stafd(path: str = paths.STAFD_CONF) -> Tuple[StafdConfig, List[Problem]]:
    config, problems = load_daemon_config('stafd', path)
    assert isinstance(config, StafdConfig)
    return config, problems


def load_stacd(path: str = paths.STACD_CONF) -> Tuple[StacdConfig, List[Problem]]:
    config, problems = load_daemon_config('stacd', path)
    assert isinstance(config, StacdConfig)
    return config, problems


def load_sysconf(
    path: str = paths.SYS_CONF, read_file: ReadFile = read_text
) -> Tuple[Optional[HostIdentity], List[Problem]]:
    """The host identity from sys.conf (and the files it points to) and its problems.

    None when the host NQN or ID is missing or invalid: the problems say why (ERROR).
    """
    text = read_config(path)
    identity, problems = parse_sysconf(text, path, read_file)
    if text is None:
        problems = _not_found(path, paths.SYS_CONF, 'the defaults apply') + problems
    return identity, problems
