"""The I/O shell: daemon wiring, runner, notification intake, probes, metrics,
logs and the store."""
