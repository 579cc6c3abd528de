"""NVMe statuses by name, as the log and the status show them."""

from stas.fabric.nvme_status import describe, do_not_retry


def test_a_generic_status_by_name_and_its_do_not_retry_bit():
    assert describe(0x4002) == 'Invalid Field in Command (0x4002, do not retry)'
    assert describe(0x0006) == 'Internal Error (0x0006)'
    assert do_not_retry(0x4002) and not do_not_retry(0x0006)


def test_a_command_specific_status_by_name():
    assert describe(0x4109) == 'Invalid Log Page (0x4109, do not retry)'
    assert describe(0x0184) == 'Connect Invalid Host (0x0184)'


def test_an_unnamed_status_by_type_and_code():
    assert describe(0x0077) == 'generic status 0x77 (0x0077)'
    assert describe(0x0281) == 'media error status 0x81 (0x0281)'
    assert describe(0x0781) == 'type 7 status 0x81 (0x0781)'
