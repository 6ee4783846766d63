"""The claims service's routes, one router per concern: intake (the API), portal (the public
form and status page), review (the reviewer console), admin (the agent's hooks, metrics, the
API's documentation), health. Each takes what it needs through the typed dependencies of
deps.py; app.py puts them together on one listener, or two (public, admin)."""
