"""What depends on what: the declared links between plugins and dependencies.

A user declares, at registration, what each name uses (``depends_on``) and where it
runs (``tags``, such as ``{"host": "db1"}``). Two names are *linked* when a chain of
``depends_on`` leads from one to the other (in either direction), or when they
carry the same value for the same tag. Incidents group failures by these links,
and name as root the member the others depend on.

The graph is an immutable value, checked whole when it is built: every name in a
``depends_on`` must be declared itself, and no chain may lead back to where it
started (a cycle would make "upstream" meaningless, and a root impossible to name).
Build it once the declarations are complete (the recovery manager does it at
``start()``), and build a new one when a declaration is added.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs

from recovery import _validate as v


class DependencyCycleError(ValueError):
    """``depends_on`` declarations that lead back to where they started.

    ``cycle`` is the chain, its first name repeated at its end
    (``("api", "db", "api")``); the message shows it as ``api -> db -> api``.
    """

    def __init__(self, cycle: tuple[str, ...]) -> None:
        self.cycle = cycle
        super().__init__(f"depends_on declarations form a cycle: {' -> '.join(cycle)}")


def _names(value: Any) -> tuple[str, ...]:
    """One name or an iterable of names, as a tuple (a lone str is one name, not letters)."""
    if isinstance(value, str):
        return (value,)
    try:
        return tuple(value)
    except TypeError:
        return value  # type: ignore[no-any-return]  # not iterable: the validator names it


def _name_tuple(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, tuple):
        raise TypeError(f"{attribute.name} must be names (str), got {value!r}")
    for item in value:
        v.check(v.name(), attribute.name, item)


def _tag_pairs(value: Any) -> Any:
    """A mapping of tags as sorted (key, value) pairs; anything else is left for the validator."""
    if value is None:
        return ()
    if isinstance(value, Mapping):
        return tuple(sorted(value.items(), key=lambda item: str(item[0])))
    return value


def _tags(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, tuple):
        raise TypeError(f"tags must be a mapping of str to str, got {value!r}")
    for key, tag in value:
        v.check(v.name(), "tag name", key)
        v.check(v.text, f"tag {key!r}", tag)


@attrs.frozen
class Node:
    """One name's declaration: what it uses (``depends_on``) and its ``tags``.

    ``depends_on`` accepts one name or an iterable of names; ``tags`` a mapping of
    str to str (or None), kept as sorted (key, value) pairs.
    """

    name: str = attrs.field(validator=v.name())
    depends_on: tuple[str, ...] = attrs.field(
        default=(), converter=_names, validator=_name_tuple
    )
    tags: tuple[tuple[str, str], ...] = attrs.field(
        default=(), converter=_tag_pairs, validator=_tags
    )


@attrs.frozen
class Link:
    """Why two names are linked.

    ``kind`` is "depends_on" (``via`` is the chain from the downstream name to the
    upstream one, both included) or "tag" (``via`` is the shared ``(key, value)``).
    """

    kind: str
    via: tuple[str, ...]


def find_cycle(depends_on: Mapping[str, Iterable[str]]) -> tuple[str, ...] | None:
    """A chain of ``depends_on`` that returns to its start (its first name repeated at
    its end), or None. Names without an entry of their own depend on nothing.

    An iterative depth-first search (no recursion limit on a long chain), in the
    mapping's order, so the cycle reported is the same on every run.
    """
    done: set[str] = set()
    for start in depends_on:
        if start in done:
            continue
        path: list[str] = []
        on_path: dict[str, int] = {}
        stack: list[tuple[str, Iterable[str]]] = [(start, iter(depends_on.get(start, ())))]
        path.append(start)
        on_path[start] = 0
        while stack:
            name, upstream = stack[-1]
            step = next(iter(upstream), None)
            if step is None:
                stack.pop()
                path.pop()
                del on_path[name]
                done.add(name)
                continue
            if step in on_path:
                return (*path[on_path[step]:], step)
            if step not in done:
                on_path[step] = len(path)
                path.append(step)
                stack.append((step, iter(depends_on.get(step, ()))))
    return None


class DependencyGraph:
    """The declared links of a set of names; immutable once built.

    Raises ``ValueError`` for a name declared twice, ``KeyError`` for a ``depends_on``
    that names an undeclared name (saying who declared it and what is declared), and
    :class:`DependencyCycleError` (a ``ValueError``) naming a cycle.
    """

    def __init__(self, nodes: Iterable[Node] = ()) -> None:
        declared: dict[str, Node] = {}
        for node in nodes:
            if not isinstance(node, Node):
                raise TypeError(f"nodes must be Node declarations, got {node!r}")
            if node.name in declared:
                raise ValueError(f"name {node.name!r} is declared twice")
            declared[node.name] = node
        for node in declared.values():
            for upstream in node.depends_on:
                if upstream not in declared:
                    raise KeyError(
                        f"{node.name!r} depends on {upstream!r}, which is not registered "
                        f"(registered: {', '.join(sorted(declared)) or 'none'})"
                    )
        cycle = find_cycle({name: node.depends_on for name, node in declared.items()})
        if cycle is not None:
            raise DependencyCycleError(cycle)
        self._nodes = declared
        self._upstream = _closures(declared)
        self._tags = {name: frozenset(node.tags) for name, node in declared.items()}

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[str]:
        """The declared names, in declaration order."""
        return iter(self._nodes)

    def node(self, name: str) -> Node:
        """The declaration of ``name`` (KeyError naming it when it has none)."""
        try:
            return self._nodes[name]
        except KeyError:
            raise KeyError(f"no declaration for {name!r}") from None

    def upstream(self, name: str) -> frozenset[str]:
        """Every name ``name`` depends on, directly or through others (empty when undeclared)."""
        return self._upstream.get(name, frozenset())

    def depends(self, name: str, on: str) -> bool:
        """Whether a chain of ``depends_on`` leads from ``name`` to ``on``."""
        return on in self._upstream.get(name, ())

    def link(self, a: str, b: str) -> Link | None:
        """Why ``a`` and ``b`` are linked (a depends_on chain first, else a shared tag), or None."""
        if self.depends(a, b):
            return Link("depends_on", self._path(a, b))
        if self.depends(b, a):
            return Link("depends_on", self._path(b, a))
        shared = self._tags.get(a, frozenset()) & self._tags.get(b, frozenset())
        if shared:
            return Link("tag", min(shared))
        return None

    def _path(self, start: str, goal: str) -> tuple[str, ...]:
        """The shortest depends_on chain from ``start`` to ``goal`` (breadth first)."""
        came_from: dict[str, str | None] = {start: None}
        queue = deque([start])
        while queue:
            name = queue.popleft()
            if name == goal:
                break
            for upstream in self._nodes[name].depends_on:
                if upstream not in came_from:
                    came_from[upstream] = name
                    queue.append(upstream)
        chain = [goal]
        while (previous := came_from[chain[-1]]) is not None:
            chain.append(previous)
        return tuple(reversed(chain))


def _closures(nodes: Mapping[str, Node]) -> dict[str, frozenset[str]]:
    """Each name's transitive upstream, upstream names first (the graph has no cycle)."""
    closure: dict[str, frozenset[str]] = {}
    for start in nodes:
        stack = [start]
        while stack:
            name = stack[-1]
            if name in closure:
                stack.pop()
                continue
            missing = [up for up in nodes[name].depends_on if up not in closure]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            ups = set(nodes[name].depends_on)
            for up in nodes[name].depends_on:
                ups |= closure[up]
            closure[name] = frozenset(ups)
    return closure
