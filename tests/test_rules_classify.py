"""The classification rules (checks/classify.py): one completion to a model status, and the cooldown's cause."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from rollout_cli.checks import classify as c
from rollout_cli.checks.classify import (
    Classification,
    classify,
    cooldown_cause,
    explain_cooldowns,
    failure_counts,
    is_auth_failure,
    recent_cause,
    tidy_message,
)
from rollout_cli.errors import GatewayUnavailable
from rollout_cli.gateway.api import Completion

COOLDOWN = ("litellm.RouterRateLimitError: No deployments available for selected model, Try again in 5 seconds."
            " Passed model=glm. cooldown_list=['x']")


def seen(status, message=None, **kw) -> Completion:
    return Completion("glm", status, 10.0, message=message, **kw)


# status, message, other fields -> status, error class
CASES = [
    (None, None, {}, c.DOWN, "connect"),
    (None, "connection refused", {}, c.DOWN, "connect"),
    (None, None, {"error": "timeout"}, c.DOWN, "timeout"),
    (408, "Request Timeout", {}, c.DOWN, "timeout"),
    (429, COOLDOWN, {}, c.DOWN, "cooldown"),
    (429, "glm is in cooldown", {}, c.DOWN, "cooldown"),
    (429, "Rate limit exceeded: free-models-per-day. Add 10 credits", {}, c.QUOTA_EXHAUSTED, "free-models-per-day"),
    (429, "Rate limit exceeded: free-models-per-min.", {}, c.RATE_LIMITED, "free-models-per-min"),
    (429, "z-ai/glm is temporarily rate-limited upstream", {}, c.UPSTREAM_THROTTLED, "provider-429"),
    (429, "Provider returned error", {}, c.UPSTREAM_THROTTLED, "provider-429"),
    (429, "slow down", {}, c.RATE_LIMITED, "rate-limit"),
    (503, "busy", {"retry_after": 3.0}, c.RATE_LIMITED, "rate-limit"),  # any Retry-After: throttled
    (200, None, {"retry_after": 3.0, "content": "hi"}, c.HEALTHY, None),  # ...but not on a success
    (404, "No endpoints found that support tool use", {}, c.UNSUPPORTED, "tools"),
    (404, "the free period for this model has ended", {}, c.NOT_FREE, "free-period-ended"),
    (404, "No endpoints found for z-ai/glm:free.", {}, c.RETIRED, "no-endpoints"),
    (404, "Not Found", {}, c.BROKEN, "http-404"),
    (401, "bad key", {}, c.AUTH_ERROR, "gateway-auth"),
    (403, "OpenrouterException - forbidden", {}, c.AUTH_ERROR, "upstream-auth"),
    (400, "No connected db.", {}, c.AUTH_ERROR, "gateway-auth"),
    (500, "litellm.AuthenticationError: OpenrouterException - No API key", {}, c.AUTH_ERROR, "upstream-auth"),
    (400, "Invalid model name passed in model=glm", {}, c.BROKEN, "unknown-model"),
    (400, "bad request", {}, c.BROKEN, "http-400"),
    (500, "Unable to get json response", {}, c.BROKEN, "malformed"),
    (502, "JSONDecodeError: Expecting value", {}, c.BROKEN, "malformed"),
    (500, "litellm.APIError: OpenrouterException - Internal error in provider", {}, c.BROKEN, "error-object"),
    (500, 'litellm.APIError: OpenrouterException - {"error": {"message": "boom"}}', {}, c.DOWN, "http-500"),
    (502, "Bad Gateway", {}, c.DOWN, "http-502"),
    (200, None, {"served_by": "kimi", "content": "hi"}, c.DOWN, "fallback"),
    (200, None, {"served_by": "glm", "content": "hi"}, c.HEALTHY, None),
    (200, None, {"attempted_fallbacks": 1, "content": "hi"}, c.DOWN, "fallback"),
    (200, None, {"attempted_fallbacks": 0, "content": "hi"}, c.HEALTHY, None),
    (200, "no content", {"error": "empty"}, c.BROKEN, "empty"),
    (200, None, {"error": "malformed"}, c.BROKEN, "malformed"),
    (200, None, {"error": "error-object"}, c.BROKEN, "error-object"),
    (200, None, {"error": "stream-error"}, c.BROKEN, "stream-error"),
    (200, None, {"content": "hi"}, c.HEALTHY, None),
]


@pytest.mark.parametrize(("status", "message", "fields", "expected", "error_class"), CASES)
def test_classify(status, message, fields, expected, error_class):
    got = classify(seen(status, message, **fields), "glm")
    assert (got.status, got.error_class) == (expected, error_class)
    if expected != c.HEALTHY and error_class not in ("cooldown", "fallback", "error-object"):
        assert got.message == tidy_message(message)  # the provider's own words travel with the status


def test_classify_messages_say_why():
    assert classify(seen(429, COOLDOWN), "glm").message == (
        "in the gateway's cooldown after recent failures (cause not read)")
    assert classify(seen(200, None, served_by="kimi"), "glm").message == (
        "served by kimi: glm failed and a fallback answered")
    assert classify(seen(200, None, attempted_fallbacks=2), "glm").message == "2 fallback(s) attempted before the answer"
    assert classify(seen(500, "litellm.APIError: OpenrouterException - gone"), "glm").message == (
        "HTTP 200 with an error object: gone")
    assert classify(seen(502, "Bad Gateway"), "glm").message == "Bad Gateway"
    assert classify(seen(200, None, content="hi"), "glm") == Classification(c.HEALTHY)


@pytest.mark.parametrize(("status", "message", "auth"), [
    (401, None, True), (403, "x", True), (400, "No connected db.", True), (500, "Invalid API Key", True),
    (500, "Unauthorized", True), (400, "expired key", True), (404, "unauthorized", False), (500, "boom", False),
    (400, None, False), (None, "unauthorized", False),
])
def test_is_auth_failure(status, message, auth):
    assert is_auth_failure(status, message) is auth


@pytest.mark.parametrize(("message", "tidy"), [
    (None, None), ("", ""),
    ("litellm.BadRequestError: OpenrouterException - the words", "the words"),
    ('OpenrouterException - {"error":{"message":"inner \\"quoted\\" words","code":429}}', 'inner \\"quoted\\" words'),
    ("litellm.NotFoundError: NotFoundError: gone Deployment Info: x", "gone"),
    ("litellm.APIError: APIError: gone, Original Response: y", "gone"),
    ("plain", "plain"),
    ("OpenrouterException - a Exception - b", "a Exception - b"),  # only the first wrapper is LiteLLM's
    ("gone Deployment Info: a Deployment Info: b", "gone"),
    ("gone, Original Response: a, Original Response: b", "gone"),
    ("litellm.APIError: ", "litellm.APIError: "),  # nothing left: the message as it was
])
def test_tidy_message(message, tidy):
    assert tidy_message(message) == tidy


@pytest.mark.parametrize(("status", "cls", "expected", "error_class"), [
    ("429", "RateLimitError", c.UPSTREAM_THROTTLED, "cooldown-429"),
    ("200", "ServerError", c.BROKEN, "cooldown-malformed"),
    ("500", "MalformedResponse", c.BROKEN, "cooldown-malformed"),
    ("401", "AuthenticationError", c.AUTH_ERROR, "cooldown-auth"),
    ("403", None, c.AUTH_ERROR, "cooldown-auth"),
    ("404", "NotFoundError", c.BROKEN, "cooldown-404"),
    ("400", "BadRequestError", c.BROKEN, "cooldown-400"),
    ("499", "X", c.BROKEN, "cooldown-499"),
    ("408", "Timeout", c.DOWN, "cooldown-408"),
    ("500", "InternalServerError", c.DOWN, "cooldown-500"),
    ("500", "JSONDecodeError", c.BROKEN, "cooldown-malformed"),
    ("502", "APIResponseValidationError", c.BROKEN, "cooldown-malformed"),
    ("503", "APIError", c.BROKEN, "cooldown-malformed"),
    ("", "Timeout", c.DOWN, "cooldown-unknown"),
    (None, None, c.DOWN, "cooldown-unknown"),
    ("5xx", "X", c.DOWN, "cooldown-5xx"),
])
def test_cooldown_cause(status, cls, expected, error_class):
    got = cooldown_cause(status, cls)
    assert (got.status, got.error_class) == (expected, error_class)
    assert got.message == f"in the gateway's cooldown after HTTP {status} ({cls or '?'}) failures"


def metrics(*rows: tuple[str, str, str, float, float]) -> str:
    """Prometheus text: (model group, status, class, count, created) per failure kind."""
    lines = []
    for group, status, cls, count, created in rows:
        labels = f'model_group="{group}",exception_status="{status}",exception_class="{cls}"'
        lines.append(f"litellm_deployment_failure_responses_total{{{labels}}} {count}")
        lines.append(f"litellm_deployment_failure_responses_created{{{labels}}} {created}")
    return "\n".join(lines) + "\n"


def test_failure_counts_per_group_leave_out_the_cooldown_answers():
    text = "litellm_requests_total 5\n" + metrics(
        ("glm", "500", "APIError", 3, 100.0), ("glm", "429", "RouterRateLimitError", 9, 50.0),
        ("kimi", "429", "RateLimitError", 1, 70.0))
    text += 'litellm_deployment_failure_responses_total{requested_model="qwen",exception_status="404"} 2\n'
    text += 'litellm_deployment_failure_responses_total{exception_class="Timeout"} 1\n'
    # the same kind from two deployments of one model group adds up
    text += ('litellm_deployment_failure_responses_total{model_group="glm",api_base="b",exception_status="500",'
             'exception_class="APIError"} 2\n')
    assert failure_counts(text) == {"glm": {"500|APIError": [5.0, 100.0]}, "kimi": {"429|RateLimitError": [1.0, 70.0]},
                                    "qwen": {"404|": [2.0, 0.0]}, "?": {"|Timeout": [1.0, 0.0]}}


@pytest.mark.parametrize(("now", "before", "cause"), [
    ({}, None, None),
    ({"500|A": [1, 10], "429|R": [5, 20]}, None, ("429", "R")),  # nothing remembered: the newest kind
    ({"500|A": [1, 30], "429|R": [5, 20]}, None, ("500", "A")),
    ({"500|A": [3, 10], "429|R": [2, 20]}, None, ("429", "R")),
    ({"429|R": [2, 10], "500|A": [3, 10]}, None, ("500", "A")),  # same age: the more frequent
    ({"500|A": [3, 10], "429|R": [9, 20]}, {"500|A": [1, 10], "429|R": [9, 20]}, ("500", "A")),  # grew since: wins
    ({"500|A": [3, 10], "429|R": [12, 20]}, {"500|A": [1, 10], "429|R": [9, 20]}, ("429", "R")),  # grew more
    ({"500|A": [3, 10], "429|R": [11, 20]}, {"500|A": [1, 10], "429|R": [9, 20]}, ("429", "R")),  # a tie: the newer
    ({"500|A": [3, 30], "429|R": [11, 20]}, {"500|A": [1, 10], "429|R": [9, 20]}, ("500", "A")),  # a tie: the newer
    ({"429|R": [11, 20], "500|A": [3, 20]}, {"500|A": [1, 10], "429|R": [9, 20]}, ("500", "A")),  # all tied: not the 429
    ({"500|A": [1, 10], "429|R": [5, 20]}, {"429|R": [5, 20]}, ("500", "A")),  # one new failure is growth
    ({"500|A": [3, 20], "429|R": [9, 20]}, {"500|A": [3, 20], "429|R": [9, 20]}, ("429", "R")),  # none grew, same age
    ({"500|A": [3, 20], "429|R": [2, 20]}, {}, ("500", "A")),  # remembered nothing for it: all of it grew
    ({"500|A": [3, 10], "429|R": [9, 20]}, {"500|A": [3, 10], "429|R": [9, 20]}, ("429", "R")),  # none grew: newest
])
def test_recent_cause_prefers_what_grew_since_rollout_last_looked(now, before, cause):
    assert recent_cause(now, before) == cause


def cooled(alias: str = "glm"):
    return SimpleNamespace(alias=alias, status=c.DOWN, error_class="cooldown", message="cause not read")


def test_explain_cooldowns_judges_by_what_failed_since_the_memory(tmp_path):
    memory = tmp_path / c.COOLDOWN_MEMORY
    # an old incident: many 500s; since the last read only 429s were added
    memory.write_text(json.dumps({"glm": {"500|APIError": [40, 10.0], "429|RateLimitError": [1, 5.0]}}))
    model = cooled()
    explain_cooldowns([model], lambda: metrics(("glm", "500", "APIError", 40, 10.0),
                                                ("glm", "429", "RateLimitError", 4, 5.0)), memory)
    assert (model.status, model.error_class) == (c.UPSTREAM_THROTTLED, "cooldown-429")
    assert json.loads(memory.read_text()) == {"glm": {"500|APIError": [40, 10.0], "429|RateLimitError": [4, 5.0]}}


def test_explain_cooldowns_without_memory_takes_the_newest_kind():
    model, healthy = cooled(), SimpleNamespace(alias="kimi", status=c.HEALTHY, error_class=None, message=None)
    explain_cooldowns([model, healthy], lambda: metrics(("glm", "500", "APIError", 40, 10.0),
                                                         ("glm", "404", "NotFoundError", 1, 30.0)))
    assert (model.status, model.error_class) == (c.BROKEN, "cooldown-404")
    assert (healthy.status, healthy.error_class) == (c.HEALTHY, None)


def test_explain_cooldowns_refreshes_the_memory_even_without_a_cooldown(tmp_path):
    memory = tmp_path / c.COOLDOWN_MEMORY
    explain_cooldowns([], lambda: metrics(("glm", "500", "APIError", 2, 10.0)), memory)
    assert json.loads(memory.read_text()) == {"glm": {"500|APIError": [2, 10.0]}}
    reads = []
    explain_cooldowns([], lambda: reads.append(1) or "")  # nothing cooled, nothing kept: nothing read
    assert reads == []


def test_a_cooled_model_with_no_failure_of_its_own_stays_down(tmp_path, monkeypatch):
    monkeypatch.setattr(c, "COOLDOWN_READ_PAUSE_S", 0.0)
    memory = tmp_path / c.COOLDOWN_MEMORY
    memory.write_text(json.dumps({"kimi": {"500|APIError": [1, 5.0]}}))
    model = cooled()
    explain_cooldowns([model], lambda: metrics(("kimi", "500", "APIError", 1, 5.0)), memory)
    assert (model.status, model.error_class) == (c.DOWN, "cooldown")


def test_explain_cooldowns_leaves_a_model_down_when_the_metrics_cannot_be_read(tmp_path):
    def unreadable() -> str:
        raise GatewayUnavailable("metrics unreachable")

    model = cooled()
    explain_cooldowns([model], unreadable, tmp_path / c.COOLDOWN_MEMORY)
    assert (model.status, model.error_class, model.message) == (c.DOWN, "cooldown", "cause not read")
    explain_cooldowns([model], lambda: metrics(("kimi", "500", "APIError", 2, 10.0)))  # no failure of its own
    assert model.error_class == "cooldown"


def test_explain_cooldowns_reads_again_until_the_new_failure_shows(tmp_path, monkeypatch):
    monkeypatch.setattr(c, "COOLDOWN_READ_PAUSE_S", 0.0)
    memory = tmp_path / c.COOLDOWN_MEMORY
    memory.write_text(json.dumps({"glm": {"429|RateLimitError": [1, 5.0]}}))
    texts = iter([metrics(("glm", "429", "RateLimitError", 1, 5.0)), metrics(("glm", "429", "RateLimitError", 1, 5.0),
                                                                             ("glm", "500", "ServerError", 1, 9.0))])
    reads = []

    def read() -> str:
        reads.append(1)
        return next(texts)

    model = cooled()
    explain_cooldowns([model], read, memory)
    assert len(reads) == 2 and (model.status, model.error_class) == (c.DOWN, "cooldown-500")


@pytest.mark.parametrize("content", ["not json", "[1, 2]"])
def test_an_unreadable_memory_counts_as_none(tmp_path, content):
    memory = tmp_path / c.COOLDOWN_MEMORY
    memory.write_text(content)
    model = cooled()
    explain_cooldowns([model], lambda: metrics(("glm", "500", "APIError", 40, 10.0), ("glm", "429", "R", 1, 30.0)), memory)
    assert model.error_class == "cooldown-429"  # the newest kind, as without a memory
