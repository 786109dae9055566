#!/usr/bin/env python3
"""Write a Kubernetes-style JSON document (a `List` of Deployments and
ConfigMaps) to stdout: compact, as the API server sends it, or indented like
`kubectl get -o json` with --indent 4.

Deterministic: the same --seed and --size give the same bytes on any Python 3
(the generator uses its own splitmix64, not `random`, whose algorithms may change).

Usage: gen_k8s_json.py [--seed N] [--size BYTES] [--indent N]
"""
import argparse
import json
import sys

MASK = (1 << 64) - 1


class Rng:
    def __init__(self, seed):
        self.s = seed & MASK

    def u64(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, n):
        return self.u64() % n

    def between(self, lo, hi):
        return lo + self.below(hi - lo + 1)

    def pick(self, seq):
        return seq[self.below(len(seq))]

    def chance(self, percent):
        return self.below(100) < percent

    def hex(self, n):
        return "".join("0123456789abcdef"[self.below(16)] for _ in range(n))


APPS = ["api", "web", "worker", "billing", "checkout", "search", "auth", "catalog",
        "payments", "notifier", "ingest", "reports", "gateway", "scheduler", "cache"]
TEAMS = ["platform", "payments", "growth", "search", "identity", "data", "sre"]
NAMESPACES = ["prod", "staging", "canary", "payments-prod", "search-prod", "default"]
REGISTRIES = ["registry.example.com", "ghcr.io/example", "eu.gcr.io/example-prod"]
TIERS = ["frontend", "backend", "batch"]
# Descriptions in several scripts: 2-, 3- and 4-byte UTF-8, as users write them.
DESCRIPTIONS = [
    "Zahlungsdienst für Bestellungen – läuft in drei Zonen",
    "Service de facturation : reçus, avoirs et échéances",
    "決済サービス（本番環境）— 担当: プラットフォームチーム",
    "订单处理服务，负责库存与支付的协调",
    "Служба уведомлений: письма, SMS и push-уведомления",
    "خدمة البحث عن المنتجات",
    "Búsqueda de catálogo — índice «principal» con caché",
    "🚀 canary rollout, owned by 🛠️ platform; on-call 📟 #sre",
    "Ελέγχει τα δικαιώματα πρόσβασης των χρηστών",
    "naïve café résumé façade — “quoted” ‘text’",
]
ENV_NAMES = ["LOG_LEVEL", "PORT", "DATABASE_URL", "REDIS_URL", "FEATURE_FLAGS",
             "OTEL_EXPORTER_OTLP_ENDPOINT", "GOMAXPROCS", "JAVA_OPTS", "REGION",
             "HTTP_TIMEOUT_MS", "MAX_CONNECTIONS", "CACHE_TTL", "SENTRY_DSN",
             "KAFKA_BROKERS", "TZ", "LANG", "WORKERS", "READ_ONLY"]


def timestamp(r):
    return "2024-%02d-%02dT%02d:%02d:%02dZ" % (
        r.between(1, 12), r.between(1, 28), r.below(24), r.below(60), r.below(60))


def uid(r):
    return "%s-%s-%s-%s-%s" % (r.hex(8), r.hex(4), r.hex(4), r.hex(4), r.hex(12))


def env_var(r, name):
    kind = r.below(10)
    if kind < 6:
        values = ["info", "8080", "postgres://app@db.internal:5432/app?sslmode=require",
                  "redis://cache:6379/0", "checkout_v2,search_boost,-legacy_cart",
                  "http://otel-collector.observability:4317", str(r.between(1, 16)),
                  "-Xms512m -Xmx2g -XX:+UseG1GC", "eu-west-1", str(r.between(100, 30000)),
                  "true", "Europe/Berlin", "C.UTF-8"]
        return {"name": name, "value": r.pick(values)}
    if kind < 8:
        return {"name": name, "valueFrom": {"secretKeyRef": {
            "key": name.lower(), "name": "app-secrets", "optional": r.chance(20)}}}
    if kind < 9:
        return {"name": name, "valueFrom": {"fieldRef": {
            "apiVersion": "v1", "fieldPath": r.pick(["metadata.name", "metadata.namespace",
                                                     "status.podIP", "spec.nodeName"])}}}
    return {"name": name, "valueFrom": {"resourceFieldRef": {
        "containerName": "app", "divisor": "0", "resource": "limits.cpu"}}}


def probe(r, port):
    p = {"failureThreshold": r.between(3, 6), "periodSeconds": r.pick([5, 10, 15, 30]),
         "successThreshold": 1, "timeoutSeconds": r.between(1, 5)}
    if r.chance(80):
        p["httpGet"] = {"path": r.pick(["/healthz", "/readyz", "/livez", "/health/ready"]),
                        "port": port, "scheme": "HTTP"}
    else:
        p["tcpSocket"] = {"port": port}
    if r.chance(70):
        p["initialDelaySeconds"] = r.between(0, 60)
    return p


def container(r, name, app):
    port = r.pick([8080, 8443, 9090, 3000, 5000])
    c = {
        "args": ["--port=%d" % port, "--log-format=json",
                 "--config=/etc/%s/config.yaml" % app][: r.between(1, 3)],
        "env": [env_var(r, n) for n in ENV_NAMES[: r.between(4, len(ENV_NAMES))]],
        "image": "%s/%s:v%d.%d.%d" % (r.pick(REGISTRIES), app, r.below(4), r.below(30), r.below(20)),
        "imagePullPolicy": r.pick(["IfNotPresent", "Always"]),
        "livenessProbe": probe(r, port),
        "name": name,
        "ports": [{"containerPort": port, "name": "http", "protocol": "TCP"},
                  {"containerPort": 9102, "name": "metrics", "protocol": "TCP"}],
        "readinessProbe": probe(r, port),
        "resources": {
            "limits": {"cpu": "%dm" % (r.between(1, 8) * 250), "memory": "%dMi" % (r.between(1, 16) * 128)},
            "requests": {"cpu": "%dm" % (r.between(1, 4) * 50), "memory": "%dMi" % (r.between(1, 8) * 64)},
        },
        "securityContext": {"allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                            "readOnlyRootFilesystem": r.chance(80),
                            "runAsNonRoot": True, "runAsUser": r.pick([1000, 10001, 65532])},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "volumeMounts": [{"mountPath": "/etc/%s" % app, "name": "config", "readOnly": True},
                         {"mountPath": "/tmp", "name": "tmp"}],
    }
    return c


def deployment(r, i):
    app = r.pick(APPS)
    name = "%s-%d" % (app, i)
    ns = r.pick(NAMESPACES)
    team = r.pick(TEAMS)
    version = "v%d.%d.%d" % (r.below(4), r.below(30), r.below(20))
    labels = {"app.kubernetes.io/name": app, "app.kubernetes.io/instance": name,
              "app.kubernetes.io/version": version, "app.kubernetes.io/part-of": "shop",
              "app.kubernetes.io/managed-by": "relish", "team": team, "tier": r.pick(TIERS)}
    selector = {"app.kubernetes.io/name": app, "app.kubernetes.io/instance": name}
    replicas = r.between(1, 12)
    containers = [container(r, "app", app)]
    if r.chance(40):
        containers.append(container(r, r.pick(["envoy", "log-shipper", "oauth-proxy"]), app))
    spec = {
        "progressDeadlineSeconds": 600,
        "replicas": replicas,
        "revisionHistoryLimit": 10,
        "selector": {"matchLabels": selector},
        "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": r.pick([0, 1, "25%"])},
                     "type": "RollingUpdate"},
        "template": {
            "metadata": {
                "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9102",
                                "relish.dev/run-id": r.hex(16)},
                "creationTimestamp": None,
                "labels": dict(labels),
            },
            "spec": {
                "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                    "podAffinityTerm": {"labelSelector": {"matchLabels": selector},
                                        "topologyKey": "kubernetes.io/hostname"},
                    "weight": 100}]}},
                "containers": containers,
                "dnsPolicy": "ClusterFirst",
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "restartPolicy": "Always",
                "schedulerName": "default-scheduler",
                "securityContext": {"fsGroup": 2000} if r.chance(50) else {},
                "serviceAccountName": app,
                "terminationGracePeriodSeconds": r.pick([30, 60, 120]),
                "tolerations": [{"effect": "NoSchedule", "key": "dedicated",
                                 "operator": "Equal", "value": team}],
                "volumes": [{"configMap": {"defaultMode": 420, "name": "%s-config" % app}, "name": "config"},
                            {"emptyDir": {}, "name": "tmp"}],
            },
        },
    }
    applied = {"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"annotations": {"description": r.pick(DESCRIPTIONS)},
                            "labels": labels, "name": name, "namespace": ns},
               "spec": {"replicas": replicas, "selector": {"matchLabels": selector}}}
    generation = r.between(1, 40)
    now = timestamp(r)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "annotations": {
                "deployment.kubernetes.io/revision": str(generation),
                "description": r.pick(DESCRIPTIONS),
                # kubectl apply stores the applied object as a JSON string:
                # long, and full of escaped quotes.
                "kubectl.kubernetes.io/last-applied-configuration":
                    json.dumps(applied, ensure_ascii=False, separators=(",", ":"), sort_keys=True) + "\n",
            },
            "creationTimestamp": timestamp(r),
            "generation": generation,
            "labels": labels,
            "name": name,
            "namespace": ns,
            "resourceVersion": str(r.between(100000, 99999999)),
            "uid": uid(r),
        },
        "spec": spec,
        "status": {
            "availableReplicas": replicas,
            "conditions": [
                {"lastTransitionTime": now, "lastUpdateTime": now,
                 "message": "Deployment has minimum availability.",
                 "reason": "MinimumReplicasAvailable", "status": "True", "type": "Available"},
                {"lastTransitionTime": now, "lastUpdateTime": now,
                 "message": 'ReplicaSet "%s-%s" has successfully progressed.' % (name, r.hex(10)),
                 "reason": "NewReplicaSetAvailable", "status": "True", "type": "Progressing"},
            ],
            "observedGeneration": generation,
            "readyReplicas": replicas,
            "replicas": replicas,
            "updatedReplicas": replicas,
        },
    }


def configmap(r, i):
    app = r.pick(APPS)
    props = "".join("%s.%s=%s\n" % (app, k, r.between(1, 100000))
                    for k in ["pool.size", "timeout.ms", "retries", "batch", "port"][: r.between(2, 5)])
    yaml = ("server:\n  port: %d\n  tls: %s\nlog:\n  level: \"%s\"\n  format: json\n"
            "greeting: '%s'\npaths:\n  - /api/v1\n  - \"C:\\\\data\\\\%s\"\n") % (
        r.pick([8080, 8443]), r.pick(["true", "false"]), r.pick(["info", "debug", "warn"]),
        r.pick(DESCRIPTIONS), app)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "data": {
            "app.properties": props,
            "config.yaml": yaml,
            "description": r.pick(DESCRIPTIONS),
            "feature-flags.json": json.dumps({"checkout_v2": r.chance(50), "ratio": r.below(100),
                                              "regions": ["eu-west-1", "us-east-1"]}, sort_keys=True),
            "motd": "Welcome to %s\t(%s)\r\n\"be careful\" \\ on-call: %s" % (app, r.pick(NAMESPACES), r.pick(TEAMS)),
        },
        "metadata": {
            "annotations": {"description": r.pick(DESCRIPTIONS)},
            "creationTimestamp": timestamp(r),
            "labels": {"app.kubernetes.io/name": app, "app.kubernetes.io/component": "config"},
            "name": "%s-config-%d" % (app, i),
            "namespace": r.pick(NAMESPACES),
            "resourceVersion": str(r.between(100000, 99999999)),
            "uid": uid(r),
        },
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--size", type=int, default=5_000_000, help="approximate size in bytes")
    ap.add_argument("--indent", type=int, default=None, help="indent like kubectl (default: compact)")
    a = ap.parse_args()
    r = Rng(a.seed)
    seps = (",", ": ") if a.indent is not None else (",", ":")
    items, total, i = [], 0, 0
    while total < a.size:
        item = deployment(r, i) if r.chance(70) else configmap(r, i)
        text = json.dumps(item, indent=a.indent, ensure_ascii=False, separators=seps)
        # each line of an item sits two levels deeper inside the List
        total += len(text.encode("utf-8")) + 2 * (a.indent or 0) * (text.count("\n") + 1) + 2
        items.append(item)
        i += 1
    doc = {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}
    out = json.dumps(doc, indent=a.indent, ensure_ascii=False, separators=seps) + "\n"
    sys.stdout.buffer.write(out.encode("utf-8"))


if __name__ == "__main__":
    main()
