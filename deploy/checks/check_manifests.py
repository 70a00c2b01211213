#!/usr/bin/env python3
"""Checks on rendered deploy/ manifests that schema validation cannot make.

A schema says each object is well formed on its own; these checks look across
objects and at the values that matter to this project: selectors that select
something, references that resolve, a grace period longer than the shutdown it
has to cover, probes that probe the right thing.

    check_manifests.py check RENDERED.yaml --name dev [--external-secret NAME]
                             [--dockerfile deploy/Dockerfile]
    check_manifests.py strip-kinds RENDERED.yaml OUT.yaml --kind ServiceMonitor

`check` prints one PASS or FAIL line per check, then `summary: passed=N
failed=M`, and exits 1 if any check failed. `strip-kinds` writes the manifests
without the named custom-resource kinds (for the schema validator, which has
no schema for them) and says what it left out.

Needs Python 3.9+ and PyYAML.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

# The two workloads this repository deploys (deploy/base).
APP = ("Deployment", "market-service")
NATS = ("StatefulSet", "nats")
EXPECTED_REPLICAS = 3
# Labels the README's commands and the failover drill select on.
APP_POD_LABELS = {"app": "market-service", "app.kubernetes.io/name": "market-service"}
# The binary's worst-case shutdown is drain + lease + about a second.
SHUTDOWN_SLACK_SECONDS = 1.0

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
CLUSTER_SCOPED_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding",
                        "CustomResourceDefinition", "PersistentVolume",
                        "StorageClass", "PriorityClass"}

Manifest = dict[str, Any]


# --------------------------------------------------------------------------
# Reading the rendered output


def load(path: Path) -> list[Manifest]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d]


def namespace_of(obj: Manifest) -> Optional[str]:
    if obj.get("kind") in CLUSTER_SCOPED_KINDS:
        return None
    return obj.get("metadata", {}).get("namespace", "default")


def ref(obj: Manifest) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


@dataclass
class Rendered:
    objects: list[Manifest]

    def find(self, kind: str, name: str, namespace: Optional[str] = None) -> Optional[Manifest]:
        for obj in self.objects:
            if obj.get("kind") == kind and obj["metadata"].get("name") == name:
                if namespace is None or namespace_of(obj) == namespace:
                    return obj
        return None

    def of_kind(self, *kinds: str) -> list[Manifest]:
        return [o for o in self.objects if o.get("kind") in kinds]

    def workloads(self) -> list[Manifest]:
        return self.of_kind(*WORKLOAD_KINDS)


def pod_template(workload: Manifest) -> Manifest:
    return workload.get("spec", {}).get("template", {})


def pod_labels(workload: Manifest) -> dict[str, str]:
    return pod_template(workload).get("metadata", {}).get("labels", {}) or {}


def pod_spec(workload: Manifest) -> Manifest:
    return pod_template(workload).get("spec", {})


def main_container(workload: Manifest) -> Manifest:
    """The container named after the workload, else the first one."""
    containers = pod_spec(workload).get("containers", [])
    name = workload["metadata"]["name"]
    return next((c for c in containers if c.get("name") == name), containers[0] if containers else {})


def selector_matches(selector: Optional[Manifest], labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels + matchExpressions) against labels.

    An empty selector matches everything, as it does for PDBs and network
    policies; a missing one matches nothing.
    """
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def effective_env(rendered: Rendered, workload: Manifest, container: Manifest) -> dict[str, Optional[str]]:
    """Environment as the kubelet builds it: envFrom first, then env.

    A value read from a Secret or the downward API is None (set, unknown).
    """
    namespace = namespace_of(workload)
    env: dict[str, Optional[str]] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            cm = rendered.find("ConfigMap", source["configMapRef"]["name"], namespace)
            for key, value in ((cm or {}).get("data") or {}).items():
                env[source.get("prefix", "") + key] = value
        elif "secretRef" in source:
            secret = rendered.find("Secret", source["secretRef"]["name"], namespace)
            for key in ((secret or {}).get("data") or {}):
                env[source.get("prefix", "") + key] = None
    for var in container.get("env") or []:
        env[var["name"]] = var.get("value") if "valueFrom" not in var else None
    return env


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """`500ms`, `2s`, `1m30s` -> seconds. Raises ValueError on anything else."""
    text = text.strip()
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def probe_path(probe: Optional[Manifest]) -> Optional[str]:
    return ((probe or {}).get("httpGet") or {}).get("path")


# --------------------------------------------------------------------------
# Reporting


@dataclass
class Report:
    passed: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str, why: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"  PASS {what}")
        else:
            self.failed += 1
            self.failures.append(what)
            print(f"  FAIL {what}" + (f": {why}" if why else ""))
        return ok


# --------------------------------------------------------------------------
# Checks across objects


def check_selectors(rendered: Rendered, report: Report) -> None:
    """Every selector selects pods that some workload in its namespace makes."""
    workloads = rendered.workloads()

    def selected(namespace: Optional[str], matches) -> list[str]:
        return [ref(w) for w in workloads if namespace_of(w) == namespace and matches(pod_labels(w))]

    for w in workloads:
        sel = w.get("spec", {}).get("selector")
        report.check(selector_matches(sel, pod_labels(w)),
                     f"{ref(w)} selector matches its own pod template",
                     f"selector {sel} vs labels {pod_labels(w)}")

    for svc in rendered.of_kind("Service"):
        sel = svc.get("spec", {}).get("selector")
        if not sel:
            report.check(False, f"Service/{svc['metadata']['name']} has a selector",
                         "no selector: it would need hand-made Endpoints")
            continue
        hits = selected(namespace_of(svc), lambda labels: all(labels.get(k) == v for k, v in sel.items()))
        report.check(bool(hits), f"Service/{svc['metadata']['name']} selector {sel} selects {', '.join(hits) or 'nothing'}",
                     "no pod template in its namespace carries these labels")

    for pdb in rendered.of_kind("PodDisruptionBudget"):
        sel = pdb.get("spec", {}).get("selector")
        hits = selected(namespace_of(pdb), lambda labels: selector_matches(sel, labels))
        report.check(len(hits) == 1, f"PodDisruptionBudget/{pdb['metadata']['name']} selects exactly one workload ({', '.join(hits) or 'none'})",
                     "a budget must cover the pods of one workload")

    for policy in rendered.of_kind("NetworkPolicy"):
        sel = policy.get("spec", {}).get("podSelector")
        hits = selected(namespace_of(policy), lambda labels: selector_matches(sel, labels))
        report.check(bool(hits), f"NetworkPolicy/{policy['metadata']['name']} podSelector selects {', '.join(hits) or 'nothing'}",
                     "the policy applies to no pod")

    for monitor in rendered.of_kind("ServiceMonitor"):
        name = monitor["metadata"]["name"]
        sel = monitor.get("spec", {}).get("selector")
        services = [s for s in rendered.of_kind("Service")
                    if namespace_of(s) == namespace_of(monitor)
                    and selector_matches(sel, s["metadata"].get("labels") or {})]
        report.check(bool(services), f"ServiceMonitor/{name} selects a Service in its namespace "
                     f"({', '.join(ref(s) for s in services) or 'none'})",
                     f"no Service labelled {sel} in namespace {namespace_of(monitor)}")
        port_names = {p.get("name") for s in services for p in s["spec"].get("ports", [])}
        for endpoint in monitor.get("spec", {}).get("endpoints", []):
            report.check(endpoint.get("port") in port_names,
                         f"ServiceMonitor/{name} endpoint port {endpoint.get('port')!r} is a named Service port",
                         f"Service ports: {sorted(n for n in port_names if n)}")


def check_pdb_budgets(rendered: Rendered, report: Report) -> None:
    """A budget that allows no disruption blocks every node drain forever."""
    for pdb in rendered.of_kind("PodDisruptionBudget"):
        spec = pdb.get("spec", {})
        workloads = [w for w in rendered.workloads() if namespace_of(w) == namespace_of(pdb)
                     and selector_matches(spec.get("selector"), pod_labels(w))]
        replicas = sum(w.get("spec", {}).get("replicas", 1) for w in workloads)
        if "maxUnavailable" in spec:
            allows = str(spec["maxUnavailable"]) not in ("0", "0%")
            what = f"maxUnavailable {spec['maxUnavailable']}"
        else:
            min_available = spec.get("minAvailable", 1)
            allows = isinstance(min_available, str) or min_available < replicas
            what = f"minAvailable {min_available} of {replicas}"
        report.check(allows, f"PodDisruptionBudget/{pdb['metadata']['name']} allows one eviction ({what})",
                     "no voluntary disruption would ever be allowed")


def check_references(rendered: Rendered, report: Report, external_secrets: set[str]) -> None:
    """Secrets and ConfigMaps that pods use exist in the render, with the keys used.

    A Secret named with --external-secret is one the operator creates by hand;
    it only has to be named, not rendered.
    """
    for w in rendered.workloads():
        namespace = namespace_of(w)
        spec = pod_spec(w)
        uses: list[tuple[str, str, Optional[str]]] = []  # (kind, name, key)
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            for var in c.get("env") or []:
                source = var.get("valueFrom") or {}
                if "secretKeyRef" in source:
                    uses.append(("Secret", source["secretKeyRef"]["name"], source["secretKeyRef"]["key"]))
                if "configMapKeyRef" in source:
                    uses.append(("ConfigMap", source["configMapKeyRef"]["name"], source["configMapKeyRef"]["key"]))
            for source in c.get("envFrom") or []:
                if "secretRef" in source:
                    uses.append(("Secret", source["secretRef"]["name"], None))
                if "configMapRef" in source:
                    uses.append(("ConfigMap", source["configMapRef"]["name"], None))
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                uses.append(("ConfigMap", volume["configMap"]["name"], None))
            if "secret" in volume:
                uses.append(("Secret", volume["secret"]["secretName"], None))

        for kind, name, key in dict.fromkeys(uses):
            target = f"{kind}/{name}" + (f" key {key!r}" if key else "")
            if kind == "Secret" and name in external_secrets:
                report.check(rendered.find(kind, name, namespace) is None,
                             f"{ref(w)} uses {target}, supplied outside kustomize",
                             "declared external but also rendered")
                continue
            obj = rendered.find(kind, name, namespace)
            if obj is None:
                report.check(False, f"{ref(w)} uses {target} from the render",
                             f"no {kind} {name!r} in namespace {namespace} (a generator in another namespace?)")
                continue
            keys = set((obj.get("data") or {})) | set((obj.get("stringData") or {})) | set((obj.get("binaryData") or {}))
            report.check(key is None or key in keys, f"{ref(w)} uses {target} from the render",
                         f"keys present: {sorted(keys)}")


# --------------------------------------------------------------------------
# market-service


def check_market_service(rendered: Rendered, report: Report, dockerfile: Optional[Path]) -> None:
    deployment = rendered.find(*APP)
    if not report.check(deployment is not None, f"{APP[0]}/{APP[1]} is rendered"):
        return
    spec = deployment["spec"]
    pod = pod_spec(deployment)
    container = main_container(deployment)
    env = effective_env(rendered, deployment, container)
    name = ref(deployment)

    report.check(spec.get("replicas") == EXPECTED_REPLICAS, f"{name} has {EXPECTED_REPLICAS} replicas",
                 f"replicas: {spec.get('replicas')}")
    labels = pod_labels(deployment)
    report.check(all(labels.get(k) == v for k, v in APP_POD_LABELS.items()),
                 f"{name} pods carry {APP_POD_LABELS} (README and failover drill select on them)",
                 f"labels: {labels}")

    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    report.check((spec.get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
                 and str(rolling.get("maxSurge")) == "1" and str(rolling.get("maxUnavailable")) == "0",
                 f"{name} rolls out with maxSurge 1, maxUnavailable 0",
                 f"strategy: {spec.get('strategy')}")

    # Shutdown: drain, then give up the lease, then exit; the kubelet must not
    # SIGKILL in the middle of that.
    grace = pod.get("terminationGracePeriodSeconds", 30)
    try:
        drain = parse_duration(env.get("MARKET_DRAIN_TIMEOUT") or "2s")
        lease = parse_duration(env.get("MARKET_LEASE_DURATION") or "500ms")
        need = drain + lease + SHUTDOWN_SLACK_SECONDS
        report.check(grace > need,
                     f"{name} terminationGracePeriodSeconds {grace} > drain {drain:g}s + lease {lease:g}s + {SHUTDOWN_SLACK_SECONDS:g}s",
                     f"needs more than {need:g}s")
    except ValueError as err:
        report.check(False, f"{name} MARKET_DRAIN_TIMEOUT and MARKET_LEASE_DURATION parse", str(err))

    # renew < lease < server TTL: renewals fit inside a lease, and the server
    # forgets a lease only after its holder has stopped trusting it.
    try:
        renew = parse_duration(env.get("MARKET_RENEW_INTERVAL") or "100ms")
        lease = parse_duration(env.get("MARKET_LEASE_DURATION") or "500ms")
        ttl = parse_duration(env.get("MARKET_SERVER_TTL") or "1s")
        report.check(0 < renew < lease < ttl,
                     f"{name} timings renew {renew:g}s < lease {lease:g}s < server TTL {ttl:g}s")
    except ValueError as err:
        report.check(False, f"{name} MARKET_RENEW_INTERVAL, MARKET_LEASE_DURATION and MARKET_SERVER_TTL parse", str(err))

    pre_stop = ((container.get("lifecycle") or {}).get("preStop")) or {}
    sleeps = "sleep" in pre_stop or any("sleep" in str(arg) for arg in (pre_stop.get("exec") or {}).get("command", []))
    report.check(not sleeps, f"{name} has no preStop sleep", f"preStop: {pre_stop}")

    readiness, liveness = probe_path(container.get("readinessProbe")), probe_path(container.get("livenessProbe"))
    report.check(readiness == "/readyz", f"{name} readiness probe is /readyz", f"readiness path: {readiness}")
    report.check(liveness == "/livez" and liveness != readiness,
                 f"{name} liveness probe is /livez, not the readiness (NATS-reachability) check",
                 f"liveness path: {liveness}")

    # Sizes of the replicated assets cannot exceed the number of NATS servers.
    nats = rendered.find(*NATS, namespace_of(deployment))
    servers = (nats or {}).get("spec", {}).get("replicas", 1)
    for var in ("MARKET_BUCKET_REPLICAS", "MARKET_STREAM_REPLICAS"):
        value = env.get(var) or "1"
        report.check(value.isdigit() and 1 <= int(value) <= servers,
                     f"{name} {var}={value} fits {servers} NATS servers")

    # NATS_URL names Services of this render, on ports they expose.
    for url in (env.get("NATS_URL") or "").split(","):
        match = re.fullmatch(r"\s*(?:nats|tls)://(?:[^@/]*@)?([a-z0-9-]+)(?:\.[a-z0-9.-]+)?:(\d+)\s*", url)
        service = match and rendered.find("Service", match.group(1), namespace_of(deployment))
        ports = {p["port"] for p in (service or {}).get("spec", {}).get("ports", [])}
        report.check(bool(match) and service is not None and int(match.group(2)) in ports,
                     f"{name} NATS_URL {url.strip()!r} is a Service port of this render",
                     "expected nats://<service>:<port> for a rendered Service")

    # Hardening.
    pod_sc, sc = pod.get("securityContext") or {}, container.get("securityContext") or {}

    def effective(key: str) -> Any:
        return sc.get(key, pod_sc.get(key))

    uid = effective("runAsUser")
    report.check(effective("runAsNonRoot") is True and isinstance(uid, int) and uid > 0,
                 f"{name} runs as a fixed non-root uid ({uid})")
    report.check(sc.get("readOnlyRootFilesystem") is True, f"{name} has a read-only root filesystem")
    report.check(sc.get("allowPrivilegeEscalation") is False, f"{name} forbids privilege escalation")
    report.check("ALL" in ((sc.get("capabilities") or {}).get("drop") or []), f"{name} drops ALL capabilities")
    report.check((effective("seccompProfile") or {}).get("type") == "RuntimeDefault",
                 f"{name} uses the RuntimeDefault seccomp profile")
    account = pod.get("serviceAccountName", "default")
    report.check(pod.get("automountServiceAccountToken") is False and account != "default"
                 and rendered.find("ServiceAccount", account, namespace_of(deployment)) is not None,
                 f"{name} uses its own ServiceAccount ({account}) without a token")

    annotations = pod_template(deployment).get("metadata", {}).get("annotations") or {}
    http_port = next((p["containerPort"] for p in container.get("ports", []) if p.get("name") == "http"), None)
    report.check(annotations.get("prometheus.io/scrape") == "true"
                 and annotations.get("prometheus.io/port") == str(http_port)
                 and annotations.get("prometheus.io/path") == "/metrics",
                 f"{name} has Prometheus scrape annotations for port http ({http_port}) /metrics",
                 f"annotations: {annotations}")

    check_spread(deployment, report)

    if dockerfile is not None:
        text = dockerfile.read_text() if dockerfile.is_file() else ""
        users = re.findall(r"^\s*USER\s+(\S+)", text, re.MULTILINE)
        image_uid = users[-1].split(":")[0] if users else None
        report.check(image_uid is not None and image_uid == str(uid),
                     f"{dockerfile} USER ({image_uid}) is the runAsUser of {name} ({uid})")


def check_spread(workload: Manifest, report: Report) -> None:
    constraints = pod_spec(workload).get("topologySpreadConstraints") or []
    per_node = [c for c in constraints if c.get("topologyKey") == "kubernetes.io/hostname"
                and selector_matches(c.get("labelSelector"), pod_labels(workload))]
    report.check(bool(per_node), f"{ref(workload)} spreads its own pods over kubernetes.io/hostname",
                 f"constraints: {constraints}")


# --------------------------------------------------------------------------
# NATS


def check_nats(rendered: Rendered, report: Report) -> None:
    sts = rendered.find(*NATS)
    if not report.check(sts is not None, f"{NATS[0]}/{NATS[1]} is rendered"):
        return
    name, namespace = ref(sts), namespace_of(sts)
    replicas = sts["spec"].get("replicas", 1)
    container = main_container(sts)
    report.check(replicas == EXPECTED_REPLICAS, f"{name} has {EXPECTED_REPLICAS} replicas", f"replicas: {replicas}")

    headless_name = sts["spec"].get("serviceName")
    headless = rendered.find("Service", headless_name, namespace) if headless_name else None
    report.check(headless is not None and headless["spec"].get("clusterIP") == "None"
                 and headless["spec"].get("publishNotReadyAddresses") is True,
                 f"{name} serviceName {headless_name!r} is a headless Service publishing not-ready addresses")

    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
    report.check(ports.get("client") == 4222 and ports.get("cluster") == 6222 and ports.get("monitor") == 8222,
                 f"{name} listens on client 4222, cluster 6222, monitor 8222", f"ports: {ports}")

    expected_probes = {"startupProbe": "/healthz", "readinessProbe": "/healthz?js-server-only=true",
                       "livenessProbe": "/healthz?js-enabled-only=true"}
    for probe, path in expected_probes.items():
        actual = container.get(probe) or {}
        report.check(probe_path(actual) == path and (actual.get("httpGet") or {}).get("port") in ("monitor", 8222),
                     f"{name} {probe} is {path} on the monitor port", f"{probe}: {actual}")

    claims = [c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])]
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
    report.check(any(mounts.get(c) == "/data" for c in claims),
                 f"{name} mounts a volumeClaimTemplate at /data (JetStream store_dir)", f"claims {claims}, mounts {mounts}")

    conf = nats_conf(rendered, sts)
    if not report.check(conf is not None, f"{name} mounts a rendered ConfigMap holding nats.conf"):
        return

    cluster_port = ports.get("cluster", 6222)
    routes = set(re.findall(r"nats://([a-z0-9.-]+:\d+)", conf))
    expected = {f"{sts['metadata']['name']}-{i}.{headless_name}:{cluster_port}" for i in range(replicas)}
    report.check(routes == expected, f"{name} nats.conf routes are the {replicas} pods via {headless_name}",
                 f"routes {sorted(routes)}, expected {sorted(expected)}")

    store_dir = re.search(r"store_dir:\s*\"?([^\"\s]+)", conf)
    report.check(bool(store_dir) and store_dir.group(1) == "/data", f"{name} nats.conf keeps JetStream at /data")

    # nats-server stops at start-up on a $VARIABLE it cannot resolve.
    env = effective_env(rendered, sts, container)
    variables = sorted(set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", strip_conf_comments(conf))))
    missing = [v for v in variables if v not in env]
    report.check(not missing, f"{name} sets every variable nats.conf reads ({', '.join(variables)})",
                 f"missing: {missing}")

    pre_stop = (((container.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command", [])
    report.check(any("ldm" in str(arg) for arg in pre_stop), f"{name} preStop signals lame-duck mode",
                 f"preStop command: {pre_stop}")
    duration = re.search(r"lame_duck_duration:\s*\"?([0-9a-z.]+)", conf)
    grace = pod_spec(sts).get("terminationGracePeriodSeconds", 30)
    try:
        lame_duck = parse_duration(duration.group(1)) if duration else 120.0  # nats-server's default
        report.check(grace > lame_duck, f"{name} terminationGracePeriodSeconds {grace} > lame_duck_duration {lame_duck:g}s")
    except ValueError as err:
        report.check(False, f"{name} lame_duck_duration parses", str(err))

    check_spread(sts, report)


def nats_conf(rendered: Rendered, sts: Manifest) -> Optional[str]:
    for volume in pod_spec(sts).get("volumes", []):
        if "configMap" in volume:
            cm = rendered.find("ConfigMap", volume["configMap"]["name"], namespace_of(sts))
            if cm and "nats.conf" in (cm.get("data") or {}):
                return cm["data"]["nats.conf"]
    return None


def strip_conf_comments(conf: str) -> str:
    return "\n".join(re.sub(r"(^|\s)(#|//).*$", "", line) for line in conf.splitlines())


# --------------------------------------------------------------------------
# Entry points


def run_checks(args: argparse.Namespace) -> int:
    rendered = Rendered(load(args.rendered))
    report = Report()
    print(f"{args.name}: {len(rendered.objects)} objects from {args.rendered}")
    check_selectors(rendered, report)
    check_pdb_budgets(rendered, report)
    check_references(rendered, report, set(args.external_secret))
    check_market_service(rendered, report, args.dockerfile)
    check_nats(rendered, report)
    print(f"summary: passed={report.passed} failed={report.failed}")
    return 1 if report.failed else 0


def strip_kinds(args: argparse.Namespace) -> int:
    kept: list[Manifest] = []
    for obj in load(args.rendered):
        if obj.get("kind") in args.kind:
            print(f"  skip schema of {ref(obj)} ({obj.get('apiVersion')}): custom resource, "
                  "no Kubernetes schema; checked by check_manifests.py")
        else:
            kept.append(obj)
    with args.out.open("w") as f:
        yaml.safe_dump_all(kept, f, sort_keys=False)
    return 0


def main(argv: Iterable[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="run the cross-object checks")
    check.add_argument("rendered", type=Path, help="output of `kubectl kustomize`")
    check.add_argument("--name", required=True, help="label for the output, e.g. the overlay")
    check.add_argument("--external-secret", action="append", default=[], metavar="NAME",
                       help="a Secret the operator creates outside kustomize (repeatable)")
    check.add_argument("--dockerfile", type=Path, help="compare its last USER with runAsUser")
    check.set_defaults(run=run_checks)

    strip = commands.add_parser("strip-kinds", help="drop custom-resource kinds before schema validation")
    strip.add_argument("rendered", type=Path)
    strip.add_argument("out", type=Path)
    strip.add_argument("--kind", action="append", required=True, help="kind to drop (repeatable)")
    strip.set_defaults(run=strip_kinds)

    args = parser.parse_args(list(argv))
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
