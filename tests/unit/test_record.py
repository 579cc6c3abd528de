"""``@record`` behaves as ``@dataclass(frozen=True)`` (or ``@dataclass``) does, at a fraction of
the cost of defining a class: each behaviour is checked side by side with a real dataclass."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field
from typing import List, Optional

import pytest

from stas.record import is_frozen, record


@pytest.fixture(params=[False, True], ids=['shared', 'hot'])
def hot(request) -> bool:
    """Each behaviour holds for records with shared methods and for ``hot=True`` ones."""
    return request.param


def _pair(frozen: bool = True, hot: bool = False):
    """The same class body as a record and as a dataclass."""

    def body():
        class Entry:
            name: str
            port: int = 4420
            tags: List[str] = field(default_factory=list)
            note: Optional[str] = field(default=None, compare=False, repr=False)

        return Entry

    return record(frozen=frozen, hot=hot)(body()), dataclass(frozen=frozen)(body())


@pytest.mark.parametrize(
    'args, kwargs',
    [
        (('a',), {}),
        (('a', 1), {}),
        (('a', 1, ['x']), {}),
        ((), {'name': 'a', 'tags': ['y']}),
        (('a',), {'note': 'n', 'port': 2}),
    ],
)
def test_construction_matches_dataclass(args, kwargs, hot):
    rec_cls, dc_cls = _pair(hot=hot)
    rec, dc = rec_cls(*args, **kwargs), dc_cls(*args, **kwargs)
    assert dataclasses.asdict(rec) == dataclasses.asdict(dc)
    assert repr(rec).replace('Entry', 'X') == repr(dc).replace('Entry', 'X')


@pytest.mark.parametrize(
    'args, kwargs, message',
    [
        ((), {}, "missing required argument: 'name'"),
        (('a', 1, [], None, 5), {}, 'takes 4 arguments but 5 were given'),
        (('a',), {'name': 'b'}, "multiple values for argument 'name'"),
        (('a',), {'colour': 'red'}, "unexpected keyword argument 'colour'"),
    ],
)
def test_bad_arguments_raise_type_error_naming_the_argument(args, kwargs, message):
    rec_cls, dc_cls = _pair()
    with pytest.raises(TypeError, match=message):
        rec_cls(*args, **kwargs)
    with pytest.raises(TypeError):
        dc_cls(*args, **kwargs)


def test_default_factory_gives_each_instance_its_own_value(hot):
    rec_cls, _ = _pair(hot=hot)
    first, second = rec_cls('a'), rec_cls('b')
    first.tags.append('x')
    assert second.tags == []


def test_equality_and_hash_by_compared_fields_of_the_exact_class(hot):
    rec_cls, _ = _pair(hot=hot)
    assert rec_cls('a', 1) == rec_cls('a', 1, note='ignored in comparisons')
    assert rec_cls('a', 1) != rec_cls('a', 2)
    assert hash(rec_cls('a', 1, ())) == hash(rec_cls('a', 1, ()))
    other_cls, _ = _pair(hot=hot)  # same fields, another class: never equal, as with dataclasses
    assert rec_cls('a') != other_cls('a')
    assert rec_cls('a') != ('a', 4420, [])


def test_frozen_record_refuses_assignment_and_deletion(hot):
    rec_cls, _ = _pair(hot=hot)
    entry = rec_cls('a')
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.port = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        del entry.name
    assert is_frozen(rec_cls)


def test_mutable_record_assigns_and_is_unhashable_like_a_dataclass(hot):
    rec_cls, dc_cls = _pair(frozen=False, hot=hot)
    entry = rec_cls('a')
    entry.port = 1
    assert entry == rec_cls('a', 1)
    assert rec_cls.__hash__ is None and dc_cls.__hash__ is None
    assert not is_frozen(rec_cls)


def test_dataclass_functions_see_an_ordinary_dataclass(hot):
    rec_cls, _ = _pair(hot=hot)
    entry = rec_cls('a', 1, ['t'])
    assert [f.name for f in dataclasses.fields(rec_cls)] == ['name', 'port', 'tags', 'note']
    assert dataclasses.replace(entry, port=2) == rec_cls('a', 2, ['t'])
    assert dataclasses.is_dataclass(rec_cls)


@record
class Pickled:
    a: int
    b: str = ''


def test_frozen_record_survives_pickling():
    entry = Pickled(1, 'x')
    assert pickle.loads(pickle.dumps(entry)) == entry


def test_post_init_runs_after_the_fields_are_set():
    @record
    class Checked:
        low: int
        high: int

        def __post_init__(self):
            if self.low > self.high:
                raise ValueError(f'low {self.low} > high {self.high}')

    assert Checked(1, 2).high == 2
    with pytest.raises(ValueError, match='low 3 > high 2'):
        Checked(3, 2)


def test_subclass_adds_fields_after_its_base():
    @record
    class Base:
        a: int

    @record
    class Derived(Base):
        b: int = 0

    assert Derived(1, 2) == Derived(a=1, b=2)
    assert Derived(1) != Base(1)
    assert repr(Derived(1)).endswith('Derived(a=1, b=0)')


def test_defining_a_record_compiles_no_code(monkeypatch):
    """The whole point: ``dataclass`` compiles its methods with ``exec``, a record must not."""
    compiled = []
    real_exec = exec

    def counting_exec(source, *args):
        compiled.append(source)
        return real_exec(source, *args)

    monkeypatch.setattr(dataclasses, 'exec', counting_exec, raising=False)

    class Value:
        a: int
        b: str = ''

    record(Value)
    assert compiled == []
    dataclass(frozen=True)(type('Other', (), {'__annotations__': {'a': 'int'}}))
    assert compiled  # the check itself sees dataclass's compiling


@pytest.mark.parametrize(
    'args, kwargs',
    [((), {}), (('a', 1, [], None, 5), {}), (('a',), {'name': 'b'}), (('a',), {'colour': 'red'})],
)
def test_hot_record_refuses_bad_arguments_as_a_dataclass_does(args, kwargs):
    rec_cls, dc_cls = _pair(hot=True)
    with pytest.raises(TypeError) as rec_error:
        rec_cls(*args, **kwargs)
    with pytest.raises(TypeError) as dc_error:
        dc_cls(*args, **kwargs)
    assert str(rec_error.value) == str(dc_error.value)


def test_hot_record_runs_post_init_and_extends_its_base():
    @record(hot=True)
    class Base:
        low: int
        high: int = 10

        def __post_init__(self):
            if self.low > self.high:
                raise ValueError(f'low {self.low} > high {self.high}')

    @record(hot=True)
    class Derived(Base):
        name: str = 'x'

    assert Derived(1, 2, 'y') == Derived(low=1, high=2, name='y')
    assert Derived(1) != Base(1)
    assert hash(Derived(1)) == hash(Derived(1, 10, 'x'))
    with pytest.raises(ValueError, match='low 3 > high 2'):
        Derived(3, 2)


def test_a_hot_record_is_compiled_in_one_exec(monkeypatch):
    """Its ``__init__``, ``__eq__`` and ``__hash__`` are written out (as fast as a dataclass's),
    in one ``exec`` where ``dataclass`` needs six."""
    import stas.record

    compiled = []
    real_exec = exec

    def counting_exec(source, *args):
        compiled.append(source)
        return real_exec(source, *args)

    monkeypatch.setattr(stas.record, 'exec', counting_exec, raising=False)
    monkeypatch.setattr(dataclasses, 'exec', counting_exec, raising=False)

    class Value:
        a: int
        b: str = ''

    record(hot=True)(Value)
    assert len(compiled) == 1
    for method in ('__init__', '__eq__', '__hash__'):
        assert f'def {method}(' in compiled[0]


def test_the_model_types_are_hot_records():
    """Built, compared and hashed by the thousand while planning: compiled methods, one exec each."""
    from stas import model

    for name in ('TransportId', 'ControllerSpec', 'LogEntry', 'KernelController', 'WorkerKey'):
        cls = getattr(model, name)
        assert is_frozen(cls)
        assert cls.__hash__.__code__.co_filename == '<string>', name
