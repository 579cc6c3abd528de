"""stafd's shadow of nvme-cli's udev autoconnect rule: the one thing this module owns.

nvme-cli installs ``70-nvmf-autoconnect.rules`` (in /usr/lib/udev/rules.d). On a Discovery Log
Page Change AEN, or when a discovery controller reconnects, it has systemd run
``nvme connect-all`` for that discovery controller: on a host where stafd and stacd manage the
connections, that races stacd and connects what ``exclude=`` keeps off. stafd writes a file of
the same name in /run/udev/rules.d, which udev reads instead of nvme-cli's.
``[Global] nvme-cli-autoconnect=enabled`` in stafd.conf turns this off.

The file stops nvme-cli's rules for stafd's own discovery controllers only: those whose owner in
nvme-cli's ownership registry (``<registry>/nvmeN/owner``) is ``stas``, which stafd records for
every controller it connects or adopts. Every other device's events still go to nvme-cli's
rules, copied below that guard, so a discovery controller an admin connected with nvme-cli
(``nvme discover --persistent``, /etc/nvme/discovery.conf at boot) keeps following its AENs.
nvme-stas 2.x got there in two pieces: its file kept only nvme-cli's Fibre Channel rule, and
stafd itself restarted ``nvmf-connect@`` on the AENs of discovery controllers it did not manage.
Without a readable nvme-cli file, only nvme-cli's Fibre Channel rule is kept (2.x's file).

Unlike nvme-stas 2.x, which deletes the file at exit whoever wrote it:

* The file starts with a header naming the stafd process that wrote it (pid and start time), so
  stafd recognises its own file. It is written only where no file of that name exists (an
  admin's file is never replaced), atomically: udev never reads half a file.
* At exit (normal stop, SIGTERM) or when the admin turns the shadow off (SIGHUP), the file is
  removed only if it is still exactly the one this process wrote.
* A file left by a stafd that no longer runs (killed, crashed) is taken over at start. A file of
  another stafd that still runs is left to it.
* udevd is told to reload its rules after each change. systemd-udevd (252 here) notices a
  changed rules directory by itself, but only when it handles an event at least 3 s after its
  last check: an AEN right after stafd wrote or removed the file would still be handled with the
  old rules. ``udevadm control --reload`` makes the next event use the new ones. Without
  udevadm, or without a running udevd (no control socket), there is nothing to reload: logged.

Paths, the reload and the process identity are injectable, for tests.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from typing import Callable, Optional, Sequence, Tuple

from ..files import write_atomic
from ..lazy_pattern import LazyPattern
from ..record import record
from ..supervisor.cli_args import DEFAULT_REGISTRY_DIR
from ..workers.ownership import OWNER

log = logging.getLogger(__name__)

RULES_DIR = '/run/udev/rules.d'
RULE_NAME = '70-nvmf-autoconnect.rules'
# where nvme-cli's rule is installed (its FC rule is copied from the first one found), and where
# an admin's copy takes precedence over any file in /run
NVME_CLI_RULES = ('/usr/lib/udev/rules.d/' + RULE_NAME, '/lib/udev/rules.d/' + RULE_NAME)
ADMIN_RULES_DIR = '/etc/udev/rules.d'
UDEV_CONTROL = '/run/udev/control'
RELOAD_COMMAND = ('udevadm', 'control', '--reload')
RELOAD_TIMEOUT_S = 10.0
MAX_RULES_BYTES = 64 * 1024  # nvme-cli's file is about 2 KiB

# udev runs it to read a registry entry (a PROGRAM match: true when it exits 0, RESULT its output)
CAT = '/bin/cat'
# The nvme events nvme-cli's rules act on: an AEN (theirs is the Discovery Log Page Change AEN;
# any AEN is guarded) and a discovery controller's reconnection. Only these run the guard's
# program: the kernel also sends a ``change`` event (NVME_EVENT=connected) for every controller
# it connects, and a program for each would have udevd fork and exec once per I/O controller of
# a connect storm, on the CPUs the kernel's connects need.
GUARDED_EVENTS = ('ENV{NVME_AEN}=="?*"', 'ENV{NVME_EVENT}=="rediscover"')
END_LABEL = 'nvme_stas_autoconnect_end'

HEADER = '# nvme-stas stafd: shadows nvme-cli'
_OWNER = LazyPattern(r'^# nvme-stas stafd: shadows nvme-cli.*\(pid (\d+), started (\d+)\)$')

# nvme-cli's Fibre Channel rule, when its installed file cannot be read (nvme-cli 2.x wording)
FC_RULE = (
    '# nvme-fc transport generated events (old-style for compatibility)\n'
    'ACTION=="change", SUBSYSTEM=="fc", ENV{FC_EVENT}=="nvmediscovery", \\\n'
    '  ENV{NVMEFC_HOST_TRADDR}=="*",  ENV{NVMEFC_TRADDR}=="*", \\\n'
    '  RUN+="/usr/bin/systemctl --no-block start nvmf-connect@--device=none\\t--transport=fc'
    '\\t--traddr=$env{NVMEFC_TRADDR}\\t--trsvcid=none\\t--host-traddr=$env{NVMEFC_HOST_TRADDR}.service"\n'
)


@record
class ProcessId:
    """A process, told apart from a later one that reuses its pid by its start time."""

    pid: int
    started: int  # clock ticks after boot (/proc/<pid>/stat field 22)


def process_start(pid: int, proc: str = '/proc') -> Optional[int]:
    """The start time of ``pid``, or None when no such process runs."""
    try:
        with open(f'{proc}/{pid}/stat', 'rb') as f:
            stat = f.read()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold anything: count after the last ')'
    fields = stat[stat.rfind(b')') + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def this_process(proc: str = '/proc') -> ProcessId:
    pid = os.getpid()
    return ProcessId(pid, process_start(pid, proc) or 0)


def reload_udevd(control: str = UDEV_CONTROL, command: Sequence[str] = RELOAD_COMMAND) -> None:
    """Have systemd-udevd read its rules again before its next event; every failure is logged."""
    if not os.path.exists(control):
        log.info('udev rules: %s does not exist (systemd-udevd not running): nothing to reload', control)
        return
    try:
        done = subprocess.run(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=RELOAD_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        log.warning('udev rules: %s not found: udevd will notice the change by itself, later', command[0])
        return
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning('udev rules: %s failed: %s', ' '.join(command), exc)
        return
    if done.returncode != 0:
        err = done.stderr.decode('utf-8', 'replace').strip()[:200]
        log.warning('udev rules: %s exited with %d: %s', ' '.join(command), done.returncode, err)
    else:
        log.debug('udev rules: udevd reloaded')


class AutoconnectShadow:
    """Writes, recognises and removes stafd's ``70-nvmf-autoconnect.rules`` in ``rules_dir``."""

    def __init__(
        self,
        rules_dir: str = RULES_DIR,
        *,
        nvme_cli_rules: Sequence[str] = NVME_CLI_RULES,
        admin_rules_dir: str = ADMIN_RULES_DIR,
        registry_dir: str = DEFAULT_REGISTRY_DIR,
        reload: Optional[Callable[[], None]] = None,  # default: reload_udevd
        me: Optional[ProcessId] = None,
        is_running: Callable[[ProcessId], bool] = lambda p: process_start(p.pid) == p.started,
    ):
        self.rules_dir = rules_dir
        self.path = os.path.join(rules_dir, RULE_NAME)
        self._nvme_cli_rules = tuple(nvme_cli_rules)
        self._admin_path = os.path.join(admin_rules_dir, RULE_NAME)
        self._registry_dir = registry_dir
        self._reload = reload if reload is not None else reload_udevd
        self._me = me or this_process()
        self._is_running = is_running
        self._written: Optional[str] = None  # the text this process wrote, while it is in place

    @property
    def active(self) -> bool:
        """Whether this process's file is in place (as far as this process knows)."""
        return self._written is not None

    def apply(self, shadow: bool) -> None:
        """Make the shadow be in place (``shadow``) or not. Never raises for I/O: logs."""
        try:
            changed = self._put() if shadow else self._remove(stale_too=True)
        except OSError as exc:
            what = 'write' if shadow else 'remove'
            log.error(
                "udev rules: cannot %s %s, nvme-cli's autoconnect rule %s: %s",
                what,
                self.path,
                'stays in force' if shadow else 'stays shadowed',
                exc,
            )
            return
        if changed:
            self._reload()

    def release(self) -> None:
        """At exit: remove the file if it is still the one this process wrote."""
        try:
            changed = self._remove(stale_too=False)
        except OSError as exc:
            log.error('udev rules: cannot remove %s: %s', self.path, exc)
            return
        if changed:
            self._reload()

    # ---- the file ------------------------------------------------------------------------------
    def text(self) -> str:
        """The file this process writes."""
        me = self._me
        found = self._nvme_cli_text()
        if found is None:
            # no rule left that acts on an nvme device's event: nothing to guard
            rules = (
                "# nvme-cli's rules cannot be read: only its Fibre Channel rule (nvme-cli 2.x's)\n"
                f'ACTION!="change", GOTO="{END_LABEL}"\n\n' + FC_RULE
            )
        else:
            path, text = found
            copied = f"# nvme-cli's rules, as {path} has them:\n\n" + text.rstrip('\n') + '\n'
            rules = self._guard() + '\n' + copied
        return (
            f'{HEADER} 70-nvmf-autoconnect.rules while stafd runs (pid {me.pid}, started {me.started})\n'
            '# stafd and stacd manage the NVMe-oF connections of this host: this file keeps nvme-cli\n'
            "# from connecting behind their back on the events of stafd's discovery controllers\n"
            '# (owner "stas" in the ownership registry); other devices\' events still go to nvme-cli\'s\n'
            '# rules, below. stafd removes this file when it stops;\n'
            "# nvme-cli-autoconnect=enabled in /etc/stas/stafd.conf leaves nvme-cli's rule alone.\n"
            '\n' + rules + f'\nLABEL="{END_LABEL}"\n'
        )

    def _guard(self) -> str:
        """The lines that send the events of stafd's own devices past nvme-cli's rules."""
        return ''.join(
            f'ACTION=="change", SUBSYSTEM=="nvme", {event}, '
            f'PROGRAM=="{CAT} {self._registry_dir}/%k/owner", RESULT=="{OWNER}", GOTO="{END_LABEL}"\n'
            for event in GUARDED_EVENTS
        )

    def _nvme_cli_text(self) -> Optional[Tuple[str, str]]:
        """(path, text) of nvme-cli's installed rules, or None when none can be read."""
        for path in self._nvme_cli_rules:
            try:
                with open(path, 'rb') as f:
                    data = f.read(MAX_RULES_BYTES + 1)
            except OSError:
                continue
            if len(data) > MAX_RULES_BYTES:
                log.warning('udev rules: %s is larger than %d bytes: not copied', path, MAX_RULES_BYTES)
                return None
            return path, data.decode('utf-8', 'replace')
        return None

    def _read(self) -> Tuple[Optional[str], bool]:
        """(the file's text, or None if there is none; whether it is a regular file)."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return None, True
        if not stat.S_ISREG(st.st_mode):
            return '', False  # a link or anything else: not stafd's
        with open(self.path, 'rb') as f:
            data = f.read(MAX_RULES_BYTES + 1)
        return data.decode('utf-8', 'replace'), True

    def owner(self, text: str) -> Optional[ProcessId]:
        """The stafd process that wrote ``text``, or None if stafd did not write it."""
        first = text.split('\n', 1)[0]
        m = _OWNER.match(first)
        return ProcessId(int(m.group(1)), int(m.group(2))) if m else None

    def _put(self, attempts: int = 2) -> bool:
        """Write the file unless someone else's is there; True if the file changed."""
        current, regular = self._read()
        mine = self.text()
        if current is None:
            if self._admin_path != self.path and os.path.exists(self._admin_path):
                log.warning(
                    "udev rules: %s takes precedence over %s: nvme-cli's autoconnect rule is what it says",
                    self._admin_path,
                    self.path,
                )
            os.makedirs(self.rules_dir, exist_ok=True)
            if not self._create(mine):
                if attempts > 1:
                    return self._put(attempts - 1)  # written meanwhile: judge that file
                return False
            log.info(
                "udev rules: wrote %s: nvme-cli's autoconnect rule is shadowed while stafd runs", self.path
            )
            self._written = mine
            return True
        if current == mine:
            self._written = mine
            return False
        written, self._written = self._written, None
        owner = self.owner(current) if regular else None
        if owner == self._me and current == written:
            # ours, untouched, but nvme-cli's rules (or the registry) changed since
            self._replace(mine)
            log.info('udev rules: rewrote %s', self.path)
            self._written = mine
            return True
        if owner is None:
            log.info(
                "udev rules: %s exists and stafd did not write it: left as it is (nvme-cli's autoconnect "
                'rule is whatever it says)',
                self.path,
            )
        elif owner == self._me:
            log.info('udev rules: %s was changed since stafd wrote it: left as it is', self.path)
        elif self._is_running(owner):
            log.info('udev rules: %s belongs to stafd pid %d, which runs: left to it', self.path, owner.pid)
        else:
            self._replace(mine)
            log.info(
                'udev rules: took over %s, left by stafd pid %d, which no longer runs', self.path, owner.pid
            )
            self._written = mine
            return True
        return False

    def _remove(self, stale_too: bool) -> bool:
        """Remove this process's file (with ``stale_too``, also one left by a stafd that no
        longer runs); True if a file was removed."""
        current, regular = self._read()
        written, self._written = self._written, None
        if current is None:
            return False
        if current == written:
            os.unlink(self.path)
            log.info("udev rules: removed %s: nvme-cli's autoconnect rule is in force again", self.path)
            return True
        owner = self.owner(current) if regular else None
        if owner is None:
            return False  # not stafd's
        if owner == self._me:
            log.info('udev rules: %s was changed since stafd wrote it: left as it is', self.path)
        elif stale_too and not self._is_running(owner):
            os.unlink(self.path)
            log.info(
                'udev rules: removed %s, left by stafd pid %d, which no longer runs', self.path, owner.pid
            )
            return True
        return False

    def _create(self, text: str) -> bool:
        """Create the file with ``text`` in one step, only if it does not exist; False if it did."""
        return write_atomic(self.path, text, replace=False, fsync=True)

    def _replace(self, text: str) -> None:
        write_atomic(self.path, text, fsync=True)
