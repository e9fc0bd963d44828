//! [`MachineStore`] on the SQLite store: one row per state machine, as JSON, on the control
//! connection.

use nimbus_asl::store::{Create, MachineRecord, MachineStore};
use nimbus_core::StoreError;
use rusqlite::{OptionalExtension, Transaction, params};

use crate::sqlite::{SqliteStore, backend, json_col, lock};

impl MachineStore for SqliteStore {
    fn create_machine(&self, m: &MachineRecord) -> Result<Create, StoreError> {
        let doc = serde_json::to_string(m).map_err(backend)?;
        let conn = lock(&self.control);
        let inserted = conn
            .execute(
                "INSERT INTO state_machines (tenant, name, doc) VALUES (?1, ?2, ?3)
                 ON CONFLICT (tenant, name) DO NOTHING",
                params![self.tenant, m.name, doc],
            )
            .map_err(backend)?;
        if inserted == 1 {
            return Ok(Create::New);
        }
        let existing: MachineRecord = conn
            .query_row(
                "SELECT doc FROM state_machines WHERE tenant = ?1 AND name = ?2",
                params![self.tenant, m.name],
                |r| json_col(r, 0),
            )
            .map_err(backend)?;
        Ok(Create::Existing(Box::new(existing)))
    }

    fn update_machine(&self, m: &MachineRecord) -> Result<bool, StoreError> {
        let doc = serde_json::to_string(m).map_err(backend)?;
        let changed = lock(&self.control)
            .execute(
                "UPDATE state_machines SET doc = ?3 WHERE tenant = ?1 AND name = ?2",
                params![self.tenant, m.name, doc],
            )
            .map_err(backend)?;
        Ok(changed == 1)
    }

    fn machine(&self, name: &str) -> Result<Option<MachineRecord>, StoreError> {
        lock(&self.control)
            .query_row(
                "SELECT doc FROM state_machines WHERE tenant = ?1 AND name = ?2",
                params![self.tenant, name],
                |r| json_col(r, 0),
            )
            .optional()
            .map_err(backend)
    }

    fn machines(&self) -> Result<Vec<MachineRecord>, StoreError> {
        let conn = lock(&self.control);
        let mut stmt = conn
            .prepare("SELECT doc FROM state_machines WHERE tenant = ?1 ORDER BY name")
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![self.tenant], |r| json_col(r, 0))
            .map_err(backend)?;
        rows.collect::<rusqlite::Result<_>>().map_err(backend)
    }

    fn delete_machine(&self, name: &str) -> Result<bool, StoreError> {
        let deleted = lock(&self.control)
            .execute(
                "DELETE FROM state_machines WHERE tenant = ?1 AND name = ?2",
                params![self.tenant, name],
            )
            .map_err(backend)?;
        Ok(deleted == 1)
    }
}

/// Puts app `app`'s state machines in `tx` (part of its deploy): new ones are created, changed
/// ones replaced (keeping when they were created), the app's others deleted. A name taken by
/// another app's or by one created through the API is a conflict.
pub(crate) fn put_app_machines(
    tx: &Transaction<'_>,
    tenant: &str,
    app: &str,
    machines: &[MachineRecord],
) -> Result<(), StoreError> {
    let mut existing = tx
        .prepare_cached("SELECT doc FROM state_machines WHERE tenant = ?1 AND name = ?2")
        .map_err(backend)?;
    let mut put = tx
        .prepare_cached(
            "INSERT INTO state_machines (tenant, name, doc) VALUES (?1, ?2, ?3)
             ON CONFLICT (tenant, name) DO UPDATE SET doc = excluded.doc",
        )
        .map_err(backend)?;
    for m in machines {
        let mut m = m.clone();
        m.app = Some(app.to_owned());
        let old: Option<MachineRecord> = existing
            .query_row(params![tenant, m.name], |r| json_col(r, 0))
            .optional()
            .map_err(backend)?;
        if let Some(old) = old {
            match &old.app {
                Some(owner) if owner == app => {}
                Some(owner) => {
                    return Err(StoreError::Conflict(format!(
                        "state machine `{}` belongs to app `{owner}`; remove it there first or rename it",
                        m.name
                    )));
                }
                None => {
                    return Err(StoreError::Conflict(format!(
                        "state machine `{}` was created through the API; delete it first or rename it",
                        m.name
                    )));
                }
            }
            if old.revision_id == m.revision_id
                && old.kind == m.kind
                && old.description == m.description
            {
                continue;
            }
            m.created_ms = old.created_ms;
        }
        let doc = serde_json::to_string(&m).map_err(backend)?;
        put.execute(params![tenant, m.name, doc]).map_err(backend)?;
    }
    let names: Vec<&str> = machines.iter().map(|m| m.name.as_str()).collect();
    let owned = app_machines(tx, tenant, app)?;
    for name in owned.iter().filter(|n| !names.contains(&n.as_str())) {
        tx.execute(
            "DELETE FROM state_machines WHERE tenant = ?1 AND name = ?2",
            params![tenant, name],
        )
        .map_err(backend)?;
    }
    Ok(())
}

/// Deletes app `app`'s state machines in `tx` (part of its removal).
pub(crate) fn remove_app_machines(
    tx: &Transaction<'_>,
    tenant: &str,
    app: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM state_machines WHERE tenant = ?1 AND json_extract(doc, '$.app') = ?2",
        params![tenant, app],
    )
    .map_err(backend)?;
    Ok(())
}

fn app_machines(tx: &Transaction<'_>, tenant: &str, app: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT name FROM state_machines WHERE tenant = ?1 AND json_extract(doc, '$.app') = ?2",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![tenant, app], |r| r.get(0))
        .map_err(backend)?;
    rows.collect::<rusqlite::Result<_>>().map_err(backend)
}

#[cfg(test)]
mod tests {
    use nimbus_asl::store::MachineType;

    use super::*;

    fn machine(name: &str, definition: &str) -> MachineRecord {
        MachineRecord {
            name: name.into(),
            definition: definition.into(),
            role_arn: "arn:aws:iam::000000000000:role/r".into(),
            kind: MachineType::Standard,
            description: None,
            created_ms: 1,
            updated_ms: 1,
            revision_id: "r1".into(),
            app: None,
        }
    }

    fn deploy(
        store: &SqliteStore,
        app: &str,
        machines: Vec<MachineRecord>,
    ) -> Result<(), StoreError> {
        use nimbus_core::Store;
        store.deploy_app(&nimbus_core::store::AppDeployment {
            app: app.into(),
            digest: format!("{app}-{}", machines.len()),
            functions: Vec::new(),
            events: Default::default(),
            workflows: machines,
        })
    }

    #[test]
    fn an_app_s_machines_deploy_and_go_with_it() {
        use nimbus_core::Store;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("n.db"), "default").unwrap();
        deploy(&store, "shop", vec![machine("a", "{}"), machine("b", "{}")]).unwrap();
        let a = store.machine("a").unwrap().unwrap();
        assert_eq!(a.app.as_deref(), Some("shop"));
        // Changed: replaced, keeping its creation time; dropped from the app: deleted.
        let mut changed = machine("a", "{\"v\":2}");
        changed.revision_id = "r2".into();
        changed.created_ms = 50;
        deploy(&store, "shop", vec![changed]).unwrap();
        let a = store.machine("a").unwrap().unwrap();
        assert_eq!((a.revision_id.as_str(), a.created_ms), ("r2", 1));
        assert!(store.machine("b").unwrap().is_none());
        // Another app's, or one made through the API: a conflict, and nothing changes.
        store.create_machine(&machine("api", "{}")).unwrap();
        for (name, owner) in [
            ("a", "belongs to app `shop`"),
            ("api", "created through the API"),
        ] {
            let err = deploy(
                &store,
                "other",
                vec![machine("new", "{}"), machine(name, "{}")],
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(owner), "{err}");
            assert!(
                store.machine("new").unwrap().is_none(),
                "nothing of the failed deploy"
            );
        }
        assert!(store.remove_app("shop").unwrap());
        assert!(store.machine("a").unwrap().is_none());
        assert!(store.machine("api").unwrap().is_some(), "not the app's");
    }

    #[test]
    fn machines_are_created_once_updated_listed_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("n.db"), "default").unwrap();
        assert_eq!(
            store.create_machine(&machine("b", "{}")).unwrap(),
            Create::New
        );
        assert_eq!(
            store.create_machine(&machine("a", "{}")).unwrap(),
            Create::New
        );
        let Create::Existing(existing) = store.create_machine(&machine("b", "{\"x\":1}")).unwrap()
        else {
            panic!("b exists")
        };
        assert_eq!(existing.definition, "{}", "the first one stays");
        let mut b = machine("b", "{\"v\":2}");
        b.updated_ms = 2;
        assert!(store.update_machine(&b).unwrap());
        assert_eq!(store.machine("b").unwrap().unwrap(), b);
        assert!(!store.update_machine(&machine("zzz", "{}")).unwrap());
        let names: Vec<String> = store
            .machines()
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert!(store.delete_machine("a").unwrap());
        assert!(!store.delete_machine("a").unwrap());
        assert!(store.machine("a").unwrap().is_none());
        // Another tenant sees none of them.
        let other = SqliteStore::open(&dir.path().join("n.db"), "other").unwrap();
        assert!(other.machines().unwrap().is_empty());
    }
}
