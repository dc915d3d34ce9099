"""A local stand-in for the DIV change feed (`/movementIndications`), for development and tests.

The real DIV web service is outside our reach; this package serves the documented shape
(`docs/div-feed.md`) over real HTTPS with mutual TLS, fed by a mutation generator that continues
the synthetic register day by day. Production code never imports it.
"""
