//! The interpreter: what a state does with its input, step by step, without doing any of it.
//!
//! The engine enters a state ([`State::enter`]) and gets an [`Action`]: a transition it can
//! take at once, a timer, a task to run, branches or map iterations to run (each a [`Scope`]
//! of its own). When the work ends it reports the result ([`State::complete`]) or the error
//! ([`State::recover`], which applies `Retry` and `Catch`). Each answer is a pure function of
//! the definition, the input, the context object, the time and the random generator the engine
//! passes in, so the engine can journal every transition and replay none of them.

use rand::{Rng, RngCore};
use serde_json::{Map, Value, json};

use crate::definition::{
    Batcher, Count, Kind, MapState, Retrier, Scope, Seconds, State, Text, WaitFor,
};
use crate::path::{Path, kind_of};
use crate::{Failure, errors};

/// What the engine passes in besides the input.
pub struct Env<'a> {
    /// The context object (`$$`): `Execution`, `State`, `StateMachine`, `Task`, `Map`.
    pub context: &'a Value,
    /// Now, in milliseconds since the epoch.
    pub now_ms: i64,
    /// Where `States.UUID`, `States.MathRandom` and retry jitter get randomness.
    pub rng: &'a mut dyn RngCore,
}

/// Where a state leads.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// To the state named, with this input.
    Next {
        /// The state.
        state: String,
        /// Its input.
        input: Value,
    },
    /// The scope (execution, branch or iteration) succeeds with this output.
    End(Value),
    /// The scope fails (a Fail state, or an error nothing caught).
    Fail(Failure),
}

/// What entering a state asks of the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Nothing to run: take the transition.
    Go(Transition),
    /// A Wait state: take the transition at `until_ms` (ms since the epoch).
    Wait {
        /// When.
        until_ms: i64,
        /// Then.
        then: Transition,
    },
    /// A Task: run the resource with the payload, then `complete` or `recover`.
    Task(TaskCall),
    /// A Parallel state: run every branch with `input`, then `complete` with the array of
    /// their outputs in branch order ([`parallel_result`]) or `recover` with the first failure.
    Parallel {
        /// Every branch's input.
        input: Value,
    },
    /// A Map state: run the processor once per input, at most `max_concurrency` at once (0:
    /// no limit), then `complete` with [`MapRun::result`].
    Map(MapRun),
}

/// A task to run.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskCall {
    /// The `Resource`.
    pub resource: String,
    /// The payload (the state's input after `InputPath` and `Parameters`).
    pub payload: Value,
    /// `TimeoutSeconds`, resolved.
    pub timeout_seconds: Option<u64>,
    /// `HeartbeatSeconds`, resolved.
    pub heartbeat_seconds: Option<u64>,
    /// Whether the task ends by `SendTaskSuccess`/`Failure` with its token.
    pub wait_for_task_token: bool,
}

/// The iterations of a Map state.
#[derive(Debug, Clone, PartialEq)]
pub struct MapRun {
    /// Each iteration's input (an item, selected; or a batch).
    pub inputs: Vec<Value>,
    /// At most this many at once; 0 for no limit.
    pub max_concurrency: usize,
    /// How many iterations may fail before the Map does.
    pub tolerated_count: Option<usize>,
    /// What percentage may fail before the Map does.
    pub tolerated_percentage: Option<f64>,
}

/// What to do about an error.
#[derive(Debug, Clone, PartialEq)]
pub enum Recovery {
    /// Run the state's work again after `delay_ms`.
    Retry {
        /// How long to wait first.
        delay_ms: u64,
    },
    /// A catcher took it: go on there.
    Catch(Transition),
    /// Nothing handles it: the scope fails.
    Fail(Failure),
}

impl State {
    /// Enters the state with its raw input.
    pub fn enter(&self, input: &Value, env: &mut Env<'_>) -> Result<Action, Failure> {
        let effective = select_input(self, input, env.context)?;
        match &self.kind {
            Kind::Pass { result } => {
                let result = match (result, &self.parameters) {
                    (Some(result), _) => result.clone(),
                    (None, Some(parameters)) => {
                        parameters.render(&effective, env.context, env.rng)?
                    }
                    (None, None) => effective,
                };
                Ok(Action::Go(self.complete(input, result, env)?))
            }
            Kind::Task(task) => {
                let payload = match &self.parameters {
                    Some(parameters) => parameters.render(&effective, env.context, env.rng)?,
                    None => effective,
                };
                Ok(Action::Task(TaskCall {
                    resource: task.resource.clone(),
                    timeout_seconds: resolve_seconds(
                        &task.timeout,
                        input,
                        env.context,
                        "TimeoutSecondsPath",
                    )?,
                    heartbeat_seconds: resolve_seconds(
                        &task.heartbeat,
                        input,
                        env.context,
                        "HeartbeatSecondsPath",
                    )?,
                    wait_for_task_token: task.wait_for_task_token,
                    payload,
                }))
            }
            Kind::Choice { choices, default } => {
                for (rule, next) in choices {
                    if rule.eval(&effective, env.context)? {
                        return Ok(Action::Go(self.leave(
                            effective,
                            Some(next),
                            env.context,
                        )?));
                    }
                }
                match default {
                    Some(next) => Ok(Action::Go(self.leave(
                        effective,
                        Some(next),
                        env.context,
                    )?)),
                    None => Ok(Action::Go(Transition::Fail(Failure::new(
                        errors::NO_CHOICE_MATCHED,
                        format!(
                            "No Choice rule of state '{}' matched, and it has no Default",
                            self.name
                        ),
                    )))),
                }
            }
            Kind::Wait(wait) => {
                let until_ms = wait_until(wait, &effective, env)?;
                Ok(Action::Wait {
                    until_ms,
                    then: self.leave(effective, self.next.as_ref(), env.context)?,
                })
            }
            Kind::Succeed => Ok(Action::Go(self.leave(effective, None, env.context)?)),
            Kind::Fail { error, cause } => {
                let error =
                    resolve_text(error, input, env)?.unwrap_or_else(|| "States.Fail".to_owned());
                let cause = resolve_text(cause, input, env)?;
                Ok(Action::Go(Transition::Fail(Failure { error, cause })))
            }
            Kind::Parallel(_) => {
                let input = match &self.parameters {
                    Some(parameters) => parameters.render(&effective, env.context, env.rng)?,
                    None => effective,
                };
                Ok(Action::Parallel { input })
            }
            Kind::Map(map) => Ok(Action::Map(map_run(map, &effective, env)?)),
        }
    }

    /// Finishes the state's work with `result`: `ResultSelector`, `ResultPath` (into the raw
    /// input), `OutputPath`, then on to `Next` or the end.
    pub fn complete(
        &self,
        input: &Value,
        result: Value,
        env: &mut Env<'_>,
    ) -> Result<Transition, Failure> {
        let result = match &self.result_selector {
            Some(selector) => selector.render(&result, env.context, env.rng)?,
            None => result,
        };
        let combined = place(&self.result_path, input, result)?;
        self.leave(combined, self.next.as_ref(), env.context)
    }

    /// Handles an error raised by the state's work. `attempts` holds how often each retrier
    /// has retried this state since it was entered (the engine keeps it, empty at entry).
    pub fn recover(
        &self,
        input: &Value,
        failure: Failure,
        attempts: &mut Vec<u32>,
        rng: &mut dyn RngCore,
    ) -> Recovery {
        if failure.is_terminal() {
            return Recovery::Fail(failure);
        }
        attempts.resize(self.retry.len(), 0);
        if let Some(i) = self
            .retry
            .iter()
            .position(|r| r.error_equals.iter().any(|e| failure.matches(e)))
        {
            let retrier = &self.retry[i];
            if attempts[i] < retrier.max_attempts {
                let delay_ms = retry_delay(retrier, attempts[i], rng);
                attempts[i] += 1;
                return Recovery::Retry { delay_ms };
            }
        }
        let Some(catcher) = self
            .catch
            .iter()
            .find(|c| c.error_equals.iter().any(|e| failure.matches(e)))
        else {
            return Recovery::Fail(failure);
        };
        match place(&catcher.result_path, input, failure.to_json()) {
            Ok(input) => Recovery::Catch(Transition::Next {
                state: catcher.next.clone(),
                input,
            }),
            Err(f) => Recovery::Fail(f),
        }
    }

    /// `OutputPath`, then the transition.
    fn leave(
        &self,
        value: Value,
        next: Option<&String>,
        context: &Value,
    ) -> Result<Transition, Failure> {
        let output = match &self.output_path {
            Some(path) => path.select(&value, context).ok_or_else(|| {
                runtime(format!("Invalid path '{path}' : The OutputPath of state '{}' matches nothing in '{value}'", self.name))
            })?,
            None => json!({}),
        };
        Ok(match next {
            Some(state) => Transition::Next {
                state: state.clone(),
                input: output,
            },
            None => Transition::End(output),
        })
    }
}

impl Scope {
    /// The first transition of the scope: to its `StartAt` with `input`.
    pub fn start(&self, input: Value) -> Transition {
        Transition::Next {
            state: self.start_at.clone(),
            input,
        }
    }
}

/// A Parallel state's result: its branches' outputs in order, or the first branch failure.
pub fn parallel_result(outputs: Vec<Result<Value, Failure>>) -> Result<Value, Failure> {
    outputs
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

impl MapRun {
    /// The Map's result from every iteration's outcome (in order): the array of outputs —
    /// a failed iteration tolerated stands as its error object — or the failure that ends it.
    pub fn result(&self, outcomes: Vec<Result<Value, Failure>>) -> Result<Value, Failure> {
        let total = outcomes.len();
        let failed = outcomes.iter().filter(|o| o.is_err()).count();
        if failed == 0 {
            return Ok(Value::Array(outcomes.into_iter().flatten().collect()));
        }
        if self.tolerated_count.is_none() && self.tolerated_percentage.is_none() {
            let first = outcomes
                .into_iter()
                .find_map(Result::err)
                .expect("one failed");
            return Err(first);
        }
        // Either threshold, when given, ends the Map once exceeded.
        let over_count = self.tolerated_count.is_some_and(|n| failed > n);
        let over_percentage = self
            .tolerated_percentage
            .is_some_and(|p| failed as f64 * 100.0 > p * total as f64);
        if over_count || over_percentage {
            return Err(Failure::new(
                errors::EXCEED_TOLERATED_FAILURE_THRESHOLD,
                format!("{failed} of {total} iterations failed, more than tolerated"),
            ));
        }
        Ok(Value::Array(
            outcomes
                .into_iter()
                .map(|o| o.unwrap_or_else(|f| f.to_json()))
                .collect(),
        ))
    }
}

fn runtime(cause: String) -> Failure {
    Failure::new(errors::RUNTIME, cause)
}

fn select_input(state: &State, input: &Value, context: &Value) -> Result<Value, Failure> {
    match &state.input_path {
        Some(path) => path.select(input, context).ok_or_else(|| {
            runtime(format!(
                "Invalid path '{path}' : The InputPath of state '{}' matches nothing in '{input}'",
                state.name
            ))
        }),
        None => Ok(json!({})),
    }
}

/// `ResultPath`: the result placed into the raw input (`$` replaces it; `null` drops the result).
fn place(result_path: &Option<Path>, input: &Value, result: Value) -> Result<Value, Failure> {
    match result_path {
        None => Ok(input.clone()),
        Some(path) => path
            .put(input.clone(), result)
            .map_err(|e| Failure::new(errors::RESULT_PATH_MATCH_FAILURE, e)),
    }
}

fn resolve_seconds(
    seconds: &Option<Seconds>,
    input: &Value,
    context: &Value,
    field: &str,
) -> Result<Option<u64>, Failure> {
    match seconds {
        None => Ok(None),
        Some(Seconds::Fixed(n)) => Ok(Some(*n)),
        Some(Seconds::Path(path)) => match path.select(input, context) {
            Some(v) if v.as_u64().is_some_and(|n| n > 0) => Ok(v.as_u64()),
            other => Err(runtime(format!(
                "The {field} '{path}' must name a positive integer, found {}",
                other.map_or("nothing".to_owned(), |v| v.to_string())
            ))),
        },
    }
}

fn resolve_count(
    count: &Option<Count>,
    input: &Value,
    context: &Value,
    what: &str,
) -> Result<Option<f64>, Failure> {
    match count {
        None => Ok(None),
        Some(Count::Fixed(n)) => Ok(Some(*n)),
        Some(Count::Path(path)) => match path.select(input, context).and_then(|v| v.as_f64()) {
            Some(n) if n >= 0.0 => Ok(Some(n)),
            _ => Err(runtime(format!(
                "The {what} path '{path}' must name a non-negative number"
            ))),
        },
    }
}

fn resolve_text(
    text: &Option<Text>,
    input: &Value,
    env: &mut Env<'_>,
) -> Result<Option<String>, Failure> {
    let value = match text {
        None => return Ok(None),
        Some(Text::Literal(s)) => return Ok(Some(s.clone())),
        Some(Text::Path(path)) => path.select(input, env.context).ok_or_else(|| {
            runtime(format!(
                "The path '{path}' of a Fail state matches nothing in the input"
            ))
        })?,
        Some(Text::Call(call)) => call
            .eval(input, env.context, env.rng)
            .map_err(|e| Failure::new(errors::INTRINSIC_FAILURE, e))?,
    };
    match value {
        Value::String(s) => Ok(Some(s)),
        other => Err(runtime(format!(
            "A Fail state's ErrorPath or CausePath must give a string, not a {}",
            kind_of(&other)
        ))),
    }
}

fn wait_until(wait: &WaitFor, input: &Value, env: &Env<'_>) -> Result<i64, Failure> {
    let from_seconds = |s: u64| env.now_ms.saturating_add((s as i64).saturating_mul(1000));
    Ok(match wait {
        WaitFor::Seconds(s) => from_seconds(*s),
        WaitFor::Timestamp(t) => t.as_millisecond(),
        WaitFor::SecondsPath(path) => match path.select(input, env.context) {
            Some(v) if v.as_u64().is_some() => from_seconds(v.as_u64().unwrap_or_default()),
            other => {
                return Err(runtime(format!(
                    "The SecondsPath '{path}' must name a non-negative integer, found {}",
                    other.map_or("nothing".to_owned(), |v| v.to_string())
                )));
            }
        },
        WaitFor::TimestampPath(path) => {
            match path
                .select(input, env.context)
                .as_ref()
                .and_then(Value::as_str)
                .and_then(crate::choice::timestamp)
            {
                Some(t) => t.as_millisecond(),
                None => {
                    return Err(runtime(format!(
                        "The TimestampPath '{path}' must name an RFC 3339 timestamp"
                    )));
                }
            }
        }
    })
}

fn retry_delay(retrier: &Retrier, attempt: u32, rng: &mut dyn RngCore) -> u64 {
    let mut seconds =
        retrier.interval_seconds as f64 * retrier.backoff_rate.powi(attempt.min(1000) as i32);
    if let Some(max) = retrier.max_delay_seconds {
        seconds = seconds.min(max as f64);
    }
    // A year is the longest any wait may be; it also keeps the float finite.
    seconds = seconds.min(31_536_000.0);
    if retrier.full_jitter {
        seconds = rng.random_range(0.0..=seconds);
    }
    (seconds * 1000.0).round() as u64
}

fn map_run(map: &MapState, input: &Value, env: &mut Env<'_>) -> Result<MapRun, Failure> {
    let items = match map.items_path.select(input, env.context) {
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(runtime(format!(
                "The ItemsPath '{}' must name an array, found a {}",
                map.items_path,
                kind_of(&other)
            )));
        }
        None => {
            return Err(runtime(format!(
                "The ItemsPath '{}' matches nothing in the input",
                map.items_path
            )));
        }
    };
    let selected = match &map.item_selector {
        None => items,
        Some(selector) => {
            // One copy of the context, its `Map.Item` replaced item by item.
            let mut context = env.context.clone();
            let mut selected = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                if let Value::Object(c) = &mut context {
                    c.insert(
                        "Map".into(),
                        json!({"Item": {"Index": index, "Value": item}}),
                    );
                }
                selected.push(selector.render(input, &context, env.rng)?);
            }
            selected
        }
    };
    let inputs = match &map.batcher {
        None => selected,
        Some(batcher) => batches(batcher, selected, input, env)?,
    };
    let max_concurrency =
        resolve_count(&map.max_concurrency, input, env.context, "MaxConcurrency")?;
    Ok(MapRun {
        inputs,
        max_concurrency: max_concurrency.unwrap_or(0.0) as usize,
        tolerated_count: resolve_count(
            &map.tolerated_count,
            input,
            env.context,
            "ToleratedFailureCount",
        )?
        .map(|n| n as usize),
        tolerated_percentage: resolve_count(
            &map.tolerated_percentage,
            input,
            env.context,
            "ToleratedFailurePercentage",
        )?,
    })
}

/// `ItemBatcher`: consecutive items grouped by count and by serialized size.
fn batches(
    batcher: &Batcher,
    items: Vec<Value>,
    input: &Value,
    env: &mut Env<'_>,
) -> Result<Vec<Value>, Failure> {
    let max_items = resolve_count(&batcher.max_items, input, env.context, "MaxItemsPerBatch")?
        .map_or(usize::MAX, |n| (n as usize).max(1));
    let max_bytes = resolve_count(
        &batcher.max_bytes,
        input,
        env.context,
        "MaxInputBytesPerBatch",
    )?
    .map_or(usize::MAX, |n| n as usize);
    let batch_input = match &batcher.batch_input {
        Some(t) => Some(t.render(input, env.context, env.rng)?),
        None => None,
    };
    let mut out = Vec::new();
    let mut current: Vec<Value> = Vec::new();
    let mut bytes = 0;
    for item in items {
        let size = item.to_string().len();
        if !current.is_empty() && (current.len() == max_items || bytes + size > max_bytes) {
            out.push(batch(std::mem::take(&mut current), &batch_input));
            bytes = 0;
        }
        bytes += size;
        current.push(item);
    }
    if !current.is_empty() {
        out.push(batch(current, &batch_input));
    }
    Ok(out)
}

fn batch(items: Vec<Value>, batch_input: &Option<Value>) -> Value {
    let mut map = Map::new();
    if let Some(b) = batch_input {
        map.insert("BatchInput".into(), b.clone());
    }
    map.insert("Items".into(), Value::Array(items));
    Value::Object(map)
}

#[cfg(test)]
mod tests;
