//! A running `remit serve` in a temp dir, with the billing server behind it, and ways to talk to it.

use serde_json::{Value, json};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const TOKEN: &str = "test-token-support-bot-0123456789";
pub(crate) const OTHER_TOKEN: &str = "test-token-other-bot-0123456789ab";

pub(crate) fn remit() -> &'static str {
    env!("CARGO_BIN_EXE_remit")
}

/// The register used by most tests: a billing upstream and two agents.
pub(crate) fn register(actions: &str, port: u16) -> String {
    format!(
        r#"
[gateway]
listen = "127.0.0.1:{port}"
store = "sqlite://remit.db"

[agents.support-bot]
token = {{ env = "REMIT_TOKEN_SUPPORT_BOT" }}

[agents.other-bot]
token = {{ env = "REMIT_TOKEN_OTHER_BOT" }}

[upstreams.billing]
command = ["{remit}", "billing-server", "--db", "billing.db"]

{actions}
"#,
        remit = remit()
    )
}

pub(crate) const STANDARD: &str = r#"
[actions."billing.get_customer"]
agents = ["support-bot"]
tier = "read"
redact = ["result.card_number"]

[actions."billing.list_charges"]
agents = ["support-bot", "other-bot"]
tier = "read"

[actions."billing.issue_refund"]
agents = ["support-bot"]
tier = "write"
require = "args.amount > 0 && args.amount <= 500"
budget = [{ count = 3, per = "1h" }]
redact = ["args.reason"]
"#;

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

pub(crate) struct Remit {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) port: u16,
    child: Option<Child>,
    pub(crate) client: reqwest::blocking::Client,
    /// More environment for `remit` (test knobs such as `REMIT_BODY_READ_TIMEOUT_MS`).
    env: Vec<(String, String)>,
}

impl Remit {
    pub(crate) fn start(actions: &str) -> Self {
        Self::start_with(|port| register(actions, port))
    }

    /// Starts remit on the standard register with `actions`, and `env` in its environment.
    pub(crate) fn start_with_env(actions: &str, env: &[(&str, &str)]) -> Self {
        Self::launch(|port| register(actions, port), env)
    }

    /// Starts remit on a register written by `make` for the given port.
    pub(crate) fn start_with(make: impl Fn(u16) -> String) -> Self {
        Self::launch(make, &[])
    }

    /// Starts remit on a register written by `make` for the given port, with `env` set.
    pub(crate) fn launch(make: impl Fn(u16) -> String, env: &[(&str, &str)]) -> Self {
        let mut r = Self::prepare(make, env);
        r.spawn();
        r
    }

    /// A temp dir with the register written by `make` for a free port; remit not started.
    fn prepare(make: impl Fn(u16) -> String, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        std::fs::write(dir.path().join("remit.toml"), make(port)).unwrap();
        Self {
            dir,
            port,
            child: None,
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    pub(crate) fn path(&self) -> PathBuf {
        self.dir.path().join("remit.toml")
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(remit());
        c.args(args)
            .arg("--register")
            .arg(self.path())
            .current_dir(self.dir.path())
            .env("REMIT_TOKEN_SUPPORT_BOT", TOKEN)
            .env("REMIT_TOKEN_OTHER_BOT", OTHER_TOKEN)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    pub(crate) fn spawn(&mut self) {
        self.start_serving();
        self.wait_until_healthy();
    }

    /// Starts remit on a register written by `make` for the given port, with `env` set, and
    /// reads its log as it comes ([`Log`]), from before it is healthy.
    pub(crate) fn launch_following_log(
        make: impl Fn(u16) -> String,
        env: &[(&str, &str)],
    ) -> (Self, Log) {
        let mut r = Self::prepare(make, env);
        r.start_serving();
        let log = Log::follow(r.child.as_mut().unwrap().stderr.take().unwrap());
        r.wait_until_healthy();
        (r, log)
    }

    /// Starts `remit serve`, its stderr a pipe.
    fn start_serving(&mut self) {
        let child = self
            .command(&["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Waits until remit answers `/health` with its first upstream up and listing tools.
    fn wait_until_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.client.get(self.url("/health")).send()
                && let Ok(v) = r.json::<Value>()
                && v["upstreams"][0]["up"] == json!(true)
                && v["upstreams"][0]["tools"].as_u64().unwrap_or(0) > 0
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut stderr) = self.child.as_mut().unwrap().stderr.take() {
                    stderr.read_to_string(&mut err).unwrap();
                }
                panic!("remit serve exited with {status}: {err}");
            }
            assert!(Instant::now() < deadline, "remit did not become healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`: no shutdown, no flush.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Stops `remit serve` (`kill -9`) and returns everything it wrote to stderr (its log).
    pub(crate) fn stop_and_read_log(&mut self) -> String {
        let mut log = String::new();
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
            c.stderr.take().unwrap().read_to_string(&mut log).unwrap();
        }
        log
    }

    /// The process id of `remit serve`.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// The health document.
    /// Waits until the upstream `name` is connected and lists its tools (`spawn` waits only
    /// for the first one; another may still be connecting, or retrying a first attempt).
    pub(crate) fn wait_for_upstream(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let health = self.health();
            let ready = health["upstreams"].as_array().is_some_and(|all| {
                all.iter().any(|u| {
                    u["upstream"] == name
                        && u["up"] == json!(true)
                        && u["tools"].as_u64().unwrap_or(0) > 0
                })
            });
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "upstream `{name}` did not come up: {health}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The health document anyone who reaches remit gets.
    pub(crate) fn health(&self) -> Value {
        self.health_with(None)
    }

    /// The health document with the operator's token (made from the audit key), errors included.
    pub(crate) fn health_as_operator(&self) -> Value {
        let key = std::fs::read_to_string(self.dir.path().join("remit-audit.key")).unwrap();
        let key = remit_core::audit::AuditKey::from_text(key.trim()).unwrap();
        self.health_with(Some(&key.status_token()))
    }

    /// The health document as asked with `bearer`, if any.
    pub(crate) fn health_with(&self, bearer: Option<&str>) -> Value {
        let mut request = self.client.get(self.url("/health"));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        request.send().unwrap().json().unwrap()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `POST /v1/calls` as an agent.
    pub(crate) fn call_as(&self, token: &str, tool: &str, args: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(self.url("/v1/calls"))
            .bearer_auth(token)
            .json(&json!({ "tool": tool, "arguments": args, "reason": "test" }))
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }

    /// `POST /v1/calls` of `tool` with the support-bot token: the whole answer, headers included.
    pub(crate) fn post_call(&self, tool: &str, args: &Value) -> reqwest::blocking::Response {
        self.client
            .post(self.url("/v1/calls"))
            .bearer_auth(TOKEN)
            .json(&json!({ "tool": tool, "arguments": args }))
            .send()
            .unwrap()
    }

    #[expect(
        clippy::needless_pass_by_value,
        reason = "tests read better with json! inline"
    )]
    pub(crate) fn call(&self, tool: &str, args: Value) -> (u16, Value) {
        self.call_as(TOKEN, tool, &args)
    }

    /// A raw body to any path, with the support-bot token.
    pub(crate) fn post_raw(
        &self,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        let mut req = self
            .client
            .post(self.url(path))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().unwrap();
        (r.status().as_u16(), r.text().unwrap_or_default())
    }

    /// One stateless 2026-07-28 JSON-RPC request to `/mcp`.
    pub(crate) fn mcp(&self, token: &str, method: &str, mut params: Value) -> (u16, Value) {
        params["_meta"] = stateless_meta();
        let mut req = self
            .client
            .post(self.url("/mcp"))
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method)
            .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }));
        if let Some(name) = params.get("name").and_then(Value::as_str) {
            req = req.header("mcp-name", name);
        }
        let r = req.send().unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap_or_default();
        (status, parse_jsonrpc(&text))
    }

    /// A 2026-07-28 stateless `tools/call` to `/mcp` as the agent's, with every header and
    /// `_meta` field the revision requires, on `client` (default: this remit's own).
    pub(crate) fn stateless_call(
        &self,
        client: Option<&reqwest::blocking::Client>,
        id: &Value,
        tool: &str,
        args: &Value,
        accept: &str,
    ) -> reqwest::blocking::RequestBuilder {
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": tool, "arguments": args, "_meta": stateless_meta()
        }});
        client
            .unwrap_or(&self.client)
            .post(self.url("/mcp"))
            .bearer_auth(TOKEN)
            .header("accept", accept)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", tool)
            .json(&body)
    }

    /// Every tool call the billing server received, from its own ledger.
    pub(crate) fn ledger(&self) -> Vec<(String, Value)> {
        billing_ledger(self.dir.path())
    }

    pub(crate) fn audit(&self, args: &[&str]) -> (i32, String, String) {
        let mut full = vec!["audit"];
        full.extend_from_slice(args);
        let out = self.command(&full).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Every event in the audit, as `remit audit export` prints them: `{"seq": .., "event": {..}}`.
    pub(crate) fn events(&self) -> Vec<Value> {
        let (code, export, err) = self.audit(&["export", "--format", "jsonl"]);
        assert_eq!(code, 0, "{err}");
        export
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The stages of an action's events, in order.
    pub(crate) fn stages_of(&self, action: &str) -> Vec<String> {
        self.events()
            .iter()
            .filter(|l| l["event"]["action"] == action)
            .map(|l| l["event"]["stage"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Waits until a signed checkpoint covers every event.
    pub(crate) fn wait_for_checkpoint(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v: Value = self
                .client
                .get(self.url("/health"))
                .send()
                .unwrap()
                .json()
                .unwrap();
            if v["audit"]["checkpoint"]["tree_size"] == v["audit"]["events"] {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no checkpoint covered the log: {v}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn db(&self) -> PathBuf {
        self.dir.path().join("remit.db")
    }
}

impl Drop for Remit {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// remit's log (its stderr), read on a thread of its own as it comes, so a test that makes
/// remit log a lot does not fill the pipe (remit would stop at its next line until read).
pub(crate) struct Log {
    text: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Log {
    /// Reads `stderr` until it closes.
    fn follow(mut stderr: std::process::ChildStderr) -> Self {
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let into = std::sync::Arc::clone(&text);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    return;
                }
                into.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            text,
            reader: Some(reader),
        }
    }

    /// The log so far, without the terminal's colours (`upstream=billing`, not
    /// `ESC[3mupstream ESC[0m ...`).
    pub(crate) fn text(&self) -> String {
        let text = self.text.lock().unwrap().clone();
        let mut plain = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(start) = rest.find("\x1b[") {
            plain.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            match after.find(|c: char| c.is_ascii_alphabetic()) {
                Some(end) => rest = &after[end + 1..],
                None => rest = "",
            }
        }
        plain.push_str(rest);
        plain
    }

    /// Waits (at most `limit`) until the log holds a line with every one of `words`; gives it.
    pub(crate) fn wait_for_line(&self, words: &[&str], limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let text = self.text();
            if let Some(line) = text.lines().find(|l| words.iter().all(|w| l.contains(w))) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no line with {words:?} in the log: {text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The whole log, once remit has exited and its stderr is closed.
    pub(crate) fn all(mut self) -> String {
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.text()
    }
}

/// The sequence numbers of the events in `remit audit export --format jsonl` output, in order.
pub(crate) fn seqs_of(export: &str) -> Vec<u64> {
    export
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// The JSON-RPC message of a response body, whether plain JSON or one SSE event.
pub(crate) fn parse_jsonrpc(text: &str) -> Value {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return v;
    }
    for line in text.lines() {
        if let Some(data) = line.strip_prefix("data:")
            && let Ok(v) = serde_json::from_str::<Value>(data.trim())
            && (v.get("result").is_some() || v.get("error").is_some())
        {
            return v;
        }
    }
    Value::String(text.to_owned())
}

/// The `_meta` a 2026-07-28 request carries: protocol version, client capabilities and info.
pub(crate) fn stateless_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": { "name": "it", "version": "1" }
    })
}

/// Runs SQL against a SQLite file (to tamper with the audit log as an attacker would).
pub(crate) fn sqlite_exec(db: &Path, sql: &str) {
    with_sqlite(db, async |conn| {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(conn)
            .await
            .unwrap();
    });
}

/// Runs `work` on a connection of its own to a SQLite file, as another process would.
pub(crate) fn with_sqlite<T>(
    db: &Path,
    work: impl AsyncFnOnce(&mut sqlx::SqliteConnection) -> T,
) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::ConnectOptions;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(db)
            .connect()
            .await
            .unwrap();
        work(&mut conn).await
    })
}

/// A fresh, empty PostgreSQL database for one test, or None (with a message) when PostgreSQL is absent outside CI.
pub(crate) fn fresh_postgres() -> Option<String> {
    let base = std::env::var("REMIT_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let name = format!("remit_it_{}", std::process::id()) + &format!("_{}", free_port());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let made = rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&base).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await?;
        Ok::<_, sqlx::Error>(())
    });
    match made {
        Ok(()) => Some(format!("{}/{name}", base.rsplit_once('/').unwrap().0)),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("PostgreSQL is required in CI: {e}")
        }
        Err(e) => {
            eprintln!(
                "SKIPPED: PostgreSQL at {base} is not reachable ({e}); set REMIT_TEST_POSTGRES"
            );
            None
        }
    }
}

/// The children of a process, by reading /proc.
pub(crate) fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let after = stat.rsplit_once(") ").map(|x| x.1).unwrap_or("");
        if after.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// With the store broken, calls fail closed: a write is refused before the upstream sees
/// it, and a read's answer is withheld. Gives the write's refusal, for checks of its words.
pub(crate) fn assert_calls_fail_closed(r: &Remit) -> Value {
    let (status, refused) = r.call(
        "billing.issue_refund",
        json!({ "charge_id": "ch_001", "amount": 5, "reason": "x" }),
    );
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["code"], "unavailable", "{refused}");
    let says = |body: &Value, words: &str| body["message"].as_str().unwrap().contains(words);
    assert!(says(&refused, "nothing was executed"), "{refused}");
    let (status, body) = r.call("billing.get_customer", json!({ "id": "cus_001" }));
    assert_eq!((status, &body["code"]), (502, &json!("failed")), "{body}");
    assert!(says(&body, "answer is withheld"), "{body}");
    assert!(
        !body.to_string().contains("ada@example.com"),
        "an unrecorded read's answer reached the agent: {body}"
    );
    assert!(
        r.ledger().iter().all(|(tool, _)| tool != "issue_refund"),
        "a write ran that remit could not record"
    );
    refused
}

/// Every tool call the billing server whose files are in `dir` received, from its own ledger.
pub(crate) fn billing_ledger(dir: &Path) -> Vec<(String, Value)> {
    let db = dir.join("billing.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(remit_billing::received_calls(&db))
        .unwrap()
        .into_iter()
        .map(|c| (c.tool, c.arguments))
        .collect()
}

/// Runs `command` with stdout a pipe that is closed after its first line is read, as
/// `remit ... | head -1` does; returns how it ended and its stderr. Its output must be
/// more than a pipe holds (64 KiB), or it may finish before the pipe closes.
pub(crate) fn with_stdout_closed_early(mut command: Command) -> (std::process::ExitStatus, String) {
    use std::io::BufRead;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty(), "no first line");
    // the reader is dropped here: the pipe is closed with most of the output unread
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
