"""`@record` against `@dataclass(frozen=True)` (issue #12): one class declared
both ways, random fields and field options, must give the same results for
everything done with a value class: declaring it, constructing (or the type
of the error), ==, ordering, hash, repr, replace, fields, asdict, refused
assignment, copy and pickle."""

from __future__ import annotations

import copy
import dataclasses
import pickle

from hypothesis import given
from hypothesis import strategies as st

from mailpubc.records import record

NAMES = ("a", "b", "c", "d")
# NaN and lists too: == must compare tuples as dataclass does, hash must refuse a list
VALUES = st.one_of(st.none(), st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=2),
                   st.tuples(st.integers(0, 2)), st.lists(st.integers(0, 2), max_size=2))
OPTIONS = st.fixed_dictionaries({
    "default": st.sampled_from(["none", "value", "factory"]), "value": VALUES,
    "init": st.booleans(), "repr": st.booleans(), "compare": st.booleans(),
    "hash": st.sampled_from([None, True, False])})


def declare(spec: list[tuple[str, dict]], order: bool, decorate):
    """Class `Value` of this test module with `spec`'s fields, through `decorate`."""
    namespace = {"__module__": __name__, "__qualname__": "Value",
                 "__annotations__": {name: "object" for name, _ in spec}}
    for name, options in spec:
        given_ = {key: options[key] for key in ("init", "repr", "compare", "hash")}
        if options["default"] == "value":
            given_["default"] = options["value"]
        elif options["default"] == "factory":
            given_["default_factory"] = list
        namespace[name] = dataclasses.field(**given_)
    if decorate is record:
        return record(order=order)(type("Value", (), namespace))
    return dataclasses.dataclass(frozen=True, order=order)(type("Value", (), namespace))


def outcome(work):
    """What `work()` gives: its value, or the type of what it raised."""
    try:
        return "value", work()
    except Exception as exc:
        return "raised", type(exc)


def same(work, left, right):
    assert outcome(lambda: work(left)) == outcome(lambda: work(right))


def pickled(value):
    """`value` through pickle, which finds the class by its module and name."""
    globals()["Value"] = type(value)
    return pickle.loads(pickle.dumps(value))


def state(value) -> str:
    """An instance's attributes as text: a NaN equals itself there, not in a copy."""
    return repr(sorted(vars(value).items()))


def calls(names: list[str]):
    """Arguments for a constructor of fields `names`: too few, too many,
    repeated and unknown ones too."""
    named = st.dictionaries(st.sampled_from(names), VALUES) if names else st.just({})
    unknown = st.sampled_from([{}, {}, {"z": 0}])
    return st.tuples(st.lists(VALUES, max_size=len(names) + 1),
                     st.builds(lambda known, other: {**known, **other}, named, unknown))


@given(st.lists(st.tuples(st.sampled_from(NAMES), OPTIONS), max_size=4,
                unique_by=lambda item: item[0]),
       st.booleans(), st.data())
def test_a_record_behaves_as_a_frozen_dataclass(spec, order, data):
    made = outcome(lambda: declare(spec, order, record))
    expected = outcome(lambda: declare(spec, order, dataclasses.dataclass))
    assert made[0] == expected[0]
    if made[0] == "raised":     # a mutable default, a required field after a default one
        assert made == expected
        return
    ours, theirs = made[1], expected[1]
    assert ours.__doc__ == theirs.__doc__
    assert ours.__match_args__ == theirs.__match_args__
    assert repr(ours.__dataclass_params__) == repr(theirs.__dataclass_params__)
    assert list(map(repr, dataclasses.fields(ours))) == list(map(repr, dataclasses.fields(theirs)))
    pairs = []
    arguments = st.lists(calls([name for name, _ in spec]), min_size=2, max_size=3)
    for positional, named in data.draw(arguments):
        pair = (outcome(lambda: ours(*positional, **named)),
                outcome(lambda: theirs(*positional, **named)))
        assert pair[0][0] == pair[1][0], (positional, named, pair)
        if pair[0][0] == "raised":
            assert pair[0] == pair[1]
        else:
            pairs.append((pair[0][1], pair[1][1]))
            assert state(pair[0][1]) == state(pair[1][1])
    for (one, two), (other, other_two) in zip(pairs, pairs[1:] + pairs[:1]):
        for test in (lambda x, y: x == y, lambda x, y: x != y, lambda x, y: x < y,
                     lambda x, y: x <= y, lambda x, y: x > y, lambda x, y: x >= y):
            assert outcome(lambda: test(one, other)) == outcome(lambda: test(two, other_two))
            same(lambda x: test(x, 1), one, two)
    for one, two in pairs:
        same(hash, one, two)
        same(repr, one, two)
        same(dataclasses.asdict, one, two)
        same(dataclasses.astuple, one, two)
        same(lambda x: state(copy.copy(x)), one, two)
        same(lambda x: state(copy.deepcopy(x)), one, two)
        same(lambda x: state(pickled(x)), one, two)
        same(lambda x: pickled(x) == x, one, two)
        changes = data.draw(st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=2))
        same(lambda x: state(dataclasses.replace(x, **changes)), one, two)
        name = data.draw(st.sampled_from(NAMES + ("z",)))
        same(lambda x: setattr(x, name, 1), one, two)
        same(lambda x: delattr(x, name), one, two)
        same(lambda x: state(x), one, two)      # nothing changed


def test_a_subclass_may_add_attributes_but_not_change_fields():
    for decorate in (record, dataclasses.dataclass(frozen=True)):
        @decorate
        class Base:
            a: int

        class Child(Base):
            pass

        child = Child(1)
        child.note = "kept"
        refused = ("raised", dataclasses.FrozenInstanceError)
        assert outcome(lambda: setattr(child, "a", 2)) == refused
        assert (child.a, child.note) == (1, "kept")


def test_methods_the_class_defines_are_kept():
    @record
    class Named:
        name: str

        def __repr__(self) -> str:
            return f"<{self.name}>"

        def __eq__(self, other) -> bool:
            return isinstance(other, Named) and self.name.lower() == other.name.lower()

    assert repr(Named("x")) == "<x>"
    assert Named("X") == Named("x")
    assert hash(Named("x")) == hash(("x",))     # __eq__ of its own: still hashed, as dataclass
