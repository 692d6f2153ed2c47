"""The dashboard tests' two reaches into a feed's own thread, named once.

A feed's thread takes each summary off the Redis channel and publishes the view
once a second of real time. A test decides what arrives and when the view is
judged on its fake clock, so it calls the two steps that thread calls itself: no
Redis in between, no waiting on real time. They stay private in the feed (a user
serves a fleet with ``serve_fleet`` and never holds a feed), so these two helpers
are the only places the tests read them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recovery.dashboard.feed import Feed
    from recovery.dashboard.fleet import FleetFeed


def receive(feed: FleetFeed, data: bytes) -> None:
    """Give ``feed`` one message as its subscriber thread would: checked, then accepted
    or dropped with its reason."""
    feed._receive(data)  # private: the step of the feed's thread that takes one message


def tick(feed: Feed | FleetFeed) -> None:
    """Publish ``feed``'s view now, as its thread does once a second (fading and
    forgetting nodes by the feed's clock, for a fleet)."""
    feed._tick()  # private: the step of the feed's thread that publishes the view
