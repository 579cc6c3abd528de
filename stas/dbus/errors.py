"""Domain errors to named D-Bus errors: ``org.nvmexpress.<svc>.Error.<code>``.

This is the one place where a ``StasError`` leaving the supervisor through D-Bus is translated
(DESIGN section 6). The error name carries the stable ``code`` of ``stas.errors``, so clients
can tell a missing controller (``...Error.NotFound``) from a bad argument
(``...Error.InvalidArgument``) without parsing text. Anything that is not a ``StasError`` is a
bug: the caller gets ``...Error.Failed`` with a short message, never the name of a Python
exception, and the traceback goes to the daemon's log.

Every message that leaves is bounded (``bounded_message``): at most ``MESSAGE_LIMIT``
characters, control and other non-printable characters escaped, so a message that quotes a
caller's argument never sends megabytes back or breaks a terminal. The messages themselves show
at most some 64 characters of a bad value (``stas.errors.shown_value``); this is the last bound.

sdbus picks the D-Bus error name of an exception raised by a served method through a class to
name table (``DbusFailedError`` subclasses register themselves). One subclass is made per
service and code, on first use, and cached: sdbus keeps that table for the life of the
process, and a name must be registered once only.
"""

from __future__ import annotations

import logging
from typing import Dict, Tuple, Type

from sdbus import DbusFailedError

from ..errors import StasError, bounded_text
from .contract import SERVICES, error_prefix

log = logging.getLogger(__name__)

FAILED = StasError.code  # 'Failed'
MESSAGE_LIMIT = 1000  # characters of an error message sent over D-Bus

_CLASSES: Dict[Tuple[str, str], Type[DbusFailedError]] = {}


def error_name(service: str, code: str) -> str:
    """``org.nvmexpress.<service>.Error.<code>``; ``service`` is 'staf' or 'stac'."""
    if service not in SERVICES:
        raise ValueError(f'service {service!r} is not one of {", ".join(SERVICES)}')
    if not code or not code.isidentifier():
        raise ValueError(f'error code {code!r} is not a D-Bus name element')
    return error_prefix(service) + code


def error_class(service: str, code: str) -> Type[DbusFailedError]:
    """The ``DbusFailedError`` subclass sdbus sends as ``error_name(service, code)``."""
    key = (service, code)
    cls = _CLASSES.get(key)
    if cls is None:
        name = error_name(service, code)
        # DbusFailedError's metaclass registers the class under its dbus_error_name
        cls = type(DbusFailedError)(
            f'{service.capitalize()}{code}Error', (DbusFailedError,), {'dbus_error_name': name}
        )
        _CLASSES[key] = cls
    return cls


def bounded_message(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` escaped and cut to at most ``limit`` characters (``stas.errors.bounded_text``)."""
    return bounded_text(text, limit)


def to_dbus_error(service: str, exc: BaseException, member: str) -> DbusFailedError:
    """The D-Bus error to answer with when ``member`` raised ``exc``.

    A ``StasError`` keeps its code and its message (``bounded_message``). Anything else is
    logged with its traceback and becomes ``Failed`` with a message that names the member, not
    the Python exception.
    """
    if isinstance(exc, DbusFailedError) and type(exc) in _CLASSES.values():
        return exc  # already translated
    if isinstance(exc, StasError):
        return error_class(service, exc.code)(bounded_message(str(exc.message)))
    log.error('D-Bus %s failed: internal error', member, exc_info=(type(exc), exc, exc.__traceback__))
    return error_class(service, FAILED)(
        f'{service}d could not answer {member}: internal error (details in the {service}d log)'
    )
