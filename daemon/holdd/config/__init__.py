"""Reading and validating holdd.toml, rule files and rule test files, with file:line problems."""
