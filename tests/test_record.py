"""fi_run._record.dataclass behaves as dataclasses.dataclass(frozen=True) for what fi_run's records use.

mypy checks the records against the real dataclass (the modules import it under TYPE_CHECKING), so the two
must agree at run time: construction, defaults, equality, hashing, repr, immutability, and the errors.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from fi_run import _record


def _both(kw_only: bool = False) -> list[Any]:
    made = []
    for decorate in (dataclasses.dataclass, _record.dataclass):

        class Point:
            x: int
            y: str = "y"
            z: tuple[int, ...] = ()

        Point.__annotations__ = {"x": "int", "y": "str", "z": "tuple[int, ...]"}
        made.append(decorate(frozen=True, kw_only=kw_only)(Point))
    return made


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((1,), {}), ((1, "b"), {}), ((1,), {"z": (2, 3)}), ((), {"x": 4, "y": "q"}), ((1, "b", (5,)), {})],
)
def test_construction_equality_hash_and_repr_agree_with_dataclasses(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    real_cls, ours_cls = _both()
    real, ours = real_cls(*args, **kwargs), ours_cls(*args, **kwargs)
    assert repr(ours) == repr(real)
    assert ours == ours_cls(*args, **kwargs)
    assert hash(ours) == hash(ours_cls(*args, **kwargs))
    assert ours != ours_cls(99)
    assert (ours.x, ours.y, ours.z) == (real.x, real.y, real.z)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "missing argument 'x'"),
        ((), {"y": "b"}, "missing argument 'x'"),
        ((1, "b", (), 4), {}, "at most 3 positional"),
        ((1,), {"x": 2}, "repeated argument 'x'"),
        ((1,), {"w": 2}, "unexpected or repeated argument 'w'"),
    ],
)
def test_a_wrong_call_is_a_type_error_as_with_dataclasses(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    real_cls, ours_cls = _both()
    with pytest.raises(TypeError):
        real_cls(*args, **kwargs)
    with pytest.raises(TypeError, match=message):
        ours_cls(*args, **kwargs)


def test_records_are_frozen() -> None:
    _real_cls, ours_cls = _both()
    point = ours_cls(1)
    with pytest.raises(AttributeError, match="frozen"):
        point.x = 2
    with pytest.raises(AttributeError, match="frozen"):
        del point.y
    assert (point.x, point.y) == (1, "y")


def test_kw_only_records_take_no_positional_argument() -> None:
    real_cls, ours_cls = _both(kw_only=True)
    with pytest.raises(TypeError):
        real_cls(1)
    with pytest.raises(TypeError, match="at most 0 positional"):
        ours_cls(1)
    assert repr(ours_cls(x=1)) == repr(real_cls(x=1))


def test_a_record_that_is_not_frozen_is_refused() -> None:
    with pytest.raises(ValueError, match="always frozen"):
        _record.dataclass(frozen=False)
