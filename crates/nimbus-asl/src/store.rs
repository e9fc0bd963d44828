//! Where state machines are kept: [`MachineStore`], implemented by the embedded SQLite store
//! (`nimbus-store`). Their executions are durable executions (`nimbus-durable`'s store).

use nimbus_core::StoreError;

pub use nimbus_core::workflow::{MachineRecord, MachineType};

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
