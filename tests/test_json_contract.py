"""The `--json` contract: every command's output validates against its shipped schema.

Each command runs through the real `rollout` CLI against a real sandbox (the
simulator and the real LiteLLM proxy, process runtime); its stdout must be one
JSON object (one per line for `watch` and `health --watch`) that validates
against `rollout_cli/schemas/<command>.schema.json`. A failure with `--json`
still prints one object, the error envelope, pinned below the way pipx pins
its result contract.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from rollout_cli.core.result import SCHEMA_VERSION
from rollout_cli.schemas import load_schema, published
from support import rollout

# one worker starts this module's own sandbox once (tests/conftest.py, rule 6)
pytestmark = [pytest.mark.gateway, pytest.mark.xdist_group("test_json_contract"), pytest.mark.slow(120)]


def _leaf_commands() -> list[str]:
    import typer.main

    from rollout_cli.cli.app import app

    found: list[str] = []

    def walk(command: object, path: tuple[str, ...]) -> None:
        subs = getattr(command, "commands", None) or {}
        if path and (not subs or getattr(command, "invoke_without_command", False)):  # `rollout autopilot` runs too
            found.append(" ".join(path))
        for name, sub in subs.items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return sorted(found)


def valid(command: str, data: dict) -> dict:
    """Validate against the command's schema (every error listed); returns the data."""
    validator = Draft202012Validator(load_schema(command))
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    assert not errors, f"{command} --json does not match its schema:\n" + "\n".join(
        f"  at {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors
    )
    return data


def run_json(*args: str, code: int | None = 0, env: dict[str, str] | None = None) -> dict:
    """Run `rollout ARGS --json`; stdout must be exactly one JSON object."""
    result = rollout(*args, "--json", env=env)
    if code is not None:
        assert result.exit_code == code, result.output
    data = json.loads(result.stdout)
    assert data["exit_code"] == result.exit_code
    return data


def envelope(*args: str, code: int, env: dict[str, str] | None = None) -> dict:
    """Run a failing `rollout ARGS`; stdout is the error envelope, stderr the usual line."""
    result = rollout(*args, env=env)
    assert result.exit_code == code, result.output
    data = json.loads(result.stdout)  # one object: json.loads refuses anything after it
    valid("error", data)
    # pinned, like pipx's tests/test_result_contract.py: these keys, these types, nothing else
    assert set(data) == {"schema_version", "command", "error"}
    assert data["schema_version"] == SCHEMA_VERSION == 1
    assert set(data["error"]) == {"exit_code", "message"}
    assert data["error"]["exit_code"] == code
    assert isinstance(data["error"]["message"], str) and data["error"]["message"]
    assert data["error"]["message"] in result.stderr
    return data


# --- the shipped schemas ---------------------------------------------------------------------


def test_one_valid_schema_per_command_and_the_error_envelope() -> None:
    assert published() == sorted([*_leaf_commands(), "error"])
    for command in published():
        schema = load_schema(command)
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION
        assert {"schema_version", "command"} <= set(schema["required"])
        if command not in ("error", "watch"):
            assert schema["properties"]["command"] == {"const": command}
            assert {"exit_code", "messages"} <= set(schema["required"])


# --- every command, on a sandbox of its own (it advances, rolls back, stops the gateway) ----------


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory):
    from rollout_cli.sandbox import world

    root = tmp_path_factory.mktemp("contract") / "sb"
    info = world.up(root, runtime="process", gateway_port=0, simulator_port=0, timeout=90)
    try:
        yield info
    finally:
        world.down(root)


def cli(box, *args: str, code: int | None = 0) -> dict:  # type: ignore[no-untyped-def]
    return run_json("-w", str(box.root), *args, code=code)


def test_read_only_commands(box) -> None:
    valid("status", cli(box, "status"))
    valid("history", cli(box, "history"))
    valid("recover", cli(box, "recover"))
    data = valid("health", cli(box, "health"))
    assert data["verdict"] == "healthy" and len(data["models"]) == 5
    valid("sandbox status", cli(box, "sandbox", "status"))
    valid("sandbox up", cli(box, "sandbox", "up"))  # already up: -w names the sandbox
    valid("gateway status", cli(box, "gateway", "status"))
    valid("gateway logs", cli(box, "gateway", "logs", "--tail", "5"))
    valid("gateway wait", cli(box, "gateway", "wait", "--timeout", "30"))
    valid("gateway start", cli(box, "gateway", "start", "--timeout", "30"))  # running: nothing to do
    report = valid("report", cli(box, "report", code=None))
    assert report["verdict"] in ("GO", "HOLD", "NO-GO") and report["exit_code"] in (0, 1, 3)


def test_health_watch_prints_one_valid_object_per_round(box) -> None:
    result = rollout("-w", str(box.root), "health", "--watch", "--count", "2", "--interval", "0.1", "--json")
    assert result.exit_code == 0, result.output
    rounds = [valid("health", json.loads(line)) for line in result.stdout.splitlines()]
    assert len(rounds) == 2


def test_watch_prints_one_valid_sample_per_line(box) -> None:
    result = rollout("-w", str(box.root), "watch", "--count", "2", "--interval", "0.5", "--json")
    assert result.exit_code == 0, result.output
    samples = [valid("watch", json.loads(line)) for line in result.stdout.splitlines()]
    assert len(samples) == 2 and all(s["command"] == "watch" for s in samples)


def test_smoke_plan_and_run(box, tmp_path: Path) -> None:
    plan = valid("smoke", cli(box, "smoke", "--plan"))
    assert plan["mode"] == "plan"
    junit = tmp_path / "smoke.xml"
    run = valid("smoke", cli(box, "smoke", "--model", "glm-4.5-air", "--junit-xml", str(junit), code=None))
    assert run["mode"] == "run" and run["junit_xml"] == str(junit) and junit.is_file()


def test_sandbox_fault_and_traffic(box) -> None:
    valid("sandbox fault", cli(box, "sandbox", "fault", "kimi-k2", "--status", "429"))
    listed = valid("sandbox fault", cli(box, "sandbox", "fault"))
    assert "kimi-k2" in json.dumps(listed["faults"])
    valid("sandbox fault", cli(box, "sandbox", "fault", "--clear"))
    traffic = valid("sandbox traffic", cli(box, "sandbox", "traffic", "--rps", "5", "--duration", "1"))
    assert traffic["requests"] >= 1


def test_advance_and_rollback(box) -> None:
    valid("advance", cli(box, "advance", "--dry-run", code=None))
    valid("rollback", cli(box, "rollback", "--level", "1", "--dry-run"))
    valid("rollback", cli(box, "rollback", "--level", "2", "--drill", code=None))
    advanced = valid("advance", cli(box, "advance", "--yes", "--skip-soak", "--reason", "contract", code=None))
    assert advanced["complete"] is False
    # 3: the files are written, but the sandbox's app sent no traffic through the gateway to verify
    back = valid("rollback", cli(box, "rollback", "--level", "1", "--yes", "--reason", "contract", code=None))
    assert back["mode"] == "run" and back["levels"][0]["level"] == 1 and back["exit_code"] in (0, 3)
    # both told the sandbox's notification receiver, whose every body is a valid notification
    notified = valid("sandbox notifications", cli(box, "sandbox", "notifications"))
    assert [entry["body"]["event"] for entry in notified["received"]][-1] == "rolled_back"
    for entry in notified["received"]:
        valid("notification", entry["body"])


# `gateway stop`, `wait` and `start --json` (and `restart --json`) are validated in test_gateway.py, on the
# session sandbox's stop, wait, start and restart of its process gateway: LiteLLM starts fewer for the suite.


def test_init_and_sandbox_down(box, tmp_path: Path) -> None:
    valid("init", run_json("init", str(tmp_path / "new")))
    down = tmp_path / "nothing-up"
    valid("sandbox down", run_json("sandbox", "down", str(down)))


# --- failures: the error envelope ---------------------------------------------------------


def test_a_missing_rollout_yaml_is_exit_2_with_the_envelope(tmp_path: Path) -> None:
    data = envelope("-w", str(tmp_path), "status", "--json", code=2)
    assert data["command"] == "status" and "rollout.yaml" in data["error"]["message"]


def test_a_core_error_of_a_subcommand_names_its_path(tmp_path: Path) -> None:
    (tmp_path / "rollout.yaml").write_text("app: {env_file: .env}\ngateway: {url: 'http://127.0.0.1:9'}\n")
    data = envelope("-w", str(tmp_path), "gateway", "stop", "--json", code=2)
    assert data["command"] == "gateway stop" and "gateway.container is not set" in data["error"]["message"]


def test_a_usage_error_still_prints_the_envelope(tmp_path: Path) -> None:
    data = envelope("-w", str(tmp_path), "rollback", "--json", code=2)
    assert data["command"] == "rollback" and "--level" in data["error"]["message"]


def test_an_unknown_level_and_a_missing_confirmation(box) -> None:
    data = envelope("-w", str(box.root), "rollback", "--level", "9", "--json", "--yes", code=2)
    assert "level 9" in data["error"]["message"]
    data = envelope("-w", str(box.root), "rollback", "--level", "1", "--json", code=2)
    assert "--yes" in data["error"]["message"]


def test_no_envelope_without_json(tmp_path: Path) -> None:
    result = rollout("-w", str(tmp_path), "status")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("rollout: error: no rollout.yaml")


def test_debug_anywhere_on_the_line_adds_the_traceback(tmp_path: Path) -> None:
    result = rollout("-w", str(tmp_path), "status", "--json", "--debug")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "rollout: error: no rollout.yaml" in result.stderr
    assert json.loads(result.stdout)["error"]["exit_code"] == 2
    health = rollout("-w", str(tmp_path), "health", "--debug")
    assert health.exit_code == 2 and "No such option" not in health.output
