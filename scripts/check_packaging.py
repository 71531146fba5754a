#!/usr/bin/env python3
"""Packaging checks run by scripts/test (in the venv of scripts/requirements-test.txt).

Generic over whatever exists, so a new kind or manifest is checked without editing this file:

1. every built-in-kind manifest and CRD under crds/, deploy/ and the chart's crds/ validates
   with kubernetes-validate (strict: unknown fields are errors) for each Kubernetes version in
   KUBERNETES_VERSIONS;
2. every custom resource of group tailnet.ops.dev under examples/ and deploy/ validates against
   its CRD's openAPIV3Schema (from crds/), unknown fields rejected as `kubectl apply` does;
3. the Helm chart, with the real `helm` ($HELM): `helm lint --strict` with its default values
   and with ci/all-flags-on-values.yaml and ci/workload-identity-values.yaml (the token projected
   for the operator container only); a wrong-typed and an unknown value are rejected by
   Helm itself (values.schema.json); `helm template --include-crds` with each value set, every
   rendered built-in object valid with kubernetes-validate (strict) for each version, every CRD
   under crds/ rendered, no ClusterRole granting anything on `secrets`, and RBAC subjects and
   namespaced objects in the release namespace (also for a namespace other than the default);
4. deploy/ is the chart's defaults as plain manifests, object by object: `kubectl kustomize
   deploy/` ($KUBECTL) against `helm template` (same kinds and names, and each object equal
   but for labels and annotations; the chart's generated MCP token Secret and kustomize's
   Namespace are the stated exceptions);
5. the Argo CD health checks cover every kind and deploy/argocd/argocd-cm-health.yaml carries
   the tested Lua scripts verbatim;
6. the PrometheusRule of the chart rendered with every flag on is written as a plain rule file
   (--rules-out) for `promtool check rules` / `promtool test rules`.

Exits non-zero listing every problem found.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "tailnet-operator"
GROUP = "tailnet.ops.dev"
KUBERNETES_VERSIONS = ["1.33.0", "1.34.0"]
# API groups whose kinds are not built into Kubernetes: checked by their own tools, not here.
THIRD_PARTY_GROUPS = {"argoproj.io", "monitoring.coreos.com", "kustomize.config.k8s.io"}

problems: list[str] = []


def problem(message: str) -> None:
    problems.append(message)
    print(f"  FAIL {message}")


def ok(message: str) -> None:
    print(f"  ok   {message}")


def yaml_files(*dirs: Path) -> Iterator[Path]:
    for directory in dirs:
        if directory.is_dir():
            yield from sorted(p for p in directory.rglob("*") if p.suffix in (".yaml", ".yml"))


def documents(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open() as handle:
        for index, doc in enumerate(yaml.safe_load_all(handle)):
            if isinstance(doc, dict) and doc:
                yield index, doc


def group_of(doc: dict[str, Any]) -> str:
    api_version = str(doc.get("apiVersion", ""))
    return api_version.split("/")[0] if "/" in api_version else ""


def is_manifest(doc: dict[str, Any]) -> bool:
    return "apiVersion" in doc and "kind" in doc


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ------------------------------------------------------------------------------------------
# 1. built-in kinds with kubernetes-validate


def check_builtin_manifests() -> None:
    print("kubernetes-validate (strict) for", ", ".join(KUBERNETES_VERSIONS))
    dirs = [ROOT / "crds", ROOT / "deploy", CHART / "crds"]
    count = 0
    for path in yaml_files(*dirs):
        docs = [d for _, d in documents(path) if is_manifest(d) and d["kind"] != "Kustomization"]
        count += validate_builtin(docs, rel(path))
    if count == 0:
        problem("no built-in manifests found under crds/ and deploy/")
    ok(f"{count} built-in manifests checked")


# ------------------------------------------------------------------------------------------
# 2. custom resources against their CRD's openAPIV3Schema


def load_crd_schemas() -> dict[str, dict[str, Any]]:
    schemas = {}
    for path in yaml_files(ROOT / "crds"):
        for _, doc in documents(path):
            if doc.get("kind") != "CustomResourceDefinition":
                continue
            kind = doc["spec"]["names"]["kind"]
            version = doc["spec"]["versions"][0]
            schemas[f"{doc['spec']['group']}/{version['name']}/{kind}"] = version["schema"][
                "openAPIV3Schema"
            ]
    return schemas


def unknown_fields(value: Any, schema: dict[str, Any], path: str) -> Iterator[str]:
    """Fields the API server would reject with strict field validation (kubectl's default)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        for key, child in value.items():
            if path == "" and key in ("apiVersion", "kind", "metadata"):
                continue
            if properties is not None and key in properties:
                yield from unknown_fields(child, properties[key], f"{path}.{key}")
            elif isinstance(additional, dict):
                yield from unknown_fields(child, additional, f"{path}.{key}")
            elif additional is not True and properties is not None:
                yield f"{path}.{key}"
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from unknown_fields(item, schema["items"], f"{path}[{index}]")


def check_custom_resources() -> None:
    print("custom resources against their CRD's openAPIV3Schema")
    schemas = load_crd_schemas()
    if not schemas:
        problem("no CRDs found in crds/")
        return
    count = 0
    for path in yaml_files(ROOT / "examples", ROOT / "deploy"):
        for index, doc in documents(path):
            if not is_manifest(doc) or group_of(doc) != GROUP:
                continue
            count += 1
            key = f"{doc['apiVersion']}/{doc['kind']}"
            where = f"{rel(path)}#{index} {doc['kind']}/{doc.get('metadata', {}).get('name')}"
            schema = schemas.get(key)
            if schema is None:
                problem(f"{where}: no CRD in crds/ serves {key}")
                continue
            validator = jsonschema.Draft7Validator(schema)
            for error in validator.iter_errors(doc):
                location = "/".join(str(p) for p in error.absolute_path)
                problem(f"{where}: {error.message} at /{location}")
            for field in unknown_fields(doc, schema, ""):
                problem(f"{where}: unknown field {field} (not in the CRD schema)")
    if count == 0:
        problem("no custom resources found under examples/ and deploy/")
    ok(f"{count} custom resources checked against {len(schemas)} CRDs")


# ------------------------------------------------------------------------------------------
# 3. Helm chart with the real helm: lint, values schema, rendered objects


RELEASE = "tailnet-operator"
RELEASE_NAMESPACE = "tailnet-operator"
ALL_FLAGS = CHART / "ci" / "all-flags-on-values.yaml"
# What deploy/ and the chart's defaults may differ in: the chart generates the MCP token Secret
# (kustomize cannot; deploy/kustomization.yaml says how to create it) and kustomize creates the
# Namespace (helm's --create-namespace does).
ONLY_IN_CHART = {("Secret", "tailnet-operator-mcp-token")}
ONLY_IN_DEPLOY = {("Namespace", "tailnet-operator")}


def binary(variable: str) -> str:
    path = os.environ.get(variable)
    if not path:
        raise SystemExit(f"${variable} is not set: run scripts/test, which installs helm and kubectl")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=False)


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return run(binary("HELM"), *args)


def helm_template(*extra: str, namespace: str = RELEASE_NAMESPACE) -> list[dict[str, Any]]:
    result = helm("template", RELEASE, str(CHART), "--namespace", namespace, "--include-crds",
                  *extra)
    if result.returncode != 0:
        problem(f"helm template {' '.join(extra)}: {result.stderr.strip()}")
        return []
    return [d for d in yaml.safe_load_all(result.stdout) if isinstance(d, dict)]


WORKLOAD_IDENTITY = CHART / "ci" / "workload-identity-values.yaml"
VALUE_SETS = (("default values", ()), ("all-flags-on values", ("-f", str(ALL_FLAGS))),
              ("workload-identity values", ("-f", str(WORKLOAD_IDENTITY))))
IDENTITY_MOUNT = "/var/run/secrets/tailscale/serviceaccount"


def check_chart() -> None:
    print("Helm chart", rel(CHART), "with", helm("version", "--short").stdout.strip())
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    for name, flags in VALUE_SETS:
        lint = helm("lint", "--strict", str(CHART), *flags)
        if lint.returncode != 0:
            problem(f"helm lint --strict with {name}: {lint.stdout.strip()} {lint.stderr.strip()}")
        else:
            ok(f"helm lint --strict with {name}")
    for name, flag in (("replicaCount: \"two\"", "replicaCount=two"),
                       ("an unknown key", "operator.imagePullPolicyy=Always")):
        for verb in ("lint", "template"):
            result = helm(verb, str(CHART), "--set", flag)
            if result.returncode == 0:
                problem(f"helm {verb} accepts {name}")
            else:
                ok(f"helm {verb} rejects {name}")


def check_workload_identity() -> None:
    """With workload identity the ManagedTailnet names the federated identity, the operator
    container (only) gets a service-account token for its audience at the path the spec names,
    and no Secret holds a Tailscale credential; two credentials at once fail to render."""
    before = len(problems)
    values = yaml.safe_load(WORKLOAD_IDENTITY.read_text())["tailnet"]["workloadIdentity"]
    docs = helm_template("-f", str(WORKLOAD_IDENTITY))
    tailnet = next(d for d in docs if d["kind"] == "ManagedTailnet")
    identity = tailnet["spec"].get("workloadIdentity", {})
    if identity.get("clientId") != values["clientId"] or identity.get("audience") != values["audience"]:
        problem(f"workload identity: ManagedTailnet spec is {tailnet['spec']}")
    if "oauthSecretRef" in tailnet["spec"] or "apiKeySecretRef" in tailnet["spec"]:
        problem("workload identity: the ManagedTailnet also references a credential Secret")
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    volume = next((v for v in pod["volumes"] if v["name"] == "tailscale-identity"), None)
    sources = (volume or {}).get("projected", {}).get("sources", [])
    token = next((s["serviceAccountToken"] for s in sources if "serviceAccountToken" in s), {})
    if token.get("audience") != values["audience"]:
        problem(f"workload identity: projected token volume is {volume}")
    mounts = {c["name"]: [m["mountPath"] for m in c.get("volumeMounts", [])]
              for c in pod["containers"]}
    if IDENTITY_MOUNT not in mounts.get("operator", []):
        problem(f"workload identity: the operator container does not mount {IDENTITY_MOUNT}")
    if any(IDENTITY_MOUNT in paths for name, paths in mounts.items() if name != "operator"):
        problem("workload identity: a container other than the operator gets the token")
    if identity.get("tokenPath", "").rsplit("/", 1)[0] != IDENTITY_MOUNT:
        problem(f"workload identity: spec.tokenPath {identity.get('tokenPath')} is not under the mount")
    both = helm("template", str(CHART), "-f", str(WORKLOAD_IDENTITY),
                "--set", "tailnet.oauthSecret.name=ts-oauth")
    if both.returncode == 0 or "set only one of" not in both.stderr:
        problem(f"workload identity plus an OAuth Secret renders: {both.stderr.strip()}")
    no_audience = helm("template", str(CHART), "-f", str(WORKLOAD_IDENTITY),
                       "--set", "tailnet.workloadIdentity.audience=")
    if no_audience.returncode == 0 or "audience" not in no_audience.stderr:
        problem("workload identity without an audience renders")
    if len(problems) == before:
        ok("workload identity: federated identity in the ManagedTailnet, token projected with "
           "its audience into the operator container only, conflicting or incomplete values "
           "refused")


def check_rendered() -> None:
    print("helm template: kubernetes-validate, CRDs, RBAC")
    shipped = {doc["metadata"]["name"] for path in yaml_files(ROOT / "crds")
               for _, doc in documents(path) if doc.get("kind") == "CustomResourceDefinition"}
    for name, flags in VALUE_SETS:
        docs = helm_template(*flags)
        count = validate_builtin(docs, f"helm template ({name})")
        ok(f"helm template ({name}): {count} built-in objects checked for "
           f"{', '.join(KUBERNETES_VERSIONS)}")
        rendered = {d["metadata"]["name"] for d in docs if d["kind"] == "CustomResourceDefinition"}
        if rendered != shipped:
            problem(f"helm template ({name}) CRDs {sorted(rendered)} != crds/ {sorted(shipped)}")
        else:
            ok(f"helm template ({name}) renders the {len(shipped)} CRDs of crds/")
        check_no_cluster_secrets(docs, name)
    check_release_namespace("other-namespace")
    check_workload_identity()


def validate_builtin(docs: list[dict[str, Any]], source: str) -> int:
    """Validates the built-in kinds among `docs` (strict: unknown fields are errors) for each
    version in KUBERNETES_VERSIONS; returns how many there were."""
    count = 0
    for doc in docs:
        group = group_of(doc)
        if group == GROUP or group in THIRD_PARTY_GROUPS:
            continue
        count += 1
        where = f"{source} {doc['kind']}/{doc['metadata'].get('name')}"
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                problem(f"{where} (k8s {version}): {err.message} at {list(err.path)}")
            except Exception as err:  # unknown kind/version, schema missing
                problem(f"{where} (k8s {version}): {err}")
    return count


def check_no_cluster_secrets(docs: list[dict[str, Any]], name: str) -> None:
    for doc in docs:
        if doc["kind"] != "ClusterRole":
            continue
        for rule in doc.get("rules", []):
            if "secrets" in rule.get("resources", []) or "*" in rule.get("resources", []):
                problem(f"helm template ({name}): ClusterRole {doc['metadata']['name']} grants "
                        f"{rule.get('verbs')} on secrets cluster-wide")
                return
    ok(f"helm template ({name}): no ClusterRole grants access to secrets")


def check_release_namespace(namespace: str) -> None:
    """Installed into another namespace, every namespaced object and RBAC subject follows."""
    docs = helm_template("-f", str(ALL_FLAGS), namespace=namespace)
    # Roles in the namespaces rbac.secretNamespaces names are the one stated exception.
    secret_namespaces = set(yaml.safe_load(ALL_FLAGS.read_text())["rbac"]["secretNamespaces"])
    wrong = []
    for doc in docs:
        meta = doc["metadata"]
        rbac = doc["kind"] in ("Role", "RoleBinding")
        allowed = {namespace} | (secret_namespaces if rbac else {None})
        if doc["kind"] in ("Role", "RoleBinding", "Deployment", "Service", "ServiceAccount",
                           "Secret", "ServiceMonitor", "PrometheusRule"):
            if meta.get("namespace") not in allowed:
                wrong.append(f"{doc['kind']}/{meta['name']} in {meta.get('namespace')}")
        for subject in doc.get("subjects", []):
            if subject.get("kind") == "ServiceAccount" and subject.get("namespace") != namespace:
                wrong.append(f"{doc['kind']}/{meta['name']} subject in {subject.get('namespace')}")
    secret_roles = {d["metadata"].get("namespace") for d in docs if d["kind"] == "Role"
                    and any("secrets" in r.get("resources", []) for r in d.get("rules", []))}
    if secret_roles != {namespace} | secret_namespaces:
        wrong.append(f"Secret Roles in {sorted(secret_roles)}, want the release namespace and "
                     f"rbac.secretNamespaces {sorted(secret_namespaces)}")
    if wrong:
        problem(f"helm template --namespace {namespace}: {wrong}")
    else:
        ok(f"helm template --namespace {namespace}: objects and RBAC subjects in {namespace}, "
           f"Secret Roles only there and in {sorted(secret_namespaces)}")


# ------------------------------------------------------------------------------------------
# 4. alert rules from the rendered chart, for promtool


def write_rules(out: Path) -> None:
    print("alert rules for promtool, from the rendered chart")
    docs = helm_template("-f", str(ALL_FLAGS))
    rules = [d for d in docs if d["kind"] == "PrometheusRule"]
    if len(rules) != 1:
        problem(f"helm template with every flag on renders {len(rules)} PrometheusRules, not 1")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}, sort_keys=False))
    ok(f"PrometheusRule {rules[0]['metadata']['name']} -> {out}")


# ------------------------------------------------------------------------------------------
# 4b. deploy/ is the chart's defaults as plain manifests, object by object


def without_labels(value: Any) -> Any:
    """`value` without labels and annotations (helm's chart labels, checksums), numbers as
    floats (YAML writers differ on 0 and 0.0)."""
    if isinstance(value, dict):
        return {k: without_labels(v) for k, v in value.items() if k not in ("labels", "annotations")}
    if isinstance(value, list):
        return [without_labels(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def differences(a: Any, b: Any, path: str = "") -> Iterator[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                yield f"{path}/{key} only in {'deploy' if key not in a else 'the chart'}"
            else:
                yield from differences(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, f"{path}[{i}]")
    elif a != b:
        yield f"{path}: chart {str(a)[:80]!r}, deploy {str(b)[:80]!r}"


def check_deploy_matches_chart() -> None:
    print("deploy/ equals the chart's defaults, object by object")
    built = run(binary("KUBECTL"), "kustomize", str(ROOT / "deploy"))
    if built.returncode != 0:
        problem(f"kubectl kustomize deploy/: {built.stderr.strip()}")
        return
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    deploy = {key(d): d for d in yaml.safe_load_all(built.stdout) if isinstance(d, dict)}
    chart = {key(d): d for d in helm_template()}
    if set(chart) - set(deploy) != ONLY_IN_CHART or set(deploy) - set(chart) != ONLY_IN_DEPLOY:
        problem(f"objects only in the chart: {sorted(set(chart) - set(deploy))}, only in "
                f"deploy/: {sorted(set(deploy) - set(chart))}")
    for name in sorted(set(chart) & set(deploy)):
        found = list(differences(without_labels(chart[name]), without_labels(deploy[name])))
        if found:
            problem(f"{name[0]}/{name[1]} differs: {found[:5]}")
        else:
            ok(f"{name[0]}/{name[1]} matches")


# ------------------------------------------------------------------------------------------
# 5. Argo CD health checks: one per kind, carried verbatim by the argocd-cm patch

# The kinds fixed across the project, plus whatever CRDs exist (a new kind needs a script).
# The kind list, written by `tailnet-operator kindgen` from the operator's one list of kinds.
KINDS = {
    entry["kind"]: entry["health"]
    for entry in json.loads((ROOT / "scripts" / "kinds.json").read_text())["kinds"]
}


def check_argocd_health() -> None:
    print("Argo CD health checks")
    health = ROOT / "deploy" / "argocd" / "health"
    cm_path = ROOT / "deploy" / "argocd" / "argocd-cm-health.yaml"
    data = yaml.safe_load(cm_path.read_text())["data"]
    kinds = set(KINDS) | {key.split("/")[-1] for key in load_crd_schemas()}
    for kind in sorted(kinds):
        if kind not in KINDS:
            problem(f"{kind} has a CRD under crds/ but is not in scripts/kinds.json (kindgen)")
            continue
        script = KINDS[kind]
        key = f"resource.customizations.health.{GROUP}_{kind}"
        want = (health / script).read_text()
        if key not in data:
            problem(f"{rel(cm_path)} has no health check for {kind} ({key})")
        elif data[key].strip() != want.strip():
            problem(f"{rel(cm_path)}: {key} differs from {rel(health / script)}")
        else:
            ok(f"{kind}: {script}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules-out", type=Path, required=True)
    args = parser.parse_args()
    check_builtin_manifests()
    check_custom_resources()
    check_chart()
    check_rendered()
    check_deploy_matches_chart()
    check_argocd_health()
    write_rules(args.rules_out)
    if problems:
        print(f"\n{len(problems)} packaging problem(s)")
        return 1
    print("\npackaging checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
