"""The SQL of each store operation (shell: io/store/sqlite.py runs it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, assert_never

import orjson

from holdd.core.records import (
    AddTrace,
    CallRecord,
    DeleteCall,
    DropTimer,
    FinishClaim,
    PutClaim,
    PutTimer,
    RecordCooldown,
    ReleaseClaim,
    SaveCall,
    StoreOp,
)
from holdd.core.rules.patterns import digits
from holdd.core.states import CallState


def statement(op: StoreOp) -> tuple[str, tuple[object, ...]]:
    """The SQL of one store operation."""
    if isinstance(op, AddTrace):
        e = op.entry
        return _ADD_TRACE, (e.call_session_id, e.at, e.kind.value, as_json(e.payload))
    if isinstance(op, SaveCall):
        r = op.record
        return _SAVE_CALL, (
            r.call_session_id,
            r.episode,
            r.talk_started_at,
            r.state.value,
            r.updated_at,
            as_json(r.fields),
            orjson.dumps(list(r.fired)).decode(),
            r.acted_episode,
            r.decided_episode,
        )
    if isinstance(op, PutClaim):
        c = op.claim
        return _PUT_CLAIM, (c.call_session_id, c.rule, c.action, c.claimed_at)
    if isinstance(op, FinishClaim):
        return _FINISH_CLAIM, (op.result, op.at, *op.key)
    if isinstance(op, ReleaseClaim):
        return _RELEASE_CLAIM, op.key
    if isinstance(op, PutTimer):
        t = op.timer
        return _PUT_TIMER, (t.kind.value, t.call_session_id, t.rule, t.due_at, t.episode, t.shadow)
    if isinstance(op, DropTimer):
        return _DROP_TIMER, (op.kind.value, op.call_session_id)
    if isinstance(op, DeleteCall):
        return _DELETE_CALL, (op.call_session_id,)
    if isinstance(op, RecordCooldown):
        return _RECORD_COOLDOWN, (op.rule, digits(op.contact), op.at)
    assert_never(op)


_ADD_TRACE = "INSERT INTO traces (call_session_id, at, kind, payload) VALUES (?, ?, ?, ?)"
_SAVE_CALL = (
    "INSERT INTO calls (call_session_id, episode, talk_started_at, state, updated_at, fields,"
    " fired, acted_episode, decided_episode) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (call_session_id) DO UPDATE SET episode = excluded.episode,"
    " talk_started_at = excluded.talk_started_at, state = excluded.state,"
    " updated_at = excluded.updated_at, fields = excluded.fields, fired = excluded.fired,"
    " acted_episode = excluded.acted_episode, decided_episode = excluded.decided_episode"
)
_PUT_CLAIM = (
    "INSERT INTO claims (call_session_id, rule, action, claimed_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT DO NOTHING"
)
_FINISH_CLAIM = (
    "UPDATE claims SET result = ?, finished_at = ?"
    " WHERE call_session_id = ? AND rule = ? AND action = ?"
)
_RELEASE_CLAIM = (
    "DELETE FROM claims WHERE call_session_id = ? AND rule = ? AND action = ? AND result IS NULL"
)
# A call has at most one timer of each kind (core/rules/driver.py Timer.key).
_PUT_TIMER = (
    "INSERT INTO timers (kind, call_session_id, rule, due_at, episode, shadow)"
    " VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (kind, call_session_id, rule) DO UPDATE SET due_at = excluded.due_at,"
    " episode = excluded.episode, shadow = excluded.shadow"
)
_DROP_TIMER = "DELETE FROM timers WHERE kind = ? AND call_session_id = ?"
_DELETE_CALL = "DELETE FROM calls WHERE call_session_id = ?"
_RECORD_COOLDOWN = (
    "INSERT INTO cooldowns (rule, contact, fired_at) VALUES (?, ?, ?)"
    " ON CONFLICT (rule, contact) DO UPDATE SET fired_at = max(fired_at, excluded.fired_at)"
)


def call_record(row: Sequence[Any]) -> CallRecord:
    """A `calls` row (call_session_id, episode, talk_started_at, state,
    updated_at, fields, fired, acted_episode, decided_episode), either store's."""
    csid, episode, started, state, updated, fields, fired, acted, decided = row
    return CallRecord(
        csid,
        episode,
        started,
        CallState(state),
        updated,
        orjson.loads(fields),
        tuple(orjson.loads(fired)),
        acted,
        decided,
    )


def as_json(payload: Mapping[str, Any]) -> str:
    # A trace is diagnostics: an odd value is stored as its repr, never an error.
    return orjson.dumps(payload, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()
