"""The state database's schema, as migrations from `PRAGMA user_version` n to n + 1."""

from __future__ import annotations

#: The schema this holdd writes. Bump it and append a migration to change it.
SCHEMA_VERSION = 2

# MIGRATIONS[n] takes a database from user_version n to n + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE claims (
            call_session_id INTEGER NOT NULL,
            rule            TEXT    NOT NULL,
            action          TEXT    NOT NULL,
            claimed_at      REAL    NOT NULL,
            result          TEXT,
            finished_at     REAL,
            PRIMARY KEY (call_session_id, rule, action)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX claims_pending ON claims (claimed_at) WHERE result IS NULL",
        """
        CREATE TABLE calls (
            call_session_id INTEGER PRIMARY KEY,
            episode         INTEGER NOT NULL,
            talk_started_at REAL,
            state           TEXT    NOT NULL,
            updated_at      REAL    NOT NULL,
            fields          TEXT    NOT NULL DEFAULT '{}'
        )
        """,
        """
        CREATE TABLE timers (
            kind            TEXT    NOT NULL CHECK (kind IN ('after', 'unhold')),
            call_session_id INTEGER NOT NULL,
            rule            TEXT    NOT NULL,
            due_at          REAL    NOT NULL,
            PRIMARY KEY (kind, call_session_id, rule)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX timers_call ON timers (call_session_id)",
        """
        CREATE TABLE traces (
            id              INTEGER PRIMARY KEY,
            call_session_id INTEGER NOT NULL,
            at              REAL    NOT NULL,
            kind            TEXT    NOT NULL CHECK (kind IN ('event', 'evaluation', 'action')),
            payload         TEXT    NOT NULL
        )
        """,
        "CREATE INDEX traces_call ON traces (call_session_id, id)",
        "CREATE INDEX traces_at ON traces (at)",
        """
        CREATE TABLE cooldowns (
            rule     TEXT NOT NULL,
            contact  TEXT NOT NULL,
            fired_at REAL NOT NULL,
            PRIMARY KEY (rule, contact)
        ) WITHOUT ROWID
        """,
    ),
    (
        # What the machine remembers of a call beyond its state: the rules
        # that acted on it and the episode they acted in; a timer's episode
        # and mode (a restored timer keeps the mode it was armed with).
        "ALTER TABLE calls ADD COLUMN fired TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE calls ADD COLUMN acted_episode INTEGER",
        "ALTER TABLE calls ADD COLUMN decided_episode INTEGER",
        "ALTER TABLE timers ADD COLUMN episode INTEGER",
        "ALTER TABLE timers ADD COLUMN shadow INTEGER NOT NULL DEFAULT 0",
    ),
)
