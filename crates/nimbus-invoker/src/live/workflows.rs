//! The state machines an app declares (`[workflows.NAME]`): their definitions (inline, or a
//! file uploaded with the app's artifacts) read and checked before the deploy changes anything;
//! the deploy's store transaction then puts them with the app's functions.

use nimbus_core::AppSpec;
use nimbus_core::api::DeployRequest;
use nimbus_core::clock::now_ms;
use nimbus_core::manifest::Problem;
use nimbus_core::workflow::{DefinitionSource, MachineRecord};

use super::Live;
use crate::durable::Durable;
use crate::error::DeployError;

impl Live {
    /// The app's state machines, each definition read and validated; every problem at once.
    pub(super) fn workflow_records(
        &self,
        app: &AppSpec,
        req: &DeployRequest,
    ) -> Result<Vec<MachineRecord>, DeployError> {
        let mut problems = Vec::new();
        let mut records = Vec::with_capacity(app.workflows.len());
        let now = now_ms();
        for w in &app.workflows {
            let key = format!("workflows.{}", w.name);
            let definition = match &w.definition {
                DefinitionSource::Inline(text) => (format!("{key}.definition"), text.clone()),
                DefinitionSource::File(path) => {
                    let key = format!("{key}.definition_file");
                    let text = req
                        .artifacts
                        .get(path)
                        .ok_or_else(|| format!("no artifact was uploaded for `{path}`"))
                        .and_then(|sha| {
                            self.artifacts
                                .read(sha)
                                .map_err(|e| format!("`{path}` ({sha}) is not on the server: {e}"))
                        })
                        .and_then(|bytes| {
                            String::from_utf8(bytes).map_err(|_| format!("`{path}` is not UTF-8"))
                        });
                    match text {
                        Ok(text) => (key, text),
                        Err(message) => {
                            problems.push(Problem { key, message });
                            continue;
                        }
                    }
                }
            };
            let (key, text) = definition;
            if let Err(diagnostics) = Durable::validate_definition(&text) {
                problems.extend(diagnostics.into_iter().map(|d| Problem {
                    key: key.clone(),
                    message: d.to_string(),
                }));
                continue;
            }
            records.push(MachineRecord::new(
                &w.name,
                &text,
                &w.role_arn,
                w.kind,
                w.description.clone(),
                now,
            ));
        }
        if problems.is_empty() {
            Ok(records)
        } else {
            Err(DeployError::References(problems))
        }
    }
}
