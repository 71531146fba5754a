//! The Kubernetes [`Source`]: resources through a `kube::Client` (the user's kubeconfig with
//! their own RBAC, or the operator's client behind the loopback API), live state through the
//! tailnet each `ManagedTailnet` resource names, proposals as `ChangeProposal` objects.
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::Value;

use super::backend::*;
use super::local::{Source, with_live_state};
use crate::cluster::credentials::read_credentials;
use crate::cluster::policy_sources::resolve_all;
use crate::proposal::{self, ProposalWorld};
use crate::reconcile::tailnet_policy::PolicyInput;
use crate::reconcile::tailscale_service::tailnet_contributions;
use crate::reconcile::view::tailnet_view;
use crate::resources::common::GROUP;
use crate::resources::{
    ChangeProposal, ManagedTailnet, TailnetPolicy, TailnetScoped, TailscaleService,
};
use crate::snapshot::{SnapshotRegistry, TailnetSnapshots};
use crate::tailscale::{ClientConfig, TailscaleClient};

/// Resync of the snapshots this source builds itself (standalone `--kubeconfig`): the same
/// short window as the checkout source, so a burst of tool calls shares its reads.
const STANDALONE_RESYNC: Duration = super::manifests_source::FRESHNESS;

pub struct KubeSource {
    client: Client,
    /// The operator's own caches, shared with its controllers (loopback API); read only.
    shared: Option<SnapshotRegistry>,
    /// Caches this source builds from a ManagedTailnet's Secret when `shared` has none.
    own: SnapshotRegistry,
    /// Where ChangeProposals are created and listed.
    proposal_namespace: String,
}

impl KubeSource {
    /// A standalone source: live state read with the credentials the `ManagedTailnet`'s Secret holds,
    /// read with the client's RBAC.
    pub fn new(client: Client, proposal_namespace: impl Into<String>) -> KubeSource {
        KubeSource {
            client,
            shared: None,
            own: SnapshotRegistry::new(),
            proposal_namespace: proposal_namespace.into(),
        }
    }

    /// The operator's source: live state from the controllers' snapshot caches.
    pub fn with_shared_snapshots(mut self, registry: SnapshotRegistry) -> KubeSource {
        self.shared = Some(registry);
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn proposal_namespace(&self) -> &str {
        &self.proposal_namespace
    }

    /// Every object of `kind`, as JSON without the noise; a kind whose CRD is not installed
    /// (404) is simply absent, any other failure is an error naming the kind.
    async fn dynamic(&self, kind: &str, plural: &str) -> Result<Vec<Value>, BackendError> {
        let resource = ApiResource {
            group: GROUP.to_owned(),
            version: "v1alpha1".to_owned(),
            api_version: format!("{GROUP}/v1alpha1"),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
        };
        match Api::<DynamicObject>::all_with(self.client.clone(), &resource)
            .list(&ListParams::default())
            .await
        {
            Ok(list) => Ok(list
                .items
                .into_iter()
                .filter_map(|item| serde_json::to_value(item).ok())
                .map(strip_noise)
                .map(|mut v| {
                    v["apiVersion"] = resource.api_version.clone().into();
                    v["kind"] = kind.into();
                    v
                })
                .collect()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
            Err(e) => Err(BackendError::unavailable(&format!("listing {kind}"), e)),
        }
    }

    async fn build_snapshots(&self, name: &str) -> Result<TailnetSnapshots, BackendError> {
        let tailnet = Api::<ManagedTailnet>::all(self.client.clone())
            .get_opt(name)
            .await
            .map_err(|e| BackendError::unavailable("reading the ManagedTailnet", e))?
            .ok_or_else(|| {
                BackendError::NotFound(format!(
                    "ManagedTailnet {name}: no such ManagedTailnet resource; list_resources kind=ManagedTailnet shows \
                     the tailnets"
                ))
            })?;
        let credentials = read_credentials(&tailnet, &self.client)
            .await
            .map_err(|e| {
                BackendError::unavailable(&format!("ManagedTailnet {name} credentials"), e)
            })?;
        let config = ClientConfig::new(tailnet.spec.api_url.clone(), credentials)
            .with_tailnet(tailnet.spec.tailnet.clone());
        let client = TailscaleClient::new(config)
            .map_err(|e| BackendError::unavailable(&format!("ManagedTailnet {name}"), e))?;
        Ok(self.own.insert(name, client, STANDALONE_RESYNC))
    }

    async fn create_proposal(
        &self,
        spec: crate::resources::ChangeProposalSpec,
    ) -> Result<ChangeProposal, BackendError> {
        let name_prefix = format!("{}-{}-", spec.target.kind.to_lowercase(), spec.target.name);
        let mut proposal = ChangeProposal::new("", spec);
        proposal.metadata.name = None;
        proposal.metadata.generate_name = Some(truncate_name(&name_prefix));
        proposal.metadata.labels = Some(
            [(
                "app.kubernetes.io/created-by".to_owned(),
                "tailnet-operator-mcp".to_owned(),
            )]
            .into(),
        );
        Api::<ChangeProposal>::namespaced(self.client.clone(), &self.proposal_namespace)
            .create(&PostParams::default(), &proposal)
            .await
            .map_err(|e| BackendError::unavailable("creating the ChangeProposal", e))
    }
}

impl KubeSource {
    /// Everything the proposal checks need: the TailnetPolicies, the ConfigMaps they read,
    /// and the target tailnet's users, devices and live policy.
    async fn world(&self, tailnet: Option<String>) -> Result<ProposalWorld, BackendError> {
        let policies = Api::<TailnetPolicy>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| BackendError::unavailable("listing TailnetPolicies", e))?
            .items;
        let mut config_maps = Vec::new();
        for r in policies
            .iter()
            .filter_map(|p| p.spec.policy_from.as_ref())
            .map(|f| &f.config_map_key_ref)
        {
            let found = Api::<ConfigMap>::namespaced(self.client.clone(), &r.namespace)
                .get_opt(&r.name)
                .await
                .map_err(|e| BackendError::unavailable("reading a policy ConfigMap", e))?;
            config_maps.extend(found);
        }
        // What TailscaleServices contribute to the tailnet's policy is composed in, as the
        // controller does (a cluster without the CRD has none).
        let services = Api::<TailscaleService>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let contributions = tailnet_contributions(
            services
                .iter()
                .filter(|s| tailnet.as_deref().is_none_or(|t| s.tailnet_ref() == t)),
        );
        let mut world = ProposalWorld {
            policies,
            config_maps,
            contributions,
            ..Default::default()
        };
        let snapshots = match tailnet {
            Some(name) => self.snapshots(name).await.ok(),
            None => None,
        };
        if let Some(snapshots) = snapshots {
            let (policy, devices, users) =
                tokio::join!(snapshots.policy(), snapshots.devices(), snapshots.users());
            if let (Ok(d), Ok(u)) = (devices, users) {
                world.view = tailnet_view(&d.data, &u.data);
            }
            world.live_policy = policy.ok().map(|p| p.data.hujson.clone());
            world = with_live_state(world, &snapshots).await;
        }
        Ok(world)
    }

    /// Validates the change (for an adoption, the adopt-drift patch) against the target as
    /// it is now and creates the ChangeProposal; nothing is created when validation fails.
    async fn propose(
        &self,
        mut request: ChangeRequest,
        adopt: bool,
    ) -> Result<ProposalCreated, BackendError> {
        let mut key = request.key();
        let resources = self.resources().await?;
        let find = |key: &ResourceKey| {
            resources
                .iter()
                .find(|r| {
                    r.get("kind").and_then(Value::as_str) == Some(key.kind.as_str())
                        && r.pointer("/metadata/name").and_then(Value::as_str)
                            == Some(key.name.as_str())
                        && key.namespace.as_deref().is_none_or(|ns| {
                            r.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns)
                        })
                })
                .cloned()
        };
        let mut target = find(&key);
        if target.is_none() && request.operation != ProposalOperation::Create {
            return Err(BackendError::NotFound(format!(
                "{}: no such resource; list_resources shows what exists",
                key.label()
            )));
        }
        let subject = target.as_ref().or(request.object.as_ref());
        let tailnet = match key.kind.as_str() {
            "ManagedTailnet" => Some(key.name.clone()),
            _ => subject
                .and_then(|s| s.pointer("/spec/tailnetRef"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
        let world = self.world(tailnet).await?;
        if let (true, Some(asked)) = (adopt, target.clone()) {
            // Say whose edit is kept (from the audit log, as status recorded it).
            if let Some(Value::String(who)) = asked.pointer("/status/drift/changedBy") {
                request.summary = format!("{}; the edit: {who}", request.summary);
            }
            let adoption = proposal::adopt_drift_patch(&asked, &world)
                .map_err(|e| BackendError::Invalid(e.to_string()))?;
            // The edit may belong to another source (a Fragment's group): propose it there.
            if adoption.target != key.name {
                key.name = adoption.target.clone();
                request.name = adoption.target;
                target = find(&key);
            }
            request.patch = Some(adoption.patch);
        }
        let spec = request.spec();
        let preview = proposal::preview_spec(&spec, target.as_ref(), &world)
            .map_err(|e| BackendError::Invalid(e.to_string()))?;
        if !preview.is_valid() {
            return Err(BackendError::Invalid(format!(
                "the {} of {} fails validation, no proposal created: {}",
                spec.operation.as_str().to_lowercase(),
                key.label(),
                preview.problems()
            )));
        }
        let created = self.create_proposal(spec).await?;
        let name = created.name_any();
        let namespace = created
            .namespace()
            .unwrap_or_else(|| self.proposal_namespace.clone());
        Ok(ProposalCreated {
            next_step: format!(
                "a human reviews it (`kubectl -n {namespace} get changeproposal {name} -o yaml`) \
                 and approves with `kubectl -n {namespace} patch changeproposal {name} --type \
                 merge -p '{{\"spec\":{{\"approved\":true}}}}'`"
            ),
            name,
            namespace: Some(namespace),
            ..created_view(key, request.operation, preview)
        })
    }
}

/// generateName prefixes are capped so the generated name stays a DNS subdomain.
fn truncate_name(prefix: &str) -> String {
    let clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    clean.chars().take(200).collect()
}

/// Drops what an assistant has no use for and what could carry data it should not see:
/// managed fields and kubectl's last-applied copy.
fn strip_noise(mut value: Value) -> Value {
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    value
}

pub fn proposal_info(p: &ChangeProposal) -> ProposalInfo {
    let status = p.status.clone().unwrap_or_default();
    ProposalInfo {
        name: p.name_any(),
        namespace: p.namespace(),
        target: ResourceKey {
            kind: p.spec.target.kind.clone(),
            name: p.spec.target.name.clone(),
            namespace: p.spec.target.namespace.clone(),
        },
        summary: p.spec.summary.clone(),
        mode: format!("{:?}", p.spec.mode),
        approved: p.spec.approved,
        phase: status.phase.map(|ph| format!("{ph:?}")),
        diff: status.diff,
        access_diff: status.access_diff,
        message: status.message,
        file: None,
    }
}

impl Source for KubeSource {
    fn describe(&self) -> String {
        if self.shared.is_some() {
            "operator (in-cluster, loopback API)".to_owned()
        } else {
            "kubernetes (kubeconfig, your RBAC)".to_owned()
        }
    }

    fn resources(&self) -> BackendResult<'_, Vec<Value>> {
        Box::pin(async move {
            // Every kind a proposal may target (the one list of kinds; proposals themselves are
            // listed by `proposals`).
            let mut all = Vec::new();
            for entry in crate::proposal::kinds::registry() {
                all.extend(
                    self.dynamic(&entry.kind, &entry.crd.spec.names.plural)
                        .await?,
                );
            }
            Ok(all)
        })
    }

    fn snapshots(&self, tailnet: String) -> BackendResult<'_, TailnetSnapshots> {
        Box::pin(async move {
            if let Some(found) = self.shared.as_ref().and_then(|s| s.get(&tailnet)) {
                return Ok(found);
            }
            if let Some(found) = self.own.get(&tailnet) {
                return Ok(found);
            }
            self.build_snapshots(&tailnet).await
        })
    }

    fn policy_inputs(&self, tailnet: String) -> BackendResult<'_, Vec<PolicyInput>> {
        Box::pin(async move {
            let list = Api::<TailnetPolicy>::all(self.client.clone())
                .list(&ListParams::default())
                .await
                .map_err(|e| BackendError::unavailable("listing TailnetPolicies", e))?;
            let members: Vec<_> = list
                .items
                .into_iter()
                .filter(|p| p.spec.common.tailnet_ref == tailnet)
                .map(std::sync::Arc::new)
                .collect();
            Ok(resolve_all(&self.client, &members, None).await)
        })
    }

    fn proposals(&self) -> BackendResult<'_, ProposalList> {
        Box::pin(async move {
            let list =
                Api::<ChangeProposal>::namespaced(self.client.clone(), &self.proposal_namespace)
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| BackendError::unavailable("listing ChangeProposals", e))?;
            Ok(ProposalList {
                proposals: list.items.iter().map(proposal_info).collect(),
            })
        })
    }

    fn propose_change(&self, request: ChangeRequest) -> BackendResult<'_, ProposalCreated> {
        Box::pin(self.propose(request, false))
    }

    fn adopt_drift(&self, request: AdoptDriftRequest) -> BackendResult<'_, ProposalCreated> {
        Box::pin(async move {
            let key = ResourceKey {
                kind: request.kind,
                name: request.name,
                namespace: request.namespace,
            };
            let request = ChangeRequest {
                operation: ProposalOperation::Patch,
                summary: format!(
                    "Adopt the live tailnet's state into {} (keep the console edit)",
                    key.label()
                ),
                kind: key.kind,
                name: key.name,
                namespace: key.namespace,
                ..Default::default()
            };
            self.propose(request, true).await
        })
    }
}
