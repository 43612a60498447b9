"""Reading one section of higress-config key by key: a value that is missing takes its default, one
that is wrong is reported (with its dotted key and why) and takes its default too, so the rest of the
section still applies."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Section:
    """One mapping of the YAML at `path` (`gzip`, `downstream.http2`), and the problems found in it."""

    path: str
    values: Mapping[str, Any]
    problems: list[str] = field(default_factory=list)
    known: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, path: str, value: Any, problems: list[str]) -> Section:
        """The section at `path`; not a mapping (or absent) reads as empty, reported unless absent."""
        if value is None:
            return cls(path, {}, problems)
        if not isinstance(value, Mapping):
            problems.append(f"{path}: expected a mapping, got {_show(value)}; the defaults apply")
            return cls(path, {}, problems)
        return cls(path, value, problems)

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def child(self, name: str) -> Section:
        """The nested section `name`."""
        self.known.add(name)
        return Section.of(self.key(name), self.values.get(name), self.problems)

    def raw(self, name: str) -> Any:
        """The value as written (None when absent), marked as read."""
        self.known.add(name)
        return self.values.get(name)

    def bad(self, name: str, value: Any, why: str, default: Any) -> None:
        """Report `name`'s value and fall back to `default`."""
        self.problems.append(f"{self.key(name)}: {_show(value)} {why}; the default {_show(default)} applies")

    def boolean(self, name: str, default: bool) -> bool:
        """A YAML boolean."""
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.bad(name, value, "is not true or false", default)
            return default
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        """A whole number in [low, high]."""
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.bad(name, value, "is not a whole number", default)
            return default
        if not low <= value <= high:
            self.bad(name, value, f"is not between {low} and {high}", default)
            return default
        return value

    def number(self, name: str, default: float, low: float, high: float) -> float:
        """A number in [low, high]."""
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.bad(name, value, "is not a number", default)
            return default
        if not low <= value <= high:
            self.bad(name, value, f"is not between {low:g} and {high:g}", default)
            return default
        return float(value)

    def choice(self, name: str, default: str, allowed: Collection[str]) -> str:
        """One of `allowed`, spelled exactly."""
        value = self.raw(name)
        if value is None:
            return default
        if value not in allowed:
            self.bad(name, value, f"is not one of {', '.join(allowed)}", default)
            return default
        return str(value)

    def strings(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """A non-empty list of non-empty strings."""
        value = self.raw(name)
        if value is None:
            return default
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and v.strip() for v in value)
        ):
            self.bad(name, value, "is not a non-empty list of strings", list(default))
            return default
        return tuple(v.strip() for v in value)

    def text(self, name: str) -> str:
        """A string ("" when absent or not a string, the latter reported)."""
        value = self.raw(name)
        if value is None:
            return ""
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            self.problems.append(f"{self.key(name)}: {_show(value)} is not a string")
            return ""
        return value

    def report_unknown(self, notes: dict[str, str] | None = None) -> None:
        """Report every key nobody read: with `notes[key]` as the reason when given, else as unknown."""
        notes = notes or {}
        for name in sorted(str(k) for k in self.values):
            if name in self.known:
                continue
            reason = notes.get(name, "is not a higress-config option xdsbus knows; ignored")
            self.problems.append(f"{self.key(name)}: {reason}")


def _show(value: Any) -> str:
    text = (
        repr(value)
        if isinstance(value, str)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
    )
    return text if len(text) <= 80 else text[:77] + "..."
