//! From the file as written to a [`Register`]: names resolved, CEL compiled, every problem located.

use super::cel_syntax::{self, text_start};
use super::raw::{self, OneOrMany, RawAction, RawRegister, RawSecret, RawUpstream};
use super::{
    Action, ActionPositions, Agent, Budget, BudgetMeasure, DEFAULT_MAX_SESSIONS_PER_AGENT,
    Diagnostic, Gateway, NamedTool, Pending, Position, Protocol, Register, Secret, Severity, Tier,
    Transport, Upstream,
};
use crate::condition::{Condition, ConditionError};
use crate::ids::{ActionName, AgentId, RegisterVersion, UpstreamName};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The keys remit knows in each block of an action that it parses but does not yet
/// enforce (the shape `docs/register.md` gives them); any other key is an error.
const BLOCK_KEYS: [(&str, &[&str]); 3] = [
    ("approve", &["by", "when", "quorum", "expires"]),
    ("verify", &["probe", "expect", "within"]),
    ("undo", &["tool", "args", "within", "impossible"]),
];

/// Headers remit writes itself on a request to an HTTP upstream: how the request is framed
/// and routed, and what MCP requires. One in an upstream's `headers` would be sent twice or
/// contradict remit's own.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "proxy-connection",
    "content-type",
    "accept",
    "mcp-method",
    "mcp-name",
    "mcp-protocol-version",
    "mcp-session-id",
];

/// Reads an environment variable (injected so tests and `remit check` control it).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Whether missing environment variables are errors (serving) or warnings (checking).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strictness {
    /// `remit serve`: everything must resolve.
    Serve,
    /// `remit check`: report what would fail, as warnings where it depends on the environment.
    Check,
    /// `remit stdio`: as `Serve`, except that agents' tokens are not read. The session's
    /// agent is named on the command line, so a client that launches remit needs no agent's
    /// token in the environment it gives it (and holds none it could leak).
    Local,
}

struct Ctx<'a> {
    source: &'a str,
    diags: Vec<Diagnostic>,
    env: EnvLookup<'a>,
    strictness: Strictness,
    /// Every agent the file names in `[agents.NAME]`, whether or not it compiled: one that
    /// did not has its own error, and is not reported again as unknown where it is used.
    declared_agents: BTreeSet<String>,
    /// Every upstream the file names in `[upstreams.NAME]`, whether or not it compiled.
    declared_upstreams: BTreeSet<String>,
}

impl Ctx<'_> {
    fn at(
        &mut self,
        severity: Severity,
        span: Range<usize>,
        message: String,
        help: Option<String>,
    ) {
        let (line, column) = line_col(self.source, span.start);
        self.diags.push(Diagnostic {
            severity,
            line,
            column,
            message,
            help,
        });
    }

    /// An error: every one says what to write instead.
    fn error(&mut self, span: Range<usize>, message: String, help: String) {
        self.at(Severity::Error, span, message, Some(help));
    }

    /// The line and column of a byte offset.
    fn position(&self, offset: usize) -> Position {
        let (line, column) = line_col(self.source, offset);
        Position { line, column }
    }

    fn secret(&mut self, s: &Spanned<RawSecret>, what: &str) -> Option<Secret> {
        match s.get_ref() {
            RawSecret::Literal(v) => Some(Secret::written(v.clone())),
            RawSecret::Env { env, prefix } => match (self.env)(env) {
                Some(v) => Some(Secret::new(format!(
                    "{}{v}",
                    prefix.as_deref().unwrap_or_default()
                ))),
                None => {
                    let sev = match self.strictness {
                        Strictness::Serve | Strictness::Local => Severity::Error,
                        Strictness::Check => Severity::Warning,
                    };
                    self.at(
                        sev,
                        s.span(),
                        format!("environment variable `{env}` for {what} is not set"),
                        Some(format!("set `{env}` in the environment remit runs in")),
                    );
                    None
                }
            },
        }
    }
}

/// 1-based line and character column of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = source
        .get(line_start..offset)
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

/// The entry `key` of a table in the parse tree.
fn entry<'a, 'i>(table: &'a DeTable<'i>, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(_, v)| v)
}

/// The table of action `name` in the parse tree of the file.
fn action_table<'a, 'i>(tree: &'a DeTable<'i>, name: &str) -> Option<&'a DeTable<'i>> {
    match entry(tree, "actions").map(Spanned::get_ref) {
        Some(DeValue::Table(actions)) => match entry(actions, name).map(Spanned::get_ref) {
            Some(DeValue::Table(action)) => Some(action),
            _ => None,
        },
        _ => None,
    }
}

/// Edit distance, for "did you mean" hints.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            if let Some(slot) = cur.get_mut(j + 1) {
                *slot = sub.min(del).min(ins);
            }
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

/// The closest of `candidates` to `word`, if it is close enough to be a typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = distance(&word.to_lowercase(), &c.to_lowercase());
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    // close, and not as far as a different word of that length would be (`zz` is not `h`)
    let len = word.chars().count();
    best.filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < len.max(c.chars().count()))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

/// Parses a duration such as `500ms`, `30s`, `5m`, `1h`, `7d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = text.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit {
        "ms" => n,
        "s" => n.checked_mul(1_000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// A field of a redacted path: not empty and not padded with spaces (`args.card.` or
/// `args. card` would match no argument, so nothing would be redacted).
fn is_field_name(s: &str) -> bool {
    !s.is_empty() && s.trim() == s
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Compiles a register file. `path` is used for the base folder and in messages.
///
/// Returns the register when there is no error, and every diagnostic (errors and warnings) either way.
pub fn compile(
    source: &str,
    path: &Path,
    env: EnvLookup<'_>,
    strictness: Strictness,
) -> (Option<Register>, Vec<Diagnostic>) {
    let mut cx = Ctx {
        source,
        diags: Vec::new(),
        env,
        strictness,
        declared_agents: BTreeSet::new(),
        declared_upstreams: BTreeSet::new(),
    };
    let mut problems = Vec::new();
    let tree = raw::parse(source, &mut problems);
    let raw = tree
        .as_ref()
        .map(|tree| raw::read(tree, &mut problems))
        .unwrap_or_default();
    for p in problems {
        cx.error(p.span, p.message, p.help);
    }
    let Some(tree) = tree else {
        return (None, cx.diags);
    };
    cx.declared_agents = raw.agents.keys().map(|k| k.get_ref().clone()).collect();
    cx.declared_upstreams = raw.upstreams.keys().map(|k| k.get_ref().clone()).collect();
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new(".").to_path_buf());
    let version = {
        let digest = Sha256::digest(source.as_bytes());
        RegisterVersion::new(format!(
            "sha256:{}",
            hex::encode(digest.get(..6).unwrap_or(&[]))
        ))
    };

    let gateway = compile_gateway(&mut cx, &raw, &base_dir);
    let agents = compile_agents(&mut cx, &raw);
    let mut approvers = BTreeMap::new();
    for (name, members) in &raw.approvers {
        let list: Vec<String> = members
            .get_ref()
            .iter()
            .map(|m| m.get_ref().clone())
            .collect();
        if list.is_empty() && !raw.unreadable_approvers.contains(name.get_ref()) {
            cx.error(
                members.span(),
                format!("approver group `{}` has no members", name.get_ref()),
                "list at least one approver: `finance = [\"ana\", \"bo\"]`".to_owned(),
            );
        }
        approvers.insert(name.get_ref().clone(), list);
    }
    let upstreams = compile_upstreams(&mut cx, &raw, &base_dir);
    // the blocks remit does not yet enforce are kept as plain values, which have lost where
    // their keys are written: the file's parse tree still has it
    let tree = Some(&tree);
    let mut actions = BTreeMap::new();
    let mut exposed: HashMap<String, ActionName> = HashMap::new();
    for (name, action) in &raw.actions {
        if let Some(a) =
            compile_action(&mut cx, name, action, &agents, &upstreams, &approvers, tree)
        {
            if let Some(other) = exposed.get(&a.exposed) {
                cx.error(
                    name.span(),
                    format!(
                        "action `{}` is exposed as `{}`, the same name as `{other}`",
                        a.name, a.exposed
                    ),
                    "keep `namespace = true` on one of the upstreams".to_owned(),
                );
                continue;
            }
            exposed.insert(a.exposed.clone(), a.name.clone());
            actions.insert(a.name.clone(), a);
        }
    }
    if raw.actions.is_empty() {
        cx.at(
            Severity::Warning,
            0..0,
            "the register lists no actions: every call will be refused".to_owned(),
            Some("add `[actions.\"UPSTREAM.TOOL\"]` with `agents` and `tier`".to_owned()),
        );
    }

    let failed = cx.diags.iter().any(|d| d.severity == Severity::Error);
    let mut diags = cx.diags;
    let register = match (failed, gateway) {
        (false, Some(gateway)) => {
            let register = Register {
                version,
                gateway,
                agents,
                approvers,
                upstreams,
                actions,
                exposed,
            };
            diags.extend(super::findings::risks(&register, &raw, source));
            Some(register)
        }
        _ => None,
    };
    diags.sort_by_key(|d| (d.line, d.column, d.severity));
    (register, diags)
}

fn compile_gateway(cx: &mut Ctx<'_>, raw: &RawRegister, base_dir: &Path) -> Option<Gateway> {
    let g = raw.gateway.as_ref().map(Spanned::get_ref);
    let listen = g
        .and_then(|g| g.listen.as_ref())
        .map(|s| s.get_ref().clone())
        .unwrap_or_else(|| "127.0.0.1:8470".to_owned());
    if let Some(l) = g.and_then(|g| g.listen.as_ref())
        && l.get_ref().parse::<std::net::SocketAddr>().is_err()
    {
        cx.error(
            l.span(),
            format!("`{}` is not an address to listen on", l.get_ref()),
            "write `host:port`, for example `127.0.0.1:8470`".to_owned(),
        );
    }
    let store = match g.and_then(|g| g.store.as_ref()) {
        Some(s) => {
            let secret = cx.secret(s, "the store URL")?;
            let url = secret.expose();
            if !(url.starts_with("sqlite://")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                cx.error(
                    s.span(),
                    "the store must be a `sqlite://` or `postgres://` URL".to_owned(),
                    "for example `store = \"sqlite://remit.db\"`".to_owned(),
                );
            }
            secret
        }
        None => Secret::new("sqlite://remit.db"),
    };
    if let Some(k) = g.and_then(|g| g.audit_key.as_ref()) {
        let text = k.get_ref();
        if text.trim().is_empty() {
            cx.error(
                k.span(),
                "`audit_key` is empty: it names the file of the audit signing key".to_owned(),
                "name a file (relative to the register), e.g. `audit_key = \"remit-audit.key\"`, or remove the line for that default".to_owned(),
            );
        } else if text.ends_with(['/', '\\']) || text.trim() != text.as_str() {
            cx.error(
                k.span(),
                format!("`audit_key` `{text}` is not a file name"),
                "name the key file itself, without spaces around it, e.g. `audit_key = \"keys/remit-audit.key\"`".to_owned(),
            );
        } else if let Some(ext) = Path::new(text)
            .extension()
            .and_then(|e| e.to_str())
            .filter(|e| matches!(*e, "pub" | "checkpoint"))
        {
            // remit writes the public key to KEY.pub and the latest checkpoint to
            // KEY.checkpoint: a key named so would be written over, and lost for good
            cx.error(
                k.span(),
                format!("`audit_key` `{text}` ends in `.{ext}`, the name remit gives the key's own `.{ext}` file: the signing key would be overwritten"),
                "give the key another extension, e.g. `audit_key = \"remit-audit.key\"` (remit writes `remit-audit.pub` and `remit-audit.checkpoint` beside it)".to_owned(),
            );
        }
    }
    let audit_key = base_dir.join(
        g.and_then(|g| g.audit_key.as_ref())
            .map(|s| s.get_ref().as_str())
            .unwrap_or("remit-audit.key"),
    );
    let audit_origin = g
        .and_then(|g| g.audit_origin.as_ref())
        .map(|s| s.get_ref().clone())
        .unwrap_or_else(|| "remit/audit".to_owned());
    if audit_origin.is_empty() || audit_origin.contains(['\n', ' ', '+']) {
        cx.error(
            g.and_then(|g| g.audit_origin.as_ref())
                .map(Spanned::span)
                .unwrap_or(0..0),
            "`audit_origin` must be one word without spaces or `+`".to_owned(),
            "for example `audit_origin = \"remit.example.com/support\"`".to_owned(),
        );
    }
    let max_request_bytes = g
        .and_then(|g| g.max_request_bytes.as_ref())
        .map(|s| *s.get_ref())
        .unwrap_or(DEFAULT_MAX_REQUEST_BYTES);
    if let Some(n) = g
        .and_then(|g| g.max_request_bytes.as_ref())
        .filter(|n| *n.get_ref() < MIN_REQUEST_BYTES)
    {
        cx.error(
            n.span(),
            format!(
                "`max_request_bytes` must be at least {MIN_REQUEST_BYTES}, not {}: below it hardly any request fits (an MCP `initialize` alone is a few hundred bytes)",
                n.get_ref()
            ),
            format!(
                "write the largest request body to accept, in bytes; the default is `max_request_bytes = {DEFAULT_MAX_REQUEST_BYTES}` (1 MiB)"
            ),
        );
    }
    let max_sessions = g.and_then(|g| g.max_sessions_per_agent.as_ref());
    if let Some(n) = max_sessions.filter(|n| *n.get_ref() == 0) {
        cx.error(
            n.span(),
            "`max_sessions_per_agent` must be at least 1".to_owned(),
            format!(
                "the default is {DEFAULT_MAX_SESSIONS_PER_AGENT}; an agent that needs no session uses the 2026-07-28 stateless calls anyway"
            ),
        );
    }
    let max_sessions_per_agent = max_sessions.map_or(DEFAULT_MAX_SESSIONS_PER_AGENT, |n| {
        usize::try_from(*n.get_ref()).unwrap_or(usize::MAX).max(1)
    });
    for h in g.map(|g| g.allowed_hosts.as_slice()).unwrap_or_default() {
        if let Err((message, help)) = check_allowed_host(h.get_ref()) {
            cx.error(h.span(), message, help);
        }
    }
    let allowed_hosts = g
        .map(|g| {
            g.allowed_hosts
                .iter()
                .map(|h| h.get_ref().clone())
                .collect()
        })
        .unwrap_or_default();
    Some(Gateway {
        listen,
        store,
        audit_key,
        audit_origin,
        max_request_bytes,
        max_sessions_per_agent,
        allowed_hosts,
        base_dir: base_dir.to_path_buf(),
    })
}

/// The largest request body accepted unless `[gateway]` says otherwise (1 MiB).
const DEFAULT_MAX_REQUEST_BYTES: u64 = 1 << 20;
/// The smallest `max_request_bytes`: a `tools/call` with no arguments is about 100 bytes
/// and an MCP `initialize` a few hundred, so a limit below it refuses nearly everything.
const MIN_REQUEST_BYTES: u64 = 256;

/// An entry of `allowed_hosts`: a host name, an IP address or either with `:port`, as the
/// `Host` header of a request names it. Otherwise the message and what to write instead.
fn check_allowed_host(entry: &str) -> Result<(), (String, String)> {
    let example =
        "e.g. `allowed_hosts = [\"remit.internal.example\", \"remit.internal.example:8470\"]`";
    if entry.trim().is_empty() {
        return Err((
            "an entry of `allowed_hosts` is empty".to_owned(),
            format!("remove it, or write a host name agents use to reach remit, {example}"),
        ));
    }
    if let Some((_, rest)) = entry.split_once("://") {
        let host = rest
            .split(['/', '?', '#'])
            .next()
            .unwrap_or_default()
            .rsplit('@')
            .next()
            .unwrap_or_default();
        return Err((
            format!("`{entry}` in `allowed_hosts` is a URL, not a host name"),
            if host.is_empty() {
                format!("write the host alone, {example}")
            } else {
                format!("write the host alone: `\"{host}\"`")
            },
        ));
    }
    if entry.chars().any(char::is_whitespace) {
        let words: Vec<String> = entry.split_whitespace().map(|w| format!("{w:?}")).collect();
        return Err((
            format!("`{entry}` in `allowed_hosts` is not a host name: it has a space"),
            format!(
                "write one host name per entry, without spaces: `[{}]`",
                words.join(", ")
            ),
        ));
    }
    if entry.contains('*') {
        return Err((
            format!("`{entry}` in `allowed_hosts` is a pattern: only exact host names are matched"),
            format!("list each host name agents use, {example}"),
        ));
    }
    let bad = || {
        (
            format!(
                "`{entry}` in `allowed_hosts` is not a host name, an IP address or `host:port`"
            ),
            format!("write the host as agents put it in the `Host` header, {example}"),
        )
    };
    if entry.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok(());
    }
    // `[::1]:8470`, `[::1]`, `host:8470`, `host`
    let (host, port) = match entry.strip_prefix('[') {
        Some(rest) => {
            let (ip, after) = rest.split_once(']').ok_or_else(bad)?;
            ip.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            if after.is_empty() {
                return Ok(());
            }
            (None, Some(after.strip_prefix(':').ok_or_else(bad)?))
        }
        None => match entry.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(entry), None),
        },
    };
    if let Some(p) = port
        && p.parse::<u16>().ok().is_none_or(|p| p == 0)
    {
        return Err((
            format!("`{entry}` in `allowed_hosts` has no valid port: `{p}`"),
            format!(
                "write `host:port` with a port from 1 to 65535, or the host alone for any port, {example}"
            ),
        ));
    }
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if let Some(host) = host
        && (host.len() > 253 || !host.strip_suffix('.').unwrap_or(host).split('.').all(label))
    {
        return Err(bad());
    }
    Ok(())
}

fn compile_agents(cx: &mut Ctx<'_>, raw: &RawRegister) -> BTreeMap<AgentId, Agent> {
    let mut agents = BTreeMap::new();
    // a token two agents share authenticates as one of them only: whoever holds it for the
    // other acts with the first one's grants. Found by the variable both read (without the
    // secrets, as in CI) and by the hash (set, or written as `token_sha256`).
    let mut variables: HashMap<String, String> = Default::default();
    let mut hashes: HashMap<[u8; 32], String> = Default::default();
    // in the file's order: a shared token is reported at its second writing
    let mut in_order: Vec<_> = raw.agents.iter().collect();
    in_order.sort_by_key(|(name, _)| name.span().start);
    for (name, agent) in in_order {
        if !valid_name(name.get_ref()) || name.get_ref().contains('.') {
            cx.error(
                name.span(),
                format!(
                    "agent name `{}` may use only letters, digits, `-` and `_`",
                    name.get_ref()
                ),
                format!("rename it, e.g. `[agents.{}]`", tidy_name(name.get_ref())),
            );
            continue;
        }
        let a = agent.get_ref();
        let mut token_sha256 = None;
        if let Some(token) = &a.token {
            match token.get_ref() {
                RawSecret::Literal(_) => cx.error(
                    token.span(),
                    format!("the token of agent `{}` is written in the register", name.get_ref()),
                    format!(
                        "keep it in the environment: `token = {{ env = \"REMIT_TOKEN_{}\" }}`, or write its hash as `token_sha256`",
                        name.get_ref().to_uppercase().replace('-', "_")
                    ),
                ),
                // no bearer token authenticates anyone in a local session
                RawSecret::Env { .. } if cx.strictness == Strictness::Local => {}
                RawSecret::Env { .. } => {
                    if let Some(secret) = cx.secret(token, &format!("agent `{}`", name.get_ref())) {
                        if secret.expose().len() < 16 {
                            cx.error(
                                token.span(),
                                format!("the token of agent `{}` is shorter than 16 characters", name.get_ref()),
                                "use a long random token, e.g. `openssl rand -hex 32`".to_owned(),
                            );
                        }
                        token_sha256 = Some(Sha256::digest(secret.expose().as_bytes()).into());
                    }
                }
            }
        }
        if let Some(h) = &a.token_sha256 {
            match hex::decode(h.get_ref())
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
            {
                // both written: an error whether or not the token's variable is set, so
                // that a check without the secrets (CI) finds it too
                Some(_) if a.token.is_some() || a.unreadable.contains("token") => cx.error(
                    h.span(),
                    format!(
                        "agent `{}` has both `token` and `token_sha256`: give one",
                        name.get_ref()
                    ),
                    format!(
                        "keep `token = {{ env = \"{}\" }}` to read the token from the environment, or `token_sha256` to write only its hash; remove the other",
                        match a.token.as_ref().map(Spanned::get_ref) {
                            Some(RawSecret::Env { env, .. }) => env.clone(),
                            _ => format!("REMIT_TOKEN_{}", name.get_ref().to_uppercase().replace('-', "_")),
                        }
                    ),
                ),
                Some(bytes) => token_sha256 = Some(bytes),
                None => cx.error(
                    h.span(),
                    "`token_sha256` must be 64 hex digits".to_owned(),
                    "compute it with `printf %s \"$TOKEN\" | sha256sum`".to_owned(),
                ),
            }
        }
        let at = a
            .token
            .as_ref()
            .map(Spanned::span)
            .or_else(|| a.token_sha256.as_ref().map(Spanned::span))
            .unwrap_or_else(|| name.span());
        let shared = match a.token.as_ref().map(Spanned::get_ref) {
            Some(RawSecret::Env { env, .. }) => variables
                .insert(env.clone(), name.get_ref().clone())
                .map(|other| (other, format!("both read `{env}`"))),
            _ => None,
        }
        .or_else(|| {
            hashes
                .insert(token_sha256?, name.get_ref().clone())
                .map(|other| (other, "their tokens are the same".to_owned()))
        });
        if let Some((other, how)) = shared {
            cx.error(
                at,
                format!(
                    "agents `{other}` and `{}` share one token ({how}): it would authenticate as one of them only",
                    name.get_ref()
                ),
                "give each agent a token of its own, e.g. `openssl rand -hex 32`, in a variable of its own".to_owned(),
            );
        }
        let id = AgentId::new(name.get_ref().clone());
        agents.insert(
            id.clone(),
            Agent {
                id,
                owner: a.owner.as_ref().map(|s| s.get_ref().clone()),
                description: a.description.as_ref().map(|s| s.get_ref().clone()),
                token_sha256,
            },
        );
    }
    agents
}

/// `name` with what a name may not hold replaced by `-`, for a hint.
fn tidy_name(name: &str) -> String {
    let tidy: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let tidy = tidy.trim_matches('-');
    if tidy.is_empty() {
        "NAME".to_owned()
    } else {
        tidy.chars().take(64).collect()
    }
}

fn compile_upstreams(
    cx: &mut Ctx<'_>,
    raw: &RawRegister,
    base_dir: &Path,
) -> BTreeMap<UpstreamName, Upstream> {
    let mut out = BTreeMap::new();
    for (name, up) in &raw.upstreams {
        if !valid_name(name.get_ref()) || name.get_ref().contains('.') {
            cx.error(
                name.span(),
                format!(
                    "upstream name `{}` may use only letters, digits, `-` and `_`",
                    name.get_ref()
                ),
                format!(
                    "rename it, e.g. `[upstreams.{}]`, and its actions with it",
                    tidy_name(name.get_ref())
                ),
            );
            continue;
        }
        if let Some(u) = compile_upstream(cx, name, up, base_dir) {
            out.insert(u.name.clone(), u);
        }
    }
    out
}

fn compile_upstream(
    cx: &mut Ctx<'_>,
    name: &Spanned<String>,
    up: &Spanned<RawUpstream>,
    base_dir: &Path,
) -> Option<Upstream> {
    let u = up.get_ref();
    // a `command` or `url` that could not be read is reported: it is not also missing
    if ["*", "command", "url"]
        .iter()
        .any(|k| u.unreadable.contains(k))
    {
        return None;
    }
    let transport = match (&u.command, &u.url) {
        (Some(cmd), None) => {
            let command: Vec<String> = cmd.get_ref().iter().map(|s| s.get_ref().clone()).collect();
            if command.first().is_none_or(String::is_empty) {
                cx.error(cmd.span(), "`command` is empty".to_owned(), "write the program and its arguments: `command = [\"billing-mcp\", \"--db\", \"billing.db\"]`".to_owned());
                return None;
            }
            let mut env = Vec::new();
            for (k, v) in &u.env {
                if let Some(s) = cx.secret(v, &format!("upstream `{}`", name.get_ref())) {
                    env.push((k.get_ref().clone(), s));
                }
            }
            if let Some(first) = u.headers.keys().map(Spanned::span).min_by_key(|s| s.start) {
                cx.error(
                    first,
                    "`headers` apply to `url` upstreams only".to_owned(),
                    "give a stdio upstream its credentials in `env`".to_owned(),
                );
            }
            let cwd = u
                .cwd
                .as_ref()
                .map(|c| base_dir.join(c.get_ref()))
                .unwrap_or_else(|| base_dir.to_path_buf());
            Transport::Stdio { command, env, cwd }
        }
        (None, Some(url)) => {
            let url_secret = cx.secret(url, &format!("upstream `{}`", name.get_ref()))?;
            if !(url_secret.expose().starts_with("http://")
                || url_secret.expose().starts_with("https://"))
            {
                let shown = url_secret.expose();
                let rest = shown.split_once("://").map_or(shown, |(_, rest)| rest);
                // never a password written in it into the hint
                let rest = match rest.split_once('@') {
                    Some((user, host)) if !user.contains('/') => host,
                    _ => rest,
                };
                let help = match url.get_ref() {
                    RawSecret::Env { env, .. } => format!(
                        "set `{env}` to the server's Streamable HTTP endpoint, e.g. `https://crm.internal.example/mcp`"
                    ),
                    RawSecret::Literal(_) if rest.is_empty() => {
                        "write the server's Streamable HTTP endpoint, e.g. `url = \"https://crm.internal.example/mcp\"`".to_owned()
                    }
                    // the rest of what was written, from a literal in the file (no secret)
                    RawSecret::Literal(_) => format!(
                        "write `url = \"https://{rest}\"` (or `http://` on a trusted network); a stdio server is given as `command`"
                    ),
                };
                cx.error(
                    url.span(),
                    "`url` must start with `http://` or `https://`".to_owned(),
                    help,
                );
            }
            let mut headers = Vec::new();
            for (k, v) in &u.headers {
                if RESERVED_HEADERS
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(k.get_ref().trim()))
                {
                    cx.error(
                        k.span(),
                        format!(
                            "header `{}` is set by remit on every request to an upstream",
                            k.get_ref()
                        ),

                            "remove it; `headers` are for credentials and other headers the upstream asks for"
                                .to_owned(),
                    );
                    continue;
                }
                if let Some(s) = cx.secret(v, &format!("upstream `{}`", name.get_ref())) {
                    headers.push((k.get_ref().clone(), s));
                }
            }
            let env_or_cwd = u
                .env
                .keys()
                .map(Spanned::span)
                .chain(u.cwd.as_ref().map(Spanned::span))
                .min_by_key(|s| s.start);
            if let Some(first) = env_or_cwd {
                cx.error(
                    first,
                    "`env` and `cwd` apply to `command` upstreams only".to_owned(),
                    "give an HTTP upstream its credentials in `headers`".to_owned(),
                );
            }
            Transport::Http {
                url: url_secret,
                headers,
            }
        }
        (Some(_), Some(url)) => {
            cx.error(
                url.span(),
                format!("upstream `{}` has both `command` and `url`", name.get_ref()),
                "keep one: `command` for a stdio server, `url` for Streamable HTTP".to_owned(),
            );
            return None;
        }
        (None, None) => {
            cx.error(
                name.span(),
                format!(
                    "upstream `{}` has neither `command` nor `url`",
                    name.get_ref()
                ),
                "add `command = [\"server\", \"--flag\"]` or `url = \"http://host/mcp\"`"
                    .to_owned(),
            );
            return None;
        }
    };
    let protocol = match u.protocol.as_ref().map(|p| p.get_ref().as_str()) {
        None | Some("auto") => Protocol::Auto,
        Some("2025-11-25") => Protocol::Legacy,
        Some("2026-07-28") => Protocol::Modern,
        Some(other) => {
            let span = u.protocol.as_ref().map(Spanned::span).unwrap_or(0..0);
            cx.error(
                span,
                format!("unknown protocol `{other}`"),
                "write `auto`, `2025-11-25` or `2026-07-28`".to_owned(),
            );
            Protocol::Auto
        }
    };
    let timeout = match &u.timeout {
        None => Duration::from_secs(30),
        Some(t) => parse_duration(t.get_ref()).unwrap_or_else(|| {
            cx.error(
                t.span(),
                format!("`{}` is not a duration", t.get_ref()),
                "write a number and a unit: `500ms`, `30s`, `5m`".to_owned(),
            );
            Duration::from_secs(30)
        }),
    };
    Some(Upstream {
        name: UpstreamName::new(name.get_ref().clone()),
        transport,
        protocol,
        namespace: u.namespace.as_ref().is_none_or(|n| *n.get_ref()),
        timeout,
        at: cx.position(name.span().start),
    })
}

fn pending(cx: &Ctx<'_>, v: Option<&Spanned<toml::Value>>, key: &str) -> Option<Pending> {
    v.map(|v| Pending {
        text: format!("{key} = {}", v.get_ref()),
        at: cx.position(v.span().start),
    })
}

/// The keys of the blocks remit does not yet enforce, checked against those it knows: an
/// unknown one is an error (a typo must not pass unseen), and a `delay` written as a table
/// (it is a duration) is reported with the keys remit does not know in it. The approver
/// group `approve.by` names must exist.
fn check_blocks(
    cx: &mut Ctx<'_>,
    name: &Spanned<String>,
    a: &RawAction,
    table: Option<&DeTable<'_>>,
    approvers: &BTreeMap<String, Vec<String>>,
    upstreams: &BTreeMap<UpstreamName, Upstream>,
) -> Vec<NamedTool> {
    for (block, known) in BLOCK_KEYS {
        let Some(DeValue::Table(keys)) = table.and_then(|t| entry(t, block)).map(Spanned::get_ref)
        else {
            continue;
        };
        for (key, _) in keys.iter() {
            let key_text = key.get_ref().as_ref();
            if known.contains(&key_text) {
                continue;
            }
            let expected: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
            cx.error(
                key.span(),
                format!(
                    "unknown field `{key_text}` in `{block}`, expected one of {}",
                    expected.join(", ")
                ),
                did_you_mean(key_text, known.iter().copied()).unwrap_or_else(|| {
                    format!("remove `{key_text}`; see docs/register.md for the keys of `{block}`")
                }),
            );
        }
    }
    if let Some(delay) = table.and_then(|t| entry(t, "delay"))
        && let DeValue::Table(keys) = delay.get_ref()
    {
        let found: Vec<String> = keys
            .iter()
            .map(|(k, _)| format!("`{}`", k.get_ref()))
            .collect();
        cx.at(
            Severity::Warning,
            delay.span(),
            format!(
                "`delay` on `{}` is written as a table, with keys remit does not know yet: {}",
                name.get_ref(),
                if found.is_empty() {
                    "none".to_owned()
                } else {
                    found.join(", ")
                }
            ),
            Some("write the delay as a duration: `delay = \"60s\"`".to_owned()),
        );
    }
    let named = check_block_values(cx, name, a, table, approvers, upstreams);
    if let Some(approve) = &a.approve
        && let Some(by) = approve.get_ref().get("by").and_then(toml::Value::as_str)
        && !approvers.contains_key(by)
    {
        let hint = did_you_mean(by, approvers.keys().map(String::as_str));
        let span = match table
            .and_then(|t| entry(t, "approve"))
            .map(Spanned::get_ref)
        {
            Some(DeValue::Table(keys)) => entry(keys, "by").map(Spanned::span),
            _ => None,
        };
        cx.error(
            span.unwrap_or_else(|| approve.span()),
            format!("approval names unknown approver group `{by}`"),
            hint.unwrap_or_else(|| format!("add `[approvers]` with `{by} = [\"name\"]`")),
        );
    }
    named
}

/// What each block must look like, for the hint when it is written as a plain value.
const BLOCK_SHAPES: [(&str, &str); 3] = [
    (
        "approve",
        "approve = { by = \"finance\", when = \"args.amount > 100\", quorum = 1, expires = \"4h\" }",
    ),
    (
        "verify",
        "verify = { probe = { tool = \"billing.get_refund\" }, expect = \"probe.status == 'issued'\", within = \"5s\" }",
    ),
    (
        "undo",
        "undo = { tool = \"billing.cancel_refund\", within = \"30m\" }` or `undo = { impossible = \"why\" }",
    ),
];

/// The variables a `require` condition and a budget's `sum` are evaluated with
/// ([`crate::condition::Bindings::for_args`]), and how the hint says so.
const REQUIRE_SCOPE: (&[&str], &str) = (&["args"], "`args` (the call's arguments)");
/// The variables a CEL entry of a block may read, and how the hint says so.
const APPROVE_WHEN_SCOPE: (&[&str], &str) = (&["args"], "`args` (the call's arguments)");
/// The variables an argument of `verify.probe` or `undo` may read: the call is over.
const BLOCK_ARGS_SCOPE: (&[&str], &str) = (
    &["args", "result"],
    "`args` (the call's arguments) and `result` (the upstream's answer)",
);
/// What `verify.probe` looks like, for the hint.
const PROBE_SHAPE: &str =
    "probe = { tool = \"billing.get_refund\", args = { id = \"result.refund_id\" } }";
const VERIFY_EXPECT_SCOPE: (&[&str], &str) = (
    &["args", "result", "probe"],
    "`args` (the call's arguments), `result` (the upstream's answer) and `probe` (the answer of `verify.probe`)",
);

/// The values in the blocks remit does not yet enforce, checked now so that a mistake is
/// caught before they are: durations as a budget's `per`, `approve.quorum` a positive
/// integer no larger than the group `approve.by` names, `approve.when` and `verify.expect`
/// CEL over the variables they will see,
/// `undo.impossible` a reason, each block a table. Each error is at the value.
fn check_block_values(
    cx: &mut Ctx<'_>,
    name: &Spanned<String>,
    a: &RawAction,
    table: Option<&DeTable<'_>>,
    approvers: &BTreeMap<String, Vec<String>>,
    upstreams: &BTreeMap<UpstreamName, Upstream>,
) -> Vec<NamedTool> {
    let mut named = Vec::new();
    let blocks = [
        ("approve", &a.approve),
        ("verify", &a.verify),
        ("undo", &a.undo),
    ];
    for ((block, value), (_, shape)) in blocks.into_iter().zip(BLOCK_SHAPES) {
        let Some(value) = value else { continue };
        let Some(keys) = value.get_ref().as_table() else {
            cx.error(
                value.span(),
                format!(
                    "`{block}` on `{}` is `{}`, not a table of keys",
                    name.get_ref(),
                    value.get_ref()
                ),
                format!("write it as a table: `{shape}`"),
            );
            continue;
        };
        // where the value of a key is written: the parse tree has it, the block is the fallback
        let block_tree = match table.and_then(|t| entry(t, block)).map(Spanned::get_ref) {
            Some(DeValue::Table(t)) => Some(t),
            _ => None,
        };
        let span_of = |key: &str| {
            block_tree
                .and_then(|t| entry(t, key))
                .map(Spanned::span)
                .unwrap_or_else(|| value.span())
        };
        let (duration, cel) = match block {
            "approve" => ("expires", Some(("when", APPROVE_WHEN_SCOPE))),
            "verify" => ("within", Some(("expect", VERIFY_EXPECT_SCOPE))),
            _ => ("within", None),
        };
        if let Some(v) = keys.get(duration) {
            check_duration(cx, &format!("{block}.{duration}"), v, span_of(duration));
        }
        if let Some((key, (scope, said))) = cel
            && let Some(v) = keys.get(key)
        {
            check_cel(cx, &format!("{block}.{key}"), v, span_of(key), scope, said);
        }
        if block == "approve"
            && let Some(q) = keys.get("quorum")
            && q.as_integer().is_none_or(|n| n < 1)
        {
            cx.error(
                span_of("quorum"),
                format!("`approve.quorum` must be a positive integer, not `{q}`"),
                "write how many approvers must approve, e.g. `quorum = 2`".to_owned(),
            );
        }
        // a quorum the group cannot reach: the action could never be approved (an unknown
        // group, or one with no members, is reported on its own)
        if block == "approve"
            && let Some(q) = keys.get("quorum").and_then(toml::Value::as_integer)
            && let Some(by) = keys.get("by").and_then(toml::Value::as_str)
            && let Some(members) = approvers.get(by)
            && !members.is_empty()
        {
            let distinct: BTreeSet<&str> = members.iter().map(String::as_str).collect();
            let size = distinct.len();
            if usize::try_from(q).is_ok_and(|q| q > size) {
                let people = if size == 1 { "approver" } else { "approvers" };
                cx.error(
                    span_of("quorum"),
                    format!(
                        "`approve.quorum` is {q}, but group `{by}` has {size} {people}: no call of `{}` could ever be approved",
                        name.get_ref()
                    ),
                    format!(
                        "lower it to at most `quorum = {size}`, or add approvers to `{by}` in `[approvers]`"
                    ),
                );
            }
        }
        if block == "undo"
            && let Some(why) = keys.get("impossible")
            && why.as_str().is_none_or(|s| s.trim().is_empty())
        {
            cx.error(
                span_of("impossible"),
                format!("`undo.impossible` must say why the call cannot be undone, not `{why}`"),

                    "write the reason as text, e.g. `impossible = \"the wire transfer has left the bank\"`"
                        .to_owned(),
            );
        }
        check_block_tools(
            cx,
            block,
            keys,
            block_tree,
            value.span(),
            upstreams,
            &mut named,
        );
    }
    if let Some(delay) = &a.delay
        && !delay.get_ref().is_table()
    {
        check_duration(cx, "delay", delay.get_ref(), delay.span());
    }
    named
}

/// The table at `path` inside `tree`, in the parse tree.
fn subtable<'a, 'i>(tree: Option<&'a DeTable<'i>>, path: &[&str]) -> Option<&'a DeTable<'i>> {
    let mut at = tree?;
    for key in path {
        match entry(at, key).map(Spanned::get_ref) {
            Some(DeValue::Table(t)) => at = t,
            _ => return None,
        }
    }
    Some(at)
}

/// `verify.probe` and `undo`'s `tool` and `args`: each tool `UPSTREAM.TOOL` of a declared
/// upstream (kept in `named` for checking against its tool list), each argument CEL over
/// `args` and `result`, the probe a table of `tool` and `args`. Each error at the value.
fn check_block_tools(
    cx: &mut Ctx<'_>,
    block: &str,
    keys: &toml::Table,
    block_tree: Option<&DeTable<'_>>,
    fallback: Range<usize>,
    upstreams: &BTreeMap<UpstreamName, Upstream>,
    named: &mut Vec<NamedTool>,
) {
    let span_in = |tree: Option<&DeTable<'_>>, key: &str, or: Range<usize>| {
        tree.and_then(|t| entry(t, key))
            .map(Spanned::span)
            .unwrap_or(or)
    };
    let (keys, tree, fallback, tool_key, args_key) = match block {
        "undo" => (keys, block_tree, fallback, "undo.tool", "undo.args"),
        "verify" => {
            let Some(probe) = keys.get("probe") else {
                return;
            };
            let at = span_in(block_tree, "probe", fallback);
            let Some(probe_keys) = probe.as_table() else {
                cx.error(
                    at,
                    format!("`verify.probe` is `{probe}`, not a table of keys"),
                    format!("write the read to make as a table: `{PROBE_SHAPE}`"),
                );
                return;
            };
            let tree = subtable(block_tree, &["probe"]);
            for (key, _) in tree
                .map(|t| t.iter().collect::<Vec<_>>())
                .unwrap_or_default()
            {
                let key_text = key.get_ref().as_ref();
                if ["tool", "args"].contains(&key_text) {
                    continue;
                }
                cx.error(
                    key.span(),
                    format!("unknown key `{key_text}` in `verify.probe`"),
                    did_you_mean(key_text, ["tool", "args"])
                        .unwrap_or_else(|| "its keys are `tool` and `args`".to_owned()),
                );
            }
            if !probe_keys.contains_key("tool") {
                cx.error(
                    at.clone(),
                    "`verify.probe` names no `tool`".to_owned(),
                    format!("name the read to make: `{PROBE_SHAPE}`"),
                );
            }
            (
                probe_keys,
                tree,
                at,
                "verify.probe.tool",
                "verify.probe.args",
            )
        }
        _ => return,
    };
    if let Some(v) = keys.get("tool") {
        let at = span_in(tree, "tool", fallback.clone());
        named.extend(check_named_tool(cx, tool_key, v, at, upstreams));
    }
    if let Some(v) = keys.get("args") {
        let at = span_in(tree, "args", fallback);
        let (scope, said) = BLOCK_ARGS_SCOPE;
        let Some(args) = v.as_table() else {
            cx.error(
                at,
                format!("`{args_key}` is `{v}`, not a table of arguments"),
                format!(
                    "write each argument as CEL over {said}: `args = {{ id = \"result.refund_id\" }}`"
                ),
            );
            return;
        };
        let args_tree = subtable(tree, &["args"]);
        for (k, value) in args {
            let span = span_in(args_tree, k, at.clone());
            check_cel(cx, &format!("{args_key}.{k}"), value, span, scope, said);
        }
    }
}

/// A tool a block names: `UPSTREAM.TOOL` with an upstream the register declares.
fn check_named_tool(
    cx: &mut Ctx<'_>,
    key: &'static str,
    v: &toml::Value,
    span: Range<usize>,
    upstreams: &BTreeMap<UpstreamName, Upstream>,
) -> Option<NamedTool> {
    let example = "`tool = \"billing.cancel_refund\"`";
    let Some(text) = v.as_str() else {
        cx.error(
            span,
            format!("`{key}` is `{v}`, not a tool name"),
            format!("write it as text, `UPSTREAM.TOOL`: {example}"),
        );
        return None;
    };
    let Some((up, tool)) = text
        .split_once('.')
        .filter(|(up, tool)| !up.is_empty() && !tool.is_empty())
    else {
        cx.error(
            span,
            format!("`{key}` `{text}` does not name its upstream"),
            format!(
                "write it as `UPSTREAM.TOOL`, for example `billing.{}`",
                text.trim_matches('.')
            ),
        );
        return None;
    };
    let upstream = UpstreamName::new(up);
    // declared, with a mistake of its own that is reported at it
    if !upstreams.contains_key(&upstream) && cx.declared_upstreams.contains(up) {
        return None;
    }
    if !upstreams.contains_key(&upstream) {
        let hint = did_you_mean(up, upstreams.keys().map(UpstreamName::as_str));
        cx.error(
            span,
            format!("`{key}` `{text}` names unknown upstream `{up}`"),
            hint.unwrap_or_else(|| {
                format!("name a tool of a declared upstream, or add `[upstreams.{up}]`")
            }),
        );
        return None;
    }
    Some(NamedTool {
        key,
        upstream,
        tool: tool.to_owned(),
        at: cx.position(span.start),
    })
}

/// A duration in a block: the syntax of a budget's `per`.
fn check_duration(cx: &mut Ctx<'_>, what: &str, v: &toml::Value, span: Range<usize>) {
    if v.as_str().and_then(parse_duration).is_none() {
        cx.error(
            span,
            format!("`{what}` is `{v}`, not a duration"),
            format!(
                "write a number and a unit (`ms`, `s`, `m`, `h`, `d`) as text: `{} = \"30m\"`",
                what.rsplit('.').next().unwrap_or(what)
            ),
        );
    }
}

/// A CEL expression in a block: it must compile and read only the variables in `scope`.
fn check_cel(
    cx: &mut Ctx<'_>,
    what: &str,
    v: &toml::Value,
    span: Range<usize>,
    scope: &[&str],
    said: &str,
) {
    let Some(expr) = v.as_str() else {
        cx.error(
            span,
            format!("`{what}` is `{v}`, not a CEL expression"),
            format!("write CEL as text, over {said}"),
        );
        return;
    };
    let at = text_start(cx.source, &span)..span.end;
    match Condition::compile(expr) {
        Err(e) => cel_error(
            cx,
            &format!("`{what}`"),
            expr,
            &span,
            &e,
            format!("`{what}` is CEL over {said}"),
        ),
        Ok(c) => check_reads(cx, at, &format!("`{what}`"), &c, scope, said),
    }
}

/// Reports that `expr`, the CEL written as the string at `span`, does not compile. A syntax
/// error is located where the parser stopped and said in words; anything else
/// [`Condition::compile`] refuses is located at the start of the expression, in its words.
/// `what` names the expression (`condition`, `` `approve.when` ``); `help` says what it is.
fn cel_error(
    cx: &mut Ctx<'_>,
    what: &str,
    expr: &str,
    span: &Range<usize>,
    error: &ConditionError,
    help: String,
) {
    // one line, however the expression is written
    let shown = if expr.contains(['\n', '\r']) {
        expr.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        expr.to_owned()
    };
    match cel_syntax::syntax_error(cx.source, span, expr) {
        Some(e) => cx.error(
            e.offset..span.end,
            format!("{what} `{shown}` does not compile: {}", e.message),
            match e.help {
                Some(specific) => format!("{specific}; {help}"),
                None => help,
            },
        ),
        None => cx.error(
            text_start(cx.source, span)..span.end,
            format!(
                "{what} `{shown}` does not compile: {}",
                error.to_string().replace('\n', " ")
            ),
            help,
        ),
    }
}

/// The variables a compiled expression reads must be among those in `scope`, the ones it
/// will see when it is evaluated (a macro's own variable does not count): otherwise an
/// error at `at`, with "did you mean" for a name close to one it sees. `what` names the
/// expression in the message (`condition`, `` `approve.when` ``).
fn check_reads(
    cx: &mut Ctx<'_>,
    at: Range<usize>,
    what: &str,
    c: &Condition,
    scope: &[&str],
    said: &str,
) {
    for m in c.mistakes() {
        cx.error(
            at.clone(),
            format!("{what} `{}`: {}", c.source(), m.message),
            m.help,
        );
    }
    let unknown: Vec<String> = c
        .variables()
        .into_iter()
        .filter(|v| !scope.contains(&v.as_str()))
        .collect();
    let Some(first) = unknown.first() else {
        return;
    };
    let guess = did_you_mean(first, scope.iter().copied())
        .map(|g| format!("{g} "))
        .unwrap_or_default();
    let named: Vec<String> = unknown.iter().map(|v| format!("`{v}`")).collect();
    cx.error(
        at,
        format!(
            "{what} `{}` reads {}, which it will not see",
            c.source(),
            named.join(", ")
        ),
        format!("{guess}{what} sees only {said}"),
    );
}

fn compile_action(
    cx: &mut Ctx<'_>,
    name: &Spanned<String>,
    action: &Spanned<RawAction>,
    agents: &BTreeMap<AgentId, Agent>,
    upstreams: &BTreeMap<UpstreamName, Upstream>,
    approvers: &BTreeMap<String, Vec<String>>,
    tree: Option<&DeTable<'_>>,
) -> Option<Action> {
    let a = action.get_ref();
    let Some((up_name, tool)) = name.get_ref().split_once('.') else {
        cx.error(
            name.span(),
            format!("action `{}` does not name its upstream", name.get_ref()),
            format!(
                "write it as `UPSTREAM.TOOL`, for example `billing.{}`",
                name.get_ref()
            ),
        );
        return None;
    };
    if !valid_name(name.get_ref()) || tool.is_empty() || up_name.is_empty() {
        let help = if tool.is_empty() || up_name.is_empty() {
            "write it as `UPSTREAM.TOOL`, both parts named, e.g. `[actions.\"billing.get_customer\"]`".to_owned()
        } else {
            format!(
                "name it as the upstream and its tool are named, e.g. `[actions.\"{}.{}\"]`",
                tidy_name(up_name),
                tidy_name(tool)
            )
        };
        cx.error(
            name.span(),
            format!(
                "action name `{}` may use only ASCII letters, digits, `_`, `-` and `.`",
                name.get_ref()
            ),
            help,
        );
        return None;
    }
    if a.unreadable.contains("*") {
        return None;
    }
    let up_id = UpstreamName::new(up_name);
    // an upstream the file declares but that did not compile has its own error: the action
    // is still checked, for its own mistakes, but not kept
    let broken_upstream =
        !upstreams.contains_key(&up_id) && cx.declared_upstreams.contains(up_name);
    let upstream = upstreams.get(&up_id);
    if upstream.is_none() && !broken_upstream {
        let hint = did_you_mean(up_name, upstreams.keys().map(UpstreamName::as_str));
        cx.error(
            name.span(),
            format!(
                "action `{}` names unknown upstream `{up_name}`",
                name.get_ref()
            ),
            hint.unwrap_or_else(|| {
                format!("add `[upstreams.{up_name}]` with a `command` or a `url`")
            }),
        );
        return None;
    }
    let mut granted = BTreeSet::new();
    match &a.agents {
        None if a.unreadable.contains("agents") => {}
        None => cx.error(
            name.span(),
            format!("action `{}` lists no `agents`", name.get_ref()),
            "add `agents = [\"support-bot\"]`: an action no agent may call is better removed"
                .to_owned(),
        ),
        Some(list) => {
            if list.get_ref().is_empty() {
                cx.error(
                    list.span(),
                    format!("action `{}` lists no agents", name.get_ref()),
                    "name at least one agent, or remove the action".to_owned(),
                );
            }
            for agent in list.get_ref() {
                let id = AgentId::new(agent.get_ref().clone());
                if agents.contains_key(&id) {
                    granted.insert(id);
                } else if cx.declared_agents.contains(agent.get_ref()) {
                    // declared with a mistake of its own, already reported
                } else {
                    let hint = did_you_mean(agent.get_ref(), agents.keys().map(AgentId::as_str));
                    cx.error(
                        agent.span(),
                        format!("unknown agent `{}`", agent.get_ref()),
                        hint.unwrap_or_else(|| format!("add `[agents.{}]`", agent.get_ref())),
                    );
                }
            }
        }
    }
    let tier = match a.tier.as_ref().map(|t| t.get_ref().as_str()) {
        Some("read") => Tier::Read,
        Some("write") => Tier::Write,
        Some("irreversible") => Tier::Irreversible,
        Some(other) => {
            let span = a.tier.as_ref().map(Spanned::span).unwrap_or(0..0);
            let hint = did_you_mean(other, ["read", "write", "irreversible"]);
            cx.error(
                span,
                format!("unknown tier `{other}`"),
                hint.unwrap_or_else(|| "write `read`, `write` or `irreversible`".to_owned()),
            );
            Tier::Irreversible
        }
        None if a.unreadable.contains("tier") => Tier::Irreversible,
        None => {
            cx.error(
                name.span(),
                format!("action `{}` has no `tier`", name.get_ref()),
                "add `tier = \"read\"`, `\"write\"` or `\"irreversible\"`".to_owned(),
            );
            Tier::Irreversible
        }
    };
    let mut at = ActionPositions {
        name: cx.position(name.span().start),
        ..ActionPositions::default()
    };
    at.tier = a
        .tier
        .as_ref()
        .map(|t| cx.position(t.span().start))
        .unwrap_or(at.name);
    let mut conditions = Vec::new();
    if let Some(req) = &a.require {
        // each expression located by its own span: a search for its text would find the
        // first of two that share it (or one that starts another)
        let written: Vec<(&str, Range<usize>)> = match req.get_ref() {
            OneOrMany::One(expr) => vec![(expr.as_str(), req.span())],
            OneOrMany::Many(list) => list
                .iter()
                .map(|e| (e.get_ref().as_str(), e.span()))
                .collect(),
        };
        for (expr, span) in written {
            let start = text_start(cx.source, &span);
            match Condition::compile(expr) {
                Ok(c) => {
                    let (scope, said) = REQUIRE_SCOPE;
                    check_reads(cx, start..span.end, "condition", &c, scope, said);
                    if let Some(gives) = c.never_boolean() {
                        cx.error(
                            start..span.end,
                            format!("condition `{expr}` gives {gives}, never true or false: it would refuse every call"),
                            "a condition is a test, e.g. `args.amount <= 500` or `size(args.to) > 0`".to_owned(),
                        );
                    }
                    conditions.push(c);
                    at.conditions.push(cx.position(start));
                }
                Err(e) => {
                    cel_error(
                        cx,
                        "condition",
                        expr,
                        &span,
                        &e,
                        "conditions are CEL over `args`, e.g. `args.amount > 0 && args.amount <= 500`"
                            .to_owned(),
                    );
                }
            }
        }
    }
    let mut budgets: Vec<Budget> = Vec::new();
    for b in &a.budget {
        let rb = b.get_ref();
        let per = match &rb.per {
            Some(p) => match parse_duration(p.get_ref()) {
                Some(d) => Some((d, p.get_ref().clone())),
                None => {
                    cx.error(
                        p.span(),
                        format!("`{}` is not a duration", p.get_ref()),
                        "write a number and a unit: `30m`, `1h`, `24h`, `7d`".to_owned(),
                    );
                    None
                }
            },
            None if rb.unreadable.contains("per") => None,
            None => {
                cx.error(
                    b.span(),
                    "budget has no `per` window".to_owned(),
                    "add `per = \"1h\"`".to_owned(),
                );
                None
            }
        };
        let measure = match (&rb.count, &rb.sum, &rb.max) {
            // a part that could not be read is reported: the shape is not judged without it
            _ if ["*", "count", "sum", "max"]
                .iter()
                .any(|k| rb.unreadable.contains(k)) =>
            {
                None
            }
            (Some(c), None, None) => {
                if *c.get_ref() <= 0 {
                    cx.error(
                        c.span(),
                        format!("`count` must be at least 1, not {}: no call would ever fit", c.get_ref()),
                        "write how many calls a window allows, e.g. `{ count = 20, per = \"1h\" }`; to allow none, remove the action".to_owned(),
                    );
                }
                Some((BudgetMeasure::Count, *c.get_ref() as f64))
            }
            // what no charge can be held to: nan, infinities, nothing or less, past what an
            // amount may be (2^53, [`crate::condition::MAX_AMOUNT`])
            (None, Some(_), Some(max))
                if !(*max.get_ref() > 0.0 && *max.get_ref() <= crate::condition::MAX_AMOUNT) =>
            {
                cx.error(
                    max.span(),
                    format!(
                        "`max` must be a number above 0 and at most 2^53, not `{}`",
                        max.get_ref()
                    ),
                    "for example `max = 1000`".to_owned(),
                );
                None
            }
            (None, Some(expr), Some(max)) => match Condition::compile(expr.get_ref()) {
                Ok(c) => {
                    let (scope, said) = REQUIRE_SCOPE;
                    let at = text_start(cx.source, &expr.span())..expr.span().end;
                    check_reads(cx, at, "budget sum", &c, scope, said);
                    Some((BudgetMeasure::Sum(c), *max.get_ref()))
                }
                Err(e) => {
                    cel_error(
                        cx,
                        "budget sum",
                        expr.get_ref(),
                        &expr.span(),
                        &e,
                        "a budget sum is CEL over `args` giving a number, e.g. `sum = \"args.amount\"`"
                            .to_owned(),
                    );
                    None
                }
            },
            (None, Some(_), None) => {
                cx.error(
                    b.span(),
                    "a `sum` budget needs a `max`".to_owned(),
                    "for example `{ sum = \"args.amount\", max = 1000, per = \"24h\" }`".to_owned(),
                );
                None
            }
            (None, None, Some(_)) => {
                cx.error(
                    b.span(),
                    "a budget with a `max` needs a `sum`: what it adds up".to_owned(),
                    "for example `{ sum = \"args.amount\", max = 1000, per = \"24h\" }`; to count calls, write `{ count = 20, per = \"1h\" }`".to_owned(),
                );
                None
            }
            (None, None, None) => {
                cx.error(
                    b.span(),
                    "a budget needs a `count` or a `sum`".to_owned(),
                    "count calls, `{ count = 20, per = \"1h\" }`, or add up an amount, `{ sum = \"args.amount\", max = 1000, per = \"24h\" }`".to_owned(),
                );
                None
            }
            _ => {
                cx.error(
                    b.span(),
                    "a budget either counts calls or adds up a sum, not both: it is either `{ count = N, per = .. }` or `{ sum = \"EXPR\", max = N, per = .. }`".to_owned(),
                    "split it into two budgets: `budget = [{ count = 20, per = \"1h\" }, { sum = \"args.amount\", max = 1000, per = \"24h\" }]`".to_owned(),
                );
                None
            }
        };
        if let (Some((measure, limit)), Some((per, per_text))) = (measure, per) {
            let start = match &rb.sum {
                Some(expr) => text_start(cx.source, &expr.span()),
                None => b.span().start,
            };
            let budget = Budget::new(measure, limit, per, per_text, cx.position(start));
            // charges are kept by what a budget is: two alike would share them
            if let Some(same) = budgets.iter().find(|o| o.identity() == budget.identity()) {
                cx.error(
                    b.span(),
                    format!(
                        "this budget counts what an earlier one does ({same}) over the same window: \
                         the two would share their charges"
                    ),
                    "keep one of them, with the lower limit".to_owned(),
                );
                continue;
            }
            budgets.push(budget);
        }
    }
    let mut redact = Vec::new();
    let mut redact_result = Vec::new();
    for r in &a.redact {
        let text = r.get_ref();
        let (paths, positions, path) =
            match (text.strip_prefix("args."), text.strip_prefix("result.")) {
                (Some(path), _) => (&mut redact, &mut at.redact, path),
                (_, Some(path)) => (&mut redact_result, &mut at.redact_result, path),
                _ => (&mut redact, &mut at.redact, ""),
            };
        if !path.is_empty() && path.split('.').all(is_field_name) {
            paths.push(path.split('.').map(str::to_owned).collect());
            positions.push(cx.position(r.span().start));
        } else {
            cx.error(
                r.span(),
                format!("`{text}` is not an argument or result path: nothing would be redacted"),
                "write `args.FIELD` (an argument) or `result.FIELD` (a field of the result), \
                     with `.FIELD` for nested ones, e.g. `args.card_number`"
                    .to_owned(),
            );
        }
    }
    let named_tools = check_blocks(
        cx,
        name,
        a,
        tree.and_then(|t| action_table(t, name.get_ref())),
        approvers,
        upstreams,
    );
    let upstream = upstream?;
    let exposed = if upstream.namespace {
        name.get_ref().clone()
    } else {
        tool.to_owned()
    };
    Some(Action {
        name: ActionName::new(name.get_ref().clone()),
        upstream: up_id,
        tool: tool.to_owned(),
        exposed,
        agents: granted,
        tier,
        description: a.description.as_ref().map(|d| d.get_ref().clone()),
        conditions,
        budgets,
        redact,
        redact_result,
        approve: pending(cx, a.approve.as_ref(), "approve"),
        delay: pending(cx, a.delay.as_ref(), "delay"),
        verify: pending(cx, a.verify.as_ref(), "verify"),
        undo: pending(cx, a.undo.as_ref(), "undo"),
        named_tools,
        at,
    })
}
