//! Who may call an app's HTTP routes, and from which web origins: the manifest's `[http]`
//! section, resolved per route, and the CORS decisions (API Gateway HTTP API semantics).
//!
//! ```toml
//! [http]
//! auth = "users"                       # default for every route: "none" (default), "api_key"
//!                                      # (a Nimbus key in `x-api-key`, within its usage plan)
//!                                      # or an authorizer's name; a trigger's `auth` overrides it
//! [http.cors]
//! allow_origins = ["https://app.example.com"]   # or ["*"]
//! allow_methods = ["GET", "POST"]               # or ["*"]
//! allow_headers = ["authorization", "content-type"]
//! expose_headers = ["x-nimbus-invocation-id"]
//! allow_credentials = true
//! max_age = 600                                 # seconds
//!
//! [http.authorizers.users]             # a JWT authorizer
//! type = "jwt"
//! issuer = "https://auth.example.com/"
//! audiences = ["shop-api"]
//! jwks_url = "https://auth.example.com/.well-known/jwks.json"   # or jwks = '{"keys":[..]}'
//! identity_source = "$request.header.Authorization"   # the default; or another header, or
//!                                                      # $request.querystring.NAME
//!
//! [http.authorizers.gate]              # a function authorizer
//! type = "function"
//! function = "authz"                   # a function of the same app
//! identity_sources = ["$request.header.Authorization"]
//! ttl = "5m"                           # decisions cached by identity (default 5m, "0s": none)
//!
//! [functions.orders]
//! triggers = [{ http = "GET /orders", auth = "users", scopes = ["orders:read"],
//!               rate_limit = 50, client_rate_limit = 5 }]   # this route's own limits
//! ```
//!
//! Every route carries its resolved [`RouteAccess`], so the data plane needs nothing but the
//! matched route to decide. Token checking itself (signatures, key sets) is `nimbus-access`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::events::Checker;

/// The most authorizers an app declares.
const MAX_AUTHORIZERS: usize = 32;
/// The longest a function authorizer's decision is cached.
const MAX_AUTHORIZER_TTL_MS: u64 = 3_600_000;
/// A function authorizer's cache time when none is given (API Gateway's default).
const DEFAULT_AUTHORIZER_TTL_MS: u64 = 300_000;

/// How a route is protected and which web origins may call it.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RouteAccess {
    /// Who may call it.
    #[serde(default, skip_serializing_if = "RouteAuth::is_none")]
    pub auth: RouteAuth,
    /// Cross-origin rules (`None`: no CORS headers, preflights go to the routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    /// Requests per second this route takes from everyone (on top of the function's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// Requests per second this route takes from one client address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_rate_limit: Option<u32>,
}

impl RouteAccess {
    /// Whether the route is open and without CORS rules (the default).
    pub fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RouteAuth {
    /// Anyone.
    #[default]
    None,
    /// A caller with a valid JWT from `authorizer`, holding one of `scopes` (when any).
    Jwt {
        /// The authorizer.
        authorizer: JwtAuthorizer,
        /// Scopes of which the token must hold at least one (empty: any token).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        scopes: Vec<String>,
    },
    /// A caller with a Nimbus API key (`x-api-key`) whose role may invoke the function, within
    /// the key's usage plan.
    ApiKey,
    /// A caller that the authorizer function allows.
    Function {
        /// The authorizer.
        authorizer: FunctionAuthorizer,
    },
}

impl RouteAuth {
    /// Whether anyone may call.
    pub fn is_none(&self) -> bool {
        matches!(self, Self::None)
    }
}

/// A JWT authorizer: tokens signed by one of an issuer's keys, for one of the audiences.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JwtAuthorizer {
    /// Its name in the manifest.
    pub name: String,
    /// The `iss` the tokens must carry.
    pub issuer: String,
    /// One of these must be the token's `aud` (or, without `aud`, its `client_id`).
    pub audiences: Vec<String>,
    /// Where the signing keys are.
    pub keys: JwtKeys,
    /// Where the token is (default: the `Authorization` header, `Bearer` optional).
    #[serde(default = "IdentitySource::authorization")]
    pub identity_source: IdentitySource,
}

/// A JWT authorizer's key set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JwtKeys {
    /// A JWKS document fetched (and cached) from this URL.
    Url(String),
    /// A JWKS document given in the manifest (JSON text).
    Inline(String),
}

/// A function authorizer: a function of the app decides, its decision cached by identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FunctionAuthorizer {
    /// Its name in the manifest.
    pub name: String,
    /// The function that decides.
    pub function: String,
    /// Where the caller's identity is; a request missing one is refused without a call.
    pub identity_sources: Vec<IdentitySource>,
    /// How long a decision is reused for the same identity (0: never).
    pub ttl_ms: u64,
}

/// One part of a caller's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentitySource {
    /// A request header (lower-case name).
    Header(String),
    /// A query-string parameter.
    Query(String),
}

impl IdentitySource {
    /// The `Authorization` header.
    pub fn authorization() -> Self {
        Self::Header("authorization".into())
    }

    /// Parses API Gateway's `$request.header.NAME` / `$request.querystring.NAME`.
    pub fn parse(text: &str) -> Option<Self> {
        let valid = |n: &str| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if let Some(name) = text.strip_prefix("$request.header.") {
            return valid(name).then(|| Self::Header(name.to_ascii_lowercase()));
        }
        let name = text.strip_prefix("$request.querystring.")?;
        valid(name).then(|| Self::Query(name.to_string()))
    }
}

/// Cross-origin resource sharing rules.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Cors {
    /// Origins allowed (`*`: any).
    pub allow_origins: Vec<String>,
    /// Methods allowed (upper case; `*`: any).
    pub allow_methods: Vec<String>,
    /// Request headers allowed (lower case; `*`: any).
    pub allow_headers: Vec<String>,
    /// Response headers scripts may read.
    pub expose_headers: Vec<String>,
    /// Whether credentials (cookies, `Authorization`) may be sent.
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight answer, in seconds.
    pub max_age_s: Option<u32>,
}

/// Why a preflight request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorsRefusal {
    /// The origin is not allowed.
    #[error("origin `{0}` is not allowed")]
    Origin(String),
    /// The method is not allowed.
    #[error("method `{0}` is not allowed from other origins")]
    Method(String),
    /// A request header is not allowed.
    #[error("request header `{0}` is not allowed from other origins")]
    Header(String),
}

/// Response headers, by name.
pub type Headers = Vec<(&'static str, String)>;

impl Cors {
    fn any(list: &[String]) -> bool {
        list.iter().any(|o| o == "*")
    }

    /// Whether a request from `origin` may read responses.
    pub fn allows_origin(&self, origin: &str) -> bool {
        Self::any(&self.allow_origins)
            || self
                .allow_origins
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin))
    }

    /// The `Access-Control-Allow-Origin` value for an allowed origin: `*` only when any origin
    /// is allowed and credentials are not.
    fn allow_origin(&self, origin: &str) -> String {
        if Self::any(&self.allow_origins) && !self.allow_credentials {
            "*".into()
        } else {
            origin.to_string()
        }
    }

    fn common(&self, origin: &str, headers: &mut Headers) {
        headers.push(("access-control-allow-origin", self.allow_origin(origin)));
        if self.allow_credentials {
            headers.push(("access-control-allow-credentials", "true".into()));
        }
        if !Self::any(&self.allow_origins) || self.allow_credentials {
            headers.push(("vary", "Origin".into()));
        }
    }

    /// The answer to a preflight (`OPTIONS` with `Access-Control-Request-Method`): the headers
    /// of a 204, or why it is refused.
    pub fn preflight(
        &self,
        origin: &str,
        method: &str,
        request_headers: Option<&str>,
    ) -> Result<Headers, CorsRefusal> {
        if !self.allows_origin(origin) {
            return Err(CorsRefusal::Origin(origin.to_string()));
        }
        let method = method.trim().to_ascii_uppercase();
        // GET, HEAD and POST are CORS-safelisted methods; anything else must be listed.
        let safelisted = ["GET", "HEAD", "POST"].contains(&method.as_str());
        if !safelisted && !Self::any(&self.allow_methods) && !self.allow_methods.contains(&method) {
            return Err(CorsRefusal::Method(method));
        }
        let requested: Vec<String> = request_headers
            .unwrap_or("")
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if !Self::any(&self.allow_headers)
            && let Some(h) = requested.iter().find(|h| !self.allow_headers.contains(h))
        {
            return Err(CorsRefusal::Header(h.clone()));
        }
        let mut headers = Headers::new();
        self.common(origin, &mut headers);
        let methods = if Self::any(&self.allow_methods) {
            method
        } else {
            self.allow_methods.join(", ")
        };
        headers.push(("access-control-allow-methods", methods));
        if !requested.is_empty() {
            headers.push(("access-control-allow-headers", requested.join(", ")));
        }
        if let Some(age) = self.max_age_s {
            headers.push(("access-control-max-age", age.to_string()));
        }
        Ok(headers)
    }

    /// The headers added to an actual response to a request from `origin` (none when the
    /// origin is not allowed: the browser then hides the response from the script).
    pub fn response_headers(&self, origin: &str) -> Headers {
        let mut headers = Headers::new();
        if self.allows_origin(origin) {
            self.common(origin, &mut headers);
            if !self.expose_headers.is_empty() {
                headers.push((
                    "access-control-expose-headers",
                    self.expose_headers.join(", "),
                ));
            }
        }
        headers
    }
}

/// The manifest's `[http]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    auth: Option<String>,
    cors: Option<RawCors>,
    #[serde(default)]
    authorizers: BTreeMap<String, RawAuthorizer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCors {
    #[serde(default)]
    allow_origins: Vec<String>,
    #[serde(default)]
    allow_methods: Vec<String>,
    #[serde(default)]
    allow_headers: Vec<String>,
    #[serde(default)]
    expose_headers: Vec<String>,
    #[serde(default)]
    allow_credentials: bool,
    max_age: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthorizer {
    #[serde(rename = "type")]
    ty: String,
    issuer: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    jwks_url: Option<String>,
    jwks: Option<String>,
    identity_source: Option<String>,
    function: Option<String>,
    identity_sources: Option<Vec<String>>,
    ttl: Option<String>,
}

/// An authorizer as declared, before routes pick it.
#[derive(Debug, Clone)]
enum Authorizer {
    Jwt(JwtAuthorizer),
    Function(FunctionAuthorizer),
}

/// The `[http]` section, checked: what routes resolve their `auth` against.
#[derive(Debug, Default)]
pub(crate) struct HttpAccess {
    default_auth: Option<String>,
    cors: Option<Cors>,
    authorizers: BTreeMap<String, Authorizer>,
}

impl HttpAccess {
    /// The access of a route whose trigger says `auth` and `scopes` (problems under `key`).
    pub(crate) fn route(
        &self,
        check: &mut Checker<'_>,
        key: &str,
        auth: Option<&str>,
        scopes: &[String],
    ) -> RouteAccess {
        let name = auth.or(self.default_auth.as_deref()).unwrap_or("none");
        let auth = match (name, self.authorizers.get(name)) {
            ("none" | "api_key", _) => {
                if !scopes.is_empty() {
                    check.problem(
                        format!("{key}.scopes"),
                        "scopes need a JWT authorizer (`auth = \"NAME\"`)",
                    );
                }
                if name == "api_key" {
                    RouteAuth::ApiKey
                } else {
                    RouteAuth::None
                }
            }
            (_, Some(Authorizer::Jwt(a))) => RouteAuth::Jwt {
                authorizer: a.clone(),
                scopes: scopes.to_vec(),
            },
            (_, Some(Authorizer::Function(a))) => {
                if !scopes.is_empty() {
                    check.problem(
                        format!("{key}.scopes"),
                        "scopes are checked by JWT authorizers only",
                    );
                }
                RouteAuth::Function {
                    authorizer: a.clone(),
                }
            }
            (other, None) => {
                let at = if auth.is_some() {
                    format!("{key}.auth")
                } else {
                    "http.auth".into()
                };
                check.problem(
                    at,
                    format!(
                        "no authorizer `{other}` in [http.authorizers] (use \"none\", \"api_key\" or one of: {})",
                        self.authorizers
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                RouteAuth::None
            }
        };
        RouteAccess {
            auth,
            cors: self.cors.clone(),
            rate_limit: None,
            client_rate_limit: None,
        }
    }

    /// The function authorizers' functions (name, key), to check they exist.
    pub(crate) fn authorizer_functions(&self) -> impl Iterator<Item = (&str, String)> {
        self.authorizers.iter().filter_map(|(name, a)| match a {
            Authorizer::Function(f) => Some((
                f.function.as_str(),
                format!("http.authorizers.{name}.function"),
            )),
            Authorizer::Jwt(_) => None,
        })
    }
}

impl Checker<'_> {
    /// The `[http]` section.
    pub(crate) fn http(&mut self, raw: RawHttp) -> HttpAccess {
        if raw.authorizers.len() > MAX_AUTHORIZERS {
            self.problem(
                "http.authorizers",
                format!("at most {MAX_AUTHORIZERS} authorizers"),
            );
        }
        let mut authorizers = BTreeMap::new();
        for (name, a) in raw.authorizers {
            let key = format!("http.authorizers.{name}");
            if name == "none" || name == "api_key" || !crate::manifest::is_valid_name(&name) {
                self.problem(
                    &key,
                    "not a valid authorizer name: use 1-63 lower-case letters, digits, `-` or `_` (not `none` or `api_key`)",
                );
            }
            if let Some(a) = self.authorizer(&key, &name, a) {
                authorizers.insert(name, a);
            }
        }
        let cors = raw.cors.map(|c| self.cors(c));
        HttpAccess {
            default_auth: raw.auth,
            cors,
            authorizers,
        }
    }

    fn authorizer(&mut self, key: &str, name: &str, a: RawAuthorizer) -> Option<Authorizer> {
        let jwt_fields = a.issuer.is_some()
            || !a.audiences.is_empty()
            || a.jwks.is_some()
            || a.jwks_url.is_some()
            || a.identity_source.is_some();
        let function_fields =
            a.function.is_some() || a.identity_sources.is_some() || a.ttl.is_some();
        match a.ty.as_str() {
            "jwt" => {
                if function_fields {
                    self.problem(
                        key,
                        "`function`, `identity_sources` and `ttl` belong to function authorizers",
                    );
                }
                let issuer = a.issuer.unwrap_or_default();
                if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
                    self.problem(
                        format!("{key}.issuer"),
                        "a JWT authorizer needs the issuer URL its tokens carry in `iss`",
                    );
                }
                if a.audiences.is_empty() {
                    self.problem(
                        format!("{key}.audiences"),
                        "a JWT authorizer needs at least one audience",
                    );
                }
                let keys = match (a.jwks_url, a.jwks) {
                    (Some(url), None)
                        if url.starts_with("https://") || url.starts_with("http://") =>
                    {
                        JwtKeys::Url(url)
                    }
                    (Some(url), None) => {
                        self.problem(
                            format!("{key}.jwks_url"),
                            format!("`{url}` is not an http(s) URL"),
                        );
                        return None;
                    }
                    (None, Some(doc)) => match jwks_problem(&doc) {
                        None => JwtKeys::Inline(doc),
                        Some(p) => {
                            self.problem(format!("{key}.jwks"), p);
                            return None;
                        }
                    },
                    _ => {
                        self.problem(
                            key,
                            "a JWT authorizer needs exactly one of `jwks_url` and `jwks`",
                        );
                        return None;
                    }
                };
                let identity_source = match a.identity_source.as_deref() {
                    None => IdentitySource::authorization(),
                    Some(text) => IdentitySource::parse(text).unwrap_or_else(|| {
                        self.problem(
                            format!("{key}.identity_source"),
                            format!(
                                "`{text}` is not `$request.header.NAME` or `$request.querystring.NAME`"
                            ),
                        );
                        IdentitySource::authorization()
                    }),
                };
                Some(Authorizer::Jwt(JwtAuthorizer {
                    name: name.to_string(),
                    issuer,
                    audiences: a.audiences,
                    keys,
                    identity_source,
                }))
            }
            "function" => {
                if jwt_fields {
                    self.problem(
                        key,
                        "`issuer`, `audiences`, `jwks`, `jwks_url` and `identity_source` belong to JWT authorizers",
                    );
                }
                let function = a.function.unwrap_or_default();
                if function.is_empty() {
                    self.problem(
                        format!("{key}.function"),
                        "a function authorizer names the function that decides",
                    );
                }
                let sources = a
                    .identity_sources
                    .unwrap_or_else(|| vec!["$request.header.Authorization".into()]);
                let mut identity_sources = Vec::new();
                for s in &sources {
                    match IdentitySource::parse(s) {
                        Some(s) => identity_sources.push(s),
                        None => self.problem(
                            format!("{key}.identity_sources"),
                            format!(
                                "`{s}` is not `$request.header.NAME` or `$request.querystring.NAME`"
                            ),
                        ),
                    }
                }
                let ttl_ms = self.duration(
                    &format!("{key}.ttl"),
                    a.ttl.as_deref(),
                    (0, MAX_AUTHORIZER_TTL_MS),
                    DEFAULT_AUTHORIZER_TTL_MS,
                );
                if ttl_ms > 0 && identity_sources.is_empty() {
                    self.problem(
                        format!("{key}.identity_sources"),
                        "decisions are cached by identity: name at least one source, or set ttl = \"0s\"",
                    );
                }
                Some(Authorizer::Function(FunctionAuthorizer {
                    name: name.to_string(),
                    function,
                    identity_sources,
                    ttl_ms,
                }))
            }
            other => {
                self.problem(
                    format!("{key}.type"),
                    format!("`{other}` is not an authorizer type (jwt | function)"),
                );
                None
            }
        }
    }

    fn cors(&mut self, c: RawCors) -> Cors {
        let key = "http.cors";
        for o in &c.allow_origins {
            let valid = o == "*"
                || ((o.starts_with("https://") || o.starts_with("http://"))
                    && !o.ends_with('/')
                    && !o.contains(char::is_whitespace));
            if !valid {
                self.problem(
                    format!("{key}.allow_origins"),
                    format!("`{o}` is not an origin: write scheme://host[:port], or \"*\""),
                );
            }
        }
        if c.allow_origins.is_empty() {
            self.problem(
                format!("{key}.allow_origins"),
                "list the origins allowed, or \"*\"",
            );
        }
        if c.allow_credentials && c.allow_origins.iter().any(|o| o == "*") {
            self.problem(
                format!("{key}.allow_credentials"),
                "credentials cannot be allowed for every origin (\"*\"): list the origins",
            );
        }
        let token = |s: &str| {
            s == "*"
                || (!s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b)))
        };
        for (field, list) in [
            ("allow_methods", &c.allow_methods),
            ("allow_headers", &c.allow_headers),
            ("expose_headers", &c.expose_headers),
        ] {
            if let Some(bad) = list.iter().find(|s| !token(s)) {
                self.problem(
                    format!("{key}.{field}"),
                    format!("`{bad}` is not a method or header name"),
                );
            }
        }
        let max_age_s = match c.max_age {
            None => None,
            Some(n) if (0..=86_400).contains(&n) => Some(n as u32),
            Some(n) => {
                self.problem(
                    format!("{key}.max_age"),
                    format!("{n} is out of range (0..=86400 seconds)"),
                );
                None
            }
        };
        Cors {
            allow_origins: c.allow_origins,
            allow_methods: c
                .allow_methods
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect(),
            allow_headers: c
                .allow_headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            expose_headers: c.expose_headers,
            allow_credentials: c.allow_credentials,
            max_age_s,
        }
    }
}

/// What is wrong with an inline JWKS document, if anything (the keys themselves are decoded
/// by `nimbus-access`).
fn jwks_problem(doc: &str) -> Option<String> {
    let v: serde_json::Value = match serde_json::from_str(doc) {
        Ok(v) => v,
        Err(e) => return Some(format!("not JSON: {e}")),
    };
    let Some(keys) = v.get("keys").and_then(|k| k.as_array()) else {
        return Some("a JWKS document is {\"keys\": [..]}".into());
    };
    if keys.is_empty() {
        return Some("the key set is empty".into());
    }
    for (i, k) in keys.iter().enumerate() {
        match k.get("kty").and_then(|t| t.as_str()) {
            Some("RSA" | "EC" | "OKP") => {}
            Some(other) => {
                return Some(format!(
                    "keys[{i}]: key type `{other}` is not supported (RSA, EC, OKP)"
                ));
            }
            None => return Some(format!("keys[{i}] has no `kty`")),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], credentials: bool) -> Cors {
        Cors {
            allow_origins: origins.iter().map(|s| s.to_string()).collect(),
            allow_methods: vec!["PUT".into()],
            allow_headers: vec!["authorization".into(), "content-type".into()],
            expose_headers: vec!["x-id".into()],
            allow_credentials: credentials,
            max_age_s: Some(600),
        }
    }

    fn get<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
        h.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn preflight_from_a_listed_origin_echoes_it_and_varies() {
        let c = cors(&["https://app.example.com"], true);
        let h = c
            .preflight(
                "https://app.example.com",
                "PUT",
                Some("Content-Type, Authorization"),
            )
            .unwrap();
        assert_eq!(
            get(&h, "access-control-allow-origin"),
            Some("https://app.example.com")
        );
        assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
        assert_eq!(get(&h, "vary"), Some("Origin"));
        assert_eq!(get(&h, "access-control-allow-methods"), Some("PUT"));
        assert_eq!(
            get(&h, "access-control-allow-headers"),
            Some("content-type, authorization")
        );
        assert_eq!(get(&h, "access-control-max-age"), Some("600"));
    }

    #[test]
    fn preflight_refuses_other_origins_methods_and_headers() {
        let c = cors(&["https://app.example.com"], false);
        assert_eq!(
            c.preflight("https://evil.example", "GET", None),
            Err(CorsRefusal::Origin("https://evil.example".into()))
        );
        assert_eq!(
            c.preflight("https://app.example.com", "DELETE", None),
            Err(CorsRefusal::Method("DELETE".into()))
        );
        assert_eq!(
            c.preflight("https://app.example.com", "POST", Some("x-secret")),
            Err(CorsRefusal::Header("x-secret".into()))
        );
        // Safelisted methods need no listing.
        assert!(c.preflight("https://app.example.com", "GET", None).is_ok());
    }

    #[test]
    fn any_origin_answers_star_without_credentials() {
        let c = cors(&["*"], false);
        let h = c.response_headers("https://x.example");
        assert_eq!(get(&h, "access-control-allow-origin"), Some("*"));
        assert_eq!(get(&h, "vary"), None);
        assert_eq!(get(&h, "access-control-expose-headers"), Some("x-id"));
        assert!(
            cors(&["https://a.example"], false)
                .response_headers("https://b.example")
                .is_empty()
        );
    }

    #[test]
    fn identity_sources_parse_api_gateway_selectors() {
        assert_eq!(
            IdentitySource::parse("$request.header.Authorization"),
            Some(IdentitySource::Header("authorization".into()))
        );
        assert_eq!(
            IdentitySource::parse("$request.querystring.token"),
            Some(IdentitySource::Query("token".into()))
        );
        assert_eq!(IdentitySource::parse("$request.header."), None);
        assert_eq!(IdentitySource::parse("header.x"), None);
        assert_eq!(IdentitySource::parse("$request.header.a b"), None);
    }

    #[test]
    fn jwks_documents_are_checked_for_shape() {
        assert!(jwks_problem(r#"{"keys":[{"kty":"RSA","n":"x","e":"AQAB"}]}"#).is_none());
        assert!(jwks_problem("{}").is_some());
        assert!(jwks_problem(r#"{"keys":[]}"#).is_some());
        assert!(jwks_problem(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).is_some());
        assert!(jwks_problem("not json").is_some());
    }
}
