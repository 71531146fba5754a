//! Just enough of JSON Web Tokens for workload identity federation: split a compact token into
//! its header, claims and signature. The client only peeks at the claims (to say "this token
//! expired" or "wrong audience" before the API does, naming the file); it never trusts them.
//! The simulated tailnet verifies signatures ([`crate::sim::federation`]).
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// A parsed, unverified compact JWT.
#[derive(Debug, Clone)]
pub struct Jwt {
    pub header: Value,
    pub claims: Value,
    signing_input: String,
    signature: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("not a JWT: expected three base64url segments separated by dots")]
    Shape,
    #[error("not a JWT: the {0} segment is not base64url")]
    Encoding(&'static str),
    #[error("not a JWT: the {0} segment is not a JSON object")]
    Json(&'static str),
}

impl Jwt {
    pub fn parse(token: &str) -> Result<Jwt, JwtError> {
        let token = token.trim();
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Shape);
        };
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| JwtError::Encoding("signature"))?;
        Ok(Jwt {
            header: json_segment(header, "header")?,
            claims: json_segment(claims, "claims")?,
            signing_input: format!("{header}.{claims}"),
            signature,
        })
    }

    /// The string claim `name`, if present.
    pub fn claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// `aud`, which may be one string or a list.
    pub fn audiences(&self) -> Vec<&str> {
        match self.claims.get("aud") {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// A numeric-date claim (`exp`, `nbf`, `iat`) in Unix seconds.
    pub fn time_claim(&self, name: &str) -> Option<i64> {
        let value = self.claims.get(name)?;
        value.as_i64().or_else(|| value.as_f64().map(|f| f as i64))
    }

    /// `<header>.<claims>` as sent: the bytes the signature covers.
    pub fn signing_input(&self) -> &[u8] {
        self.signing_input.as_bytes()
    }

    pub fn signature(&self) -> &[u8] {
        &self.signature
    }
}

fn json_segment(segment: &str, name: &'static str) -> Result<Value, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::Encoding(name))?;
    match serde_json::from_slice(&bytes) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err(JwtError::Json(name)),
    }
}

/// base64url without padding, as JWT segments and JWK coordinates are written.
pub fn encode_segment(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The inverse of [`encode_segment`].
pub fn decode_segment(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn token(header: &Value, claims: &Value, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            encode_segment(header.to_string().as_bytes()),
            encode_segment(claims.to_string().as_bytes()),
            encode_segment(signature)
        )
    }

    #[test]
    fn parses_claims_and_keeps_the_signed_bytes() {
        let text = token(
            &json!({"alg": "ES256", "kid": "k1"}),
            &json!({"iss": "https://issuer.example", "aud": ["a", "b"], "exp": 1700000000}),
            b"sig",
        );
        let jwt = Jwt::parse(&format!("{text}\n")).unwrap();
        assert_eq!(jwt.claim("iss"), Some("https://issuer.example"));
        assert_eq!(jwt.audiences(), vec!["a", "b"]);
        assert_eq!(jwt.time_claim("exp"), Some(1_700_000_000));
        assert_eq!(jwt.signature(), b"sig");
        assert!(text.starts_with(std::str::from_utf8(jwt.signing_input()).unwrap()));
    }

    #[test]
    fn one_string_audience_is_a_list_of_one() {
        let jwt = Jwt::parse(&token(&json!({}), &json!({"aud": "only"}), b"")).unwrap();
        assert_eq!(jwt.audiences(), vec!["only"]);
    }

    #[test]
    fn malformed_tokens_say_which_part_is_wrong() {
        assert_eq!(Jwt::parse("a.b").unwrap_err(), JwtError::Shape);
        assert_eq!(Jwt::parse("a.b.c.d").unwrap_err(), JwtError::Shape);
        assert_eq!(
            Jwt::parse("!!.e30.").unwrap_err(),
            JwtError::Encoding("header")
        );
        let not_object = format!("e30.{}.", encode_segment(b"[1]"));
        assert_eq!(
            Jwt::parse(&not_object).unwrap_err(),
            JwtError::Json("claims")
        );
    }
}
