"""Notifications (`notify:` in rollout.yaml) through the real `rollout` command: what the sinks receive,
what filters them, what a failing receiver costs (nothing but a record), and where no secret ever goes.

Receivers are in-process loopback servers (support.QuietServer); the rollbacks are level 1 on a test
world of real files (no gateway: support.NO_GATEWAY), so nothing here needs the sandbox.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from rollout_cli.schemas import load_schema
from support import QuietServer, World, make_world

SECRET = "whsec-5f1c0d9e-hmac-signing-secret"
TOKEN = "T0ROLLOUT/B0NOTIFY/xoxbSlackTokenPart9c1f"  # what a Slack incoming-webhook URL carries in its path
MASTER_KEY = "sk-master-0123456789abcdef-not-for-steps"
OPENROUTER_KEY = "sk-or-v1-abcdef0123456789abcdef-not-for-steps"
ACTOR = "alice@ops"


class Receiver:
    """A webhook endpoint answering `status` (or never, `hang`): every POST kept with its headers."""

    def __init__(self, status: int | str = 200) -> None:
        self.status = status
        self.got: list[tuple[str, dict[str, str], bytes]] = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.got.append((self.path, dict(self.headers), body))
                if receiver.status == "hang":
                    receiver.release.wait(30)  # bounded: the test ends it sooner
                    return
                self.send_response(int(receiver.status))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, _, body in self.got]

    def events(self) -> list[dict]:
        """One body per event: a retry (a first attempt timed out on a busy machine) counts once."""
        return list({body["id"]: body for body in self.bodies()}.values())

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(status: int | str = 200) -> Receiver:
        made.append(Receiver(status))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path, percentage=10)


def with_sinks(world: World, yaml: str) -> None:
    path = world.ws / "rollout.yaml"
    path.write_text(path.read_text() + "notify:\n" + yaml)


def notification_errors(body: dict) -> list[str]:
    validator = Draft202012Validator(load_schema("notification"))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]


def secret_env(**more: str) -> dict[str, str]:
    return {"LITELLM_MASTER_KEY": MASTER_KEY, "OPENROUTER_API_KEY": OPENROUTER_KEY, "ROLLOUT_ACTOR": ACTOR,
            "HOOK_SECRET": SECRET, **more}


# --- delivery ---------------------------------------------------------------------------------


def test_a_rollback_notifies_every_sink_after_the_change(world, receivers, tmp_path) -> None:
    hook, slack = receivers(), receivers()
    stdin_copy = tmp_path / "command-stdin.json"
    copier = f"import sys; open({str(stdin_copy)!r}, 'wb').write(sys.stdin.buffer.read())"
    with_sinks(world, f"""\
  - {{type: webhook, name: ops-hook, url_env: HOOK_URL, secret_env: HOOK_SECRET}}
  - {{type: slack, url_env: SLACK_URL, min_severity: critical}}
  - {{type: command, name: pager, command: [{sys.executable}, -c, "{copier}"]}}
""")
    env = secret_env(HOOK_URL=hook.url(), SLACK_URL=slack.url(f"/services/{TOKEN}"))
    result = world.cli("rollback", "--level", "1", "--yes", "--reason", "primary down", "--json", env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [(d["sink"], d["ok"], d["error"]) for d in data["notifications"]] == [
        ("ops-hook", True, None), ("slack", True, None), ("pager", True, None)]
    assert "notified ops-hook, slack, pager" in data["messages"]

    path, headers, raw = hook.got[-1]  # the last attempt: on a busy machine a first one may have timed out
    assert path == "/hook"
    body = json.loads(raw)
    assert notification_errors(body) == []
    assert body["event"] == "rolled_back" and body["severity"] == "critical" and body["actor"] == ACTOR
    assert body["stage"] == {"from": 10, "to": 0}
    assert body["reasons"][0] == "reason: primary down" and body["workspace"] == str(world.ws)
    assert headers["X-Rollout-Event"] == "rolled_back" and headers["X-Rollout-Delivery"] == body["id"]
    expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Rollout-Signature"], expected)
    # the audit trail was written before anyone was told: the rollback is done when the sinks hear of it
    assert world.history()[-1]["result"] == "ok"

    _, slack_headers, slack_raw = slack.got[-1]
    payload = json.loads(slack_raw)
    assert "X-Rollout-Signature" not in slack_headers
    # Slack reads <, > and & as markup: escaped as its docs ask
    assert payload["text"].startswith("🚨 rollout rolled_back: rolled back with level 1: traffic 10% -&gt; 0%")
    assert [block["type"] for block in payload["blocks"]] == ["section", "section", "section", "context"]
    assert "*actor* alice@ops" in json.dumps(payload["blocks"], ensure_ascii=False)

    piped = json.loads(stdin_copy.read_text())
    assert notification_errors(piped) == [] and piped["id"] == body["id"]


def test_min_severity_keeps_a_hold_from_a_critical_only_sink(world, receivers) -> None:
    everything, critical = receivers(), receivers()
    with_sinks(world, """\
  - {type: webhook, name: all, url_env: ALL_URL}
  - {type: webhook, name: pager, url_env: PAGER_URL, min_severity: critical}
""")
    env = secret_env(ALL_URL=everything.url(), PAGER_URL=critical.url())
    held = world.cli("advance", "--yes", "--json", env=env)  # no gateway there: it holds, nothing written
    assert held.exit_code in (1, 3), held.output
    data = json.loads(held.stdout)
    assert [d["sink"] for d in data["notifications"]] == ["all"]
    [hold] = everything.events()
    assert notification_errors(hold) == []
    assert hold["event"] == "hold" and hold["verdict"] == data["verdict"]
    assert hold["severity"] == ("info" if data["verdict"] == "HOLD" else "warning")
    assert hold["stage"] == {"from": 10, "to": 50}
    # plain one-line text, link-free: a URL is reduced to its host (its path and query may carry a token)
    assert hold["reasons"] == [" ".join(reason.replace("http://", "").split()) for reason in data["reasons"]]
    assert critical.got == []

    assert world.cli("rollback", "--level", "1", "--yes", env=env).exit_code == 0
    assert [b["event"] for b in critical.events()] == ["rolled_back"]
    assert [b["event"] for b in everything.events()] == ["hold", "rolled_back"]


def test_dry_runs_and_drills_notify_nobody(world, receivers) -> None:
    hook = receivers()
    with_sinks(world, "  - {type: webhook, url_env: HOOK_URL}\n")
    env = secret_env(HOOK_URL=hook.url())
    assert world.cli("rollback", "--level", "1", "--dry-run", env=env).exit_code == 0
    assert world.cli("rollback", "--level", "1", "--drill", env=env).exit_code == 0
    assert world.cli("advance", "--dry-run", env=env).exit_code in (1, 3)
    assert hook.got == []


# --- failing receivers --------------------------------------------------------------------------


def test_failing_receivers_are_recorded_and_never_change_the_rollback(world, receivers) -> None:
    failing, hanging = receivers(500), receivers("hang")
    absent = receivers()
    absent_url = absent.url()
    absent.close()  # nothing listens there any more: connection refused
    with_sinks(world, """\
  - {type: webhook, name: failing, url_env: FAILING_URL}
  - {type: webhook, name: hanging, url_env: HANGING_URL}
  - {type: slack, name: absent, url_env: ABSENT_URL}
  - {type: webhook, name: unset, url_env: NEVER_SET_URL}
""")
    env = secret_env(FAILING_URL=failing.url(f"/{TOKEN}"), HANGING_URL=hanging.url(f"/{TOKEN}"),
                     ABSENT_URL=absent_url + f"/services/{TOKEN}")
    result = world.cli("rollback", "--level", "1", "--yes", "--reason", "primary down", "--json", env=env)
    hanging.release.set()
    assert result.exit_code == 0, result.output  # as without sinks
    data = json.loads(result.stdout)
    assert data["within_budget"] is True and data["levels"][0]["within_budget"] is True
    assert [s["status"] for s in data["levels"][0]["steps"]] == ["ok", "ok", "ok", "unchanged", "ok"]
    outcome = {d["sink"]: d for d in data["notifications"]}
    assert not any(d["ok"] for d in outcome.values())
    assert outcome["failing"]["attempts"] == 3 and outcome["failing"]["error"] == "HTTP 500"
    assert len(failing.got) == 3  # retried, with the same body (its id) each time
    assert len({json.loads(body)["id"] for _, _, body in failing.got}) == 1
    assert "no whole answer within" in outcome["hanging"]["error"]
    assert "Connection refused" in outcome["absent"]["error"]
    assert outcome["unset"] == {"sink": "unset", "ok": False, "attempts": 0,
                                "error": "$NEVER_SET_URL is not set: nothing sent"}
    records = [json.loads(line) for line in (world.ws / ".rollout" / "notify-failures.jsonl").read_text().splitlines()]
    assert [(r["sink"], r["event"], r["severity"]) for r in records] == [
        ("failing", "rolled_back", "critical"), ("hanging", "rolled_back", "critical"),
        ("absent", "rolled_back", "critical"), ("unset", "rolled_back", "critical")]
    assert [r["error"] for r in records] == [outcome[r["sink"]]["error"] for r in records]
    assert sum("not delivered" in message for message in data["messages"]) == 4
    assert world.history()[-1]["result"] == "ok"
    for text in (result.output, json.dumps(records)):
        assert TOKEN not in text and str(failing.server.server_port) not in text


def test_a_signing_secret_that_is_not_set_sends_nothing_unsigned(world, receivers) -> None:
    hook = receivers()
    with_sinks(world, "  - {type: webhook, url_env: HOOK_URL, secret_env: UNSET_SECRET}\n")
    result = world.cli("rollback", "--level", "1", "--yes", "--json", env=secret_env(HOOK_URL=hook.url()))
    assert result.exit_code == 0
    assert json.loads(result.stdout)["notifications"][0]["error"] == (
        "$UNSET_SECRET (the signing secret) is not set: nothing sent unsigned")
    assert hook.got == []


# --- no secret anywhere ---------------------------------------------------------------------------


def test_no_secret_in_any_output_record_or_notification(world, receivers) -> None:
    ok, failing = receivers(), receivers(503)
    with_sinks(world, """\
  - {type: webhook, name: signed, url_env: HOOK_URL, secret_env: HOOK_SECRET}
  - {type: slack, name: chat, url_env: SLACK_URL}
""")
    env = secret_env(HOOK_URL=ok.url(f"/hooks/{TOKEN}"), SLACK_URL=failing.url(f"/services/{TOKEN}"))
    outputs = [world.cli("rollback", "--level", "1", "--yes", "--reason", "primary down", *extra, env=env)
               for extra in ((), ("--json",))]
    assert all(result.exit_code == 0 for result in outputs)
    sent = [body.decode() for _, _, body in ok.got + failing.got]
    assert len(sent) >= 2 + 2 * 3  # the failing one thrice a run
    texts = [r.stdout + r.stderr for r in outputs] + sent
    texts += [p.read_text() for p in (world.ws / ".rollout").iterdir() if p.is_file()]
    for text in texts:
        for secret in (TOKEN, SECRET, MASTER_KEY, OPENROUTER_KEY):
            assert secret not in text

    # a reason that quotes secrets (pasted by mistake) is blanked in what is sent
    pasted = f"primary down, see {failing.url(f'/services/{TOKEN}')} {MASTER_KEY}"
    assert world.cli("rollback", "--level", "1", "--yes", "--reason", pasted, env=env).exit_code == 0
    assert ok.bodies()[-1]["reasons"][0] == "reason: primary down, see [secret] [secret]"  # a sink URL is one secret
    assert all(TOKEN not in body.decode() and MASTER_KEY not in body.decode() for _, _, body in ok.got + failing.got)


# --- rollout.yaml's notify: validated before anything runs ----------------------------------------


@pytest.mark.parametrize(("sinks", "env", "message"), [
    ("  - {type: webhook, url: http://127.0.0.1:9/x}\n", {},
     "unknown key 'notify[0].url' (known: type, name, url_env, url_file, secret_env, secret_file, command, "
     "min_severity) (a URL is a secret: name the variable that holds it with url_env)"),
    ("  - {type: teams, url_env: HOOK_URL}\n", {}, "'notify[0].type' is 'teams'; use one of webhook, slack, command"),
    ("  - {type: slack, url_env: HOOK_URL, min_severity: urgent}\n", {},
     "'notify[0].min_severity' is 'urgent'; use one of info, warning, critical"),
    ("  - {type: webhook}\n", {}, "'notify[0]' needs exactly one of url_env (a variable holding the URL) or url_file"),
    ("  - {type: webhook, url_env: HOOK_URL}\n", {"HOOK_URL": f"hooks.example/{TOKEN}"},
     "'notify[0]' (webhook): $HOOK_URL holds no http:// or https:// URL (value not shown); set it to the sink's URL"),
    ("  - {type: webhook, url_env: 'https://hooks.example/x'}\n", {},
     "'notify[0].url_env' must be the name of an environment variable (letters, digits, _), not a URL (value not "
     "shown)"),
    ("  - {type: slack, url_file: 'https://hooks.example/services/{TOKEN}'}\n".replace("{TOKEN}", TOKEN), {},
     "'notify[0].url_file' holds a URL, not a path (value not shown)"),
    (f"  - {{type: webhook, url_env: HOOK_URL, secret_env: '{SECRET}'}}\n", {},
     "'notify[0].secret_env' must be the name of an environment variable (letters, digits, _), not a secret"),
    ("  - {type: webhook, url_file: hook-url}\n", {"file hook-url": "127.0.0.1:9/hook"},
     "'notify[0]' (webhook): url file "),
    ("  - {type: slack, url_env: HOOK_URL, secret_env: HOOK_SECRET}\n", {},
     "'notify[0].secret_env' signs webhook bodies; a slack sink takes no secret"),
    ("  - {type: command, command: []}\n", {}, "'notify[0].command' must be a non-empty list"),
    ("  - {type: command, command: [cat], url_env: HOOK_URL}\n", {},
     "'notify[0].url_env' is for webhook and slack sinks; a command sink takes only 'command'"),
    ("  - {type: webhook, name: ops, url_env: A}\n  - {type: slack, name: ops, url_env: B}\n", {},
     "two sinks in 'notify' are named 'ops'; give each its own name"),
    ("  {type: webhook, url_env: A}\n", {}, "'notify' must be a list of sinks, got a mapping"),
])
def test_a_bad_sink_is_exit_2_in_one_line_with_nothing_changed(world, sinks, env, message) -> None:
    env = dict(env)
    for key in [key for key in env if key.startswith("file ")]:  # a file in the workspace, not a variable
        (world.ws / key.removeprefix("file ")).write_text(env.pop(key) + "\n")
    with_sinks(world, sinks)
    before = world.snapshot()
    result = world.cli("rollback", "--level", "1", "--yes", env=env)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output and TOKEN not in result.output and SECRET not in result.output
    assert world.snapshot() == before and world.history() == []


def test_an_unset_url_variable_does_not_stop_a_rollback(world) -> None:
    """An operator's shell without the Slack URL must still roll back: the sink fails, the rollback does not."""
    with_sinks(world, "  - {type: slack, url_env: SLACK_URL_NOT_IN_THIS_SHELL}\n")
    result = world.cli("rollback", "--level", "1", "--yes")
    assert result.exit_code == 0, result.output
    assert ("notification to 'slack' not delivered after 0 attempt(s): $SLACK_URL_NOT_IN_THIS_SHELL is not set: "
            "nothing sent") in result.stdout


def test_the_webhook_body_schema_is_valid_and_strict() -> None:
    schema = load_schema("notification")
    Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False and schema["properties"]["schema_version"]["const"] == 1


# --- secrets in unattended steps ------------------------------------------------------------------


def test_a_run_step_gets_no_secret_unless_it_names_one(world, tmp_path) -> None:
    dump = tmp_path / "env-{}.json"
    printer = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"
    books = world.ws / "playbooks"
    books.mkdir()
    (books / "rollback-1.yaml").write_text(f"""\
kind: rollback
level: 1
budget: 30s
steps:
  - {{type: run, argv: [{sys.executable}, -c, "{printer}", "{str(dump).format('plain')}"]}}
  - {{type: run, argv: [{sys.executable}, -c, "{printer}", "{str(dump).format('named')}"], env: [LITELLM_MASTER_KEY]}}
""")
    config = world.ws / "rollout.yaml"
    config.write_text(config.read_text() + "playbooks: ./playbooks\nmetrics: {source: gateway, token_env: PROM_TOKEN}\n")
    with_sinks(world, "  - {type: webhook, url_env: HOOK_URL, secret_env: HOOK_SECRET}\n")
    env = secret_env(HOOK_URL=f"http://127.0.0.1:9/{TOKEN}", PROM_TOKEN="prom-bearer-token-0123456789",
                     KEEP_ME="an ordinary variable")
    result = world.cli("rollback", "--level", "1", "--yes", env=env)
    assert result.exit_code == 0, result.output
    assert "run " in result.stdout and "(with LITELLM_MASTER_KEY)" in result.stdout
    plain = json.loads(Path(str(dump).format("plain")).read_text())
    named = json.loads(Path(str(dump).format("named")).read_text())
    for gone in ("LITELLM_MASTER_KEY", "OPENROUTER_API_KEY", "HOOK_URL", "HOOK_SECRET", "PROM_TOKEN"):
        assert gone not in plain
    assert plain["KEEP_ME"] == "an ordinary variable" and "PATH" in plain
    assert named["LITELLM_MASTER_KEY"] == MASTER_KEY
    assert not {"OPENROUTER_API_KEY", "HOOK_URL", "HOOK_SECRET", "PROM_TOKEN"} & set(named)


def test_a_step_naming_no_variable_name_is_refused(world) -> None:
    books = world.ws / "playbooks"
    books.mkdir()
    (books / "rollback-1.yaml").write_text(
        f"kind: rollback\nlevel: 1\nbudget: 30s\nsteps:\n  - {{type: run, argv: ['true'], env: ['{MASTER_KEY}']}}\n")
    config = world.ws / "rollout.yaml"
    config.write_text(config.read_text() + "playbooks: ./playbooks\n")
    result = world.cli("rollback", "--level", "1", "--yes")
    assert result.exit_code == 2
    assert "step 1 (run): field 'env' item 1 is no variable name" in result.stderr
    assert "never their values" in result.stderr and MASTER_KEY not in result.output


# --- what a summary or reason may carry (unit: the cases of plain()) -------------------------------


@pytest.mark.parametrize(("text", "secrets", "expected"), [
    ("gateway http://127.0.0.1:4000/health/liveliness down", [], "gateway 127.0.0.1:4000 down"),
    ("see https://user:pw@hooks.example.com/services/T0/B0/x?token=1#a", [], "see hooks.example.com"),
    ("key sk-abc123def456 leaked", ["sk-abc123def456"], "key [secret] leaked"),
    ("the URL https://h.example/p/SECRETPART", ["/p/SECRETPART", "https://h.example/p/SECRETPART"],
     "the URL [secret]"),
    ("two\nlines\r\tand\x1b[31m colour\u2028", [], "two lines and [31m colour"),
    ("x" * 600, [], "x" * 499 + "…"),
])
def test_plain_gives_one_line_without_links_or_secrets(text: str, secrets: list[str], expected: str) -> None:
    from rollout_cli.notify.event import plain

    longest_first = sorted(secrets, key=len, reverse=True)  # as webhook_body orders them
    assert plain(text, longest_first) == expected
