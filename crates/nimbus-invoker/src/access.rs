//! Who may call: the node's first admin key (in `api_keys`, as a sha256), the scoped keys made
//! since (role, scope, expiry; revocable at once), and the AWS-style credentials — the node's
//! own pair (admin) and one pair per key, whose secrets are sealed in the store (SigV4 needs
//! the secret itself). A snapshot answers every call without the database; a change to the
//! keys reloads it before the change is acknowledged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use nimbus_core::keys::{KeyInfo, KeyScope, Principal, Role};
use nimbus_core::store::StoredKey;
use nimbus_core::{Store, StoreError};
use nimbus_secrets::Sealer;
use rand::Rng;

/// The key id the node's first admin key (and its own AWS credentials) act as.
pub const ADMIN_KEY_ID: &str = "admin";

/// Why a key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Unknown or revoked.
    #[error("invalid API key (unknown or revoked)")]
    Invalid,
    /// Past its expiry.
    #[error("API key {0} has expired")]
    Expired(String),
}

/// Why a key cannot be made or revoked.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A scope that does not fit the role.
    #[error("{0}")]
    InvalidRequest(String),
    /// No such (unrevoked) key.
    #[error("no key `{0}` (or it was revoked)")]
    NotFound(String),
    /// Keys with AWS credentials need the secrets key to seal them.
    #[error("this node has no secrets key to seal the key's AWS credentials")]
    NoSealer,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a new key is.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    /// Its role.
    pub role: Role,
    /// Its scope (invoker keys only).
    pub scope: KeyScope,
    /// What it is for.
    pub description: String,
    /// How long it works (`None`: until revoked).
    pub expires_in: Option<Duration>,
    /// Its usage plan on routes that take API keys.
    pub plan: Option<nimbus_core::keys::UsagePlan>,
}

/// A new key: shown once.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CreatedKey {
    /// What is listed from now on.
    #[serde(flatten)]
    pub info: KeyInfo,
    /// The key (`Authorization: Bearer …`).
    pub key: String,
    /// Its AWS-style secret access key (with `info.aws_access_key_id`).
    pub aws_secret_access_key: String,
}

struct Entry {
    principal: Principal,
    expires_ms: Option<i64>,
}

#[derive(Default)]
struct Snapshot {
    /// By sha256 of the key.
    by_hash: HashMap<String, Arc<Entry>>,
    /// By AWS access key id: the secret and the key.
    by_aws: HashMap<String, (String, Arc<Entry>)>,
}

/// The node's credentials.
pub struct Access {
    snapshot: ArcSwap<Snapshot>,
    node_aws: HashMap<String, String>,
    store: Arc<dyn Store>,
    sealer: Option<Sealer>,
    /// What durable functions' own credentials derive from (`None`: they have none).
    execution_secret: Option<Vec<u8>>,
}

fn admin() -> Arc<Entry> {
    Arc::new(Entry {
        principal: Principal {
            key_id: ADMIN_KEY_ID.into(),
            role: Role::Admin,
            scope: KeyScope::default(),
            plan: None,
        },
        expires_ms: None,
    })
}

fn random_text(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

impl Access {
    /// Reads the keys from `store`; `node_aws` maps the node's own access key ids to secrets.
    pub fn load(
        store: Arc<dyn Store>,
        node_aws: HashMap<String, String>,
        sealer: Option<Sealer>,
        execution_secret: Option<Vec<u8>>,
    ) -> Result<Self, StoreError> {
        let access = Self {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            node_aws,
            store,
            sealer,
            execution_secret,
        };
        access.reload()?;
        Ok(access)
    }

    /// Reads the keys again (after a change). Blocking.
    pub fn reload(&self) -> Result<(), StoreError> {
        let mut s = Snapshot::default();
        for hash in self.store.api_key_hashes()? {
            s.by_hash.insert(hash, admin());
        }
        for (id, secret) in &self.node_aws {
            s.by_aws.insert(id.clone(), (secret.clone(), admin()));
        }
        for k in self.store.keys()? {
            if k.revoked_ms.is_some() {
                continue;
            }
            let entry = Arc::new(Entry {
                principal: Principal {
                    key_id: k.info.id.clone(),
                    role: k.info.role,
                    scope: k.info.scope.clone(),
                    plan: k.info.plan.clone(),
                },
                expires_ms: k.info.expires_ms,
            });
            if let (Some(id), Some(sealed), Some(sealer)) = (
                &k.info.aws_access_key_id,
                &k.sealed_aws_secret,
                &self.sealer,
            ) {
                match sealer.open(self.store.tenant(), id, sealed) {
                    Ok(secret) => {
                        let secret = String::from_utf8_lossy(&secret).into_owned();
                        s.by_aws.insert(id.clone(), (secret, entry.clone()));
                    }
                    Err(e) => {
                        tracing::error!(key = %k.info.id, error = %e, "cannot open the key's AWS secret")
                    }
                }
            }
            s.by_hash.insert(k.hash, entry);
        }
        self.snapshot.store(Arc::new(s));
        Ok(())
    }

    fn live(entry: &Entry, now_ms: i64) -> Result<Principal, AuthError> {
        match entry.expires_ms {
            Some(at) if at <= now_ms => Err(AuthError::Expired(entry.principal.key_id.clone())),
            _ => Ok(entry.principal.clone()),
        }
    }

    /// Who `key` is, at `now_ms`.
    pub fn authenticate(&self, key: &str, now_ms: i64) -> Result<Principal, AuthError> {
        let hash = nimbus_core::sha256_hex(key.as_bytes());
        let snapshot = self.snapshot.load();
        let entry = snapshot.by_hash.get(&hash).ok_or(AuthError::Invalid)?;
        Self::live(entry, now_ms)
    }

    /// Whether a key (revoked ones aside) has sha256 `hash` (hex), expired or not.
    pub fn knows_hash(&self, hash: &str) -> bool {
        self.snapshot.load().by_hash.contains_key(hash)
    }

    /// The secret of an access key id Nimbus issued (for SigV4 verification).
    pub fn aws_secret(&self, access_key_id: &str) -> Option<String> {
        if let Some(function) = self.execution_function(access_key_id) {
            return self
                .execution_credentials(&function)
                .map(|(_, secret)| secret);
        }
        self.snapshot
            .load()
            .by_aws
            .get(access_key_id)
            .map(|(secret, _)| secret.clone())
    }

    /// The AWS credentials durable function `function` gets in its sandbox: good only for
    /// the durable execution calls on its own executions.
    pub fn execution_credentials(&self, function: &str) -> Option<(String, String)> {
        let secret = self.execution_secret.as_ref()?;
        Some(nimbus_durable::token::execution_credentials(
            secret,
            self.store.tenant(),
            function,
        ))
    }

    /// The function whose execution credentials `access_key_id` would be, in this tenant.
    fn execution_function(&self, access_key_id: &str) -> Option<String> {
        self.execution_secret.as_ref()?;
        let (tenant, function) = nimbus_durable::token::execution_key_owner(access_key_id)?;
        (tenant == self.store.tenant()).then_some(function)
    }

    /// The principal a durable function's own credentials act as.
    pub fn execution_principal(function: &str) -> Principal {
        Principal {
            key_id: format!("execution:{function}"),
            role: Role::Execution,
            scope: KeyScope::default(),
            plan: None,
        }
    }

    /// Who an access key id (whose signature verified) is, at `now_ms`.
    pub fn aws_principal(&self, access_key_id: &str, now_ms: i64) -> Result<Principal, AuthError> {
        if let Some(function) = self.execution_function(access_key_id) {
            return Ok(Self::execution_principal(&function));
        }
        let snapshot = self.snapshot.load();
        let (_, entry) = snapshot
            .by_aws
            .get(access_key_id)
            .ok_or(AuthError::Invalid)?;
        Self::live(entry, now_ms)
    }

    /// The key id `principal` names: a key id, or a key's AWS access key id.
    pub fn key_id_of(&self, principal: &str) -> Option<String> {
        let snapshot = self.snapshot.load();
        if let Some((_, entry)) = snapshot.by_aws.get(principal) {
            return Some(entry.principal.key_id.clone());
        }
        snapshot
            .by_hash
            .values()
            .find(|e| e.principal.key_id == principal)
            .map(|e| e.principal.key_id.clone())
    }

    /// Makes a key. Blocking.
    pub fn create(&self, req: KeyRequest, now_ms: i64) -> Result<CreatedKey, KeyError> {
        let scoped = !req.scope.functions.is_empty()
            || !req.scope.queues.is_empty()
            || !req.scope.topics.is_empty();
        match (req.role, scoped) {
            (Role::Invoker, false) => {
                return Err(KeyError::InvalidRequest(
                    "an invoker key names what it may use: functions, queues or topics (`*` for all)"
                        .into(),
                ));
            }
            (Role::Invoker, true) => {}
            (other, true) => {
                return Err(KeyError::InvalidRequest(format!(
                    "only invoker keys are scoped; a {} key reaches the whole tenant",
                    other.as_str()
                )));
            }
            (_, false) => {}
        }
        let sealer = self.sealer.as_ref().ok_or(KeyError::NoSealer)?;
        let hex = b"0123456789abcdef";
        let upper = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let id = format!("key_{}", random_text(12, hex));
        let key = format!("nmb_{}", random_text(48, hex));
        let access_key_id = format!("AKNB{}", random_text(16, upper));
        let aws_secret = random_text(
            40,
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        );
        let info = KeyInfo {
            id,
            role: req.role,
            scope: req.scope,
            description: req.description,
            created_ms: now_ms,
            expires_ms: req
                .expires_in
                .map(|d| now_ms.saturating_add(d.as_millis().min(i64::MAX as u128) as i64)),
            aws_access_key_id: Some(access_key_id.clone()),
            plan: req.plan,
        };
        self.store.insert_key(&StoredKey {
            info: info.clone(),
            hash: nimbus_core::sha256_hex(key.as_bytes()),
            revoked_ms: None,
            sealed_aws_secret: Some(sealer.seal(
                self.store.tenant(),
                &access_key_id,
                aws_secret.as_bytes(),
            )),
        })?;
        self.reload()?;
        Ok(CreatedKey {
            info,
            key,
            aws_secret_access_key: aws_secret,
        })
    }

    /// Every key made with `create` (revoked ones too, marked), oldest first. Blocking.
    pub fn list(&self) -> Result<Vec<(KeyInfo, Option<i64>)>, KeyError> {
        Ok(self
            .store
            .keys()?
            .into_iter()
            .map(|k| (k.info, k.revoked_ms))
            .collect())
    }

    /// Revokes key `id`: its next call is refused. Blocking.
    pub fn revoke(&self, id: &str) -> Result<(), KeyError> {
        if !self.store.revoke_key(id)? {
            return Err(KeyError::NotFound(id.to_string()));
        }
        self.reload()?;
        Ok(())
    }
}
