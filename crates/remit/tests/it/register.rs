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
            "| `billing.issue_refund` | support-bot | write |",
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
