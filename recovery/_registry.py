"""Every live circuit breaker of the process, by a key unique among the live ones.

A breaker registers itself when it is built, so monitoring finds the bare
breakers a program creates as well as a manager's. The registry holds them
weakly: it never keeps a breaker alive, and a breaker nobody references leaves
it (at the latest when the garbage collector frees it).

Keys: a breaker's key is its name, unless another live breaker already holds
that key; then it is ``name#2``, ``name#3`` … (the smallest free one). A key is
fixed for the breaker's life and is freed when it dies, so a program that keeps
building and dropping breakers of one name reuses the same few keys instead of
growing the number of time series without bound.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import weakref
from collections import deque
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from recovery.breaker import BreakerMixin

__all__ = ["breakers", "register", "unowned"]


@attrs.define
class _Numbers:
    """The numbers of one name's keys (1 is the bare name, N is ``name#N``)."""

    next: int = 1
    free: list[int] = attrs.Factory(list)  # a heap: freed numbers below ``next``
    live: int = 0


class _Entry(weakref.ref):  # type: ignore[type-arg]
    """A weak reference to a registered breaker that knows the key it holds.

    The one object a breaker costs the registry: its name, number and key ride on the
    reference, and every entry shares one callback, so there is no closure per breaker.
    """

    __slots__ = ("key", "name", "number")

    name: str
    number: int
    key: str


_lock = threading.Lock()
_live: dict[str, _Entry] = {}
# The numbers of the names that more than one breaker has used at once. A name with a
# single live breaker holding the bare name has no entry: that is the common case.
_numbers: dict[str, _Numbers] = {}
# A dying breaker's weakref callback only appends here: it may run on any thread,
# inside the garbage collector, even while this thread holds _lock, so it must not
# take the lock. The entries are settled under the lock by the next call.
_freed: deque[_Entry] = deque()


def _on_death(entry: _Entry) -> None:
    _freed.append(entry)


def register(breaker: BreakerMixin) -> None:
    """Make ``breaker`` findable under a key of its own (called from its ``__init__``).

    O(log n) in the live breakers of the name: a freed key is found in a heap, not
    by probing ``name#2``, ``name#3`` … in turn.
    """
    name = breaker.name
    with _lock:
        _settle()
        numbers = _numbers.get(name)
        if numbers is None:
            holder = _live.get(name)
            if holder is None:
                _add(breaker, name, 1, name)  # the common case: no numbering needed
                return
            # The bare name is taken: by a breaker of this name (number 1, counted
            # now), or by one literally named so (then 1 is never this name's).
            numbers = _numbers[name] = (
                _Numbers(next=2, live=1) if holder.name == name and holder.number == 1
                else _Numbers()
            )
        while True:
            if numbers.free:
                number = heapq.heappop(numbers.free)
            else:
                number, numbers.next = numbers.next, numbers.next + 1
            key = name if number == 1 else f"{name}#{number}"
            if key not in _live:  # else a breaker literally named so holds it: skip it
                break
        numbers.live += 1
        _add(breaker, name, number, key)


def _add(breaker: BreakerMixin, name: str, number: int, key: str) -> None:
    entry = _Entry(breaker, _on_death)
    entry.name, entry.number, entry.key = name, number, key
    _live[key] = entry


def breakers() -> dict[str, BreakerMixin]:
    """The live breakers, by key (the name; ``name#2`` … for later ones of the same name).

    A snapshot in creation order: breakers built after the call are not in it, and
    the dict holds the ones in it strongly until it is dropped.
    """
    with _lock:
        _settle()
        found = {key: ref() for key, ref in _live.items()}
    return {key: breaker for key, breaker in found.items() if breaker is not None}


def _settle() -> None:
    """Forget the breakers that died since the last call and free their keys."""
    while _freed:
        entry = _freed.popleft()
        if _live.get(entry.key) is entry:
            del _live[entry.key]
        numbers = _numbers.get(entry.name)
        if numbers is None:
            continue  # it held the bare name alone
        number = entry.number
        numbers.live -= 1
        if numbers.live == 0:
            del _numbers[entry.name]  # a name nobody uses any more costs nothing
        else:
            heapq.heappush(numbers.free, number)


def unowned(
    taken: Collection[str], owned: Collection[BreakerMixin]
) -> Iterator[tuple[str, BreakerMixin]]:
    """The live breakers not in ``owned``, each with a label not in ``taken`` nor shared.

    This is what a monitor adds to a manager's plugins (``taken`` their names,
    ``owned`` their breakers) so that no breaker is counted twice and no two get
    one label. A breaker keeps its registry key unless a plugin has that name;
    then it gets the smallest free ``name#N``.
    """
    owned_ids = {id(breaker) for breaker in owned}
    others = [(key, b) for key, b in breakers().items() if id(b) not in owned_ids]
    used = set(taken) | {key for key, _ in others}
    for key, breaker in others:
        if key in taken:
            key = _free_key(breaker.name, used)
            used.add(key)
        yield key, breaker


def _free_key(name: str, used: Collection[str]) -> str:
    if name not in used:
        return name
    return next(
        key for key in (f"{name}#{n}" for n in itertools.count(2)) if key not in used
    )
