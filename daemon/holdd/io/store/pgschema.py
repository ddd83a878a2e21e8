"""The PostgreSQL store's schema, as migrations from version n to n + 1
(shell: io/store/postgres.py runs them at start, under an advisory lock so
that several instances starting at once migrate once).

The tables are SQLite's (io/store/schema.py) plus what several instances
share: the owner of each claim and timer, the instances' leases, and who
ran the latest periodic resync. Times are Unix seconds as the daemon's
clock gives them (`double precision`), except the leases, which use the
server's clock (`now()`) so that the instances' clocks never have to agree.
"""

from __future__ import annotations

#: The schema this holdd writes. Bump it and append a migration to change it.
PG_SCHEMA_VERSION = 1

#: Taken (transaction-scoped) while reading and migrating the schema.
MIGRATION_LOCK = 0x686F6C6464  # "holdd"

PG_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE claims (
            call_session_id bigint           NOT NULL,
            rule            text             NOT NULL,
            action          text             NOT NULL,
            claimed_at      double precision NOT NULL,
            result          text,
            finished_at     double precision,
            owner           text             NOT NULL,
            PRIMARY KEY (call_session_id, rule, action)
        )
        """,
        "CREATE INDEX claims_pending ON claims (owner) WHERE result IS NULL",
        "CREATE INDEX claims_claimed_at ON claims (claimed_at)",
        """
        CREATE TABLE calls (
            call_session_id bigint PRIMARY KEY,
            episode         integer          NOT NULL,
            talk_started_at double precision,
            state           text             NOT NULL,
            updated_at      double precision NOT NULL,
            fields          text             NOT NULL DEFAULT '{}',
            fired           text             NOT NULL DEFAULT '[]',
            acted_episode   integer,
            decided_episode integer
        )
        """,
        "CREATE INDEX calls_updated_at ON calls (updated_at)",
        """
        CREATE TABLE timers (
            kind            text             NOT NULL CHECK (kind IN ('after', 'unhold')),
            call_session_id bigint           NOT NULL,
            rule            text             NOT NULL,
            due_at          double precision NOT NULL,
            episode         integer          NOT NULL,
            shadow          boolean          NOT NULL DEFAULT false,
            owner           text             NOT NULL,
            PRIMARY KEY (kind, call_session_id, rule)
        )
        """,
        "CREATE INDEX timers_call ON timers (call_session_id)",
        "CREATE INDEX timers_owner ON timers (owner)",
        """
        CREATE TABLE traces (
            id              bigserial PRIMARY KEY,
            call_session_id bigint           NOT NULL,
            at              double precision NOT NULL,
            kind            text             NOT NULL
                CHECK (kind IN ('event', 'evaluation', 'action')),
            payload         text             NOT NULL,
            instance        text             NOT NULL
        )
        """,
        "CREATE INDEX traces_call ON traces (call_session_id, id)",
        "CREATE INDEX traces_at ON traces (at)",
        """
        CREATE TABLE cooldowns (
            rule     text             NOT NULL,
            contact  text             NOT NULL,
            fired_at double precision NOT NULL,
            PRIMARY KEY (rule, contact)
        )
        """,
        "CREATE INDEX cooldowns_fired_at ON cooldowns (fired_at)",
        """
        CREATE TABLE leases (
            instance   text        PRIMARY KEY,
            host       text        NOT NULL,
            pid        integer     NOT NULL,
            started_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL
        )
        """,
        """
        CREATE TABLE resyncs (
            id       integer     PRIMARY KEY CHECK (id = 1),
            at       timestamptz NOT NULL,
            instance text        NOT NULL
        )
        """,
    ),
)
