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
bookkeeping entries. Types built thousands of times on a hot path (a log page's entries,
transport ids, dictionary keys) are ``@record(hot=True)``: their ``__init__``, ``__eq__`` and
``__hash__`` are written out as ``dataclass`` writes them, but compiled in one ``exec`` per class
instead of six, so building, comparing and hashing one costs what it costs for a dataclass.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any, Callable, Dict, Tuple, TypeVar, overload

T = TypeVar('T', bound=type)

_FROZEN = '__record_frozen__'


class _Plan:
    """What the shared methods need to know about one record class, computed once."""

    __slots__ = ('name', 'init_names', 'defaults', 'compared_names', 'compared', 'shown', 'post_init')

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
        self.compared_names = tuple(f.name for f in fields if f.compare)
        # attrgetter of one name returns the value itself, of none there is no attrgetter
        compared = self.compared_names
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


def _comparisons(plan: _Plan) -> Tuple[Callable[[Any, Any], Any], Callable[[Any], int]]:
    """``__eq__`` and ``__hash__`` by the compared fields: closures over the class's own
    ``attrgetter``, so a comparison costs what a generated one does (no lookup of the plan)."""
    compared = plan.compared

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return compared(self) == compared(other)

    def __hash__(self: Any) -> int:
        return hash(compared(self))

    return __eq__, __hash__


def _repr(self: Any) -> str:
    plan: _Plan = self.__record_plan__
    shown = ', '.join(f'{name}={getattr(self, name)!r}' for name in plan.shown)
    return f'{plan.name}({shown})'


def _compiled_methods(plan: _Plan, frozen: bool) -> Dict[str, Callable[..., Any]]:
    """``__init__``, ``__eq__`` and ``__hash__`` written out for ``plan``'s fields, as
    ``dataclass`` writes them, in one ``exec``."""
    scope: Dict[str, Any] = {'__put': object.__setattr__}
    params, body = [], []
    for name in plan.init_names:
        if name not in plan.defaults:
            params.append(name)
            value = name
        else:
            is_factory, default = plan.defaults[name]
            scope[f'__default_{name}'] = default
            if is_factory:  # a fresh value per instance, as dataclass makes it
                scope.setdefault('__unset', object())
                params.append(f'{name}=__unset')
                value = f'__default_{name}() if {name} is __unset else {name}'
            else:
                params.append(f'{name}=__default_{name}')
                value = name
        body.append(f'__put(self, {name!r}, {value})' if frozen else f'self.{name} = {value}')
    if plan.post_init is not None:
        body.append('self.__post_init__()')
    mine = ''.join(f'self.{name},' for name in plan.compared_names)
    theirs = ''.join(f'other.{name},' for name in plan.compared_names)
    lines = [
        f'def __init__(self, {", ".join(params)}):',
        *(f'    {line}' for line in body or ['pass']),
        'def __eq__(self, other):',
        '    if other.__class__ is not self.__class__:',
        '        return NotImplemented',
        f'    return ({mine}) == ({theirs})',
        'def __hash__(self):',
        f'    return hash(({mine}))',
    ]
    exec('\n'.join(lines), scope)  # only field names go in: identifiers, as the class body defined them
    methods = {name: scope[name] for name in ('__init__', '__eq__', '__hash__')}
    for name, method in methods.items():
        method.__qualname__ = f'{plan.name}.{name}'
    return methods


def _refuse_setattr(self: Any, name: str, value: Any) -> None:
    raise dataclasses.FrozenInstanceError(f'cannot assign to field {name!r}')


def _refuse_delattr(self: Any, name: str) -> None:
    raise dataclasses.FrozenInstanceError(f'cannot delete field {name!r}')


def _make(cls: T, frozen: bool, eq: bool, hot: bool = False) -> T:
    if cls.__dict__.get('__doc__') is None:
        cls.__doc__ = cls.__name__  # dataclass would inspect a signature to write one
    dataclasses.dataclass(cls, init=False, repr=False, eq=False)
    cls.__record_plan__ = _Plan(cls)
    setattr(cls, _FROZEN, frozen)
    # what the class body defines itself stays, as with dataclass
    own = cls.__dict__
    plan = cls.__record_plan__
    if hot:
        compiled = _compiled_methods(plan, frozen)
        init, eq_method, hash_method = compiled['__init__'], compiled['__eq__'], compiled['__hash__']
    else:
        eq_method, hash_method = _comparisons(plan)
        init = _init
    methods = {'__init__': init, '__repr__': _repr}
    if eq:
        methods['__eq__'] = eq_method
    if frozen:
        methods.update(__setattr__=_refuse_setattr, __delattr__=_refuse_delattr)
    for name, method in methods.items():
        if name not in own:
            setattr(cls, name, method)
    if eq and own.get('__hash__') is None:  # None: the body defined __eq__ and no __hash__
        # compared by value: hashed by value if frozen, unhashable if mutable, as a dataclass
        cls.__hash__ = hash_method if frozen else None
    return cls


@overload
def record(cls: T) -> T: ...
@overload
def record(*, frozen: bool = True, eq: bool = True, hot: bool = False) -> Callable[[T], T]: ...
def record(cls: Any = None, *, frozen: bool = True, eq: bool = True, hot: bool = False) -> Any:
    """``@record``, or ``@record(frozen=False)`` or ``@record(eq=False)`` as with ``dataclass``,
    on a class with annotated fields; ``hot=True`` for a type built by the thousand (see above)."""
    if cls is None:
        return lambda c: _make(c, frozen, eq, hot)
    return _make(cls, frozen, eq, hot)


def is_frozen(cls: type) -> bool:
    """Whether instances of the dataclass or record ``cls`` refuse assignment."""
    if _FROZEN in cls.__dict__:
        return getattr(cls, _FROZEN)
    return dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
