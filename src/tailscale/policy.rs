//! The policy file (ACL), always as raw HuJSON text.
//!
//! Never round-trip the policy through typed structs: that drops comments and any section a
//! struct does not model. Reads keep the `ETag` header exactly as received, and writes echo it
//! unchanged in `If-Match` (re-quoting it is a known cause of spurious 412s).
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::{ApiRequest, HUJSON, RawResponse, TailscaleClient};
use super::error::{ApiError, Result};
use super::wire::nullable;
use crate::error::Category;

/// An HTTP entity tag exactly as the server sent it, quotes and all (e.g. `"e3b0c442…"`).
/// It is opaque: compare and echo it, never parse, trim or re-quote it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ETag(String);

impl ETag {
    /// Wraps a header value as is.
    pub fn new(value: impl Into<String>) -> Self {
        ETag(value.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The policy file text and the version it was read (or written) at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFile {
    pub hujson: String,
    pub etag: ETag,
}

/// The answer of `POST /acl/validate`. The endpoint answers HTTP 200 either way; a failure is
/// a `{message, data}` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidationOutcome {
    Passed,
    Failed {
        message: String,
        failures: Vec<TestFailureData>,
    },
}

/// One failing policy test: the test's source and what went wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TestFailureData {
    /// The test's `src` (older API versions call it `user`).
    #[serde(alias = "src", deserialize_with = "nullable")]
    pub user: String,
    #[serde(deserialize_with = "nullable")]
    pub errors: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub warnings: Vec<String>,
}

/// What `previewFor` names in [`TailscaleClient::preview_policy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviewType {
    /// A user's login name: which rules let this user connect somewhere.
    User,
    /// `ip:port`: which rules allow connections to this destination.
    IpPort,
}

impl PreviewType {
    pub fn as_str(self) -> &'static str {
        match self {
            PreviewType::User => "user",
            PreviewType::IpPort => "ipport",
        }
    }
}

/// The rules of a candidate policy that match the previewed user or destination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PolicyPreview {
    #[serde(deserialize_with = "nullable")]
    pub matches: Vec<PreviewMatch>,
    #[serde(rename = "type", deserialize_with = "nullable")]
    pub preview_type: String,
    #[serde(deserialize_with = "nullable")]
    pub preview_for: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PreviewMatch {
    #[serde(deserialize_with = "nullable")]
    pub users: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub ports: Vec<String>,
    /// Line of the matching rule in the submitted policy.
    #[serde(deserialize_with = "nullable")]
    pub line_number: u32,
}

const ACL: &str = "/tailnet/{tailnet}/acl";
const ACL_VALIDATE: &str = "/tailnet/{tailnet}/acl/validate";

impl TailscaleClient {
    /// The policy file as HuJSON, comments included, with its ETag.
    pub async fn get_policy(&self) -> Result<PolicyFile> {
        let request = ApiRequest::get(ACL).accept(HUJSON);
        let endpoint = request.endpoint();
        let response = self.call(request).await?;
        Ok(PolicyFile {
            hujson: response.text(&endpoint)?,
            etag: etag_of(&response, &endpoint)?,
        })
    }

    /// Replaces the policy file. With `if_match`, the write only happens if the policy is
    /// still at that version; otherwise the error has category `Conflict` (HTTP 412) and the
    /// caller should re-read. Tailscale runs the policy's tests on write: failures come back
    /// as `Invalid` with the failures in `data`.
    pub async fn set_policy(&self, hujson: &str, if_match: Option<&ETag>) -> Result<PolicyFile> {
        let request = ApiRequest::post(ACL)
            .hujson(hujson)
            .accept(HUJSON)
            .if_match(if_match.map(ETag::as_str));
        let endpoint = request.endpoint();
        let response = self.call(request).await.map_err(explain_precondition)?;
        let text = response.text(&endpoint)?;
        Ok(PolicyFile {
            // The API returns the stored policy; if a server answers with no body, what was
            // stored is what we sent.
            hujson: if text.trim().is_empty() {
                hujson.to_owned()
            } else {
                text
            },
            etag: etag_of(&response, &endpoint)?,
        })
    }

    /// Checks a candidate policy (HuJSON) and runs its tests without saving it.
    pub async fn validate_policy(&self, hujson: &str) -> Result<ValidationOutcome> {
        let request = ApiRequest::post(ACL_VALIDATE).hujson(hujson);
        self.validate(request).await
    }

    /// Runs a JSON array of policy tests against the current policy.
    pub async fn validate_tests(&self, tests: &Value) -> Result<ValidationOutcome> {
        let request = ApiRequest::post(ACL_VALIDATE).json(tests)?;
        self.validate(request).await
    }

    async fn validate(&self, request: ApiRequest) -> Result<ValidationOutcome> {
        let endpoint = request.endpoint();
        let response = self.call(request).await?;
        parse_validation(&response.body).map_err(|message| {
            let mut err = ApiError::new(Category::Internal, endpoint, message);
            err.status = Some(response.status);
            err
        })
    }

    /// Which rules of a candidate policy apply to a user (`PreviewType::User`, previewing a
    /// login name) or to a destination (`PreviewType::IpPort`, previewing `ip:port`).
    pub async fn preview_policy(
        &self,
        hujson: &str,
        preview_type: PreviewType,
        preview_for: &str,
    ) -> Result<PolicyPreview> {
        let request = ApiRequest::post("/tailnet/{tailnet}/acl/preview")
            .query("type", preview_type.as_str())
            .query("previewFor", preview_for)
            .hujson(hujson);
        self.call_json(request).await
    }
}

fn etag_of(response: &RawResponse, endpoint: &str) -> Result<ETag> {
    match response.header("etag") {
        Some(value) => Ok(ETag::new(value)),
        None => {
            let mut err = ApiError::new(
                Category::Internal,
                endpoint,
                "the policy response has no ETag header, so a safe write-back is impossible",
            );
            err.status = Some(response.status);
            Err(err)
        }
    }
}

fn explain_precondition(mut err: ApiError) -> ApiError {
    if err.status == Some(412) {
        err.category = Category::Conflict;
        err.message = format!(
            "the policy file changed since it was read (If-Match/ETag mismatch); re-read it and retry: {}",
            err.message
        );
    }
    err
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ValidationBody {
    message: Option<String>,
    data: Option<Vec<TestFailureData>>,
}

/// Empty body, `{}`, `null` or an empty message: passed. A message: failed, with any data.
fn parse_validation(body: &[u8]) -> std::result::Result<ValidationOutcome, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ValidationOutcome::Passed);
    }
    let parsed: Option<ValidationBody> = serde_json::from_slice(body)
        .map_err(|err| format!("cannot decode the validation result: {err}"))?;
    let parsed = parsed.unwrap_or_default();
    let failures = parsed.data.unwrap_or_default();
    match parsed.message.filter(|message| !message.trim().is_empty()) {
        Some(message) => Ok(ValidationOutcome::Failed { message, failures }),
        None if !failures.is_empty() => Ok(ValidationOutcome::Failed {
            message: "policy tests failed".into(),
            failures,
        }),
        None => Ok(ValidationOutcome::Passed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_is_kept_verbatim() {
        for raw in [r#""abc123""#, r#"W/"weak""#, "unquoted", r#""ts-default""#] {
            let etag = ETag::new(raw);
            assert_eq!(etag.as_str(), raw);
            assert_eq!(etag.to_string(), raw);
            assert_eq!(
                serde_json::to_string(&etag).unwrap(),
                serde_json::to_string(raw).unwrap()
            );
        }
    }

    #[test]
    fn empty_answers_mean_passed() {
        for body in [
            "",
            "  \n",
            "{}",
            "null",
            r#"{"message":""}"#,
            r#"{"message":"","data":null}"#,
        ] {
            assert_eq!(
                parse_validation(body.as_bytes()),
                Ok(ValidationOutcome::Passed),
                "{body:?}"
            );
        }
    }

    #[test]
    fn failures_are_parsed_from_a_200_body() {
        let body = r#"{"message":"test(s) failed","data":[
            {"user":"alice@example.com","errors":["alice@example.com can access tag:db:5432"]},
            {"src":"group:eng","errors":null,"warnings":["deprecated"],"extra":1}]}"#;
        let ValidationOutcome::Failed { message, failures } =
            parse_validation(body.as_bytes()).unwrap()
        else {
            panic!("should fail");
        };
        assert_eq!(message, "test(s) failed");
        assert_eq!(failures.len(), 2);
        assert_eq!(failures[0].user, "alice@example.com");
        assert_eq!(
            failures[0].errors,
            ["alice@example.com can access tag:db:5432"]
        );
        assert_eq!(failures[1].user, "group:eng");
        assert!(failures[1].errors.is_empty());
        assert_eq!(failures[1].warnings, ["deprecated"]);
    }

    #[test]
    fn a_message_without_data_still_fails() {
        let outcome = parse_validation(br#"{"message":"line 3: unknown field \"acl\""}"#).unwrap();
        assert_eq!(
            outcome,
            ValidationOutcome::Failed {
                message: r#"line 3: unknown field "acl""#.into(),
                failures: vec![]
            }
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_pass() {
        assert!(parse_validation(b"<html>").is_err());
    }

    #[test]
    fn precondition_failures_become_conflicts() {
        let mut err = ApiError::new(
            Category::Internal,
            "POST /tailnet/{tailnet}/acl",
            "precondition failed, invalid old hash",
        );
        err.status = Some(412);
        let err = explain_precondition(err);
        assert_eq!(err.category, Category::Conflict);
        assert!(err.message.contains("re-read"), "{err}");
        assert!(err.message.contains("invalid old hash"), "{err}");
    }

    #[test]
    fn preview_answers_decode() {
        let json = r#"{"matches":[{"users":["*"],"ports":["*:443"],"lineNumber":12}],"type":"user","previewFor":"a@b.c"}"#;
        let preview: PolicyPreview = serde_json::from_str(json).unwrap();
        assert_eq!(preview.preview_type, "user");
        assert_eq!(preview.matches[0].line_number, 12);
    }
}
