"""The sandbox's notification receiver, through the real `rollout` command: `sandbox up` starts it and points
the sandbox's rollout.yaml at it, `advance` and `rollback` notify it (signed, valid bodies), `--answer 500` and
`--answer hang` change nothing of a rollback but a recorded failure, `sandbox down` stops it."""

from __future__ import annotations

import json
import os
import stat

import pytest
from jsonschema import Draft202012Validator

from rollout_cli.schemas import load_schema
from support import rollout

pytestmark = [pytest.mark.gateway, pytest.mark.xdist_group("test_notify_sandbox"), pytest.mark.slow(90)]


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory):
    from rollout_cli.sandbox import world

    root = tmp_path_factory.mktemp("notify") / "sb"
    info = world.up(root, runtime="process", gateway_port=0, simulator_port=0, timeout=90)
    try:
        yield info
    finally:
        world.down(root)


def cli(box, *args: str) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    result = rollout("-w", str(box.root), *args, "--json")
    return result.exit_code, json.loads(result.stdout)


def received(box) -> list[dict]:  # type: ignore[no-untyped-def]
    code, data = cli(box, "sandbox", "notifications")
    assert code == 0
    Draft202012Validator(load_schema("sandbox notifications")).validate(data)
    return data["received"]


def test_up_starts_a_receiver_the_workspace_names_by_files(box) -> None:
    code, status = cli(box, "sandbox", "status")
    assert code == 0, status
    receiver = status["receiver"]
    assert receiver["running"] is True and receiver["answer"] == "ok" and receiver["received"] == 0
    state = box.root / ".rollout"
    for name in ("notify-url", "notify-secret"):
        assert stat.S_IMODE(os.stat(state / name).st_mode) == 0o600
    assert (state / "notify-url").read_text().strip() == receiver["url"]
    config = (box.root / "rollout.yaml").read_text()
    assert "url_file: .rollout/notify-url" in config and receiver["url"] not in config


def test_advance_and_rollback_notify_the_receiver_signed(box) -> None:
    advance_code, advanced = cli(box, "advance", "--yes", "--skip-soak", "--reason", "notify test")
    assert advanced["notifications"] and advanced["notifications"][0]["sink"] == "sandbox"
    rollback_code, rolled = cli(box, "rollback", "--level", "1", "--yes", "--reason", "notify test")
    assert [(d["sink"], d["ok"]) for d in rolled["notifications"]] == [("sandbox", True)]
    got = received(box)
    assert {entry["signature"] for entry in got} == {"valid"}
    got = list({entry["body"]["id"]: entry for entry in got}.values())  # a retry (a busy machine) counts once
    body_schema = Draft202012Validator(load_schema("notification"))
    for entry in got:
        body_schema.validate(entry["body"])
    first, last = (entry["body"] for entry in got)
    assert first["event"] == ("advanced" if advance_code == 0 else "hold") and first["stage"]["from"] == 0
    assert last["event"] == "rolled_back" and last["severity"] == "critical"
    assert last["reasons"][0] == "reason: notify test" and last["stage"]["to"] == 0
    assert rollback_code in (0, 3)  # 3: files written, no app traffic to verify


@pytest.mark.parametrize("answer", ["500", "hang"])
def test_a_failing_receiver_changes_nothing_of_a_rollback(box, answer: str) -> None:
    ok_code, _ = cli(box, "rollback", "--level", "1", "--yes", "--reason", "answering ok")
    before = len(received(box))
    assert cli(box, "sandbox", "notifications", "--answer", answer)[1]["receiver"]["answer"] == answer
    try:
        code, data = cli(box, "rollback", "--level", "1", "--yes", "--reason", f"answering {answer}")
    finally:
        cli(box, "sandbox", "notifications", "--answer", "ok")
    assert code == ok_code
    assert data["within_budget"] is True
    [delivery] = data["notifications"]
    assert delivery["ok"] is False and delivery["attempts"] >= 2
    if answer == "500":
        assert delivery["error"] == "HTTP 500: failing on purpose"
    else:
        assert delivery["error"].startswith("no whole answer within")
    tried = received(box)[before:]
    assert len(tried) == delivery["attempts"] and {entry["answer"] for entry in tried} == {answer}
    assert len({entry["body"]["id"] for entry in tried}) == 1  # one event, retried
    failures = [json.loads(line) for line in (box.root / ".rollout" / "notify-failures.jsonl").read_text().splitlines()]
    assert failures[-1]["sink"] == "sandbox" and failures[-1]["error"] == delivery["error"]


def test_no_secret_leaves_the_sandbox_files_that_hold_it(box) -> None:
    state = box.root / ".rollout"
    secrets = [(state / "notify-secret").read_text().strip(), box.master_key]
    _, listing = cli(box, "sandbox", "notifications")
    _, history = cli(box, "history")
    texts = [json.dumps(listing), json.dumps(history)]
    texts += [p.read_text(errors="replace") for p in state.iterdir()
              if p.is_file() and p.suffix in (".jsonl", ".log") and p.name != "gateway.log"]
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_down_stops_the_receiver(box) -> None:
    from rollout_cli.sandbox.state import load_state

    state = load_state(box.root)
    assert state is not None and state.receiver is not None and state.receiver.alive()
    down = rollout("sandbox", "down", str(box.root), "--json")
    assert down.exit_code == 0 and any("notification receiver" in s for s in json.loads(down.stdout)["stopped"])
    assert not state.receiver.alive()
    gone = rollout("sandbox", "notifications", str(box.root))
    assert gone.exit_code == 4 and "no sandbox with a notification receiver is up" in gone.stderr
