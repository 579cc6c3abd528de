"""``@record``: a dataclass whose methods are shared, so that defining one costs next to nothing.

``dataclasses`` writes out and compiles the source of ``__init__``, ``__repr__``, ``__eq__``,
``__hash__``, ``__setattr__`` and ``__delattr__`` for every class it decorates, one ``exec``
each: about 0.35 ms per frozen class on a real host and ten to thirty times that in an emulated
one, and each daemon defines over a hundred such classes while it starts (in the supervisor and
again in the workers' forkserver). That was the largest single cost of a daemon's start.

A record is defined by ``dataclass`` with every generated method turned off, which still
collects the fields (so ``dataclasses.fields``, ``replace`` and ``asdict`` and the IPC codec see
an ordinary dataclass), and it gets one shared function for each method instead: the same
behaviour as ``@dataclass(frozen=True)`` (positional or keyword arguments, defaults and default
factories, ``__post_init__``, equality and hash by fields between instances of the exact same
class, a repr by fields, no assignment); ``frozen=False`` and ``eq=False`` as with ``dataclass``.

The price is paid per instance: building one takes a few microseconds more than through a
generated ``__init__``. Records suit the many kinds of events, effects, messages and
bookkeeping entries; types built thousands of times on a hot path (a log page's entries, transport
ids) stay plain dataclasses.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any, Callable, Dict, Tuple, TypeVar, overload

T = TypeVar('T', bound=type)

_FROZEN = '__record_frozen__'


class _Plan:
    """What the shared methods need to know about one record class, computed once."""

    __slots__ = ('name', 'init_names', 'defaults', 'compared', 'shown', 'post_init')

    def __init__(self, cls: type):
        fields = dataclasses.fields(cls)
        self.name = cls.__qualname__
        self.init_names: Tuple[str, ...] = tuple(f.name for f in fields if f.init)
        # name -> (is a factory, the default or the factory)
        self.defaults: Dict[str, Tuple[bool, Any]] = {}
        for f in fields:
            if f.default is not dataclasses.MISSING:
                self.defaults[f.name] = (False, f.default)
            elif f.default_factory is not dataclasses.MISSING:
                self.defaults[f.name] = (True, f.default_factory)
        compared = [f.name for f in fields if f.compare]
        # attrgetter of one name returns the value itself, of none there is no attrgetter
        self.compared: Callable[[Any], Any] = operator.attrgetter(*compared) if compared else (lambda obj: ())
        self.shown = tuple(f.name for f in fields if f.repr)
        self.post_init = getattr(cls, '__post_init__', None)


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    plan: _Plan = type(self).__record_plan__
    names = plan.init_names
    if len(args) > len(names):
        raise TypeError(f'{plan.name}() takes {len(names)} arguments but {len(args)} were given')
    put = object.__setattr__  # frozen records refuse plain assignment, this one included
    for name, value in zip(names, args):
        put(self, name, value)
    for name in names[len(args) :]:
        if name in kwargs:
            put(self, name, kwargs.pop(name))
        elif name in plan.defaults:
            is_factory, default = plan.defaults[name]
            put(self, name, default() if is_factory else default)
        else:
            raise TypeError(f"{plan.name}() missing required argument: '{name}'")
    if kwargs:
        name = next(iter(kwargs))
        if name in names:
            raise TypeError(f"{plan.name}() got multiple values for argument '{name}'")
        raise TypeError(f"{plan.name}() got an unexpected keyword argument '{name}'")
    if plan.post_init is not None:
        plan.post_init(self)


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    compared = self.__record_plan__.compared
    return compared(self) == compared(other)


def _hash(self: Any) -> int:
    return hash(self.__record_plan__.compared(self))


def _repr(self: Any) -> str:
    plan: _Plan = self.__record_plan__
    shown = ', '.join(f'{name}={getattr(self, name)!r}' for name in plan.shown)
    return f'{plan.name}({shown})'


def _refuse_setattr(self: Any, name: str, value: Any) -> None:
    raise dataclasses.FrozenInstanceError(f'cannot assign to field {name!r}')


def _refuse_delattr(self: Any, name: str) -> None:
    raise dataclasses.FrozenInstanceError(f'cannot delete field {name!r}')


def _make(cls: T, frozen: bool, eq: bool) -> T:
    if cls.__dict__.get('__doc__') is None:
        cls.__doc__ = cls.__name__  # dataclass would inspect a signature to write one
    dataclasses.dataclass(cls, init=False, repr=False, eq=False)
    cls.__record_plan__ = _Plan(cls)
    setattr(cls, _FROZEN, frozen)
    # what the class body defines itself stays, as with dataclass
    own = cls.__dict__
    methods = {'__init__': _init, '__repr__': _repr}
    if eq:
        methods['__eq__'] = _eq
    if frozen:
        methods.update(__setattr__=_refuse_setattr, __delattr__=_refuse_delattr)
    for name, method in methods.items():
        if name not in own:
            setattr(cls, name, method)
    if eq and own.get('__hash__') is None:  # None: the body defined __eq__ and no __hash__
        # compared by value: hashed by value if frozen, unhashable if mutable, as a dataclass
        cls.__hash__ = _hash if frozen else None
    return cls


@overload
def record(cls: T) -> T: ...
@overload
def record(*, frozen: bool = True, eq: bool = True) -> Callable[[T], T]: ...
def record(cls: Any = None, *, frozen: bool = True, eq: bool = True) -> Any:
    """``@record``, or ``@record(frozen=False)`` or ``@record(eq=False)`` as with ``dataclass``,
    on a class with annotated fields."""
    if cls is None:
        return lambda c: _make(c, frozen, eq)
    return _make(cls, frozen, eq)


def is_frozen(cls: type) -> bool:
    """Whether instances of the dataclass or record ``cls`` refuse assignment."""
    if _FROZEN in cls.__dict__:
        return getattr(cls, _FROZEN)
    return dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
