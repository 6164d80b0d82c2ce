#!/usr/bin/env bash
# Checks the alerting side of the observability files (issue #21), offline:
#   deploy/observability/rules.yml        promtool check rules
#   deploy/observability/prometheus.yml   promtool check config (loads rules.yml too)
#   deploy/observability/rules_test.yml   promtool test rules (every alert fires and stays silent)
#   every alert                           has summary, description and runbook_url, and the
#                                         runbook_url's anchor is a heading of docs/operations.md
#   deploy/k8s/components/monitoring/     the PrometheusRule holds exactly rules.yml's groups
#
# promtool comes from Debian's `prometheus` package, installed when missing. The package
# starts a Prometheus service on :9090 of its own; it is stopped and disabled again, because
# `make observe` and the tests start their own.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

step() { printf '[rules] %s\n' "$*"; }

. scripts/prometheus.sh
ensure_prometheus

# A Python with PyYAML: this one, Debian's, or Debian's after installing python3-yaml.
python=
for candidate in python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import yaml' 2>/dev/null; then
    python=$candidate
    break
  fi
done
if [ -z "$python" ]; then
  step "installing PyYAML (Debian package python3-yaml)"
  apt_get_install python3 python3-yaml
  python=/usr/bin/python3
fi

step "$(promtool --version 2>&1 | head -1)"
step "promtool check rules deploy/observability/rules.yml"
promtool check rules --lint-fatal deploy/observability/rules.yml
step "promtool check config deploy/observability/prometheus.yml"
promtool check config deploy/observability/prometheus.yml
step "promtool test rules deploy/observability/rules_test.yml"
promtool test rules deploy/observability/rules_test.yml

step "alerts: annotations and runbooks (docs/operations.md)"
"$python" - deploy/observability/rules.yml docs/operations.md deploy/observability/rules_test.yml <<'PY'
import re
import sys

import yaml

rules_path, docs_path, tests_path = sys.argv[1:4]
groups = yaml.safe_load(open(rules_path))["groups"]
docs = open(docs_path).read()


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


anchors = {anchor(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", docs, re.M)}
problems = []
alerts = set()
for group in groups:
    for rule in group["rules"]:
        if "alert" not in rule:
            continue
        name = rule["alert"]
        alerts.add(name)
        where = f"{rules_path}: alert {name}"
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            if not str(annotations.get(key, "")).strip():
                problems.append(f"{where}: no {key} annotation")
        if rule.get("labels", {}).get("severity") not in ("page", "ticket"):
            problems.append(f"{where}: severity must be page or ticket")
        if "for" not in rule:
            problems.append(f"{where}: no `for`")
        url = annotations.get("runbook_url", "")
        match = re.fullmatch(r"docs/operations\.md#([a-z0-9_-]+)", url)
        if not match:
            problems.append(f"{where}: runbook_url {url!r} is not docs/operations.md#<anchor>")
        elif match.group(1) not in anchors:
            problems.append(f"{where}: {docs_path} has no heading with anchor #{match.group(1)}")

# Every alert is tested both ways: firing (an expected alert) and silent (exp_alerts: []).
# The tests evaluate the groups in the file's order (recordings before the alerts reading
# them); promtool takes any group left out of group_eval_order in a random order.
tests = yaml.safe_load(open(tests_path))
if tests.get("group_eval_order") != [g["name"] for g in groups]:
    problems.append(f"{tests_path}: group_eval_order must list {rules_path}'s groups in their order")
fires, silent = set(), set()
for test in tests["tests"]:
    for case in test.get("alert_rule_test", []):
        (fires if case.get("exp_alerts") else silent).add(case["alertname"])
for name in sorted(alerts - fires):
    problems.append(f"{tests_path}: no case where {name} fires")
for name in sorted(alerts - silent):
    problems.append(f"{tests_path}: no case where {name} stays silent")
for name in sorted((fires | silent) - alerts):
    problems.append(f"{tests_path}: tests {name}, which {rules_path} does not define")

for p in problems:
    print(f"check-rules: {p}")
if problems:
    sys.exit(f"check-rules: {len(problems)} problems")
print(f"check-rules: ok ({len(alerts)} alerts, each with summary, description, a runbook and tests both ways)")
PY

step "PrometheusRule: deploy/k8s/components/monitoring/prometheus-rule.yaml holds rules.yml's groups"
"$python" scripts/contracts/sync_prometheus_rule.py --check "$root"
