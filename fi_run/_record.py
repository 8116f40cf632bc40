"""A frozen ``@dataclass(frozen=True)`` for the hot path, without importing dataclasses.

``import dataclasses`` pulls in inspect and re: 10 to 20 ms on this kind of machine, about as much as
Python's own start-up. That is saved on every step without locks; a locked step imports filelock, which
imports dataclasses anyway (docs/performance.md, "The import budget"). fi_run's records need only
keyword/positional (or keyword-only) construction, immutability, equality and a repr, which this provides.
Type checkers see the real ``dataclass`` (the modules import it under ``TYPE_CHECKING``), so mypy checks
the fields as usual.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: saves importing typing (~6 ms) per unlocked step (docs/performance.md)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Final, TypeVar

    _T = TypeVar("_T")


def dataclass(*, frozen: bool, kw_only: bool = False) -> Callable[[type[_T]], type[_T]]:
    if not frozen:
        raise ValueError("fi_run records are always frozen")
    return lambda cls: _make_record(cls, kw_only)


def _make_record(cls: type[_T], kw_only: bool) -> type[_T]:
    # The methods are shared by every record and read the fields from the class: making a record class
    # creates no functions, which matters because every step makes three of them while it starts.
    names = tuple(cls.__dict__.get("__annotations__", {}))
    record: Any = cls
    record.__record_fields__ = names
    record.__record_known__ = frozenset(names)
    record.__record_defaults__ = {name: cls.__dict__[name] for name in names if name in cls.__dict__}
    record.__record_positional__ = 0 if kw_only else len(names)
    for name, method in _METHODS.items():
        setattr(cls, name, method)
    return cls


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    # Built in a dict and stored in one update of the instance's __dict__ (which __setattr__ below does not
    # see): about half the time of one object.__setattr__ per field, on every record fi_run makes.
    cls = type(self)
    names = cls.__record_fields__
    if len(args) > cls.__record_positional__:
        raise TypeError(
            f"{cls.__qualname__}() takes at most {cls.__record_positional__} positional arguments"
        )
    values = dict(cls.__record_defaults__)
    values.update(zip(names, args, strict=False))
    for name in kwargs:
        if name not in cls.__record_known__ or name in names[: len(args)]:
            raise TypeError(f"{cls.__qualname__}() got an unexpected or repeated argument {name!r}")
    values.update(kwargs)
    if len(values) != len(names):
        missing = next(name for name in names if name not in values)
        raise TypeError(f"{cls.__qualname__}() missing argument {missing!r}")
    self.__dict__.update(values)


def _setattr(self: Any, name: str, value: Any) -> None:
    raise AttributeError(f"cannot assign to field {name!r} of frozen {type(self).__qualname__}")


def _delattr(self: Any, name: str) -> None:
    raise AttributeError(f"cannot delete field {name!r} of frozen {type(self).__qualname__}")


def _values(record: Any) -> tuple[Any, ...]:
    return tuple(getattr(record, name) for name in type(record).__record_fields__)


def _eq(self: Any, other: object) -> Any:  # bool, or NotImplemented
    if other.__class__ is not self.__class__:
        return NotImplemented
    return bool(_values(self) == _values(other))


def _hash(self: Any) -> int:
    return hash(_values(self))


def _repr(self: Any) -> str:
    fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in type(self).__record_fields__)
    return f"{type(self).__qualname__}({fields})"


_METHODS: Final = {
    "__init__": _init,
    "__setattr__": _setattr,
    "__delattr__": _delattr,
    "__eq__": _eq,
    "__hash__": _hash,
    "__repr__": _repr,
}
