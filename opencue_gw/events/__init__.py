"""
Live farm events: Cuebot polled once per watched scope, changes pushed to everyone
watching as Server-Sent Events, and a wait for a job to finish built on the same source.

* :mod:`~opencue_gw.events.model`: events, their wire form, and subscribers' filters.
* :mod:`~opencue_gw.events.diff`: items from Cuebot's messages, and two polls' difference.
* :mod:`~opencue_gw.events.scopes`: what one scope's poll asks, and its timer.
* :mod:`~opencue_gw.events.hub`: scopes, history, subscribers, limits, fan-out.
* :mod:`~opencue_gw.events.sinks`: the SSE stream and the job wait.
* :mod:`~opencue_gw.events.routes`: the HTTP routes and the shutdown service.
"""

from opencue_gw.events.hub import EventHub, EventSettings
from opencue_gw.events.metrics import EventMetrics
from opencue_gw.events.model import Event, EventFilter
from opencue_gw.events.routes import EventRoutes, EventsService, install_event_routes

__all__ = [
    "Event",
    "EventFilter",
    "EventHub",
    "EventMetrics",
    "EventRoutes",
    "EventSettings",
    "EventsService",
    "install_event_routes",
]
