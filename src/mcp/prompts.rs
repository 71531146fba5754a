//! MCP prompts: the common workflows as instructions an assistant follows with this server's
//! tools. Each names the tools in the order to use them and keeps the rule of the server: read
//! freely, change only by proposing, a human approves.
use std::collections::BTreeMap;

use rmcp::model::{Prompt, PromptArgument, PromptMessage, Role};

/// One workflow: its name, what it is for, its arguments (name, description, required) and
/// the instructions, where `{arg}` is replaced by the argument's value. Backquotes in the
/// instructions are for tool names only (a test checks each is a tool of the server).
struct Workflow {
    name: &'static str,
    description: &'static str,
    arguments: &'static [(&'static str, &'static str, bool)],
    text: &'static str,
}

const WORKFLOWS: &[Workflow] = &[
    Workflow {
        name: "review_drift",
        description: "Find what was changed outside git (e.g. in the admin console), show who \
                      changed it, and decide with the person whether to keep or revert it.",
        arguments: &[],
        text: "Review drift in the tailnet. 1. Call `overview`: it lists drifted resources. \
               2. For each, call `get_resource` and show the drift diff (JSON pointers with the \
               desired and the live value) and changedBy (who, where, when). 3. Ask the person, \
               for each: keep the change or revert it. To keep it, call `adopt_drift` (for a \
               policy composed of a Base and Fragments, the change goes to the source that owns \
               it); show the proposal's YAML diff and say a human must approve it. To revert it, \
               nothing needs proposing when the resource's driftPolicy is Correct (the operator \
               puts it back at its next resync); with driftPolicy Report, propose_patch the \
               driftPolicy to Correct. Never claim a change was made: proposals wait for approval.",
    },
    Workflow {
        name: "onboard_device",
        description: "Bring a new device into service: authorize it, tag it, check what it can \
                      reach.",
        arguments: &[
            ("device", "The device's machine name (hostname)", true),
            (
                "tags",
                "Tags to give it, comma-separated, e.g. tag:server",
                false,
            ),
        ],
        text: "Onboard the device {device}. 1. Call `list_devices` with nameContains \
               \"{device}\" and show its owner, OS, client version, authorized and connected. \
               2. If it is not authorized, propose `authorize_devices` for it. 3. If tags were \
               asked ({tags}), check they are in the policy's tagOwners with `get_policy`, then \
               propose `tag_devices`. 4. With `check_access`, show what the tagged device can \
               reach and who can reach it on the usual ports (22, 443), using the desired \
               policy. 5. Summarize the proposals; a human approves each.",
    },
    Workflow {
        name: "expose_for_demo",
        description: "Put a Kubernetes Service on the public internet through Funnel for a \
                      limited time, with its expiry.",
        arguments: &[
            ("service", "The Service's name", true),
            ("namespace", "Its namespace", true),
            ("port", "The Service port", true),
            ("duration", "How long, e.g. 2h", true),
        ],
        text: "Expose Service {namespace}/{service} port {port} publicly for {duration}. \
               1. Call `get_resource` on the ManagedTailnet: HTTPS must be on and the namespace \
               allowed (spec.funnel.allowedNamespaces). 2. Propose `expose_publicly` with the \
               duration; show the YAML (expiresAt) and say that everything is torn down at \
               expiry. 3. Say the public URL appears in the FunnelExposure's status once a \
               human approved and it is Active (`get_resource`). Never propose an exposure \
               without an expiry.",
    },
    Workflow {
        name: "rotate_leaked_key",
        description: "Replace a credential that leaked: rotate it now if a KeyRotationPolicy \
                      manages it, otherwise put one in charge.",
        arguments: &[("key", "The key id, or the KeyRotationPolicy's name", true)],
        text: "A credential leaked: {key}. 1. Call `list_auth_keys` and find it (metadata only: \
               never ask for or show key material). 2. Call `list_resources` with kind \
               KeyRotationPolicy: if one manages it, propose `rotate_key_now` for it (a new key \
               is written, the old one revoked after the grace period). 3. If none does, propose \
               `create_key_rotation` with the same tags so it is managed from now on, and tell \
               the person to revoke the leaked key in the admin console now. 4. Summarize what \
               a human must approve.",
    },
];

/// Every prompt, for `prompts/list`.
pub fn list() -> Vec<Prompt> {
    WORKFLOWS
        .iter()
        .map(|w| {
            let arguments = w
                .arguments
                .iter()
                .map(|(name, description, required)| {
                    PromptArgument::new(*name)
                        .with_description(*description)
                        .with_required(*required)
                })
                .collect();
            Prompt::new(w.name, Some(w.description), Some(arguments))
        })
        .collect()
}

/// The prompt `name` with `arguments` filled in; an error names what is unknown or missing.
pub fn get(
    name: &str,
    arguments: &BTreeMap<String, String>,
) -> Result<(String, PromptMessage), String> {
    let workflow = WORKFLOWS.iter().find(|w| w.name == name).ok_or_else(|| {
        let names: Vec<&str> = WORKFLOWS.iter().map(|w| w.name).collect();
        format!("no prompt {name:?}; prompts: {}", names.join(", "))
    })?;
    let mut text = workflow.text.to_owned();
    for (arg, _, required) in workflow.arguments {
        let value = arguments.get(*arg).map(String::as_str).unwrap_or_default();
        if *required && value.is_empty() {
            return Err(format!("prompt {name} needs the argument {arg:?}"));
        }
        let shown = if value.is_empty() { "none" } else { value };
        text = text.replace(&format!("{{{arg}}}"), shown);
    }
    Ok((
        workflow.description.to_owned(),
        PromptMessage::new_text(Role::User, text),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prompt_names_only_tools_the_server_has_and_fills_its_arguments() {
        let tools = crate::mcp::server::tool_names();
        for workflow in WORKFLOWS {
            for word in workflow.text.split('`').skip(1).step_by(2) {
                assert!(
                    tools.iter().any(|t| t == word),
                    "{}: `{word}` is not a tool",
                    workflow.name
                );
            }
        }
        let args = BTreeMap::from([
            ("service".to_owned(), "grafana".to_owned()),
            ("namespace".to_owned(), "monitoring".to_owned()),
            ("port".to_owned(), "3000".to_owned()),
            ("duration".to_owned(), "2h".to_owned()),
        ]);
        let (_, message) = get("expose_for_demo", &args).unwrap();
        let text = serde_json::to_string(&message).unwrap();
        assert!(
            text.contains("monitoring/grafana port 3000 publicly for 2h"),
            "{text}"
        );
        assert!(!text.contains('{') || !text.contains("{service}"));
        assert!(
            get("expose_for_demo", &BTreeMap::new())
                .unwrap_err()
                .contains("service")
        );
        assert!(get("nope", &args).unwrap_err().contains("review_drift"));
    }
}
