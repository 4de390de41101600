//! The register as written: plain structs with spans, before any name is resolved.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use toml::Spanned;

/// A string with the byte range it was written at.
pub type SpannedString = Spanned<String>;

/// The whole register file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegister {
    /// How the gateway listens and where it keeps its state.
    pub gateway: Option<Spanned<RawGateway>>,
    /// The agents that may call, by name.
    #[serde(default)]
    pub agents: BTreeMap<SpannedString, Spanned<RawAgent>>,
    /// Named groups of approvers.
    #[serde(default)]
    pub approvers: BTreeMap<SpannedString, Spanned<Vec<SpannedString>>>,
    /// The systems behind the gateway, by name.
    #[serde(default)]
    pub upstreams: BTreeMap<SpannedString, Spanned<RawUpstream>>,
    /// Every action an agent may take, by `UPSTREAM.TOOL`.
    #[serde(default)]
    pub actions: BTreeMap<SpannedString, Spanned<RawAction>>,
}

/// `[gateway]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    /// `host:port` for HTTP (MCP at `/mcp`, API at `/v1`).
    pub listen: Option<SpannedString>,
    /// `sqlite://FILE` (relative to the register) or `postgres://...`.
    pub store: Option<Spanned<RawSecret>>,
    /// File holding the audit signing key; created on first start.
    pub audit_key: Option<SpannedString>,
    /// The origin line of signed checkpoints.
    pub audit_origin: Option<SpannedString>,
    /// Largest request body accepted, in bytes.
    pub max_request_bytes: Option<Spanned<u64>>,
    /// Most 2025-11-25 sessions one agent may hold open at `/mcp` at once.
    pub max_sessions_per_agent: Option<Spanned<u64>>,
    /// Host names agents may use to reach `/mcp` (DNS-rebinding guard); loopback is always allowed.
    #[serde(default)]
    pub allowed_hosts: Vec<SpannedString>,
}

/// `[agents.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    /// Who answers for this agent.
    pub owner: Option<SpannedString>,
    /// What the agent is for.
    pub description: Option<SpannedString>,
    /// The bearer token, read from the environment; only its hash is kept.
    pub token: Option<Spanned<RawSecret>>,
    /// The SHA-256 of the bearer token, hex.
    pub token_sha256: Option<SpannedString>,
}

/// `[upstreams.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// A program and its arguments, launched as an MCP server over stdio.
    pub command: Option<Spanned<Vec<SpannedString>>>,
    /// The working directory of the command (relative to the register).
    pub cwd: Option<SpannedString>,
    /// Environment of the command.
    #[serde(default)]
    pub env: BTreeMap<SpannedString, Spanned<RawSecret>>,
    /// The Streamable HTTP endpoint of the MCP server.
    pub url: Option<Spanned<RawSecret>>,
    /// Headers sent with every HTTP request.
    #[serde(default)]
    pub headers: BTreeMap<SpannedString, Spanned<RawSecret>>,
    /// `auto`, `2025-11-25` or `2026-07-28`.
    pub protocol: Option<SpannedString>,
    /// Whether tools are exposed as `UPSTREAM.TOOL` (the default) or by their own name.
    pub namespace: Option<Spanned<bool>>,
    /// How long a call may take before it is reported as timed out (`30s`).
    pub timeout: Option<SpannedString>,
}

/// `[actions."UPSTREAM.TOOL"]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    /// Agents that may call it.
    pub agents: Option<Spanned<Vec<SpannedString>>>,
    /// `read`, `write` or `irreversible`.
    pub tier: Option<SpannedString>,
    /// What the action is for, in the register's words.
    pub description: Option<SpannedString>,
    /// CEL conditions that must all hold.
    pub require: Option<Spanned<OneOrMany>>,
    /// Budgets over time.
    #[serde(default)]
    pub budget: Vec<Spanned<RawBudget>>,
    /// Argument and result paths to redact in the audit (`args.card_number`, `result.card_number`).
    #[serde(default)]
    pub redact: Vec<SpannedString>,
    /// Approval block.
    pub approve: Option<Spanned<toml::Value>>,
    /// Verification block.
    pub verify: Option<Spanned<toml::Value>>,
    /// Undo block.
    pub undo: Option<Spanned<toml::Value>>,
    /// Cancellable delay before the call goes out.
    pub delay: Option<Spanned<toml::Value>>,
}

/// One budget: `{ count = 20, per = "1h" }` or `{ sum = "args.amount", max = 1000, per = "24h" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    /// At most this many calls per window.
    pub count: Option<Spanned<i64>>,
    /// A CEL expression whose value is summed over the window.
    pub sum: Option<SpannedString>,
    /// The most the sum may reach in a window.
    pub max: Option<Spanned<f64>>,
    /// The window (`1h`, `24h`, `7d`).
    pub per: Option<SpannedString>,
}

/// A value that may be a literal or come from the environment.
#[derive(Debug, Clone, PartialEq)]
pub enum RawSecret {
    /// Written in the file.
    Literal(String),
    /// `{ env = "NAME", prefix = "Bearer " }`.
    Env {
        /// The variable to read.
        env: String,
        /// Text put before the value.
        prefix: Option<String>,
    },
}

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawSecret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, or a table `{ env = \"NAME\" }` with an optional `prefix`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSecret, E> {
                Ok(RawSecret::Literal(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSecret, A::Error> {
                let mut env = None;
                let mut prefix = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "env" => env = Some(map.next_value::<String>()?),
                        "prefix" => prefix = Some(map.next_value::<String>()?),
                        other => {
                            return Err(de::Error::unknown_field(other, &["env", "prefix"]));
                        }
                    }
                }
                let env = env.ok_or_else(|| de::Error::missing_field("env"))?;
                Ok(RawSecret::Env { env, prefix })
            }
        }
        d.deserialize_any(V)
    }
}

/// One CEL condition or a list of them; each of a list keeps its own span.
#[derive(Debug, Clone, PartialEq)]
pub enum OneOrMany {
    /// `require = "EXPR"`: its span is the whole value's.
    One(String),
    /// `require = ["EXPR", ...]`.
    Many(Vec<SpannedString>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a CEL expression, or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<SpannedString>()? {
                    out.push(s);
                }
                Ok(OneOrMany::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}
