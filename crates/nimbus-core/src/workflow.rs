//! State machines (workflows) as the platform keeps them: the stored record, the rules for
//! their names, and their declaration in `nimbus.toml`:
//!
//! ```toml
//! [workflows.orders]
//! definition_file = "orders.asl.json"   # relative to the manifest's directory, or:
//! # definition = '''{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}'''
//! type = "STANDARD"                      # or EXPRESS (default STANDARD)
//! role_arn = "arn:aws:iam::000000000000:role/orders"   # kept and shown (optional)
//! description = "order processing"      # optional
//! ```
//!
//! The definition's language is checked where it is understood (`nimbus-asl`), at deploy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The role a state machine gets when none is given.
pub const DEFAULT_ROLE_ARN: &str = "arn:aws:iam::000000000000:role/nimbus";

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

impl MachineType {
    /// `STANDARD` or `EXPRESS`.
    pub fn parse(s: &str) -> Option<MachineType> {
        match s {
            "STANDARD" => Some(MachineType::Standard),
            "EXPRESS" => Some(MachineType::Express),
            _ => None,
        }
    }
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
    /// The app that declares it in its manifest (deployed and removed with it); `None` when
    /// it was created through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
}

impl MachineRecord {
    /// A new state machine, created and updated at `now_ms`.
    pub fn new(
        name: &str,
        definition: &str,
        role_arn: &str,
        kind: MachineType,
        description: Option<String>,
        now_ms: i64,
    ) -> MachineRecord {
        MachineRecord {
            name: name.to_owned(),
            definition: definition.to_owned(),
            role_arn: role_arn.to_owned(),
            kind,
            description,
            created_ms: now_ms,
            updated_ms: now_ms,
            revision_id: revision(definition, role_arn),
            app: None,
        }
    }
}

/// The revision id of a definition and role: a hash in a UUID's shape, as Step Functions'
/// revision ids have.
pub fn revision(definition: &str, role_arn: &str) -> String {
    let hash = crate::sha256_hex(format!("{definition}\0{role_arn}").as_bytes());
    format!(
        "{}-{}-{}-{}-{}",
        &hash[..8],
        &hash[8..12],
        &hash[12..16],
        &hash[16..20],
        &hash[20..32]
    )
}

/// Whether `name` is a valid state machine or execution name: 1 to 80 characters, none of
/// them white space, brackets, wildcards, the punctuation Step Functions reserves or a
/// control character.
pub fn valid_name(name: &str) -> bool {
    (1..=80).contains(&name.chars().count())
        && name.chars().all(|c| {
            !c.is_whitespace() && !c.is_control() && !"<>{}[]?*\"#%\\^|~`$&,;:/".contains(c)
        })
}

/// Where a declared state machine's definition is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefinitionSource {
    /// In the manifest (JSON text).
    Inline(String),
    /// In a file, relative to the manifest's directory (uploaded with the app's artifacts).
    File(String),
}

/// A state machine declared in `nimbus.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowSpec {
    /// Its name.
    pub name: String,
    /// Its definition.
    pub definition: DefinitionSource,
    /// Standard or Express.
    pub kind: MachineType,
    /// Its role.
    pub role_arn: String,
    /// Its description.
    pub description: Option<String>,
}

/// A `[workflows.NAME]` section as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorkflow {
    definition: Option<toml::Value>,
    definition_file: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    role_arn: Option<String>,
    description: Option<String>,
}

/// The declared workflows, checked: every problem as `(key, message)`.
pub(crate) fn check(
    raw: BTreeMap<String, RawWorkflow>,
    problem: &mut impl FnMut(String, String),
) -> Vec<WorkflowSpec> {
    let mut out = Vec::with_capacity(raw.len());
    for (name, w) in raw {
        let key = format!("workflows.{name}");
        if !valid_name(&name) {
            problem(
                key.clone(),
                "a state machine name is 1 to 80 characters, without spaces, brackets, wildcards or `<>{}[]?*\"#%\\^|~`$&,;:/`".into(),
            );
        }
        let definition = match (w.definition, w.definition_file) {
            (Some(_), Some(_)) => {
                problem(
                    key.clone(),
                    "give `definition` or `definition_file`, not both".into(),
                );
                continue;
            }
            (None, None) => {
                problem(
                    key.clone(),
                    "needs `definition` (the States Language JSON, as text or a table) or `definition_file`".into(),
                );
                continue;
            }
            (Some(toml::Value::String(text)), None) => {
                if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
                    problem(format!("{key}.definition"), format!("not JSON: {e}"));
                }
                DefinitionSource::Inline(text)
            }
            (Some(table @ toml::Value::Table(_)), None) => match serde_json::to_string(&table) {
                Ok(text) => DefinitionSource::Inline(text),
                Err(e) => {
                    problem(format!("{key}.definition"), e.to_string());
                    continue;
                }
            },
            (Some(_), None) => {
                problem(
                    format!("{key}.definition"),
                    "must be JSON text or a table".into(),
                );
                continue;
            }
            (None, Some(file)) => {
                if file.is_empty() || file.starts_with('/') {
                    problem(
                        format!("{key}.definition_file"),
                        "must be a path relative to the manifest's directory".into(),
                    );
                }
                DefinitionSource::File(file)
            }
        };
        let kind = match w.kind.as_deref() {
            None => MachineType::Standard,
            Some(k) => MachineType::parse(k).unwrap_or_else(|| {
                problem(
                    format!("{key}.type"),
                    format!("must be STANDARD or EXPRESS, not `{k}`"),
                );
                MachineType::Standard
            }),
        };
        out.push(WorkflowSpec {
            name,
            definition,
            kind,
            role_arn: w.role_arn.unwrap_or_else(|| DEFAULT_ROLE_ARN.to_owned()),
            description: w.description,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_step_functions_rules() {
        for ok in ["a", "order-processing_v2", "Ω-flow", &"x".repeat(80)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "has space",
            "a/b",
            "a:b",
            "x{y}",
            &"x".repeat(81),
            "tab\t",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    const APP: &str = "app = \"a\"\n[functions.f]\nruntime = \"wasm\"\nsource = \"f.wasm\"\n";

    #[test]
    fn workflows_are_declared_inline_as_text_or_table_or_in_a_file() {
        let app = crate::AppSpec::parse(&format!(
            "{APP}[workflows.text]\ndefinition = '{{\"StartAt\": \"A\"}}'\n\
             [workflows.table]\ntype = \"EXPRESS\"\ndefinition = {{ StartAt = \"A\", States = {{ A = {{ Type = \"Succeed\" }} }} }}\n\
             [workflows.file]\ndefinition_file = \"flows/file.asl.json\"\nrole_arn = \"arn:aws:iam::1:role/r\"\n"
        ))
        .unwrap();
        let names: Vec<&str> = app.workflows.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["file", "table", "text"]);
        assert_eq!(
            app.workflows[0].definition,
            DefinitionSource::File("flows/file.asl.json".into())
        );
        assert_eq!(app.workflows[0].role_arn, "arn:aws:iam::1:role/r");
        assert_eq!(app.workflows[1].kind, MachineType::Express);
        let DefinitionSource::Inline(table) = &app.workflows[1].definition else {
            panic!("inline")
        };
        let table: serde_json::Value = serde_json::from_str(table).unwrap();
        assert_eq!(table["States"]["A"]["Type"], "Succeed");
        assert_eq!(app.workflows[2].kind, MachineType::Standard);
        assert_eq!(app.workflows[2].role_arn, DEFAULT_ROLE_ARN);
    }

    #[test]
    fn every_workflow_problem_is_named_by_its_key() {
        let err = crate::AppSpec::parse(&format!(
            "{APP}[workflows.\"bad name\"]\ndefinition = '{{}}'\n\
             [workflows.both]\ndefinition = '{{}}'\ndefinition_file = \"x.json\"\n\
             [workflows.none]\ntype = \"STANDARD\"\n\
             [workflows.notjson]\ndefinition = \"{{nope\"\n\
             [workflows.kind]\ndefinition = '{{}}'\ntype = \"FAST\"\n\
             [workflows.abs]\ndefinition_file = \"/etc/passwd\"\n"
        ))
        .unwrap_err()
        .to_string();
        for key in [
            "workflows.bad name:",
            "workflows.both:",
            "workflows.none:",
            "workflows.notjson.definition:",
            "workflows.kind.type:",
            "workflows.abs.definition_file:",
        ] {
            assert!(err.contains(key), "{key} in {err}");
        }
        assert!(
            crate::AppSpec::parse(&format!(
                "{APP}[workflows.w]\ndefinition = '{{}}'\ncolor = 1\n"
            ))
            .is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn revisions_follow_definition_and_role() {
        let a = revision("{}", "r");
        assert_eq!(a, revision("{}", "r"));
        assert_ne!(a, revision("{ }", "r"));
        assert_ne!(a, revision("{}", "r2"));
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }
}
