"""Fault and chaos tests: the stream killed, the Call API failing at random,
the daemon SIGKILLed, each during a stream of calls.

A package, so that its modules never shadow tests/conftest.py (imported as
`conftest` by other tests)."""
