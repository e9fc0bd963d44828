//! The first screen after `nimbus up --deploy`: for each function, the command that actually
//! reaches it (its route, the queue, topic, schedule or CloudEvents route that feeds it, or
//! `nimbus invoke`), then the app's queues, topics and schedules with the command that feeds each.

use nimbus_core::api::FunctionInfo;
use nimbus_core::events::{Endpoint, EventResources, Target};

/// How `function` is fed by the app's event resources, one line each.
fn feeds(events: &EventResources, function: &str) -> Vec<String> {
    let mut out = Vec::new();
    for t in events.triggers.iter().filter(|t| t.function == function) {
        out.push(format!(
            "fed by queue {q}: nimbus queue send {q} '{{\"hello\": 1}}'",
            q = t.queue
        ));
    }
    for topic in &events.topics {
        let subscribed = topic
            .subscriptions
            .iter()
            .any(|s| s.endpoint == Endpoint::Function(function.to_string()));
        if subscribed {
            out.push(format!(
                "subscribed to topic {t}: nimbus topic publish {t} '{{\"hello\": 1}}'",
                t = topic.name
            ));
        }
    }
    let this = Target::Function(function.to_string());
    for s in events.schedules.iter().filter(|s| s.target == this) {
        out.push(format!("runs on schedule {} ({})", s.name, s.expression));
    }
    for r in events.routes.iter().filter(|r| r.target == this) {
        out.push(format!(
            "takes CloudEvents of type {}: POST /v1/events",
            r.type_pattern
        ));
    }
    out
}

/// The lines to print for a deployed app.
pub fn lines(functions: &[FunctionInfo], events: &EventResources, base_url: &str) -> Vec<String> {
    let mut out = Vec::new();
    for f in functions {
        for r in &f.routes {
            let (method, path) = r.split_once(' ').unwrap_or(("ANY", r));
            out.push(format!("  {:<12} {method} {base_url}{path}", f.name));
        }
        let fed = feeds(events, &f.name);
        for how in &fed {
            out.push(format!("  {:<12} {how}", f.name));
        }
        if f.routes.is_empty() && fed.is_empty() {
            out.push(format!(
                "  {:<12} {} function: nimbus invoke {} --data '{{\"hello\": 1}}'",
                f.name,
                f.kind.as_str(),
                f.name
            ));
        }
    }
    for q in &events.queues {
        out.push(format!(
            "  {:<12} nimbus queue send {n} '...'; nimbus queue receive {n}",
            format!("queue {}", q.name),
            n = q.name
        ));
    }
    for t in &events.topics {
        out.push(format!(
            "  {:<12} nimbus topic publish {} '...' --attr key=value",
            format!("topic {}", t.name),
            t.name
        ));
    }
    for s in &events.schedules {
        out.push(format!(
            "  {:<12} {} (nimbus schedule disable {})",
            format!("schedule {}", s.name),
            s.expression,
            s.name
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_function_gets_the_command_that_reaches_it() {
        let spec = nimbus_core::manifest::AppSpec::parse(
            "app = \"a\"\n\
             [functions.web]\nruntime = \"python\"\nsource = \"s\"\nhandler = \"app.h\"\n\
             [functions.worker]\nruntime = \"python\"\nsource = \"s\"\nhandler = \"app.h\"\n\
             triggers = [{ queue = \"jobs\" }]\n\
             [functions.sub]\nruntime = \"python\"\nsource = \"s\"\nhandler = \"app.h\"\n\
             [functions.cron]\nruntime = \"python\"\nsource = \"s\"\nhandler = \"app.h\"\n\
             [functions.plain]\nruntime = \"python\"\nsource = \"s\"\nhandler = \"app.h\"\n\
             [queues.jobs]\n\
             [topics.shop]\nsubscriptions = [{ name = \"s\", function = \"sub\" }]\n\
             [schedules.nightly]\nexpression = \"rate(1 day)\"\ntarget = { function = \"cron\" }\n",
        )
        .unwrap();
        let functions: Vec<FunctionInfo> = ["cron", "plain", "sub", "web", "worker"]
            .iter()
            .map(|n| FunctionInfo {
                routes: if *n == "web" {
                    vec!["GET /hi".into()]
                } else {
                    vec![]
                },
                ..serde_json::from_value(serde_json::json!({
                    "name": n, "app": "a", "version": "v", "kind": "event", "runtime": "python",
                    "min_instances": 0, "concurrency_per_instance": 1, "memory_mb": 128,
                    "timeout_ms": 3000, "routes": [], "env": [], "allowed_hosts": [],
                    "created_at_ms": 0
                }))
                .unwrap()
            })
            .collect();
        let text = lines(&functions, &spec.events, "http://127.0.0.1:8790").join("\n");
        assert!(
            text.contains("web          GET http://127.0.0.1:8790/hi"),
            "{text}"
        );
        assert!(
            text.contains("worker       fed by queue jobs: nimbus queue send jobs"),
            "{text}"
        );
        assert!(text.contains("sub          subscribed to topic shop: nimbus topic publish shop"));
        assert!(text.contains("cron         runs on schedule nightly (rate(1 day))"));
        assert!(text.contains("plain        event function: nimbus invoke plain"));
        for fed in ["worker", "sub", "cron", "web"] {
            assert!(
                !text.contains(&format!("nimbus invoke {fed}")),
                "{fed} is not fed by invoke: {text}"
            );
        }
        assert!(text.contains("queue jobs"), "{text}");
        assert!(text.contains("topic shop"), "{text}");
    }
}
