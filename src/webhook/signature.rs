//! The `Tailscale-Webhook-Signature` header: `t=<unix seconds>,v1=<hex>`, where `v1` is
//! HMAC-SHA256 over `"<t>.<raw body>"` keyed with the endpoint's secret. Verification compares
//! in constant time, accepts any of several secrets (the old and the new one while a rotation
//! overlaps) and refuses timestamps outside a tolerance (replays).
use std::time::Duration;

use aws_lc_rs::hmac;

use crate::secret::Secret;

/// The header Tailscale signs deliveries with.
pub const HEADER: &str = "Tailscale-Webhook-Signature";

/// Why a delivery's signature is refused. Never carries the secret or the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no signature header")]
    Missing,
    #[error("the signature header is not t=<unix seconds>,v1=<hex>")]
    Malformed,
    #[error("the signature's timestamp is {0}s away from now, beyond the tolerance")]
    Stale(i64),
    #[error("the signature does not match any of the endpoint's secrets")]
    Mismatch,
}

/// The header value for `body` sent at `timestamp` (Unix seconds), as Tailscale computes it.
pub fn sign(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes());
    let tag = hmac::sign(&key, &signed_bytes(timestamp, body));
    format!("t={timestamp},v1={}", hex::encode(tag.as_ref()))
}

/// Checks `header` against `body` with each of `secrets`, at `now` (Unix seconds).
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[Secret],
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let (timestamp, signatures) = parse(header)?;
    let skew = now - timestamp;
    if skew.unsigned_abs() > tolerance.as_secs() {
        return Err(SignatureError::Stale(skew));
    }
    let message = signed_bytes(timestamp, body);
    let matches = secrets.iter().any(|secret| {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes());
        // hmac::verify compares in constant time.
        signatures
            .iter()
            .any(|signature| hmac::verify(&key, &message, signature).is_ok())
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn signed_bytes(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    message
}

/// `t=…` and every `v1=…` (hex-decoded) of the header.
fn parse(header: &str) -> Result<(i64, Vec<Vec<u8>>), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => {
                timestamp = Some(value.parse().map_err(|_| SignatureError::Malformed)?);
            }
            Some(("v1", value)) => {
                signatures.push(hex::decode(value).map_err(|_| SignatureError::Malformed)?);
            }
            // Other schemes may be added; they are ignored, as Stripe-style verifiers do.
            Some(_) => {}
            None => return Err(SignatureError::Malformed),
        }
    }
    match (timestamp, signatures.is_empty()) {
        (Some(t), false) => Ok((t, signatures)),
        _ => Err(SignatureError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTES_5: Duration = Duration::from_secs(300);

    fn secret(s: &str) -> Secret {
        Secret::new(s)
    }

    #[test]
    fn a_signed_body_verifies_with_its_secret_only() {
        let body = br#"[{"type":"policyUpdate"}]"#;
        let header = sign(&secret("tskey-webhook-a"), 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="));
        let now = 1_700_000_010;
        assert_eq!(
            verify(
                Some(&header),
                body,
                &[secret("tskey-webhook-a")],
                now,
                MINUTES_5
            ),
            Ok(())
        );
        assert_eq!(
            verify(Some(&header), body, &[secret("other")], now, MINUTES_5),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                Some(&header),
                b"[]",
                &[secret("tskey-webhook-a")],
                now,
                MINUTES_5
            ),
            Err(SignatureError::Mismatch),
            "a changed body"
        );
    }

    #[test]
    fn during_a_rotation_either_secret_verifies() {
        let body = b"[]";
        let header = sign(&secret("new"), 100, body);
        let both = [secret("old"), secret("new")];
        assert_eq!(verify(Some(&header), body, &both, 100, MINUTES_5), Ok(()));
    }

    #[test]
    fn replays_and_malformed_headers_are_refused() {
        let body = b"[]";
        let header = sign(&secret("s"), 1000, body);
        assert_eq!(
            verify(Some(&header), body, &[secret("s")], 1000 + 301, MINUTES_5),
            Err(SignatureError::Stale(301))
        );
        assert_eq!(
            verify(None, body, &[secret("s")], 1000, MINUTES_5),
            Err(SignatureError::Missing)
        );
        for bad in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,v1=zz", "garbage"] {
            assert_eq!(
                verify(Some(bad), body, &[secret("s")], 1, MINUTES_5),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn errors_never_show_the_secret() {
        let err = verify(
            Some("t=1,v1=00"),
            b"body",
            &[secret("tskey-webhook-SECRET")],
            1,
            MINUTES_5,
        )
        .unwrap_err();
        assert!(!format!("{err} {err:?}").contains("SECRET"));
    }
}
