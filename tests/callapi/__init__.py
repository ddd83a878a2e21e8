"""Tests of the Call API client, the action runner and the simulator's fault layer.

A package, so that its conftest.py is `callapi.conftest` and never shadows
tests/conftest.py (imported as `conftest` by other tests)."""
