use super::*;
use std::path::Path;

fn env(name: &str) -> Option<String> {
    match name {
        "REMIT_TOKEN_SUPPORT_BOT" => Some("s3cret-token-of-support-bot".to_owned()),
        "BILLING_KEY" => Some("bk_live_123".to_owned()),
        _ => None,
    }
}

fn compile_str(src: &str) -> (Option<Register>, Vec<Diagnostic>) {
    compile(
        src,
        Path::new("/etc/remit/remit.toml"),
        &env,
        Strictness::Serve,
    )
}

const GOOD: &str = r#"
[gateway]
listen = "127.0.0.1:8470"
store = "sqlite://remit.db"

[agents.support-bot]
owner = "payments@example.com"
token = { env = "REMIT_TOKEN_SUPPORT_BOT" }

[upstreams.billing]
command = ["billing-mcp", "--db", "billing.db"]
env = { BILLING_API_KEY = { env = "BILLING_KEY" } }

[actions."billing.get_customer"]
agents = ["support-bot"]
tier = "read"

[actions."billing.issue_refund"]
agents = ["support-bot"]
tier = "write"
require = "args.amount > 0 && args.amount <= 500"
budget = [{ count = 20, per = "1h" }, { sum = "args.amount", max = 1000, per = "24h" }]
redact = ["args.card_number"]
"#;

fn errors(d: &[Diagnostic]) -> Vec<String> {
    d.iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.render("remit.toml"))
        .collect()
}

#[test]
fn a_good_register_compiles_with_its_parts_resolved() {
    let (reg, diags) = compile_str(GOOD);
    assert!(errors(&diags).is_empty(), "{diags:?}");
    let reg = reg.unwrap();
    assert_eq!(reg.actions.len(), 2);
    let refund = reg.action_exposed_as("billing.issue_refund").unwrap();
    assert_eq!(refund.tier, Tier::Write);
    assert_eq!(refund.conditions.len(), 1);
    assert_eq!(refund.budgets.len(), 2);
    assert_eq!(refund.redact, vec![vec!["card_number".to_owned()]]);
    assert!(reg.version.as_str().starts_with("sha256:"));
    assert_eq!(reg.gateway.base_dir, Path::new("/etc/remit"));
    let hash: [u8; 32] = Sha256::digest(b"s3cret-token-of-support-bot").into();
    assert_eq!(
        reg.agent_by_token_hash(&hash).unwrap().id.as_str(),
        "support-bot"
    );
    assert!(reg.agent_by_token_hash(&[0; 32]).is_none());
}

use sha2::{Digest, Sha256};

#[test]
fn unknown_key_is_located_with_a_did_you_mean() {
    let src = GOOD.replace("require = ", "requir = ");
    let (reg, diags) = compile_str(&src);
    assert!(reg.is_none());
    let e = errors(&diags);
    assert_eq!(e.len(), 1, "{e:?}");
    let line = src.lines().position(|l| l.starts_with("requir")).unwrap() + 1;
    assert!(
        e[0].starts_with(&format!(
            "remit.toml:{line}:1: error: unknown field `requir`"
        )),
        "{}",
        e[0]
    );
    assert!(e[0].contains("did you mean `require`?"), "{}", e[0]);
}

#[test]
fn cel_that_does_not_compile_points_into_the_expression() {
    // (the condition as written in the file, where the error is, what it says)
    let cases = [
        (
            "require = \"args.amount > 0 && args.amount <= \"",
            "\"\nbudget",
            "the expression ends too soon: expected a value",
        ),
        (
            "require = \"args.amount > && 5\"",
            "&& 5",
            "unexpected `&&`: expected a value",
        ),
        // escapes and a literal string: the column is where the token is written
        (
            "require = \"args.reason == \\\"a\\u00e9\\\" && && 1\"",
            "&& 1",
            "unexpected `&&`: expected a value",
        ),
        (
            "require = 'args.reason == \"a\" && && 1'",
            "&& 1",
            "unexpected `&&`: expected a value",
        ),
        (
            "require = [\"args.amount > 0\", \"\"\"\nargs.amount > 0 &&\n  )\"\"\"]",
            ")\"\"\"",
            "unexpected `)`: expected a value",
        ),
        (
            "require = \"args.amount = 5\"",
            "= 5",
            "`=` is not an operator: a comparison is written `==`",
        ),
    ];
    for (require, at, message) in cases {
        let src = GOOD.replace(
            "require = \"args.amount > 0 && args.amount <= 500\"",
            require,
        );
        let (_, diags) = compile_str(&src);
        let e = errors(&diags);
        assert_eq!(e.len(), 1, "{require}: {e:?}");
        assert!(
            e[0].starts_with(&format!("{} error: ", located(&src, at, 0, 0))),
            "{require}: {}",
            e[0]
        );
        assert!(e[0].contains("does not compile: "), "{}", e[0]);
        assert!(e[0].contains(message), "{require}: {}", e[0]);
        // the parser's own words are not shown
        assert!(!e[0].contains("IDENTIFIER"), "{}", e[0]);
        assert!(e[0].contains("\n  help: "), "{}", e[0]);
    }
}

#[test]
fn conditions_and_budget_sums_that_read_other_than_args_are_errors_at_the_expression() {
    // (what replaces GOOD's require and budget lines, where the error is, what it says, its hint)
    let require = "require = \"args.amount > 0 && args.amount <= 500\"\n";
    let budget = "budget = [{ count = 20, per = \"1h\" }, { sum = \"args.amount\", max = 1000, per = \"24h\" }]\n";
    let cases: [(&str, &str, &str, &str, &str); 4] = [
        (
            require,
            "require = \"arg.amount > 0\"\n",
            "arg.amount > 0\"",
            "condition `arg.amount > 0` reads `arg`, which it will not see",
            "did you mean `args`? condition sees only `args` (the call's arguments)",
        ),
        (
            require,
            "require = [\"args.amount > 0\", \"result.ok\"]\n",
            "result.ok\"",
            "condition `result.ok` reads `result`, which it will not see",
            "condition sees only `args` (the call's arguments)",
        ),
        (
            require,
            "require = \"args.items.all(x, x > 0) && amount < 5\"\n",
            "args.items.all",
            "condition `args.items.all(x, x > 0) && amount < 5` reads `amount`, which it will not see",
            "condition sees only `args`",
        ),
        (
            budget,
            "budget = [{ sum = \"arg.amount\", max = 1000, per = \"24h\" }]\n",
            "arg.amount\"",
            "budget sum `arg.amount` reads `arg`, which it will not see",
            "did you mean `args`? budget sum sees only `args`",
        ),
    ];
    for (line, written, at, message, help) in cases {
        let src = GOOD.replace(line, written);
        assert_ne!(src, GOOD);
        assert_one_error(&src, at, message, help, written);
    }
    // a macro's own variable is not read from outside
    let src = GOOD.replace(require, "require = \"args.items.all(x, x > 0)\"\n");
    let (reg, diags) = compile_str(&src);
    assert!(reg.is_some(), "{diags:?}");
    // nor are CEL's type names, which a condition may compare with
    let src = GOOD.replace(
        require,
        "require = \"type(args.amount) == uint && args.amount <= 500\"\n",
    );
    let (reg, diags) = compile_str(&src);
    assert!(reg.is_some(), "{diags:?}");
}

#[test]
fn unknown_agent_and_upstream_are_errors_with_hints() {
    let src = GOOD
        .replace(
            "agents = [\"support-bot\"]\ntier = \"read\"",
            "agents = [\"support-boot\"]\ntier = \"read\"",
        )
        .replace(
            "[actions.\"billing.issue_refund\"]",
            "[actions.\"biling.issue_refund\"]",
        );
    let (_, diags) = compile_str(&src);
    let e = errors(&diags);
    assert!(
        e.iter().any(|m| m.contains("unknown agent `support-boot`")
            && m.contains("did you mean `support-bot`?")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains("unknown upstream `biling`")
                && m.contains("did you mean `billing`?")),
        "{e:?}"
    );
}

#[test]
fn a_token_written_in_the_file_is_refused() {
    let src = GOOD.replace(
        "token = { env = \"REMIT_TOKEN_SUPPORT_BOT\" }",
        "token = \"abcdefabcdefabcdefabcdef\"",
    );
    let (_, diags) = compile_str(&src);
    let e = errors(&diags);
    assert!(
        e.iter()
            .any(|m| m.contains("is written in the register") && m.contains("env =")),
        "{e:?}"
    );
    assert!(
        !e.iter().any(|m| m.contains("abcdefabcdef")),
        "the token must not be echoed: {e:?}"
    );
}

#[test]
fn missing_environment_is_an_error_to_serve_and_a_warning_to_check() {
    let src = GOOD.replace("BILLING_KEY", "NOT_SET_ANYWHERE");
    let (reg, diags) = compile_str(&src);
    assert!(reg.is_none());
    assert!(
        errors(&diags)
            .iter()
            .any(|m| m.contains("`NOT_SET_ANYWHERE`"))
    );
    let (reg, diags) = compile(&src, Path::new("remit.toml"), &env, Strictness::Check);
    assert!(reg.is_some(), "{diags:?}");
    assert!(
        diags
            .iter()
            .any(|d| d.severity == Severity::Warning && d.message.contains("NOT_SET_ANYWHERE"))
    );
}

#[test]
fn risky_actions_get_warnings() {
    let src = format!(
        "{GOOD}\n[actions.\"billing.send_email\"]\nagents = [\"support-bot\"]\ntier = \"irreversible\"\n"
    );
    let (reg, diags) = compile_str(&src);
    assert!(reg.is_some());
    let w: Vec<_> = diags
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(|d| d.message.clone())
        .collect();
    assert!(
        w.iter()
            .any(|m| m.contains("`billing.send_email` needs no approval")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|m| m.contains("no condition, no budget and no approval")),
        "{w:?}"
    );
}

#[test]
fn later_controls_are_reported_not_ignored() {
    let src = GOOD.replace(
        "redact = [\"args.card_number\"]",
        "redact = [\"args.card_number\"]\nundo = { tool = \"billing.cancel_refund\", args = { id = \"result.refund_id\" }, within = \"30m\" }",
    );
    let (reg, diags) = compile_str(&src);
    assert!(
        reg.unwrap()
            .action_exposed_as("billing.issue_refund")
            .unwrap()
            .undo
            .is_some()
    );
    assert!(diags.iter().any(|d| {
        d.message
            .contains("`undo` on `billing.issue_refund` is not yet enforced")
    }));
}

#[test]
fn bad_durations_and_budgets_are_located() {
    let src = GOOD.replace("per = \"1h\"", "per = \"1 hour\"");
    let (_, diags) = compile_str(&src);
    assert!(
        errors(&diags)
            .iter()
            .any(|m| m.contains("`1 hour` is not a duration"))
    );
    let src = GOOD.replace("max = 1000, ", "");
    let (_, diags) = compile_str(&src);
    assert!(
        errors(&diags)
            .iter()
            .any(|m| m.contains("a `sum` budget needs a `max`"))
    );
}

/// Charges are kept by what a budget is: two budgets of one action counting the same thing
/// over the same window (`24h` and `1d` alike) would share them, so the register says so.
#[test]
fn two_budgets_counting_the_same_over_the_same_window_are_an_error() {
    let budget = "budget = [{ count = 20, per = \"1h\" }, { sum = \"args.amount\", max = 1000, per = \"24h\" }]";
    assert!(GOOD.contains(budget));
    for (twin, same) in [
        (
            "{ sum = \"args.amount\", max = 500, per = \"1d\" }",
            "sum of `args.amount`",
        ),
        ("{ count = 5, per = \"60m\" }", "at most 20 calls per 1h"),
    ] {
        let src = GOOD.replace(budget, &budget.replace("]", &format!(", {twin}]")));
        let (_, diags) = compile_str(&src);
        assert!(
            errors(&diags)
                .iter()
                .any(|m| m.contains("counts what an earlier one does") && m.contains(same)),
            "{twin}: {diags:?}"
        );
    }
    // another window, or another sum, is another budget
    for other in [
        "{ sum = \"args.amount\", max = 500, per = \"1h\" }",
        "{ count = 5, per = \"1m\" }",
    ] {
        let src = GOOD.replace(budget, &budget.replace("]", &format!(", {other}]")));
        let (reg, diags) = compile_str(&src);
        assert!(errors(&diags).is_empty(), "{other}: {diags:?}");
        let reg = reg.unwrap();
        let budgets = &reg
            .action_exposed_as("billing.issue_refund")
            .unwrap()
            .budgets;
        assert_eq!(budgets.len(), 3);
    }
}

#[test]
fn exposed_names_must_not_collide() {
    let src = r#"
[agents.a]
[upstreams.one]
command = ["x"]
namespace = false
[upstreams.two]
command = ["y"]
namespace = false
[actions."one.t"]
agents = ["a"]
tier = "read"
[actions."two.t"]
agents = ["a"]
tier = "read"
"#;
    let (_, diags) = compile_str(src);
    assert!(
        errors(&diags).iter().any(|m| m.contains("the same name")),
        "{diags:?}"
    );
}

#[test]
fn durations_parse() {
    assert_eq!(
        compile::parse_duration("30s"),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        compile::parse_duration("24h"),
        Some(Duration::from_secs(86_400))
    );
    assert_eq!(
        compile::parse_duration("500ms"),
        Some(Duration::from_millis(500))
    );
    assert_eq!(compile::parse_duration("0s"), None);
    assert_eq!(compile::parse_duration("h"), None);
    assert_eq!(compile::parse_duration("5 m"), None);
}

#[test]
fn an_upstream_header_remit_sets_itself_is_an_error_at_its_key() {
    let src = GOOD.replace(
        "[upstreams.billing]\ncommand = [\"billing-mcp\", \"--db\", \"billing.db\"]\nenv = { BILLING_API_KEY = { env = \"BILLING_KEY\" } }",
        "[upstreams.billing]\nurl = \"http://127.0.0.1:9/mcp\"\nheaders = { Authorization = { env = \"BILLING_KEY\" }, Content-Length = \"5\", MCP-Name = \"x\" }",
    );
    assert!(
        src.contains("Content-Length"),
        "the test register was not rewritten"
    );
    let (_, diags) = compile_str(&src);
    let errors = errors(&diags);
    assert_eq!(errors.len(), 2, "{errors:?}");
    let line = src.lines().position(|l| l.starts_with("headers")).unwrap() + 1;
    let column = src
        .lines()
        .nth(line - 1)
        .unwrap()
        .find("Content-Length")
        .unwrap()
        + 1;
    assert!(
        errors[0].starts_with(&format!(
            "remit.toml:{line}:{column}: error: header `Content-Length` is set by remit"
        )),
        "{errors:?}"
    );
    assert!(errors[1].contains("header `MCP-Name`"), "{errors:?}");
    assert!(errors.iter().all(|e| e.contains("remove it")), "{errors:?}");
    // a header the upstream asks for is fine
    let fine = src.replace(
        ", Content-Length = \"5\", MCP-Name = \"x\"",
        ", X-Tenant = \"acme\"",
    );
    assert!(errors_of(&fine).is_empty(), "{:?}", errors_of(&fine));
}

fn errors_of(src: &str) -> Vec<String> {
    errors(&compile_str(src).1)
}

#[test]
fn a_sum_budget_max_that_no_charge_can_be_held_to_is_an_error() {
    // TOML has `nan` and `inf`; each of these once passed `remit check`, then refused
    // every call at run time (as a store error, or as over budget)
    for max in ["nan", "inf", "-inf", "-5", "0", "1e300"] {
        let src = GOOD.replace("max = 1000", &format!("max = {max}"));
        let e = errors_of(&src);
        let line = src.lines().position(|l| l.starts_with("budget")).unwrap() + 1;
        let column = src.lines().nth(line - 1).unwrap().find("max =").unwrap() + 7;
        assert_eq!(e.len(), 1, "max = {max}: {e:?}");
        assert!(
            e[0].starts_with(&format!(
                "remit.toml:{line}:{column}: error: `max` must be a number above 0 and at most 2^53"
            )),
            "max = {max}: {}",
            e[0]
        );
    }
}

#[test]
fn a_redacted_path_with_an_empty_or_padded_field_is_an_error() {
    for path in [
        "args.card_number.",
        "args..card_number",
        "args. card_number",
        "result.",
        "result.card..number",
        "card_number",
        "results.card_number",
    ] {
        let src = GOOD.replace("\"args.card_number\"", &format!("\"{path}\""));
        let e = errors_of(&src);
        assert_eq!(e.len(), 1, "{path}: {e:?}");
        assert!(
            e[0].contains(&format!(
                "`{path}` is not an argument or result path: nothing would be redacted"
            )),
            "{}",
            e[0]
        );
    }
    let src = GOOD.replace(
        "\"args.card_number\"",
        "\"args.card.number\", \"result.card_number\", \"result.customers.card\"",
    );
    let (reg, diags) = compile_str(&src);
    let reg = reg.unwrap_or_else(|| panic!("{diags:?}"));
    let refund = reg.action_exposed_as("billing.issue_refund").unwrap();
    assert_eq!(
        refund.redact,
        vec![vec!["card".to_owned(), "number".to_owned()]]
    );
    assert_eq!(
        refund.redact_result,
        vec![
            vec!["card_number".to_owned()],
            vec!["customers".to_owned(), "card".to_owned()]
        ]
    );
}

#[test]
fn a_redacted_result_field_the_tools_output_schema_lacks_is_an_error() {
    use crate::ids::UpstreamName;
    use crate::ports::ToolSpec;
    let (reg, diags) = compile_str(&GOOD.replace("args.card_number", "result.card_numbr"));
    let reg = reg.unwrap_or_else(|| panic!("{diags:?}"));
    let spec = |output: Option<serde_json::Value>| {
        let mut definition = serde_json::json!({
            "name": "issue_refund",
            "inputSchema": { "type": "object", "properties": { "amount": {} } }
        });
        if let Some(props) = output {
            definition["outputSchema"] =
                serde_json::json!({ "type": "object", "properties": props });
        }
        ToolSpec {
            upstream: UpstreamName::new("billing"),
            name: "issue_refund".to_owned(),
            definition: definition.as_object().unwrap().clone(),
        }
    };
    let tools = [spec(Some(
        serde_json::json!({ "card_number": {}, "id": {} }),
    ))];
    let found = findings::against_tools(&reg, &tools, &["billing"]);
    let e = errors(&found);
    let wanted = "`redact` names `result.card_numbr`, but tool `billing.issue_refund` has no result field `card_numbr`";
    assert!(
        e.iter()
            .any(|e| e.contains(wanted) && e.contains("did you mean `card_number`?")),
        "{e:?}"
    );
    // a tool without an output schema: nothing to check the path against
    let tools = [spec(None)];
    let found = findings::against_tools(&reg, &tools, &["billing"]);
    assert!(
        !errors(&found).iter().any(|e| e.contains("redact")),
        "{found:?}"
    );
}

#[test]
fn a_redacted_argument_the_tool_does_not_have_is_an_error_when_its_schema_is_known() {
    use crate::ids::UpstreamName;
    use crate::ports::ToolSpec;
    let (reg, diags) = compile_str(&GOOD.replace("args.card_number", "args.card_numbr"));
    let reg = reg.unwrap_or_else(|| panic!("{diags:?}"));
    let spec = |name: &str, props: serde_json::Value| ToolSpec {
        upstream: UpstreamName::new("billing"),
        name: name.to_owned(),
        definition: serde_json::json!({
            "name": name,
            "inputSchema": { "type": "object", "properties": props }
        })
        .as_object()
        .unwrap()
        .clone(),
    };
    let tools = [
        spec("get_customer", serde_json::json!({ "id": {} })),
        spec(
            "issue_refund",
            serde_json::json!({ "amount": {}, "card_number": {} }),
        ),
    ];
    let found = findings::against_tools(&reg, &tools, &["billing"]);
    let e = errors(&found);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains(
            "`redact` names `args.card_numbr`, but tool `billing.issue_refund` has no argument `card_numbr`"
        ),
        "{}",
        e[0]
    );
    assert!(e[0].contains("did you mean `card_number`?"), "{}", e[0]);
    let (reg, _) = compile_str(GOOD);
    let reg = reg.unwrap();
    assert!(errors(&findings::against_tools(&reg, &tools, &["billing"])).is_empty());
}
/// Asserts `src` does not compile and gives exactly one error, located at the first `at`,
/// whose message contains `message` and whose hint contains `help` (`case` names it in failures).
fn assert_one_error(src: &str, at: &str, message: &str, help: &str, case: &str) {
    let (reg, diags) = compile_str(src);
    assert!(reg.is_none(), "{case}: {diags:?}");
    let e = errors(&diags);
    assert_eq!(e.len(), 1, "{case}: {e:?}");
    let d = diags
        .iter()
        .find(|d| d.severity == Severity::Error)
        .unwrap();
    assert!(
        e[0].starts_with(&format!("{} error: ", located(src, at, 0, 0))),
        "{case}: {e:?}"
    );
    assert!(d.message.contains(message), "{case}: {}", d.message);
    let hint = d.help.as_deref().unwrap_or_default();
    assert!(hint.contains(help), "{case}: {hint}");
}

/// `remit.toml:LINE:COLUMN:` of the `nth` (from 0) occurrence of `needle` in `src`, plus
/// `shift` columns (1 steps past an opening quote).
fn located(src: &str, needle: &str, nth: usize, shift: usize) -> String {
    let offset = src
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("`{needle}` #{nth} not in {src}"))
        .0;
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let column = offset - before.rfind('\n').map_or(0, |i| i + 1) + 1 + shift;
    format!("remit.toml:{line}:{column}:")
}

fn billing_tool(name: &str, props: &serde_json::Value) -> crate::ports::ToolSpec {
    crate::ports::ToolSpec {
        upstream: UpstreamName::new("billing"),
        name: name.to_owned(),
        definition: serde_json::json!({
            "name": name,
            "inputSchema": { "type": "object", "properties": props }
        })
        .as_object()
        .unwrap()
        .clone(),
    }
}

#[test]
fn each_condition_of_a_list_is_located_by_its_own_span() {
    // the second is the start of the first, and the last two are the same text: a search
    // for an expression's text found the first entry for all three
    let src = GOOD.replace(
        "require = \"args.amount > 0 && args.amount <= 500\"",
        "require = [\"args.amount > 0 && args.x\", \"args.amount > 0 &&\", \"args.amount >\", \"args.amount >\"]",
    );
    let e = errors(&compile_str(&src).1);
    assert_eq!(e.len(), 3, "{e:?}");
    // each at the end of its own text, where the parser found it ended too soon
    for (e, (needle, nth)) in e.iter().zip([
        ("\"args.amount > 0 &&\"", 0),
        ("\"args.amount >\"", 0),
        ("\"args.amount >\"", 1),
    ]) {
        assert!(
            e.starts_with(&located(&src, needle, nth, needle.len() - 1)),
            "{needle} #{nth}: {e}"
        );
        assert!(e.contains("does not compile"), "{e}");
    }
    // a multi-line string: its text starts on the line after its quotes
    let src = GOOD.replace(
        "require = \"args.amount > 0 && args.amount <= 500\"",
        "require = [\"args.amount > 0\", \"\"\"\nargs.amount >\"\"\"]",
    );
    let e = errors(&compile_str(&src).1);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(&located(&src, "\"\"\"]", 0, 0)),
        "{}",
        e[0]
    );
}

#[test]
fn findings_point_at_the_entry_they_are_about() {
    let src = GOOD
        .replace(
            "require = \"args.amount > 0 && args.amount <= 500\"",
            "require = [\"args.amount > 0\", \"args.amount > 0 && args.x\"]",
        )
        .replace("sum = \"args.amount\"", "sum = \"args.amout\"")
        .replace("args.card_number", "args.card_numbr")
        + "\n[actions.\"billing.refund_all\"]\nagents = [\"support-bot\"]\ntier = \"irreversible\"\n";
    let (reg, diags) = compile_str(&src);
    let reg = reg.unwrap_or_else(|| panic!("{diags:?}"));
    let tools = [
        billing_tool("get_customer", &serde_json::json!({ "id": {} })),
        billing_tool(
            "issue_refund",
            &serde_json::json!({ "amount": {}, "card_number": {} }),
        ),
    ];
    let found = findings::against_tools(&reg, &tools, &["billing"]);
    let e = errors(&found);
    assert_eq!(e.len(), 4, "{e:?}");
    for (wanted, at) in [
        (
            "`args.amount > 0 && args.x` reads `args.x`",
            located(&src, "\"args.amount > 0 && args.x\"", 0, 1),
        ),
        (
            "`args.amout` reads `args.amout`",
            located(&src, "\"args.amout\"", 0, 1),
        ),
        (
            "`redact` names `args.card_numbr`",
            located(&src, "\"args.card_numbr\"", 0, 0),
        ),
        (
            "upstream `billing` has no tool `refund_all`",
            located(&src, "\"billing.refund_all\"", 0, 0),
        ),
    ] {
        assert!(
            e.iter().any(|e| e.starts_with(&at) && e.contains(wanted)),
            "{wanted} at {at}: {e:?}"
        );
    }
    let warnings: Vec<String> = diags
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(|d| d.render("remit.toml"))
        .collect();
    for (wanted, at) in [
        (
            "irreversible action `billing.refund_all` needs no approval",
            located(&src, "\"irreversible\"", 0, 0),
        ),
        (
            "action `billing.refund_all` has no condition",
            located(&src, "\"billing.refund_all\"", 0, 0),
        ),
    ] {
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with(&at) && w.contains(wanted)),
            "{wanted} at {at}: {warnings:?}"
        );
    }
    // the upstream's own place, for a warning that it could not be reached
    let billing = reg.upstreams.values().next().unwrap();
    assert_eq!(
        located(&src, "billing]", 0, 0),
        format!("remit.toml:{}:{}:", billing.at.line, billing.at.column)
    );
}

#[test]
fn unknown_keys_in_blocks_not_yet_enforced_are_errors_with_a_did_you_mean() {
    let blocks = "redact = [\"args.card_number\"]\n\
        approve = { bye = \"finance\", quorum = 1 }\n\
        undo = { tool = \"billing.cancel_refund\", whitin = \"30m\", colour = \"red\" }\n\
        delay = { seconds = 60 }\n\
        \n\
        [actions.\"billing.issue_refund\".verify]\n\
        probe = { tool = \"billing.get_refund\" }\n\
        expct = \"probe.status == 'issued'\"\n";
    let src = GOOD.replace("redact = [\"args.card_number\"]\n", blocks);
    let (reg, diags) = compile_str(&src);
    assert!(reg.is_none());
    let e = errors(&diags);
    assert_eq!(e.len(), 4, "{e:?}");
    for (key, block, help) in [
        ("bye", "approve", "did you mean `by`?"),
        ("whitin", "undo", "did you mean `within`?"),
        (
            "colour",
            "undo",
            "remove `colour`; see docs/register.md for the keys of `undo`",
        ),
        ("expct", "verify", "did you mean `expect`?"),
    ] {
        let at = located(&src, &format!("{key} ="), 0, 0);
        assert!(
            e.iter().any(|e| e.starts_with(&format!(
                "{at} error: unknown field `{key}` in `{block}`, expected one of"
            )) && e.contains(help)),
            "{key}: {e:?}"
        );
    }
    let delay = diags
        .iter()
        .find(|d| {
            d.message
                .contains("`delay` on `billing.issue_refund` is written as a table")
        })
        .unwrap_or_else(|| panic!("{diags:?}"));
    assert_eq!(delay.severity, Severity::Warning);
    assert!(delay.message.contains("`seconds`"), "{}", delay.message);
    assert!(
        delay
            .render("remit.toml")
            .starts_with(&located(&src, "{ seconds", 0, 0)),
        "{delay:?}"
    );

    // the keys the brief's sketch gives: no error, and an unknown group located at `by`
    let blocks = "redact = [\"args.card_number\"]\n\
        approve = { when = \"args.amount > 100\", by = \"finanse\", quorum = 1, expires = \"4h\" }\n\
        undo = { tool = \"billing.cancel_refund\", args = { id = \"result.refund_id\" }, within = \"30m\" }\n\
        delay = \"60s\"\n\
        \n\
        [actions.\"billing.issue_refund\".verify]\n\
        probe = { tool = \"billing.get_refund\", args = { id = \"result.refund_id\" } }\n\
        expect = \"probe.status == 'issued' && probe.amount == args.amount\"\n\
        within = \"5s\"\n\
        \n\
        [approvers]\n\
        finance = [\"ana\"]\n";
    let src = GOOD.replace("redact = [\"args.card_number\"]\n", blocks);
    let e = errors(&compile_str(&src).1);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(&format!(
            "{} error: approval names unknown approver group `finanse`",
            located(&src, "\"finanse\"", 0, 0)
        )) && e[0].contains("did you mean `finance`?"),
        "{}",
        e[0]
    );
    let src = src.replace("finanse", "finance");
    let (reg, diags) = compile_str(&src);
    assert!(reg.is_some(), "{diags:?}");
}

#[test]
fn values_in_blocks_not_yet_enforced_are_checked_at_the_value() {
    // (the blocks written, where the error is, what it says, what its hint says)
    let cases: [(&str, &str, &str, &str); 14] = [
        (
            "approve = { by = \"finance\", expires = \"4 hours\" }",
            "\"4 hours\"",
            "`approve.expires` is `\"4 hours\"`, not a duration",
            "`expires = \"30m\"`",
        ),
        (
            "approve = { by = \"finance\", expires = 4 }",
            "4 }",
            "`approve.expires` is `4`, not a duration",
            "a number and a unit",
        ),
        (
            "verify = { expect = \"true\", within = \"5\" }",
            "\"5\"",
            "`verify.within` is `\"5\"`, not a duration",
            "`within = \"30m\"`",
        ),
        (
            "undo = { tool = \"billing.cancel_refund\", within = \"0s\" }",
            "\"0s\"",
            "`undo.within` is `\"0s\"`, not a duration",
            "`within = \"30m\"`",
        ),
        (
            "delay = \"soon\"",
            "\"soon\"",
            "`delay` is `\"soon\"`, not a duration",
            "`delay = \"30m\"`",
        ),
        (
            "approve = { by = \"finance\", quorum = 0 }",
            "0 }",
            "`approve.quorum` must be a positive integer, not `0`",
            "`quorum = 2`",
        ),
        (
            "approve = { by = \"finance\", quorum = \"two\" }",
            "\"two\"",
            "`approve.quorum` must be a positive integer, not `\"two\"`",
            "`quorum = 2`",
        ),
        (
            "approve = { by = \"finance\", when = \"args.amount >\" }",
            "\" }\n\n[approvers]",
            "`approve.when` `args.amount >` does not compile",
            "CEL over `args` (the call's arguments)",
        ),
        (
            "approve = { by = \"finance\", when = \"result.amount > 100\" }",
            "result.amount > 100",
            "`approve.when` `result.amount > 100` reads `result`, which it will not see",
            "sees only `args` (the call's arguments)",
        ),
        (
            "verify = { expect = \"probe.status == \" }",
            "\" }\n\n[approvers]",
            "`verify.expect` `probe.status == ` does not compile",
            "`probe` (the answer of `verify.probe`)",
        ),
        (
            "verify = { expect = \"probe.amount == args.amount && reply.ok\" }",
            "probe.amount == args",
            "reads `reply`, which it will not see",
            "`args` (the call's arguments), `result` (the upstream's answer) and `probe`",
        ),
        (
            "undo = { impossible = \" \" }",
            "\" \"",
            "`undo.impossible` must say why the call cannot be undone",
            "impossible = \"the wire transfer",
        ),
        (
            "approve = \"finance\"",
            "\"finance\"",
            "`approve` on `billing.issue_refund` is `\"finance\"`, not a table of keys",
            "write it as a table: `approve = { by = \"finance\"",
        ),
        (
            "undo = [\"billing.cancel_refund\"]",
            "[\"billing.cancel",
            "`undo` on `billing.issue_refund` is `[\"billing.cancel_refund\"]`, not a table",
            "`undo = { impossible = \"why\" }`",
        ),
    ];
    for (blocks, at, message, help) in cases {
        let src = GOOD.replace(
            "redact = [\"args.card_number\"]\n",
            &format!("{blocks}\n\n[approvers]\nfinance = [\"ana\"]\n"),
        );
        assert_one_error(&src, at, message, help, blocks);
    }

    // each value as the docs give it, and a macro's own variable, pass
    let blocks = "approve = { by = \"finance\", when = \"args.amount > 100\", quorum = 1, expires = \"4h\" }\n\
        delay = \"60s\"\n\
        verify = { probe = { tool = \"billing.get_refund\" }, expect = \"probe.status == 'issued' && result.ok && args.amount > 0 && [1].all(x, x > 0)\", within = \"5s\" }\n\
        undo = { impossible = \"the money has left\" }\n\
        \n\
        [approvers]\n\
        finance = [\"ana\"]\n";
    let src = GOOD.replace("redact = [\"args.card_number\"]\n", blocks);
    let (reg, diags) = compile_str(&src);
    assert!(reg.is_some(), "{diags:?}");
}

#[test]
fn a_quorum_larger_than_its_approver_group_is_an_error_at_the_quorum() {
    // a name written twice is one approver
    let blocks = "approve = { by = \"finance\", quorum = 3 }\n\n[approvers]\nfinance = [\"ana\", \"bo\", \"ana\"]\n";
    let src = GOOD.replace("redact = [\"args.card_number\"]\n", blocks);
    let (reg, diags) = compile_str(&src);
    assert!(reg.is_none(), "{diags:?}");
    let e = errors(&diags);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(&format!(
            "{} error: `approve.quorum` is 3, but group `finance` has 2 approvers: no call of `billing.issue_refund` could ever be approved",
            located(&src, "3 }", 0, 0)
        )),
        "{}",
        e[0]
    );
    assert!(
        e[0].contains("lower it to at most `quorum = 2`, or add approvers to `finance`"),
        "{}",
        e[0]
    );
    let src = src.replace("quorum = 3", "quorum = 2");
    let (reg, diags) = compile_str(&src);
    assert!(reg.is_some(), "{diags:?}");
}

#[test]
fn tools_and_arguments_of_verify_and_undo_are_checked_at_the_value() {
    // (the blocks written, where the error is, what it says, what its hint says)
    let cases: [(&str, &str, &str, &str); 12] = [
        (
            "verify = { probe = { tool = \"billing.get_refund\", arg = { id = \"result.refund_id\" } } }",
            "arg =",
            "unknown key `arg` in `verify.probe`",
            "did you mean `args`?",
        ),
        (
            "verify = { probe = { args = { id = \"result.refund_id\" } } }",
            "{ args",
            "`verify.probe` names no `tool`",
            "probe = { tool = \"billing.get_refund\"",
        ),
        (
            "undo = { tool = \"cancel_refund\" }",
            "\"cancel_refund\"",
            "`undo.tool` `cancel_refund` does not name its upstream",
            "`billing.cancel_refund`",
        ),
        (
            "undo = { tool = \"biling.cancel_refund\" }",
            "\"biling.",
            "`undo.tool` `biling.cancel_refund` names unknown upstream `biling`",
            "did you mean `billing`?",
        ),
        (
            "undo = { tool = \"ledger.reverse\" }",
            "\"ledger.",
            "`undo.tool` `ledger.reverse` names unknown upstream `ledger`",
            "add `[upstreams.ledger]`",
        ),
        (
            "undo = { tool = 5 }",
            "5 }",
            "`undo.tool` is `5`, not a tool name",
            "`UPSTREAM.TOOL`",
        ),
        (
            "undo = { tool = \"billing.cancel_refund\", args = { id = \"reply.refund_id\" } }",
            "reply.refund_id",
            "`undo.args.id` `reply.refund_id` reads `reply`, which it will not see",
            "`args` (the call's arguments) and `result` (the upstream's answer)",
        ),
        (
            "undo = { tool = \"billing.cancel_refund\", args = { id = \"result.\" }, within = \"30m\" }",
            "\" }, within",
            "`undo.args.id` `result.` does not compile: a field name is missing after `.`",
            "CEL over `args` (the call's arguments) and `result`",
        ),
        (
            "undo = { tool = \"billing.cancel_refund\", args = \"result.refund_id\" }",
            "\"result.refund_id\"",
            "`undo.args` is `\"result.refund_id\"`, not a table of arguments",
            "`args = { id = \"result.refund_id\" }`",
        ),
        (
            "verify = { probe = { tool = \"billng.get_refund\" }, expect = \"true\" }",
            "\"billng.",
            "`verify.probe.tool` `billng.get_refund` names unknown upstream `billng`",
            "did you mean `billing`?",
        ),
        (
            "verify = { probe = { tool = \"billing.get_refund\", args = { id = \"args.id + resul.x\" } } }",
            "args.id + resul",
            "`verify.probe.args.id` `args.id + resul.x` reads `resul`",
            "did you mean `result`?",
        ),
        (
            "verify = { probe = \"billing.get_refund\", expect = \"true\" }",
            "\"billing.get_refund\"",
            "`verify.probe` is `\"billing.get_refund\"`, not a table of keys",
            "probe = { tool = \"billing.get_refund\"",
        ),
    ];
    for (blocks, at, message, help) in cases {
        let src = GOOD.replace("redact = [\"args.card_number\"]\n", &format!("{blocks}\n"));
        assert_one_error(&src, at, message, help, blocks);
    }

    // as the docs write them, both pass; against the upstream's tool list, a tool it lacks
    // is an error at the name, with "did you mean" (`verify`'s first, as the blocks go)
    let blocks = "undo = { tool = \"billing.cancel_refund\", args = { id = \"result.refund_id\", amount = \"args.amount\" }, within = \"30m\" }\n\
        verify = { probe = { tool = \"billing.get_refnd\", args = { id = \"result.refund_id\" } }, expect = \"probe.status == 'issued'\", within = \"5s\" }\n";
    let src = GOOD.replace("redact = [\"args.card_number\"]\n", blocks);
    let (reg, diags) = compile_str(&src);
    let reg = reg.unwrap_or_else(|| panic!("{diags:?}"));
    let tools = [
        billing_tool("get_customer", &serde_json::json!({ "id": {} })),
        billing_tool("issue_refund", &serde_json::json!({ "amount": {} })),
        billing_tool("get_refund", &serde_json::json!({ "id": {} })),
    ];
    let found = findings::against_tools(&reg, &tools, &["billing"]);
    let e = errors(&found);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[1].starts_with(&format!(
            "{} error: `undo.tool` names `billing.cancel_refund`, but upstream `billing` has no tool `cancel_refund`",
            located(&src, "\"billing.cancel_refund\"", 0, 0)
        )),
        "{e:?}"
    );
    assert!(
        e[0].starts_with(&format!(
            "{} error: `verify.probe.tool` names `billing.get_refnd`, but upstream `billing` has no tool `get_refnd`",
            located(&src, "\"billing.get_refnd\"", 0, 0)
        )) && e[0].contains("did you mean `get_refund`?"),
        "{e:?}"
    );
    // an upstream that did not answer is not held to an empty list
    assert!(errors(&findings::against_tools(&reg, &tools, &[])).is_empty());
    let tools = [
        billing_tool("get_customer", &serde_json::json!({ "id": {} })),
        billing_tool("issue_refund", &serde_json::json!({ "amount": {} })),
        billing_tool("get_refund", &serde_json::json!({ "id": {} })),
        billing_tool("cancel_refund", &serde_json::json!({ "id": {} })),
    ];
    let src = src.replace("get_refnd", "get_refund");
    let (reg, diags) = compile_str(&src);
    let reg = reg.unwrap_or_else(|| panic!("{diags:?}"));
    let found = findings::against_tools(&reg, &tools, &["billing"]);
    assert!(errors(&found).is_empty(), "{found:?}");
}

#[test]
fn max_sessions_per_agent_defaults_to_64_and_must_be_at_least_1() {
    let (reg, diags) = compile_str(GOOD);
    assert!(errors(&diags).is_empty(), "{diags:?}");
    assert_eq!(reg.unwrap().gateway.max_sessions_per_agent, 64);
    let src = GOOD.replace("[gateway]", "[gateway]\nmax_sessions_per_agent = 5");
    let (reg, diags) = compile_str(&src);
    assert!(errors(&diags).is_empty(), "{diags:?}");
    assert_eq!(reg.unwrap().gateway.max_sessions_per_agent, 5);
    let src = GOOD.replace("[gateway]", "[gateway]\nmax_sessions_per_agent = 0");
    let (reg, diags) = compile_str(&src);
    assert!(reg.is_none());
    let errors = errors(&diags);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("remit.toml:3:26") && errors[0].contains("at least 1"),
        "{errors:?}"
    );
}

#[test]
fn arithmetic_that_fails_for_every_call_and_conditions_that_are_never_true_are_errors() {
    // they compiled and refused every call at run time, as the agent's fault
    let require = "require = \"args.amount > 0 && args.amount <= 500\"\n";
    let budget = "budget = [{ count = 20, per = \"1h\" }, { sum = \"args.amount\", max = 1000, per = \"24h\" }]\n";
    let cases: [(&str, &str, &str, &str, &str); 6] = [
        (
            require,
            "require = \"args.amount * 2 <= 100\"\n",
            "args.amount * 2",
            "arithmetic on `args.amount` with the integer `2` fails for every call",
            "`2.0`",
        ),
        (
            require,
            "require = \"args.lines.all(l, 10 - l.qty > 0.0) && args.fee + -3 < 9.0\"\n",
            "args.lines.all",
            "arithmetic on `args.fee` with the integer `-3`",
            "`-3.0`",
        ),
        (
            require,
            "require = \"args.count % 2 == 0\"\n",
            "args.count %",
            "`%` on `args.count` fails for every call",
            "`int(args.count) % ...`",
        ),
        (
            require,
            "require = \"'abc'\"\n",
            "'abc'",
            "condition `'abc'` gives a string, never true or false",
            "a condition is a test",
        ),
        (
            require,
            "require = [\"args.amount > 0\", \"args.amount / 100.0\"]\n",
            "args.amount / 100.0\"",
            "gives a number, never true or false",
            "a condition is a test",
        ),
        (
            budget,
            "budget = [{ sum = \"args.amount * 100\", max = 1000, per = \"24h\" }]\n",
            "args.amount * 100",
            "budget sum `args.amount * 100`: arithmetic on `args.amount` with the integer `100`",
            "`100.0`",
        ),
    ];
    for (line, written, at, message, help) in cases {
        let src = GOOD.replace(line, written);
        assert_ne!(src, GOOD);
        assert_one_error(&src, at, message, help, written);
    }
    // what works for every number is fine: doubles, conversions, sizes, comparisons
    for written in [
        "require = \"args.amount * 2.0 <= 100.0 && int(args.amount) % 2 == 0\"\n",
        "require = \"size(args.items) + 1 <= 10 && args.amount - 1.5 > 0.0\"\n",
        "require = \"args.confirmed\"\n",
        "require = \"args.note + '!' != '!'\"\n",
    ] {
        let src = GOOD.replace(require, written);
        let (reg, diags) = compile_str(&src);
        assert!(
            reg.is_some() && errors(&diags).is_empty(),
            "{written}: {diags:?}"
        );
    }
}

/// Every error of `src`, compiled for `remit check` (no environment variable set).
fn check_errors(src: &str) -> Vec<Diagnostic> {
    compile(
        src,
        Path::new("/etc/remit/remit.toml"),
        &|_| None,
        Strictness::Check,
    )
    .1
    .into_iter()
    .filter(|d| d.severity == Severity::Error)
    .collect()
}

#[test]
fn a_table_or_key_written_twice_is_named_with_where_it_was_first_written() {
    // a whole action twice: one error (not one more for each of its keys), at the second
    // header, naming the action and the line of the first
    let src = format!(
        "{GOOD}\n[actions.\"billing.get_customer\"]\nagents = [\"support-bot\"]\ntier = \"read\"\n"
    );
    let e = errors_of(&src);
    assert_eq!(e.len(), 1, "{e:?}");
    let first = src
        .lines()
        .position(|l| l == "[actions.\"billing.get_customer\"]")
        .unwrap()
        + 1;
    assert!(
        e[0].starts_with(&format!(
            "{} error: action `billing.get_customer` is defined twice, first at line {first}",
            located(&src, "\"billing.get_customer\"]", 1, 0)
        )),
        "{}",
        e[0]
    );
    assert!(
        e[0].contains("help: merge the two `[actions.\"billing.get_customer\"]` tables into one, or rename one of them"),
        "{}",
        e[0]
    );
    // a key twice in one action
    let src = GOOD.replace(
        "tier = \"write\"\n",
        "tier = \"write\"\ntier = \"irreversible\"\n",
    );
    let e = errors_of(&src);
    assert_eq!(e.len(), 1, "{e:?}");
    let first = src.lines().position(|l| l == "tier = \"write\"").unwrap() + 1;
    assert!(
        e[0].starts_with(&format!(
            "{} error: `tier` is written twice in action `billing.issue_refund`, first at line {first}",
            located(&src, "tier = \"irreversible\"", 0, 0)
        )),
        "{}",
        e[0]
    );
    assert!(e[0].contains("help: keep one `tier`"), "{}", e[0]);
    // an upstream, and `[gateway]`
    let src = format!(
        "{GOOD}\n[upstreams.billing]\ncommand = [\"x\"]\n[gateway]\nlisten = \"127.0.0.1:1\"\n"
    );
    let e = errors_of(&src);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].contains("upstream `billing` is defined twice, first at line 10"),
        "{e:?}"
    );
    assert!(
        e[1].contains("`[gateway]` is written twice, first at line 2"),
        "{e:?}"
    );
    assert!(
        e[1].contains("help: merge the two `[gateway]` tables into one"),
        "{e:?}"
    );
}

#[test]
fn a_value_of_the_wrong_type_is_told_in_the_registers_words_with_what_to_write() {
    // (what replaces what in GOOD, where the error is, what it says, what its help says)
    let cases = [
        (
            "agents = [\"support-bot\"]\ntier = \"read\"",
            "agents = \"support-bot\"\ntier = \"read\"",
            "\"support-bot\"\ntier = \"read\"",
            "`agents` must be a list of agent names, not the text `\"support-bot\"`",
            "`agents = [\"support-bot\"]`",
        ),
        (
            "count = 20",
            "count = 1.5",
            "1.5",
            "`count` must be a whole number of calls, not the number `1.5`",
            "`count = 20`",
        ),
        (
            "max = 1000",
            "max = \"1000\"",
            "\"1000\"",
            "`max` must be a number, not the text `\"1000\"`",
            "without quotes: `max = 1000`",
        ),
        (
            "[actions.\"billing.get_customer\"]",
            "[approvers]\nops = \"ana\"\n\n[actions.\"billing.get_customer\"]",
            "\"ana\"",
            "approver group `ops` must be a list of approver names, not the text `\"ana\"`",
            "`ops = [\"ana\"]`",
        ),
        (
            "command = [\"billing-mcp\", \"--db\", \"billing.db\"]",
            "command = \"billing-mcp --db billing.db\"",
            "\"billing-mcp --db",
            "`command` must be a list: the program and its arguments",
            "`command = [\"billing-mcp\", \"--db\", \"billing.db\"]`",
        ),
        (
            "[upstreams.billing]\n",
            "[upstreams.billing]\nnamespace = \"no\"\n",
            "\"no\"",
            "`namespace` must be `true` or `false`, not the text `\"no\"`",
            "`namespace = false`",
        ),
        (
            "budget = [{ count = 20, per = \"1h\" }, { sum = \"args.amount\", max = 1000, per = \"24h\" }]",
            "budget = { count = 20, per = \"1h\" }",
            "{ count = 20",
            "`budget` must be a list of budgets, not a table",
            "`budget = [{ count = 20, per = \"1h\" }]`",
        ),
        (
            "require = \"args.amount > 0 && args.amount <= 500\"",
            "require = true",
            "true",
            "`require` must be a CEL condition (text) or a list of them, not `true`",
            "in quotes",
        ),
        (
            "token = { env = \"REMIT_TOKEN_SUPPORT_BOT\" }",
            "token = { envv = \"REMIT_TOKEN_SUPPORT_BOT\" }",
            "envv",
            "unknown field `envv` in `token`",
            "did you mean `env`?",
        ),
        (
            "[gateway]\n",
            "[gateway]\nmax_request_bytes = -1\n",
            "-1",
            "`max_request_bytes` must be a whole number of bytes, not `-1`, below 0",
            "`max_request_bytes = 1048576`",
        ),
    ];
    for (from, to, at, message, help) in cases {
        assert!(GOOD.contains(from), "{from}");
        let src = GOOD.replacen(from, to, 1);
        assert_one_error(&src, at, message, help, to);
        // nothing in the parser's words
        let e = errors_of(&src).join("\n");
        assert!(
            !e.contains("invalid type") && !e.contains("expected a"),
            "{e}"
        );
    }
}

#[test]
fn toml_that_does_not_parse_is_told_with_what_to_write() {
    // (what replaces what in GOOD, where the error is, what it says, what its help says)
    let cases = [
        (
            "[actions.\"billing.get_customer\"]",
            "[actions.\"billing.get_customer\"",
            "\nagents = [\"support-bot\"]\ntier = \"read\"",
            "the table header is not closed: `]` is missing",
            "end the header with `]`",
        ),
        (
            "tier = \"read\"",
            "tier = read",
            "read\n",
            "`read` is not a value: text must be in quotes",
            "put text in quotes",
        ),
        (
            "agents = [\"support-bot\"]\ntier = \"read\"",
            "agents = [\"support-bot\"\ntier = \"read\"",
            "tier = \"read\"",
            "a `,` is missing between two items of a list",
            "end the list with `]`",
        ),
        (
            "tier = \"read\"",
            "tier = \"read",
            "\n\n[actions.\"billing.issue_refund\"]",
            "the text is not closed: `\"` is missing",
            "end it with `\"`",
        ),
    ];
    for (from, to, at, message, help) in cases {
        let src = GOOD.replacen(from, to, 1);
        assert_one_error(&src, at, message, help, to);
    }
}

#[test]
fn independent_mistakes_in_one_upstream_and_elsewhere_are_all_reported_in_one_run() {
    // a value of the wrong type once stopped the reading of the whole file
    let src = r#"
[agents.support-bot]
token = { env = "REMIT_TOKEN_SUPPORT_BOT" }
owner = 5

[upstreams.crm]
url = "ftp://crm.example/mcp"
headers = { Host = "evil.example" }
protocol = "2024-01-01"
timeout = "soon"
namespace = "no"

[actions."crm.find_contact"]
agents = "support-bot"
tier = "reed"
budget = [{ count = 1.5, per = "1h" }, { count = 5, per = "1 hour" }]
"#;
    let e = check_errors(src);
    let said: Vec<&str> = e.iter().map(|d| d.message.as_str()).collect();
    for wanted in [
        "`owner` must be who answers for the agent, not the number `5`",
        "`url` must start with `http://` or `https://`",
        "header `Host` is set by remit",
        "unknown protocol `2024-01-01`",
        "`soon` is not a duration",
        "`namespace` must be `true` or `false`",
        "`agents` must be a list of agent names",
        "unknown tier `reed`",
        "`count` must be a whole number of calls",
        "`1 hour` is not a duration",
    ] {
        assert!(
            said.iter().any(|m| m.starts_with(wanted)),
            "{wanted}: {said:#?}"
        );
    }
    assert_eq!(e.len(), 10, "{said:#?}");
    // the agents that could not be read are not also missing
    assert!(!said.iter().any(|m| m.contains("lists no")), "{said:#?}");
}

#[test]
fn an_upstream_with_both_or_neither_of_command_and_url_is_one_error_not_one_per_action() {
    for upstream in [
        "[upstreams.billing]\ncommand = [\"billing-mcp\"]\nurl = \"http://127.0.0.1:9/mcp\"\n",
        "[upstreams.billing]\ntimeout = \"5s\"\n",
        "[upstreams.billing]\ncommand = \"billing-mcp\"\n",
    ] {
        let src = GOOD.replace(
            "[upstreams.billing]\ncommand = [\"billing-mcp\", \"--db\", \"billing.db\"]\nenv = { BILLING_API_KEY = { env = \"BILLING_KEY\" } }\n",
            upstream,
        )
        // a tool of it named in a block is not unknown either
        .replace(
            "redact = [\"args.card_number\"]\n",
            "redact = [\"args.card_number\"]\nundo = { tool = \"billing.cancel_refund\" }\n",
        );
        assert!(src.contains("undo = "));
        let e = errors_of(&src);
        assert_eq!(e.len(), 1, "{upstream}: {e:?}");
        assert!(!e[0].contains("unknown upstream"), "{e:?}");
        // an action of it is still checked for its own mistakes
        let src = src.replace("tier = \"read\"", "tier = \"raed\"");
        let e = errors_of(&src);
        assert_eq!(e.len(), 2, "{upstream}: {e:?}");
        assert!(e[1].contains("unknown tier `raed`"), "{e:?}");
    }
}

#[test]
fn token_and_token_sha256_together_are_an_error_even_with_the_variable_unset() {
    let sha = "6ab6d1f82bfb7bf71ce7e6b0b9e8e1c6c40e1cbb6b1d1e34c1d2d02d3c5d6e7f";
    let src = GOOD.replace(
        "token = { env = \"REMIT_TOKEN_SUPPORT_BOT\" }",
        &format!("token = {{ env = \"REMIT_TOKEN_SUPPORT_BOT\" }}\ntoken_sha256 = \"{sha}\""),
    );
    // set (serve), and unset (a check in CI, without the secrets)
    for e in [
        errors_of(&src),
        check_errors(&src)
            .iter()
            .map(|d| d.render("remit.toml"))
            .collect(),
    ] {
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(&format!(
                "{} error: agent `support-bot` has both `token` and `token_sha256`",
                located(&src, &format!("\"{sha}"), 0, 0)
            )),
            "{}",
            e[0]
        );
        assert!(
            e[0].contains("help: keep `token = { env = \"REMIT_TOKEN_SUPPORT_BOT\" }`"),
            "{}",
            e[0]
        );
    }
}

#[test]
fn gateway_values_that_would_refuse_everything_or_match_nothing_are_errors() {
    // (what `[gateway]` gets, where the error is, what it says, what its help says)
    let cases = [
        (
            "max_request_bytes = 0",
            "0\n",
            "`max_request_bytes` must be at least 256, not 0",
            "`max_request_bytes = 1048576`",
        ),
        (
            "allowed_hosts = [\"remit.example\", \"\"]",
            "\"\"]",
            "an entry of `allowed_hosts` is empty",
            "remove it",
        ),
        (
            "allowed_hosts = [\"a b\"]",
            "\"a b\"",
            "`a b` in `allowed_hosts` is not a host name: it has a space",
            "`[\"a\", \"b\"]`",
        ),
        (
            "allowed_hosts = [\"http://remit.example:8470/mcp\"]",
            "\"http:",
            "`http://remit.example:8470/mcp` in `allowed_hosts` is a URL, not a host name",
            "`\"remit.example:8470\"`",
        ),
        (
            "allowed_hosts = [\"*.example.com\"]",
            "\"*.",
            "is a pattern",
            "list each host name",
        ),
        (
            "allowed_hosts = [\"remit.example:0\"]",
            "\"remit.",
            "has no valid port",
            "from 1 to 65535",
        ),
        (
            "allowed_hosts = [\"remit..example\"]",
            "\"remit.",
            "is not a host name, an IP address or `host:port`",
            "`Host` header",
        ),
        (
            "audit_key = \"\"",
            "\"\"\n",
            "`audit_key` is empty",
            "`audit_key = \"remit-audit.key\"`",
        ),
        (
            "audit_key = \"keys/\"",
            "\"keys/\"",
            "`audit_key` `keys/` is not a file name",
            "name the key file itself",
        ),
        (
            "audit_key = \"keys/audit.checkpoint\"",
            "\"keys/audit.checkpoint\"",
            "ends in `.checkpoint`",
            "give the key another extension",
        ),
        (
            "audit_key = \"audit.pub\"",
            "\"audit.pub\"",
            "the signing key would be overwritten",
            "`remit-audit.pub`",
        ),
    ];
    for (line, at, message, help) in cases {
        let src = GOOD.replace("[gateway]\n", &format!("[gateway]\n{line}\n"));
        assert_one_error(&src, at, message, help, line);
    }
    // what is fine
    let src = GOOD.replace(
        "[gateway]\n",
        "[gateway]\nmax_request_bytes = 4096\naudit_key = \"keys/audit.key\"\nallowed_hosts = [\"remit.example\", \"remit.example:8470\", \"10.0.0.5\", \"[::1]:8470\", \"::1\", \"localhost.\"]\n",
    );
    assert!(errors_of(&src).is_empty(), "{:?}", errors_of(&src));
}

#[test]
fn every_error_says_what_to_write_instead() {
    // a file with a mistake of nearly every kind `remit check` reports without the upstreams
    let src = r#"
gatway = 1
[gateway]
listen = "nowhere"
store = "mysql://x"
audit_origin = "a b"
max_sessions_per_agent = 0

[agents."bad name"]
[agents.a]
token = "literal-token-in-the-file"
[agents.b]
token_sha256 = "abc"

[approvers]
none = []

[upstreams."bad.name"]
command = ["x"]
[upstreams.s]
command = []
headers = { X = "y" }
[upstreams.h]
url = "ftp://x"
env = { A = "b" }
[upstreams.two]
command = ["x"]
url = "http://x"
[upstreams.zero]

[actions.noupstream]
agents = ["a"]
tier = "read"
[actions."s.bad name"]
[actions."h.x"]
agents = []
tier = "sometimes"
require = ["arg.x > 1", "args.x >"]
budget = [{ count = 0, per = "1h" }, { count = 1, sum = "args.x", per = "1h" }, { sum = "args.x" , per = "1h" }, { sum = "args.x >", max = 5, per = "1h" }, { count = 1 }, { count = 1, per = "1 h" }, {}]
redact = ["card"]
approve = { by = "nobody", quorum = 0, expires = "never", when = "result.x", bogus = 1 }
verify = { probe = { tool = "nope" }, within = 5 }
undo = { tool = "zz.x", impossible = "" }
delay = "later"
[actions."h.y"]
tier = "read"
agents = ["nobody"]
"#;
    let e = check_errors(src);
    assert!(e.len() > 30, "{}", e.len());
    for d in &e {
        let help = d.help.as_deref().unwrap_or_default();
        assert!(
            !help.trim().is_empty(),
            "no help: {}",
            d.render("remit.toml")
        );
    }
}

#[test]
fn two_agents_sharing_a_token_is_an_error_by_its_variable_and_by_its_hash() {
    // the token authenticated as the agent whose name sorts last: a copy-paste slip let the
    // holder of a read-only agent's token act with another's grants
    let hash = hex::encode(Sha256::digest(b"s3cret-token-of-support-bot"));
    for (second, at) in [
        (
            "[agents.admin-bot]\ntoken = { env = \"REMIT_TOKEN_SUPPORT_BOT\" }\n",
            "{ env = \"REMIT_TOKEN_SUPPORT_BOT\" }\n\n[upstreams",
        ),
        (
            &*format!("[agents.admin-bot]\ntoken_sha256 = \"{hash}\"\n"),
            &*format!("\"{hash}\""),
        ),
    ] {
        let src = GOOD.replace(
            "[upstreams.billing]",
            &format!("{second}\n[upstreams.billing]"),
        );
        assert_one_error(
            &src,
            at,
            "agents `support-bot` and `admin-bot` share one token",
            "give each agent a token of its own",
            second,
        );
    }
    // without the secret (as `remit check` in CI runs), the shared variable is still found
    let src = GOOD.replace(
        "[upstreams.billing]",
        "[agents.admin-bot]\ntoken = { env = \"REMIT_TOKEN_SUPPORT_BOT\" }\n\n[upstreams.billing]",
    );
    let e = check_errors(&src);
    assert!(
        e.iter()
            .any(|d| d.message.contains("both read `REMIT_TOKEN_SUPPORT_BOT`")),
        "{e:?}"
    );
}
