#!/usr/bin/env python3
"""Packaging checks run by scripts/test (in the venv of scripts/requirements-test.txt).

Generic over whatever exists, so a new kind or manifest is checked without editing this file:

1. every built-in-kind manifest and CRD under crds/, deploy/ and the chart's crds/ validates
   with kubernetes-validate (strict: unknown fields are errors) for each Kubernetes version in
   KUBERNETES_VERSIONS;
2. every custom resource of group tailnet.ops.dev under examples/ and deploy/ validates against
   its CRD's openAPIV3Schema (from crds/), unknown fields rejected as `kubectl apply` does;
3. the Helm chart lints with no error through helm-sdkpy (Helm's own Go library), with its
   default values and with ci/all-flags-on-values.yaml; values.yaml and the all-flags-on values
   validate against values.schema.json; a wrong-typed and an unknown value are rejected, by the
   schema and by Helm's lint;
4. deploy/ equals the chart's defaults where it matters (RBAC rules, security contexts,
   resources, image, ports, leader election, no automounted token);
5. the Argo CD health checks cover every kind and deploy/argocd/argocd-cm-health.yaml carries
   the tested Lua scripts verbatim;
6. the chart's alert rules (files/prometheus-rules.yaml) are rendered with the default values
   into a plain rule file (--rules-out) for `promtool check rules` / `promtool test rules`.

Exits non-zero listing every problem found.
"""
from __future__ import annotations

import argparse
import asyncio
import copy
import json
import re
import shutil
import sys
import tempfile
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
        for index, doc in documents(path):
            if not is_manifest(doc):
                continue
            group = group_of(doc)
            if group == GROUP or group in THIRD_PARTY_GROUPS:
                continue
            if doc["kind"] == "Kustomization":
                continue
            count += 1
            where = f"{rel(path)}#{index} {doc['kind']}/{doc.get('metadata', {}).get('name')}"
            for version in KUBERNETES_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as err:
                    problem(f"{where} (k8s {version}): {err.message} at {list(err.path)}")
                except Exception as err:  # unknown kind/version, schema missing
                    problem(f"{where} (k8s {version}): {err}")
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
# 3. Helm chart: lint and values schema


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def chart_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def all_flags_on_values() -> dict[str, Any]:
    override = yaml.safe_load((CHART / "ci" / "all-flags-on-values.yaml").read_text())
    return deep_merge(chart_values(), override)


def helm_lint(values: dict[str, Any]) -> list[str]:
    """Lints a copy of the chart whose values.yaml is `values` (helm-sdkpy's lint takes the
    chart's own values only). Returns the error messages."""
    import helm_sdkpy

    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / "tailnet-operator"
        shutil.copytree(CHART, chart)
        (chart / "values.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
        config = helm_sdkpy.Configuration(namespace="tailnet-system")
        try:
            result = asyncio.run(helm_sdkpy.Lint(config).run(str(chart)))
        except helm_sdkpy.HelmError as err:
            return [str(err)]
    # helm's support.Message: Severity 1 info, 2 warning, 3 error; the Go error values arrive
    # as {} through the bindings, so the failing file's path is what can be reported.
    messages = result.get("Messages") or []
    errors = [f"{m.get('Path')}: error" for m in messages if int(m.get("Severity", 0)) >= 3]
    if not errors and result.get("Errors"):
        errors = [f"{len(result['Errors'])} error(s)"]
    return [str(e) for e in errors]


def check_chart() -> None:
    print("Helm chart", rel(CHART))
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    defaults, all_on = chart_values(), all_flags_on_values()
    for name, values in (("values.yaml", defaults), ("all-flags-on values", all_on)):
        errors = [e.message for e in validator.iter_errors(values)]
        if errors:
            problem(f"{name} does not match values.schema.json: {errors}")
        else:
            ok(f"{name} matches values.schema.json")
        lint_errors = helm_lint(values)
        if lint_errors:
            problem(f"helm lint with {name}: {lint_errors}")
        else:
            ok(f"helm lint with {name}: no errors")
    wrong_type = deep_merge(defaults, {"replicaCount": "two"})
    unknown = deep_merge(defaults, {"operator": {"imagePullPolicyy": "Always"}})
    for name, values in (("replicaCount: \"two\"", wrong_type), ("an unknown key", unknown)):
        if validator.is_valid(values):
            problem(f"values.schema.json accepts {name}")
        else:
            ok(f"values.schema.json rejects {name}")
        if helm_lint(values):
            ok(f"helm lint rejects {name}")
        else:
            problem(f"helm lint accepts {name}")


# ------------------------------------------------------------------------------------------
# 4. alert rules rendered for promtool

VALUE_REF = re.compile(r"\{\{-?\s*\.Values\.([A-Za-z0-9_.]+)\s*-?\}\}")
RAW = re.compile(r"\{\{`(.*?)`\}\}")


def lookup(values: dict[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        node = node[part]
    return node


def render_rules(out: Path) -> None:
    """The chart includes files/prometheus-rules.yaml with `tpl`; the file may only use
    `{{ .Values.x.y }}` and raw strings ({{`...`}}), so this renders it exactly as Helm would
    with the default values."""
    print("alert rules for promtool")
    source = CHART / "files" / "prometheus-rules.yaml"
    text = source.read_text()
    values = chart_values()
    rendered = VALUE_REF.sub(lambda m: str(lookup(values, m.group(1))), text)
    rendered = RAW.sub(lambda m: m.group(1), rendered)
    leftover = [line for line in rendered.splitlines() if "{{" in line and "$labels" not in line
                and "$value" not in line]
    if leftover:
        problem(f"{rel(source)} uses template syntax this renderer does not know: {leftover}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(rendered)
    ok(f"rendered {rel(source)} -> {out}")


# ------------------------------------------------------------------------------------------
# 4b. deploy/ is the chart's defaults as plain manifests

def chart_template_without_directives(name: str) -> list[dict[str, Any]]:
    """A chart template with its template-only lines dropped: what remains of rbac.yaml is the
    rules, which must equal deploy/'s."""
    text = (CHART / "templates" / name).read_text()
    kept = [line for line in text.splitlines() if "{{" not in line]
    return [d for d in yaml.safe_load_all("\n".join(kept)) if isinstance(d, dict)]


def check_deploy_matches_chart() -> None:
    print("deploy/ equals the chart's defaults")
    values = chart_values()
    deploy = ROOT / "deploy" / "manifests"
    chart_rbac = {d["kind"]: d.get("rules") for d in chart_template_without_directives("rbac.yaml")}
    for _, doc in documents(deploy / "rbac.yaml"):
        if "rules" in doc and doc.get("rules") != chart_rbac.get(doc["kind"]):
            problem(f"deploy {doc['kind']} rules differ from the chart's templates/rbac.yaml")
        elif "rules" in doc:
            ok(f"{doc['kind']} rules match the chart")
    deployment = next(d for _, d in documents(deploy / "deployment.yaml"))
    pod = deployment["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    expectations = [
        ("pod securityContext", pod.get("securityContext"), values["podSecurityContext"]),
        ("replicas", deployment["spec"]["replicas"], values["replicaCount"]),
        ("operator resources", containers["operator"].get("resources"),
         values["operator"]["resources"]),
        ("mcp resources", containers["mcp"].get("resources"), values["mcp"]["resources"]),
        ("operator securityContext", containers["operator"].get("securityContext"),
         values["containerSecurityContext"]),
        ("mcp securityContext", containers["mcp"].get("securityContext"),
         values["containerSecurityContext"]),
        ("operator image", containers["operator"]["image"],
         f"{values['image']['repository']}:{yaml.safe_load((CHART / 'Chart.yaml').read_text())['appVersion']}"),
        ("metrics port", containers["operator"]["ports"][0]["containerPort"],
         values["operator"]["metricsPort"]),
        ("mcp port", containers["mcp"]["ports"][0]["containerPort"], values["mcp"]["port"]),
        ("automountServiceAccountToken", pod.get("automountServiceAccountToken"), False),
    ]
    for what, got, want in expectations:
        if got != want:
            problem(f"deploy/manifests/deployment.yaml {what}: {got!r}, chart default {want!r}")
        else:
            ok(f"{what} matches the chart default")
    leader = "--leader-election=false" if values["replicaCount"] == 1 else "--leader-election=true"
    if leader not in containers["operator"]["args"]:
        problem(f"deploy operator args lack {leader} (chart default for {values['replicaCount']} replica(s))")


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
    check_deploy_matches_chart()
    check_argocd_health()
    render_rules(args.rules_out)
    if problems:
        print(f"\n{len(problems)} packaging problem(s)")
        return 1
    print("\npackaging checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
