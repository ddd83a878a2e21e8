"""Fault and chaos tests: the stream killed, the Call API failing at random,
the daemon SIGKILLed, each during a stream of calls.

A package, so that its conftest.py (the chaos `sim`) is `chaos.conftest`."""
