"""The state store: the ledger, calls, timers, cooldowns and traces that survive a restart."""
