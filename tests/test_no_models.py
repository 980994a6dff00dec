"""A gateway that serves no models: every check says so, nothing crashes, the report is still written.

The real LiteLLM proxy started on a config whose `model_list` is empty answers
`/v1/models` with no model at all; the smoke step then has no model to ask, the
health check none to probe, and the report must still be a NO-GO with its reason.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from support import ALIASES, rollout

# one worker starts this module's own sandbox once (tests/conftest.py, rule 6)
pytestmark = [pytest.mark.xdist_group("test_no_models"), pytest.mark.slow(80)]

NO_MODELS = "the gateway serves no models"


def _without_gateway_config(root: Path) -> None:
    """Drop `gateway.config` from the workspace: the models are then the ones the gateway lists."""
    config = root / "rollout.yaml"
    config.write_text("".join(line for line in config.read_text().splitlines(keepends=True)
                              if not line.startswith("  config:")))


@pytest.fixture(scope="module")
def empty_gateway(tmp_path_factory: pytest.TempPathFactory):
    """A sandbox of its own whose real LiteLLM proxy was restarted on an empty model_list.

    rollout refuses such a config file as bad input (exit 2), so the workspace names none:
    what the gateway lists (`/v1/models`: nothing) is all there is to go on.
    """
    root = tmp_path_factory.mktemp("no-models") / "sb"
    up = rollout("sandbox", "up", str(root), "--runtime", "process",
                 "--gateway-port", "0", "--simulator-port", "0", "--timeout", "90")
    try:
        assert up.exit_code == 0, up.output
        config_file = root / "gateway" / "litellm-config.yaml"
        config = yaml.safe_load(config_file.read_text())
        config["model_list"] = []
        config.get("router_settings", {}).pop("fallbacks", None)
        config_file.write_text(yaml.safe_dump(config))
        _without_gateway_config(root)
        restart = rollout("-w", str(root), "gateway", "restart")
        assert restart.exit_code == 0, restart.output
        yield root
    finally:
        rollout("sandbox", "down", str(root))


@pytest.mark.gateway
def test_without_gateway_config_smoke_checks_what_the_gateway_serves(sandbox, tmp_path):
    """The same sandbox gateway, a workspace naming no gateway config: smoke asks each listed model."""
    ws = tmp_path / "ws"
    shutil.copytree(sandbox.root, ws, ignore=shutil.ignore_patterns(".rollout"))
    (ws / ".rollout").mkdir()
    shutil.copy2(sandbox.root / ".rollout" / "master.key", ws / ".rollout" / "master.key")
    _without_gateway_config(ws)
    result = rollout("-w", str(ws), "smoke", "--json")
    assert result.exit_code in (0, 1, 3), result.output
    data = json.loads(result.output)
    assert sorted(data["plan"]["models"]) == sorted(ALIASES)
    assert NO_MODELS not in result.output


@pytest.mark.gateway
def test_report_is_no_go_naming_no_models_and_still_written(empty_gateway, tmp_path):
    markdown = tmp_path / "report.md"
    result = rollout("-w", str(empty_gateway), "report", "--markdown", str(markdown))
    assert result.exit_code == 1, result.output
    assert "internal error" not in result.output
    assert NO_MODELS in result.output
    assert "NO-GO" in markdown.read_text() and NO_MODELS in markdown.read_text()


@pytest.mark.gateway
def test_report_json_names_no_models(empty_gateway):
    result = rollout("-w", str(empty_gateway), "report", "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.output)
    assert data["verdict"] == "NO-GO"
    assert any(NO_MODELS in (g.get("reason") or "") for g in data["gates"]), data["gates"]


@pytest.mark.gateway
def test_smoke_and_health_fail_naming_no_models(empty_gateway):
    smoke = rollout("-w", str(empty_gateway), "smoke")
    assert smoke.exit_code == 1, smoke.output
    assert NO_MODELS in smoke.output
    health = rollout("-w", str(empty_gateway), "health")
    assert health.exit_code == 1, health.output
    assert NO_MODELS in health.output
