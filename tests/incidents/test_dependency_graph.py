"""Declared links: depends_on chains either way, shared tags, and the whole graph checked
when it is built (undeclared names, cycles named)."""

from __future__ import annotations

import pytest

from recovery.dependency_graph import (
    DependencyCycleError,
    DependencyGraph,
    Link,
    Node,
    find_cycle,
)


def shop() -> DependencyGraph:
    return DependencyGraph([
        Node("db"), Node("api", ["db"]), Node("web", "api"),
        Node("cache", tags={"host": "h1"}), Node("search", tags={"host": "h1", "zone": "a"}),
        Node("mail", tags={"zone": "b"}),
    ])


def test_a_depends_on_chain_links_both_ways_with_the_chain_downstream_first() -> None:
    graph = shop()
    assert graph.link("web", "db") == Link("depends_on", ("web", "api", "db"))
    assert graph.link("db", "web") == Link("depends_on", ("web", "api", "db"))
    assert graph.depends("web", "db") and not graph.depends("db", "web")
    assert graph.upstream("web") == {"api", "db"}


def test_a_shared_tag_value_links_and_another_value_of_the_same_tag_does_not() -> None:
    graph = shop()
    assert graph.link("cache", "search") == Link("tag", ("host", "h1"))
    assert graph.link("search", "mail") is None  # zone a and zone b
    assert graph.link("web", "cache") is None
    assert graph.link("web", "undeclared") is None


def test_depends_on_may_name_what_is_declared_later_but_not_what_is_never_declared() -> None:
    assert "db" in DependencyGraph([Node("api", ["db"]), Node("db")])
    with pytest.raises(KeyError, match=r"'api' depends on 'dbx', which is not registered "
                                       r"\(registered: api, db\)"):
        DependencyGraph([Node("api", ["dbx"]), Node("db")])


def test_a_cycle_is_refused_naming_it() -> None:
    with pytest.raises(DependencyCycleError, match="a -> b -> c -> a") as caught:
        DependencyGraph([Node("a", "b"), Node("b", "c"), Node("c", "a"), Node("d", "a")])
    assert caught.value.cycle == ("a", "b", "c", "a")
    assert isinstance(caught.value, ValueError)
    with pytest.raises(DependencyCycleError, match="self -> self"):
        DependencyGraph([Node("self", "self")])


def test_find_cycle_alone_serves_a_plain_mapping_and_long_chains() -> None:
    assert find_cycle({"a": ["b"], "b": []}) is None
    assert find_cycle({"x": ["y"], "y": ["z", "x"]}) == ("x", "y", "x")
    chain = {f"n{i}": [f"n{i + 1}"] for i in range(5000)}  # deeper than the recursion limit
    assert find_cycle(chain) is None
    chain["n5000"] = ["n0"]
    cycle = find_cycle(chain)
    assert cycle is not None and cycle[0] == cycle[-1] == "n0" and len(cycle) == 5002


def test_bad_declarations_say_which_field_and_value() -> None:
    with pytest.raises(ValueError, match="name must be a non-empty str"):
        Node("")
    with pytest.raises(TypeError, match="depends_on must be names"):
        Node("a", depends_on=3)
    with pytest.raises(ValueError, match="depends_on must be a non-empty str, got ''"):
        Node("a", depends_on=[""])
    with pytest.raises(TypeError, match="tags must be a mapping"):
        Node("a", tags=["host"])
    with pytest.raises(TypeError, match="tag 'host' must be a str, got 1"):
        Node("a", tags={"host": 1})
    with pytest.raises(ValueError, match="'a' is declared twice"):
        DependencyGraph([Node("a"), Node("a")])
    with pytest.raises(TypeError, match="nodes must be Node declarations"):
        DependencyGraph(["a"])  # type: ignore[list-item]
