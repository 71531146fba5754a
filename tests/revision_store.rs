//! The ConfigMap revision store against the fake Kubernetes API server: one ConfigMap per
//! tailnet in the operator's namespace, one key per revision, pruned to the history limit.
mod support;

use std::collections::BTreeMap;

use chrono::Utc;
use k8s_openapi::api::core::v1::ConfigMap;
use support::fake_kube::FakeKube;
use tailnet_operator::reconcile::tailnet_policy::{
    ApplyReason, ConfigMapRevisionStore, Revision, RevisionStore, policy_hash,
};
use tailnet_operator::resources::tailnet_policy::AccessDiffSummary;

fn revision(number: u32) -> Revision {
    let text = format!("// revision {number}\n{{\"groups\": {{}}}}\n");
    Revision {
        number,
        hash: policy_hash(&text),
        time: Utc::now(),
        sources: BTreeMap::from([("TailnetPolicy/base".to_owned(), i64::from(number))]),
        access_diff: AccessDiffSummary {
            gained: u64::from(number),
            ..AccessDiffSummary::default()
        },
        reason: ApplyReason::SpecChanged,
        text,
        rejected_hash: None,
        source_texts: BTreeMap::new(),
    }
}

#[tokio::test]
async fn revisions_live_in_one_config_map_per_tailnet_pruned_to_the_limit() {
    let kube = FakeKube::new();
    let store = ConfigMapRevisionStore::new(kube.client(), "tailnet-operator", "default");
    assert!(
        store.list().await.unwrap().is_empty(),
        "no ConfigMap yet: no history"
    );
    for n in 1..=4 {
        store.append(revision(n), 3).await.unwrap();
    }
    let kept = store.list().await.unwrap();
    assert_eq!(
        kept.iter().map(|r| r.number).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    // The time went through JSON (RFC 3339); everything else round-trips exactly.
    let expected = Revision {
        time: kept[2].time,
        ..revision(4)
    };
    assert_eq!(kept[2], expected);
    assert_eq!(store.get(3).await.unwrap().unwrap().number, 3);

    let map: ConfigMap = kube
        .get_as(Some("tailnet-operator"), "tailnet-operator-history-default")
        .expect("the history ConfigMap exists");
    let keys: Vec<String> = map.data.unwrap().into_keys().collect();
    assert_eq!(keys, vec!["revision-2", "revision-3", "revision-4"]);

    // Another tailnet has its own history.
    let other = ConfigMapRevisionStore::new(kube.client(), "tailnet-operator", "staging");
    assert!(other.list().await.unwrap().is_empty());
}
