"""The holdd command line: one sub-command per module."""
