"""Offline checks of the Istio examples in deploy/istio/ against the cubesat pool manifests.

Usage: check_istio.py DEPLOY_DIR RENDERED_POOL_TLS_YAML

- `Telemetry` resources are validated against Istio's published CRD schema, as generated into
  the pydantic models of the PyPI package `cloudcoil-models-istio`, with unknown fields
  forbidden (a misspelt key fails).
- `IstioOperator` is a CRD without a schema (`x-kubernetes-preserve-unknown-fields`), and
  MeshConfig has no published JSON schema, so its parts used here are checked structurally:
  every key against the field names of Istio's MeshConfig / ProxyConfig API
  (istio.mesh.v1alpha1; lists below), value types and ranges, and that each address points at
  a port the rendered pool Service really has (the gRPC port named `grpc-`, TLS `tls-`).
Exits 1 naming every problem.
"""

import sys
from pathlib import Path

import pydantic
import yaml

problems = []


def fail(where, message):
    problems.append(f"{where}: {message}")


# Field names from the Istio API reference (istio.mesh.v1alpha1): only the subtrees used here.
TRACING_KEYS = {"sampling", "lightstep", "zipkin", "datadog", "stackdriver", "openCensusAgent",
                "customTags", "maxPathTagLength", "tlsSettings"}
LIGHTSTEP_KEYS = {"address", "accessToken"}
TLS_SETTINGS_KEYS = {"mode", "clientCertificate", "privateKey", "caCertificates", "credentialName",
                     "subjectAltNames", "sni", "insecureSkipVerify", "caCrl"}
TLS_MODES = {"DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"}
PROVIDER_KINDS = {"opentelemetry", "lightstep", "zipkin", "datadog", "skywalking", "stackdriver",
                  "envoyOtelAls", "envoyFileAccessLog", "envoyHttpAls", "envoyTcpAls",
                  "envoyExtAuthzHttp", "envoyExtAuthzGrpc", "prometheus", "sds"}
OTEL_PROVIDER_KEYS = {"service", "port", "maxTagLength", "http", "grpc", "resourceDetectors",
                      "dynatraceSampler"}
LIGHTSTEP_PROVIDER_KEYS = {"service", "port", "accessToken", "maxTagLength"}
OPERATOR_SPEC_KEYS = {"profile", "hub", "tag", "revision", "meshConfig", "components", "values",
                      "namespace", "installPackagePath"}
MESH_KEYS = {"defaultConfig", "extensionProviders", "defaultProviders", "enableTracing",
             "accessLogFile", "enablePrometheusMerge", "outboundTrafficPolicy", "trustDomain"}
DEFAULT_CONFIG_KEYS = {"tracing", "proxyMetadata", "holdApplicationUntilProxyStarts",
                       "concurrency", "terminationDrainDuration"}


def keys_within(where, mapping, allowed):
    if not isinstance(mapping, dict):
        fail(where, f"expected a mapping, got {mapping!r}")
        return {}
    for key in mapping:
        if key not in allowed:
            fail(where, f"unknown field {key!r} (known: {', '.join(sorted(allowed))})")
    return mapping


def service_ports(pool):
    """(host, port) -> port name, for every name the pool Service answers to."""
    ports = {}
    for doc in pool:
        if doc and doc.get("kind") == "Service":
            name, ns = doc["metadata"]["name"], doc["metadata"].get("namespace", "default")
            for p in doc["spec"]["ports"]:
                for host in (f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"):
                    ports[(host, p["port"])] = p["name"]
    return ports


def check_address(where, host, port, ports, want_prefix):
    name = ports.get((host, port))
    if name is None:
        fail(where, f"{host}:{port} is not a port of the pool Service ({sorted(ports)})")
    elif not name.startswith(want_prefix):
        fail(where, f"{host}:{port} is the Service port {name!r}, expected a {want_prefix}* port")


def check_operator(path, doc, ports, providers):
    if doc.get("apiVersion") != "install.istio.io/v1alpha1":
        fail(path, f"IstioOperator apiVersion {doc.get('apiVersion')!r}")
    spec = keys_within(f"{path} spec", doc.get("spec", {}), OPERATOR_SPEC_KEYS)
    mesh = keys_within(f"{path} spec.meshConfig", spec.get("meshConfig", {}), MESH_KEYS)
    tracing = keys_within(f"{path} defaultConfig", mesh.get("defaultConfig", {}),
                          DEFAULT_CONFIG_KEYS).get("tracing")
    if tracing is not None:
        where = f"{path} meshConfig.defaultConfig.tracing"
        keys_within(where, tracing, TRACING_KEYS)
        sampling = tracing.get("sampling")
        if not isinstance(sampling, (int, float)) or not 0 <= sampling <= 100:
            fail(where, f"sampling {sampling!r}: a percentage 0..100")
        elif sampling != 100:
            fail(where, f"sampling {sampling}: the example traces every request (100)")
        lightstep = keys_within(f"{where}.lightstep", tracing.get("lightstep", {}), LIGHTSTEP_KEYS)
        host, _, port = str(lightstep.get("address", "")).rpartition(":")
        tls = keys_within(f"{where}.tlsSettings", tracing.get("tlsSettings", {}), TLS_SETTINGS_KEYS)
        if tls.get("mode") not in TLS_MODES:
            fail(f"{where}.tlsSettings", f"mode {tls.get('mode')!r} (one of {sorted(TLS_MODES)})")
        if tls.get("caCertificates") != "/etc/lightstep/cacert.pem":
            fail(f"{where}.tlsSettings", "caCertificates must be /etc/lightstep/cacert.pem, where "
                 "the injector mounts the Secret lightstep.cacert")
        if not port.isdigit():
            fail(f"{where}.lightstep", f"address {lightstep.get('address')!r}: host:port")
        else:
            secure = tls.get("mode") in ("SIMPLE", "MUTUAL")
            check_address(f"{where}.lightstep", host, int(port), ports, "tls-" if secure else "grpc-")
        tracer = spec.get("values", {}).get("global", {}).get("proxy", {}).get("tracer")
        if tracer != "lightstep":
            fail(f"{path} values.global.proxy.tracer", f"{tracer!r}, expected 'lightstep'")
    for i, provider in enumerate(mesh.get("extensionProviders", [])):
        where = f"{path} meshConfig.extensionProviders[{i}]"
        keys_within(where, provider, PROVIDER_KINDS | {"name"})
        kinds = [k for k in provider if k != "name"]
        if len(kinds) != 1:
            fail(where, f"exactly one provider kind, got {kinds}")
            continue
        allowed = {"opentelemetry": OTEL_PROVIDER_KEYS, "lightstep": LIGHTSTEP_PROVIDER_KEYS}
        body = keys_within(f"{where}.{kinds[0]}", provider[kinds[0]], allowed.get(kinds[0], set()))
        if not isinstance(body.get("port"), int):
            fail(where, f"port {body.get('port')!r}: a number")
        else:
            check_address(where, body.get("service"), body["port"], ports, "grpc-")
        providers.add(provider.get("name"))


def strict(model):
    """Forbids unknown fields in `model` and every model it contains."""
    seen = set()

    def walk(cls):
        if cls in seen or not (isinstance(cls, type) and issubclass(cls, pydantic.BaseModel)):
            return
        seen.add(cls)
        cls.model_config["extra"] = "forbid"
        for field in cls.model_fields.values():
            for arg in _types(field.annotation):
                walk(arg)
        cls.model_rebuild(force=True)

    walk(model)


def _types(annotation):
    stack, out = [annotation], []
    while stack:
        t = stack.pop()
        out.append(t)
        stack.extend(getattr(t, "__args__", ()))
    return out


def check_telemetry(path, doc, providers):
    from cloudcoil.models.istio.telemetry import v1, v1alpha1

    model = {"telemetry.istio.io/v1": v1.Telemetry,
             "telemetry.istio.io/v1alpha1": v1alpha1.Telemetry}.get(doc.get("apiVersion"))
    if model is None:
        fail(path, f"Telemetry apiVersion {doc.get('apiVersion')!r}")
        return
    strict(model)
    try:
        telemetry = model.model_validate(doc)
    except pydantic.ValidationError as e:
        fail(path, f"does not match the Telemetry schema: {e}")
        return
    for tracing in telemetry.spec.tracing or []:
        for p in tracing.providers or []:
            if p.name not in providers:
                fail(path, f"provider {p.name!r} is not defined in any extensionProviders")
        if tracing.random_sampling_percentage != 100:
            fail(path, f"randomSamplingPercentage {tracing.random_sampling_percentage}, want 100")


def main():
    deploy, pool_yaml = Path(sys.argv[1]), Path(sys.argv[2])
    ports = service_ports(yaml.safe_load_all(pool_yaml.read_text()))
    if not ports:
        fail(pool_yaml, "no Service in the rendered pool")
    docs = [(f, d) for f in sorted(deploy.glob("istio/**/*.yaml"))
            for d in yaml.safe_load_all(f.read_text()) if d]
    providers = set()
    checked = 0
    for path, doc in docs:
        if doc.get("kind") == "IstioOperator":
            check_operator(path, doc, ports, providers)
            checked += 1
    for path, doc in docs:
        if doc.get("kind") == "Telemetry":
            check_telemetry(path, doc, providers)
            checked += 1
    for p in problems:
        print(f"FAIL {p}")
    print(f"istio: {checked} resources checked, {len(problems)} problems")
    return 1 if problems or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
