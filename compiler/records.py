"""`@record`: a frozen dataclass whose methods are not compiled per class.

`@dataclass(frozen=True)` writes six methods per class as source and runs
`exec` on each: for the ~50 classes `mailpubc check` imports that took ~40 ms
of a 0.15 s start (issue #12), against ~3 ms for the field processing alone.
So `record` lets dataclasses process the fields (`init`, `repr` and `eq`
off: nothing compiled), which keeps `fields`, `replace`, `asdict`,
`is_dataclass` and `__match_args__` working, and then installs methods
shared by every record, each reading per-class tuples of field names made
once here. They behave as frozen dataclass's do (tests/test_records.py
holds them to it); a method the class defines itself is kept.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import MISSING, FrozenInstanceError
from operator import attrgetter, eq, ge, gt, le, lt


def record(cls=None, /, *, order: bool = False):
    """`@record` or `@record(order=True)`: like `@dataclass(frozen=True[, order=True])`."""
    if cls is None:
        return lambda cls: _make(cls, order)
    return _make(cls, order)


def _make(cls: type, order: bool) -> type:
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"@record {cls.__qualname__}: no __post_init__ (use a dataclass)")
    undocumented = not cls.__doc__
    if undocumented:    # else dataclass would document it by inspect.signature, slowly
        cls.__doc__ = cls.__name__
    cls = dataclasses.dataclass(init=False, repr=False, eq=False)(cls)
    fields = dataclasses.fields(cls)
    if undocumented:
        cls.__doc__ = _signature_text(cls.__name__, fields)
    if any(getattr(f, "kw_only", False) for f in fields):
        raise TypeError(f"@record {cls.__qualname__}: no keyword-only fields (use a dataclass)")
    params = cls.__dataclass_params__      # made for this class: say what it now is
    params.init = params.repr = params.eq = params.frozen = True
    params.order = order
    own_hash = cls.__dict__.get("__hash__", MISSING)
    # no __hash__ of its own (a class body defining __eq__ sets it to None): as dataclass
    hashing = own_hash is MISSING or (own_hash is None and "__eq__" in cls.__dict__)
    compared = _values([f.name for f in fields if f.compare])
    methods = {
        "__init__": _init(cls, fields),
        "__repr__": _repr(tuple(f.name for f in fields if f.repr)),
        "__eq__": _compare(compared, eq),
        **_frozen(cls, frozenset(f.name for f in fields)),
    }
    if order:
        methods.update(__lt__=_compare(compared, lt), __le__=_compare(compared, le),
                       __gt__=_compare(compared, gt), __ge__=_compare(compared, ge))
    for name, method in methods.items():
        if name not in cls.__dict__:
            method.__qualname__ = f"{cls.__qualname__}.{name}"
            setattr(cls, name, method)
    if hashing:
        hashed = _values([f.name for f in fields if (f.compare if f.hash is None else f.hash)])
        cls.__hash__ = lambda self: hash(hashed(self))
        cls.__hash__.__qualname__ = f"{cls.__qualname__}.__hash__"
    return cls


def _signature_text(name: str, fields: tuple[dataclasses.Field, ...]) -> str:
    """What dataclass makes the docstring of a class without one: its name and
    __init__'s signature."""
    def parameter(f: dataclasses.Field) -> str:
        default = ("" if f.default is MISSING and f.default_factory is MISSING
                   else " = <factory>" if f.default is MISSING else f" = {f.default!r}")
        return f"{f.name}: {inspect.formatannotation(f.type)}{default}"
    return f"{name}({', '.join(parameter(f) for f in fields if f.init)})"


def _values(names: list[str]):
    """A function giving the tuple of `names`' values of an instance."""
    if len(names) > 1:
        return attrgetter(*names)
    if names:
        one = attrgetter(names[0])
        return lambda self: (one(self),)
    return lambda self: ()


def _init(cls: type, fields: tuple[dataclasses.Field, ...]):
    """__init__(self, *args, **kwargs), checked as dataclass's signature would
    check it: each init field positional or by keyword, defaults filled in."""
    names = tuple(f.name for f in fields if f.init)
    defaults = {f.name: f for f in fields
                if f.default is not MISSING or f.default_factory is not MISSING}
    # an init=False field gets its factory's value; a plain default stays the class's
    made = tuple(f for f in fields if not f.init and f.default_factory is not MISSING)
    for before, name in zip(names, names[1:]):
        if before in defaults and name not in defaults:
            raise TypeError(f"non-default argument {name!r} follows default argument")
    where = f"{cls.__qualname__}.__init__()"
    count = len(names)

    def bind(args: tuple, kwargs: dict) -> list:
        if len(args) > count:
            raise TypeError(f"{where} takes {count + 1} positional arguments "
                            f"but {len(args) + 1} were given")
        values = dict(zip(names, args))
        for key, value in kwargs.items():
            if key in values:
                raise TypeError(f"{where} got multiple values for argument {key!r}")
            if key not in names:
                raise TypeError(f"{where} got an unexpected keyword argument {key!r}")
            values[key] = value
        missing = [name for name in names if name not in values and name not in defaults]
        if missing:
            raise TypeError(f"{where} missing {len(missing)} required positional "
                            f"argument{'s' * (len(missing) > 1)}: "
                            + ", ".join(map(repr, missing)))
        return [values[name] if name in values else _default(defaults[name]) for name in names]

    def __init__(self, *args, **kwargs):
        if kwargs or len(args) != count:
            args = bind(args, kwargs)
        state = self.__dict__
        state.update(zip(names, args))
        for field in made:
            state[field.name] = field.default_factory()
    return __init__


def _default(field: dataclasses.Field):
    return field.default if field.default_factory is MISSING else field.default_factory()


def _repr(names: tuple[str, ...]):
    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{type(self).__qualname__}({shown})"
    return __repr__


def _compare(values, test):
    """A rich comparison of two instances of the same class by their compared
    fields' values, in order; NotImplemented for anything else."""
    def method(self, other):
        if other.__class__ is self.__class__:
            return test(values(self), values(other))
        return NotImplemented
    return method


def _frozen(cls: type, names: frozenset[str]) -> dict:
    """__setattr__ and __delattr__ refusing the fields (and, on the record's own
    instances, any attribute), as a frozen dataclass's do."""
    def __setattr__(self, name, value):
        if type(self) is cls or name in names:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self, name):
        if type(self) is cls or name in names:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)
    return {"__setattr__": __setattr__, "__delattr__": __delattr__}
