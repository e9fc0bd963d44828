//! JWT authorizers (API Gateway HTTP API semantics): a bearer token signed by one of the
//! issuer's keys (RS*/PS*, ES256/ES384, EdDSA — never a shared secret), for one of the
//! audiences, unexpired, holding one of the route's scopes. Pure: the time is an argument.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use nimbus_core::access::JwtAuthorizer;
use serde_json::{Map, Value, json};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_S: u64 = 30;
/// The longest token looked at (a header carries it; bigger is not a JWT we issue for).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// An issuer's verification keys.
pub struct KeySet {
    keys: Vec<Key>,
}

struct Key {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

/// Why a key set cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    /// Not a JWKS document.
    #[error("not a JWKS document: {0}")]
    Malformed(String),
    /// No key in it can verify signatures.
    #[error("the key set holds no usable signing key (RSA, EC P-256/P-384 or Ed25519)")]
    NoUsableKey,
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token was sent.
    #[error("no token where the authorizer looks for one (by default `Authorization: Bearer …`)")]
    Missing,
    /// Not a signed JWT.
    #[error("the token is not a valid JWT: {0}")]
    Malformed(String),
    /// Signed by no key of the issuer.
    #[error("the token's key `{0}` is not one of the issuer's keys")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// Past `exp`.
    #[error("the token has expired")]
    Expired,
    /// Before `nbf`.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// Another issuer's.
    #[error("the token's issuer is not `{0}`")]
    Issuer(String),
    /// For another audience.
    #[error("the token is not for this API's audience")]
    Audience,
    /// Valid, but without the scope the route needs.
    #[error("the token lacks the scope this route needs (one of: {})", .0.join(", "))]
    Scope(Vec<String>),
}

impl TokenError {
    /// Whether this is a valid caller without the right (403), not an unknown one (401).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::Scope(_))
    }
}

/// A verified token's claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// Every claim.
    pub claims: Map<String, Value>,
    /// Its scopes (`scope`, space-separated, or `scp`, a list).
    pub scopes: Vec<String>,
    /// Its `exp`, when it has one.
    pub expires_s: Option<u64>,
}

impl Verified {
    /// Whether it holds one of `required` (none required: yes).
    pub fn check_scopes(&self, required: &[String]) -> Result<(), TokenError> {
        if required.is_empty() || required.iter().any(|r| self.scopes.contains(r)) {
            Ok(())
        } else {
            Err(TokenError::Scope(required.to_vec()))
        }
    }

    /// What the function is told (`requestContext.authorizer`): claims as strings, as API
    /// Gateway passes them, and the scopes.
    pub fn context(&self) -> Value {
        let claims: Map<String, Value> = self
            .claims
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), Value::String(text))
            })
            .collect();
        json!({ "jwt": { "claims": claims, "scopes": self.scopes } })
    }
}

fn algorithms(jwk: &Jwk) -> Vec<Algorithm> {
    if let Some(alg) = jwk.common.key_algorithm {
        return match alg {
            KeyAlgorithm::RS256 => vec![Algorithm::RS256],
            KeyAlgorithm::RS384 => vec![Algorithm::RS384],
            KeyAlgorithm::RS512 => vec![Algorithm::RS512],
            KeyAlgorithm::PS256 => vec![Algorithm::PS256],
            KeyAlgorithm::PS384 => vec![Algorithm::PS384],
            KeyAlgorithm::PS512 => vec![Algorithm::PS512],
            KeyAlgorithm::ES256 => vec![Algorithm::ES256],
            KeyAlgorithm::ES384 => vec![Algorithm::ES384],
            KeyAlgorithm::EdDSA => vec![Algorithm::EdDSA],
            // Shared secrets and encryption algorithms never verify a caller.
            _ => Vec::new(),
        };
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => Vec::new(),
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        _ => Vec::new(),
    }
}

impl KeySet {
    /// Parses a JWKS document, keeping the keys that can verify signatures.
    pub fn parse(doc: &[u8]) -> Result<Self, KeySetError> {
        #[derive(serde::Deserialize)]
        struct Doc {
            keys: Vec<Value>,
        }
        let doc: Doc =
            serde_json::from_slice(doc).map_err(|e| KeySetError::Malformed(e.to_string()))?;
        let keys: Vec<Key> = doc
            .keys
            .into_iter()
            // A key this crate does not know (another kty) is skipped, as RFC 7517 says.
            .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
            .filter(|jwk| {
                !matches!(
                    jwk.common.public_key_use,
                    Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
                )
            })
            .filter_map(|jwk| {
                let algorithms = algorithms(&jwk);
                let key = DecodingKey::from_jwk(&jwk).ok()?;
                (!algorithms.is_empty()).then(|| Key {
                    kid: jwk.common.key_id.clone(),
                    algorithms,
                    key,
                })
            })
            .collect();
        if keys.is_empty() {
            return Err(KeySetError::NoUsableKey);
        }
        Ok(Self { keys })
    }

    /// Whether a key with this id is in the set.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// The token of an `Authorization` value (`Bearer` prefix optional, as on API Gateway).
pub fn bearer(value: &str) -> &str {
    let v = value.trim();
    match v.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => v[7..].trim_start(),
        _ => v,
    }
}

/// The key id a token names, read before verifying (to refresh a key set that lacks it).
pub fn token_kid(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok()?.kid
}

/// Verifies `token` for `authorizer` with `keys` at `now_s` (unix seconds).
pub fn verify(
    token: &str,
    keys: &KeySet,
    authorizer: &JwtAuthorizer,
    now_s: u64,
) -> Result<Verified, TokenError> {
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed("too long".into()));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|e| {
        TokenError::Malformed(
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::Json(_) => {
                    "its header is not JSON naming a signing algorithm (RS*, PS*, ES256, ES384, EdDSA)"
                }
                jsonwebtoken::errors::ErrorKind::Base64(_) => "a part is not base64url",
                _ => "it is not three dot-separated parts",
            }
            .into(),
        )
    })?;
    let candidates: Vec<&Key> = keys
        .keys
        .iter()
        .filter(|k| k.algorithms.contains(&header.alg))
        .filter(|k| match (&header.kid, &k.kid) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        })
        .collect();
    if candidates.is_empty() {
        return Err(TokenError::UnknownKey(
            header.kid.unwrap_or_else(|| format!("{:?}", header.alg)),
        ));
    }
    // Signature and algorithm only: the claims are checked below, against `now_s`.
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let mut last = TokenError::BadSignature;
    for key in candidates {
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
            Ok(data) => return claims(data.claims, authorizer, now_s),
            Err(e) => {
                last = match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                    _ => TokenError::Malformed(e.to_string()),
                }
            }
        }
    }
    Err(last)
}

fn number(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .map(|n| Some(n as u64))
            .ok_or_else(|| TokenError::Malformed(format!("`{name}` is not a number"))),
    }
}

fn claims(
    claims: Map<String, Value>,
    authorizer: &JwtAuthorizer,
    now_s: u64,
) -> Result<Verified, TokenError> {
    let expires_s = number(&claims, "exp")?;
    if expires_s.is_some_and(|exp| exp + LEEWAY_S <= now_s) {
        return Err(TokenError::Expired);
    }
    if number(&claims, "nbf")?.is_some_and(|nbf| nbf > now_s + LEEWAY_S) {
        return Err(TokenError::NotYetValid);
    }
    if claims.get("iss").and_then(Value::as_str) != Some(authorizer.issuer.as_str()) {
        return Err(TokenError::Issuer(authorizer.issuer.clone()));
    }
    // `aud` (a string or a list), or without it `client_id` (Cognito access tokens).
    let audience_ok = match claims.get("aud") {
        Some(Value::String(a)) => authorizer.audiences.contains(a),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| authorizer.audiences.iter().any(|x| x == a)),
        Some(_) => false,
        None => claims
            .get("client_id")
            .and_then(Value::as_str)
            .is_some_and(|c| authorizer.audiences.iter().any(|x| x == c)),
    };
    if !audience_ok {
        return Err(TokenError::Audience);
    }
    let scopes = match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => s.split_whitespace().map(str::to_string).collect(),
        (_, Some(Value::Array(list))) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        (_, Some(Value::String(s))) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    };
    Ok(Verified {
        claims,
        scopes,
        expires_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use nimbus_core::access::JwtKeys;

    // An Ed25519 test key pair (RFC 8037 appendix A.1), generated for the RFC, not a secret.
    const ED_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g
-----END PRIVATE KEY-----";
    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn jwks(kid: &str) -> Vec<u8> {
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": kid, "use": "sig"}]})
            .to_string()
            .into_bytes()
    }

    fn authorizer() -> JwtAuthorizer {
        JwtAuthorizer {
            name: "users".into(),
            issuer: "https://auth.example.com/".into(),
            audiences: vec!["shop".into()],
            keys: JwtKeys::Inline(String::new()),
            identity_source: nimbus_core::access::IdentitySource::authorization(),
        }
    }

    fn token(kid: &str, claims: Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.into());
        let key = EncodingKey::from_ed_pem(ED_PRIVATE_PEM.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    const NOW: u64 = 1_800_000_000;

    fn good() -> Value {
        json!({"iss": "https://auth.example.com/", "aud": "shop", "sub": "u1",
               "exp": NOW + 60, "scope": "orders:read profile", "n": 3})
    }

    #[test]
    fn a_good_token_verifies_with_its_claims_and_scopes() {
        let keys = KeySet::parse(&jwks("k1")).unwrap();
        let v = verify(&token("k1", good()), &keys, &authorizer(), NOW).unwrap();
        assert_eq!(v.claims["sub"], "u1");
        assert_eq!(v.scopes, ["orders:read", "profile"]);
        assert_eq!(v.expires_s, Some(NOW + 60));
        assert!(v.check_scopes(&["orders:read".into()]).is_ok());
        assert_eq!(
            v.check_scopes(&["orders:write".into()]),
            Err(TokenError::Scope(vec!["orders:write".into()]))
        );
        assert_eq!(v.context()["jwt"]["claims"]["n"], "3");
        assert_eq!(v.context()["jwt"]["scopes"][1], "profile");
    }

    #[test]
    fn each_broken_claim_is_named() {
        let keys = KeySet::parse(&jwks("k1")).unwrap();
        let with = |k: &str, v: Value| {
            let mut c = good();
            c[k] = v;
            verify(&token("k1", c), &keys, &authorizer(), NOW)
        };
        assert_eq!(
            with("exp", json!(NOW - 31)).unwrap_err(),
            TokenError::Expired
        );
        assert!(with("exp", json!(NOW - 5)).is_ok(), "within the leeway");
        assert_eq!(
            with("nbf", json!(NOW + 600)).unwrap_err(),
            TokenError::NotYetValid
        );
        assert!(matches!(
            with("iss", json!("https://evil/")).unwrap_err(),
            TokenError::Issuer(_)
        ));
        assert_eq!(
            with("aud", json!("other")).unwrap_err(),
            TokenError::Audience
        );
        assert!(with("aud", json!(["other", "shop"])).is_ok());
        assert!(matches!(
            with("exp", json!("soon")).unwrap_err(),
            TokenError::Malformed(_)
        ));
    }

    #[test]
    fn forged_and_foreign_tokens_are_refused() {
        let keys = KeySet::parse(&jwks("k1")).unwrap();
        let t = token("k1", good());
        // Another payload under the same signature.
        let mut parts: Vec<&str> = t.split('.').collect();
        let other = token("k1", json!({"iss": "x"}));
        parts[1] = other.split('.').nth(1).unwrap();
        assert_eq!(
            verify(&parts.join("."), &keys, &authorizer(), NOW).unwrap_err(),
            TokenError::BadSignature
        );
        assert_eq!(
            verify(&token("k2", good()), &keys, &authorizer(), NOW).unwrap_err(),
            TokenError::UnknownKey("k2".into())
        );
        // A shared-secret token against a public key (algorithm confusion).
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &good(),
            &EncodingKey::from_secret(ED_X.as_bytes()).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            verify(&hs, &keys, &authorizer(), NOW).unwrap_err(),
            TokenError::UnknownKey(_)
        ));
        assert!(matches!(
            verify("a.b", &keys, &authorizer(), NOW).unwrap_err(),
            TokenError::Malformed(_)
        ));
        assert_eq!(
            verify("", &keys, &authorizer(), NOW).unwrap_err(),
            TokenError::Missing
        );
    }

    #[test]
    fn key_sets_keep_only_signing_keys() {
        assert_eq!(
            KeySet::parse(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).err(),
            Some(KeySetError::NoUsableKey)
        );
        assert!(matches!(
            KeySet::parse(b"[]").err(),
            Some(KeySetError::Malformed(_))
        ));
        let enc = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": ED_X, "use": "enc"}]});
        assert!(KeySet::parse(enc.to_string().as_bytes()).is_err());
        assert!(KeySet::parse(&jwks("k1")).unwrap().has_kid("k1"));
        assert_eq!(bearer("Bearer abc"), "abc");
        assert_eq!(bearer("bearer  abc"), "abc");
        assert_eq!(bearer("abc"), "abc");
    }
}
