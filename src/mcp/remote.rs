//! The sidecar's backend: a thin HTTP client of the operator's loopback API
//! ([`super::loopback`]). It holds no Kubernetes or Tailscale credentials; everything it can
//! do is what the loopback API offers.
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::backend::*;
use super::loopback::method;

pub struct RemoteBackend {
    base: String,
    http: reqwest::Client,
}

impl RemoteBackend {
    /// `base` is the operator's loopback URL, e.g. `http://127.0.0.1:8081`.
    pub fn new(base: &str) -> Result<RemoteBackend, BackendError> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| BackendError::unavailable("building the HTTP client", e))?;
        Ok(RemoteBackend {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    async fn call<A: Serialize, T: DeserializeOwned>(
        &self,
        name: &str,
        args: &A,
    ) -> Result<T, BackendError> {
        let url = format!("{}/v1/{name}", self.base);
        let unavailable = |e: reqwest::Error| {
            BackendError::Unavailable(format!(
                "the operator's loopback API at {} ({name}): {e}; is the operator running with \
                 --loopback-listen, and --operator-url right?",
                self.base
            ))
        };
        let response = self
            .http
            .post(&url)
            .json(args)
            .send()
            .await
            .map_err(unavailable)?;
        let ok = response.status().is_success();
        let bytes = response.bytes().await.map_err(unavailable)?;
        if ok {
            serde_json::from_slice(&bytes).map_err(|e| {
                BackendError::Unavailable(format!("unexpected answer from {url}: {e}"))
            })
        } else {
            Err(
                serde_json::from_slice::<BackendError>(&bytes).unwrap_or_else(|_| {
                    BackendError::Unavailable(format!(
                        "{url}: {}",
                        String::from_utf8_lossy(&bytes)
                            .chars()
                            .take(300)
                            .collect::<String>()
                    ))
                }),
            )
        }
    }
}

impl Backend for RemoteBackend {
    fn describe(&self) -> String {
        format!("operator loopback API at {}", self.base)
    }

    fn overview(&self) -> BackendResult<'_, Overview> {
        Box::pin(self.call(method::OVERVIEW, &()))
    }

    fn list_resources(&self, query: ResourceQuery) -> BackendResult<'_, ResourceList> {
        Box::pin(async move { self.call(method::LIST_RESOURCES, &query).await })
    }

    fn get_resource(&self, key: ResourceKey) -> BackendResult<'_, ResourceDetail> {
        Box::pin(async move { self.call(method::GET_RESOURCE, &key).await })
    }

    fn policy(&self, query: TailnetQuery) -> BackendResult<'_, PolicyViews> {
        Box::pin(async move { self.call(method::POLICY, &query).await })
    }

    fn check_access(&self, query: AccessQuery) -> BackendResult<'_, AccessAnswer> {
        Box::pin(async move { self.call(method::CHECK_ACCESS, &query).await })
    }

    fn devices(&self, filter: DeviceFilter) -> BackendResult<'_, DeviceList> {
        Box::pin(async move { self.call(method::DEVICES, &filter).await })
    }

    fn device_audit(&self, query: AuditQuery) -> BackendResult<'_, AuditView> {
        Box::pin(async move { self.call(method::DEVICE_AUDIT, &query).await })
    }

    fn auth_keys(&self, query: TailnetQuery) -> BackendResult<'_, KeyList> {
        Box::pin(async move { self.call(method::AUTH_KEYS, &query).await })
    }

    fn network_report(&self, query: TailnetQuery) -> BackendResult<'_, crate::report::Report> {
        Box::pin(async move { self.call(method::NETWORK_REPORT, &query).await })
    }

    fn proposals(&self) -> BackendResult<'_, ProposalList> {
        Box::pin(self.call(method::PROPOSALS, &()))
    }

    fn propose_change(&self, request: ChangeRequest) -> BackendResult<'_, ProposalCreated> {
        Box::pin(async move { self.call(method::PROPOSE_CHANGE, &request).await })
    }

    fn adopt_drift(&self, request: AdoptDriftRequest) -> BackendResult<'_, ProposalCreated> {
        Box::pin(async move { self.call(method::ADOPT_DRIFT, &request).await })
    }
}
