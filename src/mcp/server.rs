//! The MCP server: read tools, propose tools and resources over a [`Backend`].
//!
//! Read tools are annotated read-only and return structured output (`Json<T>`: an output
//! schema in `tools/list`, `structuredContent` plus a text copy in `tools/call`). Propose tools
//! create a proposal for a human to review and nothing else. `--read-only` disables them in the
//! router, which removes them from `tools/list` *and* refuses `tools/call` by name; the tool
//! bodies check again so a router change cannot silently re-enable them.
use std::sync::Arc;
use std::time::Instant;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListResourceTemplatesResult,
    ListResourcesResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Resource, ResourceContents, ResourceTemplate, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::audit_log::{AuditLog, ClientIdentity, Outcome};
use super::backend::*;

/// The propose tools: disabled by `--read-only`.
pub const PROPOSE_TOOLS: &[&str] = &["propose_patch", "adopt_drift"];

/// URI of the live and desired policy resources.
pub const POLICY_LIVE_URI: &str = "tailnet://policy/live";
pub const POLICY_DESIRED_URI: &str = "tailnet://policy/desired";
/// URI of the network report as one self-contained HTML page.
pub const REPORT_HTML_URI: &str = "tailnet://report.html";
/// Prefix of a custom resource's URI: `tailnet://resources/{kind}/{name}`.
pub const RESOURCE_URI_PREFIX: &str = "tailnet://resources/";

#[derive(Clone)]
pub struct TailnetMcp {
    backend: Arc<dyn Backend>,
    read_only: bool,
    audit: AuditLog,
    tool_router: ToolRouter<TailnetMcp>,
}

/// `get_resource` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct GetResourceArgs {
    /// Kind, e.g. `TailnetPolicy`, `ManagedTailnet`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// Namespace, for namespaced kinds only.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// The tools that take or return a kind, whose descriptions end with the kinds served (from the
/// one list of kinds, so a new kind shows up with no edit here).
const KIND_TOOLS: &[&str] = &[
    "list_resources",
    "get_resource",
    "propose_patch",
    "adopt_drift",
];

fn name_the_kinds(router: &mut ToolRouter<TailnetMcp>) {
    let kinds: Vec<&str> = crate::proposal::kinds::registry()
        .iter()
        .map(|e| e.kind.as_str())
        .collect();
    for (name, route) in router.map.iter_mut() {
        if KIND_TOOLS.contains(&name.as_ref()) {
            let description = route.attr.description.as_deref().unwrap_or_default();
            let described = format!("{description} Kinds: {}.", kinds.join(", "));
            route.attr.description = Some(described.into());
        }
    }
}

fn backend_error(err: BackendError) -> String {
    err.to_string()
}

#[tool_router]
impl TailnetMcp {
    pub fn new(backend: Arc<dyn Backend>, read_only: bool, audit: AuditLog) -> TailnetMcp {
        let mut tool_router = Self::tool_router();
        name_the_kinds(&mut tool_router);
        if read_only {
            for name in PROPOSE_TOOLS {
                tool_router.disable_route(*name);
            }
        }
        TailnetMcp {
            backend,
            read_only,
            audit,
            tool_router,
        }
    }

    #[tool(
        description = "Overview: tailnets with device statistics, resource counts per kind, drifted and not-ready resources, pending proposals.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn overview(&self) -> Result<Json<Overview>, String> {
        self.backend
            .overview()
            .await
            .map(Json)
            .map_err(backend_error)
    }

    #[tool(
        description = "List the operator's resources with their Ready/Synced/Drifted conditions. Optional kind filter.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_resources(
        &self,
        Parameters(query): Parameters<ResourceQuery>,
    ) -> Result<Json<ResourceList>, String> {
        self.backend
            .list_resources(query)
            .await
            .map(Json)
            .map_err(backend_error)
    }

    #[tool(
        description = "Get one resource: spec, status, conditions, and the drift diff (how the live tailnet differs) while it is drifted.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_resource(
        &self,
        Parameters(args): Parameters<GetResourceArgs>,
    ) -> Result<Json<ResourceDetail>, String> {
        let key = ResourceKey {
            kind: args.kind,
            name: args.name,
            namespace: args.namespace,
        };
        self.backend
            .get_resource(key)
            .await
            .map(Json)
            .map_err(backend_error)
    }

    #[tool(
        description = "The tailnet policy three ways: desired (what the TailnetPolicy resources compose to), live (the tailnet's policy file now) and effective (the live policy as the local evaluator compiles it: groups, rule count, whether it matches desired).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_policy(
        &self,
        Parameters(query): Parameters<TailnetQuery>,
    ) -> Result<Json<PolicyViews>, String> {
        self.backend
            .policy(query)
            .await
            .map(Json)
            .map_err(backend_error)
    }

    #[tool(
        description = "Can src reach dst on port? Evaluated locally on the live (default) or desired policy over the tailnet's users and devices. src/dst: user login, group:x, tag:x, device hostname, IP or CIDR.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn check_access(
        &self,
        Parameters(query): Parameters<AccessQuery>,
    ) -> Result<Json<AccessAnswer>, String> {
        self.backend
            .check_access(query)
            .await
            .map(Json)
            .map_err(backend_error)
    }

    #[tool(
        description = "List the tailnet's devices (no keys), filtered by tag, user, OS, name, authorized, connected.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_devices(
        &self,
        Parameters(filter): Parameters<DeviceFilter>,
    ) -> Result<Json<DeviceList>, String> {
        self.backend
            .devices(filter)
            .await
            .map(Json)
            .map_err(backend_error)
    }

    #[tool(
        description = "Audit devices and auth keys: unauthorized devices, stale devices, outdated clients, node keys and auth keys expired or expiring.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn device_audit(
        &self,
        Parameters(query): Parameters<AuditQuery>,
    ) -> Result<Json<AuditView>, String> {
        self.backend
            .device_audit(query)
            .await
            .map(Json)
            .map_err(backend_error)
    }

    #[tool(
        description = "Auth keys, API tokens and OAuth clients of the tailnet: metadata only (id, description, expiry, capabilities, tags). Never the key itself.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_auth_keys(
        &self,
        Parameters(query): Parameters<TailnetQuery>,
    ) -> Result<Json<KeyList>, String> {
        self.backend
            .auth_keys(query)
            .await
            .map(Json)
            .map_err(backend_error)
    }

    #[tool(
        description = "The network report: devices (by OS, client version, connectivity, key expiry), routing, DNS, policy (groups, tags, rule counts, policy tests, and an access heatmap of who reaches what by group and tag), keys (metadata only) and audit findings, aggregated whatever the tailnet's size. Use it for a picture of the whole tailnet; list_devices or check_access for one device or one question. The same as an HTML page: resource tailnet://report.html.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn network_report(
        &self,
        Parameters(query): Parameters<TailnetQuery>,
    ) -> Result<Json<crate::report::Report>, String> {
        self.backend
            .network_report(query)
            .await
            .map(Json)
            .map_err(backend_error)
    }

    #[tool(
        description = "List change proposals with their phase (Pending, Approved, Applied, Failed, Stale, Rejected), diff and access diff.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_proposals(&self) -> Result<Json<ProposalList>, String> {
        self.backend
            .proposals()
            .await
            .map(Json)
            .map_err(backend_error)
    }

    #[tool(
        description = "Propose a JSON merge patch to one of the operator's resources, for a human to review. Validates the patched resource (schema, planner, policy tests) and returns the proposal's name, the YAML diff and, for policies, the access diff. Nothing is applied until a human approves; an invalid patch creates nothing.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn propose_patch(
        &self,
        Parameters(request): Parameters<ProposeRequest>,
    ) -> Result<Json<ProposalCreated>, String> {
        self.refuse_when_read_only("propose_patch")?;
        self.backend
            .propose_patch(request)
            .await
            .map(Json)
            .map_err(backend_error)
    }

    #[tool(
        description = "Propose the patch that makes a drifted resource match what was changed in the tailnet (e.g. in the admin console), so the change is kept rather than reverted. Returns the proposal with its YAML diff; a human approves it.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn adopt_drift(
        &self,
        Parameters(request): Parameters<AdoptDriftRequest>,
    ) -> Result<Json<ProposalCreated>, String> {
        self.refuse_when_read_only("adopt_drift")?;
        self.backend
            .adopt_drift(request)
            .await
            .map(Json)
            .map_err(backend_error)
    }
}

impl TailnetMcp {
    fn refuse_when_read_only(&self, tool: &str) -> Result<(), String> {
        if self.read_only {
            return Err(format!(
                "{tool} is disabled: this server runs with --read-only"
            ));
        }
        Ok(())
    }

    async fn resource_list(&self) -> Result<Vec<Resource>, McpError> {
        let mut out = vec![
            Resource::new(POLICY_LIVE_URI, "policy-live")
                .with_description("The tailnet's policy file as it is now (HuJSON)")
                .with_mime_type("application/hujson"),
            Resource::new(POLICY_DESIRED_URI, "policy-desired")
                .with_description("The policy the TailnetPolicy resources compose to (HuJSON)")
                .with_mime_type("application/hujson"),
            Resource::new(REPORT_HTML_URI, "network-report")
                .with_description(
                    "The network report as one self-contained HTML page (inline SVG charts, no \
                     script, nothing loaded from elsewhere)",
                )
                .with_mime_type("text/html"),
        ];
        let list = self
            .backend
            .list_resources(ResourceQuery::default())
            .await
            .map_err(|e| McpError::internal_error(e.to_string(), None))?;
        for r in list.resources {
            out.push(
                Resource::new(
                    format!("{RESOURCE_URI_PREFIX}{}/{}", r.kind, r.name),
                    format!("{}/{}", r.kind, r.name),
                )
                .with_description(format!("{} {} with status (JSON)", r.kind, r.name))
                .with_mime_type("application/json"),
            );
        }
        Ok(out)
    }

    async fn resource_text(&self, uri: &str) -> Result<String, McpError> {
        let not_found = || {
            McpError::resource_not_found(
                format!("no resource {uri}; resources/list shows what exists"),
                None,
            )
        };
        let internal = |e: BackendError| match e {
            BackendError::NotFound(_) => not_found(),
            other => McpError::internal_error(other.to_string(), None),
        };
        if uri == REPORT_HTML_URI {
            let report = self
                .backend
                .network_report(TailnetQuery::default())
                .await
                .map_err(internal)?;
            return Ok(crate::report::render_html(&report));
        }
        if uri == POLICY_LIVE_URI || uri == POLICY_DESIRED_URI {
            let views = self
                .backend
                .policy(TailnetQuery::default())
                .await
                .map_err(internal)?;
            let (text, problem) = if uri == POLICY_LIVE_URI {
                (views.live, views.live_problem)
            } else {
                (views.desired, views.desired_problem)
            };
            return text.ok_or_else(|| {
                McpError::internal_error(problem.unwrap_or_else(|| "unavailable".into()), None)
            });
        }
        let rest = uri
            .strip_prefix(RESOURCE_URI_PREFIX)
            .ok_or_else(not_found)?;
        let (kind, name) = rest.split_once('/').ok_or_else(not_found)?;
        let detail = self
            .backend
            .get_resource(ResourceKey {
                kind: kind.to_owned(),
                name: name.to_owned(),
                namespace: None,
            })
            .await
            .map_err(internal)?;
        serde_json::to_string_pretty(&detail)
            .map_err(|e| McpError::internal_error(e.to_string(), None))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for TailnetMcp {
    fn get_info(&self) -> ServerConfig {
        let mode = if self.read_only {
            "read-only: propose tools are disabled"
        } else {
            "propose tools create proposals a human reviews; nothing is applied by this server"
        };
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new(
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(format!(
            "tailnet-operator MCP server over {}. Read the tailnet and the operator's resources \
             with the read tools; change them only by proposing a patch ({mode}).",
            self.backend.describe()
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let tool = request.name.to_string();
        let client = ClientIdentity::of(&context.extensions);
        let started = Instant::now();
        let known = self.tool_router.has_route(&tool);
        let tcc = rmcp::handler::server::tool::ToolCallContext::new(self, request, context);
        let result = self.tool_router.call(tcc).await;
        let outcome = match &result {
            Err(_) if !known => Outcome::Refused,
            Err(_) => Outcome::Error,
            Ok(CallToolResponse::Complete(r)) if r.is_error == Some(true) => Outcome::Error,
            Ok(_) => Outcome::Ok,
        };
        self.audit
            .record(&client, &tool, outcome, started.elapsed());
        result
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(ListResourcesResult {
            resources: self.resource_list().await?,
            ..Default::default()
        })
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult {
            resource_templates: vec![
                ResourceTemplate::new(
                    format!("{RESOURCE_URI_PREFIX}{{kind}}/{{name}}"),
                    "resource",
                )
                .with_description("One of the operator's resources with its status (JSON)")
                .with_mime_type("application/json"),
            ],
            ..Default::default()
        })
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let text = self.resource_text(&request.uri).await?;
        let mut contents = ResourceContents::text(text, request.uri.clone());
        if request.uri == REPORT_HTML_URI {
            contents = contents.with_mime_type("text/html");
        }
        Ok(ReadResourceResult::new(vec![contents]).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_tools_name_every_kind_from_the_kind_list() {
        let mut router = TailnetMcp::tool_router();
        name_the_kinds(&mut router);
        for tool in KIND_TOOLS {
            let description = router.get(tool).and_then(|t| t.description.clone());
            let description = description.unwrap_or_else(|| panic!("{tool} has a description"));
            for entry in crate::proposal::kinds::registry() {
                assert!(description.contains(&entry.kind), "{tool}: {description}");
            }
        }
    }
}
