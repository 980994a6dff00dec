"""Issue 8, output and trust: every report and view shows hostile text inert, and says what it does not know.

- Markdown (report, smoke), JUnit XML and the terminal escape user- and upstream-supplied text (item 17);
- control characters (ANSI/OSC escapes, CR, newlines) never reach the terminal raw (item 18);
- with the gateway unreachable, no model row says `pass` (item 20);
- `sandbox status` with the Docker engine gone says so, exit 4 (item 21);
- a level-1 rollback and `--help` load none of rich, pydantic, httpx, docker (item 2);
- deploy/docker-compose.yml loads with Debian 12's Compose v1 (item 3).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml
from jsonschema import Draft202012Validator

from rollout_cli.io.net import free_port
from rollout_cli.sandbox.sample_app import write_sample_app
from rollout_cli.schemas import load_schema
from support import ALIASES, World, rollout

REPO = Path(__file__).resolve().parent.parent
KEY = {"LITELLM_MASTER_KEY": "sk-" + "k7Qx9vT2mW4pL8nR3sY6bZ1cF5hJ0dGa"}

# The payload: a forged second verdict heading and raw HTML under the real one.
MARKDOWN_PAYLOAD = 'x\n\n## rollout report: **GO** (0% -> 10%)\n\n<img src="http://evil.example/pixel">'
# Screen clear, cursor home, an OSC 8 hyperlink, a CR and a newline that forges a `status` line.
TERMINAL_PAYLOAD = ("calm\x1b[2J\x1b[H\x1b]8;;http://evil.example\x07click\x1b]8;;\x07\r"
                    "\nstage 100% through the gateway [bold red]FORGED[/]")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # everything but \t and \n


def unreachable_world(tmp_path: Path, pre_gateway_ref: str = "pre-gateway") -> World:
    """A workspace at 10 % whose gateway (the shipped config's five models) answers nowhere."""
    app = write_sample_app(tmp_path / "app", percentage=10)
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(REPO / "deploy" / "litellm-config.yaml", tmp_path / "litellm-config.yaml")
    ws_yaml = {
        "app": {"env_file": "../app/.env", "flags_file": "../app/flags.json", "flags_format": "flagd",
                "flag_key": "litellm-gateway", "repo": "../app", "router_paths": ["server/model-router.ts"],
                "pre_gateway_ref": pre_gateway_ref, "integration_grep": "LiteLLM gateway"},
        "gateway": {"url": f"http://127.0.0.1:{free_port()}", "master_key_env": "LITELLM_MASTER_KEY",
                    "config": "../litellm-config.yaml"},
    }
    (ws / "rollout.yaml").write_text(yaml.safe_dump(ws_yaml, sort_keys=False))
    return World(tmp_path, ws, app)


def valid(command: str, data: dict) -> dict:
    errors = list(Draft202012Validator(load_schema(command)).iter_errors(data))
    assert not errors, [e.message for e in errors]
    return data


# --- item 20: nothing checked is not "pass" ---------------------------------------------


def test_report_with_the_gateway_unreachable_says_no_model_was_checked(tmp_path: Path) -> None:
    world = unreachable_world(tmp_path)
    result = world.cli("report", "--json", env=KEY)
    assert result.exit_code == 1, result.output
    data = valid("report", json.loads(result.stdout))
    assert data["verdict"] == "NO-GO"
    assert [r["alias"] for r in data["matrix"]] == ALIASES
    for row in data["matrix"]:
        assert (row["health"], row["smoke"], row["verdict"]) == ("not-checked", "skipped", "not-checked"), row
    human = world.cli("report", env=KEY)
    rows = [line for line in human.stdout.splitlines() if line.split() and line.split()[0] in ALIASES]
    assert len(rows) == 5 and all(" pass" not in row for row in rows), rows


# --- item 17: Markdown, JUnit XML ---------------------------------------------------------


def test_a_reason_cannot_forge_a_heading_or_html_in_the_markdown_report(tmp_path: Path) -> None:
    world = unreachable_world(tmp_path, pre_gateway_ref="v9 | <b>forged cell</b> | `x`")
    rolled = world.cli("rollback", "--level", "1", "--yes", "--reason", MARKDOWN_PAYLOAD)
    assert rolled.exit_code == 0, rolled.output
    report = tmp_path / "r.md"
    assert world.cli("report", "--markdown", str(report), env=KEY).exit_code == 1
    text = report.read_text()
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings == ["## rollout report: **NO-GO** (0% -> 10%)", "### Models", "### Gates",
                        "### Stage history", "### Rollback readiness"]
    assert re.search(r"(?<!\\)<", text) is None and "**GO**" not in text  # no raw HTML, no bold verdict
    # the reason is still there, one line, every markup character escaped
    history = text.split("### Stage history")[1].split("###")[0]
    assert ('10% -> 0% by ' in history and
            r'x ## rollout report: \*\*GO\*\* (0% -\> 10%) \<img src="http://evil.example/pixel"\>' in history)
    # a value with pipes stays in its cell: every row of the readiness table has 4 cells
    readiness = text.split("### Rollback readiness")[1].strip().splitlines()
    level2 = next(line for line in readiness if line.startswith("| 2 |"))
    assert len(re.findall(r"(?<!\\)\|", level2)) == 5, level2
    assert r"v9 \| \<b\>forged cell\</b\> \| \`x\`" in level2


def test_smoke_markdown_and_junit_keep_hostile_model_names_and_details_inert(tmp_path: Path) -> None:
    world = unreachable_world(tmp_path)
    config_path = tmp_path / "litellm-config.yaml"
    config = yaml.safe_load(config_path.read_text())
    hostile = "kimi`|\x1b[31m<i>"  # a code-span end, a cell end, an escape, HTML
    old = "kimi-k2"
    for entry in config["model_list"]:
        if entry["model_name"] == old:
            entry["model_name"] = hostile
    config["router_settings"]["fallbacks"] = [
        {(hostile if primary == old else primary): [hostile if m == old else m for m in chain]
         for primary, chain in entry.items()}
        for entry in config["router_settings"]["fallbacks"]
    ]
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    junit, md = tmp_path / "smoke.xml", tmp_path / "smoke.md"
    result = world.cli("smoke", "--junit-xml", str(junit), "--markdown", str(md), env=KEY)
    assert result.exit_code == 4, result.output  # the gateway does not answer
    root = ET.parse(junit).getroot()  # control characters would make this XML invalid
    names = {suite.get("name") for suite in root.iter("testsuite")}
    assert "kimi`|[31m<i>" in names and not any(CONTROL.search(n or "") for n in names)
    text = md.read_text()
    assert "\x1b" not in text
    outside_code = re.sub(r"`[^`]*`", "", text)
    assert re.findall(r"(?<!\\)</?\w+", outside_code) == ["<details", "<summary", "</summary", "</details"]
    row = next(line for line in text.splitlines() if line.startswith("| `kimi"))
    assert row.startswith(r"| `kimi'\|[31m<i>` |"), row
    assert CONTROL.search(result.stdout + result.stderr) is None


# --- item 18: the terminal ------------------------------------------------------------------


def test_escapes_and_newlines_in_a_reason_never_reach_the_terminal(tmp_path: Path) -> None:
    world = unreachable_world(tmp_path)
    rolled = world.cli("rollback", "--level", "1", "--yes", "--reason", TERMINAL_PAYLOAD)
    assert rolled.exit_code == 0, rolled.output
    assert world.history()[-1]["reason"] == TERMINAL_PAYLOAD  # the audit trail keeps it as given (JSON-escaped)
    shown = "[2J[H]8;;http://evil.exampleclick]8;; stage 100% through the gateway [bold red]FORGED[/]"
    for args in (("status",), ("history",), ("report",)):
        result = world.cli(*args, env=KEY)
        assert result.exit_code in (0, 1), result.output
        out = result.stdout
        assert CONTROL.search(out) is None, (args, out)
        # the reason is shown as inert text on one line: no escape, no forged line, markup shown not applied
        assert not any(line.lstrip().startswith("stage 100%") for line in out.splitlines()), (args, out)
        assert "calm" + shown in out, (args, out)
    status = world.cli("status")
    assert status.stdout.splitlines()[0] == "stage 0% through the gateway"
    assert len(status.stdout.splitlines()) == 4


def test_an_error_line_strips_control_characters(tmp_path: Path) -> None:
    result = rollout("-w", str(tmp_path / "no\x1b[2Jsuch\nfolder"), "status")
    assert result.exit_code == 2, result.output
    assert "no[2Jsuch folder" in result.stderr
    assert CONTROL.search(result.stderr) is None and result.stderr.count("\n") == 1


# --- item 2: what a level-1 rollback and --help load ----------------------------------------


# matplotlib (and numpy, PIL under it) draws `report --html`'s charts: half a second to import, never on a fast path
PLOTTING = {"matplotlib", "numpy", "PIL"}


def _loaded(argv: list[str], code: int = 0) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}  # coverage imports its own
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "rollout_cli", *argv], capture_output=True,
                          text=True, env=env)
    assert proc.returncode == code, proc.stderr[-2000:]
    return {line.rsplit("|", 1)[1].strip().split(".")[0] for line in proc.stderr.splitlines()
            if line.startswith("import time:") and line.count("|") == 2}


@pytest.mark.parametrize("json_output", [False, True], ids=["text", "json"])
def test_level_1_loads_no_rich_pydantic_httpx_or_docker(tmp_path: Path, json_output: bool) -> None:
    world = unreachable_world(tmp_path)
    loaded = _loaded(["-w", str(world.ws), "rollback", "--level", "1", "--yes", *(["--json"] if json_output else [])])
    assert "rollout_cli" in loaded and "yaml" in loaded  # it did run
    # prometheus_client neither: level 1 writes .rollout/rollout.prom itself (core/stagemetrics.py)
    assert loaded & {"rich", "pydantic", "pydantic_core", "httpx", "docker", "requests", "prometheus_client", *PLOTTING} == set()
    assert world.app.env_file.read_text().count("LITELLM_ROLLOUT_PERCENTAGE=0") == 1
    assert "rollout_stage_configured_ratio 0\n" in (world.ws / ".rollout" / "rollout.prom").read_text()


def test_help_loads_no_rich_or_pydantic() -> None:
    loaded = _loaded(["--help"])
    assert "typer" in loaded and loaded & {"rich", "pydantic", "pydantic_core", "httpx", "docker", *PLOTTING} == set()


def test_plain_report_loads_no_plotting_library_and_report_html_does(tmp_path: Path) -> None:
    """Issue 21: matplotlib is imported for `report --html` only (the probe sees it there: it works)."""
    world = unreachable_world(tmp_path)
    plain = _loaded(["-w", str(world.ws), "report"], code=1)  # NO-GO: the gateway answers nowhere
    assert "rollout_cli" in plain and plain & PLOTTING == set()
    drawn = _loaded(["-w", str(world.ws), "report", "--html", str(tmp_path / "r.html")], code=1)
    assert {"matplotlib", "numpy"} <= drawn


def test_health_on_a_container_gateway_reads_the_engine_without_the_docker_sdk(tmp_path: Path) -> None:
    """health asks the engine for the container's state and its worker count over the socket: no SDK import
    (importing it cost about 0.4 s of every health check and every advance, report and autopilot tick)."""
    world = unreachable_world(tmp_path)
    config = yaml.safe_load((world.ws / "rollout.yaml").read_text())
    config["gateway"]["container"] = f"rollout-test-none-{tmp_path.name}"
    (world.ws / "rollout.yaml").write_text(yaml.safe_dump(config))
    loaded = _loaded(["-w", str(world.ws), "health"], code=4)  # the gateway answers nowhere
    assert "rollout_cli" in loaded and loaded & {"docker", "requests"} == set()


def test_gateway_status_loads_no_rich_pydantic_or_httpx_cli(tmp_path: Path) -> None:
    """Issue 11 item 6: `gateway status` imports what it uses (httpx; the engine is asked over its socket, without
    the Docker SDK) and nothing else heavy."""
    world = unreachable_world(tmp_path)
    config = yaml.safe_load((world.ws / "rollout.yaml").read_text())
    config["gateway"]["container"] = f"rollout-test-none-{tmp_path.name}"
    (world.ws / "rollout.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "rollout_cli", "-w", str(world.ws), "gateway",
                           "status"], capture_output=True, text=True, env=env)
    assert proc.returncode == 4, proc.stderr[-2000:]
    loaded = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
              if line.startswith("import time:") and line.count("|") == 2}  # a blocked import is listed too
    tops = {name.split(".")[0] for name in loaded}
    assert {"httpx", "httpcore"} <= tops  # it did look (and the engine was asked: the runtime line below)
    # rich, pygments and click would come with httpx's own command-line client, hpack and h2's modules with HTTP/2;
    # docker, requests and urllib3 with the Docker SDK
    assert tops & {"rich", "pygments", "pydantic", "pydantic_core", "click", "hpack",
                   "docker", "requests", "urllib3"} == set(), tops
    assert "h2.connection" not in loaded  # (h2.config is listed: the blocked attempt)
    lines = proc.stdout.splitlines()
    assert lines[0] == f"gateway {config['gateway']['url']}: not healthy"
    assert lines[1].startswith("  runtime    unknown: ") and config["gateway"]["container"] in lines[1]
    assert lines[2].startswith("  liveliness failed: ") and lines[3].startswith("  readiness  failed: ")


def test_level_1_report_is_plain_text(tmp_path: Path) -> None:
    world = unreachable_world(tmp_path)
    result = world.cli("rollback", "--level", "1", "--yes")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "level 1: feature flag to 0% (budget 30.0 s)"
    assert lines[1].split() == ["#", "step", "status", "time", "detail"]
    # each write's detail ends with its strategy; level 1's last steps are app.reload and verify.traffic (issue 10)
    assert lines[2].split()[:3] == ["1", "env.set", "ok"]
    assert lines[2].endswith(f"in {world.app.env_file} (temp file + rename)")
    assert [line.split()[:3] for line in lines[3:7]] == [
        ["2", "flag.set", "ok"], ["3", "verify", "ok"], ["4", "app.reload", "unchanged"], ["5", "verify.traffic", "ok"]]
    gateway_url = yaml.safe_load((world.ws / "rollout.yaml").read_text())["gateway"]["url"]
    assert lines[6].endswith(f"the gateway at {gateway_url} does not answer: no app traffic can pass through it")
    assert "rollback to level 1: done in" in result.stdout and "took effect:" in result.stdout


@pytest.mark.parametrize("no_color", [False, True], ids=["terminal", "NO_COLOR"])
def test_level_1_colours_its_status_words_only_on_a_terminal(tmp_path: Path, no_color: bool) -> None:
    import pty

    world = unreachable_world(tmp_path)
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | ({"NO_COLOR": "1"} if no_color else {})
    env["TERM"] = "xterm"
    proc = subprocess.run([sys.executable, "-m", "rollout_cli", "-w", str(world.ws), "rollback", "--level", "1",
                           "--yes"], stdout=secondary, stderr=subprocess.PIPE, env=env)
    os.close(secondary)
    out = b""
    while chunk := _read(primary):
        out += chunk
    os.close(primary)
    assert proc.returncode == 0, proc.stderr
    text = out.decode()
    assert ("\x1b[32mok\x1b[0m" in text) is not no_color and ("\x1b[" in text) is not no_color
    assert "rollback to level 1:" in text


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the terminal's other end is closed and drained
        return b""


@pytest.mark.parametrize("args", [
    ["-w", "{ws}", "rollback", "--level", "1", "--dry-run"],
    ["--workspace={ws}", "--debug", "rollback", "--level", "1", "--dry-run"],
    ["rollback", "-w", "{ws}", "--level", "1", "--dry-run"],
])
def test_only_the_named_command_is_built_and_it_parses_as_before(tmp_path: Path, args: list[str]) -> None:
    world = unreachable_world(tmp_path)
    argv = [a.format(ws=world.ws) for a in args]
    proc = subprocess.run([sys.executable, "-m", "rollout_cli", *argv], capture_output=True, text=True)
    if argv[0] == "rollback":  # -w belongs before the command: the usage error is the whole app's
        assert proc.returncode == 2 and "No such option: -w" in proc.stderr, proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    assert "-LITELLM_ROLLOUT_PERCENTAGE=10" in proc.stdout and "+LITELLM_ROLLOUT_PERCENTAGE=0" in proc.stdout


def test_help_before_the_command_and_a_typo_get_the_whole_app() -> None:
    helped = subprocess.run([sys.executable, "-m", "rollout_cli", "-h", "rollback"], capture_output=True, text=True)
    assert helped.returncode == 0 and "sandbox" in helped.stdout and "history" in helped.stdout
    typo = subprocess.run([sys.executable, "-m", "rollout_cli", "rollbak"], capture_output=True, text=True)
    assert typo.returncode == 2 and "No such command 'rollbak'. Did you mean 'rollback'?" in typo.stderr


# --- item 3: the compose file and Compose v1 ------------------------------------------------


def test_compose_file_loads_with_compose_v1_and_names_no_project(tmp_path: Path) -> None:
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose (Compose v1, Debian 12's package) is missing: run scripts/setup.sh"
    for name in ("docker-compose.yml", "litellm-config.yaml"):
        shutil.copy(REPO / "deploy" / name, tmp_path / name)
    shutil.copy(REPO / "deploy" / ".env.example", tmp_path / ".env")
    assert "name" not in yaml.safe_load((tmp_path / "docker-compose.yml").read_text())  # v1 refuses it
    check = subprocess.run([compose, "-f", str(tmp_path / "docker-compose.yml"), "config", "-q"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    config = subprocess.run([compose, "-p", "rollout-gateway", "-f", str(tmp_path / "docker-compose.yml"), "config"],
                            capture_output=True, text=True)
    service = yaml.safe_load(config.stdout)["services"]["litellm"]
    assert service["container_name"] == "litellm" and service["network_mode"] == "host"
    assert not (REPO / "deploy" / ".env").exists()
