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
    from typing import Any, TypeVar

    _T = TypeVar("_T")


def dataclass(*, frozen: bool, kw_only: bool = False) -> Callable[[type[_T]], type[_T]]:
    if not frozen:
        raise ValueError("fi_run records are always frozen")
    return lambda cls: _make_record(cls, kw_only)


def _make_record(cls: type[_T], kw_only: bool) -> type[_T]:
    names = tuple(cls.__dict__.get("__annotations__", {}))
    defaults = {name: cls.__dict__[name] for name in names if name in cls.__dict__}
    qualname = cls.__qualname__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > (0 if kw_only else len(names)):
            raise TypeError(f"{qualname}() takes at most {0 if kw_only else len(names)} positional arguments")
        values = dict(zip(names, args, strict=False))
        for name, value in kwargs.items():
            if name not in names or name in values:
                raise TypeError(f"{qualname}() got an unexpected or repeated argument {name!r}")
            values[name] = value
        for name in names:
            if name in values:
                object.__setattr__(self, name, values[name])
            elif name in defaults:
                object.__setattr__(self, name, defaults[name])
            else:
                raise TypeError(f"{qualname}() missing argument {name!r}")

    def __setattr__(self: Any, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of frozen {qualname}")

    def _values(self: Any) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in names)

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return bool(_values(self) == _values(other))

    def __hash__(self: Any) -> int:
        return hash(_values(self))

    def __repr__(self: Any) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{qualname}({fields})"

    for method in (__init__, __setattr__, __eq__, __hash__, __repr__):
        method.__qualname__ = f"{qualname}.{method.__name__}"
        setattr(cls, method.__name__, method)
    cls.__delattr__ = __setattr__  # type: ignore[assignment,method-assign]
    return cls
