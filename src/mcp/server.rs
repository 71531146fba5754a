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
    CallToolRequestParams, CallToolResponse, GetPromptRequestParams, GetPromptResponse,
    GetPromptResult, Implementation, ListPromptsResult, ListResourceTemplatesResult,
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
use super::intents;

/// The propose tools: disabled by `--read-only`.
pub const PROPOSE_TOOLS: &[&str] = &[
    "propose_patch",
    "propose_create",
    "propose_delete",
    "adopt_drift",
    "tag_devices",
    "authorize_devices",
    "set_device_key_expiry",
    "enable_subnet_routes",
    "make_exit_node",
    "change_dns",
    "grant_access",
    "rollback_policy",
    "publish_service",
    "grant_service_access",
    "create_key_rotation",
    "rotate_key_now",
    "expose_publicly",
];

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
    "propose_create",
    "propose_delete",
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

/// The names of every tool the server has (read and propose).
pub fn tool_names() -> Vec<String> {
    TailnetMcp::tool_router()
        .list_all()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect()
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
        self.propose("propose_patch", Ok(request.into())).await
    }

    #[tool(
        description = "Propose creating a resource (kind, name, namespace for namespaced kinds, spec), for a human to review. Validated as the API server validates a create (schema, CEL, unknown fields) plus the kind's checks (for policies: composition, tests, access diff). Applied on approval only while the name is still free. Prefer the intent tools (make_exit_node, expose_publicly, ...) when one fits.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn propose_create(
        &self,
        Parameters(args): Parameters<intents::CreateResource>,
    ) -> Result<Json<ProposalCreated>, String> {
        self.propose("propose_create", Ok(intents::create_resource(&args)))
            .await
    }

    #[tool(
        description = "Propose deleting a resource, for a human to review. The proposal shows what the resource's deletionPolicy removes from the tailnet (Delete) or leaves (Orphan). Applied on approval only if the resource did not change since.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn propose_delete(
        &self,
        Parameters(args): Parameters<intents::DeleteResource>,
    ) -> Result<Json<ProposalCreated>, String> {
        self.propose("propose_delete", Ok(intents::delete_resource(&args)))
            .await
    }

    #[tool(
        description = "Propose tagging devices (by machine name): a new DeviceTagSet scoped to them. exact: true gives them exactly these tags (to untag, list the tags to keep). Tags must be in the policy's tagOwners.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn tag_devices(
        &self,
        Parameters(args): Parameters<intents::TagDevices>,
    ) -> Result<Json<ProposalCreated>, String> {
        self.propose("tag_devices", intents::tag_devices(&args))
            .await
    }

    #[tool(
        description = "Propose authorizing (or de-authorizing) devices by machine name: a new DeviceTagSet scoped to them.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn authorize_devices(
        &self,
        Parameters(args): Parameters<intents::AuthorizeDevices>,
    ) -> Result<Json<ProposalCreated>, String> {
        self.propose("authorize_devices", intents::authorize_devices(&args))
            .await
    }

    #[tool(
        description = "Propose disabling (servers) or re-enabling node-key expiry on devices by machine name: a new DeviceTagSet scoped to them.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn set_device_key_expiry(
        &self,
        Parameters(args): Parameters<intents::DeviceKeyExpiry>,
    ) -> Result<Json<ProposalCreated>, String> {
        self.propose("set_device_key_expiry", intents::set_key_expiry(&args))
            .await
    }

    #[tool(
        description = "Propose enabling subnet routes the named devices advertise (CIDR prefixes): a new DeviceTagSet scoped to them. A route not advertised yet is enabled once it is.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn enable_subnet_routes(
        &self,
        Parameters(args): Parameters<intents::SubnetRoutes>,
    ) -> Result<Json<ProposalCreated>, String> {
        self.propose("enable_subnet_routes", intents::enable_routes(&args))
            .await
    }

    #[tool(
        description = "Propose making a device an exit node (0.0.0.0/0 and ::/0 enabled): a new DeviceTagSet scoped to it. The device must advertise the exit routes (tailscale set --advertise-exit-node).",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn make_exit_node(
        &self,
        Parameters(args): Parameters<intents::Devices>,
    ) -> Result<Json<ProposalCreated>, String> {
        self.propose("make_exit_node", intents::make_exit_node(&args))
            .await
    }

    #[tool(
        description = "Propose a DNS change: add or remove global nameservers, set or remove split-DNS domains (empty resolver list removes), add or remove search domains, MagicDNS on/off. Patches the tailnet's DNSConfig (creates one when there is none).",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn change_dns(
        &self,
        Parameters(args): Parameters<intents::DnsChange>,
    ) -> Result<Json<ProposalCreated>, String> {
        let request = intents::change_dns(self.backend.as_ref(), &args).await;
        self.propose("change_dns", request).await
    }

    #[tool(
        description = "Propose granting access (src, dst, ip such as tcp:443) as a grant in the TailnetPolicy that owns it: the Fragment defining a source group, else the Base (or the one named). The policy text keeps its comments; the proposal shows the access diff (who gains what) and runs the policy tests. To revoke, use propose_patch on the policy text.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn grant_access(
        &self,
        Parameters(args): Parameters<intents::GrantAccess>,
    ) -> Result<Json<ProposalCreated>, String> {
        let request = intents::grant_access(self.backend.as_ref(), &args).await;
        self.propose("grant_access", request).await
    }

    #[tool(
        description = "Propose rolling the tailnet's policy back to a kept revision (the break-glass annotation on the Base; its status lists the revisions). Use when a bad policy change must be undone now; remove the annotation afterwards.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn rollback_policy(
        &self,
        Parameters(args): Parameters<intents::RollbackPolicy>,
    ) -> Result<Json<ProposalCreated>, String> {
        let request = intents::rollback_policy(self.backend.as_ref(), &args).await;
        self.propose("rollback_policy", request).await
    }

    #[tool(
        description = "Propose publishing a Tailscale Service (svc:<name>): ports, the devices allowed to host it (machine names), its tags and who may reach it. Creates a TailscaleService.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn publish_service(
        &self,
        Parameters(args): Parameters<intents::PublishService>,
    ) -> Result<Json<ProposalCreated>, String> {
        self.propose("publish_service", Ok(intents::publish_service(&args)))
            .await
    }

    #[tool(
        description = "Propose letting more principals (users, group:, tag:) reach a Tailscale Service: added to its TailscaleService's accessFrom.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn grant_service_access(
        &self,
        Parameters(args): Parameters<intents::ServiceAccess>,
    ) -> Result<Json<ProposalCreated>, String> {
        let request = intents::grant_service_access(self.backend.as_ref(), &args).await;
        self.propose("grant_service_access", request).await
    }

    #[tool(
        description = "Propose a KeyRotationPolicy: an auth key (or OAuth client) with these tags kept fresh in a Secret, renewed before it expires and the old one revoked. Never returns key material.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn create_key_rotation(
        &self,
        Parameters(args): Parameters<intents::CreateKeyRotation>,
    ) -> Result<Json<ProposalCreated>, String> {
        self.propose(
            "create_key_rotation",
            Ok(intents::create_key_rotation(&args)),
        )
        .await
    }

    #[tool(
        description = "Propose rotating a KeyRotationPolicy's credential now (e.g. it leaked): a new key is written, the old one revoked after the grace period.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn rotate_key_now(
        &self,
        Parameters(args): Parameters<intents::RotateKeyNow>,
    ) -> Result<Json<ProposalCreated>, String> {
        self.propose(
            "rotate_key_now",
            Ok(intents::rotate_key_now(&args, chrono::Utc::now())),
        )
        .await
    }

    #[tool(
        description = "Propose exposing a Kubernetes Service on the public internet through Tailscale Funnel for a limited time (duration such as 2h): a FunnelExposure with expiresAt, torn down when it ends. For a demo or a webhook receiver; everything else should stay inside the tailnet.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn expose_publicly(
        &self,
        Parameters(args): Parameters<intents::ExposePublicly>,
    ) -> Result<Json<ProposalCreated>, String> {
        let request = intents::expose_publicly(&args, chrono::Utc::now());
        self.propose("expose_publicly", request).await
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
    /// Every propose tool ends here: refused in read-only mode, else validated and created
    /// (a ChangeProposal, or a patch file) by the backend.
    async fn propose(
        &self,
        tool: &str,
        request: Result<ChangeRequest, BackendError>,
    ) -> Result<Json<ProposalCreated>, String> {
        self.refuse_when_read_only(tool)?;
        let request = request.map_err(backend_error)?;
        self.backend
            .propose_change(request)
            .await
            .map(Json)
            .map_err(backend_error)
    }

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
                .enable_prompts()
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

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        Ok(ListPromptsResult {
            prompts: super::prompts::list(),
            ..Default::default()
        })
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let arguments: std::collections::BTreeMap<String, String> = request
            .arguments
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                (k, text)
            })
            .collect();
        let (description, message) = super::prompts::get(&request.name, &arguments)
            .map_err(|e| McpError::invalid_params(e, None))?;
        Ok(GetPromptResult::new(vec![message])
            .with_description(description)
            .into())
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

    /// Every tool the founding documents name (`shared/reference/seed-operations.md`).
    const SEED_TOOLS: &[&str] = &[
        "list_devices",
        "authorize_device",
        "revoke_device",
        "update_device",
        "force_update",
        "get_device_details",
        "get_device_status",
        "get_device_logs",
        "get_acl_policy",
        "update_acl_policy",
        "test_acl_policy",
        "validate_acl_syntax",
        "rollback_acl_policy",
        "configure_dns",
        "add_dns_route",
        "get_dns_status",
        "test_dns_resolution",
        "enable_exit_node",
        "disable_exit_node",
        "list_exit_nodes",
        "enable_subnet_router",
        "get_subnet_routes",
        "enable_magic_dns",
        "configure_nameservers",
        "get_magic_dns_status",
        "device_audit",
        "control_connectivity",
        "tag_operations",
        "lifecycle_management",
        "key_management",
        "policy_analyzer",
        "get_network_status",
        "get_connection_metrics",
        "monitor_bandwidth",
        "get_uptime_statistics",
        "set_alert_rules",
        "get_active_alerts",
        "acknowledge_alert",
        "get_alert_history",
        "get_usage_analytics",
        "generate_network_report",
        "get_audit_logs",
        "device_export",
        "funnel_enable",
        "funnel_disable",
        "funnel_status",
        "funnel_certificate_info",
    ];

    /// The backquoted names in a markdown table cell.
    fn quoted(cell: &str) -> Vec<&str> {
        cell.split('`').skip(1).step_by(2).collect()
    }

    #[test]
    fn the_seed_table_maps_every_seed_tool_to_tools_that_exist() {
        let doc = include_str!("../../docs/mcp.md");
        let section = doc
            .split("## The seeds' tools and what serves them")
            .nth(1)
            .expect("docs/mcp.md has the seed table");
        let tools = tool_names();
        let mut rows = Vec::new();
        for line in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let seed = quoted(cells[1]);
            rows.extend(seed.iter().map(|s| (*s).to_owned()));
            for served in quoted(cells[2]) {
                assert!(
                    tools.iter().any(|t| t == served),
                    "{line}: no tool `{served}`"
                );
            }
        }
        for seed in SEED_TOOLS {
            assert!(
                rows.iter().any(|r| r == seed),
                "no row for the seed tool `{seed}`"
            );
        }
        // The list above is the seeds' own, where the shared references are at hand.
        let seeds = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/reference/seed-operations.md"
        );
        if let Ok(text) = std::fs::read_to_string(seeds) {
            for line in text.lines().filter(|l| l.starts_with("| ")) {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                for name in cells.get(2).map(|c| quoted(c)).unwrap_or_default() {
                    let is_tool = name.chars().all(|c| c.is_ascii_lowercase() || c == '_');
                    if is_tool {
                        assert!(
                            SEED_TOOLS.contains(&name),
                            "seed tool `{name}` missing here"
                        );
                    }
                }
            }
        }
    }

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
