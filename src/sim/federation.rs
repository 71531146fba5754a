//! Workload identity federation: `POST /api/v2/oauth/token-exchange` (form `client_id`, `jwt`)
//! trades an OIDC ID token for an access token when a federated identity (a key of type
//! `federated`) trusts it: the issuer matches, the subject matches the identity's pattern, the
//! audience is the identity's, the token is in its validity window, custom claim rules hold, and
//! the signature verifies against the issuer's JWKS.
//!
//! The real API fetches the JWKS from the issuer's discovery document; the sim has no network,
//! so tests register it ([`SimTailnet::trust_issuer`]). [`TestIssuer`] is such an issuer: an
//! ES256 key pair that mints ID tokens, as a cluster's service-account issuer would.
use std::collections::HashMap;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents, UnparsedPublicKey,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde_json::{Value, json};

use super::SimTailnet;
use super::codec::parse_form;
use super::error::{SimError, SimResult};
use super::state::Key;
use crate::tailscale::jwt::{Jwt, decode_segment, encode_segment};

/// Clock skew tolerated on `exp` and `nbf`, as OIDC verifiers allow.
const LEEWAY_SECONDS: i64 = 60;

/// `POST /api/v2/oauth/token-exchange`.
pub(crate) async fn token_exchange(
    State(sim): State<SimTailnet>,
    body: Bytes,
) -> SimResult<Json<Value>> {
    let form: HashMap<String, String> = parse_form(&String::from_utf8_lossy(&body))
        .into_iter()
        .collect();
    let (Some(client_id), Some(token)) = (form.get("client_id"), form.get("jwt")) else {
        return Err(SimError::bad_request("client_id and jwt are required"));
    };
    let identity = sim
        .inner
        .state()
        .keys
        .iter()
        .find(|k| &k.id == client_id && k.key_type == "federated" && k.revoked.is_none())
        .cloned()
        .ok_or_else(|| SimError::unauthorized("invalid client_id"))?;
    let jwt = Jwt::parse(token).map_err(|e| SimError::bad_request(format!("invalid jwt: {e}")))?;
    let jwks = sim
        .inner
        .state()
        .trusted_issuers
        .get(identity.issuer.as_deref().unwrap_or_default())
        .cloned();
    check_token(&identity, &jwt, jwks.as_ref(), sim.inner.now().timestamp())
        .map_err(|reason| SimError::unauthorized(format!("invalid jwt: {reason}")))?;
    let lifetime = sim.inner.config.token_lifetime;
    let access_token =
        sim.inner
            .tokens()
            .issue(client_id, lifetime, super::auth::TokenOwner::Federated);
    Ok(Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs(),
        "scope": identity.scopes.join(" "),
    })))
}

/// Why `jwt` does not authenticate as `identity`, in the words a person debugging the trust
/// relationship needs (which claim, what was expected).
fn check_token(identity: &Key, jwt: &Jwt, jwks: Option<&Value>, now: i64) -> Result<(), String> {
    let issuer = identity.issuer.as_deref().unwrap_or_default();
    if jwt.claim("iss") != Some(issuer) {
        return Err(format!(
            "issuer {:?} is not the federated identity's issuer {issuer:?}",
            jwt.claim("iss").unwrap_or_default()
        ));
    }
    let jwks = jwks.ok_or_else(|| format!("could not fetch the signing keys of {issuer}"))?;
    verify_signature(jwt, jwks)?;
    let audience = identity.audience.as_deref().unwrap_or_default();
    if !jwt.audiences().contains(&audience) {
        return Err(format!(
            "audience {:?} does not include the federated identity's audience {audience:?}",
            jwt.audiences()
        ));
    }
    let subject = jwt.claim("sub").unwrap_or_default();
    let pattern = identity.subject.as_deref().unwrap_or_default();
    if !glob_matches(pattern, subject) {
        return Err(format!(
            "subject {subject:?} does not match the federated identity's subject {pattern:?}"
        ));
    }
    match jwt.time_claim("exp") {
        None => return Err("the token has no exp".into()),
        Some(exp) if exp + LEEWAY_SECONDS <= now => return Err("the token expired".into()),
        Some(_) => {}
    }
    if jwt
        .time_claim("nbf")
        .is_some_and(|nbf| nbf > now + LEEWAY_SECONDS)
    {
        return Err("the token is not valid yet (nbf)".into());
    }
    let rules = identity
        .custom_claim_rules
        .as_ref()
        .and_then(Value::as_object);
    for (claim, pattern) in rules.into_iter().flatten() {
        let value = jwt.claim(claim).unwrap_or_default();
        if !glob_matches(pattern.as_str().unwrap_or_default(), value) {
            return Err(format!("claim {claim:?} does not match the rule {pattern}"));
        }
    }
    Ok(())
}

/// Verifies ES256 (P-256) or RS256 against the JWKS key named by `kid` (or the only key).
fn verify_signature(jwt: &Jwt, jwks: &Value) -> Result<(), String> {
    let alg = jwt.header.get("alg").and_then(Value::as_str).unwrap_or("");
    let kid = jwt.header.get("kid").and_then(Value::as_str);
    let keys: Vec<&Value> = jwks
        .get("keys")
        .and_then(Value::as_array)
        .map(|keys| keys.iter().collect())
        .unwrap_or_default();
    let key = match kid {
        Some(kid) => keys
            .iter()
            .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid)),
        None if keys.len() == 1 => keys.first(),
        None => None,
    }
    .ok_or_else(|| {
        format!(
            "no signing key {} in the issuer's JWKS",
            kid.unwrap_or("(no kid)")
        )
    })?;
    let coordinate = |name: &str| {
        key.get(name)
            .and_then(Value::as_str)
            .and_then(decode_segment)
            .ok_or_else(|| format!("the JWKS key has no valid {name}"))
    };
    let verified = match alg {
        "ES256" => {
            let mut point = vec![0x04];
            point.extend(coordinate("x")?);
            point.extend(coordinate("y")?);
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .verify(jwt.signing_input(), jwt.signature())
                .is_ok()
        }
        "RS256" => RsaPublicKeyComponents {
            n: coordinate("n")?,
            e: coordinate("e")?,
        }
        .verify(
            &RSA_PKCS1_2048_8192_SHA256,
            jwt.signing_input(),
            jwt.signature(),
        )
        .is_ok(),
        other => return Err(format!("unsupported alg {other:?} (ES256 or RS256)")),
    };
    if verified {
        Ok(())
    } else {
        Err("the signature does not verify against the issuer's keys".into())
    }
}

/// `*` matches any run of characters (including none); everything else matches itself.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let mut pieces: Vec<&str> = rest.split('*').collect();
    let last = pieces.pop().unwrap_or_default();
    for piece in pieces {
        match remaining.find(piece) {
            Some(at) => remaining = &remaining[at + piece.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

impl SimTailnet {
    /// Makes `issuer`'s signing keys (a JWKS document, `{"keys": [...]}`) known, as the real API
    /// would fetch them from the issuer's discovery document.
    pub fn trust_issuer(&self, issuer: &str, jwks: Value) {
        self.inner
            .state()
            .trusted_issuers
            .insert(issuer.to_owned(), jwks);
    }

    /// Creates a federated identity (what `POST /keys` with `keyType: federated` does) and
    /// returns its client id.
    pub fn add_federated_identity(
        &self,
        issuer: &str,
        subject: &str,
        audience: &str,
        tags: &[&str],
    ) -> String {
        let now = self.inner.now();
        let mut state = self.inner.state();
        let id = format!("k{}CNTRL", state.alnum(7));
        state.keys.push(Key {
            description: "workload identity".into(),
            scopes: vec!["all".into()],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            issuer: Some(issuer.to_owned()),
            subject: Some(subject.to_owned()),
            audience: Some(audience.to_owned()),
            ..Key::new(id.clone(), "federated", now)
        });
        id
    }

    /// Changes a federated identity's subject pattern, as an admin editing it in the console.
    pub fn set_federated_subject(&self, client_id: &str, subject: &str) {
        let mut state = self.inner.state();
        if let Some(key) = state.keys.iter_mut().find(|k| k.id == client_id) {
            key.subject = Some(subject.to_owned());
        }
    }
}

/// An OIDC issuer for tests: an ES256 key, its JWKS, and ID tokens signed with it.
pub struct TestIssuer {
    issuer: String,
    key: EcdsaKeyPair,
}

impl TestIssuer {
    pub fn new(issuer: &str) -> TestIssuer {
        TestIssuer {
            issuer: issuer.to_owned(),
            key: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .expect("generate a P-256 key"),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// `{"keys": [<the public key as a JWK>]}`.
    pub fn jwks(&self) -> Value {
        let point = self.key.public_key().as_ref();
        json!({"keys": [{
            "kty": "EC",
            "crv": "P-256",
            "alg": "ES256",
            "use": "sig",
            "kid": "test-1",
            "x": encode_segment(&point[1..33]),
            "y": encode_segment(&point[33..65]),
        }]})
    }

    /// A token for `subject` and `audience`, valid from now for `lifetime_seconds` (negative:
    /// already expired), as the kubelet projects one.
    pub fn token(&self, subject: &str, audience: &str, lifetime_seconds: i64) -> String {
        let now = chrono::Utc::now().timestamp();
        self.sign(&json!({
            "iss": self.issuer,
            "sub": subject,
            "aud": [audience],
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_seconds,
        }))
    }

    /// Signs arbitrary claims.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "kid": "test-1", "typ": "JWT"});
        let input = format!(
            "{}.{}",
            encode_segment(header.to_string().as_bytes()),
            encode_segment(claims.to_string().as_bytes())
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("sign with a P-256 key");
        format!("{input}.{}", encode_segment(signature.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://kubernetes.default.svc";
    const SUBJECT: &str = "system:serviceaccount:tailnet-system:tailnet-operator";

    fn identity() -> Key {
        let sim = SimTailnet::new(Default::default());
        let id = sim.add_federated_identity(
            ISSUER,
            "system:serviceaccount:tailnet-system:*",
            "api.tailscale.com/test",
            &["tag:k8s-operator"],
        );
        let state = sim.inner.state();
        state.keys.iter().find(|k| k.id == id).unwrap().clone()
    }

    fn check(token: &str, jwks: Option<&Value>) -> Result<(), String> {
        let now = chrono::Utc::now().timestamp();
        check_token(&identity(), &Jwt::parse(token).unwrap(), jwks, now)
    }

    #[test]
    fn a_token_from_the_trusted_issuer_is_accepted() {
        let issuer = TestIssuer::new(ISSUER);
        let token = issuer.token(SUBJECT, "api.tailscale.com/test", 3600);
        assert_eq!(check(&token, Some(&issuer.jwks())), Ok(()));
    }

    #[test]
    fn each_wrong_claim_is_named() {
        let issuer = TestIssuer::new(ISSUER);
        let jwks = issuer.jwks();
        let cases = [
            (issuer.token(SUBJECT, "other", 3600), "audience"),
            (
                issuer.token(
                    "system:serviceaccount:default:x",
                    "api.tailscale.com/test",
                    3600,
                ),
                "subject",
            ),
            (
                issuer.token(SUBJECT, "api.tailscale.com/test", -3600),
                "expired",
            ),
            (
                TestIssuer::new("https://elsewhere.example").token(SUBJECT, "a", 60),
                "issuer",
            ),
        ];
        for (token, word) in cases {
            let err = check(&token, Some(&jwks)).unwrap_err();
            assert!(err.contains(word), "{err} should name the {word}");
        }
    }

    #[test]
    fn a_token_signed_by_another_key_is_refused() {
        let trusted = TestIssuer::new(ISSUER);
        let impostor = TestIssuer::new(ISSUER);
        let token = impostor.token(SUBJECT, "api.tailscale.com/test", 3600);
        let err = check(&token, Some(&trusted.jwks())).unwrap_err();
        assert!(err.contains("signature"), "{err}");
        let err = check(&token, None).unwrap_err();
        assert!(err.contains("signing keys"), "{err}");
    }

    #[test]
    fn subject_patterns_match_like_the_admin_console_describes() {
        assert!(glob_matches(
            "repo:org/*:ref:refs/heads/main",
            "repo:org/app:ref:refs/heads/main"
        ));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("a*b*c", "abc"));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exactly"));
        assert!(!glob_matches("a*b", "ab-c"));
        assert!(!glob_matches(
            "system:serviceaccount:ns:*",
            "system:serviceaccount:other:sa"
        ));
    }
}
