//! The checks behind Nimbus's fuzz targets: one function per parser of untrusted input, each
//! taking arbitrary bytes. `fuzz/` (cargo-fuzz, nightly) runs them under libFuzzer; the tests
//! of this crate run every committed seed and every input that once crashed one of them
//! (`fuzz/seeds/<target>`, `fuzz/regressions/<target>`) on stable, with the rest of the suite.
//!
//! A check passes when the parser returns, whatever it returns, and the properties stated at
//! each check hold (round trips, "a failed operation changes nothing", bounds). A panic is a
//! finding.
//!
//! Structured inputs are written as a small HTTP-like message (see [`Message`]), so seeds stay
//! readable and the fuzzer still mutates every byte.
#![allow(clippy::unwrap_used)] // A panic is how a check reports a finding.

use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue};

/// A fuzz check: takes any bytes, panics only on a finding.
pub type Check = fn(&[u8]);

/// Every target: its name (the file under `fuzz/fuzz_targets/` and the corpus directories) and
/// its check.
pub const TARGETS: [(&str, Check); 15] = [
    ("manifest", manifest),
    ("routes", routes),
    ("cloudevents", cloudevents),
    ("sigv4", sigv4),
    ("lambda_bodies", lambda_bodies),
    ("runtime_api", runtime_api),
    ("filter_policy", filter_policy),
    ("schedule", schedule),
    ("bundle", bundle),
    ("egress", egress),
    ("headers", headers),
    ("route_access", route_access),
    ("tenant_routing", tenant_routing),
    ("durable_checkpoint", durable_checkpoint),
    ("asl", asl),
];

/// A request written as text: a first line (`METHOD TARGET`), `Name: value` header lines, an
/// empty line, and the body (the rest, as bytes). Header lines that are not a valid header are
/// skipped (a real server would refuse them before any parser here sees them).
#[derive(Debug, Default)]
pub struct Message {
    /// The first word of the first line.
    pub method: String,
    /// The rest of the first line.
    pub target: String,
    /// The headers that are valid HTTP headers.
    pub headers: HeaderMap,
    /// Everything after the empty line.
    pub body: Vec<u8>,
}

impl Message {
    /// Reads `data` as a message; bytes that are not text in the head are replaced.
    pub fn parse(data: &[u8]) -> Self {
        let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
            Some(i) => (&data[..i], &data[i + 2..]),
            None => (data, &[][..]),
        };
        let head = String::from_utf8_lossy(head);
        let mut lines = head.lines();
        let first = lines.next().unwrap_or_default();
        let (method, target) = first.split_once(' ').unwrap_or((first, ""));
        let mut headers = HeaderMap::new();
        for line in lines {
            if let Some((name, value)) = line.split_once(':')
                && let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(name.trim().as_bytes()),
                    HeaderValue::from_str(value.trim()),
                )
            {
                headers.append(n, v);
            }
        }
        Self {
            method: method.to_string(),
            target: target.to_string(),
            headers,
            body: body.to_vec(),
        }
    }
}

/// The manifest (`nimbus.toml`): parsing and validation, never a panic.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = nimbus_core::manifest::AppSpec::parse(text) {
        assert!(!e.to_string().is_empty(), "an error says what is wrong");
    }
}

/// Route specs and matching. Lines before a `--` line are routes (`GET /users/{id}`), lines
/// after it are requests (`GET /users/7`). A valid spec prints as a spec that parses back to
/// itself; every captured parameter is a piece of the request path.
pub fn routes(data: &[u8]) {
    use nimbus_core::route::{RouteMatch, RouteSpec, RouteTable};
    let text = String::from_utf8_lossy(data);
    let (specs, requests) = text.split_once("\n--\n").unwrap_or((&text, ""));
    let mut parsed = Vec::new();
    for (i, line) in specs.lines().enumerate() {
        if let Ok(spec) = RouteSpec::parse(line) {
            let again = RouteSpec::parse(&spec.to_string()).expect("a printed route parses");
            assert_eq!(again, spec);
            parsed.push((spec, i));
        }
    }
    let Ok(table) = RouteTable::build(parsed) else {
        return;
    };
    for line in requests.lines() {
        let (method, path) = line.split_once(' ').unwrap_or(("GET", line));
        if let RouteMatch::Found { params, .. } = table.at(method, path) {
            for (_, value) in params {
                assert!(path.contains(value.as_str()), "{value} from {path}");
            }
        }
    }
}

/// CloudEvents over HTTP (binary, structured and batch mode), as a [`Message`]. An event read
/// survives the trip through the attributes the event log stores, and prints as JSON with its
/// `specversion`.
pub fn cloudevents(data: &[u8]) {
    use nimbus_events::cloudevent::{CloudEvent, from_http};
    let m = Message::parse(data);
    let Ok(events) = from_http(&m.headers, m.body) else {
        return;
    };
    for e in events {
        let json = e.to_json();
        assert_eq!(json["specversion"], "1.0");
        let back = CloudEvent::from_attributes(&e.to_attributes(), e.data.clone());
        assert_eq!(
            back.as_ref(),
            Some(&e),
            "stored attributes give the event back"
        );
    }
}

/// The example credentials of AWS's Signature Version 4 test suite, as the seeds use them.
const EXAMPLE_KEY: &str = "AKIDEXAMPLE";
const EXAMPLE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// 2015-08-30T12:36:00Z, the test suite's `X-Amz-Date`.
const EXAMPLE_NOW: i64 = 1_440_938_160;

/// SigV4 verification of a [`Message`] (path and query in its target) for the test suite's
/// `service` in `us-east-1`. Only the example key can pass.
pub fn sigv4(data: &[u8]) {
    use nimbus_aws::sigv4::{Scope, verify};
    let m = Message::parse(data);
    let (path, query) = m.target.split_once('?').unwrap_or((&m.target, ""));
    let req = nimbus_aws::RawRequest {
        method: &m.method,
        raw_path: path,
        raw_query: query,
        headers: &m.headers,
        body: &m.body,
    };
    for unsigned_payload in [false, true] {
        let scope = Scope {
            service: "service",
            region: "us-east-1",
            unsigned_payload,
        };
        let secret = |key: &str| (key == EXAMPLE_KEY).then(|| EXAMPLE_SECRET.to_string());
        if let Ok(key) = verify(&req, scope, secret, EXAMPLE_NOW) {
            assert_eq!(key, EXAMPLE_KEY);
        }
    }
    // The same request as an AWS call Nimbus does not serve: classified without panicking, and
    // the answer names the operation in a well-formed document of its protocol.
    if let Some(call) =
        nimbus_aws::unsupported::classify(&m.method, path, query, &m.headers, &m.body)
    {
        let answer = call.answer("request-id");
        assert!((400..600).contains(&answer.status));
        if answer.content_type.contains("json") {
            let doc: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
            let text = doc.to_string();
            // An operation Nimbus lacks, or (signed for Lambda) no operation at all.
            assert!(
                text.contains("Nimbus does not support")
                    || text.contains("is not an operation of the Lambda API"),
                "{text}"
            );
        } else {
            assert!(!answer.body.contains("<script"), "XML text is escaped");
        }
    }
}

/// What a handler returns, read as Lambda reads it: an API Gateway (payload 2.0) response, a
/// partial batch response, a function name with its qualifier.
pub fn lambda_bodies(data: &[u8]) {
    if let Ok(r) = nimbus_aws::apigw::response(data) {
        assert!((100..1000).contains(&r.status.as_u16()));
    }
    let _ = nimbus_aws::events::batch_item_failures(data);
    let name = String::from_utf8_lossy(data);
    // A client context: decoded only to a JSON object, at most the documented size.
    if let Ok(json) = nimbus_aws::lambda::decode_client_context(&name) {
        assert!(name.len() <= nimbus_aws::lambda::CLIENT_CONTEXT_MAX_BYTES);
        assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok_and(|v| v.is_object()));
    }
    let (function, qualifier) = nimbus_aws::lambda::parse_function_name(&name);
    assert!(name.contains(function));
    if let Some(q) = qualifier {
        assert!(name.contains(q));
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
    })
}

/// A request to a sandbox's Runtime API, as a [`Message`], while no invocation is in flight:
/// answered, and never with a 5xx (time is paused: a `next` that waits gives up at once).
pub fn runtime_api(data: &[u8]) {
    use tower::ServiceExt;
    let m = Message::parse(data);
    let Ok(method) = http::Method::from_bytes(m.method.as_bytes()) else {
        return;
    };
    let Ok(uri) = m.target.parse::<http::Uri>() else {
        return;
    };
    let mut req = http::Request::new(axum::body::Body::from(m.body));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = m.headers;
    runtime().block_on(async {
        let api = nimbus_process::rapi::runtime_api();
        let served =
            tokio::time::timeout(std::time::Duration::from_secs(1), api.router.oneshot(req)).await;
        if let Ok(Ok(response)) = served {
            assert!(
                !response.status().is_server_error(),
                "{}",
                response.status()
            );
        }
    });
}

/// An SNS filter policy and a message to match: two JSON documents one after the other.
pub fn filter_policy(data: &[u8]) {
    use nimbus_core::filter::FilterPolicy;
    let mut values = serde_json::Deserializer::from_slice(data).into_iter::<serde_json::Value>();
    let Some(Ok(policy)) = values.next() else {
        return;
    };
    let Ok(policy) = FilterPolicy::parse(&policy) else {
        return;
    };
    if let Some(Ok(serde_json::Value::Object(doc))) = values.next() {
        assert_eq!(policy.matches(&doc), policy.matches(&doc));
    }
}

/// `rate(...)` and `cron(...)` expressions: a valid one fires strictly after the time asked,
/// in UTC and across daylight-saving changes.
pub fn schedule(data: &[u8]) {
    use nimbus_core::schedule::Schedule;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(s) = Schedule::parse(text) else {
        return;
    };
    let start = jiff::Timestamp::from_second(1_700_000_000).unwrap();
    let after = jiff::Timestamp::from_second(1_710_054_000).unwrap(); // just before a DST change in New York
    for tz in [
        jiff::tz::TimeZone::UTC,
        jiff::tz::TimeZone::get("America/New_York").unwrap_or(jiff::tz::TimeZone::UTC),
    ] {
        if let Some(next) = s.next_after(start, after, &tz) {
            assert!(next > after, "{text}: {next} is not after {after}");
        }
    }
}

/// A code bundle (zip): extracted entirely inside its destination, or — on any error —
/// nothing is left behind at all.
pub fn bundle(data: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("code");
    match nimbus_process::code::extract(data, &dest) {
        Ok(()) => {
            let mut stack = vec![dest.clone()];
            while let Some(d) = stack.pop() {
                for entry in std::fs::read_dir(&d).unwrap() {
                    let entry = entry.unwrap();
                    let kind = entry.file_type().unwrap();
                    assert!(!kind.is_symlink(), "{:?} is a link", entry.path());
                    assert!(entry.path().starts_with(&dest));
                    if kind.is_dir() {
                        stack.push(entry.path());
                    }
                }
            }
        }
        Err(_) => {
            let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
            assert!(left.is_empty(), "a failed extraction left {left:?}");
        }
    }
    // Read-only files must not stop the temporary directory's removal.
    make_writable(dir.path());
}

fn make_writable(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755));
            make_writable(&path);
        }
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
}

/// `allowed_hosts` lists (lines before `--`) and a destination (`host port` after it), and the
/// request heads a sandbox sends its egress proxy (the whole input). Nothing is allowed that
/// the list does not name.
pub fn egress(data: &[u8]) {
    use nimbus_core::egress::{Decision, EgressPolicy};
    let text = String::from_utf8_lossy(data);
    let (list, ask) = text.split_once("\n--\n").unwrap_or((&text, ""));
    let hosts: Vec<String> = list.lines().map(str::to_string).collect();
    if let Ok(policy) = EgressPolicy::parse(&hosts) {
        let (host, port) = ask.trim().split_once(' ').unwrap_or((ask.trim(), "443"));
        let port = port.trim().parse().unwrap_or(443);
        match policy.decide(host, port) {
            Decision::Denied => {}
            Decision::Address(_) | Decision::Name => {
                assert!(!policy.is_empty());
                let bare = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase();
                // Named in the list: as written, or as the same address written another way
                // (`::` and `[::0]`).
                let same_address = |h: &str| {
                    let h = h.trim();
                    let addr = h
                        .parse::<std::net::IpAddr>()
                        .ok()
                        .or_else(|| h.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
                        .or_else(|| {
                            h.trim_start_matches('[')
                                .trim_end_matches(']')
                                .parse::<std::net::IpAddr>()
                                .ok()
                        });
                    addr.is_some() && addr == bare.parse::<std::net::IpAddr>().ok()
                };
                assert!(
                    hosts
                        .iter()
                        .any(|h| h.to_ascii_lowercase().contains(&bare) || same_address(h)),
                    "{host} allowed by {hosts:?}"
                );
            }
        }
    }
    let _ = nimbus_process::egress::parse_head(data);
}

/// Header values read from callers: `traceparent` (prints back as itself when valid), webhook
/// signatures, and the size and time arguments the CLI and API take.
pub fn headers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(t) = nimbus_core::trace::TraceParent::parse(&text) {
        let again = nimbus_core::trace::TraceParent::parse(&t.to_string());
        assert_eq!(again, Some(t));
    }
    let (header, body) = text.split_once('\n').unwrap_or((&text, ""));
    let _ = nimbus_events::webhook::verify("secret", header, body.as_bytes(), EXAMPLE_NOW, 300);
    let _ = nimbus_core::budget::parse_size(&text);
    let _ = nimbus_core::usage::parse_time(&text);
}

/// The public key set the `route_access` check verifies against: the RFC 8037 Ed25519 test
/// key (`kid` "ed-1") and an RSA key (`kid` "rsa-1"), both public test values.
pub const ACCESS_JWKS: &str = r#"{"keys": [
  {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ed-1"},
  {"kty": "RSA", "kid": "rsa-1", "e": "AQAB",
   "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}
]}"#;

/// Route access, from what callers send: a bearer token (the first line) verified against a
/// fixed key set, a function authorizer's answer (the whole input), and a CORS preflight
/// (origin, method and request headers on the next lines). None panics; a token that verifies
/// has the issuer and audience it was checked for.
pub fn route_access(data: &[u8]) {
    use nimbus_core::access::{Cors, JwtAuthorizer, JwtKeys};
    static KEYS: OnceLock<nimbus_access::KeySet> = OnceLock::new();
    let keys = KEYS.get_or_init(|| nimbus_access::KeySet::parse(ACCESS_JWKS.as_bytes()).unwrap());
    let authorizer = JwtAuthorizer {
        name: "users".into(),
        issuer: "https://issuer.test/".into(),
        audiences: vec!["shop".into()],
        keys: JwtKeys::Inline(ACCESS_JWKS.into()),
        identity_source: nimbus_core::access::IdentitySource::authorization(),
    };
    let text = String::from_utf8_lossy(data);
    let mut lines = text.lines();
    let token = nimbus_access::jwt::bearer(lines.next().unwrap_or_default());
    if let Ok(v) = nimbus_access::jwt::verify(token, keys, &authorizer, EXAMPLE_NOW as u64) {
        assert_eq!(v.claims["iss"], "https://issuer.test/");
        let _ = v.context();
    }
    let _ = nimbus_access::jwt::token_kid(token);
    let _ = nimbus_access::function::decision(data);
    let cors = Cors {
        allow_origins: vec!["https://app.example.com".into()],
        allow_methods: vec!["PUT".into()],
        allow_headers: vec!["content-type".into()],
        expose_headers: Vec::new(),
        allow_credentials: true,
        max_age_s: Some(60),
    };
    let origin = lines.next().unwrap_or_default();
    let method = lines.next().unwrap_or_default();
    if let Ok(headers) = cors.preflight(origin, method, lines.next()) {
        assert!(cors.allows_origin(origin));
        assert!(
            headers
                .iter()
                .any(|(k, _)| *k == "access-control-allow-origin")
        );
    }
}

/// Tenants and which one a request is for: the body's lines are tenants (`name domain…`), the
/// message's target and `Host` a request. None panics; a tenant that is accepted has a valid
/// name and normal domains; a request named by its path prefix keeps the rest of its path, and
/// one named by its host goes to the tenant that claims that host, its path unchanged.
pub fn tenant_routing(data: &[u8]) {
    use nimbus_core::tenant::{
        TENANT_PATH_PREFIX, Tenant, TenantDirectory, TenantLimits, normalise_domain, validate_name,
    };
    let m = Message::parse(data);
    let body = String::from_utf8_lossy(&m.body);
    let tenants: Vec<Tenant> = body
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let domains: Vec<String> = words.map(str::to_string).collect();
            Tenant::new(name, &domains, TenantLimits::default(), 0).ok()
        })
        .collect();
    for t in &tenants {
        assert!(validate_name(&t.name).is_ok());
        for d in &t.domains {
            assert_eq!(normalise_domain(d).as_deref(), Ok(d.as_str()));
        }
    }
    let directory = TenantDirectory::new(&tenants);
    let host = m.headers.get("host").and_then(|h| h.to_str().ok());
    let path = m.target.as_str();
    let target = directory.resolve(host, path);
    let Some(tenant) = target.tenant else {
        assert_eq!(target.path, path);
        return;
    };
    let prefix = format!("{TENANT_PATH_PREFIX}/{tenant}");
    if path.starts_with(&format!("{prefix}/")) || path == prefix {
        assert!(target.path.starts_with('/'));
        assert!(
            format!("{prefix}{}", target.path) == path || (target.path == "/" && path == prefix)
        );
    } else {
        assert_eq!(target.path, path);
        let host = host
            .unwrap()
            .rsplit_once(':')
            .map_or(host.unwrap(), |(h, _)| h);
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        assert_eq!(directory.owner_of(&host), Some(tenant.as_str()));
    }
}

/// A durable execution's checkpoint, as a handler (or an attacker) sends it: the input is a
/// JSON list of operation updates applied to a journal that already holds a running step, a
/// wait and a callback. None panics; a refused batch changes nothing; an accepted one moves the
/// token on by one. Tokens, callback ids and handler answers are read from the same bytes.
pub fn durable_checkpoint(data: &[u8]) {
    use nimbus_durable::journal::Journal;
    use nimbus_durable::model::{InvocationOutput, OperationUpdate};
    let _ = InvocationOutput::parse(data);
    let text = String::from_utf8_lossy(data);
    let _ = nimbus_durable::token::checkpoint_seq(b"k", "arn", &text);
    let _ = nimbus_durable::token::callback_target(b"k", &text);
    let Ok(updates) = serde_json::from_slice::<Vec<OperationUpdate>>(data) else {
        return;
    };
    static BASE: OnceLock<Journal> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        let mut j = Journal::start(Some("{}".into()), 0);
        let start: Vec<OperationUpdate> = serde_json::from_str(
            r#"[{"Id": "s", "Type": "STEP", "Action": "START"},
                {"Id": "w", "Type": "WAIT", "Action": "START", "WaitOptions": {"WaitSeconds": 5}},
                {"Id": "c", "Type": "CALLBACK", "Action": "START",
                 "CallbackOptions": {"TimeoutSeconds": 60}}]"#,
        )
        .unwrap();
        j.checkpoint(1, None, &start, 0, &mut |_: &str| "cb".into())
            .unwrap();
        j
    });
    let mut journal = base.clone();
    let mut ids = 0;
    match journal.checkpoint(base.token(), Some("c"), &updates, 1_000, &mut |_: &str| {
        ids += 1;
        format!("cb{ids}")
    }) {
        Ok(done) => assert_eq!(done.token, base.token() + 1),
        Err(_) => assert_eq!(&journal, base, "a refused checkpoint changed the journal"),
    }
}

/// A state machine definition (JSON text), and the same text as an intrinsic call and a path:
/// parsing never panics; a definition it accepts runs one replay pass over a new execution
/// without panicking, asks for a bounded number of operations, and the journal accepts every
/// one of them (a refused one would fail the execution with the wrong error); its history reads.
pub fn asl(data: &[u8]) {
    use nimbus_asl::definition::Definition;
    use nimbus_asl::replay::{self, PASS_LIMIT, Run};
    use nimbus_durable::journal::Journal;
    let text = String::from_utf8_lossy(data);
    let _ = nimbus_asl::intrinsic::Call::parse(&text);
    let _ = nimbus_asl::path::Path::parse(&text);
    let Ok(definition) = Definition::parse(&text) else {
        return;
    };
    let run = Run {
        definition: &definition,
        execution_arn: "arn:aws:states:us-east-1:000000000000:execution:m:e",
        execution_name: "e",
        machine_arn: "arn:aws:states:us-east-1:000000000000:stateMachine:m",
        machine_name: "m",
        role_arn: "r",
    };
    let input =
        r#"{"items": [1, "two", {"n": 3}], "n": 1, "s": "x", "at": "2030-01-01T00:00:00Z"}"#;
    let mut journal = Journal::start_as("e", Some(input.into()), 0).with_max_operations(100_000);
    let pass = replay::turn(&run, &journal, 0);
    assert!(
        pass.updates.len() <= PASS_LIMIT + 64,
        "{} updates in one pass",
        pass.updates.len()
    );
    if let Err(e) = journal.checkpoint(journal.token(), None, &pass.updates, 0, &mut |id: &str| {
        id.to_owned()
    }) {
        panic!("the journal refused the replay's own updates: {e}");
    }
    let _ = nimbus_asl::history::events(&journal, "m", "r");
}
