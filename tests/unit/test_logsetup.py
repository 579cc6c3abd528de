"""Journal records carry the fields an admin filters on; stderr lines carry the worker tag."""

from __future__ import annotations

import logging
import socket
import struct

from stas import logsetup


def parse_journal_datagram(data: bytes) -> dict:
    fields = {}
    while data:
        nl = data.index(b'\n')
        head = data[:nl]
        if b'=' in head:
            key, _, value = head.partition(b'=')
            fields[key.decode()] = value.decode()
            data = data[nl + 1 :]
        else:
            (size,) = struct.unpack('<Q', data[nl + 1 : nl + 9])
            fields[head.decode()] = data[nl + 9 : nl + 9 + size].decode()
            data = data[nl + 9 + size + 1 :]
    return fields


def test_worker_records_carry_interface_fields(tmp_path):
    path = str(tmp_path / 'journal.sock')
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    handler = logsetup.JournalHandler(
        'stafd',
        {'STAS_ROLE': 'worker', 'STAS_WORKER': 'eth1/tcp', 'STAS_IFACE': 'eth1', 'STAS_TRANSPORT': 'tcp'},
        path=path,
    )
    logger = logging.getLogger('test.journal.worker')
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error('connect failed\nsecond line')
        fields = parse_journal_datagram(server.recv(65536))
    finally:
        logger.removeHandler(handler)
        handler.close()
        server.close()
    assert fields['MESSAGE'] == 'connect failed\nsecond line'  # binary form keeps the newline
    assert fields['PRIORITY'] == '3'
    assert fields['SYSLOG_IDENTIFIER'] == 'stafd'
    assert fields['STAS_IFACE'] == 'eth1' and fields['STAS_WORKER'] == 'eth1/tcp'
    assert fields['CODE_FUNC'] == 'test_worker_records_carry_interface_fields'


def test_supervisor_records_about_a_worker_carry_its_fields(tmp_path):
    path = str(tmp_path / 'journal.sock')
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    handler = logsetup.JournalHandler('stacd', {'STAS_ROLE': 'supervisor'}, path=path)
    logger = logging.getLogger('test.journal.supervisor')
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning('worker restarted', extra={'stas_worker': 'eth2/tcp'})
        fields = parse_journal_datagram(server.recv(65536))
    finally:
        logger.removeHandler(handler)
        handler.close()
        server.close()
    assert fields['PRIORITY'] == '4'
    assert fields['STAS_ROLE'] == 'supervisor'
    assert (fields['STAS_IFACE'], fields['STAS_TRANSPORT']) == ('eth2', 'tcp')


def test_stderr_lines_are_tagged_with_the_worker(capsys):
    logsetup.setup('stafd', worker='eth0/tcp', level='INFO', target='stderr')
    try:
        logging.getLogger('x').info('hello')
        err = capsys.readouterr().err
    finally:
        logsetup.setup('pytest', level='WARNING', target='stderr')
    assert 'stafd[eth0/tcp] INFO hello' in err
