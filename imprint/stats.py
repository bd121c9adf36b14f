"""Counts every step keeps: seen, kept, dropped by reason, and the failed items."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


class Drop(Exception):
    """A bad input item: counted under ``reason``; the job goes on."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Stats:
    """``seen == kept + sum(dropped.values())`` always holds.

    ``failures`` lists the items dropped because the input is broken (not those
    removed by a quality filter), each with its reason and error text.
    """

    seen: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    failures: list[dict[str, str]] = field(default_factory=list)

    def keep(self, n: int = 1) -> None:
        self.seen += n
        self.kept += n

    def drop(self, reason: str, n: int = 1, *, item: str | None = None, error: str | None = None) -> None:
        self.seen += n
        self.dropped[reason] += n
        if error is not None:
            self.failures.append({"item": item or "", "reason": reason, "error": error})

    def merge(self, other: "Stats") -> None:
        self.seen += other.seen
        self.kept += other.kept
        self.dropped.update(other.dropped)
        self.failures.extend(other.failures)

    def to_dict(self) -> dict[str, Any]:
        return {"seen": self.seen, "kept": self.kept, "dropped": dict(sorted(self.dropped.items())),
                "failures": list(self.failures)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Stats":
        return cls(d["seen"], d["kept"], Counter(d["dropped"]), list(d["failures"]))
