"""``stafd --check-config`` / ``stacd --check-config``: every problem of the files a daemon
would read, without starting it.

Exit status (``CheckReport.exit_code``): 0 nothing to report, 1 problems (warnings
included), 2 a file cannot be read. What counts as unreadable:

* a configuration file or sys.conf that exists but cannot be read (permissions, a
  directory, not UTF-8, too large);
* a configuration file or sys.conf that does not exist although it was named explicitly
  (a path other than the default). A missing default stafd.conf/stacd.conf is fine: the
  daemon runs on defaults. A missing default sys.conf is fine too: its defaults
  (``file:///etc/nvme/hostnqn``...) apply, and a missing /etc/nvme/hostnqn is then a problem;
* a file named by sys.conf (``file://``) that exists but cannot be read.

nvme-cli's host-wide exclusion files (``exclusions``) are checked too. The daemons read them
fail-open, so their problems, an unreadable file among them, are problems (exit 1), never a
reason to exit 2: ``FILE:LINE: message`` naming the value and what is accepted.
"""

from __future__ import annotations

from dataclasses import field
from typing import List, Optional, Tuple

from ..errors import ConfigError, InvalidArgument
from ..record import record
from . import files, paths
from .daemons import parse_daemon_config
from .exclusions import NVME_ETC_DIR, read_exclusions
from .ini import UnreadableConfig
from .problems import Code, Problem
from .schema import DAEMONS
from .sysconf import ReadFile, parse_sysconf


@record(frozen=False)
class CheckReport:
    problems: List[Problem] = field(default_factory=list)
    # (path, reason) of files that exist but cannot be read, or were named and do not exist
    unreadable: List[Tuple[str, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.unreadable:
            return 2
        return 1 if self.problems else 0

    def lines(self) -> List[str]:
        """What ``--check-config`` prints: one line per unreadable file, then per problem."""
        out = [f'{path}: {reason}' for path, reason in self.unreadable]
        out += [str(p) for p in self.problems]
        return out


def _read(
    path: str, default_path: str, report: CheckReport, read_file: ReadFile
) -> Tuple[bool, Optional[str]]:
    """(readable, text): text None for a missing default file."""
    try:
        return True, read_file(path)
    except FileNotFoundError:
        if path == default_path:
            return True, None
        report.unreadable.append((path, 'No such file or directory'))
    except UnreadableConfig as exc:
        report.unreadable.append((path, exc.reason))
    except (OSError, ConfigError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        report.unreadable.append((path, reason))
    return False, None


def check_config(
    daemon: str,
    conf_path: Optional[str] = None,
    sys_path: Optional[str] = None,
    *,
    read_file: ReadFile = files.read_text,
    exclusions_dir: str = NVME_ETC_DIR,
) -> CheckReport:
    """Check ``daemon``'s configuration file and sys.conf (None: the default paths), and the
    exclusion files under ``exclusions_dir``."""
    if daemon not in DAEMONS:
        raise InvalidArgument(f'daemon={daemon!r} is not one of {", ".join(DAEMONS)}')
    report = CheckReport()
    conf_path = conf_path or paths.DAEMON_CONF[daemon]
    sys_path = sys_path or paths.SYS_CONF

    ok, text = _read(conf_path, paths.DAEMON_CONF[daemon], report, read_file)
    if ok:
        try:
            _, problems = parse_daemon_config(daemon, text, conf_path)
        except ConfigError as exc:  # content handed over as str cannot fail, but stay total
            report.unreadable.append((conf_path, exc.message))
        else:
            report.problems += problems

    ok, text = _read(sys_path, paths.SYS_CONF, report, read_file)
    if ok:

        def read_target(path: str) -> str:
            # A file:// target that exists but cannot be read is "unreadable" (exit 2); a
            # missing one is a problem of sys.conf (reported by the parser).
            try:
                return read_file(path)
            except FileNotFoundError:
                raise
            except UnreadableConfig as exc:
                report.unreadable.append((path, exc.reason))
                raise
            except (OSError, ConfigError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                report.unreadable.append((path, reason))
                raise

        _, problems = parse_sysconf(text, sys_path, read_target)
        report.problems += [p for p in problems if p.code != Code.UNREADABLE]
    report.problems += list(read_exclusions(exclusions_dir).problems)
    return report
