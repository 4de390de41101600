//! `remit check` and `remit register` on files, as an operator runs them.

use std::process::Command;

fn check(body: &str, offline: bool) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("remit.toml");
    std::fs::write(&path, body).unwrap();
    let mut c = Command::new(crate::support::remit());
    c.arg("check")
        .arg(&path)
        .env("REMIT_TOKEN_SUPPORT_BOT", crate::support::TOKEN);
    if offline {
        c.arg("--offline");
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn check_reports_file_line_column_and_a_hint_and_exits_non_zero() {
    let body = crate::support::register(crate::support::STANDARD, 1)
        .replace("tier = \"write\"", "tier = \"writ\"");
    let (code, out) = check(&body, true);
    assert_eq!(code, 1, "{out}");
    let line = body.lines().position(|l| l.contains("\"writ\"")).unwrap() + 1;
    assert!(
        out.contains(&format!("remit.toml:{line}:8: error: unknown tier `writ`")),
        "{out}"
    );
    assert!(out.contains("did you mean `write`?"), "{out}");
}

#[test]
fn check_finds_a_condition_on_an_argument_the_tool_does_not_have() {
    let actions = r#"
[actions."billing.issue_refund"]
agents = ["support-bot"]
tier = "write"
require = "args.amout <= 500"
"#;
    let (code, out) = check(&crate::support::register(actions, 1), false);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("reads `args.amout`, but tool `billing.issue_refund` has no argument `amout`"),
        "{out}"
    );
    assert!(out.contains("did you mean `amount`?"), "{out}");
}

#[test]
fn check_locates_a_finding_at_the_entry_it_is_about() {
    // the second condition reads the missing argument (and starts with the first); the
    // upstream `gone` cannot be started: both were reported at a header's line, column 1
    let actions = r#"
[upstreams.gone]
command = ["/nonexistent/remit-test-upstream"]

[actions."billing.issue_refund"]
agents = ["support-bot"]
tier = "write"
require = ["args.amount > 0", "args.amount > 0 && args.amout <= 500"]
"#;
    let body = crate::support::register(actions, 1);
    let (code, out) = check(&body, false);
    assert_eq!(code, 1, "{out}");
    let at = |needle: &str, shift: usize| {
        let line = body.lines().position(|l| l.contains(needle)).unwrap();
        let column = body.lines().nth(line).unwrap().find(needle).unwrap() + 1 + shift;
        format!("remit.toml:{}:{column}:", line + 1)
    };
    assert!(
        out.contains(&format!(
            "{} error: `args.amount > 0 && args.amout <= 500` reads `args.amout`",
            at("\"args.amount > 0 && args.amout", 1)
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{} warning: upstream `gone` could not be reached",
            at("gone]", 0)
        )),
        "{out}"
    );
}

#[test]
fn check_finds_a_tool_the_upstream_does_not_have() {
    let actions = r#"
[actions."billing.issue_refnd"]
agents = ["support-bot"]
tier = "write"
require = "args.amount <= 500"
"#;
    let (code, out) = check(&crate::support::register(actions, 1), false);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("upstream `billing` has no tool `issue_refnd`")
            && out.contains("did you mean `issue_refund`?"),
        "{out}"
    );
}

#[test]
fn check_reports_every_independent_mistake_in_one_run_each_with_a_help_line() {
    // a value of the wrong type (`namespace = "no"`) once was the only error reported; an
    // action twice was `duplicate key`, and `agents = "..."` serde's `invalid type`
    let actions = r#"
[upstreams.crm]
url = "ftp://crm.example/mcp"
headers = { Host = "evil.example" }
protocol = "2024-01-01"
timeout = "soon"
namespace = "no"

[actions."crm.find_contact"]
agents = "support-bot"
tier = "read"

[actions."billing.get_customer"]
agents = ["support-bot"]
tier = "read"
require = "args.id > && 5"
"#;
    let body = crate::support::register(actions, 1);
    let (code, out) = check(&body, true);
    assert_eq!(code, 1, "{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.contains(": error: ")).collect();
    for wanted in [
        "error: `url` must start with `http://` or `https://`",
        "error: header `Host` is set by remit",
        "error: unknown protocol `2024-01-01`",
        "error: `soon` is not a duration",
        "error: `namespace` must be `true` or `false`, not the text `\"no\"`",
        "error: `agents` must be a list of agent names, not the text `\"support-bot\"`",
        "error: condition `args.id > && 5` does not compile: unexpected `&&`: expected a value",
    ] {
        assert!(errors.iter().any(|e| e.contains(wanted)), "{wanted}: {out}");
    }
    assert_eq!(errors.len(), 7, "{out}");
    // each error is followed by its help line
    let lines: Vec<&str> = out.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.contains(": error: ") {
            assert!(
                lines.get(i + 1).is_some_and(|h| h.starts_with("  help: ")),
                "{l}: {out}"
            );
        }
    }
    // the condition's error is at the `&&`, not the start of the expression
    let line = body.lines().position(|l| l.contains("> && 5")).unwrap() + 1;
    let column = body.lines().nth(line - 1).unwrap().find("&&").unwrap() + 1;
    assert!(
        out.contains(&format!("remit.toml:{line}:{column}: error: condition")),
        "{out}"
    );

    // an action written twice: named, with where it was first written
    let body = crate::support::register(
        &format!(
            "{}{}",
            crate::support::STANDARD,
            "\n[actions.\"billing.get_customer\"]\nagents = [\"support-bot\"]\ntier = \"read\"\n"
        ),
        1,
    );
    let (code, out) = check(&body, true);
    assert_eq!(code, 1, "{out}");
    let first = body
        .lines()
        .position(|l| l == "[actions.\"billing.get_customer\"]")
        .unwrap()
        + 1;
    assert!(
        out.contains(&format!(
            "error: action `billing.get_customer` is defined twice, first at line {first}"
        )),
        "{out}"
    );
    assert!(out.contains("help: merge the two"), "{out}");
}

#[test]
fn check_passes_a_good_register_with_risk_warnings() {
    let actions = format!(
        "{}\n[actions.\"billing.send_email\"]\nagents = [\"support-bot\"]\ntier = \"irreversible\"\n",
        crate::support::STANDARD
    );
    let (code, out) = check(&crate::support::register(&actions, 1), false);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: irreversible action `billing.send_email` needs no approval"),
        "{out}"
    );
}

#[test]
fn register_prints_one_row_per_action() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("remit.toml");
    std::fs::write(&path, crate::support::register(crate::support::STANDARD, 1)).unwrap();
    for (format, needle) in [
        (
            "text",
            "only if:      args.amount > 0 && args.amount <= 500",
        ),
        (
            "markdown",
            "| `billing.issue_refund` |  | support-bot | write |",
        ),
        ("json", "\"tier\": \"write\""),
    ] {
        let out = Command::new(crate::support::remit())
            .args(["register", "--format", format])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(needle), "{format}: {text}");
        assert!(text.contains("billing.list_charges"));
    }
}

/// Answers every HTTP request on a thread of its own with `answer`; returns the port.
fn answering(answer: &'static str) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 8192];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    port
}

#[test]
fn check_says_in_plain_words_why_an_http_upstream_could_not_be_reached() {
    let refusing = crate::support::free_port(); // nothing listens there
    let unauthorized = answering(
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"crm\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    let body = format!(
        r#"
[agents.support-bot]
token = {{ env = "REMIT_TOKEN_SUPPORT_BOT" }}

[upstreams.crm]
url = "http://127.0.0.1:{unauthorized}/mcp?key=q-secret-7"
headers = {{ Authorization = {{ env = "CRM_TOKEN", prefix = "Bearer " }} }}

[upstreams.gone]
url = "http://127.0.0.1:{refusing}/mcp"

[upstreams.dead]
command = ["sh", "-c", "echo not-json; exit 3"]

[actions."dead.x"]
agents = ["support-bot"]
tier = "read"

[actions."crm.x"]
agents = ["support-bot"]
tier = "read"

[actions."gone.x"]
agents = ["support-bot"]
tier = "read"
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("remit.toml");
    std::fs::write(&path, body).unwrap();
    let out = Command::new(crate::support::remit())
        .arg("check")
        .arg(&path)
        .env("REMIT_TOKEN_SUPPORT_BOT", crate::support::TOKEN)
        .env("CRM_TOKEN", "h-secret-9")
        .env_remove("REMIT_LOG")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(
            "upstream `crm` could not be reached: the upstream answered HTTP 401 (authentication required) to the handshake: check its headers in the register;"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "upstream `gone` could not be reached: connection refused at http://127.0.0.1:{refusing};"
        )),
        "{text}"
    );
    // a child that exits at once: whether remit was still writing to it or reading
    assert!(
        text.contains(
            "upstream `dead` could not be reached: the upstream process exited (or closed its stdin) before the handshake;"
        ) || text.contains(
            "upstream `dead` could not be reached: the upstream closed the connection before answering the handshake;"
        ),
        "{text}"
    );
    // no library's type names, Debug output or log lines; no credential
    for leak in [
        "rmcp",
        "reqwest",
        "hyper",
        "Transport",
        "ERROR",
        "Os {",
        "q-secret-7",
        "h-secret-9",
    ] {
        assert!(!text.contains(leak), "`{leak}` in: {text}");
    }
}

#[test]
fn register_ends_quietly_when_its_reader_closes_the_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("remit.toml");
    // well over the 64 KiB a pipe holds, in every format
    let actions: String = (0..1500)
        .map(|i| {
            format!(
                "[actions.\"billing.tool_{i}\"]\nagents = [\"support-bot\"]\ntier = \"read\"\ndescription = \"reads record {i} of the billing system, for the support agent\"\n\n"
            )
        })
        .collect();
    std::fs::write(&path, crate::support::register(&actions, 1)).unwrap();
    for format in ["text", "markdown", "json"] {
        let mut command = Command::new(crate::support::remit());
        command.args(["register", "--format", format]).arg(&path);
        let (status, stderr) = crate::support::with_stdout_closed_early(command);
        assert_eq!(status.code(), Some(0), "{format}: {stderr}");
        assert_eq!(stderr, "", "{format}");
    }
}

#[test]
fn register_in_json_names_each_agents_owner_and_description() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/support-bot.toml"
    );
    let out = Command::new(crate::support::remit())
        .args(["register", "--format", "json", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["agents"],
        serde_json::json!([{
            "agent": "support-bot",
            "owner": "payments-team@example.com",
            "description": "answers customers about their bills",
        }])
    );
}

#[test]
fn demo_refuses_a_register_given_on_the_command_line() {
    let out = Command::new(crate::support::remit())
        .args(["demo", "--exit", "--port", "0", "-r", "mine.toml"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("`remit demo` runs its own example register and takes no `--register`"),
        "{err}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "the demo ran");
}
