#!/usr/bin/env bash
# `make test` (and `make contracts`): validates the published contracts and deploy files
# offline, with the registries' mainstream validators:
#   api/openapi.json          openapi-spec-validator (OpenAPI 3.0)
#   events/asyncapi.json      @asyncapi/parser (schema, references, semantic rules)
#   deploy/Dockerfile         hadolint (Dockerfile best practices, shellcheck of RUN lines)
#   deploy/docker-compose.yml check-jsonschema against the Compose Specification
#   deploy/k8s/*.yaml         kubernetes-validate --strict, oldest and newest supported versions
#   all of them               scripts/contracts/check_deploy.py: keys, topics, references agree
# (That the code and the committed documents agree is checked by the Rust tests.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
. scripts/contract-tools.sh

bin="$TOOLS_VENV/bin"
step() { printf '[contracts] %s\n' "$*"; }

step "OpenAPI: api/openapi.json"
"$bin/openapi-spec-validator" api/openapi.json

step "AsyncAPI: events/asyncapi.json"
node scripts/contracts/validate-asyncapi.mjs events/asyncapi.json

step "hadolint: deploy/Dockerfile"
"$bin/hadolint" --no-color --config deploy/.hadolint.yaml deploy/Dockerfile

step "Compose Specification: deploy/docker-compose.yml"
"$bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/docker-compose.yml

manifests=()
for f in deploy/k8s/*.yaml deploy/k8s/components/*/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
done
for version in 1.30 1.37; do
  step "Kubernetes $version schemas (strict): ${manifests[*]}"
  status=0
  out=$("$bin/kubernetes-validate" --strict --quiet -k "$version" "${manifests[@]}" 2>&1) || status=$?
  # KEDA's ScaledObject and TriggerAuthentication, and the Prometheus Operator's
  # PrometheusRule, ServiceMonitor and PodMonitor, are custom resources with no schema here;
  # check_deploy.py checks them (and the components applied to the base).
  grep -Ev "Couldn't find schema for kind (ScaledObject|TriggerAuthentication) with api version keda.sh|Couldn't find schema for kind (PrometheusRule|ServiceMonitor|PodMonitor) with api version monitoring.coreos.com" <<<"$out" || true
  [ "$status" = 0 ] || exit "$status"
done

step "Consistency with the code: settings, topics, references"
"$bin/python" scripts/contracts/check_deploy.py "$root"
