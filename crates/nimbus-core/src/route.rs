//! HTTP routes: parsing `METHOD /path` specs and matching requests against an immutable table.
//!
//! Path syntax: literal segments, `{name}` parameters, and a trailing wildcard written `*` or
//! `{*name}` that captures the rest of the path. A table decides 404 (no path matches) versus
//! 405 (a path matches but not with that method) so the gateway stays a thin adapter.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Path prefixes that belong to Nimbus itself and cannot be claimed by an app.
pub const RESERVED_PREFIXES: [&str; 5] = [
    "/v1",
    "/2015-03-31",
    "/2018-06-01",
    "/2025-12-01",
    "/tenants",
];

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// A parsed route: an optional method (`None` = any method) and a normalised path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RouteSpec {
    /// Upper-case method, or `None` for any.
    pub method: Option<String>,
    /// Path with wildcards normalised to `{*name}`.
    pub path: String,
    /// The published version or alias the route invokes (`None`: `$LATEST`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
    /// Who may call it, and from which web origins.
    #[serde(
        default,
        skip_serializing_if = "crate::access::RouteAccess::is_default"
    )]
    pub access: crate::access::RouteAccess,
}

/// Why a route spec is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RouteError(pub String);

impl RouteSpec {
    /// Parses `"GET /users/{id}"`, `"ANY /x"`, `"/x"` (any method) or `"GET /static/*"`.
    pub fn parse(spec: &str) -> Result<Self, RouteError> {
        let spec = spec.trim();
        let (method, path) = match spec.split_once(char::is_whitespace) {
            Some((m, p)) => (Some(m), p.trim()),
            None => (None, spec),
        };
        let method = match method {
            None | Some("ANY") | Some("*") => None,
            Some(m) if METHODS.contains(&m) => Some(m.to_string()),
            Some(m) => {
                return Err(RouteError(format!(
                    "unknown HTTP method `{m}` (use one of {}, or ANY)",
                    METHODS.join(", ")
                )));
            }
        };
        Ok(RouteSpec {
            method,
            path: normalise_path(path)?,
            qualifier: None,
            access: Default::default(),
        })
    }

    /// Whether this route captures path parameters.
    pub fn has_params(&self) -> bool {
        self.path.contains('{')
    }
}

impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            self.method.as_deref().unwrap_or("ANY"),
            self.path
        )
    }
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

fn normalise_path(path: &str) -> Result<String, RouteError> {
    if !path.starts_with('/') {
        return Err(RouteError(format!("path `{path}` must start with `/`")));
    }
    for reserved in RESERVED_PREFIXES {
        if path == reserved || path.starts_with(&format!("{reserved}/")) {
            return Err(RouteError(format!(
                "path `{path}` is under `{reserved}`, which Nimbus reserves for its own APIs"
            )));
        }
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut out = String::with_capacity(path.len());
    let mut names = BTreeSet::new();
    for (i, seg) in segments.iter().enumerate() {
        out.push('/');
        let wildcard = match *seg {
            "*" => Some("rest"),
            s if s.starts_with("{*") && s.ends_with('}') => Some(&s[2..s.len() - 1]),
            _ => None,
        };
        if let Some(name) = wildcard {
            if i != last {
                return Err(RouteError(format!(
                    "path `{path}`: a wildcard may only be the last segment"
                )));
            }
            if !is_ident(name) || !names.insert(name.to_string()) {
                return Err(RouteError(format!(
                    "path `{path}`: bad wildcard name `{name}`"
                )));
            }
            out.push_str(&format!("{{*{name}}}"));
        } else if seg.starts_with('{') && seg.ends_with('}') {
            let name = &seg[1..seg.len() - 1];
            if !is_ident(name) {
                return Err(RouteError(format!(
                    "path `{path}`: parameter `{seg}` must be `{{name}}` with a letter, digits or `_`"
                )));
            }
            if !names.insert(name.to_string()) {
                return Err(RouteError(format!(
                    "path `{path}`: parameter `{name}` appears twice"
                )));
            }
            out.push_str(seg);
        } else if seg.contains(['{', '}', '*', '?', '#']) {
            return Err(RouteError(format!(
                "path `{path}`: segment `{seg}` has a reserved character ({{ }} * ? #)"
            )));
        } else if seg.is_empty() && i != last {
            return Err(RouteError(format!("path `{path}` has an empty segment")));
        } else {
            out.push_str(seg);
        }
    }
    Ok(out)
}

/// The result of matching one request.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteMatch<'a, T> {
    /// A route matched; `params` are the captured path parameters in path order.
    Found {
        /// What the route points at.
        target: &'a T,
        /// The route that matched.
        route: &'a RouteSpec,
        /// Captured parameters.
        params: Vec<(String, String)>,
    },
    /// A path matched, but not with this method; `allowed` lists the methods that would.
    MethodNotAllowed {
        /// Methods for an `Allow` header.
        allowed: Vec<String>,
    },
    /// No route path matches.
    NotFound,
}

/// Routes that cannot live in one table together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route `{route}` conflicts with `{existing}`")]
pub struct RouteConflict {
    /// The route being added.
    pub route: String,
    /// The route already in the table.
    pub existing: String,
}

/// An immutable routing table from routes to targets of type `T`.
pub struct RouteTable<T> {
    router: matchit::Router<usize>,
    paths: Vec<Vec<(RouteSpec, T)>>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self {
            router: matchit::Router::new(),
            paths: Vec::new(),
        }
    }
}

impl<T> RouteTable<T> {
    /// Builds a table, failing on the first route that overlaps one already added.
    pub fn build(routes: impl IntoIterator<Item = (RouteSpec, T)>) -> Result<Self, RouteConflict> {
        let mut table = Self::default();
        for (spec, target) in routes {
            table.insert(spec, target)?;
        }
        Ok(table)
    }

    fn insert(&mut self, spec: RouteSpec, target: T) -> Result<(), RouteConflict> {
        if let Ok(found) = self.router.at(&spec.path) {
            let entry = &mut self.paths[*found.value];
            // Same shape (the stored path may name its parameters differently).
            if entry[0].0.path == spec.path {
                if let Some((existing, _)) = entry.iter().find(|(s, _)| {
                    s.method.is_none() || spec.method.is_none() || s.method == spec.method
                }) {
                    return Err(RouteConflict {
                        route: spec.to_string(),
                        existing: existing.to_string(),
                    });
                }
                entry.push((spec, target));
                return Ok(());
            }
        }
        let index = self.paths.len();
        match self.router.insert(spec.path.clone(), index) {
            Ok(()) => {
                self.paths.push(vec![(spec, target)]);
                Ok(())
            }
            Err(err) => Err(RouteConflict {
                existing: match &err {
                    matchit::InsertError::Conflict { with } => with.clone(),
                    other => other.to_string(),
                },
                route: spec.to_string(),
            }),
        }
    }

    /// Matches a request's method and path.
    pub fn at(&self, method: &str, path: &str) -> RouteMatch<'_, T> {
        let Ok(found) = self.router.at(path) else {
            return RouteMatch::NotFound;
        };
        let entry = &self.paths[*found.value];
        let hit = entry
            .iter()
            .find(|(s, _)| s.method.as_deref() == Some(method))
            .or_else(|| entry.iter().find(|(s, _)| s.method.is_none()));
        match hit {
            Some((route, target)) => RouteMatch::Found {
                target,
                route,
                params: found
                    .params
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
            None => RouteMatch::MethodNotAllowed {
                allowed: entry.iter().filter_map(|(s, _)| s.method.clone()).collect(),
            },
        }
    }

    /// Number of routes in the table.
    pub fn len(&self) -> usize {
        self.paths.iter().map(Vec::len).sum()
    }

    /// Whether the table has no routes.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> RouteSpec {
        RouteSpec::parse(s).unwrap()
    }

    #[test]
    fn parses_methods_params_and_wildcards() {
        assert_eq!(r("GET /users/{id}").method.as_deref(), Some("GET"));
        assert_eq!(r("/x").method, None);
        assert_eq!(r("ANY /x").method, None);
        assert_eq!(r("GET /static/*").path, "/static/{*rest}");
        assert_eq!(r("GET /static/{*file}").path, "/static/{*file}");
        assert_eq!(r("GET /users/{id}").to_string(), "GET /users/{id}");
    }

    #[test]
    fn rejects_bad_specs_with_a_reason() {
        for (spec, needle) in [
            ("FETCH /x", "unknown HTTP method"),
            ("GET x", "must start with `/`"),
            ("GET /a/*/b", "last segment"),
            ("GET /a/{1x}", "parameter"),
            ("GET /a/{id}/{id}", "appears twice"),
            ("GET /v1/functions", "reserves"),
            ("GET /a//b", "empty segment"),
            ("GET /a/b*c", "reserved character"),
        ] {
            let err = RouteSpec::parse(spec).unwrap_err().to_string();
            assert!(err.contains(needle), "{spec}: {err}");
        }
    }

    #[test]
    fn matches_params_and_distinguishes_404_from_405() {
        let table = RouteTable::build([
            (r("GET /users/{id}"), "get-user"),
            (r("DELETE /users/{id}"), "del-user"),
            (r("GET /files/*"), "files"),
            (r("/any"), "any"),
        ])
        .unwrap();
        match table.at("GET", "/users/42") {
            RouteMatch::Found { target, params, .. } => {
                assert_eq!(*target, "get-user");
                assert_eq!(params, vec![("id".into(), "42".into())]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            table.at("DELETE", "/users/1"),
            RouteMatch::Found {
                target: &"del-user",
                ..
            }
        ));
        match table.at("POST", "/users/1") {
            RouteMatch::MethodNotAllowed { allowed } => assert_eq!(allowed, ["GET", "DELETE"]),
            other => panic!("{other:?}"),
        }
        match table.at("GET", "/files/a/b.txt") {
            RouteMatch::Found { params, .. } => {
                assert_eq!(params, vec![("rest".into(), "a/b.txt".into())])
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            table.at("PATCH", "/any"),
            RouteMatch::Found { .. }
        ));
        assert_eq!(table.at("GET", "/nope"), RouteMatch::NotFound);
        assert_eq!(table.at("GET", "/users"), RouteMatch::NotFound);
    }

    #[test]
    fn overlapping_routes_are_conflicts() {
        assert!(RouteTable::build([(r("GET /a"), 1), (r("GET /a"), 2)]).is_err());
        assert!(RouteTable::build([(r("GET /a"), 1), (r("/a"), 2)]).is_err());
        assert!(RouteTable::build([(r("GET /u/{id}"), 1), (r("GET /u/{name}"), 2)]).is_err());
        let ok = RouteTable::build([(r("GET /a"), 1), (r("POST /a"), 2), (r("GET /a/{x}"), 3)]);
        assert_eq!(ok.unwrap().len(), 3);
    }
}
