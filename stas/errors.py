"""One exception hierarchy with stable codes.

Each class's ``code`` is what crosses process and bus boundaries: it becomes
``ErrorInfo.code`` on IPC and the D-Bus error name ``org.nvmexpress.<svc>.Error.<code>``.
Codes never change once published; messages may.
"""

from __future__ import annotations

from .model import ErrorInfo


class StasError(Exception):
    """Base of every expected error in nvme-stas."""

    code = 'Failed'

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_info(self) -> ErrorInfo:
        return ErrorInfo(self.code, self.message)

    @staticmethod
    def from_info(info: ErrorInfo) -> StasError:
        cls = _BY_CODE.get(info.code, StasError)
        err = cls.__new__(cls)
        StasError.__init__(err, info.message)
        return err


class ConfigError(StasError):
    """A configuration file or value is not acceptable."""

    code = 'InvalidConfig'


class InvalidArgument(StasError):
    """A caller (D-Bus, CLI, IPC request) passed a value we do not accept."""

    code = 'InvalidArgument'


class NotFound(StasError):
    code = 'NotFound'


class PermissionDenied(StasError):
    code = 'PermissionDenied'


class ProtocolError(StasError):
    """A peer broke the IPC protocol: malformed or oversized frame, unknown tag, bad version."""

    code = 'ProtocolError'


class Timeout(StasError):
    code = 'Timeout'


class KernelError(StasError):
    """The kernel (or libnvme) refused or failed an NVMe operation."""

    code = 'KernelError'


class Unavailable(StasError):
    """A service we depend on (a worker, stafd, Avahi) is not there right now."""

    code = 'Unavailable'


_BY_CODE = {
    c.code: c
    for c in (
        StasError,
        ConfigError,
        InvalidArgument,
        NotFound,
        PermissionDenied,
        ProtocolError,
        Timeout,
        KernelError,
        Unavailable,
    )
}
