"""Checks that the deploy files, the README and .env.example agree with the code.

The schema validators (compose spec, Kubernetes schemas) say a file is well formed; this says
it configures *this* system: every environment key the deployments set is one the binaries
read, every key the binaries read is documented with its default, the topics the compose file
creates are the AsyncAPI document's, and the Kubernetes objects point at each other. The
monitoring component's objects (Prometheus Operator kinds) scrape the services under the job
names the rules select, and its PrometheusRule holds exactly deploy/observability/rules.yml's
groups (scripts/contracts/sync_prometheus_rule.py writes it).

Usage: python check_deploy.py <repository root>. Prints each problem; exits 1 if any.
"""

import json
import re
import sys
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
problems: list[str] = []

# Read by libraries rather than by our own `env::` calls: the tracing filter, and the
# object_store S3 client's AWS_* variables that the README documents.
LIBRARY_KEYS = {"RUST_LOG"}
AWS_KEYS = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_ENDPOINT",
    "AWS_ALLOW_HTTP",
}


def problem(text: str) -> None:
    problems.append(text)


def code_keys() -> set[str]:
    """Every variable the binaries read: `env::string/parse/url/optional("KEY", …)` and
    `std::env::var("KEY")` outside test modules."""
    keys = set(LIBRARY_KEYS)
    for crate in ("api", "image-processor", "platform"):
        for path in (ROOT / crate / "src").rglob("*.rs"):
            text = path.read_text()
            text = text.split("#[cfg(test)]")[0]
            keys.update(re.findall(r'env::(?:string|parse|parse_with|url|optional)\(\s*"([A-Z][A-Z0-9_]*)"', text))
            keys.update(re.findall(r'std::env::var\("([A-Z][A-Z0-9_]*)"\)', text))
    return keys


def env_example() -> dict[str, str]:
    out = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def readme_table() -> dict[str, str]:
    """The README's configuration table: | `KEY` | `default` or empty | meaning |."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    out = {}
    for row in re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|([^|]*)\|", section, re.M):
        key, default = row
        out[key] = default.strip().strip("`")
    return out


def check_documentation(keys: set[str]) -> None:
    example = env_example()
    for key in sorted(keys - example.keys()):
        problem(f".env.example: {key} is read by the code but not listed")
    for key in sorted(example.keys() - keys):
        problem(f".env.example: {key} is listed but no binary reads it")
    table = readme_table()
    if not table:
        problem("README.md: no configuration table under '## Configuration'")
    for key in sorted((keys | AWS_KEYS) - table.keys()):
        problem(f"README.md: {key} is missing from the configuration table")
    for key in sorted(table.keys() - keys - AWS_KEYS):
        problem(f"README.md: the configuration table lists {key}, which nothing reads")
    for key, default in example.items():
        if key in table and table[key] != default:
            problem(
                f"README.md: {key} defaults to {table[key]!r} in the table but {default!r} in .env.example"
            )


def check_env(where: str, env: dict, known: set[str]) -> None:
    for key in env:
        if key not in known and key not in AWS_KEYS:
            problem(f"{where}: sets {key}, which neither binary reads (a typo?)")


def expected_topics(prefix: str, retry_levels: int) -> set[str]:
    doc = json.loads((ROOT / "events" / "asyncapi.json").read_text())
    topics = set()
    for channel in doc["channels"].values():
        address = channel["address"].replace("{prefix}", prefix)
        if "{level}" in address:
            topics.update(address.replace("{level}", str(n)) for n in range(1, retry_levels + 1))
        else:
            topics.add(address)
    return topics


def compacted_topics(prefix: str) -> set[str]:
    doc = json.loads((ROOT / "events" / "asyncapi.json").read_text())
    return {
        channel["address"].replace("{prefix}", prefix)
        for channel in doc["channels"].values()
        if "compact"
        in channel["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"]
    }


def check_compose(keys: set[str]) -> None:
    path = "deploy/docker-compose.yml"
    compose = yaml.safe_load((ROOT / path).read_text())
    services = compose["services"]
    for name in ("api", "image-processor", "migrate"):
        if name not in services:
            problem(f"{path}: no {name} service")
            continue
        env = services[name].get("environment", {})
        check_env(f"{path} service {name}", env, keys)
    processor = services["image-processor"]["environment"]
    prefix = processor.get("KAFKA_TOPIC_PREFIX", "catalog.")
    levels = len(str(processor.get("IMAGE_RETRY_DELAYS", "5s,30s,120s")).split(","))
    init = "\n".join(services["kafka-init"]["command"])
    created = set(re.findall(r"^\s*create (\S+)", init, re.M))
    want = expected_topics(prefix, levels)
    if created != want:
        problem(
            f"{path}: kafka-init creates {sorted(created)}, the AsyncAPI document needs {sorted(want)}"
        )
    for topic in compacted_topics(prefix):
        line = re.search(rf"^\s*create {re.escape(topic)}(\s.*)?$", init, re.M)
        if line and "cleanup.policy=compact" not in (line.group(1) or ""):
            problem(f"{path}: kafka-init must create {topic} with --config cleanup.policy=compact")
    if str(processor.get("KAFKA_CREATE_TOPICS")).lower() != "false":
        problem(f"{path}: topics come from kafka-init, so KAFKA_CREATE_TOPICS should be false")
    for name in ("api", "image-processor"):
        after = services[name].get("depends_on", {})
        if "kafka-init" not in after:
            problem(f"{path}: {name} should wait for kafka-init")


def k8s_objects() -> list[tuple[str, dict]]:
    out = []
    for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((f"deploy/k8s/{path.name}", doc))
    return out


def check_kubernetes(keys: set[str], operations: set[str]) -> None:
    objects = k8s_objects()
    kustomization = yaml.safe_load((ROOT / "deploy/k8s/kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    files = {p.name for p in (ROOT / "deploy/k8s").glob("*.yaml")} - {"kustomization.yaml"}
    if listed != files:
        problem(f"deploy/k8s/kustomization.yaml: resources {sorted(listed)} but files {sorted(files)}")
    check_objects(objects, keys, operations)
    for component in sorted((ROOT / "deploy/k8s/components").glob("*/kustomization.yaml")):
        check_objects(render_component(objects, component.parent), keys, operations)


def find(objects: list[tuple[str, dict]], kind: str, name: str) -> dict | None:
    for _, obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    return None


def merge(base: dict, patch: dict) -> None:
    """A strategic merge as kustomize does it for the maps used here."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value


def json6902(obj: dict, ops: list[dict], where: str) -> None:
    for op in ops:
        *parents, last = [p for p in op["path"].split("/") if p]
        node = obj
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.get(part)
            if node is None:
                problem(f"{where}: {op['path']} does not exist")
                return
        if op["op"] == "replace" and last not in node:
            problem(f"{where}: {op['path']} does not exist to replace")
        elif op["op"] in ("add", "replace"):
            node[last] = op["value"]
        else:
            problem(f"{where}: unsupported operation {op['op']}")


def render_component(base: list[tuple[str, dict]], directory: Path) -> list[tuple[str, dict]]:
    """The base objects with a kustomize Component applied (its resources and patches)."""
    label = f"deploy/k8s with {directory.relative_to(ROOT / 'deploy/k8s')}"
    objects = [(f"{label}: {where}", json.loads(json.dumps(obj))) for where, obj in base]
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    if spec.get("kind") != "Component":
        problem(f"{label}: kustomization.yaml is not a kustomize Component")
    for resource in spec.get("resources", []):
        for doc in yaml.safe_load_all((directory / resource).read_text()):
            if doc:
                objects.append((f"{label}/{resource}", doc))
    for patch in spec.get("patches", []):
        if "path" in patch:
            for doc in yaml.safe_load_all((directory / patch["path"]).read_text()):
                target = doc and find(objects, doc["kind"], doc["metadata"]["name"])
                if not target:
                    problem(f"{label}/{patch['path']}: patches an object that does not exist")
                    continue
                merge(target, {k: v for k, v in doc.items() if k not in ("apiVersion", "kind")})
        else:
            t = patch["target"]
            target = find(objects, t["kind"], t["name"])
            if target is None:
                problem(f"{label}: a patch targets {t['kind']} {t['name']}, which does not exist")
                continue
            json6902(target, yaml.safe_load(patch["patch"]), f"{label} patch of {t['name']}")
    return objects


# KEDA's Kafka scaler: the `sasl` parameter for each mechanism the services accept.
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}
KEDA_KAFKA_PARAMETERS = {"sasl", "username", "password", "tls", "ca", "cert", "key", "keyPassword"}


def check_objects(objects: list[tuple[str, dict]], keys: set[str], operations: set[str]) -> None:
    by_kind: dict[str, dict[str, dict]] = {}
    for _, obj in objects:
        by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj

    # The ConfigMaps and Secrets that become the services' environment (others, such as
    # KEDA's, hold other things).
    env_sources = {
        (kind, ref[key]["name"])
        for dep in by_kind.get("Deployment", {}).values()
        for c in dep["spec"]["template"]["spec"]["containers"]
        for ref in c.get("envFrom", [])
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef"))
        if key in ref
    }
    settings: dict[str, str] = {}
    for kind in ("ConfigMap", "Secret"):
        for name, obj in by_kind.get(kind, {}).items():
            if (kind, name) not in env_sources:
                continue
            data = obj.get("data") or obj.get("stringData") or {}
            check_env(f"deploy/k8s {kind} {name}", data, keys)
            settings.update(data)

    schema = json.loads((ROOT / "scripts/contracts/keda-scaledobject.schema.json").read_text())
    for where, obj in objects:
        if obj["kind"] == "ScaledObject":
            for error in jsonschema.Draft7Validator(schema).iter_errors(obj):
                at = "/".join(str(p) for p in error.absolute_path)
                problem(f"{where}: ScaledObject {at}: {error.message}")

    deployments = by_kind.get("Deployment", {})
    for name, dep in deployments.items():
        pod = dep["spec"]["template"]["spec"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        selector = dep["spec"]["selector"]["matchLabels"]
        if not selector.items() <= labels.items():
            problem(f"Deployment {name}: selector does not match its pod labels")
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            problem(f"Deployment {name}: pods must run as non-root")
        for c in pod["containers"]:
            where = f"Deployment {name} container {c['name']}"
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe not in c:
                    problem(f"{where}: no {probe}")
            if "requests" not in c.get("resources", {}) or "memory" not in c["resources"].get("limits", {}):
                problem(f"{where}: needs resource requests and a memory limit")
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False or not sc.get("readOnlyRootFilesystem"):
                problem(f"{where}: must forbid privilege escalation and use a read-only root")
            if c["args"][0] not in ("api", "image-processor"):
                problem(f"{where}: runs {c['args'][0]!r}, not one of the binaries")
            for ref in c.get("envFrom", []):
                for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if key in ref and ref[key]["name"] not in by_kind.get(kind, {}):
                        problem(f"{where}: {kind} {ref[key]['name']} does not exist")
            if c["args"][0] == "api":
                for probe in ("livenessProbe", "readinessProbe"):
                    path = c.get(probe, {}).get("httpGet", {}).get("path")
                    if path not in operations:
                        problem(f"{where}: {probe} path {path} is not in api/openapi.json")

    for kind in ("Service", "PodDisruptionBudget"):
        for name, obj in by_kind.get(kind, {}).items():
            sel = obj["spec"]["selector"]
            sel = sel.get("matchLabels", sel)
            if not any(
                sel.items() <= d["spec"]["template"]["metadata"]["labels"].items()
                for d in deployments.values()
            ):
                problem(f"{kind} {name}: its selector matches no Deployment")
    for kind in ("HorizontalPodAutoscaler", "ScaledObject"):
        for name, obj in by_kind.get(kind, {}).items():
            target = obj["spec"]["scaleTargetRef"]["name"]
            if target not in deployments:
                problem(f"{kind} {name}: scales {target}, which is not a Deployment here")

    for name, so in by_kind.get("ScaledObject", {}).items():
        for trigger in so["spec"]["triggers"]:
            if trigger["type"] != "kafka":
                continue
            meta = trigger["metadata"]
            prefix = settings.get("KAFKA_TOPIC_PREFIX", "catalog.")
            wants = {
                "consumerGroup": settings.get("IMAGE_PROCESSOR_GROUP", "image-processor"),
                "topic": f"{prefix}product-events",
                "bootstrapServers": settings.get("KAFKA_BROKERS"),
            }
            for key, want in wants.items():
                if meta.get(key) != want:
                    problem(f"ScaledObject {name}: {key} is {meta.get(key)!r}, the processor uses {want!r}")
            check_trigger_authentication(name, trigger, settings, by_kind)
        partitions = int(settings.get("KAFKA_TOPIC_PARTITIONS", "3"))
        if so["spec"].get("maxReplicaCount", 100) > partitions:
            problem(
                f"ScaledObject {name}: maxReplicaCount {so['spec']['maxReplicaCount']} exceeds "
                f"KAFKA_TOPIC_PARTITIONS {partitions}; the extra consumers would idle"
            )

    check_monitoring(objects, by_kind)


def check_trigger_authentication(
    name: str, trigger: dict, settings: dict[str, str], by_kind: dict[str, dict[str, dict]]
) -> None:
    """KEDA must reach the brokers the way the services do: same SASL mechanism, user, TLS."""
    ref = trigger.get("authenticationRef", {}).get("name")
    protocol = settings.get("KAFKA_SECURITY_PROTOCOL", "plaintext")
    if ref is None:
        if protocol != "plaintext":
            problem(f"ScaledObject {name}: the services use {protocol}, but KEDA's trigger has no authenticationRef")
        return
    auth = by_kind.get("TriggerAuthentication", {}).get(ref)
    if auth is None:
        problem(f"ScaledObject {name}: TriggerAuthentication {ref} does not exist")
        return
    params: dict[str, tuple[str, str, str | None]] = {}
    for item in auth["spec"].get("secretTargetRef", []):
        where = f"TriggerAuthentication {ref} parameter {item.get('parameter')}"
        if item.get("parameter") not in KEDA_KAFKA_PARAMETERS:
            problem(f"{where}: not a parameter of KEDA's Kafka scaler")
        secret = by_kind.get("Secret", {}).get(item.get("name"))
        data = (secret or {}).get("stringData") or (secret or {}).get("data") or {}
        if secret is None or item.get("key") not in data:
            problem(f"{where}: Secret {item.get('name')} has no key {item.get('key')}")
        params[item.get("parameter")] = (item.get("name"), item.get("key"), data.get(item.get("key")))
    if protocol.startswith("sasl_"):
        mechanism = settings.get("KAFKA_SASL_MECHANISM", "")
        sasl = params.get("sasl", (None, None, None))[2]
        if sasl != KEDA_SASL.get(mechanism):
            problem(f"TriggerAuthentication {ref}: sasl is {sasl!r}, the services use {mechanism} ({KEDA_SASL.get(mechanism)!r})")
        for param, key in (("username", "KAFKA_SASL_USERNAME"), ("password", "KAFKA_SASL_PASSWORD")):
            if params.get(param, (None, None))[:2] != ("catalog-secrets", key):
                problem(f"TriggerAuthentication {ref}: {param} must come from catalog-secrets {key}, as the services' does")
    tls = params.get("tls", (None, None, None))[2]
    if (tls == "enable") != protocol.endswith("ssl"):
        problem(f"TriggerAuthentication {ref}: tls is {tls!r}, the services use {protocol}")


# The Prometheus job each binary's metrics must carry: the rules select on these
# (deploy/observability/rules.yml; prometheus.yml names its scrape jobs the same).
JOB_OF_BINARY = {"api": "catalog-api", "image-processor": "image-processor"}
MONITORING_KINDS = ("PrometheusRule", "ServiceMonitor", "PodMonitor")


def relabelled_job(endpoint: dict) -> str | None:
    """The value a monitor's endpoint gives `job` with a replace relabelling, if any."""
    job = None
    for r in endpoint.get("relabelings", []):
        if r.get("targetLabel") == "job" and r.get("action", "replace") == "replace":
            job = r.get("replacement")
    return job


def check_monitoring(objects: list[tuple[str, dict]], by_kind: dict[str, dict[str, dict]]) -> None:
    """ServiceMonitors and PodMonitors reach the services' /metrics under the jobs the rules
    select; a PrometheusRule holds rules.yml's groups, unchanged."""
    if not any(kind in by_kind for kind in MONITORING_KINDS):
        return
    deployments = by_kind.get("Deployment", {})

    def binary_of(pod_labels_match) -> set[str]:
        return {
            c["args"][0]
            for d in deployments.values()
            if pod_labels_match(d["spec"]["template"]["metadata"]["labels"])
            for c in d["spec"]["template"]["spec"]["containers"]
        }

    scraped: set[str] = set()
    for name, sm in by_kind.get("ServiceMonitor", {}).items():
        where = f"ServiceMonitor {name}"
        sel = sm["spec"].get("selector", {}).get("matchLabels", {})
        namespaces = sm["spec"].get("namespaceSelector", {}).get("matchNames", [sm["metadata"]["namespace"]])
        services = [
            svc
            for svc in by_kind.get("Service", {}).values()
            if sel.items() <= svc["metadata"].get("labels", {}).items()
            and svc["metadata"]["namespace"] in namespaces
        ]
        if not sel or not services:
            problem(f"{where}: its selector matches no Service")
            continue
        for svc in services:
            ports = {p.get("name") for p in svc["spec"]["ports"]}
            pod_sel = svc["spec"]["selector"]
            binaries = binary_of(lambda labels: pod_sel.items() <= labels.items())
            for endpoint in sm["spec"].get("endpoints", []):
                check_endpoint(where, endpoint, ports, binaries, f"Service {svc['metadata']['name']}")
                scraped.add(relabelled_job(endpoint) or "")
    for name, pm in by_kind.get("PodMonitor", {}).items():
        where = f"PodMonitor {name}"
        sel = pm["spec"].get("selector", {}).get("matchLabels", {})
        matched = [
            d
            for d in deployments.values()
            if sel and sel.items() <= d["spec"]["template"]["metadata"]["labels"].items()
            and d["metadata"]["namespace"] == pm["metadata"]["namespace"]
        ]
        if not matched:
            problem(f"{where}: its selector matches no Deployment's pods")
            continue
        ports = {
            p.get("name") for d in matched for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])
        }
        binaries = {c["args"][0] for d in matched for c in d["spec"]["template"]["spec"]["containers"]}
        for endpoint in pm["spec"].get("podMetricsEndpoints", []):
            check_endpoint(where, endpoint, ports, binaries, "its pods")
            scraped.add(relabelled_job(endpoint) or "")
    if by_kind.get("ServiceMonitor") or by_kind.get("PodMonitor"):
        for job in sorted(set(JOB_OF_BINARY.values()) - scraped):
            problem(f"monitoring: no ServiceMonitor or PodMonitor scrapes the job {job} the rules select")

    rules_path = ROOT / "deploy/observability/rules.yml"
    groups = yaml.safe_load(rules_path.read_text())["groups"]
    for name, rule in by_kind.get("PrometheusRule", {}).items():
        if rule.get("spec", {}).get("groups") != groups:
            problem(
                f"PrometheusRule {name}: its groups differ from deploy/observability/rules.yml; "
                "run python3 scripts/contracts/sync_prometheus_rule.py"
            )


def check_endpoint(where: str, endpoint: dict, ports: set, binaries: set[str], target: str) -> None:
    if endpoint.get("port") not in ports:
        problem(f"{where}: port {endpoint.get('port')!r} is not a named port of {target}")
    if endpoint.get("path", "/metrics") != "/metrics":
        problem(f"{where}: path {endpoint.get('path')!r}; the services serve /metrics")
    jobs = {JOB_OF_BINARY.get(b) for b in binaries}
    if len(jobs) != 1 or None in jobs:
        problem(f"{where}: scrapes {sorted(binaries)}, not exactly one of the binaries")
    elif relabelled_job(endpoint) not in jobs:
        problem(
            f"{where}: sets job to {relabelled_job(endpoint)!r}, but the rules select "
            f"job={next(iter(jobs))!r} for {next(iter(binaries))} (relabel job with a replace)"
        )


def main() -> int:
    keys = code_keys()
    openapi = json.loads((ROOT / "api" / "openapi.json").read_text())
    check_documentation(keys)
    check_compose(keys)
    check_kubernetes(keys, set(openapi["paths"]))
    for p in problems:
        print(f"check_deploy: {p}")
    if problems:
        print(f"check_deploy: {len(problems)} problems")
        return 1
    print(f"check_deploy: ok ({len(keys)} settings; compose, Kubernetes, README and .env.example agree)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
