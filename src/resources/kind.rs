//! What every tailnet-scoped kind is, to the code that treats kinds alike (the controller
//! skeleton, file mode, the MCP listing): an object with the common controls in its spec
//! ([`TailnetScoped`]) and the common conditions in its status ([`KindStatus`]).
//!
//! A kind implements both in its own module, in a few one-line methods; everything generic
//! (finalizers, the "tailnet not Ready" guard, failure status, drift gauges, events) is written
//! once against these traits.
use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use kube::core::object::HasStatus;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::common::{CommonSpec, CommonStatus, DeletionDefault};
use super::conditions::{ConditionStatus, ConditionType, set_condition};
use super::drift::DriftDiff;

/// A custom resource that belongs to one tailnet through `spec.tailnetRef` and carries the
/// common controls (`driftPolicy`, `suspend`, `deletionPolicy`).
pub trait TailnetScoped:
    Resource<DynamicType = (), Scope: ApiScope>
    + HasStatus<Status = <Self as TailnetScoped>::Status>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The kind's `deletionPolicy` default.
    type Deletion: DeletionDefault;
    /// The kind's status type.
    type Status: KindStatus;

    /// The common controls flattened into the spec.
    fn common(&self) -> &CommonSpec<Self::Deletion>;

    /// The `ManagedTailnet` this resource belongs to.
    fn tailnet_ref(&self) -> &str {
        &self.common().tailnet_ref
    }

    /// The API to write this object through: in its namespace for a namespaced kind (writes
    /// need it), cluster-wide otherwise.
    fn api(&self, client: kube::Client) -> kube::Api<Self> {
        <Self::Scope as ApiScope>::api(client, self.meta().namespace.as_deref())
    }

    /// The status as last written (normalized), or the empty status.
    fn current_status(&self) -> <Self as TailnetScoped>::Status {
        self.status().cloned().unwrap_or_default().normalized()
    }
}

/// How a kind's scope addresses one object's API, so generic code can write namespaced and
/// cluster-scoped kinds alike.
pub trait ApiScope {
    fn api<K>(client: kube::Client, namespace: Option<&str>) -> kube::Api<K>
    where
        K: Resource<DynamicType = (), Scope = Self>;
}

impl ApiScope for k8s_openapi::NamespaceResourceScope {
    fn api<K>(client: kube::Client, namespace: Option<&str>) -> kube::Api<K>
    where
        K: Resource<DynamicType = (), Scope = Self>,
    {
        match namespace {
            Some(namespace) => kube::Api::namespaced(client, namespace),
            None => kube::Api::all(client),
        }
    }
}

impl ApiScope for k8s_openapi::ClusterResourceScope {
    fn api<K>(client: kube::Client, _namespace: Option<&str>) -> kube::Api<K>
    where
        K: Resource<DynamicType = (), Scope = Self>,
    {
        kube::Api::all(client)
    }
}

/// A kind's status: its own fields around the flattened [`CommonStatus`] and a drift diff.
pub trait KindStatus:
    Serialize + DeserializeOwned + Clone + Default + PartialEq + Debug + Send + Sync + 'static
{
    fn common(&self) -> &CommonStatus;
    fn common_mut(&mut self) -> &mut CommonStatus;
    /// The structured drift diff last recorded, if any.
    fn drift(&self) -> Option<&DriftDiff>;
    fn drift_mut(&mut self) -> Option<&mut DriftDiff>;

    /// Reads away what server-side apply leaves behind (empty objects for dropped fields).
    fn normalized(self) -> Self {
        self
    }

    /// `Ready=False` and `Synced=False` with `why` and `message` for `generation`; the rest of
    /// the status (the kind's fields, `Drifted`, `lastSyncTime`) stays as last written.
    fn record_failure(&mut self, why: &str, message: &str, generation: Option<i64>, now: &Time) {
        let common = self.common_mut();
        for type_ in [ConditionType::Ready, ConditionType::Synced] {
            set_condition(
                &mut common.conditions,
                type_,
                ConditionStatus::False,
                why,
                message,
                generation,
                now,
            );
        }
        common.observed_generation = generation;
    }
}

/// Implements [`TailnetScoped`] and [`KindStatus`] for a kind whose spec flattens `common`
/// and whose status flattens `common` beside a `drift` diff (every tailnet-scoped kind):
/// `tailnet_scoped_kind!(Kind, KindStatus, DeletionDefault)`, with `, normalized` when the
/// status has an inherent `normalized(self)`.
macro_rules! tailnet_scoped_kind {
    ($kind:ty, $status:ty, $deletion:ident $(, $normalized:ident)?) => {
        impl $crate::resources::TailnetScoped for $kind {
            type Deletion = $crate::resources::common::$deletion;
            type Status = $status;

            fn common(&self) -> &$crate::resources::CommonSpec<Self::Deletion> {
                &self.spec.common
            }
        }

        impl $crate::resources::KindStatus for $status {
            fn common(&self) -> &$crate::resources::CommonStatus {
                &self.common
            }

            fn common_mut(&mut self) -> &mut $crate::resources::CommonStatus {
                &mut self.common
            }

            fn drift(&self) -> Option<&$crate::resources::DriftDiff> {
                self.drift.as_ref()
            }

            fn drift_mut(&mut self) -> Option<&mut $crate::resources::DriftDiff> {
                self.drift.as_mut()
            }

            $(fn normalized(self) -> Self {
                <$status>::$normalized(self)
            })?
        }
    };
}
pub(crate) use tailnet_scoped_kind;

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};

    /// A client that is never called: building an `Api` makes no request.
    fn client() -> kube::Client {
        let service = tower::service_fn(|_: http::Request<kube::client::Body>| async {
            Err::<http::Response<kube::client::Body>, std::io::Error>(std::io::Error::other(
                "no server",
            ))
        });
        kube::Client::new(service, "default")
    }

    #[tokio::test]
    async fn namespaced_objects_are_written_in_their_namespace_cluster_ones_cluster_wide() {
        let in_ns = <ConfigMap as Resource>::Scope::api::<ConfigMap>(client(), Some("ops"));
        assert_eq!(in_ns.namespace(), Some("ops"));
        assert_eq!(in_ns.resource_url(), "/api/v1/namespaces/ops/configmaps");
        let cluster = <Namespace as Resource>::Scope::api::<Namespace>(client(), Some("ops"));
        assert_eq!(cluster.namespace(), None);
        assert_eq!(cluster.resource_url(), "/api/v1/namespaces");
    }
}
