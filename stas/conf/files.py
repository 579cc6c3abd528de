"""The file-reading edge of ``stas.conf``: the only module of the package that touches files.

Everything else parses text handed to it. The daemons call ``load_*`` at start and on
SIGHUP; ``check.check_config`` calls the same readers for ``--check-config``.

Missing files: a missing stafd.conf/stacd.conf means "run on defaults", like nvme-stas 2.x;
when the path is not the default one, a warning says so (a typo in ``-f`` should not pass
unnoticed). A missing sys.conf means its defaults apply (``file:///etc/nvme/hostnqn``...).

A file that exists but cannot be read (permissions, a directory, not UTF-8, over 1 MiB)
raises ``UnreadableConfig`` (a ``ConfigError``) naming the path and the reason: at start the
daemon cannot know what was meant, and on reload it keeps the old configuration (DESIGN
section 4.7).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from ..model import HostIdentity
from . import paths
from .daemons import DaemonConfig, StacdConfig, StafdConfig, parse_daemon_config
from .ini import MAX_CONFIG_BYTES, UnreadableConfig, decode
from .problems import Code, Problem, Severity
from .sysconf import ReadFile, parse_sysconf


def read_text(path: str) -> str:
    """The text of ``path``. Raises ``OSError`` as open() does, ``UnreadableConfig`` (a
    ``ConfigError``) when the content is too large or not UTF-8."""
    with open(path, 'rb') as f:
        data = f.read(MAX_CONFIG_BYTES + 1)
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


def load_daemon_config(daemon: str, path: Optional[str] = None) -> Tuple[DaemonConfig, List[Problem]]:
    """The effective configuration of ``daemon`` ('stafd' or 'stacd') read from ``path``
    (default: /etc/stas/<daemon>.conf), defaults applied, and its problems."""
    default_path = paths.DAEMON_CONF.get(daemon, '')
    path = path or default_path
    text = read_config(path)
    config, problems = parse_daemon_config(daemon, text, path)
    if text is None:
        problems = _not_found(path, default_path, 'running on defaults') + problems
    return config, problems


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
