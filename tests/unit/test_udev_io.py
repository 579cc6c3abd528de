"""The worker's uevent edge without a kernel: the kernel's datagrams parsed, and the reader's
draining, skipping, losses and errors (tests/e2e/test_nvme_io.py has the real kernel's events)."""

from __future__ import annotations

import errno
from typing import List

import pytest

from stas.workers.udev_io import MAX_EVENTS_PER_WAKEUP, NvmeUevent, UdevMonitor, parse_kernel_uevent


def datagram(action: str, devpath: str, subsystem: str, **props: str) -> bytes:
    """One datagram as the kernel sends it: ``ACTION@DEVPATH``, then NUL-terminated fields."""
    fields = [f'ACTION={action}', f'DEVPATH={devpath}', f'SUBSYSTEM={subsystem}']
    fields += [f'{key}={value}' for key, value in props.items()]
    fields.append('SEQNUM=4242')
    return f'{action}@{devpath}\0'.encode() + b''.join(f.encode() + b'\0' for f in fields)


CTRL = '/devices/virtual/nvme-fabrics/ctl/nvme3'


def test_an_aen_of_a_discovery_controller_is_read_with_the_kept_properties_in_order():
    data = datagram(
        'change',
        CTRL,
        'nvme',
        NVME_TRADDR='192.0.2.1',
        NVME_TRTYPE='tcp',
        NVME_AEN='0x70f002',
        NVME_HOST_TRADDR='none',
        NVME_TRSVCID='8009',
        MAJOR='240',
        DEVNAME='nvme3',
    )
    event = parse_kernel_uevent(data)
    assert event == NvmeUevent(
        action='change',
        device='nvme3',
        properties=(
            ('NVME_AEN', '0x70f002'),
            ('NVME_TRTYPE', 'tcp'),
            ('NVME_TRADDR', '192.0.2.1'),
            ('NVME_TRSVCID', '8009'),
            ('NVME_HOST_TRADDR', ''),  # the kernel's 'none'
        ),
    )
    assert event.aen == 0x70F002


@pytest.mark.parametrize(
    'data',
    [
        datagram('add', '/devices/virtual/nvme-subsystem/nvme-subsys0', 'nvme-subsystem'),
        datagram('add', '/devices/virtual/net/tb0', 'net', INTERFACE='tb0'),
        datagram('add', '/devices/virtual/block/nvme0n1', 'block', DEVNAME='nvme0n1'),
    ],
    ids=['nvme-subsystem', 'net', 'block'],
)
def test_events_of_other_classes_are_dropped(data):
    assert parse_kernel_uevent(data) is None


@pytest.mark.parametrize(
    'data',
    [
        b'',
        b'\0SUBSYSTEM=nvme\0',  # no ACTION@DEVPATH header
        b'libudev\0\xfe\xed\xca\xfe\0SUBSYSTEM=nvme\0',  # udevd's binary header
        b'change@/x\0SUBSYSTEM=nvme\0SUBSYSTEM=net\0',  # contradicts itself
    ],
)
def test_what_is_no_nvme_uevent_is_dropped(data):
    assert parse_kernel_uevent(data) is None


def test_fields_without_a_value_and_bytes_that_are_not_utf8_do_not_stop_the_event():
    data = b'remove@/devices/virtual/nvme-fabrics/ctl/nvme7\0ACTION=remove\0garbage\0' + (
        b'DEVPATH=/devices/virtual/nvme-fabrics/ctl/nvme7\0SUBSYSTEM=nvme\0NVME_HOST_IFACE=tb\xff0\0'
    )
    event = parse_kernel_uevent(data)
    assert (event.action, event.device) == ('remove', 'nvme7')
    assert event.properties == (('NVME_HOST_IFACE', 'tb\ufffd0'),)


class FakeSource:
    """What the reader reads: ``receive()`` hands out the queued results in turn (an exception
    instance is raised), then BlockingIOError."""

    def __init__(self, results: list) -> None:
        self.results = list(results)
        self.closed = False

    def fileno(self) -> int:
        return 99

    def receive(self):
        if not self.results:
            raise BlockingIOError(errno.EAGAIN, 'empty')
        result = self.results.pop(0)
        if isinstance(result, BaseException):
            raise result
        return result

    def close(self) -> None:
        self.closed = True


class FakeLoop:
    def __init__(self) -> None:
        self.readers = {}

    def add_reader(self, fd, callback) -> None:
        self.readers[fd] = callback

    def remove_reader(self, fd) -> None:
        del self.readers[fd]


def started(results: list, seen: List[NvmeUevent], **kw):
    source = FakeSource(results)
    loop = FakeLoop()
    monitor = UdevMonitor(seen.append, monitor_factory=lambda _name: source, **kw)
    monitor.start(loop)
    return monitor, source, loop


def event(n: int) -> NvmeUevent:
    return NvmeUevent(action='change', device=f'nvme{n}')


def test_a_wakeup_delivers_what_is_pending_skipping_other_classes():
    seen: List[NvmeUevent] = []
    monitor, _, loop = started([event(1), None, event(2), None], seen)
    loop.readers[99]()
    assert seen == [event(1), event(2)]
    assert (monitor.delivered, monitor.errors) == (2, 0)


def test_a_wakeup_stops_after_its_bound_and_the_next_one_goes_on():
    seen: List[NvmeUevent] = []
    pending = [None] * MAX_EVENTS_PER_WAKEUP + [event(1)]  # a storm of other classes first
    _, _, loop = started(pending, seen)
    loop.readers[99]()
    assert seen == []
    loop.readers[99]()
    assert seen == [event(1)]


def test_lost_events_are_reported_and_reading_goes_on():
    seen: List[NvmeUevent] = []
    lost: List[str] = []
    _, _, loop = started([OSError(errno.ENOBUFS, 'No buffer space'), event(1)], seen, on_lost=lost.append)
    loop.readers[99]()
    assert lost == ['the kernel dropped nvme uevents (receive buffer overflow)']
    assert seen == [event(1)]


def test_a_failing_receive_or_callback_is_counted_and_never_escapes():
    seen: List[NvmeUevent] = []

    def callback(ev: NvmeUevent) -> None:
        if ev.device == 'nvme1':
            raise RuntimeError('consumer bug')
        seen.append(ev)

    source = FakeSource(
        [event(1), ValueError('malformed'), event(2), OSError(errno.EBADF, 'bad fd'), event(3)]
    )
    loop = FakeLoop()
    monitor = UdevMonitor(callback, monitor_factory=lambda _name: source)
    monitor.start(loop)
    loop.readers[99]()  # the callback's failure and a malformed message are skipped; EBADF ends the wake-up
    assert seen == [event(2)]
    assert (monitor.delivered, monitor.errors) == (2, 3)  # the failed callback's event was delivered
    loop.readers[99]()
    assert seen == [event(2), event(3)]
    assert (monitor.delivered, monitor.errors) == (3, 3)


def test_stop_closes_the_source_and_stops_watching():
    monitor, source, loop = started([], [])
    monitor.stop()
    assert (source.closed, loop.readers, monitor.running) == (True, {}, False)


def test_an_unknown_source_is_refused_naming_the_accepted_ones():
    with pytest.raises(ValueError, match="uevent source 'netlink': accepted are kernel and udev"):
        UdevMonitor(lambda _ev: None, source='netlink')
