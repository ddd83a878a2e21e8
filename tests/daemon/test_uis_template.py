"""`holdd uis-template`: each template it prints, filled the way UIS fills it
(JSON literals; and with the quoted-placeholder quirk), posted to the webhook
of a running webhook-only daemon whose `[notify] events` maps custom names,
holds the call at the simulated Call API."""

from __future__ import annotations

import io
import re
from pathlib import Path

import aiohttp
import pytest

from holdd.cli.main import main
from holdd.cli.uis_template import EVENT_TYPES, body_template, run_uis_template
from holdd.core.events import decode, event_names
from holdd.sim.server import Simulator
from holdd.sim.webhooks import render
from support.config import config_text, write_config
from support.inproc import running_daemon

SECRET = "uis-template-secret-0123456789"
#: Names an account owner might type; holdd only knows them through [notify] events.
NAMES = {
    "holdd: разговор начался": "talk_started",
    "holdd: разговор окончен": "talk_finished",
    "holdd: звонок завершён": "call_finished",
}
EXTRA = (
    '\n[notify]\ntimezone = "Europe/Moscow"\n\n[notify.events]\n'
    + "".join(f'"{name}" = "{kind}"\n' for name, kind in NAMES.items())
    + f'\n[webhook]\nlisten = "127.0.0.1:0"\npath = "/uis/notify"\nsecret = "{SECRET}"\n'
)
RULES = (
    '[[rule]]\nname = "greet"\n[rule.match]\ndirection = "in"\n'
    'contact_phone_number = "7926*"\n[rule.hold]\ntts = "Здравствуйте, {contact_full_name}"\n'
)


def blocks(printed: str) -> list[dict[str, str]]:
    """The notifications of the printed text: name, event type, method, url, body."""
    out = []
    for chunk in printed.split("\n== notification ")[1:]:
        fields = dict(re.findall(r"^(name|event type|method|url): +(.*)$", chunk, re.M))
        fields["body"] = chunk.split("\nbody:\n", 1)[1].split("\n", 1)[0]
        out.append(fields)
    return out


def quirky(template: str) -> str:
    """The classic mistake: every placeholder wrapped in quotes (section 8.2)."""
    return re.sub(r"({{\w+}})", r'"\1"', template)


def test_the_printed_names_and_bodies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(
        tmp_path, config_text(callapi_url="https://callapi.uiscom.ru/v4.0", extra=EXTRA), RULES
    )
    assert main(["uis-template", "-c", str(config)]) == 0
    found = blocks(capsys.readouterr().out)
    assert [b["name"] for b in found] == list(NAMES)
    assert [b["event type"].split(" (")[0] for b in found] == [e.ru for e in EVENT_TYPES]
    assert {b["method"] for b in found} == {"POST"}
    assert {b["url"] for b in found} == {"https://holdd.example.com/uis/notify"}
    for b in found:
        assert f'"secret":"{SECRET}"' in b["body"]
        # Placeholders are bare: UIS substitutes JSON literals.
        assert '"{{' not in b["body"] and '"call_session_id":{{call_session_id}}' in b["body"]
    # Without [webhook] there is nothing to template.
    write_config(
        tmp_path,
        config_text(callapi_url="https://callapi.uiscom.ru/v4.0", notify_url="wss://x/y"),
        RULES,
    )
    assert main(["uis-template", "-c", str(config)]) == 1
    assert "no [webhook] section" in capsys.readouterr().err


@pytest.mark.parametrize("fill", ["as pasted", "placeholders quoted"])
async def test_each_printed_template_filled_by_uis_holds_the_call(
    sim: Simulator, tmp_path: Path, fill: str
) -> None:
    config = config_text(sim, stream=False, extra=EXTRA)
    async with running_daemon(tmp_path, config, RULES) as (daemon, _):
        await daemon.wait_for(lambda: daemon.webhook_address is not None)
        assert daemon.webhook_address is not None
        host, port = daemon.webhook_address
        printed = io.StringIO()
        code = run_uis_template(
            tmp_path / "holdd.toml", f"http://{host}:{port}/uis/notify", out=printed
        )
        assert code == 0
        found = blocks(printed.getvalue())
        assert len(found) == len(EVENT_TYPES)
        csid = await sim.start_call(
            direction="in",
            contact_phone_number="79261234567",
            virtual_phone_number="74993720692",
            contact_full_name="Ольга",
        )
        await sim.answer(csid)
        names = event_names(daemon.settings.events)
        async with aiohttp.ClientSession() as session:
            for block, event in zip(found, EVENT_TYPES, strict=True):
                template = block["body"] if fill == "as pasted" else quirky(block["body"])
                # What UIS fills in for this event type; a variable it does not
                # have (virtual_phone_number on Talk started, say) stays `{{...}}`.
                body = render(
                    template,
                    {
                        "notification_name": block["name"],
                        "notification_time": "2026-11-26 10:00:00.123",
                        "call_session_id": csid,
                        "direction": "in",
                        "call_source": "va",
                        "contact_phone_number": "79261234567",
                        "contact_full_name": "Ольга",
                        "employee_id": 25,
                        "external_id": None,
                    },
                )
                decoded = decode(body, names)
                assert decoded.unknown_names == [] and not decoded.rejections
                assert decoded.notifications[0].kind is event.kind
                headers = {"Content-Type": "application/json"}
                async with session.post(block["url"], data=body, headers=headers) as resp:
                    assert resp.status == 202, await resp.text()
                if event.kind.value == "talk_started":
                    holds = await sim.wait_for_requests(1, method="hold.call")
                    assert holds[0].body["params"]["call_session_id"] == csid  # type: ignore[index]
                    assert holds[0].body["params"]["contact_message"] == {  # type: ignore[index]
                        "type": "tts",
                        "value": "Здравствуйте, Ольга",
                    }
        assert sim.account.call(csid).hold_count == 1


def test_docs_show_the_template_the_command_prints() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "uis.md").read_text("utf-8")
    shown = docs.split("```json\n", 1)[1].split("\n```", 1)[0]
    assert shown == body_template("<your secret>")
