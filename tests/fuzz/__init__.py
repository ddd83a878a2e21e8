"""Property tests (hypothesis) of the parsers an operator's text goes through:
rule files, durations, number patterns.

A package, so that its modules never shadow tests/conftest.py."""
