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
    Resource<DynamicType = ()>
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

    /// The status as last written (normalized), or the empty status.
    fn current_status(&self) -> <Self as TailnetScoped>::Status {
        self.status().cloned().unwrap_or_default().normalized()
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

            $(fn normalized(self) -> Self {
                <$status>::$normalized(self)
            })?
        }
    };
}
pub(crate) use tailnet_scoped_kind;
