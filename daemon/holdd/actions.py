"""Turns decisions into Call API requests (shell).

Every action is claimed in the ledger before its request is sent, so a
decision that arrives twice (duplicate notification, reconnect, reload) is
sent once. Requests run as tasks kept in a set, one per decision, so a slow
API never stalls the notification stream; every task's end is logged once
here, with `call_session_id` and `rule` bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from holdd.callapi import CallApiClient, CallApiError, OutcomeUnknown, succeeded
from holdd.calls import CallTable
from holdd.ledger import Ledger
from holdd.rules import ContactMessage, Decision

#: What an operator should do about an answer that no retry can fix.
HINTS = {
    "media_file_not_found": "check the rule's media id against get.media_files in the Data API",
    "tts_text_exceeded": "shorten the text or set [callapi] tts_max_length to the tariff's limit",
    "character_encoding_not_allowed": "the TTS text must be UTF-8",
    "invalid_state": "the call was not in Talk when the request arrived",
    "call_session_not_found": "the call ended before the request arrived",
    "access_token_invalid": "the access token is not accepted: check [callapi] credentials",
    "access_token_expired": "the permanent key has expired: issue a new one in the account",
    "access_token_blocked": "the permanent key is blocked: issue a new one in the account",
    "ip_not_whitelisted": "add this host's address to the account's API allow-list",
    "component_disabled": "enable the 'Call API: call management' component in the account",
    "limit_exceeded": "the account's Call API points are used up for now",
}


@dataclass(slots=True)
class Outcome:
    """What became of one decision (kept for the demo table and `explain`)."""

    call_session_id: int
    rule: str
    message: ContactMessage
    result: str
    mnemonic: str | None = None


class ActionRunner:
    def __init__(
        self,
        api: CallApiClient,
        ledger: Ledger,
        table: CallTable,
        clock: Callable[[], float],
        on_outcome: Callable[[Outcome], None] = lambda _o: None,
    ) -> None:
        self.api = api
        self.ledger = ledger
        self.table = table
        self.clock = clock
        self.on_outcome = on_outcome
        self._tasks: set[asyncio.Task[None]] = set()
        self.log = structlog.get_logger("holdd.actions")

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def submit(self, decision: Decision) -> None:
        """Claim and start the action of `decision` (returns at once)."""
        rule = decision.rule.name
        csid = decision.call_session_id
        log = self.log.bind(call_session_id=csid, rule=rule)
        action = "hold" if not decision.shadow else "would_hold"
        if not self.ledger.claim(csid, rule, action, self.clock()):
            log.info("hold_skipped", reason="already_claimed")
            return
        call = self.table.get(csid)
        if call is not None:
            call.fired.add(rule)
        if decision.shadow:
            log.info(
                "would_hold",
                message_type=decision.message.type,
                message_value=decision.message.value,
                episode=decision.episode,
            )
            self.ledger.finish(csid, rule, action, "shadow", self.clock())
            self.on_outcome(Outcome(csid, rule, decision.message, "would_hold"))
            return
        task = asyncio.get_running_loop().create_task(
            self._hold(decision), name=f"hold-{csid}-{rule}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, within: float) -> int:
        """Wait up to `within` seconds for in-flight requests; return how many were left."""
        if not self._tasks:
            return 0
        _done, pending = await asyncio.wait(set(self._tasks), timeout=within)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        return len(pending)

    async def _hold(self, decision: Decision) -> None:
        csid = decision.call_session_id
        rule = decision.rule.name
        message = decision.message
        log = self.log.bind(call_session_id=csid, rule=rule)
        with structlog.contextvars.bound_contextvars(call_session_id=csid, rule=rule):
            result, mnemonic = "failed", None
            try:
                answer = await self.api.hold_call(csid, message)
            except CallApiError as exc:
                mnemonic = exc.mnemonic
                log.error(
                    "hold_failed",
                    **exc.as_log(),
                    hint=HINTS.get(exc.mnemonic),
                    request_message_type=message.type,
                )
            except OutcomeUnknown as exc:
                result = "unknown"
                log.error("hold_outcome_unknown", error=str(exc))
            except asyncio.CancelledError:
                log.warning("hold_cancelled")
                self.ledger.finish(csid, rule, "hold", "cancelled", self.clock())
                raise
            except Exception:
                log.exception("hold_crashed")
            else:
                if succeeded(answer.data):
                    result = "held"
                    self.table.held(csid, self.clock())
                    log.info(
                        "hold_sent",
                        message_type=message.type,
                        message_value=message.value,
                        request_id=answer.request_id,
                        episode=decision.episode,
                    )
                else:
                    log.error("hold_failed", answer=answer.data, hint="success was not true")
            self.ledger.finish(csid, rule, "hold", mnemonic or result, self.clock())
            self.on_outcome(Outcome(csid, rule, message, result, mnemonic))
