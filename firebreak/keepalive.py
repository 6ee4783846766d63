"""How long an idle HTTP connection between a door and an app behind it is kept open.

The side that closes an idle connection must be the one that would send on it next: the door. An
app that closed first could close one the door is sending a request on at that moment, and a POST
without an Idempotency-Key (a portal form) is not one Go's transport sends again: the client gets
a 502. Caddy keeps them 2 minutes by default and uvicorn 5 s, so both are set from here."""

APP_IDLE_S = 30    # every app behind a door: uvicorn's timeout_keep_alive
DOOR_IDLE_S = 25   # the doors' connections to the apps: Caddy's reverse_proxy keep_alive.idle_timeout
