"""stafd's shadow of nvme-cli's udev autoconnect rule (stas.stafd.udev_rule), in a
temporary directory standing for /run/udev/rules.d."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from stas.stafd import udev_rule
from stas.stafd.udev_rule import (
    FC_RULE,
    RULE_NAME,
    AutoconnectShadow,
    ProcessId,
    process_start,
    reload_udevd,
)

# nvme-cli 2.x's rules file as Debian installs it, with the FC rule (the middle one) changed to
# show that it is copied as it is: another systemctl path, 'restart'
NVME_CLI_RULES = (Path(__file__).parents[1] / 'data' / 'udev' / RULE_NAME).read_text()

ME = ProcessId(1000, 5555)
OTHER = ProcessId(2000, 7777)


class Env:
    """A rules directory, nvme-cli's file, an admin directory and a count of udevd reloads."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.rules_dir = tmp_path / 'run' / 'udev' / 'rules.d'  # made by the shadow
        self.nvme_cli = tmp_path / 'lib' / RULE_NAME
        self.nvme_cli.parent.mkdir()
        self.nvme_cli.write_text(NVME_CLI_RULES)
        self.admin_dir = tmp_path / 'etc'
        self.admin_dir.mkdir()
        self.reloads = 0
        self.running = {ME}

    @property
    def path(self) -> Path:
        return self.rules_dir / RULE_NAME

    def reload(self) -> None:
        self.reloads += 1

    def shadow(self, me: ProcessId = ME) -> AutoconnectShadow:
        return AutoconnectShadow(
            str(self.rules_dir),
            nvme_cli_rules=[str(self.tmp / 'missing' / RULE_NAME), str(self.nvme_cli)],
            admin_rules_dir=str(self.admin_dir),
            reload=self.reload,
            me=me,
            is_running=lambda p: p in self.running,
        )


@pytest.fixture
def env(tmp_path) -> Env:
    return Env(tmp_path)


# one line per kind of event nvme-cli's rules act on: no program runs for other change events
GUARD = (
    'ACTION=="change", SUBSYSTEM=="nvme", ENV{NVME_AEN}=="?*", '
    'PROGRAM=="/bin/cat /run/nvme/registry/%k/owner", RESULT=="stas", GOTO="nvme_stas_autoconnect_end"\n'
    'ACTION=="change", SUBSYSTEM=="nvme", ENV{NVME_EVENT}=="rediscover", '
    'PROGRAM=="/bin/cat /run/nvme/registry/%k/owner", RESULT=="stas", GOTO="nvme_stas_autoconnect_end"\n'
)


def test_written_when_absent_guarding_nvme_clis_rules(env):
    s = env.shadow()
    s.apply(True)
    text = env.path.read_text()
    assert text == s.text()
    assert text.startswith('# nvme-stas stafd: shadows nvme-cli 70-nvmf-autoconnect.rules while stafd runs')
    assert s.owner(text) == ME
    # stafd's own devices (owner "stas" in the registry) skip to the end, past all of nvme-cli's
    # rules, which follow as its installed file has them (its systemctl path and verb included)
    assert GUARD in text
    assert NVME_CLI_RULES in text
    assert text.index(GUARD) < text.index(NVME_CLI_RULES)
    assert text.endswith('\nLABEL="nvme_stas_autoconnect_end"\n')
    assert '/opt/bin/systemctl --no-block restart nvmf-connect@--device=none\\t--transport=fc' in text
    assert env.reloads == 1 and s.active
    assert os.listdir(env.rules_dir) == [RULE_NAME]  # no temporary file left behind
    assert oct(env.path.stat().st_mode & 0o777) == '0o644'


def test_the_guard_reads_the_registry_stafd_uses(env):
    s = AutoconnectShadow(str(env.rules_dir), registry_dir='/tmp/registry', me=ME, reload=env.reload)
    assert 'PROGRAM=="/bin/cat /tmp/registry/%k/owner", RESULT=="stas"' in s.text()


def test_its_untouched_file_follows_a_change_of_nvme_clis_rules(env):
    s = env.shadow()
    s.apply(True)
    env.nvme_cli.write_text(NVME_CLI_RULES + '# a newer nvme-cli\n')
    s.apply(True)  # at the next SIGHUP
    assert '# a newer nvme-cli' in env.path.read_text()
    assert env.reloads == 2 and s.active
    s.release()
    assert not env.path.exists()


def test_applying_again_changes_nothing(env):
    s = env.shadow()
    s.apply(True)
    mtime = env.path.stat().st_mtime_ns
    s.apply(True)
    assert env.path.stat().st_mtime_ns == mtime and env.reloads == 1


def test_removed_at_exit(env):
    s = env.shadow()
    s.apply(True)
    s.release()
    assert not env.path.exists() and env.reloads == 2 and not s.active
    assert env.rules_dir.is_dir()  # the directory is udev's, not stafd's


def test_release_without_a_file_does_nothing(env):
    env.shadow().release()
    assert env.reloads == 0 and not env.rules_dir.exists()


def test_a_file_stafd_did_not_write_is_never_touched(env, caplog):
    env.rules_dir.mkdir(parents=True)
    env.path.write_text('# the admin wants this\n')
    s = env.shadow()
    with caplog.at_level(logging.INFO):
        s.apply(True)
    assert 'exists and stafd did not write it: left as it is' in caplog.text
    s.release()
    s.apply(False)
    assert env.path.read_text() == '# the admin wants this\n' and env.reloads == 0


def test_a_file_replaced_after_stafd_wrote_it_stays_at_exit(env):
    s = env.shadow()
    s.apply(True)
    env.path.write_text('# written by someone else since\n')
    s.release()
    assert env.path.read_text() == '# written by someone else since\n' and env.reloads == 1


def test_its_own_file_edited_by_an_admin_stays_at_exit_and_at_reload(env):
    s = env.shadow()
    s.apply(True)
    edited = s.text() + '# an admin line\n'
    env.path.write_text(edited)
    s.apply(True)
    s.release()
    assert env.path.read_text() == edited and env.reloads == 1


def test_a_symlink_in_its_place_is_not_followed_nor_removed(env):
    env.rules_dir.mkdir(parents=True)
    target = env.tmp / 'target.rules'
    target.write_text(env.shadow().text())  # even with stafd's own text behind it
    env.path.symlink_to(target)
    s = env.shadow()
    s.apply(True)
    s.release()
    s.apply(False)
    assert env.path.is_symlink() and target.read_text() == env.shadow().text() and env.reloads == 0


def test_a_stale_file_of_a_stafd_that_died_is_taken_over_then_removed(env, caplog):
    env.rules_dir.mkdir(parents=True)
    env.path.write_text(env.shadow(OTHER).text())  # OTHER does not run
    s = env.shadow()
    with caplog.at_level(logging.INFO):
        s.apply(True)
    assert 'took over' in caplog.text and 'stafd pid 2000' in caplog.text
    assert s.owner(env.path.read_text()) == ME and env.reloads == 1
    s.release()
    assert not env.path.exists() and env.reloads == 2


def test_a_pid_reused_by_another_process_does_not_make_a_stale_file_look_alive(env):
    env.rules_dir.mkdir(parents=True)
    env.path.write_text(env.shadow(ProcessId(2000, 1)).text())
    env.running.add(ProcessId(2000, 2))  # same pid, another process
    env.shadow().apply(True)
    assert env.shadow().owner(env.path.read_text()) == ME


def test_the_file_of_another_stafd_that_runs_is_left_to_it(env):
    env.running.add(OTHER)
    first = env.shadow(OTHER)
    first.apply(True)
    second = env.shadow(ME)
    second.apply(True)
    second.release()
    second.apply(False)
    assert env.shadow().owner(env.path.read_text()) == OTHER and not second.active
    first.release()
    assert not env.path.exists()


def test_turned_off_at_reload_removes_the_file_and_turned_on_writes_it_again(env):
    s = env.shadow()
    s.apply(True)
    s.apply(False)
    assert not env.path.exists() and env.reloads == 2
    s.apply(False)
    assert env.reloads == 2
    s.apply(True)
    assert env.path.read_text() == s.text() and env.reloads == 3


def test_turned_off_removes_a_stale_file_too(env):
    env.rules_dir.mkdir(parents=True)
    env.path.write_text(env.shadow(OTHER).text())
    env.shadow().apply(False)
    assert not env.path.exists() and env.reloads == 1


def test_created_only_if_absent_even_when_written_meanwhile(env, monkeypatch):
    """Between the look and the write, another writer creates the file: it is not replaced."""
    s = env.shadow()
    real_read = s._read  # noqa: SLF001
    calls = []

    def read_then_someone_writes():
        calls.append(1)
        answer = real_read()
        if len(calls) == 1:
            env.rules_dir.mkdir(parents=True)
            env.path.write_text('# the admin, just now\n')
        return answer

    monkeypatch.setattr(s, '_read', read_then_someone_writes)
    s.apply(True)
    assert env.path.read_text() == '# the admin, just now\n' and env.reloads == 0 and not s.active
    assert os.listdir(env.rules_dir) == [RULE_NAME]


def test_cannot_write_is_logged_not_raised(env, caplog):
    env.rules_dir.parent.mkdir(parents=True)
    env.rules_dir.write_text('a file where the directory should be')
    with caplog.at_level(logging.ERROR):
        env.shadow().apply(True)
    assert f'cannot write {env.path}' in caplog.text and 'autoconnect rule stays in force' in caplog.text
    assert env.reloads == 0


def test_an_admin_rule_in_etc_is_said_to_take_precedence(env, caplog):
    (env.admin_dir / RULE_NAME).write_text('# mine\n')
    with caplog.at_level(logging.WARNING):
        env.shadow().apply(True)
    assert f'{env.admin_dir / RULE_NAME} takes precedence over {env.path}' in caplog.text


def test_without_nvme_clis_file_only_the_built_in_fc_rule_is_kept(env):
    env.nvme_cli.unlink()
    s = env.shadow()
    s.apply(True)
    text = env.path.read_text()
    assert FC_RULE in text
    # no rule acts on an nvme device's event: nothing is guarded, and no program runs for one
    assert 'SUBSYSTEM=="nvme"' not in text and 'PROGRAM' not in text
    assert text.count('RUN+=') == 1


def test_the_built_in_fc_rule_is_nvme_clis():
    debian = NVME_CLI_RULES.replace(
        '/opt/bin/systemctl --no-block restart', '/usr/bin/systemctl --no-block start'
    )
    assert FC_RULE in debian


def test_a_huge_nvme_cli_file_is_not_copied(env, caplog):
    env.nvme_cli.write_text('#' * (udev_rule.MAX_RULES_BYTES + 1))
    with caplog.at_level(logging.WARNING):
        env.shadow().apply(True)
    assert FC_RULE in env.path.read_text()
    assert 'is larger than' in caplog.text


# ---- udevd reload ---------------------------------------------------------------------------


def test_no_reload_without_udevd(tmp_path, caplog):
    ran = tmp_path / 'ran'
    with caplog.at_level(logging.INFO):
        reload_udevd(str(tmp_path / 'control'), ('touch', str(ran)))
    assert not ran.exists() and 'systemd-udevd not running' in caplog.text


def test_reload_runs_udevadm(tmp_path):
    (tmp_path / 'control').touch()
    ran = tmp_path / 'ran'
    reload_udevd(str(tmp_path / 'control'), ('touch', str(ran)))
    assert ran.exists()


@pytest.mark.parametrize(
    'command, logged',
    [
        (('/nonexistent/udevadm', 'control', '--reload'), '/nonexistent/udevadm not found'),
        (('sh', '-c', 'echo no socket >&2; exit 3'), 'exited with 3: no socket'),
    ],
)
def test_reload_failures_are_logged(tmp_path, caplog, command, logged):
    (tmp_path / 'control').touch()
    with caplog.at_level(logging.WARNING):
        reload_udevd(str(tmp_path / 'control'), command)
    assert logged in caplog.text


# ---- process identity -----------------------------------------------------------------------


def test_process_start_reads_past_a_command_name_with_parentheses(tmp_path):
    (tmp_path / '42').mkdir()
    fields = ['S'] + [str(i) for i in range(4, 60)]  # field 3 onwards; field 22 is '22'
    (tmp_path / '42' / 'stat').write_text('42 (a) b (c) ' + ' '.join(fields) + '\n')
    assert process_start(42, str(tmp_path)) == 22
    assert process_start(43, str(tmp_path)) is None


def test_this_process_is_running():
    me = udev_rule.this_process()
    assert me.pid == os.getpid() and process_start(me.pid) == me.started > 0


def test_a_failed_write_leaves_no_temporary_file(env, monkeypatch, caplog):
    def full(fd, *args, **kwargs):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(os, 'fsync', full)
    with caplog.at_level(logging.ERROR):
        env.shadow().apply(True)
    assert 'No space left on device' in caplog.text
    assert os.listdir(env.rules_dir) == [] and env.reloads == 0
