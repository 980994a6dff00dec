"""Cheaper decisions: one `advance` evaluation asks each model a question once.

Health's ping is the smoke suite's first case, so within one evaluation the
smoke suite reads health's answer instead of sending the same request again:
5 health + 5 x 2 smoke cases + 1 fallback drill was 16 requests, now 11.
Counted twice: by rollout (`requests_sent`, `requests_shared`) and by the
simulated OpenRouter, which sees every request that left the gateway.
"""

from __future__ import annotations

import json

from jsonschema import Draft202012Validator

from rollout_cli.checks.budget import RequestBudget, SharedAnswers
from rollout_cli.schemas import load_schema
from support import rollout

ALIASES = ["glm-4.5-air", "deepseek-chat-v3.1", "minimax-m2", "kimi-k2", "qwen3-coder"]


def _valid(command: str, data: dict) -> dict:
    errors = list(Draft202012Validator(load_schema(command)).iter_errors(data))
    assert not errors, [e.message for e in errors]
    return data


def test_advance_dry_run_sends_each_question_once_and_says_so(sb) -> None:
    result = rollout("-w", str(sb.root), "advance", "--dry-run", "--json")
    data = _valid("advance", json.loads(result.stdout))
    assert data["requests_sent"] == 11 and data["requests_shared"] == 5
    assert sb.admin.stats()["total"] == 11  # what actually reached OpenRouter (simulated)
    smoke = next(g for g in data["gates"] if g["name"] == "smoke")
    assert smoke["status"] == "pass", smoke

    shown = rollout("-w", str(sb.root), "advance", "--dry-run")
    assert "(11 check requests sent, 5 answers shared between checks)" in shown.output


def test_report_counts_the_same_way(sb) -> None:
    result = rollout("-w", str(sb.root), "report", "--json")
    data = _valid("report", json.loads(result.stdout))
    assert (data["requests_sent"], data["requests_shared"]) == (11, 5)


def test_health_and_smoke_on_their_own_share_nothing(sb) -> None:
    health = json.loads(rollout("-w", str(sb.root), "health", "--json").stdout)
    assert health["requests"]["sent"] == 5 and health["requests"]["shared"] == 0
    smoke = json.loads(rollout("-w", str(sb.root), "smoke", "--json").stdout)
    assert smoke["requests"]["sent"] == 11 and smoke["requests"]["shared"] == 0
    assert sb.admin.stats()["total"] == 16


def test_two_budgets_sharing_answers_send_a_question_once(sb) -> None:
    shared = SharedAnswers()
    with sb.client() as client:
        first = RequestBudget(client, shared=shared)
        second = RequestBudget(client, shared=shared)
        a, sent_a = first.ask_counted("kimi-k2", "ping: reply with the single word pong", max_tokens=16, timeout=10)
        b, sent_b = second.ask_counted("kimi-k2", "ping: reply with the single word pong", max_tokens=16, timeout=30)
        # another max_tokens is another question: sent
        c, sent_c = second.ask_counted("kimi-k2", "ping: reply with the single word pong", max_tokens=17, timeout=10)
    assert (sent_a, sent_b, sent_c) == (1, 0, 1)
    assert b is a and a.status == 200 and c.status == 200
    assert first.to_json()["sent"] == 1 and second.to_json()["sent"] == 1 and second.to_json()["shared"] == 1
    assert sb.admin.stats()["total"] == 2


def test_a_shared_answer_carries_the_failure_to_every_check(sb) -> None:
    sb.admin.set_fault("kimi-k2", status=500)
    result = rollout("-w", str(sb.root), "advance", "--dry-run", "--json")
    data = json.loads(result.stdout)
    row = next(r for r in data["matrix"] if r["alias"] == "kimi-k2")
    assert row["health"] == "down" and row["smoke"] == "fail"
    # kimi-k2: one request (health's, read by smoke's first case), its json case skipped as down
    assert data["requests_sent"] == 10 and data["requests_shared"] == 5
