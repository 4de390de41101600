//! The register as written: plain structs with spans, before any name is resolved.
//!
//! They are read from TOML's parse tree one key at a time, not in one serde pass: a value
//! of the wrong type is reported in the register's words (which key, what it must be, what
//! to write instead) and the rest of the file is still read, so that one `remit check`
//! reports every mistake that does not depend on another. A key whose value could not be
//! read is kept in its table's `unreadable`, so that it is not reported again as missing.

use super::compile::did_you_mean;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A string with the byte range it was written at.
pub type SpannedString = Spanned<String>;

/// A mistake found while reading the file: where, what, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The bytes it is about.
    pub span: Range<usize>,
    /// What is wrong, one line.
    pub message: String,
    /// What to write instead.
    pub help: String,
}

impl Problem {
    fn new(span: Range<usize>, message: String, help: String) -> Self {
        Self {
            span,
            message,
            help,
        }
    }
}

/// The whole register file.
#[derive(Debug, Default)]
pub struct RawRegister {
    /// How the gateway listens and where it keeps its state.
    pub gateway: Option<Spanned<RawGateway>>,
    /// The agents that may call, by name.
    pub agents: BTreeMap<SpannedString, Spanned<RawAgent>>,
    /// Named groups of approvers.
    pub approvers: BTreeMap<SpannedString, Spanned<Vec<SpannedString>>>,
    /// The approver groups written with a value that is not a list of names (reported):
    /// they are in `approvers` with no members, and their emptiness is not reported again.
    pub unreadable_approvers: BTreeSet<String>,
    /// The systems behind the gateway, by name.
    pub upstreams: BTreeMap<SpannedString, Spanned<RawUpstream>>,
    /// Every action an agent may take, by `UPSTREAM.TOOL`.
    pub actions: BTreeMap<SpannedString, Spanned<RawAction>>,
}

/// `[gateway]`.
#[derive(Debug, Default)]
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
    pub allowed_hosts: Vec<SpannedString>,
    /// Keys written with a value that could not be read (already reported).
    pub unreadable: BTreeSet<&'static str>,
}

/// `[agents.NAME]`.
#[derive(Debug, Default)]
pub struct RawAgent {
    /// Who answers for this agent.
    pub owner: Option<SpannedString>,
    /// What the agent is for.
    pub description: Option<SpannedString>,
    /// The bearer token, read from the environment; only its hash is kept.
    pub token: Option<Spanned<RawSecret>>,
    /// The SHA-256 of the bearer token, hex.
    pub token_sha256: Option<SpannedString>,
    /// Keys written with a value that could not be read (already reported).
    pub unreadable: BTreeSet<&'static str>,
}

/// `[upstreams.NAME]`.
#[derive(Debug, Default)]
pub struct RawUpstream {
    /// A program and its arguments, launched as an MCP server over stdio.
    pub command: Option<Spanned<Vec<SpannedString>>>,
    /// The working directory of the command (relative to the register).
    pub cwd: Option<SpannedString>,
    /// Environment of the command.
    pub env: BTreeMap<SpannedString, Spanned<RawSecret>>,
    /// The Streamable HTTP endpoint of the MCP server.
    pub url: Option<Spanned<RawSecret>>,
    /// Headers sent with every HTTP request.
    pub headers: BTreeMap<SpannedString, Spanned<RawSecret>>,
    /// `auto`, `2025-11-25` or `2026-07-28`.
    pub protocol: Option<SpannedString>,
    /// Whether tools are exposed as `UPSTREAM.TOOL` (the default) or by their own name.
    pub namespace: Option<Spanned<bool>>,
    /// How long a call may take before it is reported as timed out (`30s`).
    pub timeout: Option<SpannedString>,
    /// Keys written with a value that could not be read (already reported); `"*"` when
    /// the upstream itself is not a table.
    pub unreadable: BTreeSet<&'static str>,
}

/// `[actions."UPSTREAM.TOOL"]`.
#[derive(Debug, Default)]
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
    pub budget: Vec<Spanned<RawBudget>>,
    /// Argument and result paths to redact in the audit (`args.card_number`, `result.card_number`).
    pub redact: Vec<SpannedString>,
    /// Approval block.
    pub approve: Option<Spanned<toml::Value>>,
    /// Verification block.
    pub verify: Option<Spanned<toml::Value>>,
    /// Undo block.
    pub undo: Option<Spanned<toml::Value>>,
    /// Cancellable delay before the call goes out.
    pub delay: Option<Spanned<toml::Value>>,
    /// Keys written with a value that could not be read (already reported); `"*"` when
    /// the action itself is not a table.
    pub unreadable: BTreeSet<&'static str>,
}

/// One budget: `{ count = 20, per = "1h" }` or `{ sum = "args.amount", max = 1000, per = "24h" }`.
#[derive(Debug, Default)]
pub struct RawBudget {
    /// At most this many calls per window.
    pub count: Option<Spanned<i64>>,
    /// A CEL expression whose value is summed over the window.
    pub sum: Option<SpannedString>,
    /// The most the sum may reach in a window.
    pub max: Option<Spanned<f64>>,
    /// The window (`1h`, `24h`, `7d`).
    pub per: Option<SpannedString>,
    /// Keys written with a value that could not be read (already reported).
    pub unreadable: BTreeSet<&'static str>,
}

/// A value that may be a literal or come from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// One CEL condition or a list of them; each of a list keeps its own span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OneOrMany {
    /// `require = "EXPR"`: its span is the whole value's.
    One(String),
    /// `require = ["EXPR", ...]`.
    Many(Vec<SpannedString>),
}

/// The keys of each table, in the order `docs/register.md` gives them.
const TOP_KEYS: &[&str] = &["gateway", "agents", "approvers", "upstreams", "actions"];
const GATEWAY_KEYS: &[&str] = &[
    "listen",
    "store",
    "audit_key",
    "audit_origin",
    "max_request_bytes",
    "max_sessions_per_agent",
    "allowed_hosts",
];
const AGENT_KEYS: &[&str] = &["owner", "description", "token", "token_sha256"];
const UPSTREAM_KEYS: &[&str] = &[
    "command",
    "cwd",
    "env",
    "url",
    "headers",
    "protocol",
    "namespace",
    "timeout",
];
const ACTION_KEYS: &[&str] = &[
    "agents",
    "tier",
    "description",
    "require",
    "budget",
    "redact",
    "approve",
    "verify",
    "undo",
    "delay",
];
const BUDGET_KEYS: &[&str] = &["count", "sum", "max", "per"];

/// Reads the register from the file's parse tree; every mistake is in `problems`.
pub fn read(tree: &DeTable<'_>, problems: &mut Vec<Problem>) -> RawRegister {
    let mut r = Reader { problems };
    let mut raw = RawRegister::default();
    for (k, v) in tree {
        let Some(key) = r.known(k, TOP_KEYS, "the register") else {
            continue;
        };
        match key {
            "gateway" => {
                if let Some(t) = r.table(
                    v,
                    "`[gateway]`",
                    "[gateway]` with its keys, e.g. `listen = \"127.0.0.1:8470\"",
                ) {
                    raw.gateway = Some(Spanned::new(v.span(), r.gateway(t)));
                }
            }
            "approvers" => {
                if let Some(t) = r.table(
                    v,
                    "`[approvers]`",
                    "[approvers]` with one line per group: `finance = [\"ana\", \"bo\"]",
                ) {
                    r.approvers(t, &mut raw);
                }
            }
            _ => {
                let (what, header) = match key {
                    "agents" => ("`[agents]`", "[agents.NAME]` for each agent"),
                    "upstreams" => ("`[upstreams]`", "[upstreams.NAME]` for each upstream"),
                    _ => (
                        "`[actions]`",
                        "[actions.\"UPSTREAM.TOOL\"]` for each action",
                    ),
                };
                let Some(t) = r.table(v, what, header) else {
                    continue;
                };
                for (name, entry) in t {
                    let name = Spanned::new(name.span(), name.get_ref().to_string());
                    match key {
                        "agents" => {
                            let a = r.entity(entry, "agent", &name, |r, t, n| r.agent(t, n));
                            raw.agents.insert(name, a);
                        }
                        "upstreams" => {
                            let u = r.entity(entry, "upstream", &name, |r, t, n| r.upstream(t, n));
                            raw.upstreams.insert(name, u);
                        }
                        _ => {
                            let a = r.entity(entry, "action", &name, |r, t, n| r.action(t, n));
                            raw.actions.insert(name, a);
                        }
                    }
                }
            }
        }
    }
    raw
}

/// The table a header like `[agents.NAME]` names, and the example of how it is written.
trait Entity: Default {
    /// `[agents.support-bot]`, for the hint.
    fn header(name: &str) -> String;
    /// Marks the whole entity as unreadable.
    fn poison(&mut self);
}

impl Entity for RawAgent {
    fn header(name: &str) -> String {
        format!("[agents.{name}]")
    }
    fn poison(&mut self) {
        self.unreadable.insert("*");
    }
}

impl Entity for RawUpstream {
    fn header(name: &str) -> String {
        format!("[upstreams.{name}]")
    }
    fn poison(&mut self) {
        self.unreadable.insert("*");
    }
}

impl Entity for RawAction {
    fn header(name: &str) -> String {
        format!("[actions.\"{name}\"]")
    }
    fn poison(&mut self) {
        self.unreadable.insert("*");
    }
}

struct Reader<'p> {
    problems: &'p mut Vec<Problem>,
}

/// What a value is, in a message: "the text `\"no\"`", "the number `1.5`", "a list".
fn describe(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => {
            let shown: String = s.chars().take(40).collect();
            let more = if shown.len() < s.len() { "…" } else { "" };
            format!("the text `\"{shown}{more}\"`")
        }
        DeValue::Integer(i) => format!("the number `{i}`"),
        DeValue::Float(f) => format!("the number `{f}`"),
        DeValue::Boolean(b) => format!("`{b}`"),
        DeValue::Datetime(d) => format!("the date `{d}`"),
        DeValue::Array(_) => "a list".to_owned(),
        DeValue::Table(_) => "a table".to_owned(),
    }
}

/// A value as it could be written in TOML, for a hint built from what was written.
fn toml_text(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("{:?}", s.as_ref()),
        DeValue::Integer(i) => i.to_string(),
        DeValue::Float(f) => f.to_string(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(d) => d.to_string(),
        DeValue::Array(_) => "[...]".to_owned(),
        DeValue::Table(_) => "{ ... }".to_owned(),
    }
}

/// An integer as written, if it fits in an `i64`.
fn integer(v: &DeValue<'_>) -> Option<i64> {
    let i = v.as_integer()?;
    i64::from_str_radix(i.as_str(), i.radix()).ok()
}

impl Reader<'_> {
    fn problem(&mut self, span: Range<usize>, message: String, help: String) {
        self.problems.push(Problem::new(span, message, help));
    }

    /// `key` if it is one of `known`; otherwise reports it as unknown in `place`.
    fn known(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        known: &[&'static str],
        place: &str,
    ) -> Option<&'static str> {
        let text = key.get_ref().as_ref();
        if let Some(k) = known.iter().find(|k| **k == text) {
            return Some(k);
        }
        let expected: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
        let help = did_you_mean(text, known.iter().copied())
            .unwrap_or_else(|| format!("remove `{text}`; see docs/register.md for the keys"));
        self.problem(
            key.span(),
            format!(
                "unknown field `{text}` in {place}, expected one of {}",
                expected.join(", ")
            ),
            help,
        );
        None
    }

    /// The table `v` is, or a report that it is not one.
    fn table<'a, 'i>(
        &mut self,
        v: &'a Spanned<DeValue<'i>>,
        what: &str,
        header: &str,
    ) -> Option<&'a DeTable<'i>> {
        if let Some(t) = v.get_ref().as_table() {
            return Some(t);
        }
        self.problem(
            v.span(),
            format!("{what} must be a table, not {}", describe(v.get_ref())),
            format!("write `{header}`"),
        );
        None
    }

    /// An agent, upstream or action: its table read by `read`, or (not a table) reported
    /// and kept as a whole that could not be read.
    fn entity<T: Entity>(
        &mut self,
        v: &Spanned<DeValue<'_>>,
        kind: &str,
        name: &SpannedString,
        read: impl FnOnce(&mut Self, &DeTable<'_>, &str) -> T,
    ) -> Spanned<T> {
        match v.get_ref().as_table() {
            Some(t) => Spanned::new(v.span(), read(self, t, name.get_ref())),
            None => {
                self.problem(
                    v.span(),
                    format!(
                        "{kind} `{}` must be a table of keys, not {}",
                        name.get_ref(),
                        describe(v.get_ref())
                    ),
                    format!(
                        "write its keys under a header of their own: `{}`",
                        T::header(name.get_ref())
                    ),
                );
                let mut t = T::default();
                t.poison();
                Spanned::new(v.span(), t)
            }
        }
    }

    /// Text: `key` must be `what`; `example` is how it is written.
    fn text(
        &mut self,
        key: &str,
        v: &Spanned<DeValue<'_>>,
        what: &str,
        example: &str,
    ) -> Option<SpannedString> {
        if let Some(s) = v.get_ref().as_str() {
            return Some(Spanned::new(v.span(), s.to_owned()));
        }
        self.problem(
            v.span(),
            format!("`{key}` must be {what}, not {}", describe(v.get_ref())),
            format!("write it as text in quotes: `{example}`"),
        );
        None
    }

    /// A list of text: `key` must be `what` (`a list of agent names`).
    fn text_list(
        &mut self,
        key: &str,
        v: &Spanned<DeValue<'_>>,
        what: &str,
        example: &str,
    ) -> Option<Spanned<Vec<SpannedString>>> {
        let Some(items) = v.get_ref().as_array() else {
            // the one item written bare: the same in brackets
            let help = match v.get_ref() {
                DeValue::String(s) if key == "command" => {
                    let words: Vec<String> =
                        s.split_whitespace().map(|w| format!("{w:?}")).collect();
                    format!("write it as a list: `{key} = [{}]`", words.join(", "))
                }
                DeValue::String(s) => {
                    format!(
                        "write it as a list, in brackets: `{key} = [{:?}]`",
                        s.as_ref()
                    )
                }
                _ => format!("write it as a list: `{example}`"),
            };
            self.problem(
                v.span(),
                format!("`{key}` must be {what}, not {}", describe(v.get_ref())),
                help,
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items.iter() {
            match item.get_ref().as_str() {
                Some(s) => out.push(Spanned::new(item.span(), s.to_owned())),
                None => {
                    ok = false;
                    self.problem(
                        item.span(),
                        format!(
                            "`{key}` must be {what}, and {} is not text",
                            describe(item.get_ref())
                        ),
                        format!("write each in quotes: `{example}`"),
                    );
                }
            }
        }
        ok.then(|| Spanned::new(v.span(), out))
    }

    /// A whole number from 0 (`what`: `a number of bytes`).
    fn count(
        &mut self,
        key: &str,
        v: &Spanned<DeValue<'_>>,
        what: &str,
        example: &str,
    ) -> Option<Spanned<u64>> {
        let n = integer(v.get_ref());
        if let Some(n) = n.and_then(|n| u64::try_from(n).ok()) {
            return Some(Spanned::new(v.span(), n));
        }
        self.whole_number_problem(key, v, what, example, n);
        None
    }

    /// A whole number, which may be negative (`count`, checked later).
    fn integer(
        &mut self,
        key: &str,
        v: &Spanned<DeValue<'_>>,
        what: &str,
        example: &str,
    ) -> Option<Spanned<i64>> {
        let n = integer(v.get_ref());
        if let Some(n) = n {
            return Some(Spanned::new(v.span(), n));
        }
        self.whole_number_problem(key, v, what, example, n);
        None
    }

    fn whole_number_problem(
        &mut self,
        key: &str,
        v: &Spanned<DeValue<'_>>,
        what: &str,
        example: &str,
        read: Option<i64>,
    ) {
        let found = match (v.get_ref(), read) {
            (DeValue::Integer(_), Some(_)) => format!("`{}`, below 0", toml_text(v.get_ref())),
            (DeValue::Integer(_), None) => format!("`{}`, too large", toml_text(v.get_ref())),
            (other, _) => describe(other),
        };
        let help = match v.get_ref() {
            DeValue::String(s) if s.trim().parse::<u64>().is_ok() => {
                format!("write the number without quotes: `{key} = {}`", s.trim())
            }
            _ => format!("write a whole number, e.g. `{example}`"),
        };
        self.problem(
            v.span(),
            format!("`{key}` must be {what}, not {found}"),
            help,
        );
    }

    /// A number, whole or not.
    fn number(
        &mut self,
        key: &str,
        v: &Spanned<DeValue<'_>>,
        what: &str,
        example: &str,
    ) -> Option<Spanned<f64>> {
        let n = match v.get_ref() {
            DeValue::Integer(_) => integer(v.get_ref()).map(|n| n as f64),
            DeValue::Float(f) => f
                .as_str()
                .parse::<f64>()
                .ok()
                .filter(|x| !x.is_infinite() || f.as_str().contains("inf")),
            _ => None,
        };
        if let Some(n) = n {
            return Some(Spanned::new(v.span(), n));
        }
        let help = match v.get_ref() {
            DeValue::String(s) if s.trim().parse::<f64>().is_ok() => {
                format!("write the number without quotes: `{key} = {}`", s.trim())
            }
            _ => format!("write a number, e.g. `{example}`"),
        };
        let found = match v.get_ref() {
            DeValue::Integer(_) | DeValue::Float(_) => {
                format!("`{}`, too large", toml_text(v.get_ref()))
            }
            other => describe(other),
        };
        self.problem(
            v.span(),
            format!("`{key}` must be {what}, not {found}"),
            help,
        );
        None
    }

    /// `true` or `false`.
    fn boolean(&mut self, key: &str, v: &Spanned<DeValue<'_>>) -> Option<Spanned<bool>> {
        if let Some(b) = v.get_ref().as_bool() {
            return Some(Spanned::new(v.span(), b));
        }
        let meant = match v.get_ref().as_str().map(|s| s.trim().to_ascii_lowercase()) {
            Some(s) if ["no", "false", "off", "0"].contains(&s.as_str()) => Some(false),
            Some(s) if ["yes", "true", "on", "1"].contains(&s.as_str()) => Some(true),
            _ => integer(v.get_ref()).and_then(|n| match n {
                0 => Some(false),
                1 => Some(true),
                _ => None,
            }),
        };
        let help = match meant {
            Some(b) => format!("write `{key} = {b}`, without quotes"),
            None => format!("write `{key} = true` or `{key} = false`, without quotes"),
        };
        self.problem(
            v.span(),
            format!(
                "`{key}` must be `true` or `false`, not {}",
                describe(v.get_ref())
            ),
            help,
        );
        None
    }

    /// A value written in the file or read from the environment.
    fn secret(
        &mut self,
        key: &str,
        v: &Spanned<DeValue<'_>>,
        example: &str,
    ) -> Option<Spanned<RawSecret>> {
        let table = match v.get_ref() {
            DeValue::String(s) => {
                return Some(Spanned::new(v.span(), RawSecret::Literal(s.to_string())));
            }
            DeValue::Table(t) => t,
            other => {
                self.problem(
                    v.span(),
                    format!(
                        "`{key}` must be text or `{{ env = \"NAME\" }}` (read from the environment), not {}",
                        describe(other)
                    ),
                    format!("for example `{example}`"),
                );
                return None;
            }
        };
        let mut env = None;
        let mut prefix = None;
        let mut ok = true;
        for (k, value) in table {
            let Some(part) = self.known(k, &["env", "prefix"], &format!("`{key}`")) else {
                ok = false;
                continue;
            };
            let what = if part == "env" {
                "the name of an environment variable"
            } else {
                "the text put before the variable's value"
            };
            let example = if part == "env" {
                "env = \"REMIT_TOKEN\""
            } else {
                "prefix = \"Bearer \""
            };
            match self.text(part, value, what, example) {
                Some(s) if part == "env" => env = Some(s.into_inner()),
                Some(s) => prefix = Some(s.into_inner()),
                None => ok = false,
            }
        }
        match env {
            Some(env) if ok => Some(Spanned::new(v.span(), RawSecret::Env { env, prefix })),
            None if ok => {
                self.problem(
                    v.span(),
                    format!("`{key}` names no environment variable: its table has no `env`"),
                    format!("for example `{example}`"),
                );
                None
            }
            _ => None,
        }
    }

    /// A table of names to secrets (`env`, `headers`).
    fn secrets(
        &mut self,
        key: &str,
        v: &Spanned<DeValue<'_>>,
        example: &str,
    ) -> Option<BTreeMap<SpannedString, Spanned<RawSecret>>> {
        let Some(t) = v.get_ref().as_table() else {
            self.problem(
                v.span(),
                format!(
                    "`{key}` must be a table of names and values, not {}",
                    describe(v.get_ref())
                ),
                format!("for example `{example}`"),
            );
            return None;
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (k, value) in t {
            let name = k.get_ref().to_string();
            match self.secret(&format!("{key}.{name}"), value, example) {
                Some(s) => {
                    out.insert(Spanned::new(k.span(), name), s);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn gateway(&mut self, t: &DeTable<'_>) -> RawGateway {
        let mut g = RawGateway::default();
        for (k, v) in t {
            let Some(key) = self.known(k, GATEWAY_KEYS, "`[gateway]`") else {
                continue;
            };
            let ok = match key {
                "listen" => {
                    g.listen = self.text(
                        key,
                        v,
                        "an address `host:port`",
                        "listen = \"127.0.0.1:8470\"",
                    );
                    g.listen.is_some()
                }
                "store" => {
                    g.store = self.secret(
                        key,
                        v,
                        "store = \"sqlite://remit.db\"` or `store = { env = \"REMIT_STORE\" }",
                    );
                    g.store.is_some()
                }
                "audit_key" => {
                    g.audit_key = self.text(
                        key,
                        v,
                        "the path of a file",
                        "audit_key = \"remit-audit.key\"",
                    );
                    g.audit_key.is_some()
                }
                "audit_origin" => {
                    g.audit_origin = self.text(
                        key,
                        v,
                        "the name of this log",
                        "audit_origin = \"remit.example/support\"",
                    );
                    g.audit_origin.is_some()
                }
                "max_request_bytes" => {
                    g.max_request_bytes = self.count(
                        key,
                        v,
                        "a whole number of bytes",
                        "max_request_bytes = 1048576",
                    );
                    g.max_request_bytes.is_some()
                }
                "max_sessions_per_agent" => {
                    g.max_sessions_per_agent = self.count(
                        key,
                        v,
                        "a whole number of sessions",
                        "max_sessions_per_agent = 64",
                    );
                    g.max_sessions_per_agent.is_some()
                }
                _ => match self.text_list(
                    key,
                    v,
                    "a list of host names",
                    "allowed_hosts = [\"remit.internal.example\"]",
                ) {
                    Some(list) => {
                        g.allowed_hosts = list.into_inner();
                        true
                    }
                    None => false,
                },
            };
            if !ok {
                g.unreadable.insert(key);
            }
        }
        g
    }

    fn approvers(&mut self, t: &DeTable<'_>, raw: &mut RawRegister) {
        for (k, v) in t {
            let group = k.get_ref().to_string();
            let members = match v.get_ref().as_array() {
                Some(_) => self.text_list(
                    &group,
                    v,
                    "a list of approver names",
                    &format!("{group} = [\"ana\", \"bo\"]"),
                ),
                None => {
                    let help = match v.get_ref() {
                        DeValue::String(s) => format!(
                            "write it as a list, in brackets: `{group} = [{:?}]`",
                            s.as_ref()
                        ),
                        _ => format!("write it as a list: `{group} = [\"ana\", \"bo\"]`"),
                    };
                    self.problem(
                        v.span(),
                        format!(
                            "approver group `{group}` must be a list of approver names, not {}",
                            describe(v.get_ref())
                        ),
                        help,
                    );
                    None
                }
            };
            let members = members.unwrap_or_else(|| {
                raw.unreadable_approvers.insert(group.clone());
                Spanned::new(v.span(), Vec::new())
            });
            raw.approvers.insert(Spanned::new(k.span(), group), members);
        }
    }

    fn agent(&mut self, t: &DeTable<'_>, name: &str) -> RawAgent {
        let mut a = RawAgent::default();
        let place = format!("agent `{name}`");
        let var: String = format!("REMIT_TOKEN_{name}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        for (k, v) in t {
            let Some(key) = self.known(k, AGENT_KEYS, &place) else {
                continue;
            };
            let ok = match key {
                "owner" => {
                    a.owner = self.text(
                        key,
                        v,
                        "who answers for the agent",
                        "owner = \"payments-team@example.com\"",
                    );
                    a.owner.is_some()
                }
                "description" => {
                    a.description = self.text(
                        key,
                        v,
                        "what the agent is for",
                        "description = \"answers customers\"",
                    );
                    a.description.is_some()
                }
                "token" => {
                    a.token = self.secret(key, v, &format!("token = {{ env = \"{var}\" }}"));
                    a.token.is_some()
                }
                _ => {
                    a.token_sha256 = self.text(
                        key,
                        v,
                        "the hex SHA-256 of the token",
                        "token_sha256 = \"<64 hex digits>\"",
                    );
                    a.token_sha256.is_some()
                }
            };
            if !ok {
                a.unreadable.insert(key);
            }
        }
        a
    }

    fn upstream(&mut self, t: &DeTable<'_>, name: &str) -> RawUpstream {
        let mut u = RawUpstream::default();
        let place = format!("upstream `{name}`");
        for (k, v) in t {
            let Some(key) = self.known(k, UPSTREAM_KEYS, &place) else {
                continue;
            };
            let ok = match key {
                "command" => {
                    u.command = self.text_list(
                        key,
                        v,
                        "a list: the program and its arguments",
                        "command = [\"billing-mcp\", \"--db\", \"billing.db\"]",
                    );
                    u.command.is_some()
                }
                "cwd" => {
                    u.cwd = self.text(key, v, "a folder", "cwd = \"servers/billing\"");
                    u.cwd.is_some()
                }
                "env" => match self.secrets(
                    key,
                    v,
                    "env = { BILLING_API_KEY = { env = \"BILLING_API_KEY\" } }",
                ) {
                    Some(env) => {
                        u.env = env;
                        true
                    }
                    None => false,
                },
                "url" => {
                    u.url = self.secret(key, v, "url = \"https://crm.internal.example/mcp\"");
                    u.url.is_some()
                }
                "headers" => match self.secrets(
                    key,
                    v,
                    "headers = { Authorization = { env = \"CRM_TOKEN\", prefix = \"Bearer \" } }",
                ) {
                    Some(h) => {
                        u.headers = h;
                        true
                    }
                    None => false,
                },
                "protocol" => {
                    u.protocol = self.text(
                        key,
                        v,
                        "`auto`, `2025-11-25` or `2026-07-28`",
                        "protocol = \"auto\"",
                    );
                    u.protocol.is_some()
                }
                "namespace" => {
                    u.namespace = self.boolean(key, v);
                    u.namespace.is_some()
                }
                _ => {
                    let example = match integer(v.get_ref()) {
                        Some(n) if n > 0 => format!("timeout = \"{n}s\""),
                        _ => "timeout = \"30s\"".to_owned(),
                    };
                    u.timeout = self.text(key, v, "a duration such as `30s`", &example);
                    u.timeout.is_some()
                }
            };
            if !ok {
                u.unreadable.insert(key);
            }
        }
        u
    }

    fn action(&mut self, t: &DeTable<'_>, name: &str) -> RawAction {
        let mut a = RawAction::default();
        let place = format!("action `{name}`");
        for (k, v) in t {
            let Some(key) = self.known(k, ACTION_KEYS, &place) else {
                continue;
            };
            let ok = match key {
                "agents" => {
                    a.agents = self.text_list(
                        key,
                        v,
                        "a list of agent names",
                        "agents = [\"support-bot\"]",
                    );
                    a.agents.is_some()
                }
                "tier" => {
                    a.tier = self.text(
                        key,
                        v,
                        "`read`, `write` or `irreversible`",
                        "tier = \"read\"",
                    );
                    a.tier.is_some()
                }
                "description" => {
                    a.description = self.text(
                        key,
                        v,
                        "what the action is for",
                        "description = \"refund a charge\"",
                    );
                    a.description.is_some()
                }
                "require" => {
                    a.require = self.require(v);
                    a.require.is_some()
                }
                "budget" => match self.budgets(v, name) {
                    Some(b) => {
                        a.budget = b;
                        true
                    }
                    None => false,
                },
                "redact" => match self.text_list(
                    key,
                    v,
                    "a list of paths such as `args.card_number`",
                    "redact = [\"args.card_number\"]",
                ) {
                    Some(list) => {
                        a.redact = list.into_inner();
                        true
                    }
                    None => false,
                },
                _ => {
                    let value = self.any(v);
                    let ok = value.is_some();
                    match key {
                        "approve" => a.approve = value,
                        "verify" => a.verify = value,
                        "undo" => a.undo = value,
                        _ => a.delay = value,
                    }
                    ok
                }
            };
            if !ok {
                a.unreadable.insert(key);
            }
        }
        a
    }

    /// `require`: one CEL expression or a list of them.
    fn require(&mut self, v: &Spanned<DeValue<'_>>) -> Option<Spanned<OneOrMany>> {
        let example = "require = \"args.amount <= 500\"` or `require = [\"args.amount > 0\", \"args.amount <= 500\"]";
        match v.get_ref() {
            DeValue::String(s) => Some(Spanned::new(v.span(), OneOrMany::One(s.to_string()))),
            DeValue::Array(_) => self
                .text_list("require", v, "a CEL condition or a list of them", example)
                .map(|l| Spanned::new(v.span(), OneOrMany::Many(l.into_inner()))),
            other => {
                let help = format!("write the condition as text, in quotes: `{example}`");
                self.problem(
                    v.span(),
                    format!(
                        "`require` must be a CEL condition (text) or a list of them, not {}",
                        describe(other)
                    ),
                    help,
                );
                None
            }
        }
    }

    /// `budget`: a list of budget tables; each is read on its own.
    fn budgets(
        &mut self,
        v: &Spanned<DeValue<'_>>,
        action: &str,
    ) -> Option<Vec<Spanned<RawBudget>>> {
        let example = "budget = [{ count = 20, per = \"1h\" }]";
        let Some(items) = v.get_ref().as_array() else {
            let help = if v.get_ref().is_table() {
                "put it in brackets, a list of one budget: `budget = [{ count = 20, per = \"1h\" }]`"
                    .to_owned()
            } else {
                format!("write a list of budgets: `{example}`")
            };
            self.problem(
                v.span(),
                format!(
                    "`budget` must be a list of budgets, not {}",
                    describe(v.get_ref())
                ),
                help,
            );
            return None;
        };
        let place = format!("a budget of `{action}`");
        let mut out = Vec::new();
        for item in items.iter() {
            let Some(t) = item.get_ref().as_table() else {
                self.problem(
                    item.span(),
                    format!(
                        "each budget must be a table such as `{{ count = 20, per = \"1h\" }}`, not {}",
                        describe(item.get_ref())
                    ),
                    format!("for example `{example}`"),
                );
                continue;
            };
            let mut b = RawBudget::default();
            for (k, value) in t {
                let Some(key) = self.known(k, BUDGET_KEYS, &place) else {
                    b.unreadable.insert("*");
                    continue;
                };
                let ok = match key {
                    "count" => {
                        b.count = self.integer(key, value, "a whole number of calls", "count = 20");
                        b.count.is_some()
                    }
                    "sum" => {
                        b.sum = self.text(
                            key,
                            value,
                            "a CEL expression over `args`",
                            "sum = \"args.amount\"",
                        );
                        b.sum.is_some()
                    }
                    "max" => {
                        b.max = self.number(key, value, "a number", "max = 1000");
                        b.max.is_some()
                    }
                    _ => {
                        let example = match integer(value.get_ref()) {
                            Some(n) if n > 0 => format!("per = \"{n}h\""),
                            _ => "per = \"1h\"".to_owned(),
                        };
                        b.per = self.text(key, value, "a duration such as `1h`", &example);
                        b.per.is_some()
                    }
                };
                if !ok {
                    b.unreadable.insert(key);
                }
            }
            out.push(Spanned::new(item.span(), b));
        }
        Some(out)
    }

    /// Any value, for the blocks remit does not yet enforce (checked in `compile`).
    fn any(&mut self, v: &Spanned<DeValue<'_>>) -> Option<Spanned<toml::Value>> {
        use serde::Deserialize;
        match toml::Value::deserialize(toml::de::ValueDeserializer::from(v.clone())) {
            Ok(value) => Some(Spanned::new(v.span(), value)),
            Err(e) => {
                self.problem(
                    e.span().unwrap_or_else(|| v.span()),
                    e.message().trim().replace('\n', " "),
                    "see docs/register.md for how this block is written".to_owned(),
                );
                None
            }
        }
    }
}

/// Parses the file into TOML's parse tree. Each mistake is in `problems`; the tree is
/// `None` when the file is not TOML (and only the first syntax error is reported). A table or key written twice is reported,
/// where it is first written too, and the file is read on: the tree then holds the first.
pub fn parse<'i>(source: &'i str, problems: &mut Vec<Problem>) -> Option<DeTable<'i>> {
    let (tree, errors) = DeTable::parse_recoverable(source);
    let mut usable = true;
    // the paths of the tables reported as written twice: their keys were merged into the
    // first and are not reported again one by one
    let mut twice: Vec<Vec<String>> = Vec::new();
    for e in &errors {
        let span = e.span().unwrap_or(0..0);
        if e.message() == "duplicate key" {
            problems.extend(duplicate(source, tree.get_ref(), span, &mut twice));
            continue;
        }
        // past the first, the parser's errors are mostly what the first made of the rest
        // (a list or text not closed takes in the lines after it)
        if usable {
            problems.push(syntax(source, e.message(), span));
        }
        usable = false;
    }
    usable.then(|| tree.into_inner())
}

/// The 1-based line of a byte offset.
fn line_of(source: &str, offset: usize) -> usize {
    source.get(..offset).unwrap_or(source).matches('\n').count() + 1
}

/// The line `offset` is on: its start and its text.
fn line_at(source: &str, offset: usize) -> (usize, &str) {
    let start = source
        .get(..offset)
        .and_then(|s| s.rfind('\n'))
        .map_or(0, |i| i + 1);
    let end = source
        .get(start..)
        .and_then(|s| s.find('\n'))
        .map_or(source.len(), |i| start + i);
    (start, source.get(start..end).unwrap_or_default())
}

/// The key path `text` (a key, dotted or quoted, as written) names: `actions."a.b"` is
/// `["actions", "a.b"]`.
fn key_path(text: &str) -> Option<Vec<String>> {
    let doc = format!("{text} = 0");
    let tree = DeTable::parse(&doc).ok()?;
    let mut path = Vec::new();
    let mut table = tree.get_ref();
    loop {
        let mut entries = table.iter();
        let (k, v) = entries.next()?;
        path.push(k.get_ref().to_string());
        match v.get_ref() {
            DeValue::Table(t) => table = t,
            _ => return Some(path),
        }
    }
}

/// The path of the header on `line` (`[actions."a.b"]`), if it is one.
fn header_path(line: &str) -> Option<Vec<String>> {
    let inner = line.trim_start().strip_prefix('[')?;
    let inner = inner.strip_prefix('[').unwrap_or(inner);
    // the first `]` that ends a key path (one inside quotes does not)
    inner
        .match_indices(']')
        .find_map(|(i, _)| key_path(inner.get(..i)?))
}

/// Where the key at the end of `path` is written in `tree`.
fn first_written(tree: &DeTable<'_>, path: &[String]) -> Option<usize> {
    let (last, parents) = path.split_last()?;
    let mut table = tree;
    for p in parents {
        let v = table.iter().find(|(k, _)| k.get_ref() == p.as_str())?.1;
        table = match v.get_ref() {
            DeValue::Table(t) => t,
            DeValue::Array(a) => a.last()?.get_ref().as_table()?,
            _ => return None,
        };
    }
    table
        .iter()
        .find(|(k, _)| k.get_ref() == last.as_str())
        .map(|(k, _)| k.span().start)
}

/// Where the first header of the table at `path` is written, before `end`.
fn first_header(source: &str, end: usize, path: &[String]) -> Option<usize> {
    let mut offset = 0;
    for line in source.get(..end)?.split_inclusive('\n') {
        if line.trim_start().starts_with('[') && header_path(line).as_deref() == Some(path) {
            return Some(offset + (line.len() - line.trim_start().len()));
        }
        offset += line.len();
    }
    None
}

/// The table a path names, in a message: "action `billing.get_customer`", "`[gateway]`".
fn table_name(path: &[String]) -> String {
    match path {
        [] => "the top of the file".to_owned(),
        [section, name] if section == "actions" => format!("action `{name}`"),
        [section, name] if section == "agents" => format!("agent `{name}`"),
        [section, name] if section == "upstreams" => format!("upstream `{name}`"),
        _ => format!("`[{}]`", header_text(path)),
    }
}

/// A path as a header is written: `actions."billing.get_customer"`.
fn header_text(path: &[String]) -> String {
    path.iter()
        .map(|p| {
            if !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                p.clone()
            } else {
                format!("{p:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A table or key written twice, in the register's words and with where it is first
/// written; `None` for a key of a table already reported as written twice.
fn duplicate(
    source: &str,
    tree: &DeTable<'_>,
    span: Range<usize>,
    twice: &mut Vec<Vec<String>>,
) -> Option<Problem> {
    let (line_start, line) = line_at(source, span.start);
    let written = source.get(span.clone()).unwrap_or_default();
    let name = key_path(written)
        .and_then(|p| p.last().cloned())
        .unwrap_or_else(|| written.to_owned());
    let before = source.get(line_start..span.start).unwrap_or_default();
    let is_header = before.trim_start().starts_with('[');
    let path = if is_header {
        header_path(line)
    } else if before.contains(['{', ',', '[']) {
        // a key in an inline table: where it is in the tree is not worth finding
        None
    } else {
        let relative = key_path(source.get(line_start..span.end).unwrap_or_default());
        // the table the key is in: the last header above it
        let above = source.get(..line_start).unwrap_or_default();
        let table = above
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('['))
            .map_or(Some(Vec::new()), header_path);
        table.zip(relative).map(|(mut t, r)| {
            t.extend(r);
            t
        })
    };
    let Some(path) = path else {
        return Some(Problem::new(
            span,
            format!("`{name}` is written twice in the same table"),
            format!("keep one `{name}`: a key takes one value"),
        ));
    };
    if twice
        .iter()
        .any(|t| path.len() > t.len() && path.starts_with(t))
    {
        return None;
    }
    let first = if is_header {
        first_header(source, line_start, &path)
    } else {
        first_written(tree, &path)
    };
    let first = first
        .filter(|at| *at < span.start)
        .map(|at| format!(", first at line {}", line_of(source, at)))
        .unwrap_or_default();
    let (parent, last) = match path.split_last() {
        Some((last, parent)) => (parent, last.clone()),
        None => (&[][..], name),
    };
    let problem = if is_header {
        twice.push(path.clone());
        let header = format!("[{}]", header_text(&path));
        let message = match parent {
            [section] if section == "actions" => format!("action `{last}` is defined twice{first}"),
            [section] if section == "agents" => format!("agent `{last}` is defined twice{first}"),
            [section] if section == "upstreams" => {
                format!("upstream `{last}` is defined twice{first}")
            }
            _ => format!("`{header}` is written twice{first}"),
        };
        let help = if parent.len() == 1 {
            format!("merge the two `{header}` tables into one, or rename one of them")
        } else {
            format!("merge the two `{header}` tables into one")
        };
        Problem::new(span, message, help)
    } else {
        Problem::new(
            span,
            format!("`{last}` is written twice in {}{first}", table_name(parent)),
            format!("keep one `{last}`: a key takes one value"),
        )
    };
    Some(problem)
}

/// A TOML syntax error in the register's words, with what to write instead.
fn syntax(source: &str, message: &str, span: Range<usize>) -> Problem {
    let (line_start, _) = line_at(source, span.start);
    let written = source.get(span.clone()).unwrap_or_default();
    let (description, _) = message.split_once(", expected").unwrap_or((message, ""));
    let quotes = "put text in quotes: `tier = \"read\"`; separate the items of a list with `,`: `[\"a\", \"b\"]`";
    let (message, help) = match description {
        "unclosed table" => (
            "the table header is not closed: `]` is missing".to_owned(),
            "end the header with `]`, e.g. `[actions.\"billing.get_customer\"]`".to_owned(),
        ),
        "unclosed array table" => (
            "the `[[...]]` header is not closed: `]]` is missing".to_owned(),
            "end the header with `]]`".to_owned(),
        ),
        "unclosed array" => (
            "the list is not closed: `]` is missing".to_owned(),
            "end the list with `]`, e.g. `agents = [\"support-bot\"]`".to_owned(),
        ),
        "unclosed inline table" => (
            "the table is not closed: `}` is missing".to_owned(),
            "end it with `}`, e.g. `token = { env = \"REMIT_TOKEN_SUPPORT_BOT\" }`".to_owned(),
        ),
        "string values must be quoted" if written.trim().is_empty() => (
            "a value is missing after `=`".to_owned(),
            "write a value: text in quotes (`\"read\"`), a number, `true` or `false`, a list `[...]` or a table `{ ... }`".to_owned(),
        ),
        "string values must be quoted" => (
            format!("`{}` is not a value: text must be in quotes", written.trim()),
            quotes.to_owned(),
        ),
        "key with no value" => {
            let key = source
                .get(line_start..span.start)
                .unwrap_or_default()
                .trim();
            (
                format!("`{key}` has no value: `=` is missing"),
                "write `key = value`; a key with spaces is written in quotes".to_owned(),
            )
        }
        "invalid basic string" | "invalid multi-line basic string" => (
            "the text is not closed: `\"` is missing".to_owned(),
            "end it with `\"` on the same line, or write text over several lines in `\"\"\"...\"\"\"`"
                .to_owned(),
        ),
        "invalid literal string" | "invalid multi-line literal string" => (
            "the text is not closed: `'` is missing".to_owned(),
            "end it with `'` on the same line, or write text over several lines in `'''...'''`"
                .to_owned(),
        ),
        "missing escaped value" | "invalid escape sequence" | "invalid escape value" => (
            "a backslash in text in double quotes starts an escape, and this one is not one TOML knows".to_owned(),
            "write a backslash as `\\\\`, or put the text in single quotes (`'...'`), where a backslash is itself".to_owned(),
        ),
        "extra `=`" => (
            "one `=` too many: a key is followed by a single `=`".to_owned(),
            "write `key = value`; a comparison such as `==` belongs in a CEL condition, in quotes: `require = \"args.currency == 'EUR'\"`".to_owned(),
        ),
        "unexpected key or value" | "unexpected content" => (
            "unexpected text after the value".to_owned(),
            "write one `key = value` per line; a list is written `[\"a\", \"b\"]`".to_owned(),
        ),
        "extra comma in array" => (
            "two commas in a row in a list".to_owned(),
            "remove one `,`".to_owned(),
        ),
        "missing comma between array elements" => (
            "a `,` is missing between two items of a list".to_owned(),
            "separate the items with `,`, and end the list with `]`: `[\"a\", \"b\"]`".to_owned(),
        ),
        "missing comma between key-value pairs" | "extra assignment between key-value pairs" => (
            "a `,` is missing between two entries of a table".to_owned(),
            "separate the entries with `,`: `{ count = 20, per = \"1h\" }`".to_owned(),
        ),
        _ => (
            format!("this is not valid TOML: {message}"),
            "each line is `key = value`, a `[table]` header or a `# comment`; text is in quotes (see docs/register.md)".to_owned(),
        ),
    };
    Problem::new(span, message, help)
}
