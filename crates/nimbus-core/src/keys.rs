//! API keys and roles: what each role may do, which permission each API call needs, and a
//! key's scope (the functions, queues and topics an `invoker` key may use). Pure: the gateway
//! asks [`permission`] for the call, the invoker's access state says who the caller is, and
//! [`Principal::check`] decides.

use serde::{Deserialize, Serialize};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything in the tenant, keys and secrets included.
    Admin,
    /// Deploy and remove, manage event resources, read everything but secrets and the audit.
    Deployer,
    /// Invoke the key's functions, send to its queues, publish to its topics.
    Invoker,
    /// Read functions, records, logs, metrics, usage and event resources.
    Reader,
    /// A durable function's own credentials (in its sandbox): nothing but the durable
    /// execution calls on that function's executions (checked by that API, not by a
    /// permission). Never made as a key.
    Execution,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Deployer, Role::Invoker, Role::Reader];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Deployer => "deployer",
            Role::Invoker => "invoker",
            Role::Reader => "reader",
            Role::Execution => "execution",
        }
    }

    /// The role named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether the role holds `p` (before any scope).
    pub fn permits(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Deployer => matches!(
                p,
                FunctionsRead
                    | FunctionsDeploy
                    | RecordsRead
                    | MetricsRead
                    | EventsRead
                    | EventsManage
            ),
            Role::Invoker => matches!(
                p,
                FunctionsInvoke | QueuesSend | TopicsPublish | EventsIngest
            ),
            Role::Reader => matches!(p, FunctionsRead | RecordsRead | MetricsRead | EventsRead),
            Role::Execution => false,
        }
    }
}

/// One thing an API call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Permission {
    /// List and show functions, versions, aliases, apps.
    FunctionsRead,
    /// Upload, deploy, remove, publish, move aliases.
    FunctionsDeploy,
    /// Invoke a function (scoped).
    FunctionsInvoke,
    /// Invocation records and logs.
    RecordsRead,
    /// Metrics, usage, status.
    MetricsRead,
    /// List and show queues, topics, schedules.
    EventsRead,
    /// Create and delete queues, topics, schedules; consume and redrive queues.
    EventsManage,
    /// Send to a queue (scoped).
    QueuesSend,
    /// Publish to a topic (scoped).
    TopicsPublish,
    /// Ingest CloudEvents.
    EventsIngest,
    /// Set, list and delete secrets.
    SecretsManage,
    /// Create, list and revoke keys.
    KeysManage,
    /// Read the audit log.
    AuditRead,
    /// Create, list and remove tenants and make their keys (the default tenant's admins: the
    /// node's operator).
    TenantsManage,
}

impl Permission {
    /// Its name, as denials say it.
    pub fn as_str(self) -> &'static str {
        use Permission::*;
        match self {
            FunctionsRead => "functions:read",
            FunctionsDeploy => "functions:deploy",
            FunctionsInvoke => "functions:invoke",
            RecordsRead => "records:read",
            MetricsRead => "metrics:read",
            EventsRead => "events:read",
            EventsManage => "events:manage",
            QueuesSend => "queues:send",
            TopicsPublish => "topics:publish",
            EventsIngest => "events:ingest",
            SecretsManage => "secrets:manage",
            KeysManage => "keys:manage",
            AuditRead => "audit:read",
            TenantsManage => "tenants:manage",
        }
    }
}

/// What an `invoker` key may reach (`*`: all of that kind). Other roles are not scoped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyScope {
    /// Functions it may invoke.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<String>,
    /// Queues it may send to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<String>,
    /// Topics it may publish to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
}

impl KeyScope {
    fn list(&self, p: Permission) -> Option<&[String]> {
        match p {
            Permission::FunctionsInvoke => Some(&self.functions),
            Permission::QueuesSend => Some(&self.queues),
            Permission::TopicsPublish => Some(&self.topics),
            _ => None,
        }
    }
}

/// How much an API key may call routes that take API keys (`auth = "api_key"`), as an API
/// Gateway usage plan: a rate with a burst, and a quota per period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsagePlan {
    /// Requests per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u32>,
    /// Requests at once above the rate (default: one second's worth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Requests per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<u64>,
    /// The quota's period.
    #[serde(default)]
    pub period: QuotaPeriod,
}

/// A quota's period (UTC).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaPeriod {
    /// A day.
    #[default]
    Day,
    /// A week (from Monday).
    Week,
    /// A calendar month.
    Month,
}

impl QuotaPeriod {
    /// The period holding `now_ms`: its index and when the next one starts (unix ms).
    pub fn at(self, now_ms: i64) -> (i64, i64) {
        const DAY: i64 = 86_400_000;
        let day = now_ms.div_euclid(DAY);
        match self {
            QuotaPeriod::Day => (day, (day + 1) * DAY),
            // 1970-01-01 was a Thursday: weeks from Monday start 3 days earlier.
            QuotaPeriod::Week => {
                let week = (day + 3).div_euclid(7);
                (week, (week * 7 - 3 + 7) * DAY)
            }
            QuotaPeriod::Month => {
                let ts = jiff::Timestamp::from_millisecond(now_ms).unwrap_or_default();
                let date = ts.to_zoned(jiff::tz::TimeZone::UTC).date();
                let index = i64::from(date.year()) * 12 + i64::from(date.month()) - 1;
                let next = date
                    .first_of_month()
                    .checked_add(jiff::Span::new().months(1))
                    .ok()
                    .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
                    .map_or(now_ms + 31 * DAY, |z| z.timestamp().as_millisecond());
                (index, next)
            }
        }
    }

    /// Parses `day`, `week` or `month`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "day" => Some(Self::Day),
            "week" => Some(Self::Week),
            "month" => Some(Self::Month),
            _ => None,
        }
    }
}

/// A key as stored and listed (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Its id (`key_…`), what `nimbus key revoke` takes.
    pub id: String,
    /// Its role.
    pub role: Role,
    /// Its scope (invoker keys).
    #[serde(default)]
    pub scope: KeyScope,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// When it was made, unix ms.
    pub created_ms: i64,
    /// When it stops working, unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<i64>,
    /// Its AWS-style access key id (SigV4 calls made with it act as this key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_access_key_id: Option<String>,
    /// Its usage plan on routes that take API keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<UsagePlan>,
}

/// Who is calling, once the key is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's id.
    pub key_id: String,
    /// Its role.
    pub role: Role,
    /// Its scope.
    pub scope: KeyScope,
    /// Its usage plan on API-key routes.
    pub plan: Option<UsagePlan>,
}

/// A refusal: the permission missing, and on what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} key {key_id} lacks `{}`{}", .role.as_str(), .permission.as_str(), .on.as_ref().map(|o| format!(" on `{o}`")).unwrap_or_default())]
pub struct Denied {
    /// The caller's key.
    pub key_id: String,
    /// Its role.
    pub role: Role,
    /// What it lacks.
    pub permission: Permission,
    /// The function, queue or topic concerned.
    pub on: Option<String>,
}

impl Principal {
    /// Whether the caller may do `p` (to `resource`, for scoped permissions).
    pub fn check(&self, p: Permission, resource: Option<&str>) -> Result<(), Denied> {
        let scoped_ok = match (self.role, self.scope.list(p), resource) {
            (Role::Invoker, Some(list), Some(r)) => list.iter().any(|x| x == "*" || x == r),
            (Role::Invoker, Some(list), None) => list.iter().any(|x| x == "*"),
            _ => true,
        };
        if self.role.permits(p) && scoped_ok {
            Ok(())
        } else {
            Err(Denied {
                key_id: self.key_id.clone(),
                role: self.role,
                permission: p,
                on: resource.map(str::to_string),
            })
        }
    }
}

/// One statement of a function's resource policy (Lambda's `AddPermission`): the key
/// `principal` may invoke the function, whatever its role and scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyStatement {
    /// The statement's id, unique in the function's policy.
    pub sid: String,
    /// The key id (`key_…`) it grants.
    pub principal: String,
}

impl PolicyStatement {
    /// Whether it grants `principal`.
    pub fn grants(&self, principal: &Principal) -> bool {
        self.principal == principal.key_id
    }
}

/// The permission a `/v1` (or `/metrics`) call needs, and which path parameter names the
/// resource it is scoped to; `None` for a call no table entry knows (admins only).
pub fn permission(method: &str, route: &str) -> Option<(Permission, Option<&'static str>)> {
    use Permission::*;
    let read = method == "GET" || method == "HEAD";
    Some(match route {
        "/v1/status" | "/v1/usage" | "/metrics" => (MetricsRead, None),
        "/v1/artifacts/{sha256}" => (FunctionsDeploy, None),
        "/v1/apps" | "/v1/apps/{app}" | "/v1/functions" | "/v1/functions/{name}" => {
            (if read { FunctionsRead } else { FunctionsDeploy }, None)
        }
        "/v1/functions/{name}/versions"
        | "/v1/functions/{name}/aliases"
        | "/v1/functions/{name}/aliases/{alias}" => {
            (if read { FunctionsRead } else { FunctionsDeploy }, None)
        }
        "/v1/functions/{name}/invoke" => (FunctionsInvoke, Some("name")),
        "/v1/functions/{name}/executions" if read => (FunctionsRead, None),
        "/v1/functions/{name}/executions" => (FunctionsInvoke, Some("name")),
        "/v1/executions/{arn}" | "/v1/executions/{arn}/history" => (FunctionsRead, None),
        "/v1/executions/{arn}/stop" => (FunctionsDeploy, None),
        "/v1/callbacks/{id}/{action}" => (FunctionsInvoke, None),
        "/v1/functions/{name}/invocations"
        | "/v1/functions/{name}/logs"
        | "/v1/invocations/{id}" => (RecordsRead, None),
        "/v1/secrets" | "/v1/secrets/{name}" => (SecretsManage, None),
        "/v1/keys" | "/v1/keys/{id}" => (KeysManage, None),
        "/v1/audit" => (AuditRead, None),
        "/v1/tenants"
        | "/v1/tenants/{tenant}"
        | "/v1/tenants/{tenant}/keys"
        | "/v1/tenants/{tenant}/keys/{id}"
        | "/v1/tenants/{tenant}/usage" => (TenantsManage, None),
        "/v1/queues/{name}/messages" => (QueuesSend, Some("name")),
        "/v1/topics/{name}/messages" => (TopicsPublish, Some("name")),
        "/v1/events" => (EventsIngest, None),
        "/v1/queues"
        | "/v1/queues/{name}"
        | "/v1/topics"
        | "/v1/topics/{name}"
        | "/v1/schedules"
        | "/v1/schedules/{name}" => (if read { EventsRead } else { EventsManage }, None),
        "/v1/queues/{name}/receive"
        | "/v1/queues/{name}/ack"
        | "/v1/queues/{name}/visibility"
        | "/v1/queues/{name}/redrive"
        | "/v1/schedules/{name}/state" => (EventsManage, None),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, scope: KeyScope) -> Principal {
        Principal {
            key_id: "key_1".into(),
            role,
            scope,
            plan: None,
        }
    }

    #[test]
    fn each_role_holds_its_permissions() {
        use Permission::*;
        let table = [
            (FunctionsRead, [true, true, false, true]),
            (FunctionsDeploy, [true, true, false, false]),
            (FunctionsInvoke, [true, false, true, false]),
            (RecordsRead, [true, true, false, true]),
            (MetricsRead, [true, true, false, true]),
            (EventsRead, [true, true, false, true]),
            (EventsManage, [true, true, false, false]),
            (QueuesSend, [true, false, true, false]),
            (TopicsPublish, [true, false, true, false]),
            (SecretsManage, [true, false, false, false]),
            (KeysManage, [true, false, false, false]),
            (AuditRead, [true, false, false, false]),
        ];
        for (p, allowed) in table {
            for (role, want) in Role::ALL.into_iter().zip(allowed) {
                assert_eq!(role.permits(p), want, "{} {}", role.as_str(), p.as_str());
            }
        }
    }

    #[test]
    fn invoker_keys_reach_their_scope_only() {
        let p = principal(
            Role::Invoker,
            KeyScope {
                functions: vec!["a".into()],
                queues: vec!["*".into()],
                topics: vec![],
            },
        );
        assert!(p.check(Permission::FunctionsInvoke, Some("a")).is_ok());
        let denied = p.check(Permission::FunctionsInvoke, Some("b")).unwrap_err();
        assert_eq!(
            denied.to_string(),
            "invoker key key_1 lacks `functions:invoke` on `b`"
        );
        assert!(p.check(Permission::QueuesSend, Some("any")).is_ok());
        assert!(p.check(Permission::TopicsPublish, Some("t")).is_err());
        assert!(p.check(Permission::FunctionsRead, None).is_err());
        // Admins are not scoped.
        let admin = principal(Role::Admin, KeyScope::default());
        assert!(admin.check(Permission::FunctionsInvoke, Some("b")).is_ok());
    }

    #[test]
    fn quota_periods_are_utc_days_monday_weeks_and_calendar_months() {
        // 2026-12-05T10:00:00Z, a Saturday.
        let now = 1_796_464_800_000;
        let (_, next_day) = QuotaPeriod::Day.at(now);
        assert_eq!(next_day, 1_796_515_200_000); // 2026-12-06T00:00Z
        let (week, next_week) = QuotaPeriod::Week.at(now);
        assert_eq!(next_week, 1_796_601_600_000); // Monday 2026-12-07T00:00Z
        assert_eq!(QuotaPeriod::Week.at(next_week - 1).0, week);
        assert_eq!(QuotaPeriod::Week.at(next_week).0, week + 1);
        let (month, next_month) = QuotaPeriod::Month.at(now);
        assert_eq!(next_month, 1_798_761_600_000); // 2027-01-01T00:00Z
        assert_eq!(QuotaPeriod::Month.at(next_month).0, month + 1);
    }

    #[test]
    fn calls_map_to_permissions() {
        assert_eq!(
            permission("POST", "/v1/functions/{name}/invoke"),
            Some((Permission::FunctionsInvoke, Some("name")))
        );
        assert_eq!(
            permission("DELETE", "/v1/functions/{name}"),
            Some((Permission::FunctionsDeploy, None))
        );
        assert_eq!(
            permission("GET", "/v1/functions/{name}"),
            Some((Permission::FunctionsRead, None))
        );
        assert_eq!(
            permission("PUT", "/v1/queues/{name}"),
            Some((Permission::EventsManage, None))
        );
        assert_eq!(permission("GET", "/v1/unknown"), None);
        assert_eq!(Role::parse("deployer"), Some(Role::Deployer));
        assert_eq!(Role::parse("root"), None);
    }
}
