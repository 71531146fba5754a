//! The Kubernetes [`Source`]: resources through a `kube::Client` (the user's kubeconfig with
//! their own RBAC, or the operator's client behind the loopback API), live state through the
//! tailnet each `Tailnet` resource names, proposals as `ChangeProposal` objects.
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::Value;

use super::backend::*;
use super::local::Source;
use crate::controller::tailnet::read_credentials;
use crate::controller::tailnet_policy::resolve_all;
use crate::reconcile::tailnet_policy::PolicyResource;
use crate::resources::change_proposal::ProposalTarget;
use crate::resources::common::GROUP;
use crate::resources::{ChangeProposal, Tailnet, TailnetPolicy};
use crate::snapshot::{SnapshotRegistry, TailnetSnapshots};
use crate::tailscale::{ClientConfig, TailscaleClient};

/// Kinds of the operator's group other than the typed ones, read generically so they show up
/// as soon as their CRDs are installed: (kind, plural).
const OTHER_KINDS: &[(&str, &str)] = &[("DeviceTagSet", "devicetagsets"), ("DNSConfig", "dnsconfigs")];

/// Resync of the snapshots this source builds itself (standalone `--kubeconfig`).
const STANDALONE_RESYNC: Duration = Duration::from_secs(30);

pub struct KubeSource {
    client: Client,
    /// The operator's own caches, shared with its controllers (loopback API); read only.
    shared: Option<SnapshotRegistry>,
    /// Caches this source builds from a Tailnet's Secret when `shared` has none.
    own: SnapshotRegistry,
    /// Where ChangeProposals are created and listed.
    proposal_namespace: String,
}

impl KubeSource {
    /// A standalone source: live state read with the credentials the `Tailnet`'s Secret holds,
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

    async fn typed<K>(&self) -> Result<Vec<Value>, BackendError>
    where
        K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + serde::Serialize,
        K: std::fmt::Debug,
    {
        let list = Api::<K>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| BackendError::unavailable(&format!("listing {}", K::kind(&())), e))?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|mut item| {
                item.meta_mut().managed_fields = None;
                let mut value = serde_json::to_value(&item).ok()?;
                value["apiVersion"] = K::api_version(&()).into_owned().into();
                value["kind"] = K::kind(&()).into_owned().into();
                Some(strip_noise(value))
            })
            .collect())
    }

    async fn dynamic(&self, kind: &str, plural: &str) -> Vec<Value> {
        let resource = ApiResource {
            group: GROUP.to_owned(),
            version: "v1alpha1".to_owned(),
            api_version: format!("{GROUP}/v1alpha1"),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
        };
        // A kind whose CRD is not installed (yet) is simply absent.
        match Api::<DynamicObject>::all_with(self.client.clone(), &resource)
            .list(&ListParams::default())
            .await
        {
            Ok(list) => list
                .items
                .into_iter()
                .filter_map(|item| serde_json::to_value(item).ok())
                .map(strip_noise)
                .map(|mut v| {
                    v["kind"] = kind.into();
                    v
                })
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    async fn build_snapshots(&self, name: &str) -> Result<TailnetSnapshots, BackendError> {
        let tailnet = Api::<Tailnet>::all(self.client.clone())
            .get_opt(name)
            .await
            .map_err(|e| BackendError::unavailable("reading the Tailnet", e))?
            .ok_or_else(|| {
                BackendError::NotFound(format!(
                    "Tailnet {name}: no such Tailnet resource; list_resources kind=Tailnet shows \
                     the tailnets"
                ))
            })?;
        let credentials = read_credentials(&tailnet, &self.client)
            .await
            .map_err(|e| BackendError::unavailable(&format!("Tailnet {name} credentials"), e))?;
        let config = ClientConfig::new(tailnet.spec.api_url.clone(), credentials)
            .with_tailnet(tailnet.spec.tailnet.clone());
        let client = TailscaleClient::new(config)
            .map_err(|e| BackendError::unavailable(&format!("Tailnet {name}"), e))?;
        Ok(self.own.insert(name, client, STANDALONE_RESYNC))
    }

    async fn create_proposal(
        &self,
        target: ResourceKey,
        patch: Value,
        summary: String,
    ) -> Result<ChangeProposal, BackendError> {
        let name_prefix = format!("{}-{}-", target.kind.to_lowercase(), target.name);
        let mut proposal = ChangeProposal::new(
            "",
            crate::resources::ChangeProposalSpec {
                target: ProposalTarget {
                    kind: target.kind,
                    name: target.name,
                    namespace: target.namespace,
                },
                patch,
                summary,
                ..Default::default()
            },
        );
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

/// generateName prefixes are capped so the generated name stays a DNS subdomain.
fn truncate_name(prefix: &str) -> String {
    let clean: String = prefix
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '-' })
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
            let mut all = self.typed::<Tailnet>().await?;
            all.extend(self.typed::<TailnetPolicy>().await?);
            for (kind, plural) in OTHER_KINDS {
                all.extend(self.dynamic(kind, plural).await);
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

    fn policy_resources(&self, tailnet: String) -> BackendResult<'_, Vec<PolicyResource>> {
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
            Ok(resolve_all(&self.client, &members).await)
        })
    }

    fn proposals(&self) -> BackendResult<'_, ProposalList> {
        Box::pin(async move {
            let list = Api::<ChangeProposal>::namespaced(self.client.clone(), &self.proposal_namespace)
                .list(&ListParams::default())
                .await
                .map_err(|e| BackendError::unavailable("listing ChangeProposals", e))?;
            Ok(ProposalList {
                proposals: list.items.iter().map(proposal_info).collect(),
            })
        })
    }

    fn propose_patch(&self, request: ProposeRequest) -> BackendResult<'_, ProposalCreated> {
        Box::pin(async move {
            let _ = (&request, Self::create_proposal);
            Err(BackendError::Unsupported(
                "proposals need the ChangeProposal validation library".to_owned(),
            ))
        })
    }

    fn adopt_drift(&self, request: AdoptDriftRequest) -> BackendResult<'_, ProposalCreated> {
        Box::pin(async move {
            let _ = &request;
            Err(BackendError::Unsupported(
                "proposals need the ChangeProposal validation library".to_owned(),
            ))
        })
    }
}

