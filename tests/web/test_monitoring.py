"""Monitoring config: the alert rules pass promtool and fire at the runbook's thresholds, and the
Grafana dashboard's queries name only metrics that a running worker's /metrics exposes."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from app.config import PROJECT_ROOT, Settings
from app.jobs.resources import Resources
from app.queue import control
from tests.support.http import get
from tests.support.system import require_binary
from tests.support.worker import in_process_worker

ALERTS = PROJECT_ROOT / "config" / "monitoring" / "alerts.yaml"
DASHBOARD = PROJECT_ROOT / "config" / "monitoring" / "grafana-dashboard.json"
# Series Prometheus makes itself for every target, not the worker.
PROMETHEUS_OWN = {"up"}
# What the issue asks the dashboard to show, as panel titles.
REQUIRED_PANELS = {"Throughput", "Errors", "Latency heatmap", "Queue depth", "Oldest waiting job age",
                   "Dead-letter queue depth", "Circuit breakers", "Outbox lag"}
# Grafana's variables, replaced by values Prometheus accepts so promtool can parse the queries.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$queue": ".*"}

_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                 "offset", "inf", "nan"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACES = re.compile(r"\{[^}]*\}|\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    keywords, label names, label values, durations or Grafana variables."""
    bare = _GROUPING.sub(" ", _BRACES.sub(" ", _STRING.sub('""', expr)))
    return {m.group(1) for m in _IDENTIFIER.finditer(bare)
            if m.group(2) is None and m.group(1).lower() not in _PROMQL_WORDS}


def exposed_names(text: str) -> set[str]:
    """Every series name /metrics declares, including metrics without samples yet (a labelled
    counter before its first increment): counters as `_total`, histograms as their series."""
    names: set[str] = set()
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "gauge": ("",), "summary": ("", "_sum", "_count", "_created")}
    for family in text_string_to_metric_families(text):
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


async def scrape_metrics(settings: Settings, res: Resources) -> str:
    """The /metrics text of a real worker that has run one job."""
    async with in_process_worker(settings, ["sla-monitor"]):
        enqueued = await res.enqueuer.enqueue("ping", {}, queue="sla-monitor")
        assert enqueued is not None
        await res.enqueuer.job(enqueued.job_id, "sla-monitor").result(timeout_s=10, poll_delay=0.02)
        status, body = await get(settings.health.port, "/metrics")
    assert status == 200
    assert isinstance(body, str)
    return body


def test_promtool_accepts_the_alert_rules() -> None:
    """`promtool check rules config/monitoring/alerts.yaml` passes and finds the runbook's six rules."""
    promtool = require_binary("promtool")
    run = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert {r["alert"] for r in alert_rules()} == {
        "WorkerDown", "HighDLQDepth", "CircuitBreakerOpen", "HighJobErrorRate", "QueueBacklogHigh",
        "HighJobLatencyP95"}


def test_each_alert_fires_past_its_threshold_and_not_at_it(tmp_path: Path) -> None:
    """promtool's rule unit tests: each alert fires for series past the runbook's threshold once its
    `for` has passed, and not for series at the threshold (or of another state)."""
    promtool = require_binary("promtool")
    tests = tmp_path / "alerts.test.yaml"
    tests.write_text(yaml.safe_dump(alert_unit_tests() | {"rule_files": [str(ALERTS)]}))
    run = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    """Every dashboard query is valid PromQL: promtool parses them as recording rules."""
    promtool = require_binary("promtool")
    rules = []
    for i, expr in enumerate(dashboard_exprs()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    """The dashboard parses and has the panels asked for, each on the data source variable."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert {p["title"] for p in panels} >= REQUIRED_PANELS
    assert all(p["datasource"]["uid"] == "${datasource}" and p["targets"] for p in panels)
    assert {p["type"] for p in panels if p["title"] in ("Latency heatmap", "Circuit breakers")} == {
        "heatmap", "state-timeline"}


def test_metric_names_are_found_in_promql() -> None:
    """The name extraction the next test relies on: functions, keywords, labels, durations and
    Grafana variables are not metric names."""
    expr = ('histogram_quantile(0.95, sum by (queue, le) (rate(a_bucket{queue=~"$queue", x="y z"}'
            '[$__rate_interval]))) / on (queue) group_left b_total > bool 1e3 or vector(0) unless c')
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}


async def test_dashboard_and_alerts_use_only_metrics_the_worker_exposes(settings: Settings, res: Resources) -> None:
    """Every metric named in a dashboard query or an alert rule is one the real /metrics of a
    running worker declares (alerts may also use Prometheus' own `up`)."""
    exposed = exposed_names(await scrape_metrics(settings, res))
    in_dashboard = set().union(*(metric_names(e) for e in dashboard_exprs()))
    in_alerts = set().union(*(metric_names(r["expr"]) for r in alert_rules()))
    assert in_dashboard - exposed == set()
    assert in_alerts - exposed - PROMETHEUS_OWN == set()
    assert "workhorse_queue_oldest_waiting_age_seconds" in in_dashboard
    assert {"workhorse_outbox_lag_seconds_bucket", "workhorse_outbox_oldest_waiting_seconds"} <= in_dashboard


async def test_oldest_waiting_job_age_is_exposed_per_queue(settings: Settings, res: Resources) -> None:
    """workhorse_queue_oldest_waiting_age_seconds is the age of the oldest due job not started:
    it grows while a paused queue holds a job, and is 0 for a queue with none waiting."""
    await control.pause(res.redis, "sla-monitor")
    await res.enqueuer.enqueue("ping", {}, queue="sla-monitor")
    async with in_process_worker(settings, ["sla-monitor", "calendar-sync"]):
        await asyncio.sleep(0.3)  # the job's age, measured from its enqueue time
        status, body = await get(settings.health.port, "/metrics")
    assert status == 200
    ages = {s.labels["queue"]: s.value for f in text_string_to_metric_families(body) for s in f.samples
            if s.name == "workhorse_queue_oldest_waiting_age_seconds"}
    assert ages["sla-monitor"] >= 0.3
    assert ages["calendar-sync"] == 0


def _alert(name: str, eval_min: int, *fired: tuple[dict[str, str], str]) -> dict[str, Any]:
    """An expectation: alert `name` at minute `eval_min` fires with these (labels, summary)."""
    description = next(r for r in alert_rules() if r["alert"] == name)["annotations"]["description"]
    return {"eval_time": f"{eval_min}m", "alertname": name, "exp_alerts": [
        {"exp_labels": labels, "exp_annotations": {"summary": summary, "description": description}}
        for labels, summary in fired]}


def _case(series: dict[str, str], *expectations: dict[str, Any]) -> dict[str, Any]:
    """One promtool test: series (selector -> values, one a minute) and what the rules make of them."""
    return {"interval": "1m", "input_series": [{"series": k, "values": v} for k, v in series.items()],
            "alert_rule_test": list(expectations)}


_CRITICAL, _WARNING = {"severity": "critical"}, {"severity": "warning"}
_DURATION = "workhorse_job_duration_seconds_bucket"


def alert_unit_tests() -> dict[str, Any]:
    """promtool's test file for alerts.yaml (its `rule_files` added by the caller)."""
    return {"evaluation_interval": "1m", "tests": [
        _case({'up{job="workhorse", instance="w1:3100"}': "1 0 0 0",
               'up{job="workhorse", instance="w2:3100"}': "1 1 1 1",
               'workhorse_worker_up{queue="sla-monitor", instance="w2:3100"}': "1 0 0 0",
               'workhorse_worker_up{queue="calendar-sync", instance="w2:3100"}': "1 1 1 1"},
              _alert("WorkerDown", 1),  # down, but not yet for a minute
              _alert("WorkerDown", 2,
                     (_CRITICAL | {"job": "workhorse", "instance": "w1:3100"}, "Worker w1:3100 is down"),
                     (_CRITICAL | {"queue": "sla-monitor", "instance": "w2:3100"},
                      "Worker w2:3100 is down (queue sla-monitor)"))),
        # Every process reports the same queue-wide depth: one alert per queue.
        _case({'workhorse_queue_dlq_depth{queue="a", instance="w1"}': "101x10",
               'workhorse_queue_dlq_depth{queue="a", instance="w2"}': "101x10",
               'workhorse_queue_dlq_depth{queue="b", instance="w1"}': "100x10"},
              _alert("HighDLQDepth", 4),
              _alert("HighDLQDepth", 5, (_WARNING | {"queue": "a"}, "DLQ depth high on a: 101 dead letters"))),
        _case({'workhorse_circuit_breaker_state{provider="openai", instance="w1"}': "2 2 2",
               'workhorse_circuit_breaker_state{provider="smtp", instance="w1"}': "1 1 1"},
              _alert("CircuitBreakerOpen", 0),
              _alert("CircuitBreakerOpen", 1, (_WARNING | {"provider": "openai", "instance": "w1"},
                                               "Circuit breaker open for openai on w1"))),
        # Queue a: 6 of 100 runs a minute fail; queue b: 4 of 100.
        _case({'workhorse_jobs_processed_total{queue="a", job="x"}': "0+100x20",
               'workhorse_jobs_failed_total{queue="a", job="x"}': "0+6x20",
               'workhorse_jobs_processed_total{queue="b", job="y"}': "0+100x20",
               'workhorse_jobs_failed_total{queue="b", job="y"}': "0+4x20"},
              _alert("HighJobErrorRate", 15, (_WARNING | {"queue": "a"}, "a: 6% of job runs fail"))),
        _case({'workhorse_queue_depth{queue="a", state="waiting"}': "1001x10",
               'workhorse_queue_depth{queue="b", state="waiting"}': "1000x10",
               'workhorse_queue_depth{queue="b", state="delayed"}': "5000x10"},
              _alert("QueueBacklogHigh", 4),
              _alert("QueueBacklogHigh", 5, (_WARNING | {"queue": "a"}, "a has 1001 jobs waiting"))),
        # Queue "slow": every run takes 10-30 s; queue "fast": every run under 1 s.
        _case({_DURATION + '{queue="slow", le="10"}': "0x20",
               _DURATION + '{queue="slow", le="30"}': "0+10x20",
               _DURATION + '{queue="slow", le="+Inf"}': "0+10x20",
               _DURATION + '{queue="fast", le="1"}': "0+10x20",
               _DURATION + '{queue="fast", le="10"}': "0+10x20",
               _DURATION + '{queue="fast", le="+Inf"}': "0+10x20"},
              _alert("HighJobLatencyP95", 15, (_WARNING | {"queue": "slow"}, "slow: p95 job duration 29s"))),
    ]}
