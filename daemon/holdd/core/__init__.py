"""The pure core: no asyncio, sockets, sqlite3, files, environment or clock.

See docs/architecture.md.
"""
