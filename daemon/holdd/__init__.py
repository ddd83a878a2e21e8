"""holdd: puts UIS / CoMagic / CallGear calls on hold when operator rules match.

Importing this package imports nothing else: the core modules (events, calls,
rules) must stay free of asyncio and sockets, and tests check that they are.
"""

__version__ = "0.1.0"
