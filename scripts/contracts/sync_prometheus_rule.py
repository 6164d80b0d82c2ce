"""Writes the Kubernetes PrometheusRule from deploy/observability/rules.yml, so the rules a
cluster's Prometheus Operator loads are exactly those `make observe` and the promtool tests
use.

Usage: python3 scripts/contracts/sync_prometheus_rule.py [--check] [<repository root>]

Without --check it (re)writes deploy/k8s/components/monitoring/prometheus-rule.yaml. With
--check it writes nothing and exits 1 when that file is not what it would write (run by
scripts/check-rules.sh; scripts/contracts/check_deploy.py compares the groups too).
Needs PyYAML.
"""

import sys
from pathlib import Path

import yaml

RULES = Path("deploy/observability/rules.yml")
TARGET = Path("deploy/k8s/components/monitoring/prometheus-rule.yaml")

HEADER = """\
# GENERATED from deploy/observability/rules.yml by scripts/contracts/sync_prometheus_rule.py:
# edit rules.yml, then run `python3 scripts/contracts/sync_prometheus_rule.py`. spec.groups
# are rules.yml's groups, unchanged (SLO recordings, burn-rate alerts, cause alerts; see
# docs/operations.md, "SLOs and alerts").
#
# The Prometheus Operator loads a PrometheusRule its Prometheus's ruleSelector matches: add
# the label yours selects on (kube-prometheus-stack: `release: <its Helm release>`) with a
# patch in deploy/k8s/components/monitoring/kustomization.yaml.
"""


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the expressions) as literal blocks, as rules.yml writes them."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def render(root: Path) -> str:
    groups = yaml.safe_load((root / RULES).read_text())["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "catalog",
            "namespace": "catalog",
            "labels": {
                "app.kubernetes.io/name": "catalog",
                "app.kubernetes.io/component": "monitoring",
            },
        },
        "spec": {"groups": groups},
    }
    body = yaml.dump(
        rule, Dumper=_Dumper, sort_keys=False, width=4096, allow_unicode=True, default_flow_style=False
    )
    return HEADER + body


def main(argv: list[str]) -> int:
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    root = Path(args[0] if args else Path(__file__).resolve().parents[2]).resolve()
    text = render(root)
    target = root / TARGET
    if check:
        if not target.exists() or target.read_text() != text:
            print(
                f"sync_prometheus_rule: {TARGET} is not {RULES}'s groups: run "
                "python3 scripts/contracts/sync_prometheus_rule.py",
                file=sys.stderr,
            )
            return 1
        print(f"sync_prometheus_rule: ok ({TARGET} holds {RULES}'s groups)")
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    print(f"sync_prometheus_rule: wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
