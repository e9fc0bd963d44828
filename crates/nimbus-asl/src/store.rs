//! Where state machines are kept: [`MachineStore`], implemented by the embedded SQLite store
//! (`nimbus-store`). Their executions are durable executions (`nimbus-durable`'s store).

use nimbus_core::StoreError;
use serde::{Deserialize, Serialize};

/// A state machine's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MachineType {
    /// Long-running, exactly-once transitions, history kept.
    Standard,
    /// Started synchronously (`StartSyncExecution`); Nimbus runs it on the same durable
    /// engine.
    Express,
}

/// A state machine as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineRecord {
    /// Its name (unique in the tenant).
    pub name: String,
    /// Its definition (Amazon States Language JSON, as given).
    pub definition: String,
    /// The role given at creation (kept and shown; Nimbus authorizes by keys, not roles).
    pub role_arn: String,
    /// Standard or Express.
    pub kind: MachineType,
    /// `description` of its latest revision.
    #[serde(default)]
    pub description: Option<String>,
    /// When it was created, unix ms.
    pub created_ms: i64,
    /// When its definition or role last changed, unix ms.
    pub updated_ms: i64,
    /// Its revision (a hash of definition and role; executions record the one they run).
    pub revision_id: String,
}

/// What [`MachineStore::create_machine`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Create {
    /// Stored.
    New,
    /// One of that name exists: this one (nothing was stored).
    Existing(Box<MachineRecord>),
}

/// State machines of one tenant.
pub trait MachineStore: Send + Sync + 'static {
    /// Stores a new state machine unless one of that name exists.
    fn create_machine(&self, machine: &MachineRecord) -> Result<Create, StoreError>;
    /// Replaces a state machine; `false` if there is none of that name.
    fn update_machine(&self, machine: &MachineRecord) -> Result<bool, StoreError>;
    /// The state machine `name`.
    fn machine(&self, name: &str) -> Result<Option<MachineRecord>, StoreError>;
    /// Every state machine, by name.
    fn machines(&self) -> Result<Vec<MachineRecord>, StoreError>;
    /// Deletes a state machine; whether it existed.
    fn delete_machine(&self, name: &str) -> Result<bool, StoreError>;
}
