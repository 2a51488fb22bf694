"""bridged: the LLM gateway data plane.

A request's path: app.py (wiring) → forward.py (auth, route, key failover, streaming) →
the upstream; the route table it reads comes from routes.py, swapped whole by reload.py
each time the controlplane sends a snapshot.
"""
