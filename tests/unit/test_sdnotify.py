"""sd_notify client: the exact datagrams systemd would receive, over real AF_UNIX sockets."""

from __future__ import annotations

import os
import socket
import time
import uuid

import pytest

from stas.supervisor.sdnotify import Notifier, watchdog_interval_s


@pytest.fixture
def listener(tmp_path):
    """A datagram socket bound to a path, as systemd's notify socket is."""
    path = str(tmp_path / 'notify')
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


@pytest.fixture
def abstract_listener():
    name = f'stas-test-{uuid.uuid4().hex}'
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind('\0' + name)
    sock.settimeout(5)
    yield '@' + name, sock
    sock.close()


def recv(sock: socket.socket) -> bytes:
    return sock.recv(4096)


def pending(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(4096)
        return True
    except BlockingIOError:
        return False
    finally:
        sock.settimeout(5)


def test_ready_is_sent_to_a_path_socket(listener):
    path, sock = listener
    n = Notifier.from_environ({'NOTIFY_SOCKET': path})
    assert n.enabled
    assert n.ready() is True
    assert recv(sock) == b'READY=1'


def test_ready_with_status(listener):
    path, sock = listener
    n = Notifier.from_environ({'NOTIFY_SOCKET': path})
    n.ready(status='2 workers running')
    assert recv(sock) == b'READY=1\nSTATUS=2 workers running'


def test_abstract_socket(abstract_listener):
    name, sock = abstract_listener
    n = Notifier.from_environ({'NOTIFY_SOCKET': name})
    n.stopping()
    assert recv(sock) == b'STOPPING=1'


def test_each_helper_sends_its_datagram(listener):
    path, sock = listener
    n = Notifier(path)
    n.status('reloading stafd.conf')
    assert recv(sock) == b'STATUS=reloading stafd.conf'
    n.watchdog()
    assert recv(sock) == b'WATCHDOG=1'
    n.stopping()
    assert recv(sock) == b'STOPPING=1'


def test_reloading_carries_monotonic_usec(listener):
    path, sock = listener
    n = Notifier(path)
    n.reloading(monotonic_usec=123456789)
    assert recv(sock) == b'RELOADING=1\nMONOTONIC_USEC=123456789'


def test_reloading_reads_clock_monotonic_by_default(listener):
    path, sock = listener
    n = Notifier(path)
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    n.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = recv(sock).decode().split('\n')
    assert lines[0] == 'RELOADING=1'
    key, value = lines[1].split('=')
    assert key == 'MONOTONIC_USEC'
    assert before <= int(value) <= after


def test_notify_upper_cases_names_and_flattens_values(listener):
    path, sock = listener
    n = Notifier(path)
    n.notify(status='line one\nline two', errno=5, ready=True)
    assert recv(sock) == b'STATUS=line one line two\nERRNO=5\nREADY=1'


def test_no_socket_means_no_op():
    n = Notifier.from_environ({})
    assert not n.enabled
    assert n.ready() is False
    assert n.watchdog() is False
    n = Notifier.from_environ({'NOTIFY_SOCKET': ''})
    assert not n.enabled


def test_relative_path_is_refused(caplog):
    n = Notifier.from_environ({'NOTIFY_SOCKET': 'relative/notify'})
    assert not n.enabled
    assert n.ready() is False
    assert "'relative/notify' is neither an absolute path nor @name" in caplog.text


def test_unreachable_socket_is_logged_once_and_does_not_raise(tmp_path, caplog):
    n = Notifier(str(tmp_path / 'nobody-listens'))
    assert n.ready() is False
    assert n.watchdog() is False
    assert caplog.text.count('cannot notify systemd') == 1


def test_unset_removes_the_systemd_variables(listener):
    path, sock = listener
    env = {'NOTIFY_SOCKET': path, 'WATCHDOG_USEC': '30000000', 'WATCHDOG_PID': '1', 'HOME': '/root'}
    n = Notifier.from_environ(env, unset=True)
    assert env == {'HOME': '/root'}
    n.ready()
    assert recv(sock) == b'READY=1'


def test_one_datagram_per_call(listener):
    path, sock = listener
    n = Notifier(path)
    n.ready()
    n.watchdog()
    assert recv(sock) == b'READY=1'
    assert recv(sock) == b'WATCHDOG=1'
    assert not pending(sock)
    n.close()


# ---- watchdog interval ----------------------------------------------------------------------------
def test_watchdog_interval_is_half_the_timeout():
    assert watchdog_interval_s({'WATCHDOG_USEC': '30000000'}) == 15.0
    assert watchdog_interval_s({'WATCHDOG_USEC': '1000'}) == 0.0005


def test_watchdog_for_our_pid_only():
    env = {'WATCHDOG_USEC': '30000000', 'WATCHDOG_PID': str(os.getpid())}
    assert watchdog_interval_s(env) == 15.0
    env['WATCHDOG_PID'] = str(os.getpid() + 1)
    assert watchdog_interval_s(env) is None
    assert watchdog_interval_s(env, pid=os.getpid() + 1) == 15.0


@pytest.mark.parametrize(
    'env',
    [
        {},
        {'WATCHDOG_USEC': ''},
        {'WATCHDOG_USEC': '0'},
        {'WATCHDOG_USEC': '-5'},
        {'WATCHDOG_USEC': '30s'},
        {'WATCHDOG_USEC': '30000000', 'WATCHDOG_PID': 'main'},
    ],
)
def test_no_watchdog(env):
    assert watchdog_interval_s(env) is None
