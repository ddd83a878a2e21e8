"""What the tests share, in one place: the simulator (sim; as a `holdd sim`
process of its own: simproc), holdd.toml and
rule files (config), the captured log (logs), the daemon in the test's own
loop (inproc) or as a `holdd run` subprocess (process), a fake systemd
(systemd), the Call API client and runner harness (callapi) and the chaos
traffic and fault layer (chaos).

Importable as `support`: tests/ is on sys.path because tests/conftest.py
sits in a directory without __init__.py (pytest's "prepend" import mode),
and mypy finds it through `mypy_path`."""
