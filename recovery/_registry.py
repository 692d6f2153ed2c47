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

import itertools
import threading
import weakref
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recovery.breaker import BreakerMixin

__all__ = ["breakers", "register", "unowned"]

_lock = threading.Lock()
# WeakValueDictionary drops an entry when its breaker is freed, on whichever
# thread frees it, without taking _lock (so it cannot deadlock with it).
_live: weakref.WeakValueDictionary[str, BreakerMixin] = weakref.WeakValueDictionary()


def register(breaker: BreakerMixin) -> None:
    """Make ``breaker`` findable under a key of its own (called from its ``__init__``)."""
    with _lock:
        _live[_free_key(breaker.name, _live)] = breaker


def breakers() -> dict[str, BreakerMixin]:
    """The live breakers, by key (the name; ``name#2`` … for later ones of the same name).

    A snapshot in creation order: breakers built after the call are not in it, and
    the dict holds the ones in it strongly until it is dropped.
    """
    with _lock:
        return dict(_live.items())


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
