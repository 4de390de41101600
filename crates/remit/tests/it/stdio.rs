//! `remit stdio --agent NAME`: a local client launches remit and speaks JSON-RPC lines to it.

use crate::support::{
    OTHER_TOKEN, STANDARD, TOKEN, billing_ledger, free_port, register, remit, stateless_meta,
};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// A `remit stdio` session in a temp dir, launched as a client launches it: with only the
/// environment the client gives it.
struct Session {
    dir: tempfile::TempDir,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Session {
    /// Starts `remit stdio --agent support-bot` over the standard register, with `PATH` and `env` only.
    fn start(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("remit.toml"),
            register(STANDARD, free_port()),
        )
        .unwrap();
        let mut command = Command::new(remit());
        command
            .args([
                "stdio",
                "--register",
                "remit.toml",
                "--agent",
                "support-bot",
            ])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            dir,
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one line and reads one answer; panics with remit's stderr if it exited instead.
    fn ask(&mut self, line: &str) -> Value {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).unwrap();
        if answer.is_empty() {
            let _ = self.child.kill();
            let status = self.child.wait().unwrap();
            let mut log = String::new();
            let _ = self.child.stderr.take().unwrap().read_to_string(&mut log);
            panic!("remit stdio answered nothing ({status}): {log}");
        }
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("not JSON ({e}): {answer}"))
    }

    /// A stateless `tools/call` line.
    fn call_line(id: u64, tool: &str, args: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{args},"_meta":{}}}}}"#,
            stateless_meta()
        )
    }

    /// Every tool call the billing server received, from its own ledger.
    fn ledger(&self) -> Vec<(String, Value)> {
        billing_ledger(self.dir.path())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn stdio_needs_no_agents_token_in_its_environment() {
    // the register names two agents' tokens by environment variable; a local session uses
    // neither, and a client that launches it should not have to hold them (this exited 2)
    let mut s = Session::start(&[]);
    let discover = json!({ "jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": { "_meta": stateless_meta() } });
    let answer = s.ask(&discover.to_string());
    assert!(answer["result"]["supportedVersions"].is_array(), "{answer}");
    let answer = s.ask(&Session::call_line(
        2,
        "billing.get_customer",
        r#"{"id":"cus_001"}"#,
    ));
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert_eq!(answer["result"]["structuredContent"]["id"], "cus_001");
    assert_eq!(s.ledger().len(), 1);
}

/// Over stdio too, a budget refusal says when to retry in `_meta.remit.retry_after_seconds`.
#[test]
fn a_budget_refusal_over_stdio_says_when_to_retry_in_its_meta() {
    let mut s = Session::start(&[]);
    let refund = r#"{"charge_id":"ch_003","amount":10,"reason":"x"}"#;
    for id in 1..=3 {
        let answer = s.ask(&Session::call_line(id, "billing.issue_refund", refund));
        assert_eq!(answer["result"]["isError"], false, "{answer}");
    }
    let answer = s.ask(&Session::call_line(4, "billing.issue_refund", refund));
    let remit = &answer["result"]["_meta"]["remit"];
    assert_eq!(remit["code"], "over_budget", "{answer}");
    let wait = remit["retry_after_seconds"].as_u64().unwrap_or_default();
    assert!((3_540..=3_600).contains(&wait), "{answer}");
    assert_eq!(s.ledger().len(), 3);
}

#[test]
fn stdio_rejects_duplicate_json_keys() {
    // as `/mcp` does: serde kept the last key, so this ran `cus_002` (and, for a `name`
    // repeated, whichever tool came last)
    let mut s = Session::start(&[
        ("REMIT_TOKEN_SUPPORT_BOT", TOKEN),
        ("REMIT_TOKEN_OTHER_BOT", OTHER_TOKEN),
    ]);
    let answer = s.ask(&Session::call_line(
        1,
        "billing.get_customer",
        r#"{"id":"cus_001","id":"cus_002"}"#,
    ));
    assert_eq!(answer["id"], 1, "{answer}");
    assert_eq!(answer["error"]["code"], -32700, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("duplicate key `id`"), "{answer}");
    // the session goes on
    let answer = s.ask(&Session::call_line(
        2,
        "billing.get_customer",
        r#"{"id":"cus_003"}"#,
    ));
    assert_eq!(answer["result"]["structuredContent"]["id"], "cus_003");
    let ledger = s.ledger();
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0].1["id"], "cus_003");
}

#[test]
fn stdio_tools_call_with_bad_params_is_invalid_params_naming_the_field() {
    // it was answered -32601 `tools/call` (method not found)
    let mut s = Session::start(&[]);
    for (id, (params, says)) in [
        (
            r#"{"name":"billing.get_customer","arguments":"cus_001"}"#,
            "`arguments` must be an object",
        ),
        (r#"{"name":7,"arguments":{}}"#, "`name` must be a string"),
        (r#"{"arguments":{}}"#, "`name` is missing"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut params: Value = serde_json::from_str(params).unwrap();
        params["_meta"] = stateless_meta();
        let line = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params });
        let answer = s.ask(&line.to_string());
        assert_eq!(answer["error"]["code"], -32602, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(says),
            "{answer}"
        );
    }
    assert!(s.ledger().is_empty());
}
