//! The HTTP face of the fake: routing a request to the store and encoding the answer.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::fields::Writer;
use super::path::{Query, Target, parse_path};
use super::selector::{FieldSelector, LabelSelector, Selectors};
use super::store::{Deleted, Key, Ownership, Store, WriteOpts};
use super::watch::{self, WatchSpec};
use super::{ApiStatus, FakeBody, FakeKube, Gvr, now, status};

enum Reply {
    Json(StatusCode, Value),
    Stream(Pin<Box<dyn futures::Stream<Item = Bytes> + Send>>),
}

type Handled = Result<Reply, ApiStatus>;

impl FakeKube {
    async fn handle(self, req: Request<kube::client::Body>) -> Response<FakeBody> {
        let (parts, body) = req.into_parts();
        let body = match body.collect_bytes().await {
            Ok(bytes) => bytes,
            Err(e) => {
                return status_response(&ApiStatus::bad_request(format!(
                    "unreadable request body: {e}"
                )));
            }
        };
        self.shared
            .lock()
            .request_log
            .push(format!("{} {}", parts.method, parts.uri));
        if parts.uri.path() == "/version" {
            return json_response(StatusCode::OK, &version_info());
        }
        let query = Query::parse(parts.uri.query());
        let target = match parse_path(parts.uri.path()) {
            Ok(target) => target,
            Err(status) => return status_response(&status),
        };
        let verb = verb_of(&parts.method, &target, &query);
        let label = format!("{verb} {}", target.resource_label());
        {
            let mut store = self.shared.lock();
            *store.request_counts.entry(label.clone()).or_default() += 1;
            if let Some(left) = store.refusals.get_mut(&label).filter(|left| **left > 0) {
                *left -= 1;
                return status_response(&ApiStatus::new(
                    403,
                    "Forbidden",
                    format!("{label} refused (injected by the test)"),
                ));
            }
        }
        let request = Incoming {
            target,
            query,
            headers: parts.headers,
            body,
        };
        let reply = match verb {
            "get" => self.get_one(&request),
            "list" => self.list_objects(&request),
            "watch" => self.watch(&request),
            "create" => self.create_object(&request),
            "update" => self.replace(&request),
            "patch" => self.patch(&request),
            "delete" => self.delete_object(&request),
            "deletecollection" => self.delete_collection(&request),
            _ => Err(ApiStatus::method_not_allowed(
                parts.method.as_str(),
                parts.uri.path(),
            )),
        };
        match reply {
            Ok(Reply::Json(code, value)) => json_response(code, &value),
            Ok(Reply::Stream(stream)) => stream_response(stream),
            Err(status) => status_response(&status),
        }
    }

    fn get_one(&self, req: &Incoming) -> Handled {
        let key = req.key()?;
        if let Some(sub) = req.target.subresource.as_deref().filter(|s| *s != "status") {
            return Err(ApiStatus::not_found(
                &req.target.gvr,
                &format!("{}/{sub}", key.2),
            ));
        }
        let store = self.shared.lock();
        if req.target.subresource.is_some() && !store.has_status_subresource(&key.0) {
            return Err(ApiStatus::not_found(&key.0, &format!("{}/status", key.2)));
        }
        Ok(Reply::Json(StatusCode::OK, store.get(&key)?))
    }

    fn list_objects(&self, req: &Incoming) -> Handled {
        let selectors = req.selectors()?;
        let store = self.shared.lock();
        if req.query.get("resourceVersionMatch") == Some("Exact") {
            let wanted = req.resource_version()?.unwrap_or(0);
            if wanted != store.rv {
                // Only the latest state is kept; older snapshots are compacted away.
                return Err(ApiStatus::expired(wanted, store.rv));
            }
        }
        let continue_from = req.query.get("continue").map(parse_continue).transpose()?;
        let gvr = &req.target.gvr;
        let matching: Vec<(&Key, &Value)> = store
            .select(gvr, req.target.namespace.as_deref())
            .filter(|(k, _)| {
                continue_from
                    .as_ref()
                    .is_none_or(|(_, ns, name)| (&k.1, &k.2) > (ns, name))
            })
            .filter(|(_, v)| selectors.matches(v))
            .collect();
        let limit = req
            .query
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0);
        let page_len = limit.unwrap_or(matching.len()).min(matching.len());
        let list_rv = continue_from.as_ref().map_or(store.rv, |(rv, _, _)| *rv);
        let mut metadata = json!({"resourceVersion": list_rv.to_string()});
        if page_len < matching.len() {
            let (last, _) = matching[page_len - 1];
            metadata["continue"] = json!(format!("{list_rv}|{}|{}", last.1, last.2));
            metadata["remainingItemCount"] = json!(matching.len() - page_len);
        }
        let kind = store
            .kind_of(gvr)
            .map_or_else(|| "List".to_string(), |k| format!("{k}List"));
        let items: Vec<Value> = matching[..page_len]
            .iter()
            .map(|(_, v)| (*v).clone())
            .collect();
        Ok(Reply::Json(
            StatusCode::OK,
            json!({"apiVersion": gvr.api_version(), "kind": kind, "metadata": metadata, "items": items}),
        ))
    }

    fn watch(&self, req: &Incoming) -> Handled {
        let spec = WatchSpec {
            gvr: req.target.gvr.clone(),
            namespace: req.target.namespace.clone(),
            selectors: req.selectors()?,
            resource_version: req.resource_version()?.filter(|rv| *rv != 0),
            send_initial_events: req.query.flag("sendInitialEvents"),
            bookmarks: req.query.flag("allowWatchBookmarks"),
            timeout: Duration::from_secs(
                req.query
                    .get("timeoutSeconds")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(1800),
            ),
        };
        Ok(Reply::Stream(Box::pin(watch::open(
            self.shared.clone(),
            spec,
        ))))
    }

    fn create_object(&self, req: &Incoming) -> Handled {
        if req.target.name.is_some() {
            return Err(ApiStatus::method_not_allowed(
                "POST",
                &req.target.resource_label(),
            ));
        }
        let body = req.json_body()?;
        let created = self.shared.lock().create(
            &req.target.gvr,
            req.target.namespace.as_deref(),
            body,
            &req.write_opts(None),
        )?;
        Ok(Reply::Json(StatusCode::CREATED, created))
    }

    fn replace(&self, req: &Incoming) -> Handled {
        let key = req.key()?;
        let body = req.json_body()?;
        let precondition = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        if precondition.is_none() && !key.0.group.is_empty() {
            // Custom resources do not allow unconditional updates.
            return Err(ApiStatus::invalid(
                &key.0,
                &key.2,
                "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
            ));
        }
        let opts = req.write_opts(req.target.subresource.clone());
        let mut store = self.shared.lock();
        self.check_subresource(&store, req)?;
        let updated = store.update(
            &key,
            precondition.as_deref(),
            &opts,
            Ownership::Update,
            |_| Ok(body),
        )?;
        Ok(Reply::Json(StatusCode::OK, updated))
    }

    fn patch(&self, req: &Incoming) -> Handled {
        let key = req.key()?;
        let content_type = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let opts = req.write_opts(req.target.subresource.clone());
        let mut store = self.shared.lock();
        self.check_subresource(&store, req)?;
        let (gvr, name) = (key.0.clone(), key.2.clone());
        let patched = match content_type.as_str() {
            "application/json-patch+json" => {
                let patch: json_patch::Patch = serde_json::from_slice(&req.body)
                    .map_err(|e| ApiStatus::bad_request(format!("invalid JSON patch: {e}")))?;
                store.update(&key, None, &opts, Ownership::Update, |old| {
                    apply_json_patch(old, &patch, &gvr, &name)
                })?
            }
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                let patch = req.json_body()?;
                let precondition = patch
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                store.update(
                    &key,
                    precondition.as_deref(),
                    &opts,
                    Ownership::Update,
                    |old| {
                        let mut new = old.clone();
                        json_patch::merge(&mut new, &patch);
                        Ok(new)
                    },
                )?
            }
            "application/apply-patch+yaml" => {
                if req.query.get("fieldManager").is_none() {
                    return Err(ApiStatus::invalid(
                        &gvr,
                        &name,
                        "fieldManager: Required value: is required for apply patch",
                    ));
                }
                let config = req.apply_body()?;
                let existed = store.objects.contains_key(&key);
                let applied = store.apply(&key, config, req.query.flag("force"), &opts)?;
                let code = if existed {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                };
                return Ok(Reply::Json(code, applied));
            }
            other => {
                return Err(ApiStatus::new(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format ({other:?}); accepted: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
                    ),
                ));
            }
        };
        Ok(Reply::Json(StatusCode::OK, patched))
    }

    fn delete_object(&self, req: &Incoming) -> Handled {
        let key = req.key()?;
        if req.target.subresource.is_some() {
            return Err(ApiStatus::method_not_allowed(
                "DELETE",
                &req.target.resource_label(),
            ));
        }
        let options = req.delete_options()?;
        let dry_run = req.dry_run()
            || options
                .get("dryRun")
                .is_some_and(|d| d.to_string().contains("All"));
        let preconditions = options.get("preconditions").cloned().unwrap_or(Value::Null);
        match self
            .shared
            .lock()
            .delete(&key, &preconditions, dry_run, &now())?
        {
            Deleted::Pending(object) => Ok(Reply::Json(StatusCode::OK, object)),
            Deleted::Removed(object) => {
                let uid = object
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                Ok(Reply::Json(
                    StatusCode::OK,
                    status::success_json(&key.0, &key.2, uid),
                ))
            }
        }
    }

    fn delete_collection(&self, req: &Incoming) -> Handled {
        let selectors = req.selectors()?;
        let dry_run = req.dry_run();
        let mut store = self.shared.lock();
        let keys: Vec<Key> = store
            .select(&req.target.gvr, req.target.namespace.as_deref())
            .filter(|(_, v)| selectors.matches(v))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &keys {
            store.delete(key, &Value::Null, dry_run, &now())?;
        }
        Ok(Reply::Json(
            StatusCode::OK,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
        ))
    }

    fn check_subresource(&self, store: &Store, req: &Incoming) -> Result<(), ApiStatus> {
        match req.target.subresource.as_deref() {
            None => Ok(()),
            Some("status") if store.has_status_subresource(&req.target.gvr) => Ok(()),
            Some(sub) => Err(ApiStatus::not_found(
                &req.target.gvr,
                &format!("{}/{sub}", req.target.name.as_deref().unwrap_or_default()),
            )),
        }
    }
}

impl tower::Service<Request<kube::client::Body>> for FakeKube {
    type Response = Response<FakeBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<kube::client::Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}

/// A request, parsed.
struct Incoming {
    target: Target,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
}

impl Incoming {
    fn key(&self) -> Result<Key, ApiStatus> {
        self.target.key().ok_or_else(|| {
            ApiStatus::bad_request(format!(
                "this request needs an object name: /{}/<name>",
                self.target.resource_label()
            ))
        })
    }

    fn json_body(&self) -> Result<Value, ApiStatus> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiStatus::bad_request(format!("the request body is not JSON: {e}")))
    }

    /// Apply bodies are YAML by media type; kube sends JSON, which is also YAML.
    fn apply_body(&self) -> Result<Value, ApiStatus> {
        serde_json::from_slice(&self.body).or_else(|_| {
            let text = std::str::from_utf8(&self.body)
                .map_err(|e| ApiStatus::bad_request(format!("apply body is not UTF-8: {e}")))?;
            serde_saphyr::from_str::<Value>(text).map_err(|e| {
                ApiStatus::bad_request(format!("apply body is neither JSON nor YAML: {e}"))
            })
        })
    }

    fn delete_options(&self) -> Result<Value, ApiStatus> {
        if self.body.is_empty() {
            Ok(Value::Null)
        } else {
            self.json_body()
        }
    }

    fn selectors(&self) -> Result<Selectors, ApiStatus> {
        Ok(Selectors {
            labels: self
                .query
                .get("labelSelector")
                .map(LabelSelector::parse)
                .transpose()?
                .unwrap_or_default(),
            fields: self
                .query
                .get("fieldSelector")
                .map(FieldSelector::parse)
                .transpose()?
                .unwrap_or_default(),
        })
    }

    fn resource_version(&self) -> Result<Option<u64>, ApiStatus> {
        self.query
            .get("resourceVersion")
            .map(|rv| {
                rv.parse::<u64>().map_err(|_| {
                    ApiStatus::bad_request(format!(
                        "invalid resourceVersion {rv:?}: this fake uses integers"
                    ))
                })
            })
            .transpose()
    }

    fn dry_run(&self) -> bool {
        self.query.get("dryRun") == Some("All")
    }

    fn write_opts(&self, subresource: Option<String>) -> WriteOpts {
        let manager = self
            .query
            .get("fieldManager")
            .map(str::to_string)
            .or_else(|| {
                // The apiserver names an unnamed manager after the client's user agent.
                let agent = self.headers.get(http::header::USER_AGENT)?.to_str().ok()?;
                Some(agent.split('/').next()?.to_string()).filter(|a| !a.is_empty())
            })
            .unwrap_or_else(|| "unknown".to_string());
        WriteOpts {
            writer: Writer {
                manager,
                subresource,
                now: now(),
            },
            dry_run: self.dry_run(),
        }
    }
}

fn verb_of(method: &Method, target: &Target, query: &Query) -> &'static str {
    match (method.as_str(), target.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if query.flag("watch") => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unsupported",
    }
}

/// JSON patch, op by op, with the apiserver's leniency: `test` for `null` at a missing path
/// succeeds (kube's finalizer helper relies on it).
fn apply_json_patch(
    old: &Value,
    patch: &json_patch::Patch,
    gvr: &Gvr,
    name: &str,
) -> Result<Value, ApiStatus> {
    let mut doc = old.clone();
    for op in &patch.0 {
        if let json_patch::PatchOperation::Test(test) = op
            && test.value.is_null()
            && doc.pointer(test.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(&mut doc, std::slice::from_ref(op)).map_err(|e| {
            ApiStatus::invalid(
                gvr,
                name,
                format!("the JSON patch could not be applied: {e}"),
            )
        })?;
    }
    Ok(doc)
}

/// `rv|namespace|name` of the last item of the previous page.
fn parse_continue(token: &str) -> Result<(u64, String, String), ApiStatus> {
    let mut parts = token.splitn(3, '|');
    match (
        parts.next().and_then(|rv| rv.parse().ok()),
        parts.next(),
        parts.next(),
    ) {
        (Some(rv), Some(ns), Some(name)) => Ok((rv, ns.to_string(), name.to_string())),
        _ => Err(ApiStatus::bad_request(format!(
            "invalid continue token {token:?}"
        ))),
    }
}

fn version_info() -> Value {
    json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0-fake", "platform": "linux/amd64"})
}

fn json_response(code: StatusCode, value: &Value) -> Response<FakeBody> {
    let bytes = Bytes::from(serde_json::to_vec(value).expect("JSON values serialize"));
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(FakeBody::from(bytes))
        .expect("static response parts are valid")
}

fn status_response(status: &ApiStatus) -> Response<FakeBody> {
    let code = StatusCode::from_u16(status.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &status.to_json())
}

fn stream_response(
    stream: Pin<Box<dyn futures::Stream<Item = Bytes> + Send>>,
) -> Response<FakeBody> {
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(FakeBody::from_stream(stream.map(Ok::<_, Infallible>)))
        .expect("static response parts are valid")
}
