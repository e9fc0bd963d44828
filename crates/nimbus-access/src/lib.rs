//! Route authorizers: who may call an app's HTTP routes.
//!
//! - [`jwt`]: JWT verification against an issuer's key set (pure; the time is an argument).
//! - [`function`]: the function authorizer's event and the reading of its decision (pure).
//! - [`Authorizers`]: the node's state around them — key sets (inline ones parsed once, URL
//!   ones fetched and cached, refetched when a token names a key the set lacks), verified
//!   tokens (cached until they expire, so a repeated token costs a lookup) and function
//!   decisions (cached by identity for the authorizer's TTL).
//!
//! The manifest model ([`nimbus_core::access`]) resolves each route's authorizer; the gateway
//! asks here and answers 401/403 itself; calling a deciding function is the gateway's, through
//! the invoker.

pub mod function;
pub mod jwt;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nimbus_core::access::{FunctionAuthorizer, JwtAuthorizer, JwtKeys};

pub use function::Decision;
pub use jwt::{KeySet, KeySetError, TokenError, Verified};

/// How long a fetched key set is used before it is fetched again.
const KEYS_TTL: Duration = Duration::from_secs(300);
/// The least time between two fetches of one key set (a token naming an unknown key may not
/// make Nimbus hammer the issuer).
const MIN_REFETCH: Duration = Duration::from_secs(10);
/// The longest a verified token is trusted without checking its signature again.
const TOKEN_TTL: Duration = Duration::from_secs(300);
/// The largest key set document fetched.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Entries each cache holds before it forgets expired ones (and, still full, all).
const MAX_ENTRIES: usize = 50_000;

/// Why a JWT caller could not be checked (not the caller's fault: a 5xx).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    /// The key set URL did not answer with a key set.
    #[error("fetching the key set of authorizer `{authorizer}` from {url}: {reason}")]
    Fetch {
        /// The authorizer.
        authorizer: String,
        /// Its `jwks_url`.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The key set is unusable.
    #[error("the key set of authorizer `{authorizer}`: {source}")]
    Invalid {
        /// The authorizer.
        authorizer: String,
        /// Why.
        #[source]
        source: KeySetError,
    },
}

/// The outcome of checking a JWT caller.
#[derive(Debug, Clone, PartialEq)]
pub enum JwtOutcome {
    /// Verified and holding a required scope.
    Allowed(Arc<Verified>),
    /// Refused: 401 (unknown caller) or 403 ([`TokenError::is_forbidden`]).
    Denied(TokenError),
}

/// A map whose entries expire.
struct Expiring<K, V> {
    entries: HashMap<K, (V, Instant)>,
}

impl<K: Hash + Eq, V: Clone> Expiring<K, V> {
    fn new() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }

    fn get(&self, key: &K, now: Instant) -> Option<V> {
        self.entries
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(v, _)| v.clone())
    }

    fn put(&mut self, key: K, value: V, until: Instant, now: Instant) {
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.retain(|_, (_, u)| *u > now);
            if self.entries.len() >= MAX_ENTRIES {
                self.entries.clear();
            }
        }
        self.entries.insert(key, (value, until));
    }
}

struct CachedKeys {
    keys: Arc<KeySet>,
    fetched: Instant,
}

/// A fingerprint of an authorizer's whole definition: two apps' authorizers of one name but
/// other keys or audiences never share cache entries.
fn fingerprint(value: &impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// A function authorizer's cache key: its fingerprint and the caller's identity.
type DecisionKey = (u64, Vec<String>);

/// The node's authorizer state (see the crate doc).
pub struct Authorizers {
    http: ureq::Agent,
    keys: Mutex<HashMap<JwtKeys, CachedKeys>>,
    /// Key set URLs whose last fetch failed, and when: not fetched again sooner than
    /// [`MIN_REFETCH`], whatever callers send.
    failed: Mutex<HashMap<String, (Instant, String)>>,
    tokens: Mutex<Expiring<(u64, String), Arc<Verified>>>,
    decisions: Mutex<Expiring<DecisionKey, Arc<Decision>>>,
}

impl Default for Authorizers {
    fn default() -> Self {
        Self::new()
    }
}

fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Authorizers {
    /// Empty caches.
    pub fn new() -> Self {
        Self {
            // HTTPS with rustls (ring) and the Mozilla roots: no process-wide TLS setup.
            http: ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(5)))
                .max_redirects(3)
                .http_status_as_error(false)
                .build()
                .into(),
            keys: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            tokens: Mutex::new(Expiring::new()),
            decisions: Mutex::new(Expiring::new()),
        }
    }

    /// Checks the token of a request to a route of `authorizer` requiring one of `scopes`:
    /// the value of the authorizer's identity source (`Bearer ` optional).
    pub async fn check_jwt(
        &self,
        authorizer: &JwtAuthorizer,
        scopes: &[String],
        identity: Option<&str>,
    ) -> Result<JwtOutcome, KeysError> {
        let token = jwt::bearer(identity.unwrap_or(""));
        if token.is_empty() {
            return Ok(JwtOutcome::Denied(TokenError::Missing));
        }
        let now = Instant::now();
        let key = (fingerprint(authorizer), token.to_string());
        let cached = self.tokens.lock().ok().and_then(|t| t.get(&key, now));
        let verified = match cached {
            Some(v) => v,
            None => {
                let keys = self.key_set(authorizer, jwt::token_kid(token)).await?;
                let now_s = unix_now_s();
                match jwt::verify(token, &keys, authorizer, now_s) {
                    Ok(v) => {
                        let v = Arc::new(v);
                        let mut until = now + TOKEN_TTL;
                        if let Some(exp) = v.expires_s {
                            until = until.min(now + Duration::from_secs(exp.saturating_sub(now_s)));
                        }
                        if let Ok(mut t) = self.tokens.lock() {
                            t.put(key, v.clone(), until, now);
                        }
                        v
                    }
                    Err(e) => return Ok(JwtOutcome::Denied(e)),
                }
            }
        };
        Ok(match verified.check_scopes(scopes) {
            Ok(()) => JwtOutcome::Allowed(verified),
            Err(e) => JwtOutcome::Denied(e),
        })
    }

    /// The authorizer's key set; a fetched one is fetched again when stale, or when `kid`
    /// names a key it lacks (at most every [`MIN_REFETCH`]).
    async fn key_set(
        &self,
        authorizer: &JwtAuthorizer,
        kid: Option<String>,
    ) -> Result<Arc<KeySet>, KeysError> {
        let invalid = |source| KeysError::Invalid {
            authorizer: authorizer.name.clone(),
            source,
        };
        let cached = self.keys.lock().ok().and_then(|k| {
            k.get(&authorizer.keys)
                .map(|c| (c.keys.clone(), c.fetched.elapsed()))
        });
        let url = match &authorizer.keys {
            JwtKeys::Inline(doc) => {
                if let Some((keys, _)) = cached {
                    return Ok(keys);
                }
                let keys = Arc::new(KeySet::parse(doc.as_bytes()).map_err(invalid)?);
                self.remember(&authorizer.keys, keys.clone());
                return Ok(keys);
            }
            JwtKeys::Url(url) => url,
        };
        if let Some((keys, age)) = &cached {
            let lacks_kid = kid.as_deref().is_some_and(|k| !keys.has_kid(k));
            if age < &KEYS_TTL && (!lacks_kid || age < &MIN_REFETCH) {
                return Ok(keys.clone());
            }
        }
        let recent_failure = self.failed.lock().ok().and_then(|f| {
            f.get(url)
                .filter(|(at, _)| at.elapsed() < MIN_REFETCH)
                .map(|(_, reason)| reason.clone())
        });
        let fetched = match recent_failure {
            Some(reason) => Err(reason),
            None => {
                let fetched = self.fetch(url).await;
                if let (Err(reason), Ok(mut f)) = (&fetched, self.failed.lock()) {
                    f.insert(url.clone(), (Instant::now(), reason.clone()));
                }
                fetched
            }
        };
        match fetched {
            Ok(doc) => {
                let keys = Arc::new(KeySet::parse(&doc).map_err(invalid)?);
                self.remember(&authorizer.keys, keys.clone());
                Ok(keys)
            }
            // A stale set is better than none while the issuer is unreachable.
            Err(reason) => match cached {
                Some((keys, _)) => {
                    tracing::warn!(authorizer = %authorizer.name, %url, %reason, "key set refresh failed; using the cached one");
                    Ok(keys)
                }
                None => Err(KeysError::Fetch {
                    authorizer: authorizer.name.clone(),
                    url: url.clone(),
                    reason,
                }),
            },
        }
    }

    fn remember(&self, source: &JwtKeys, keys: Arc<KeySet>) {
        if let Ok(mut k) = self.keys.lock() {
            k.insert(
                source.clone(),
                CachedKeys {
                    keys,
                    fetched: Instant::now(),
                },
            );
        }
    }

    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        let (agent, url) = (self.http.clone(), url.to_string());
        // ureq is blocking: the fetch (rare: once per key set and TTL) runs off the runtime.
        tokio::task::spawn_blocking(move || {
            let mut response = agent.get(&url).call().map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("HTTP {}", response.status()));
            }
            response
                .body_mut()
                .with_config()
                .limit(MAX_JWKS_BYTES as u64)
                .read_to_vec()
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// The cached decision of `authorizer` for `identity`, if any.
    pub fn cached_decision(
        &self,
        authorizer: &FunctionAuthorizer,
        identity: &[String],
    ) -> Option<Arc<Decision>> {
        if authorizer.ttl_ms == 0 {
            return None;
        }
        let key = (fingerprint(authorizer), identity.to_vec());
        self.decisions
            .lock()
            .ok()
            .and_then(|d| d.get(&key, Instant::now()))
    }

    /// Remembers `decision` of `authorizer` for `identity` for its TTL.
    pub fn remember_decision(
        &self,
        authorizer: &FunctionAuthorizer,
        identity: Vec<String>,
        decision: Arc<Decision>,
    ) {
        if authorizer.ttl_ms == 0 {
            return;
        }
        let now = Instant::now();
        let until = now + Duration::from_millis(authorizer.ttl_ms);
        if let Ok(mut d) = self.decisions.lock() {
            d.put((fingerprint(authorizer), identity), decision, until, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiring_entries_vanish_and_a_full_map_forgets_the_expired() {
        let now = Instant::now();
        let mut m = Expiring::new();
        m.put(1, "a", now + Duration::from_secs(1), now);
        assert_eq!(m.get(&1, now), Some("a"));
        assert_eq!(m.get(&1, now + Duration::from_secs(2)), None);
        for i in 0..MAX_ENTRIES as u64 {
            m.put(i + 10, "x", now, now);
        }
        m.put(
            2,
            "b",
            now + Duration::from_secs(5),
            now + Duration::from_secs(1),
        );
        assert!(m.entries.len() < 10);
        assert_eq!(m.get(&2, now + Duration::from_secs(1)), Some("b"));
    }

    #[tokio::test]
    async fn decisions_are_cached_by_identity_for_the_ttl() {
        let a = Authorizers::new();
        let gate = FunctionAuthorizer {
            name: "gate".into(),
            function: "authz".into(),
            identity_sources: Vec::new(),
            ttl_ms: 60_000,
        };
        let d = Arc::new(Decision {
            allowed: true,
            context: serde_json::json!({}),
        });
        a.remember_decision(&gate, vec!["t1".into()], d.clone());
        assert_eq!(a.cached_decision(&gate, &["t1".into()]), Some(d));
        assert_eq!(a.cached_decision(&gate, &["t2".into()]), None);
        let uncached = FunctionAuthorizer { ttl_ms: 0, ..gate };
        assert_eq!(a.cached_decision(&uncached, &["t1".into()]), None);
    }

    #[tokio::test]
    async fn an_unreachable_key_set_is_an_error_not_a_denial() {
        let a = Authorizers::new();
        let authorizer = JwtAuthorizer {
            name: "users".into(),
            issuer: "https://i/".into(),
            audiences: vec!["a".into()],
            // A port on this machine nothing listens on.
            keys: JwtKeys::Url("http://127.0.0.1:9/jwks.json".into()),
            identity_source: nimbus_core::access::IdentitySource::authorization(),
        };
        let e = a
            .check_jwt(&authorizer, &[], Some("Bearer x.y.z"))
            .await
            .unwrap_err();
        assert!(matches!(e, KeysError::Fetch { .. }), "{e}");
        assert_eq!(
            a.check_jwt(&authorizer, &[], None).await,
            Ok(JwtOutcome::Denied(TokenError::Missing))
        );
    }
}
