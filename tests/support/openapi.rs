//! Contract checks against Tailscale's published OpenAPI 3.1 document.
//!
//! The simulated tailnet's responses and the API client's request bodies are validated against
//! the operation's schema in `tailscale-openapi.json` (JSON Schema 2020-12, `$ref`s resolved
//! through the whole document). The document is read from
//! `$CARGO_MANIFEST_DIR/../shared/reference/tailscale-openapi.json`, or from the path in the
//! `TAILSCALE_OPENAPI` environment variable; it is never copied into the repository. When it is
//! absent, [`OpenApiSpec::shared`] / [`OpenApiSpec::load`] print `skipping: ...` and return
//! `None`, and the calling test returns early (passes).
//!
//! ```ignore
//! let Some(spec) = OpenApiSpec::shared() else { return };
//! spec.validate_response("GET", "/api/v2/tailnet/-/devices?fields=all", 200,
//!     Some("application/json"), Some(&body))?;
//! spec.validate_request("POST", "/api/v2/device/n1/tags", Some("application/json"),
//!     &json!({"tags": ["tag:web"]}))?;
//! ```
//!
//! # Decisions (what "conforms" means here)
//!
//! * **Dialect.** Schemas are JSON Schema 2020-12, which is what OpenAPI 3.1's default dialect
//!   builds on. OpenAPI-only keywords (`example`, `discriminator`, `xml`, `externalDocs`,
//!   `x-*`) are unknown keywords to 2020-12 and are ignored as annotations. `readOnly` /
//!   `writeOnly` are annotations too (not asserted).
//! * **Formats.** `date-time` IS asserted: RFC 3339, or the empty string. The empty string is
//!   allowed because the spec itself says `Device.created` "is empty for external devices" and
//!   the real API returns `""` for some timestamps (reference §3.2); anything else that is not
//!   RFC 3339 (e.g. `2024-01-01 00:00:00 UTC`) is a violation, because the client decodes these
//!   as `DateTime<Utc>`. `uri` is NOT asserted (we have no evidence of what the API sends for
//!   unset links). OpenAPI's own formats (`int64`, `float`, `password`) are not JSON Schema
//!   formats and are ignored.
//! * **Status codes.** The response for the exact status is used, else a `2XX`-style range,
//!   else `default`. A status the operation does not declare is a violation, except the
//!   *generic error rule*: any status >= 400 (401 for a bad token, 429 from rate limiting, 404
//!   from deleting a missing device, 5xx faults...) is accepted if its body is JSON matching
//!   `#/components/schemas/Error`, i.e. `{"message": string}`: the API's universal error shape
//!   (reference §2), which the spec cannot list on every operation. Undeclared 1xx-3xx statuses
//!   are always violations.
//! * **Bodies.** A body where the spec declares no content is a violation (even `{}`); an empty
//!   body where none is declared is fine. A missing body where the spec declares content is a
//!   violation for responses, and for requests whose `requestBody.required` is true. `None` and
//!   the empty string both count as "no body".
//! * **Media types.** `Content-Type` parameters (`; charset=utf-8`) are ignored. Without a
//!   content type, `application/json` is assumed when declared (else the only declared type).
//!   An undeclared content type is a violation. JSON media types (`application/json`,
//!   `*+json`) take the parsed body. Any other media type takes the raw text as a
//!   `Value::String` and is validated against its schema (the policy file's
//!   `application/hujson` schema is `{"type": "string"}`); `application/hujson` text must also
//!   parse as HuJSON (JSON with comments and trailing commas).
//! * **Undeclared properties.** The spec never says `additionalProperties: false`, so plain
//!   JSON Schema would accept `{"devcies": [...]}` for a device list. This module also reports
//!   every object member that no schema on its path declares (keyword `undeclaredProperty`),
//!   unless that object's schema is free-form (`{"type": "object"}`, `additionalProperties`
//!   maps) or is the `Error` schema (error bodies carry extra members such as the policy-test
//!   `data`; reference §2). Note the converse: the spec declares almost no `required` fields,
//!   so omissions are mostly not detectable.
//! * **Known spec deviations.** [`KNOWN_DEVIATIONS`] is a short, explicit list of places where
//!   the spec's own text contradicts its schema. A violation is tolerated only if it matches an
//!   entry exactly (keyword location + keyword + instance pointer + instance condition), and
//!   tolerated violations are still reported in [`Validated::tolerated`].
//! * **Outside the spec.** The OAuth token endpoints and the simulator's `/sim/...` admin API
//!   are not in the document: validating them yields [`ContractError::OutsideSpec`] (see
//!   [`ContractError::is_outside_spec`]) so a caller iterating over recorded exchanges can skip
//!   them explicitly. Query parameters and headers are not validated.
//! * **Secrets.** Violation messages never contain auth keys or other secrets: strings starting
//!   with `tskey-` and members named like secrets are replaced by `<redacted>`.

// Each test binary uses a different subset of this module.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use jsonschema::{Draft, Registry, Validator};
use serde_json::{Map, Value, json};

/// Environment variable that overrides where the OpenAPI document is read from.
pub const SPEC_ENV: &str = "TAILSCALE_OPENAPI";

/// Default location of the OpenAPI document (outside the repository, never copied into it).
pub const DEFAULT_SPEC_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/reference/tailscale-openapi.json"
);

/// Base URI the whole document is registered under, so that `$ref`s such as
/// `#/components/schemas/Device` resolve inside it. Nothing is ever fetched from it.
const BASE_URI: &str = "https://api.tailscale.com/api/v2/openapi.json";

/// Fallback error schema for documents without `#/components/schemas/Error`.
const FALLBACK_ERROR_URI: &str = "https://tailnet-operator.invalid/contract/error.json";

/// The API's path prefix; the document's paths are relative to it.
const API_PREFIX: &str = "/api/v2";

/// Schemas whose objects may carry members the schema does not declare.
const OPEN_SCHEMAS: &[&str] = &["#/components/schemas/Error"];

const HTTP_METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Paths the project serves or calls that the OpenAPI document does not describe.
/// `(normalized path or prefix ending in '/', reason)`.
const OUTSIDE_SPEC: &[(&str, &str)] = &[
    (
        "/oauth/token",
        "OAuth client-credentials token endpoint: documented in KB 1215, not in the OpenAPI document",
    ),
    (
        "/oauth/token-exchange",
        "federated-identity token exchange: documented in KB, not in the OpenAPI document",
    ),
    (
        "/sim/",
        "simulated tailnet's admin API (console edits, faults): not part of the Tailscale API",
    ),
];

/// A condition on the offending value for a [`KnownDeviation`] to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Whatever the value is.
    Always,
    /// The value has this JSON type: `"object"`, `"array"`, `"string"`, `"number"`,
    /// `"boolean"` or `"null"`.
    InstanceIs(&'static str),
    /// The value equals this JSON text, e.g. `"\"\""` for the empty string.
    InstanceEquals(&'static str),
}

/// A place where the spec's own text contradicts its schema (or, marked as such, a field
/// Tailscale's own clients rely on that the schema leaves out), and the validator tolerates
/// the violation the schema would report. Keep this list short and justified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownDeviation {
    /// `"METHOD /templated/path"` the deviation applies to, or `"*"` for every operation
    /// reaching the schema location.
    pub operation: &'static str,
    /// Location in the document of the failing keyword (or, for body presence, of the
    /// `content` map), as a URI fragment: `#/components/schemas/...`.
    pub keyword_location: &'static str,
    /// The failing keyword (`enum`, `oneOf`, ...) or `body` for a missing/unexpected body.
    pub keyword: &'static str,
    /// JSON pointer of the offending value in the body, or `None` for anywhere.
    /// A `*` segment matches any single segment (e.g. an array index).
    pub instance_pointer: Option<&'static str>,
    /// Condition on the offending value.
    pub when: When,
    /// Why this is tolerated: the spec text that contradicts the schema.
    pub reason: &'static str,
}

/// Spec deviations the validator tolerates. Each one is verified from the spec's own text.
pub const KNOWN_DEVIATIONS: &[KnownDeviation] = &[
    KnownDeviation {
        operation: "POST /tailnet/{tailnet}/acl/validate",
        keyword_location: "#/paths/~1tailnet~1{tailnet}~1acl~1validate/post/requestBody/content/application~1json/schema/oneOf",
        keyword: "oneOf",
        instance_pointer: Some(""),
        when: When::InstanceIs("object"),
        reason: "the operation's description says a JSON object body is validated as a \
                 hypothetical policy file, but its application/json schema only allows an \
                 array of tests or a string",
    },
    KnownDeviation {
        operation: "POST /tailnet/{tailnet}/acl/validate",
        keyword_location: "#/paths/~1tailnet~1{tailnet}~1acl~1validate/post/responses/200/content",
        keyword: "body",
        instance_pointer: Some(""),
        when: When::Always,
        reason: "the 200 response's description says \"An empty response body implies passing \
                 validation or tests\"",
    },
    KnownDeviation {
        operation: "*",
        keyword_location: "#/components/schemas/Webhook/properties/providerType/enum",
        keyword: "enum",
        instance_pointer: None,
        when: When::InstanceEquals("\"\""),
        reason: "Webhook.providerType's description says it is \"an empty string if none are \
                 applicable\", but its enum omits \"\" (requests must omit the field instead)",
    },
    // Not from the spec's text: a field Tailscale's own clients depend on (reference §7).
    KnownDeviation {
        operation: "*",
        keyword_location: "#/components/schemas/VIPServiceInfo/properties",
        keyword: "undeclaredProperty",
        instance_pointer: Some("/vipServices/*/annotations"),
        when: When::InstanceIs("object"),
        reason: SERVICE_ANNOTATIONS,
    },
    KnownDeviation {
        operation: "*",
        keyword_location: "#/components/schemas/VIPServiceInfo/properties",
        keyword: "undeclaredProperty",
        instance_pointer: Some("/annotations"),
        when: When::InstanceIs("object"),
        reason: SERVICE_ANNOTATIONS,
    },
];

/// Why a Service's `annotations` are tolerated though `VIPServiceInfo` does not declare them.
const SERVICE_ANNOTATIONS: &str = "VIPServiceInfo does not declare annotations {string:string}, \
    but the same service JSON carries them (Tailscale's Go client, Terraform provider and k8s \
    operator read and write them through /vip-services), and Tailscale's operator marks the \
    services it owns with tailscale.com/owner-references; the operator reads the mark to leave \
    those services alone and writes its own";

/// One way a body (or the exchange around it) breaks the contract.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// JSON pointer of the offending value in the body (`""` is the whole body).
    pub instance_path: String,
    /// Path from the operation's body schema to the failing keyword, `$ref`s included
    /// (empty for checks that are not JSON Schema keywords).
    pub schema_path: String,
    /// Location in the OpenAPI document of the failing keyword, e.g.
    /// `#/components/schemas/Device/properties/authorized/type`.
    pub keyword_location: String,
    /// The failing keyword (`type`, `required`, `enum`, `format`, ...), or one of this
    /// module's checks: `status`, `body`, `mediaType`, `hujson`, `undeclaredProperty`.
    pub keyword: String,
    /// Human-readable explanation, with secrets redacted.
    pub message: String,
    /// The offending value if it is a scalar (redacted), for deviation conditions.
    scalar: Option<Value>,
    /// JSON type of the offending value.
    instance_type: &'static str,
}

impl Violation {
    fn check(location: &str, keyword: &str, message: String) -> Self {
        Violation {
            instance_path: String::new(),
            schema_path: String::new(),
            keyword_location: location.to_string(),
            keyword: keyword.to_string(),
            message,
            scalar: None,
            instance_type: "none",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at {:?}: {} [{}",
            self.instance_path, self.message, self.keyword
        )?;
        if !self.keyword_location.is_empty() {
            write!(f, " at {}", self.keyword_location)?;
        }
        if !self.schema_path.is_empty() {
            write!(f, ", via {}", self.schema_path)?;
        }
        f.write_str("]")
    }
}

/// A violation excused by a [`KnownDeviation`].
#[derive(Debug, Clone, PartialEq)]
pub struct Tolerated {
    pub violation: Violation,
    pub deviation: &'static KnownDeviation,
}

/// Why a request or response could not be checked, or how it breaks the contract.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("the OpenAPI document is unusable: {0}")]
    Document(String),
    #[error("{method} {path}: no path in the OpenAPI document matches")]
    UnknownPath { method: String, path: String },
    #[error("{method} {path}: matches {template}, which only declares {allowed:?}")]
    MethodNotAllowed {
        method: String,
        path: String,
        template: String,
        allowed: Vec<String>,
    },
    #[error("{method} {path}: outside the OpenAPI document ({reason})")]
    OutsideSpec {
        method: String,
        path: String,
        reason: &'static str,
    },
    #[error("{context}: cannot compile the schema at {location}: {message}")]
    Schema {
        context: String,
        location: String,
        message: String,
    },
    #[error("{context}: {} contract violation(s):\n{}", .violations.len(), render_list(.violations))]
    Violations {
        context: String,
        violations: Vec<Violation>,
    },
}

impl ContractError {
    /// True for paths the document does not describe on purpose (OAuth, `/sim/...`).
    pub fn is_outside_spec(&self) -> bool {
        matches!(self, ContractError::OutsideSpec { .. })
    }

    /// The violations, if this error is a contract violation.
    pub fn violations(&self) -> &[Violation] {
        match self {
            ContractError::Violations { violations, .. } => violations,
            _ => &[],
        }
    }
}

fn render_list(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| format!("  - {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A successful check: which part of the spec was applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// `"METHOD /templated/path"`.
    pub operation: String,
    pub operation_id: Option<String>,
    /// The response key used (`"200"`, `"2XX"`, `"default"`, or `"generic-error"` for the
    /// generic error rule); `None` for requests.
    pub response: Option<String>,
    /// The declared media type the body was checked against, if there was a body.
    pub media_type: Option<String>,
    /// Violations excused by [`KNOWN_DEVIATIONS`].
    pub tolerated: Vec<Tolerated>,
}

/// One operation (method + templated path) of the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Upper-case HTTP method.
    pub method: String,
    /// Templated path relative to `/api/v2`, e.g. `/device/{deviceId}/routes`.
    pub template: String,
    pub operation_id: Option<String>,
    /// JSON pointer (URI fragment form) of the operation object in the document.
    pub location: String,
    segments: Vec<Segment>,
}

impl Operation {
    /// `"METHOD /templated/path"`, the key used in errors and [`KnownDeviation::operation`].
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.template)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// An operation matched from a concrete request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationMatch<'s> {
    pub operation: &'s Operation,
    /// Path parameters in template order, e.g. `[("tailnet", "-")]`.
    pub params: Vec<(String, String)>,
}

/// Counts for the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecSummary {
    pub openapi: String,
    pub paths: usize,
    pub operations: usize,
    pub component_schemas: usize,
    pub component_responses: usize,
    /// Distinct request/response body schemas across all operations.
    pub body_schemas: usize,
}

/// The loaded OpenAPI document, its operation index and a cache of compiled validators.
pub struct OpenApiSpec {
    doc: Value,
    registry: Registry<'static>,
    operations: Vec<Operation>,
    /// Compiled validators keyed by the schema's location: each (operation, status, media
    /// type) schema is compiled once, and shared ones (`#/components/responses/404`) once.
    cache: Mutex<HashMap<String, Arc<Validator>>>,
}

impl fmt::Debug for OpenApiSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenApiSpec")
            .field("operations", &self.operations.len())
            .field("compiled", &self.compiled_count())
            .finish_non_exhaustive()
    }
}

/// Where the document is read from: `TAILSCALE_OPENAPI` if set and non-empty, else
/// [`DEFAULT_SPEC_PATH`].
pub fn spec_path() -> PathBuf {
    spec_path_from(std::env::var_os(SPEC_ENV))
}

/// [`spec_path`] for a given value of the environment variable.
pub fn spec_path_from(var: Option<OsString>) -> PathBuf {
    match var {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(DEFAULT_SPEC_PATH),
    }
}

impl OpenApiSpec {
    /// The document at [`spec_path`], loaded once per test binary. `None` (after printing
    /// `skipping: ...`) when the file is absent; the caller should return early.
    pub fn shared() -> Option<&'static OpenApiSpec> {
        static SHARED: OnceLock<Option<OpenApiSpec>> = OnceLock::new();
        let spec = SHARED
            .get_or_init(|| OpenApiSpec::load_quiet(&spec_path()))
            .as_ref();
        if spec.is_none() {
            print_skip(&spec_path());
        }
        spec
    }

    /// Loads the document at [`spec_path`]; `None` (after printing `skipping: ...`) when the
    /// file is absent. Panics if it exists but is unreadable or not an OpenAPI document: that
    /// is a broken setup, not a reason to skip.
    pub fn load() -> Option<OpenApiSpec> {
        Self::load_from(&spec_path())
    }

    /// [`OpenApiSpec::load`] from an explicit path.
    pub fn load_from(path: &Path) -> Option<OpenApiSpec> {
        let spec = Self::load_quiet(path);
        if spec.is_none() {
            print_skip(path);
        }
        spec
    }

    fn load_quiet(path: &Path) -> Option<OpenApiSpec> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
            Err(err) => panic!("cannot read the OpenAPI document {}: {err}", path.display()),
        };
        let doc: Value = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("{} is not JSON: {err}", path.display()));
        let spec = Self::from_value(doc)
            .unwrap_or_else(|err| panic!("{} is not usable: {err}", path.display()));
        Some(spec)
    }

    /// Builds a spec from an in-memory document (used by tests with synthetic documents).
    pub fn from_value(doc: Value) -> Result<OpenApiSpec, ContractError> {
        let operations = index_operations(&doc)?;
        let fallback_error = json!({
            "type": "object",
            "required": ["message"],
            "properties": {"message": {"type": "string"}}
        });
        let registry = Registry::new()
            .draft(Draft::Draft202012)
            .add(BASE_URI, doc.clone())
            .and_then(|builder| builder.add(FALLBACK_ERROR_URI, fallback_error))
            .and_then(|builder| builder.prepare())
            .map_err(|err| ContractError::Document(format!("cannot register it: {err}")))?;
        Ok(OpenApiSpec {
            doc,
            registry,
            operations,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// All operations, in document order.
    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    /// The raw document.
    pub fn document(&self) -> &Value {
        &self.doc
    }

    /// Counts of paths, operations and schemas.
    pub fn summary(&self) -> SpecSummary {
        let count = |ptr: &str| {
            self.doc
                .pointer(ptr)
                .and_then(Value::as_object)
                .map_or(0, Map::len)
        };
        SpecSummary {
            openapi: self.doc["openapi"].as_str().unwrap_or("?").to_string(),
            paths: count("/paths"),
            operations: self.operations.len(),
            component_schemas: count("/components/schemas"),
            component_responses: count("/components/responses"),
            body_schemas: self.body_schema_locations().len(),
        }
    }

    /// Number of validators compiled so far (for checking the cache).
    pub fn compiled_count(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Looks an operation up by method and templated path (`/tailnet/{tailnet}/devices`, with
    /// or without the `/api/v2` prefix).
    pub fn operation(&self, method: &str, template: &str) -> Option<&Operation> {
        let template = strip_api_prefix(template);
        self.operations
            .iter()
            .find(|op| op.method.eq_ignore_ascii_case(method) && op.template == template)
    }

    /// Finds the operation serving a concrete request path (with or without `/api/v2`, an
    /// optional `scheme://host`, query string ignored). Literal segments win over templated
    /// ones at the first position where candidate paths differ, like a router would; the
    /// method is checked after the path is chosen.
    pub fn find_operation(
        &self,
        method: &str,
        path: &str,
    ) -> Result<OperationMatch<'_>, ContractError> {
        let normalized = normalize_path(path);
        if let Some(reason) = outside_spec_reason(&normalized) {
            return Err(ContractError::OutsideSpec {
                method: method.to_string(),
                path: path.to_string(),
                reason,
            });
        }
        let concrete: Vec<&str> = normalized.split('/').skip(1).collect();
        let mut best: Option<(&Operation, Vec<bool>)> = None;
        for op in &self.operations {
            let Some(shape) = match_segments(&op.segments, &concrete) else {
                continue;
            };
            if best
                .as_ref()
                .is_none_or(|(_, best_shape)| shape < *best_shape)
            {
                best = Some((op, shape));
            }
        }
        let Some((best, _)) = best else {
            return Err(ContractError::UnknownPath {
                method: method.to_string(),
                path: path.to_string(),
            });
        };
        let Some(op) = self.operation(method, &best.template) else {
            let allowed = self
                .operations
                .iter()
                .filter(|op| op.template == best.template)
                .map(|op| op.method.clone())
                .collect();
            return Err(ContractError::MethodNotAllowed {
                method: method.to_string(),
                path: path.to_string(),
                template: best.template.clone(),
                allowed,
            });
        };
        let params = op
            .segments
            .iter()
            .zip(&concrete)
            .filter_map(|(segment, value)| match segment {
                Segment::Param(name) => Some((name.clone(), (*value).to_string())),
                Segment::Literal(_) => None,
            })
            .collect();
        Ok(OperationMatch {
            operation: op,
            params,
        })
    }

    /// Validates a response: status against the declared responses, content type against the
    /// declared media types, body against the schema. See the module docs for the rules.
    pub fn validate_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Validated, ContractError> {
        let op = self.find_operation(method, path)?.operation;
        let context = format!("{} -> {status}", op.key());
        let mut violations = Vec::new();
        let (response, media_type) = match self.pick_response(op, status) {
            Some((key, location)) => {
                let (location, _) = self.resolve(&location);
                let media = self.check_payload(
                    &context,
                    &format!("{location}/content"),
                    true,
                    content_type,
                    body,
                    &mut violations,
                )?;
                (Some(key), media)
            }
            None if status >= 400 => {
                let media =
                    self.check_generic_error(&context, content_type, body, &mut violations)?;
                (Some("generic-error".to_string()), media)
            }
            None => {
                violations.push(Violation::check(
                    &format!("{}/responses", op.location),
                    "status",
                    format!(
                        "status {status} is not declared (declared: {})",
                        self.declared_statuses(op).join(", ")
                    ),
                ));
                (None, None)
            }
        };
        finish(op, context, response, media_type, violations)
    }

    /// Validates a request body against the operation's `requestBody` for its media type.
    pub fn validate_request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &Value,
    ) -> Result<Validated, ContractError> {
        self.validate_request_opt(method, path, content_type, Some(body))
    }

    /// [`OpenApiSpec::validate_request`] for a request that may have no body (a missing body
    /// is a violation only when `requestBody.required` is true).
    pub fn validate_request_opt(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Validated, ContractError> {
        let op = self.find_operation(method, path)?.operation;
        let context = format!("{} request", op.key());
        let (location, request_body) = self.resolve(&format!("{}/requestBody", op.location));
        let required = request_body
            .and_then(|rb| rb.get("required"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut violations = Vec::new();
        let media_type = self.check_payload(
            &context,
            &format!("{location}/content"),
            required,
            content_type,
            body,
            &mut violations,
        )?;
        finish(op, context, None, media_type, violations)
    }

    /// Locations of every request and response body schema in the document (deduplicated,
    /// `$ref`'d responses resolved), e.g. to compile them all.
    pub fn body_schema_locations(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for op in &self.operations {
            let mut containers = vec![format!("{}/requestBody", op.location)];
            if let Some(responses) = self.node(&format!("{}/responses", op.location)) {
                for key in responses.as_object().into_iter().flat_map(Map::keys) {
                    containers.push(format!("{}/responses/{}", op.location, escape(key)));
                }
            }
            for container in containers {
                let (location, node) = self.resolve(&container);
                let content = node
                    .and_then(|n| n.get("content"))
                    .and_then(Value::as_object);
                for (media, media_object) in content.into_iter().flatten() {
                    let schema = format!("{location}/content/{}/schema", escape(media));
                    if media_object.get("schema").is_some() && seen.insert(schema.clone()) {
                        out.push(schema);
                    }
                }
            }
        }
        out
    }

    /// Compiles the schema at `location` (a `#/...` fragment of the document), through the
    /// cache. Fails on broken `$ref`s.
    pub fn compile(&self, location: &str) -> Result<Arc<Validator>, ContractError> {
        let location = match location.strip_prefix('#') {
            Some(_) => location.to_string(),
            None => format!("#{location}"),
        };
        let uri = format!("{BASE_URI}{}", encode_fragment(&location));
        self.validator(&uri, &location)
    }

    // ---- internals -------------------------------------------------------------------------

    /// The node at a `#/...` location.
    fn node(&self, location: &str) -> Option<&Value> {
        self.doc
            .pointer(location.strip_prefix('#').unwrap_or(location))
    }

    /// Follows OpenAPI-level `$ref`s (responses, request bodies) from `location`.
    fn resolve(&self, location: &str) -> (String, Option<&Value>) {
        let mut location = location.to_string();
        for _ in 0..16 {
            match self.node(&location) {
                Some(node) => match node.get("$ref").and_then(Value::as_str) {
                    Some(target) if target.starts_with("#/") => location = target.to_string(),
                    _ => return (location, Some(node)),
                },
                None => return (location, None),
            }
        }
        (location, None)
    }

    /// The response entry for `status`: exact, then `4XX`-style range, then `default`.
    fn pick_response(&self, op: &Operation, status: u16) -> Option<(String, String)> {
        let responses = self
            .node(&format!("{}/responses", op.location))?
            .as_object()?;
        let exact = status.to_string();
        let range = format!("{}XX", status / 100);
        let key = responses
            .keys()
            .find(|k| **k == exact)
            .or_else(|| responses.keys().find(|k| k.eq_ignore_ascii_case(&range)))
            .or_else(|| responses.keys().find(|k| *k == "default"))?;
        Some((
            key.clone(),
            format!("{}/responses/{}", op.location, escape(key)),
        ))
    }

    fn declared_statuses(&self, op: &Operation) -> Vec<String> {
        self.node(&format!("{}/responses", op.location))
            .and_then(Value::as_object)
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Checks a body against a `content` map at `content_location` (which may not exist:
    /// no content declared). Returns the media type the body was checked against.
    fn check_payload(
        &self,
        context: &str,
        content_location: &str,
        body_required: bool,
        content_type: Option<&str>,
        body: Option<&Value>,
        out: &mut Vec<Violation>,
    ) -> Result<Option<String>, ContractError> {
        let body = body.filter(|b| !is_empty_body(b));
        let content = self
            .node(content_location)
            .and_then(Value::as_object)
            .filter(|c| !c.is_empty());
        let Some(content) = content else {
            if let Some(body) = body {
                out.push(Violation::check(
                    content_location,
                    "body",
                    format!(
                        "the spec declares no body here, but one was sent: {}",
                        render_redacted(body)
                    ),
                ));
            }
            return Ok(None);
        };
        let Some(body) = body else {
            if body_required {
                let declared: Vec<&str> = content.keys().map(String::as_str).collect();
                out.push(Violation::check(
                    content_location,
                    "body",
                    format!(
                        "the spec declares a body ({}) but none was sent",
                        declared.join(", ")
                    ),
                ));
            }
            return Ok(None);
        };
        let media = match pick_media(content, content_type) {
            Ok(media) => media.to_string(),
            Err(message) => {
                out.push(Violation::check(content_location, "mediaType", message));
                return Ok(None);
            }
        };
        let schema_location = format!("{content_location}/{}/schema", escape(&media));
        if !is_json_media(&media) {
            check_text_body(&media, &schema_location, body, out);
        }
        if self.node(&schema_location).is_some() {
            self.run_schema(context, &schema_location, body, out)?;
            self.check_undeclared(&schema_location, body, out);
        }
        Ok(Some(media))
    }

    /// The generic error rule: an undeclared status >= 400 must carry `{"message": string}`.
    fn check_generic_error(
        &self,
        context: &str,
        content_type: Option<&str>,
        body: Option<&Value>,
        out: &mut Vec<Violation>,
    ) -> Result<Option<String>, ContractError> {
        let media = content_type.map_or("application/json".to_string(), media_essence);
        let Some(body) = body.filter(|b| !is_empty_body(b)) else {
            out.push(Violation::check(
                "",
                "body",
                "an undeclared error status must carry a {\"message\": string} body".to_string(),
            ));
            return Ok(None);
        };
        if !is_json_media(&media) {
            out.push(Violation::check(
                "",
                "mediaType",
                format!("an undeclared error status must be JSON, got {media}"),
            ));
            return Ok(None);
        }
        let location = "#/components/schemas/Error";
        if self.node(location).is_some() {
            self.run_schema(context, location, body, out)?;
        } else {
            let validator = self.validator(FALLBACK_ERROR_URI, FALLBACK_ERROR_URI)?;
            collect_errors(&validator, body, out);
        }
        Ok(Some(media))
    }

    fn run_schema(
        &self,
        context: &str,
        location: &str,
        body: &Value,
        out: &mut Vec<Violation>,
    ) -> Result<(), ContractError> {
        let validator = self.compile(location).map_err(|err| match err {
            ContractError::Schema {
                location, message, ..
            } => ContractError::Schema {
                context: context.to_string(),
                location,
                message,
            },
            other => other,
        })?;
        collect_errors(&validator, body, out);
        Ok(())
    }

    /// The compiled validator for `{"$ref": uri}`, from the cache or compiled now.
    fn validator(&self, uri: &str, location: &str) -> Result<Arc<Validator>, ContractError> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(validator) = cache.get(uri) {
            return Ok(Arc::clone(validator));
        }
        let validator = jsonschema::options()
            .with_draft(Draft::Draft202012)
            .with_registry(&self.registry)
            .should_validate_formats(true)
            .with_format("date-time", is_date_time_or_empty)
            .with_format("uri", |_: &str| true)
            .build(&json!({ "$ref": uri }))
            .map_err(|err| ContractError::Schema {
                context: "compile".to_string(),
                location: location.to_string(),
                message: err.to_string(),
            })?;
        let validator = Arc::new(validator);
        cache.insert(uri.to_string(), Arc::clone(&validator));
        Ok(validator)
    }

    /// Reports object members no schema on their path declares (see module docs).
    fn check_undeclared(&self, schema_location: &str, body: &Value, out: &mut Vec<Violation>) {
        self.walk_undeclared(vec![schema_location.to_string()], body, String::new(), out);
    }

    fn walk_undeclared(
        &self,
        locations: Vec<String>,
        instance: &Value,
        instance_path: String,
        out: &mut Vec<Violation>,
    ) {
        let schemas = self.expand(locations);
        match instance {
            Value::Object(members) => {
                let applicable: Vec<&(String, &Value)> = schemas
                    .iter()
                    .filter(|(_, s)| shapes(s, "object", &["properties", "additionalProperties"]))
                    .collect();
                if applicable.is_empty() {
                    return;
                }
                let open = applicable.iter().any(|(loc, s)| is_open_object(loc, s));
                for (name, value) in members {
                    let child_path = format!("{instance_path}/{}", escape(name));
                    let mut child = Vec::new();
                    for (loc, schema) in &applicable {
                        if schema.get("properties").and_then(|p| p.get(name)).is_some() {
                            child.push(format!("{loc}/properties/{}", escape(name)));
                        }
                        if schema
                            .get("additionalProperties")
                            .is_some_and(Value::is_object)
                        {
                            child.push(format!("{loc}/additionalProperties"));
                        }
                    }
                    if !child.is_empty() {
                        self.walk_undeclared(child, value, child_path, out);
                    } else if !open {
                        out.push(undeclared_violation(&applicable, name, child_path, value));
                    }
                }
            }
            Value::Array(items) => {
                let applicable: Vec<&(String, &Value)> = schemas
                    .iter()
                    .filter(|(_, s)| shapes(s, "array", &["items"]))
                    .collect();
                // An alternative without `items` allows any element: nothing to report.
                if applicable.is_empty() || applicable.iter().any(|(_, s)| !has_items(s)) {
                    return;
                }
                let child: Vec<String> = applicable
                    .iter()
                    .map(|(loc, _)| format!("{loc}/items"))
                    .collect();
                for (index, item) in items.iter().enumerate() {
                    let path = format!("{instance_path}/{index}");
                    self.walk_undeclared(child.clone(), item, path, out);
                }
            }
            _ => {}
        }
    }

    /// The schemas at `locations` plus everything they pull in through `$ref`, `allOf`,
    /// `anyOf` and `oneOf` (union semantics: a member declared by any of them is declared).
    fn expand(&self, locations: Vec<String>) -> Vec<(String, &Value)> {
        let mut seen = HashSet::new();
        let mut queue = locations;
        let mut out = Vec::new();
        while let Some(location) = queue.pop() {
            if !seen.insert(location.clone()) {
                continue;
            }
            let Some(schema) = self.node(&location) else {
                continue;
            };
            if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
                if target.starts_with("#/") {
                    queue.push(target.to_string());
                }
            }
            for combinator in ["allOf", "anyOf", "oneOf"] {
                let branches = schema.get(combinator).and_then(Value::as_array);
                for index in 0..branches.map_or(0, Vec::len) {
                    queue.push(format!("{location}/{combinator}/{index}"));
                }
            }
            out.push((location, schema));
        }
        out
    }
}

fn print_skip(path: &Path) {
    eprintln!(
        "skipping: Tailscale OpenAPI document not found at {} (set {SPEC_ENV} to point elsewhere)",
        path.display()
    );
}

/// Splits the result into tolerated and remaining violations.
fn finish(
    op: &Operation,
    context: String,
    response: Option<String>,
    media_type: Option<String>,
    violations: Vec<Violation>,
) -> Result<Validated, ContractError> {
    let mut tolerated = Vec::new();
    let mut remaining = Vec::new();
    for violation in violations {
        match KNOWN_DEVIATIONS
            .iter()
            .find(|d| deviation_applies(d, op, &violation))
        {
            Some(deviation) => tolerated.push(Tolerated {
                violation,
                deviation,
            }),
            None => remaining.push(violation),
        }
    }
    if !remaining.is_empty() {
        return Err(ContractError::Violations {
            context,
            violations: remaining,
        });
    }
    Ok(Validated {
        operation: op.key(),
        operation_id: op.operation_id.clone(),
        response,
        media_type,
        tolerated,
    })
}

fn deviation_applies(deviation: &KnownDeviation, op: &Operation, violation: &Violation) -> bool {
    let operation_ok = deviation.operation == "*" || deviation.operation == op.key();
    let pointer_ok = deviation
        .instance_pointer
        .is_none_or(|pattern| pointer_matches(pattern, &violation.instance_path));
    let when_ok = match deviation.when {
        When::Always => true,
        When::InstanceIs(kind) => violation.instance_type == kind,
        When::InstanceEquals(text) => {
            let expected: Option<Value> = serde_json::from_str(text).ok();
            expected.is_some() && violation.scalar == expected
        }
    };
    operation_ok
        && pointer_ok
        && when_ok
        && deviation.keyword == violation.keyword
        && deviation.keyword_location == violation.keyword_location
}

/// `pattern` and `pointer` are JSON pointers; a `*` segment in `pattern` matches any segment.
fn pointer_matches(pattern: &str, pointer: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('/').collect();
    let pointer: Vec<&str> = pointer.split('/').collect();
    pattern.len() == pointer.len()
        && pattern
            .iter()
            .zip(&pointer)
            .all(|(p, s)| *p == "*" || p == s)
}

fn collect_errors(validator: &Validator, body: &Value, out: &mut Vec<Violation>) {
    for error in validator.iter_errors(body) {
        let instance: &Value = error.instance();
        let keyword_location = error
            .absolute_keyword_location()
            .map(|uri| fragment_of(uri.as_str()))
            .unwrap_or_default();
        out.push(Violation {
            instance_path: error.instance_path().as_str().to_string(),
            // Relative to the body schema: drop the `{"$ref": ...}` wrapper's own step.
            schema_path: strip_wrapper(error.evaluation_path().as_str()),
            keyword_location,
            keyword: error.kind().keyword().to_string(),
            message: error.masked_with(render_redacted(instance)).to_string(),
            scalar: scalar_of(instance),
            instance_type: json_type(instance),
        });
    }
}

fn strip_wrapper(path: &str) -> String {
    match path.strip_prefix("/$ref") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.to_string(),
        _ => path.to_string(),
    }
}

fn undeclared_violation(
    applicable: &[&(String, &Value)],
    name: &str,
    instance_path: String,
    value: &Value,
) -> Violation {
    let declaring = applicable
        .iter()
        .find(|(_, s)| s.get("properties").is_some())
        .or(applicable.first());
    let location = declaring.map_or(String::new(), |(loc, _)| format!("{loc}/properties"));
    let mut declared: Vec<&str> = applicable
        .iter()
        .filter_map(|(_, s)| s.get("properties").and_then(Value::as_object))
        .flat_map(|p| p.keys().map(String::as_str))
        .collect();
    declared.sort_unstable();
    declared.dedup();
    Violation {
        instance_path,
        schema_path: String::new(),
        keyword_location: location,
        keyword: "undeclaredProperty".to_string(),
        message: format!(
            "property {name:?} is not declared by the schema (declared: {})",
            declared.join(", ")
        ),
        scalar: scalar_of(value),
        instance_type: json_type(value),
    }
}

/// Whether `schema` says something about instances of JSON type `kind`: its `type` names it,
/// or it has one of the `structural` keywords, or it is a bare schema (no type, no
/// composition) that accepts anything. Pure composition wrappers are expanded instead.
fn shapes(schema: &Value, kind: &str, structural: &[&str]) -> bool {
    match schema.get("type") {
        Some(Value::String(t)) => t == kind,
        Some(Value::Array(types)) => types.iter().any(|t| t == kind),
        Some(_) => false,
        None => {
            structural.iter().any(|k| schema.get(k).is_some())
                || !["$ref", "allOf", "anyOf", "oneOf", "enum", "const"]
                    .iter()
                    .any(|k| schema.get(k).is_some())
        }
    }
}

fn has_items(schema: &Value) -> bool {
    schema.get("items").is_some_and(Value::is_object)
}

/// An object schema that lets members through without declaring them.
fn is_open_object(location: &str, schema: &Value) -> bool {
    if OPEN_SCHEMAS.contains(&location) {
        return true;
    }
    match schema.get("additionalProperties") {
        Some(Value::Bool(allowed)) => *allowed,
        Some(_) => false,
        None => schema.get("properties").is_none() || schema.get("patternProperties").is_some(),
    }
}

/// Parses `path` into the document-relative form: no scheme/host, no query or fragment, no
/// `/api/v2` prefix.
fn normalize_path(path: &str) -> String {
    let mut path = path;
    if let Some(scheme_end) = path.find("://") {
        let rest = &path[scheme_end + 3..];
        path = rest.find('/').map_or("/", |slash| &rest[slash..]);
    }
    let path = path.split(['?', '#']).next().unwrap_or_default();
    strip_api_prefix(path).to_string()
}

fn strip_api_prefix(path: &str) -> &str {
    match path.strip_prefix(API_PREFIX) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ => path,
    }
}

fn outside_spec_reason(normalized: &str) -> Option<&'static str> {
    OUTSIDE_SPEC.iter().find_map(|(pattern, reason)| {
        let hit = if pattern.ends_with('/') {
            normalized.starts_with(pattern) || normalized == pattern.trim_end_matches('/')
        } else {
            normalized == *pattern
        };
        hit.then_some(*reason)
    })
}

/// If `concrete` matches the template, its shape: one `bool` per segment, `true` for a
/// parameter. Lexicographically smaller shapes are more specific (literal wins).
fn match_segments(template: &[Segment], concrete: &[&str]) -> Option<Vec<bool>> {
    if template.len() != concrete.len() {
        return None;
    }
    template
        .iter()
        .zip(concrete)
        .map(|(segment, value)| match segment {
            Segment::Literal(literal) => (literal == value).then_some(false),
            Segment::Param(_) => (!value.is_empty()).then_some(true),
        })
        .collect()
}

fn index_operations(doc: &Value) -> Result<Vec<Operation>, ContractError> {
    let paths = doc
        .get("paths")
        .and_then(Value::as_object)
        .ok_or_else(|| ContractError::Document("no `paths` object".to_string()))?;
    let mut operations = Vec::new();
    for (template, item) in paths {
        if !template.starts_with('/') {
            return Err(ContractError::Document(format!(
                "path {template:?} does not start with '/'"
            )));
        }
        let segments = template
            .split('/')
            .skip(1)
            .map(parse_segment)
            .collect::<Vec<_>>();
        for method in HTTP_METHODS {
            let Some(operation) = item.get(*method) else {
                continue;
            };
            operations.push(Operation {
                method: method.to_ascii_uppercase(),
                template: template.clone(),
                operation_id: operation
                    .get("operationId")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                location: format!("#/paths/{}/{method}", escape(template)),
                segments: segments.clone(),
            });
        }
    }
    Ok(operations)
}

/// `{name}` is a parameter; anything else (including partial templates, which the Tailscale
/// document does not use) is matched literally.
fn parse_segment(segment: &str) -> Segment {
    match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        Some(name) if !name.contains(['{', '}']) => Segment::Param(name.to_string()),
        _ => Segment::Literal(segment.to_string()),
    }
}

/// Chooses the declared media type for a body.
fn pick_media<'c>(
    content: &'c Map<String, Value>,
    actual: Option<&str>,
) -> Result<&'c str, String> {
    let declared = || content.keys().cloned().collect::<Vec<_>>().join(", ");
    let Some(actual) = actual.map(media_essence) else {
        return content
            .keys()
            .find(|k| media_essence(k) == "application/json")
            .or_else(|| {
                (content.len() == 1)
                    .then(|| content.keys().next())
                    .flatten()
            })
            .map(String::as_str)
            .ok_or_else(|| {
                format!(
                    "no content type given and several are declared ({})",
                    declared()
                )
            });
    };
    let major = actual.split('/').next().unwrap_or_default();
    let wildcard = format!("{major}/*");
    content
        .keys()
        .find(|k| media_essence(k) == actual)
        .or_else(|| content.keys().find(|k| media_essence(k) == wildcard))
        .or_else(|| content.keys().find(|k| *k == "*/*"))
        .map(String::as_str)
        .ok_or_else(|| {
            format!(
                "content type {actual} is not declared (declared: {})",
                declared()
            )
        })
}

/// `application/json; charset=utf-8` -> `application/json`.
fn media_essence(media: &str) -> String {
    media
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn is_json_media(media: &str) -> bool {
    let media = media_essence(media);
    media == "application/json" || media.ends_with("+json")
}

/// Text media types take the raw text as a JSON string; HuJSON must also parse.
fn check_text_body(media: &str, schema_location: &str, body: &Value, out: &mut Vec<Violation>) {
    let Some(text) = body.as_str() else {
        out.push(Violation::check(
            schema_location,
            "body",
            format!(
                "a {media} body must be given as its raw text (a JSON string), got a JSON {}",
                json_type(body)
            ),
        ));
        return;
    };
    if media_essence(media) == "application/hujson" {
        if let Err(message) = parse_hujson(text) {
            out.push(Violation::check(schema_location, "hujson", message));
        }
    }
}

/// HuJSON is JSON plus comments and trailing commas; nothing else is relaxed.
fn parse_hujson(text: &str) -> Result<(), String> {
    tailnet_operator::policy::hujson::parse_strict(text)
        .map(drop)
        .map_err(|err| format!("the body is not valid HuJSON: {err}"))
}

fn is_empty_body(body: &Value) -> bool {
    body.as_str().is_some_and(|text| text.trim().is_empty())
}

/// RFC 3339 date-time, or `""` (see module docs).
fn is_date_time_or_empty(text: &str) -> bool {
    text.is_empty() || chrono::DateTime::parse_from_rfc3339(text).is_ok()
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn scalar_of(value: &Value) -> Option<Value> {
    match value {
        Value::Array(_) | Value::Object(_) => None,
        scalar => Some(redact(scalar, None)),
    }
}

/// Member names whose string values are secrets.
const SECRET_MEMBERS: &[&str] = &[
    "key",
    "secret",
    "clientsecret",
    "client_secret",
    "token",
    "access_token",
    "s3secretaccesskey",
    "password",
];

fn redact(value: &Value, member: Option<&str>) -> Value {
    match value {
        Value::String(text)
            if text.starts_with("tskey-")
                || member
                    .is_some_and(|m| SECRET_MEMBERS.contains(&m.to_ascii_lowercase().as_str())) =>
        {
            Value::String("<redacted>".to_string())
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| redact(v, None)).collect()),
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(k, v)| (k.clone(), redact(v, Some(k))))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Compact, redacted, truncated rendering of a value for messages.
fn render_redacted(value: &Value) -> String {
    const LIMIT: usize = 120;
    let text = redact(value, None).to_string();
    if text.chars().count() <= LIMIT {
        return text;
    }
    let cut: String = text.chars().take(LIMIT).collect();
    format!("{cut}…")
}

/// Escapes one JSON-pointer segment.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Percent-encodes a `#/...` location for use inside a URI (`{` and `}` are not URI chars).
fn encode_fragment(location: &str) -> String {
    let mut out = String::with_capacity(location.len());
    for byte in location.bytes() {
        let safe = byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?#".contains(&byte);
        if safe {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `https://...openapi.json#/components/...%7Bx%7D` -> `#/components/...{x}`.
fn fragment_of(uri: &str) -> String {
    let fragment = uri.find('#').map_or("#", |hash| &uri[hash..]);
    percent_decode(fragment)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
