"""The load scenarios: each is ``async run(ctx) -> Result``."""

from . import fanout, messaging, subscribe

SCENARIOS = {
    "messaging": messaging.run,
    "subscribe": subscribe.run,
    "fanout": fanout.run,
}
