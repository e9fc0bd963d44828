//! A state machine definition, parsed and validated in one pass: every field checked against
//! its state type, every path, template, rule and intrinsic compiled, every transition
//! resolved, every problem reported with its code and JSON pointer (all of them, not the first).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::choice::Rule;
use crate::intrinsic::{self, Call};
use crate::path::Path;
use crate::template::Template;
use crate::{Diagnostic, errors};

/// The longest state name.
pub const MAX_STATE_NAME: usize = 80;

/// A parsed state machine.
#[derive(Debug, Clone)]
pub struct Definition {
    /// `Comment`.
    pub comment: Option<String>,
    /// `TimeoutSeconds`: the execution's limit.
    pub timeout_seconds: Option<u64>,
    /// The top-level states.
    pub root: Scope,
}

/// A set of states with its start: the machine itself, a Parallel branch, a Map's processor.
#[derive(Debug, Clone)]
pub struct Scope {
    /// `StartAt`.
    pub start_at: String,
    /// The states by name.
    pub states: BTreeMap<String, State>,
}

/// One state.
#[derive(Debug, Clone)]
pub struct State {
    /// Its name.
    pub name: String,
    /// Its JSON pointer in the definition (`/States/Name`, `/States/P/Branches/0/States/B`).
    pub location: String,
    /// `InputPath`: `None` for `null` (the state sees `{}`).
    pub input_path: Option<Path>,
    /// `OutputPath`: `None` for `null` (the state passes on `{}`).
    pub output_path: Option<Path>,
    /// `ResultPath`: `None` for `null` (the result is dropped, the input passed on).
    pub result_path: Option<Path>,
    /// `Parameters` (Pass, Task, Parallel; Map's legacy `Parameters` is its `ItemSelector`).
    pub parameters: Option<Template>,
    /// `ResultSelector` (Task, Parallel, Map).
    pub result_selector: Option<Template>,
    /// `Retry` (Task, Parallel, Map).
    pub retry: Vec<Retrier>,
    /// `Catch` (Task, Parallel, Map).
    pub catch: Vec<Catcher>,
    /// Where it goes next; `None` for an end (`End`, Succeed, Fail, Choice).
    pub next: Option<String>,
    /// What kind of state it is.
    pub kind: Kind,
}

/// The state types.
#[derive(Debug, Clone)]
pub enum Kind {
    /// Pass: its `Result`, or its (templated) input.
    Pass {
        /// `Result`.
        result: Option<Value>,
    },
    /// Task.
    Task(Task),
    /// Choice.
    Choice {
        /// `Choices`: each rule and where it leads.
        choices: Vec<(Rule, String)>,
        /// `Default`.
        default: Option<String>,
    },
    /// Wait.
    Wait(WaitFor),
    /// Succeed.
    Succeed,
    /// Fail.
    Fail {
        /// `Error` / `ErrorPath`.
        error: Option<Text>,
        /// `Cause` / `CausePath`.
        cause: Option<Text>,
    },
    /// Parallel: its branches.
    Parallel(Vec<Scope>),
    /// Map (inline).
    Map(Box<MapState>),
}

/// A Task's work.
#[derive(Debug, Clone)]
pub struct Task {
    /// `Resource` as written.
    pub resource: String,
    /// Whether the resource ends in `.waitForTaskToken` (the task ends by `SendTask*`).
    pub wait_for_task_token: bool,
    /// `TimeoutSeconds` / `TimeoutSecondsPath`.
    pub timeout: Option<Seconds>,
    /// `HeartbeatSeconds` / `HeartbeatSecondsPath`.
    pub heartbeat: Option<Seconds>,
}

/// A number of seconds, fixed or read from the input.
#[derive(Debug, Clone)]
pub enum Seconds {
    /// Written in the definition.
    Fixed(u64),
    /// Read from the input.
    Path(Path),
}

/// What a Wait state waits for.
#[derive(Debug, Clone)]
pub enum WaitFor {
    /// `Seconds`.
    Seconds(u64),
    /// `Timestamp`.
    Timestamp(jiff::Timestamp),
    /// `SecondsPath`.
    SecondsPath(Path),
    /// `TimestampPath`.
    TimestampPath(Path),
}

/// A Fail state's `Error` or `Cause`.
#[derive(Debug, Clone)]
pub enum Text {
    /// Written in the definition.
    Literal(String),
    /// `…Path` with a path.
    Path(Path),
    /// `…Path` with an intrinsic call.
    Call(Call),
}

/// A `Retry` entry.
#[derive(Debug, Clone)]
pub struct Retrier {
    /// `ErrorEquals`.
    pub error_equals: Vec<String>,
    /// `IntervalSeconds` (default 1).
    pub interval_seconds: u64,
    /// `MaxAttempts` (default 3; 0 never retries).
    pub max_attempts: u32,
    /// `BackoffRate` (default 2.0).
    pub backoff_rate: f64,
    /// `MaxDelaySeconds`.
    pub max_delay_seconds: Option<u64>,
    /// `JitterStrategy: FULL`.
    pub full_jitter: bool,
}

/// A `Catch` entry.
#[derive(Debug, Clone)]
pub struct Catcher {
    /// `ErrorEquals`.
    pub error_equals: Vec<String>,
    /// `Next`.
    pub next: String,
    /// `ResultPath` for the error object (`None` for `null`).
    pub result_path: Option<Path>,
}

/// A Map state's settings.
#[derive(Debug, Clone)]
pub struct MapState {
    /// `ItemProcessor` (or the legacy `Iterator`).
    pub processor: Scope,
    /// `ItemsPath` (default `$`).
    pub items_path: Path,
    /// `ItemSelector` (or the legacy `Parameters`).
    pub item_selector: Option<Template>,
    /// `ItemBatcher`.
    pub batcher: Option<Batcher>,
    /// `MaxConcurrency` / `MaxConcurrencyPath` (0: no limit).
    pub max_concurrency: Option<Count>,
    /// `ToleratedFailureCount` / `…Path`.
    pub tolerated_count: Option<Count>,
    /// `ToleratedFailurePercentage` / `…Path`.
    pub tolerated_percentage: Option<Count>,
}

/// A count, fixed or read from the input.
#[derive(Debug, Clone)]
pub enum Count {
    /// Written in the definition.
    Fixed(f64),
    /// Read from the input.
    Path(Path),
}

/// `ItemBatcher`: items grouped into `{"Items": [...], "BatchInput": ...}`.
#[derive(Debug, Clone)]
pub struct Batcher {
    /// `MaxItemsPerBatch` / `…Path`.
    pub max_items: Option<Count>,
    /// `MaxInputBytesPerBatch` / `…Path`.
    pub max_bytes: Option<Count>,
    /// `BatchInput`.
    pub batch_input: Option<Template>,
}

impl Definition {
    /// Parses a definition's JSON text.
    pub fn parse(text: &str) -> Result<Definition, Vec<Diagnostic>> {
        if text.trim().is_empty() {
            return Err(vec![Diagnostic {
                code: "MISSING_DESCRIPTION",
                message: "The definition is empty".into(),
                location: "/".into(),
            }]);
        }
        let value: Value = serde_json::from_str(text).map_err(|e| {
            vec![Diagnostic {
                code: "INVALID_JSON_DESCRIPTION",
                message: format!("The definition is not valid JSON: {e}"),
                location: "/".into(),
            }]
        })?;
        Definition::from_value(&value)
    }

    /// Parses a definition already read as JSON.
    pub fn from_value(value: &Value) -> Result<Definition, Vec<Diagnostic>> {
        let mut p = Parser::default();
        let definition = p.definition(value);
        match definition {
            Some(d) if p.diagnostics.is_empty() => Ok(d),
            _ => Err(p.diagnostics),
        }
    }
}

impl Scope {
    /// The state named `name`.
    pub fn state(&self, name: &str) -> Option<&State> {
        self.states.get(name)
    }
}

#[derive(Default)]
struct Parser {
    diagnostics: Vec<Diagnostic>,
    names: BTreeSet<String>,
}

const COMMON: &[&str] = &["Type", "Comment"];
const IO: &[&str] = &["InputPath", "OutputPath"];
const FLOW: &[&str] = &["Next", "End"];
const ERRORS: &[&str] = &["Retry", "Catch", "ResultSelector", "ResultPath"];

impl Parser {
    fn error(&mut self, location: impl Into<String>, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::schema(location, message));
    }

    fn object<'v>(
        &mut self,
        value: &'v Value,
        location: &str,
        what: &str,
    ) -> Option<&'v Map<String, Value>> {
        let map = value.as_object();
        if map.is_none() {
            self.error(location, format!("{what} must be an object"));
        }
        map
    }

    fn string(&mut self, map: &Map<String, Value>, field: &str, location: &str) -> Option<String> {
        match map.get(field)? {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.error(
                    format!("{location}/{field}"),
                    format!("'{field}' must be a string"),
                );
                None
            }
        }
    }

    /// A non-negative integer field.
    fn natural(
        &mut self,
        map: &Map<String, Value>,
        field: &str,
        location: &str,
        least: u64,
    ) -> Option<u64> {
        let value = map.get(field)?;
        match value.as_u64().filter(|n| *n >= least) {
            Some(n) => Some(n),
            None => {
                self.error(
                    format!("{location}/{field}"),
                    format!("'{field}' must be an integer of at least {least}"),
                );
                None
            }
        }
    }

    fn path(
        &mut self,
        map: &Map<String, Value>,
        field: &str,
        location: &str,
        reference: bool,
    ) -> Option<Option<Path>> {
        let at = format!("{location}/{field}");
        match map.get(field) {
            None => Some(Path::parse("$").ok()),
            Some(Value::Null) => Some(None),
            Some(Value::String(text)) => {
                let parsed = if reference {
                    Path::reference(text)
                } else {
                    Path::parse(text)
                };
                match parsed {
                    Ok(p) => Some(Some(p)),
                    Err(e) => {
                        self.error(at, e);
                        None
                    }
                }
            }
            Some(_) => {
                self.error(at, format!("'{field}' must be a path string or null"));
                None
            }
        }
    }

    fn template(
        &mut self,
        map: &Map<String, Value>,
        field: &str,
        location: &str,
    ) -> Option<Template> {
        let value = map.get(field)?;
        Template::compile(value, &format!("{location}/{field}"))
            .map_err(|d| self.diagnostics.push(d))
            .ok()
    }

    fn definition(&mut self, value: &Value) -> Option<Definition> {
        let map = self.object(value, "/", "The definition")?;
        self.allow(
            map,
            "",
            &[
                "StartAt",
                "States",
                "Comment",
                "Version",
                "TimeoutSeconds",
                "QueryLanguage",
            ],
        );
        if let Some(language) = map.get("QueryLanguage")
            && language != "JSONPath"
        {
            self.error(
                "/QueryLanguage",
                format!(
                    "QueryLanguage {language} is not supported: Nimbus runs JSONPath state machines"
                ),
            );
        }
        let comment = self.string(map, "Comment", "");
        let timeout_seconds = self.natural(map, "TimeoutSeconds", "", 1);
        let root = self.scope(map, "")?;
        Some(Definition {
            comment,
            timeout_seconds,
            root,
        })
    }

    fn allow(&mut self, map: &Map<String, Value>, location: &str, allowed: &[&str]) {
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                self.error(
                    format!("{location}/{key}"),
                    format!("Field '{key}' is not supported here"),
                );
            }
        }
    }

    fn scope(&mut self, map: &Map<String, Value>, location: &str) -> Option<Scope> {
        let start_at = self.string(map, "StartAt", location);
        if !map.contains_key("StartAt") {
            self.error(format!("{location}/StartAt"), "'StartAt' is required");
        }
        let Some(states) = map.get("States") else {
            self.error(format!("{location}/States"), "'States' is required");
            return None;
        };
        let states = self.object(states, &format!("{location}/States"), "'States'")?;
        if states.is_empty() {
            self.error(
                format!("{location}/States"),
                "'States' must have at least one state",
            );
        }
        let mut parsed = BTreeMap::new();
        for (name, state) in states {
            let at = format!(
                "{location}/States/{}",
                name.replace('~', "~0").replace('/', "~1")
            );
            if name.is_empty() || name.chars().count() > MAX_STATE_NAME {
                self.diagnostics.push(Diagnostic {
                    code: "INVALID_STATE_NAME",
                    message: format!("A state name is 1 to {MAX_STATE_NAME} characters long"),
                    location: at.clone(),
                });
            }
            if !self.names.insert(name.clone()) {
                self.diagnostics.push(Diagnostic {
                    code: "DUPLICATE_STATE_NAME",
                    message: format!(
                        "The state name '{name}' is used more than once in the state machine"
                    ),
                    location: at.clone(),
                });
            }
            if let Some(s) = self.state(name, state, &at) {
                parsed.insert(name.clone(), s);
            }
        }
        let start_at = start_at?;
        let scope = Scope {
            start_at,
            states: parsed,
        };
        self.transitions(&scope, states, location);
        Some(scope)
    }

    /// Every target exists; every state is reachable; some state ends the scope.
    fn transitions(&mut self, scope: &Scope, raw: &Map<String, Value>, location: &str) {
        let missing = |p: &mut Parser, at: String, field: &str, target: &str| {
            p.diagnostics.push(Diagnostic {
                code: "MISSING_TRANSITION_TARGET",
                message: format!("Missing '{field}' target: {target}"),
                location: at,
            });
        };
        // Targets are checked against every state written (one that did not parse has its
        // own diagnostic); reachability and ends only when every state parsed.
        let complete = raw.len() == scope.states.len();
        if !raw.contains_key(&scope.start_at) {
            missing(
                self,
                format!("{location}/StartAt"),
                "StartAt",
                &scope.start_at,
            );
        }
        let mut ends = false;
        for state in scope.states.values() {
            let targets = targets(state);
            ends |= state.next.is_none() && !matches!(state.kind, Kind::Choice { .. });
            for (field, target) in targets {
                if !raw.contains_key(target) {
                    missing(
                        self,
                        format!("{}/{field}", state.location),
                        field.rsplit('/').next().unwrap_or(&field),
                        target,
                    );
                }
            }
        }
        if !complete {
            return;
        }
        if !ends {
            self.diagnostics.push(Diagnostic {
                code: "MISSING_END_STATE",
                message: "No state ends the workflow (End, Succeed or Fail)".into(),
                location: format!("{location}/States"),
            });
        }
        let mut seen = BTreeSet::new();
        let mut todo = vec![scope.start_at.as_str()];
        while let Some(name) = todo.pop() {
            if !seen.insert(name) {
                continue;
            }
            if let Some(state) = scope.states.get(name) {
                todo.extend(targets(state).into_iter().map(|(_, t)| t));
            }
        }
        for name in raw.keys() {
            if !seen.contains(name.as_str()) {
                self.error(
                    format!("{location}/States/{name}"),
                    format!("State '{name}' is not reachable"),
                );
            }
        }
    }

    fn state(&mut self, name: &str, value: &Value, at: &str) -> Option<State> {
        let map = self.object(value, at, "A state")?;
        let Some(kind) = self.string(map, "Type", at) else {
            if !map.contains_key("Type") {
                self.error(format!("{at}/Type"), "'Type' is required");
            }
            return None;
        };
        let (extra, flows, errors, parameters): (&[&str], bool, bool, bool) = match kind.as_str() {
            "Pass" => (&["Result", "ResultPath", "Parameters"], true, false, true),
            "Task" => (
                &[
                    "Resource",
                    "Parameters",
                    "TimeoutSeconds",
                    "TimeoutSecondsPath",
                    "HeartbeatSeconds",
                    "HeartbeatSecondsPath",
                    "Credentials",
                ],
                true,
                true,
                true,
            ),
            "Choice" => (&["Choices", "Default"], false, false, false),
            "Wait" => (
                &["Seconds", "SecondsPath", "Timestamp", "TimestampPath"],
                true,
                false,
                false,
            ),
            "Succeed" => (&[], false, false, false),
            "Fail" => (
                &["Error", "ErrorPath", "Cause", "CausePath"],
                false,
                false,
                false,
            ),
            "Parallel" => (&["Branches", "Parameters"], true, true, true),
            "Map" => (
                &[
                    "ItemProcessor",
                    "Iterator",
                    "ItemsPath",
                    "ItemSelector",
                    "Parameters",
                    "ItemBatcher",
                    "MaxConcurrency",
                    "MaxConcurrencyPath",
                    "ToleratedFailureCount",
                    "ToleratedFailureCountPath",
                    "ToleratedFailurePercentage",
                    "ToleratedFailurePercentagePath",
                    "Label",
                    "ItemReader",
                    "ResultWriter",
                ],
                true,
                true,
                false,
            ),
            other => {
                self.error(
                    format!("{at}/Type"),
                    format!("Unknown state type '{other}'"),
                );
                return None;
            }
        };
        let mut allowed: Vec<&str> = COMMON.iter().chain(extra).copied().collect();
        if kind != "Fail" {
            allowed.extend(IO);
        }
        if flows {
            allowed.extend(FLOW);
        }
        if errors {
            allowed.extend(ERRORS);
        }
        self.allow(map, at, &allowed);
        for (field, what) in [
            ("ItemReader", "reading items from S3 (distributed Map)"),
            ("ResultWriter", "writing results to S3 (distributed Map)"),
            ("Credentials", "cross-account credentials"),
        ] {
            if map.contains_key(field) {
                self.error(
                    format!("{at}/{field}"),
                    format!("'{field}' ({what}) is not supported"),
                );
            }
        }
        let next = self.next(map, at, flows);
        let (input_path, output_path) = (
            self.path(map, "InputPath", at, false),
            self.path(map, "OutputPath", at, false),
        );
        let result_path = self.path(map, "ResultPath", at, true);
        let parameters = if parameters {
            self.template(map, "Parameters", at)
        } else {
            None
        };
        let result_selector = self.template(map, "ResultSelector", at);
        let retry = if errors {
            self.retriers(map, at)
        } else {
            Vec::new()
        };
        let catch = if errors {
            self.catchers(map, at)
        } else {
            Vec::new()
        };
        let kind = match kind.as_str() {
            "Pass" => Kind::Pass {
                result: map.get("Result").cloned(),
            },
            "Task" => Kind::Task(self.task(map, at)?),
            "Choice" => self.choice(map, at)?,
            "Wait" => Kind::Wait(self.wait(map, at)?),
            "Succeed" => Kind::Succeed,
            "Fail" => Kind::Fail {
                error: self.text(map, "Error", at),
                cause: self.text(map, "Cause", at),
            },
            "Parallel" => Kind::Parallel(self.branches(map, at)?),
            _ => Kind::Map(Box::new(self.map(map, at)?)),
        };
        Some(State {
            name: name.to_owned(),
            location: at.to_owned(),
            input_path: input_path?,
            output_path: output_path?,
            result_path: result_path?,
            parameters,
            result_selector,
            retry,
            catch,
            next: next?,
            kind,
        })
    }

    /// `Next` xor `End: true` for the states that flow on; `Some(None)` for an end.
    fn next(&mut self, map: &Map<String, Value>, at: &str, flows: bool) -> Option<Option<String>> {
        if !flows {
            return Some(None);
        }
        let next = self.string(map, "Next", at);
        let end = map.get("End");
        match (next, end) {
            (Some(_), Some(_)) => {
                self.error(at, "A state has either 'Next' or 'End', not both");
                None
            }
            (Some(next), None) => Some(Some(next)),
            (None, Some(Value::Bool(true))) => Some(None),
            (None, Some(_)) => {
                self.error(format!("{at}/End"), "'End' must be true");
                None
            }
            (None, None) => {
                self.error(at, "A state of this type needs 'Next' or 'End': true");
                None
            }
        }
    }

    fn error_equals(&mut self, map: &Map<String, Value>, at: &str) -> Option<Vec<String>> {
        let names: Option<Vec<String>> = map
            .get("ErrorEquals")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_owned)).collect());
        match names {
            Some(names) if names.iter().any(|n| n == errors::ALL) && names.len() > 1 => {
                self.error(
                    format!("{at}/ErrorEquals"),
                    "'States.ALL' must appear alone in 'ErrorEquals'",
                );
                None
            }
            Some(names) => Some(names),
            None => {
                self.error(
                    format!("{at}/ErrorEquals"),
                    "'ErrorEquals' must be a non-empty array of error names",
                );
                None
            }
        }
    }

    /// The entries of `Retry` or `Catch`, with `States.ALL` only in the last.
    fn entries<T>(
        &mut self,
        map: &Map<String, Value>,
        field: &str,
        at: &str,
        mut each: impl FnMut(&mut Parser, &Map<String, Value>, &str) -> Option<T>,
    ) -> Vec<T> {
        let Some(value) = map.get(field) else {
            return Vec::new();
        };
        let Some(items) = value.as_array() else {
            self.error(
                format!("{at}/{field}"),
                format!("'{field}' must be an array"),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let here = format!("{at}/{field}/{i}");
            let Some(entry) = self.object(item, &here, "An entry") else {
                continue;
            };
            let all = entry
                .get("ErrorEquals")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v == errors::ALL));
            if all && i + 1 != items.len() {
                self.error(
                    format!("{here}/ErrorEquals"),
                    format!("'States.ALL' must be in the last entry of '{field}'"),
                );
            }
            if let Some(t) = each(self, entry, &here) {
                out.push(t);
            }
        }
        out
    }

    fn retriers(&mut self, map: &Map<String, Value>, at: &str) -> Vec<Retrier> {
        self.entries(map, "Retry", at, |p, entry, here| {
            p.allow(
                entry,
                here,
                &[
                    "ErrorEquals",
                    "IntervalSeconds",
                    "MaxAttempts",
                    "BackoffRate",
                    "MaxDelaySeconds",
                    "JitterStrategy",
                    "Comment",
                ],
            );
            let error_equals = p.error_equals(entry, here)?;
            let interval_seconds = p.natural(entry, "IntervalSeconds", here, 1).unwrap_or(1);
            let max_attempts = p
                .natural(entry, "MaxAttempts", here, 0)
                .unwrap_or(3)
                .min(99_999_999) as u32;
            let max_delay_seconds = p.natural(entry, "MaxDelaySeconds", here, 1);
            let backoff_rate = match entry.get("BackoffRate") {
                None => 2.0,
                Some(v) => match v.as_f64().filter(|r| *r >= 1.0) {
                    Some(r) => r,
                    None => {
                        p.error(
                            format!("{here}/BackoffRate"),
                            "'BackoffRate' must be a number of at least 1.0",
                        );
                        2.0
                    }
                },
            };
            let full_jitter = match entry.get("JitterStrategy").map(|v| v.as_str()) {
                None | Some(Some("NONE")) => false,
                Some(Some("FULL")) => true,
                Some(_) => {
                    p.error(
                        format!("{here}/JitterStrategy"),
                        "'JitterStrategy' is FULL or NONE",
                    );
                    false
                }
            };
            Some(Retrier {
                error_equals,
                interval_seconds,
                max_attempts,
                backoff_rate,
                max_delay_seconds,
                full_jitter,
            })
        })
    }

    fn catchers(&mut self, map: &Map<String, Value>, at: &str) -> Vec<Catcher> {
        self.entries(map, "Catch", at, |p, entry, here| {
            p.allow(
                entry,
                here,
                &["ErrorEquals", "Next", "ResultPath", "Comment"],
            );
            let error_equals = p.error_equals(entry, here);
            let next = p.string(entry, "Next", here);
            if !entry.contains_key("Next") {
                p.error(format!("{here}/Next"), "A catcher needs 'Next'");
            }
            let result_path = p.path(entry, "ResultPath", here, true)?;
            Some(Catcher {
                error_equals: error_equals?,
                next: next?,
                result_path,
            })
        })
    }

    fn seconds(&mut self, map: &Map<String, Value>, field: &str, at: &str) -> Option<Seconds> {
        let path_field = format!("{field}Path");
        if map.contains_key(field) && map.contains_key(&path_field) {
            self.error(at, format!("Use '{field}' or '{path_field}', not both"));
        }
        if let Some(n) = self.natural(map, field, at, 1) {
            return Some(Seconds::Fixed(n));
        }
        let text = self.string(map, &path_field, at)?;
        Path::reference(&text)
            .map(Seconds::Path)
            .map_err(|e| self.error(format!("{at}/{path_field}"), e))
            .ok()
    }

    fn count(&mut self, map: &Map<String, Value>, field: &str, at: &str) -> Option<Count> {
        let path_field = format!("{field}Path");
        if let Some(v) = map.get(field) {
            return match v.as_f64().filter(|n| *n >= 0.0) {
                Some(n) => Some(Count::Fixed(n)),
                None => {
                    self.error(
                        format!("{at}/{field}"),
                        format!("'{field}' must be a non-negative number"),
                    );
                    None
                }
            };
        }
        let text = self.string(map, &path_field, at)?;
        Path::reference(&text)
            .map(Count::Path)
            .map_err(|e| self.error(format!("{at}/{path_field}"), e))
            .ok()
    }

    fn task(&mut self, map: &Map<String, Value>, at: &str) -> Option<Task> {
        let Some(resource) = self.string(map, "Resource", at) else {
            if !map.contains_key("Resource") {
                self.diagnostics.push(Diagnostic {
                    code: "INVALID_RESOURCE",
                    message: "A Task needs 'Resource'".into(),
                    location: format!("{at}/Resource"),
                });
            }
            return None;
        };
        let wait_for_task_token = resource.ends_with(".waitForTaskToken");
        let timeout = self.seconds(map, "TimeoutSeconds", at);
        let heartbeat = self.seconds(map, "HeartbeatSeconds", at);
        if let (Some(Seconds::Fixed(t)), Some(Seconds::Fixed(h))) = (&timeout, &heartbeat)
            && h >= t
        {
            self.error(
                format!("{at}/HeartbeatSeconds"),
                "'HeartbeatSeconds' must be smaller than 'TimeoutSeconds'",
            );
        }
        Some(Task {
            resource,
            wait_for_task_token,
            timeout,
            heartbeat,
        })
    }

    fn choice(&mut self, map: &Map<String, Value>, at: &str) -> Option<Kind> {
        let default = self.string(map, "Default", at);
        let Some(rules) = map
            .get("Choices")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
        else {
            self.error(
                format!("{at}/Choices"),
                "'Choices' must be a non-empty array",
            );
            return None;
        };
        let mut choices = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let here = format!("{at}/Choices/{i}");
            let next = rule.get("Next").and_then(Value::as_str);
            if next.is_none() {
                self.error(format!("{here}/Next"), "A choice rule needs 'Next'");
            }
            match Rule::compile(rule, &here, true) {
                Ok(r) => choices.extend(next.map(|n| (r, n.to_owned()))),
                Err(d) => self.diagnostics.push(d),
            }
        }
        Some(Kind::Choice { choices, default })
    }

    fn wait(&mut self, map: &Map<String, Value>, at: &str) -> Option<WaitFor> {
        let given: Vec<&str> = ["Seconds", "Timestamp", "SecondsPath", "TimestampPath"]
            .into_iter()
            .filter(|f| map.contains_key(*f))
            .collect();
        if given.len() != 1 {
            self.error(
                at,
                "A Wait state has exactly one of Seconds, Timestamp, SecondsPath or TimestampPath",
            );
            return None;
        }
        let field = given[0];
        let here = format!("{at}/{field}");
        match field {
            "Seconds" => self.natural(map, field, at, 0).map(WaitFor::Seconds),
            "Timestamp" => match map[field].as_str().and_then(crate::choice::timestamp) {
                Some(t) => Some(WaitFor::Timestamp(t)),
                None => {
                    self.error(
                        here,
                        "'Timestamp' must be an RFC 3339 timestamp, like 2016-03-14T01:59:00Z",
                    );
                    None
                }
            },
            _ => {
                let text = self.string(map, field, at)?;
                match Path::reference(&text) {
                    Ok(p) if field == "SecondsPath" => Some(WaitFor::SecondsPath(p)),
                    Ok(p) => Some(WaitFor::TimestampPath(p)),
                    Err(e) => {
                        self.error(here, e);
                        None
                    }
                }
            }
        }
    }

    fn text(&mut self, map: &Map<String, Value>, field: &str, at: &str) -> Option<Text> {
        let path_field = format!("{field}Path");
        if map.contains_key(field) && map.contains_key(&path_field) {
            self.error(at, format!("Use '{field}' or '{path_field}', not both"));
        }
        if let Some(literal) = self.string(map, field, at) {
            return Some(Text::Literal(literal));
        }
        let text = self.string(map, &path_field, at)?;
        let here = format!("{at}/{path_field}");
        let parsed = if intrinsic::is_call(&text) {
            Call::parse(&text).map(Text::Call)
        } else {
            Path::parse(&text).map(Text::Path)
        };
        parsed.map_err(|e| self.error(here, e)).ok()
    }

    fn branches(&mut self, map: &Map<String, Value>, at: &str) -> Option<Vec<Scope>> {
        let Some(branches) = map
            .get("Branches")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
        else {
            self.error(
                format!("{at}/Branches"),
                "'Branches' must be a non-empty array",
            );
            return None;
        };
        let mut out = Vec::new();
        for (i, branch) in branches.iter().enumerate() {
            let here = format!("{at}/Branches/{i}");
            let Some(b) = self.object(branch, &here, "A branch") else {
                continue;
            };
            self.allow(b, &here, &["StartAt", "States", "Comment"]);
            out.extend(self.scope(b, &here));
        }
        (out.len() == branches.len()).then_some(out)
    }

    fn map(&mut self, map: &Map<String, Value>, at: &str) -> Option<MapState> {
        let (field, processor) = match (map.get("ItemProcessor"), map.get("Iterator")) {
            (Some(p), None) => ("ItemProcessor", p),
            (None, Some(p)) => ("Iterator", p),
            _ => {
                self.error(
                    at,
                    "A Map state has 'ItemProcessor' (or the older 'Iterator'), one of them",
                );
                return None;
            }
        };
        let here = format!("{at}/{field}");
        let processor = self.object(processor, &here, &format!("'{field}'"))?;
        self.allow(
            processor,
            &here,
            &["StartAt", "States", "ProcessorConfig", "Comment"],
        );
        if let Some(config) = processor.get("ProcessorConfig") {
            let mode = config
                .get("Mode")
                .and_then(Value::as_str)
                .unwrap_or("INLINE");
            if mode != "INLINE" {
                self.error(
                    format!("{here}/ProcessorConfig/Mode"),
                    format!("Map mode {mode} is not supported: Nimbus runs INLINE maps"),
                );
            }
        }
        let scope = self.scope(processor, &here);
        if map.contains_key("ItemSelector") && map.contains_key("Parameters") {
            self.error(at, "Use 'ItemSelector' or 'Parameters', not both");
        }
        let item_selector = self
            .template(map, "ItemSelector", at)
            .or_else(|| self.template(map, "Parameters", at));
        let items_path = match self.path(map, "ItemsPath", at, false)? {
            Some(p) => p,
            None => {
                self.error(format!("{at}/ItemsPath"), "'ItemsPath' cannot be null");
                return None;
            }
        };
        let batcher = match map.get("ItemBatcher") {
            None => None,
            Some(value) => {
                let here = format!("{at}/ItemBatcher");
                let b = self.object(value, &here, "'ItemBatcher'")?;
                self.allow(
                    b,
                    &here,
                    &[
                        "MaxItemsPerBatch",
                        "MaxItemsPerBatchPath",
                        "MaxInputBytesPerBatch",
                        "MaxInputBytesPerBatchPath",
                        "BatchInput",
                    ],
                );
                let max_items = self.count(b, "MaxItemsPerBatch", &here);
                let max_bytes = self.count(b, "MaxInputBytesPerBatch", &here);
                if max_items.is_none() && max_bytes.is_none() {
                    self.error(
                        &here,
                        "'ItemBatcher' needs MaxItemsPerBatch or MaxInputBytesPerBatch",
                    );
                }
                let batch_input = self.template(b, "BatchInput", &here);
                Some(Batcher {
                    max_items,
                    max_bytes,
                    batch_input,
                })
            }
        };
        Some(MapState {
            processor: scope?,
            items_path,
            item_selector,
            batcher,
            max_concurrency: self.count(map, "MaxConcurrency", at),
            tolerated_count: self.count(map, "ToleratedFailureCount", at),
            tolerated_percentage: self.count(map, "ToleratedFailurePercentage", at),
        })
    }
}

/// The states a state can lead to, with the field that names each.
fn targets(state: &State) -> Vec<(String, &str)> {
    let mut out: Vec<(String, &str)> = Vec::new();
    if let Some(next) = &state.next {
        out.push(("Next".into(), next));
    }
    if let Kind::Choice { choices, default } = &state.kind {
        out.extend(
            choices
                .iter()
                .enumerate()
                .map(|(i, (_, n))| (format!("Choices/{i}/Next"), n.as_str())),
        );
        out.extend(default.iter().map(|d| ("Default".to_owned(), d.as_str())));
    }
    out.extend(
        state
            .catch
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("Catch/{i}/Next"), c.next.as_str())),
    );
    out
}

#[cfg(test)]
mod tests;
