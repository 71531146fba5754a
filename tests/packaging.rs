//! The packaging files that must follow the code: for every kind in `resources::crds()` (so a new
//! kind fails here until it is packaged), the chart's copy of the CRDs, the CRD kustomize base,
//! the RBAC rules of the chart and of deploy/, and the generated CRD reference are up to date.
//! (Manifest validation, Helm lint, promtool and the Lua health checks run in scripts/test.)
use std::path::PathBuf;

use tailnet_operator::cli::{crdgen, docgen, kindgen};
use tailnet_operator::resources;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// The kinds' plural names, from the CRDs.
fn plurals() -> Vec<String> {
    resources::crds()
        .into_iter()
        .map(|crd| crd.spec.names.plural)
        .collect()
}

#[test]
fn the_chart_crds_are_the_generated_ones() {
    let stale = crdgen::stale_files(&repo("charts/tailnet-operator/crds")).unwrap();
    assert!(
        stale.is_empty(),
        "charts/tailnet-operator/crds is stale: {stale:?}; run scripts/regenerate \
         (or `cargo run -- crdgen --out charts/tailnet-operator/crds`) and commit it"
    );
}

#[test]
fn the_crd_kustomization_lists_every_generated_file() {
    let text = read("crds/kustomization.yaml");
    let listed: Vec<&str> = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- "))
        .collect();
    let generated: Vec<String> = crdgen::generate()
        .unwrap()
        .into_iter()
        .map(|file| file.file_name)
        .collect();
    assert_eq!(
        listed, generated,
        "crds/kustomization.yaml must list the files crdgen writes, in its order; run \
         scripts/regenerate and commit it"
    );
}

#[test]
fn the_crd_reference_is_up_to_date() {
    let path = repo(docgen::DEFAULT_OUT);
    assert!(
        docgen::is_up_to_date(&path).unwrap(),
        "{} is stale; run scripts/regenerate (or `{}`) and commit it",
        docgen::DEFAULT_OUT,
        docgen::REGENERATE
    );
}

#[test]
fn the_files_generated_from_the_kind_list_are_up_to_date() {
    let stale = kindgen::stale(&repo(".")).unwrap();
    assert!(
        stale.is_empty(),
        "stale: {stale:?}; run scripts/regenerate (or `{}`) and commit them",
        kindgen::REGENERATE
    );
}

#[test]
fn rbac_covers_every_kind_and_its_status_in_the_chart_and_deploy() {
    let kinds = plurals();
    assert!(kinds.len() >= 5, "{kinds:?}");
    for file in [
        "charts/tailnet-operator/templates/rbac.yaml",
        "deploy/manifests/rbac.yaml",
    ] {
        let text = read(file);
        let resources_lines: Vec<&str> = text
            .lines()
            .filter(|l| l.trim_start().starts_with("resources:"))
            .collect();
        for plural in &kinds {
            for resource in [plural.clone(), format!("{plural}/status")] {
                let listed = resources_lines.iter().any(|line| {
                    line.split(['[', ']', ',', ' '])
                        .any(|word| word.trim() == resource)
                });
                assert!(listed, "{file} grants nothing on {resource}");
            }
        }
    }
}

#[test]
fn the_deployments_keep_the_sidecar_without_credentials() {
    for file in [
        "charts/tailnet-operator/templates/deployment.yaml",
        "deploy/manifests/deployment.yaml",
    ] {
        let text = read(file);
        assert!(
            text.contains("automountServiceAccountToken: false"),
            "{file}: the pod must not mount the token into every container"
        );
        let (operator, mcp) = text
            .split_once("- name: mcp\n")
            .unwrap_or_else(|| panic!("{file}: no mcp container"));
        assert!(operator.contains("mountPath: /var/run/secrets/kubernetes.io/serviceaccount"));
        let mcp_container = mcp.split("volumes:").next().unwrap();
        assert!(
            !mcp_container.contains("serviceaccount") && !mcp_container.contains("secretKeyRef"),
            "{file}: the MCP sidecar must get no service-account token and no credentials"
        );
        for setting in [
            "runAsNonRoot: true",
            "readOnlyRootFilesystem: true",
            "allowPrivilegeEscalation: false",
            "RuntimeDefault",
        ] {
            assert!(
                text.contains(setting)
                    || read("charts/tailnet-operator/values.yaml").contains(setting),
                "{file}: {setting}"
            );
        }
    }
}

/// Every YAML file under `dirs` (recursively).
fn yaml_files(dirs: &[&str]) -> Vec<PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    for dir in dirs {
        walk(&repo(dir), &mut files);
    }
    files.sort();
    files
}

/// The CEL rules (`x-kubernetes-validations`) of each CR's CRD hold for every custom resource in
/// examples/ and deploy/, as the API server would check on create. (scripts/check_packaging.py
/// checks the same objects against the OpenAPI schema.)
#[test]
fn every_custom_resource_in_examples_and_deploy_passes_its_crd_cel_rules() {
    let crds = resources::crds();
    let mut checked = 0;
    for path in yaml_files(&["examples", "deploy"]) {
        let text = std::fs::read_to_string(&path).unwrap();
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        for doc in docs {
            let api_version = doc["apiVersion"].as_str().unwrap_or_default();
            if !api_version.starts_with("tailnet.ops.dev/") {
                continue;
            }
            let kind = doc["kind"].as_str().unwrap_or_default();
            let crd = crds
                .iter()
                .find(|crd| crd.spec.names.kind == kind)
                .unwrap_or_else(|| panic!("{}: no CRD for kind {kind}", path.display()));
            let schema = crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("openAPIV3Schema");
            let schema = serde_json::to_value(schema).unwrap();
            if let Err(errors) = kube_cel::Validator::new().validate(&schema, &doc, None) {
                let messages: Vec<String> = errors
                    .into_vec()
                    .into_iter()
                    .map(|e| e.to_string())
                    .collect();
                panic!("{} ({kind}): {messages:?}", path.display());
            }
            checked += 1;
        }
    }
    assert!(
        checked > 0,
        "no custom resources found in examples/ or deploy/"
    );
}
