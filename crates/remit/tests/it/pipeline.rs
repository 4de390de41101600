//! The boundary through the HTTP API and MCP: granted, ungranted, conditions, budgets, kill switch.

use crate::support::{OTHER_TOKEN, Remit, STANDARD, TOKEN, sqlite_exec, with_sqlite};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[test]
fn granted_read_runs_on_the_upstream() {
    let r = Remit::start(STANDARD);
    let (status, body) = r.call("billing.get_customer", json!({ "id": "cus_001" }));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["isError"], json!(false), "{body}");
    assert_eq!(
        body["result"]["structuredContent"]["id"], "cus_001",
        "{body}"
    );
    assert_eq!(
        r.ledger(),
        vec![("get_customer".to_owned(), json!({ "id": "cus_001" }))]
    );
}

#[test]
fn ungranted_tool_is_refused_and_never_reaches_the_upstream() {
    let r = Remit::start(STANDARD);
    let (status, body) = r.call("billing.delete_customer", json!({ "id": "cus_001" }));
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "unlisted");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("outside this agent's remit"),
        "{body}"
    );
    // granted to support-bot only: the other agent is refused the same way
    let (status, body) = r.call_as(
        OTHER_TOKEN,
        "billing.get_customer",
        &json!({ "id": "cus_001" }),
    );
    assert_eq!(status, 403, "{body}");
    assert!(
        r.ledger().is_empty(),
        "the upstream saw a refused call: {:?}",
        r.ledger()
    );
}

#[test]
fn tools_list_shows_only_what_the_register_grants() {
    let r = Remit::start(STANDARD);
    let names = |token: &str| -> Vec<String> {
        let (status, v) = r.mcp(token, "tools/list", json!({}));
        assert_eq!(status, 200, "{v}");
        let mut n: Vec<String> = v["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        n.sort();
        n
    };
    assert_eq!(
        names(TOKEN),
        [
            "billing.get_customer",
            "billing.issue_refund",
            "billing.list_charges"
        ]
    );
    assert_eq!(names(OTHER_TOKEN), ["billing.list_charges"]);
    // the upstream's schema comes through
    let (_, v) = r.mcp(TOKEN, "tools/list", json!({}));
    let refund = v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "billing.issue_refund")
        .unwrap();
    assert!(
        refund["inputSchema"]["properties"]["amount"].is_object(),
        "{refund}"
    );
    assert_eq!(refund["annotations"]["readOnlyHint"], json!(false));
}

#[test]
fn mcp_call_outside_the_remit_is_a_tool_error_that_says_why() {
    let r = Remit::start(STANDARD);
    let (status, v) = r.mcp(
        TOKEN,
        "tools/call",
        json!({ "name": "billing.delete_customer", "arguments": { "id": "cus_002" } }),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["isError"], json!(true), "{v}");
    assert_eq!(v["result"]["_meta"]["remit"]["code"], "unlisted", "{v}");
    let (_, v) = r.mcp(
        TOKEN,
        "tools/call",
        json!({ "name": "billing.get_customer", "arguments": { "id": "cus_002" } }),
    );
    assert_eq!(v["result"]["structuredContent"]["id"], "cus_002", "{v}");
    assert_eq!(r.ledger().len(), 1);
}

#[test]
fn refund_over_the_limit_is_refused_naming_the_condition() {
    let r = Remit::start(STANDARD);
    let (status, body) = r.call(
        "billing.issue_refund",
        json!({ "charge_id": "ch_003", "amount": 700, "reason": "x" }),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "condition");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("`args.amount > 0 && args.amount <= 500`"),
        "{body}"
    );
    assert!(r.ledger().is_empty());
    let (status, body) = r.call(
        "billing.issue_refund",
        json!({ "charge_id": "ch_003", "amount": 40, "reason": "x" }),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body["result"]["structuredContent"]["refund_id"]
            .as_str()
            .unwrap()
            .starts_with("r_"),
        "{body}"
    );
}

#[test]
fn budget_refuses_the_call_past_the_count_with_when_it_resets() {
    let r = Remit::start(STANDARD);
    for _ in 0..3 {
        let (status, body) = r.call(
            "billing.issue_refund",
            json!({ "charge_id": "ch_003", "amount": 10, "reason": "x" }),
        );
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = r.call(
        "billing.issue_refund",
        json!({ "charge_id": "ch_003", "amount": 10, "reason": "x" }),
    );
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "over_budget");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("at most 3 calls per 1h"),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("retry after 20"),
        "{body}"
    );
    assert_eq!(r.ledger().len(), 3, "the fourth call reached the upstream");
}

/// A budget refusal over HTTP says when to retry in `Retry-After` too (it said so only in
/// its message): whole seconds until the budget has room, rounded up.
#[test]
fn a_budget_refusal_over_http_says_when_to_retry_in_retry_after() {
    let r = Remit::start(STANDARD);
    let refund = json!({ "charge_id": "ch_003", "amount": 10, "reason": "x" });
    for _ in 0..3 {
        let (status, body) = r.call("billing.issue_refund", refund.clone());
        assert_eq!(status, 200, "{body}");
    }
    let refused = r.post_call("billing.issue_refund", &refund);
    assert_eq!(refused.status().as_u16(), 429);
    let wait: u64 = refused
        .headers()
        .get("retry-after")
        .expect("no Retry-After on a budget refusal")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // the window is an hour from the first of the three calls, made just now
    assert!((3_540..=3_600).contains(&wait), "Retry-After: {wait}");
    let body: Value = refused.json().unwrap();
    assert_eq!(body["code"], "over_budget", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("retry after 20"),
        "{body}"
    );
    // and the body says it as a program reads it: the same whole seconds
    assert_eq!(body["retry_after_seconds"], json!(wait), "{body}");
    // a refusal of another kind says nothing of retrying
    let unlisted = r.post_call("billing.delete_customer", &json!({ "id": "cus_002" }));
    assert_eq!(unlisted.status().as_u16(), 403);
    assert!(unlisted.headers().get("retry-after").is_none());
    let body: Value = unlisted.json().unwrap();
    assert!(body.get("retry_after_seconds").is_none(), "{body}");
}

/// A call that alone is more than its budget ever holds is refused for good: 403 over HTTP
/// with no `Retry-After` and no `retry_after_seconds`, none over MCP either, and the upstream
/// never sees it (it was a 429 with a time to retry, after which it was refused again).
#[test]
fn a_call_more_than_its_budget_ever_holds_is_refused_with_no_time_to_retry() {
    let r = Remit::start(&STANDARD.replace(
        r#"budget = [{ count = 3, per = "1h" }]"#,
        r#"budget = [{ sum = "args.amount", max = 100, per = "24h" }]"#,
    ));
    let big = json!({ "charge_id": "ch_003", "amount": 150, "reason": "x" });
    let refused = r.post_call("billing.issue_refund", &big);
    assert_eq!(refused.status().as_u16(), 403);
    assert!(refused.headers().get("retry-after").is_none());
    let body: Value = refused.json().unwrap();
    assert_eq!(body["code"], "over_budget", "{body}");
    assert!(body.get("retry_after_seconds").is_none(), "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("will not fit at any time"), "{body}");
    let (status, v) = r.mcp(
        TOKEN,
        "tools/call",
        json!({ "name": "billing.issue_refund", "arguments": big }),
    );
    assert_eq!(status, 200, "{v}");
    let remit = &v["result"]["_meta"]["remit"];
    assert_eq!(remit["code"], "over_budget", "{v}");
    assert!(remit.get("retry_after_seconds").is_none(), "{v}");
    // what the budget holds still goes through, and only that reached the upstream
    let (status, body) = r.call(
        "billing.issue_refund",
        json!({ "charge_id": "ch_003", "amount": 100, "reason": "x" }),
    );
    assert_eq!(status, 200, "{body}");
    let refunds: Vec<Value> = r
        .ledger()
        .into_iter()
        .filter(|(tool, _)| tool == "issue_refund")
        .map(|(_, args)| args["amount"].clone())
        .collect();
    assert_eq!(refunds, [json!(100)], "{refunds:?}");
}

/// A budget refusal over MCP says when to retry in `_meta.remit.retry_after_seconds`, the
/// whole seconds HTTP's `Retry-After` gives, on the short way and through rmcp alike (it
/// said so only in its text).
#[test]
fn a_budget_refusal_over_mcp_says_when_to_retry_in_its_meta() {
    let r = Remit::start(STANDARD);
    let refund = json!({ "charge_id": "ch_003", "amount": 10, "reason": "x" });
    for _ in 0..3 {
        let (status, body) = r.call("billing.issue_refund", refund.clone());
        assert_eq!(status, 200, "{body}");
    }
    let retry_after = |v: &Value| {
        assert_eq!(v["result"]["isError"], json!(true), "{v}");
        let remit = &v["result"]["_meta"]["remit"];
        assert_eq!(remit["code"], "over_budget", "{v}");
        let wait = remit["retry_after_seconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("no retry_after_seconds: {v}"));
        // the window is an hour from the first of the three calls, made just now
        assert!((3_540..=3_600).contains(&wait), "{v}");
        wait
    };
    // the short way
    let (status, v) = r.mcp(
        TOKEN,
        "tools/call",
        json!({ "name": "billing.issue_refund", "arguments": refund }),
    );
    assert_eq!(status, 200, "{v}");
    let short = retry_after(&v);
    // the long way, through rmcp (a weighted `Accept` sends it there)
    let answer = r
        .stateless_call(
            None,
            &json!(2),
            "billing.issue_refund",
            &refund,
            "application/json;q=1, text/event-stream",
        )
        .send()
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let long = retry_after(&crate::support::parse_jsonrpc(&answer.text().unwrap()));
    // HTTP's `Retry-After`, asked just after, says the same (a second may have passed)
    let refused = r.post_call("billing.issue_refund", &refund);
    assert_eq!(refused.status().as_u16(), 429);
    let http: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    for mcp in [short, long] {
        assert!(http <= mcp && mcp - http <= 1, "MCP {mcp} s, HTTP {http} s");
    }
    // a refusal of another kind says nothing of retrying
    let (_, v) = r.mcp(
        TOKEN,
        "tools/call",
        json!({ "name": "billing.delete_customer", "arguments": { "id": "cus_002" } }),
    );
    let remit = &v["result"]["_meta"]["remit"];
    assert_eq!(remit["code"], "unlisted", "{v}");
    assert!(remit.get("retry_after_seconds").is_none(), "{v}");
    assert_eq!(r.ledger().len(), 3, "a refused refund reached the upstream");
}

#[test]
fn arguments_of_the_wrong_type_are_refused_before_the_upstream() {
    let r = Remit::start(STANDARD);
    let (status, body) = r.call(
        "billing.issue_refund",
        json!({ "charge_id": "ch_003", "amount": "40", "reason": "x" }),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "invalid_arguments");
    let (status, body) = r.call(
        "billing.issue_refund",
        json!({ "charge_id": "ch_003", "reason": "x" }),
    );
    assert_eq!(status, 422, "{body}");
    assert!(r.ledger().is_empty());
}

#[test]
fn no_token_or_a_wrong_token_is_unauthenticated() {
    let r = Remit::start(STANDARD);
    let (status, body) = r.call_as(
        "not-a-token-of-anyone-at-all",
        "billing.get_customer",
        &json!({ "id": "cus_001" }),
    );
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "unauthenticated", "{body}");
    // the token is checked before the body is read
    let answer = reqwest::blocking::Client::new()
        .post(r.url("/v1/calls"))
        .bearer_auth("wrong")
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    let (status, _) = r.mcp("wrong", "tools/list", json!({}));
    assert_eq!(status, 401);
    assert!(r.ledger().is_empty());
    // nobody's calls are not actions of an agent: the audit holds only remit's start
    let events = r.events();
    let stages: Vec<&Value> = events.iter().map(|l| &l["event"]["stage"]).collect();
    assert_eq!(stages, [&json!("started")], "{events:?}");
}

/// An address that keeps failing authentication is answered 429 with `Retry-After` after a
/// burst of 20 failures, on `/v1/calls` and `/mcp` alike; an agent with a valid token from
/// the same address is not held back, and the address gets a failure back each second.
#[test]
fn an_address_that_keeps_failing_authentication_is_slowed_down_and_valid_agents_are_not() {
    let r = Remit::start(STANDARD);
    for i in 0..20 {
        let status = if i % 2 == 0 {
            r.call_as("guess", "billing.get_customer", &json!({ "id": "cus_001" }))
                .0
        } else {
            r.mcp("guess", "tools/list", json!({})).0
        };
        assert_eq!(status, 401, "failure {i} of the burst");
    }
    let refused = reqwest::blocking::Client::new()
        .post(r.url("/v1/calls"))
        .bearer_auth("guess")
        .json(&json!({ "tool": "billing.get_customer", "arguments": { "id": "cus_001" } }))
        .send()
        .unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().unwrap();
    assert_eq!(body["code"], "unauthenticated", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("too many requests without a valid agent credential"),
        "{body}"
    );
    let (status, body) = r.mcp("guess", "tools/list", json!({}));
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], -32001, "{body}");
    // the agent with a valid token, from the same address, is served as ever
    let (status, body) = r.call("billing.get_customer", json!({ "id": "cus_001" }));
    assert_eq!(status, 200, "{body}");
    let (status, body) = r.mcp(TOKEN, "tools/list", json!({}));
    assert_eq!(status, 200, "{body}");
    // one failure comes back per second
    std::thread::sleep(Duration::from_millis(1_100));
    let (status, _) = r.mcp("guess", "tools/list", json!({}));
    assert_eq!(status, 401);
    // nothing of it is an agent's action: the audit holds the start and the valid call
    let events = r.events();
    assert!(
        events
            .iter()
            .all(|l| l["event"]["stage"] == "started" || l["event"]["agent"] == "support-bot"),
        "{events:?}"
    );
}

#[test]
fn freeze_takes_effect_within_a_second_and_is_recorded() {
    let r = Remit::start(STANDARD);
    let out = r.command(&["freeze", "support-bot"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frozen_at = Instant::now();
    loop {
        let (status, body) = r.call("billing.get_customer", json!({ "id": "cus_001" }));
        if status == 403 {
            assert_eq!(body["code"], "frozen", "{body}");
            break;
        }
        assert!(
            frozen_at.elapsed() < Duration::from_secs(1),
            "still running calls 1s after the freeze"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // an action freeze applies to every agent
    let out = r.command(&["unfreeze", "support-bot"]).output().unwrap();
    assert!(out.status.success());
    let out = r
        .command(&["freeze", "action:billing.list_charges"])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(600));
    let (status, _) = r.call_as(
        OTHER_TOKEN,
        "billing.list_charges",
        &json!({ "customer": "cus_001" }),
    );
    assert_eq!(status, 403);
    let (status, _) = r.call("billing.get_customer", json!({ "id": "cus_001" }));
    assert_eq!(status, 200);
    let (_, shown, _) = r.audit(&["show", "--limit", "1000"]);
    assert!(shown.contains("frozen"), "{shown}");
    assert!(shown.contains("unfrozen"), "{shown}");
}

#[test]
fn a_kill_switch_change_that_cannot_be_recorded_leaves_the_agent_frozen() {
    let r = Remit::start(STANDARD);
    let run = |args: &[&str]| {
        let out = r.command(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let frozen = || -> Vec<String> {
        with_sqlite(&r.db(), async |conn| {
            sqlx::query_scalar("SELECT kind || ':' || name FROM frozen_targets ORDER BY 1")
                .fetch_all(conn)
                .await
                .unwrap()
        })
    };
    assert!(run(&["freeze", "support-bot"]).0);
    // the audit log refuses every append from now on
    sqlite_exec(
        &r.db(),
        "CREATE TRIGGER no_audit BEFORE INSERT ON audit_events \
         BEGIN SELECT RAISE(ABORT, 'the disk is full'); END;",
    );
    // an unfreeze that cannot be recorded does not happen
    let (ok, err) = run(&["unfreeze", "support-bot"]);
    assert!(!ok, "an unrecorded unfreeze succeeded: {err}");
    assert!(
        err.contains("agent `support-bot` was not unfrozen"),
        "{err}"
    );
    assert_eq!(frozen(), ["agent:support-bot"]);
    // a freeze that cannot be recorded still takes effect, and the operator is told
    let (ok, err) = run(&["freeze", "action:billing.list_charges"]);
    assert!(!ok, "an unrecorded freeze reported success: {err}");
    // and is told that it is in force, only not recorded (before: only that it failed)
    assert!(
        err.contains("action `billing.list_charges` is frozen")
            && err.contains("could not be recorded in the audit")
            && err.contains("run this command again"),
        "{err}"
    );
    assert_eq!(
        frozen(),
        ["action:billing.list_charges", "agent:support-bot"]
    );
    sqlite_exec(&r.db(), "DROP TRIGGER no_audit;");
    assert!(run(&["unfreeze", "support-bot"]).0);
    assert_eq!(frozen(), ["action:billing.list_charges"]);
}

#[test]
fn every_event_carries_the_time_it_happened() {
    let r = remit_with_echo_as("slow", "", "sleep", "read");
    for ms in [60, 1] {
        let (status, _) = r.call("slow.sleep", json!({ "ms": ms }));
        assert_eq!(status, 200);
    }
    let events: Vec<Value> = r
        .events()
        .into_iter()
        .map(|l| l["event"].clone())
        .filter(|e| e["action"] == "slow.sleep")
        .collect();
    let times: Vec<&str> = events.iter().map(|e| e["time"].as_str().unwrap()).collect();
    let stages: Vec<&str> = events
        .iter()
        .map(|e| e["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        [
            "proposed", "decided", "executed", "proposed", "decided", "executed"
        ],
        "{events:?}"
    );
    // RFC 3339, UTC, milliseconds (2026-11-27T05:30:13.123Z); milliseconds of the day
    let ms = |t: &str| -> i64 {
        assert!(
            t.len() == 24 && t.ends_with('Z') && &t[10..11] == "T",
            "{t}"
        );
        let n = |a: usize, b: usize| t[a..b].parse::<i64>().unwrap();
        ((n(11, 13) * 60 + n(14, 16)) * 60 + n(17, 19)) * 1000 + n(20, 23)
    };
    let since = |a: usize, b: usize| (ms(times[b]) - ms(times[a])).rem_euclid(86_400_000);
    assert!(
        since(1, 2) >= 60,
        "the executed event is stamped when the 60 ms call ended, not when it was decided: {times:?}"
    );
    assert!(since(2, 3) < 60_000 && since(3, 5) < 60_000, "{times:?}");
}

#[test]
fn reason_and_redaction_are_recorded_as_the_register_says() {
    let r = Remit::start(STANDARD);
    let (status, answer) = r.call(
        "billing.issue_refund",
        json!({ "charge_id": "ch_003", "amount": 12, "reason": "card 4111-1111" }),
    );
    assert_eq!(status, 200);
    // the agent's answer is the upstream's, echo included: only the audit's copy is scrubbed
    assert!(answer.to_string().contains("card 4111-1111"), "{answer}");
    let (_, export, _) = r.audit(&["export", "--format", "jsonl"]);
    let proposed: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].clone())
        .filter(|e| e["stage"] == "proposed")
        .collect();
    assert_eq!(proposed.len(), 1, "{export}");
    assert_eq!(proposed[0]["detail"]["args"]["reason"], "[redacted]");
    assert_eq!(proposed[0]["detail"]["args"]["amount"], 12);
    assert_eq!(
        proposed[0]["detail"]["reason"], "test",
        "the agent's stated reason"
    );
    assert!(
        !export.contains("4111-1111"),
        "a redacted field reached the audit"
    );
    // the upstream itself got the real value
    assert_eq!(r.ledger()[0].1["reason"], "card 4111-1111");

    // a field of a result: the agent gets it, the audit keeps `[redacted]` in its place,
    // in the structured result and in the text that carries the same JSON
    let (status, answer) = r.call("billing.get_customer", json!({ "id": "cus_001" }));
    assert_eq!(status, 200);
    assert!(
        answer.to_string().contains("4242 4242 4242 4242"),
        "{answer}"
    );
    let (_, export, _) = r.audit(&["export", "--format", "jsonl"]);
    let executed = export
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].clone())
        .rfind(|e| e["stage"] == "executed")
        .unwrap();
    let result = &executed["detail"]["result"];
    assert_eq!(
        result["structuredContent"]["card_number"], "[redacted]",
        "{executed}"
    );
    assert_eq!(
        result["structuredContent"]["name"], "Ada Lovelace",
        "{executed}"
    );
    let text: Value = serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(text["card_number"], "[redacted]", "{executed}");
    assert!(
        !export.contains("4242 4242"),
        "a redacted result field reached the audit"
    );
}

#[test]
fn an_upstream_that_dies_is_reported_restarted_and_used_again() {
    let r = Remit::start(STANDARD);
    let children = crate::support::children_of(r.pid());
    assert_eq!(
        children.len(),
        1,
        "expected one billing child: {children:?}"
    );
    std::process::Command::new("kill")
        .args(["-9", &children[0].to_string()])
        .status()
        .unwrap();
    // while it is down, a call gets a clear error and nothing pretends to have run
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut saw_error = false;
    loop {
        let (status, body) = r.call("billing.get_customer", json!({ "id": "cus_001" }));
        if status == 200 {
            break;
        }
        saw_error = true;
        assert!(matches!(status, 502 | 503), "{status}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("upstream"),
            "{body}"
        );
        assert!(Instant::now() < deadline, "the upstream was not restarted");
        std::thread::sleep(Duration::from_millis(100));
    }
    let h = r.health();
    assert!(
        h["upstreams"][0]["restarts"].as_u64().unwrap() >= 1 || !saw_error,
        "{h}"
    );
    assert_eq!(h["upstreams"][0]["up"], json!(true));
}

#[test]
fn status_reports_upstreams_store_and_audit() {
    let r = Remit::start(STANDARD);
    let out = r.command(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("gateway   ok"), "{text}");
    assert!(text.contains("upstream  billing"), "{text}");
    assert!(text.contains("store     ok"), "{text}");
}

#[test]
fn an_upstream_that_never_answers_is_reported_and_its_tools_refused() {
    let r = Remit::start_with(|port| {
        crate::support::register(STANDARD, port).replace(
            "[upstreams.billing]",
            "[upstreams.silent]\ncommand = [\"sleep\", \"600\"]\n\n[actions.\"silent.anything\"]\nagents = [\"support-bot\"]\ntier = \"read\"\n\n[upstreams.billing]",
        )
    });
    let (status, body) = r.call("silent.anything", json!({}));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "unavailable");
    let silent_in = |h: &Value| {
        h["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["upstream"] == "silent")
            .unwrap()
            .clone()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let h = r.health_as_operator();
        let silent = silent_in(&h);
        assert_eq!(silent["up"], json!(false));
        if let Some(e) = silent["last_error"].as_str() {
            assert!(e.contains("handshake"), "{e}");
            assert_eq!(h["status"], "degraded");
            break;
        }
        assert!(Instant::now() < deadline, "{h}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // anyone else (an agent with its own token too) sees that it is down, not why
    for h in [r.health(), r.health_with(Some(TOKEN))] {
        let silent = silent_in(&h);
        assert_eq!(
            (silent["up"].clone(), h["status"].clone()),
            (json!(false), json!("degraded"))
        );
        assert!(silent.get("last_error").is_none(), "{h}");
    }
    // `remit status` reads the key and shows the error
    let out = r.command(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let silent_line = text
        .lines()
        .find(|l| l.contains("silent"))
        .unwrap_or_default();
    assert!(
        silent_line.contains("DOWN")
            && silent_line.contains("last error: ")
            && silent_line.contains("handshake"),
        "{text}"
    );
    // the other upstream is unaffected
    assert_eq!(
        r.call("billing.get_customer", json!({ "id": "cus_001" })).0,
        200
    );
}

/// Serves the billing system over Streamable HTTP on a thread of its own; returns its URL and database.
fn billing_over_http() -> (String, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("billing-http.db");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let db2 = db.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            remit_billing::serve_billing_http(l, &db2).await.unwrap();
        });
    });
    (format!("http://{addr}/mcp"), db, dir)
}

#[test]
fn an_http_upstream_works_in_both_eras() {
    for (protocol, expected) in [
        ("auto", "2026-07-28"),
        ("2026-07-28", "2026-07-28"),
        ("2025-11-25", "2025-11-25"),
    ] {
        let (url, db, _keep) = billing_over_http();
        let r = Remit::start_with(|port| {
            crate::support::register(STANDARD, port).replace(
                &format!(
                    "command = [\"{}\", \"billing-server\", \"--db\", \"billing.db\"]",
                    crate::support::remit()
                ),
                &format!("url = \"{url}\"\nprotocol = \"{protocol}\""),
            )
        });
        let (status, body) = r.call(
            "billing.issue_refund",
            json!({ "charge_id": "ch_003", "amount": 7, "reason": "x" }),
        );
        assert_eq!(status, 200, "{protocol}: {body}");
        assert!(
            body["result"]["structuredContent"]["refund_id"]
                .as_str()
                .unwrap()
                .starts_with("r_"),
            "{body}"
        );
        let (status, body) = r.call(
            "billing.issue_refund",
            json!({ "charge_id": "nope", "amount": 7, "reason": "x" }),
        );
        assert_eq!(status, 200, "a tool error is still a result: {body}");
        assert_eq!(body["result"]["isError"], json!(true));
        let (status, _) = r.call("billing.delete_customer", json!({ "id": "cus_001" }));
        assert_eq!(status, 403);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let calls = rt.block_on(remit_billing::received_calls(&db)).unwrap();
        assert_eq!(calls.len(), 2, "{protocol}: {calls:?}");
        assert!(
            calls
                .iter()
                .all(|c| c.protocol_version.as_deref() == Some(expected)),
            "{protocol}: {calls:?}"
        );
        assert_eq!(r.health()["upstreams"][0]["protocol"], expected);
    }
}

#[test]
fn the_http_api_is_described_by_an_openapi_document() {
    let r = Remit::start(STANDARD);
    let doc: Value = reqwest::blocking::get(r.url("/v1/openapi.json"))
        .unwrap()
        .json()
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let post = &doc["paths"]["/v1/calls"]["post"];
    for status in ["200", "401", "403", "422", "429", "503"] {
        assert!(
            post["responses"][status].is_object(),
            "no {status} in {post}"
        );
    }
    assert!(doc["components"]["schemas"]["CallRequest"]["properties"]["tool"].is_object());
    assert!(doc["components"]["securitySchemes"]["agent_token"].is_object());
}

/// Every answer `POST /v1/calls` gives is listed under the operation in the OpenAPI
/// document, with the headers it sends and its body's schema, and nothing else is listed.
#[test]
fn every_answer_of_the_http_api_is_listed_in_its_openapi_document() {
    // 405 (an empty body), 415 (none: the body was read), and 401's `WWW-Authenticate`
    // (not sent) were missing
    let addr = echo_upstream();
    let r = Remit::start_with(|port| {
        crate::support::register(STANDARD, port).replace(
            "[upstreams.billing]",
            &format!(
                "[upstreams.echo]\nurl = \"http://{addr}/mcp\"\n\n[actions.\"echo.reject\"]\nagents = [\"support-bot\"]\ntier = \"read\"\n\n\
                 [upstreams.silent]\ncommand = [\"sleep\", \"600\"]\n\n[actions.\"silent.anything\"]\nagents = [\"support-bot\"]\ntier = \"read\"\n\n[upstreams.billing]"
            ),
        )
    });
    r.wait_for_upstream("echo");
    let url = r.url("/v1/calls");
    let call = |tool: &str, args: Value| {
        r.client
            .post(&url)
            .bearer_auth(TOKEN)
            .json(&json!({ "tool": tool, "arguments": args }))
    };
    let refund = || {
        call(
            "billing.issue_refund",
            json!({ "charge_id": "ch_001", "amount": 1, "reason": "x" }),
        )
    };
    let nobody = || {
        r.client
            .post(&url)
            .bearer_auth("nobody's")
            .json(&json!({ "tool": "billing.get_customer", "arguments": { "id": "cus_001" } }))
    };
    let cases = [
        (
            "a read",
            call("billing.get_customer", json!({ "id": "cus_001" })),
        ),
        (
            "a malformed body",
            r.client
                .post(&url)
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body("{"),
        ),
        ("a wrong token", nobody()),
        (
            "an unlisted tool",
            call("billing.delete_customer", json!({ "id": "cus_002" })),
        ),
        ("a GET", r.client.get(&url).bearer_auth(TOKEN)),
        (
            "a PUT",
            r.client.put(&url).bearer_auth(TOKEN).json(&json!({})),
        ),
        (
            "a body over the limit",
            call("billing.get_customer", json!({ "id": "x".repeat(2 << 20) })),
        ),
        (
            "a form-encoded body",
            r.client
                .post(&url)
                .bearer_auth(TOKEN)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("tool=billing.get_customer&id=cus_001"),
        ),
        (
            "arguments that are not an object",
            call("billing.get_customer", json!([1])),
        ),
        (
            "an upstream's JSON-RPC error",
            call("echo.reject", json!({})),
        ),
        (
            "an upstream that never answers",
            call("silent.anything", json!({})),
        ),
        ("a refund", refund()),
        ("a second refund", refund()),
        ("a third refund", refund()),
        ("a refund over the hour's budget", refund()),
    ];
    let mut answers: Vec<(&str, reqwest::blocking::Response)> = cases
        .into_iter()
        .map(|(what, request)| {
            let answer = request.send().unwrap_or_else(|e| panic!("{what}: {e:?}"));
            (what, answer)
        })
        .collect();
    // an address that keeps sending no valid token is slowed down (after 20 in a burst)
    let slowed = (0..40)
        .map(|_| nobody().send().unwrap())
        .find(|a| a.status().as_u16() == 429)
        .expect("no 429 after 40 requests without a valid token");
    answers.push(("too many requests without a valid token", slowed));
    let doc: Value = r
        .client
        .get(r.url("/v1/openapi.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let responses = &doc["paths"]["/v1/calls"]["post"]["responses"];
    let mut seen = std::collections::BTreeSet::new();
    for (what, answer) in answers {
        let status = answer.status().as_u16().to_string();
        let listed = &responses[status.as_str()];
        assert!(
            listed.is_object(),
            "{what}: {status} is not listed in {responses}"
        );
        let headers = answer.headers().clone();
        for name in ["www-authenticate", "allow", "retry-after", "accept-post"] {
            if headers.contains_key(name) {
                assert!(
                    listed["headers"]
                        .as_object()
                        .is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case(name))),
                    "{what}: {status} sends `{name}`, not listed in {listed}"
                );
            }
        }
        match status.as_str() {
            "401" => assert_eq!(headers["www-authenticate"], "Bearer realm=\"remit\""),
            "405" => assert_eq!(headers["allow"], "POST"),
            _ => {}
        }
        assert_eq!(headers["content-type"], "application/json", "{what}");
        let schema = listed["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: {status} has no JSON schema: {listed}"));
        let name = schema.rsplit('/').next().unwrap();
        let body: Value = answer.json().unwrap();
        for field in doc["components"]["schemas"][name]["required"]
            .as_array()
            .unwrap()
        {
            let field = field.as_str().unwrap();
            assert!(
                body.get(field).is_some(),
                "{what}: {status}'s body has no `{field}` of {name}: {body}"
            );
        }
        seen.insert(status);
    }
    let mut listed: std::collections::BTreeSet<String> =
        responses.as_object().unwrap().keys().cloned().collect();
    // 408 needs a body that stops arriving, which this client cannot send: the answer is
    // checked by `hostile::a_body_that_never_finishes_arriving_is_answered_408_or_closed_at_the_deadline`
    assert!(listed.remove("408"), "408 is not listed");
    assert_eq!(seen, listed, "answers given and answers listed differ");
}

/// remit with the standard register plus an HTTP upstream `name` (more keys in `keys`) at
/// the echo fixture, and one read action on its `tool` for support-bot.
fn remit_with_echo(name: &str, keys: &str, tool: &str) -> Remit {
    remit_with_echo_as(name, keys, tool, "read")
}

/// As [`remit_with_echo`], with the action at `tier`.
fn remit_with_echo_as(name: &str, keys: &str, tool: &str, tier: &str) -> Remit {
    let addr = echo_upstream();
    let r = Remit::start_with(|port| {
        crate::support::register(STANDARD, port).replace(
            "[upstreams.billing]",
            &format!(
                "[upstreams.{name}]\nurl = \"http://{addr}/mcp\"\n{keys}\n[actions.\"{name}.{tool}\"]\nagents = [\"support-bot\"]\ntier = \"{tier}\"\n\n[upstreams.billing]"
            ),
        )
    });
    r.wait_for_upstream(name);
    r
}

/// The echo fixture over HTTP on a free port, on a thread of its own; its address.
fn echo_upstream() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            remit_billing::serve_echo_http(l).await.unwrap();
        });
    });
    addr
}

#[test]
fn an_upstreams_json_rpc_error_reaches_the_agent_with_its_code_and_data() {
    let r = remit_with_echo("echo", "", "reject");
    let data = json!({ "requiredCapabilities": { "sampling": {} } });
    // the HTTP API: 502, `rejected`, the data as sent
    let (status, body) = r.call("echo.reject", json!({}));
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], "rejected", "{body}");
    assert_eq!(body["data"], data, "{body}");
    // MCP, the short way and rmcp's way: a JSON-RPC error, HTTP 400 for -32021
    for accept in [
        "application/json, text/event-stream",
        "application/json;q=1, text/event-stream",
    ] {
        let answer = r
            .stateless_call(None, &json!(9), "echo.reject", &json!({}), accept)
            .send()
            .unwrap();
        let status = answer.status().as_u16();
        let text = answer.text().unwrap();
        let answer = crate::support::parse_jsonrpc(&text);
        assert_eq!(status, 400, "{accept}: {text}");
        assert_eq!(answer["error"]["code"], -32021, "{accept}: {text}");
        assert_eq!(answer["error"]["data"], data, "{accept}: {text}");
        assert_eq!(answer["id"], 9, "{accept}: {text}");
    }
}

/// Every JSON-RPC message of a response body: one JSON object, or the events of an SSE stream.
fn messages_of(text: &str) -> Vec<Value> {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return vec![v];
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .collect()
}

/// A 2026-07-28 `tools/call` to `/mcp` with `params` (the revision's `_meta` added to
/// theirs); the JSON-RPC messages of the answer, whether one JSON body or an SSE stream.
fn stateless_messages(r: &Remit, id: u64, mut params: Value) -> Vec<Value> {
    let meta = params["_meta"].as_object().cloned().unwrap_or_default();
    params["_meta"] = crate::support::stateless_meta();
    for (k, v) in meta {
        params["_meta"][k] = v;
    }
    let name = params["name"].as_str().unwrap().to_owned();
    let answer = r
        .client
        .post(r.url("/mcp"))
        .bearer_auth(TOKEN)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", name)
        .json(&json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params }))
        .send()
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    messages_of(&answer.text().unwrap())
}

/// An upstream's progress report that quotes one of its credentials reaches the agent with
/// `[redacted]` in its place, as its result does (before: the report as the upstream wrote
/// it). The echo server's reports say "slept …": here "slept" is the upstream's key.
#[test]
fn an_upstreams_progress_report_reaches_the_agent_without_its_credential() {
    let addr = echo_upstream();
    let r = Remit::launch(
        |port| {
            crate::support::register(STANDARD, port).replace(
                "[upstreams.billing]",
                &format!(
                    "[upstreams.slow]\nurl = \"http://{addr}/mcp\"\nheaders = {{ X-Echo-Key = {{ env = \"REMIT_TEST_ECHO_KEY\" }} }}\n[actions.\"slow.sleep\"]\nagents = [\"support-bot\"]\ntier = \"read\"\n\n[upstreams.billing]"
                ),
            )
        },
        &[("REMIT_TEST_ECHO_KEY", "slept")],
    );
    r.wait_for_upstream("slow");
    let messages = stateless_messages(
        &r,
        5,
        json!({ "name": "slow.sleep", "arguments": { "ms": 40 }, "_meta": { "progressToken": "t" } }),
    );
    let text = Value::Array(messages.clone());
    let reports: Vec<Value> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| m["params"]["message"].clone())
        .collect();
    assert_eq!(
        reports,
        [
            json!("[redacted] 20 of 40 ms"),
            json!("[redacted] 40 of 40 ms")
        ],
        "{text}"
    );
    assert!(!text.to_string().contains("slept"), "{text}");
}

/// An agent that sends a `progressToken` gets the upstream's progress reports under its own
/// token, in order, before the result; one that does not gets the plain answer. Over an
/// HTTP upstream (the lean client's, unless progress is asked for).
#[test]
fn an_upstreams_progress_reaches_the_agent_that_asked_for_it_under_its_own_token() {
    let r = remit_with_echo_as("slow", "", "sleep", "read");
    for token in [json!("agent-token-1"), json!(42)] {
        let messages = stateless_messages(
            &r,
            5,
            json!({ "name": "slow.sleep", "arguments": { "ms": 40 }, "_meta": { "progressToken": token } }),
        );
        let text = Value::Array(messages.clone());
        let progress: Vec<(Value, Value, Value, Value)> = messages
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .map(|m| {
                let p = &m["params"];
                (
                    p["progressToken"].clone(),
                    p["progress"].clone(),
                    p["total"].clone(),
                    p["message"].clone(),
                )
            })
            .collect();
        assert_eq!(
            progress,
            vec![
                (
                    token.clone(),
                    json!(1.0),
                    json!(2.0),
                    json!("slept 20 of 40 ms")
                ),
                (
                    token.clone(),
                    json!(2.0),
                    json!(2.0),
                    json!("slept 40 of 40 ms")
                ),
            ],
            "{text}"
        );
        let last = messages.last().unwrap();
        assert_eq!(last["id"], 5, "the result comes last: {text}");
        assert_eq!(
            last["result"]["content"][0]["text"], "slept 40 ms",
            "{text}"
        );
    }
    // no token, no reports: the plain JSON answer
    let answer = r
        .stateless_call(
            None,
            &json!(6),
            "slow.sleep",
            &json!({ "ms": 10 }),
            "application/json, text/event-stream",
        )
        .send()
        .unwrap();
    let text = answer.text().unwrap();
    let messages = messages_of(&text);
    assert_eq!(messages.len(), 1, "{text}");
    assert_eq!(messages[0]["result"]["content"][0]["text"], "slept 10 ms");
}

/// An upstream that needs input mid-call (2026-07-28 `InputRequiredResult`): the agent gets
/// its input requests and the upstream's state sealed by remit, resumes with its answers, and
/// the upstream finishes with its own state back. Each round goes through the pipeline; the
/// audit records the answers and the digest of the upstream's state.
#[test]
fn an_upstream_asking_for_input_gets_the_agents_answers_when_it_resumes() {
    let r = remit_with_echo_as("asker", "", "ask", "read");
    // the upstream hears the agent's capabilities, not remit's: without `roots` it cannot ask
    let undeclared = stateless_messages(&r, 9, json!({ "name": "asker.ask", "arguments": {} }));
    let undeclared = &undeclared.last().unwrap()["result"];
    assert_eq!(undeclared["isError"], true, "{undeclared}");
    assert!(
        undeclared.to_string().contains("did not declare `roots`"),
        "{undeclared}"
    );
    let roots_declared = json!({ "io.modelcontextprotocol/clientCapabilities": { "roots": {} } });
    let asked = stateless_messages(
        &r,
        1,
        json!({ "name": "asker.ask", "arguments": {}, "_meta": roots_declared }),
    );
    let asked = &asked.last().unwrap()["result"];
    assert_eq!(asked["resultType"], "input_required", "{asked}");
    assert_eq!(
        asked["inputRequests"]["roots"]["method"], "roots/list",
        "{asked}"
    );
    // the agent holds remit's seal, not the upstream's state
    let state = asked["requestState"].as_str().unwrap().to_owned();
    assert!(state.starts_with("remit1."), "{state}");
    let roots = json!({ "roots": [{ "uri": "file:///srv/app", "name": "app" }] });
    let done = stateless_messages(
        &r,
        2,
        json!({ "name": "asker.ask", "arguments": {}, "_meta": roots_declared,
                "inputResponses": { "roots": roots }, "requestState": state }),
    );
    let done = &done.last().unwrap()["result"];
    assert_eq!(done["resultType"], "complete", "{done}");
    // `told` only if the upstream got its own state back, unchanged
    assert_eq!(
        done["content"][0]["text"],
        format!("told: {roots}"),
        "{done}"
    );
    // a state remit did not seal never reaches the upstream: an invalid-params error
    let changed = stateless_messages(
        &r,
        3,
        json!({ "name": "asker.ask", "arguments": {},
                "inputResponses": { "roots": roots }, "requestState": "forged" }),
    );
    let changed = changed.last().unwrap();
    assert_eq!(changed["error"]["code"], -32602, "{changed}");
    // the record: the request for input, then the answers and the digest of the upstream's
    // own state, the one its `executed` event holds
    let events = r.events();
    let of_ask = |stage: &str| -> Vec<Value> {
        events
            .iter()
            .filter(|l| l["event"]["action"] == "asker.ask" && l["event"]["stage"] == stage)
            .map(|l| l["event"]["detail"].clone())
            .collect()
    };
    let executed = of_ask("executed");
    assert_eq!(
        executed.len(),
        3,
        "the forged round never ran: {executed:?}"
    );
    assert!(
        executed[1].to_string().contains("roots/list"),
        "the input request is recorded: {}",
        executed[1]
    );
    let upstreams_state = executed[1]["result"]["requestState"].as_str().unwrap();
    assert_eq!(upstreams_state, "echo-ask-round-1");
    let proposed = of_ask("proposed");
    assert!(proposed[1].get("resume").is_none(), "{}", proposed[1]);
    assert_eq!(proposed[2]["resume"]["inputResponses"]["roots"], roots);
    use sha2::Digest as _;
    assert_eq!(
        proposed[2]["resume"]["requestStateSha256"],
        hex::encode(sha2::Sha256::digest(upstreams_state.as_bytes()))
    );
    assert!(
        !Value::Array(events.clone()).to_string().contains(&state),
        "the sealed state itself is not recorded"
    );
    // through rmcp's client too (a call that wants progress goes that way), the upstream
    // hears the agent's capabilities
    for (declared, expected) in [
        (json!({ "roots": {} }), "input_required"),
        (json!({}), "complete"),
    ] {
        let via_rmcp = stateless_messages(
            &r,
            4,
            json!({ "name": "asker.ask", "arguments": {}, "_meta": {
                "io.modelcontextprotocol/clientCapabilities": declared, "progressToken": "p" } }),
        );
        let via_rmcp = &via_rmcp.last().unwrap()["result"];
        assert_eq!(via_rmcp["resultType"], expected, "{via_rmcp}");
    }
}

/// A 2026-07-28 `tools/call` of `tool` with `arguments` (and `more` params) as the agent
/// holding `token`: the last JSON-RPC message of the answer.
fn stateless_call_as(r: &Remit, token: &str, tool: &str, mut params: Value) -> Value {
    params["name"] = json!(tool);
    let mut meta = crate::support::stateless_meta();
    meta["io.modelcontextprotocol/clientCapabilities"] = json!({ "roots": {} });
    params["_meta"] = meta;
    let answer = r
        .client
        .post(r.url("/mcp"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .json(&json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params }))
        .send()
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    messages_of(&answer.text().unwrap()).pop().unwrap()
}

/// The sealed `requestState` resumes only the call it was handed out for: another agent
/// replaying it, the same agent with other arguments, a state edited by one character, and
/// the upstream's own state written by the agent are each refused with invalid params before
/// the upstream hears of them (its own count of `ask` calls says so), and recorded as refusals
/// without the state. The honest round trip still finishes.
#[test]
fn a_request_state_resumes_only_the_agent_action_and_arguments_it_was_sealed_for() {
    let addr = echo_upstream();
    let r = Remit::start_with(|port| {
        crate::support::register(STANDARD, port).replace(
            "[upstreams.billing]",
            &format!(
                "[upstreams.asker]\nurl = \"http://{addr}/mcp\"\n\
                 [actions.\"asker.ask\"]\nagents = [\"support-bot\", \"other-bot\"]\ntier = \"read\"\n\
                 [actions.\"asker.asks\"]\nagents = [\"support-bot\"]\ntier = \"read\"\n\n[upstreams.billing]"
            ),
        )
    });
    r.wait_for_upstream("asker");
    let asks_seen = || {
        let seen = stateless_call_as(&r, TOKEN, "asker.asks", json!({ "arguments": {} }));
        seen["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let asked = stateless_call_as(&r, TOKEN, "asker.ask", json!({ "arguments": {} }));
    let state = asked["result"]["requestState"].as_str().unwrap().to_owned();
    assert_eq!(asked["result"]["resultType"], "input_required", "{asked}");
    assert_eq!(asks_seen(), "ask calls: 1, resumed: 0");
    let roots = json!({ "roots": [{ "uri": "file:///srv/app", "name": "app" }] });
    let resume = |state: &str, arguments: Value| json!({ "arguments": arguments, "inputResponses": { "roots": roots }, "requestState": state });
    // one character of the token changed (its last, which base64url always has room to change)
    let mut edited = state.clone();
    let last = edited.pop().unwrap();
    edited.push(if last == 'A' { 'B' } else { 'A' });
    let refused = [
        (
            "other-bot replays support-bot's state",
            OTHER_TOKEN,
            resume(&state, json!({})),
        ),
        (
            "other arguments",
            TOKEN,
            resume(&state, json!({ "never_satisfied": false })),
        ),
        ("edited by one character", TOKEN, resume(&edited, json!({}))),
        (
            "the upstream's own state, written by the agent",
            TOKEN,
            resume("echo-ask-round-1", json!({})),
        ),
    ];
    for (what, token, params) in &refused {
        let answer = stateless_call_as(&r, token, "asker.ask", params.clone());
        assert_eq!(answer["error"]["code"], -32602, "{what}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("start the call again without `requestState`"),
            "{what}: {message}"
        );
        assert_eq!(
            answer["error"]["data"]["remit"]["code"], "invalid_request_state",
            "{what}: {answer}"
        );
        assert!(answer.get("result").is_none(), "{what}: {answer}");
    }
    // the upstream never heard of any of them
    assert_eq!(asks_seen(), "ask calls: 1, resumed: 0");
    // the honest agent, with the arguments it asked with
    let done = stateless_call_as(&r, TOKEN, "asker.ask", resume(&state, json!({})));
    assert_eq!(
        done["result"]["content"][0]["text"],
        format!("told: {roots}"),
        "{done}"
    );
    assert_eq!(asks_seen(), "ask calls: 2, resumed: 1");
    // each refusal is on the record, by the agent that sent it, with why and without the state
    let events = r.events();
    let refusals: Vec<&Value> = events
        .iter()
        .map(|l| &l["event"])
        .filter(|e| e["action"] == "asker.ask" && e["stage"] == "refused")
        .collect();
    assert_eq!(refusals.len(), refused.len(), "{refusals:?}");
    assert_eq!(refusals[0]["agent"], "other-bot");
    for e in &refusals {
        assert_eq!(e["detail"]["code"], "invalid_request_state", "{e}");
        assert!(
            e["detail"]["reason"]
                .as_str()
                .unwrap()
                .contains("is not one remit gave this agent"),
            "{e}"
        );
    }
    let text = Value::Array(events.clone()).to_string();
    assert!(!text.contains(&state), "the sealed state is not recorded");
    assert!(!text.contains(&edited), "the edited state is not recorded");
}

/// A `write` (or `irreversible`) call is on disk, `decided`, before the upstream sees it; a
/// `read` changes nothing, so its events are committed with its answer, in one transaction.
#[test]
fn a_write_is_recorded_before_it_runs_and_a_read_together_with_its_answer() {
    for tier in ["write", "read"] {
        let r = remit_with_echo_as("slow", "", "sleep", tier);
        let stages = || -> Vec<(u64, String)> {
            r.events()
                .into_iter()
                .filter(|l| l["event"]["action"] == "slow.sleep")
                .map(|l| {
                    let stage = l["event"]["stage"].as_str().unwrap().to_owned();
                    (l["seq"].as_u64().unwrap(), stage)
                })
                .collect()
        };
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let call = s.spawn(|| {
                let answer = r.call("slow.sleep", json!({ "ms": 3000 }));
                done.store(true, std::sync::atomic::Ordering::SeqCst);
                answer
            });
            let deadline = Instant::now() + Duration::from_millis(1500);
            let mut seen = stages();
            while tier == "write" && seen.len() < 2 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                seen = stages();
            }
            if tier == "read" {
                std::thread::sleep(Duration::from_millis(1000));
                seen = stages();
            }
            assert!(
                !done.load(std::sync::atomic::Ordering::SeqCst),
                "{tier}: the call ended before its record was looked at"
            );
            let names: Vec<&str> = seen.iter().map(|(_, s)| s.as_str()).collect();
            match tier {
                "write" => assert_eq!(names, ["proposed", "decided"], "{tier}: {seen:?}"),
                _ => assert!(
                    names.is_empty(),
                    "{tier}: recorded before its answer: {seen:?}"
                ),
            }
            let (status, body) = call.join().unwrap();
            assert_eq!(status, 200, "{tier}: {body}");
        });
        let seen = stages();
        let names: Vec<&str> = seen.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            names,
            ["proposed", "decided", "executed"],
            "{tier}: {seen:?}"
        );
        assert!(
            seen.windows(2).all(|w| w[1].0 == w[0].0 + 1),
            "{tier}: the call's events are not consecutive: {seen:?}"
        );
        let (code, out, err) = r.audit(&["verify"]);
        assert_eq!(code, 0, "{tier}: {out}{err}");
    }
}

/// A client that hangs up mid-call does not cut the call off: its outcome is still recorded,
/// on `/v1/calls`, on the short way for stateless MCP calls, and on rmcp's way.
#[test]
fn a_call_whose_client_hangs_up_is_still_recorded_to_its_end() {
    let r = remit_with_echo_as("slow", "", "sleep", "write");
    let impatient = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let mcp = |accept: &str| {
        r.stateless_call(
            Some(&impatient),
            &json!(1),
            "slow.sleep",
            &json!({ "ms": 1000 }),
            accept,
        )
        .send()
    };
    let ways = [
        (
            "/v1/calls",
            impatient
                .post(r.url("/v1/calls"))
                .bearer_auth(TOKEN)
                .json(&json!({ "tool": "slow.sleep", "arguments": { "ms": 1000 } }))
                .send(),
        ),
        (
            "/mcp, the short way",
            mcp("application/json, text/event-stream"),
        ),
        (
            "/mcp, rmcp's way",
            mcp("application/json;q=1, text/event-stream"),
        ),
    ];
    for (way, sent) in &ways {
        assert!(
            sent.is_err(),
            "{way}: the client was meant to give up first"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stages = r.stages_of("slow.sleep");
        let executed = stages.iter().filter(|s| *s == "executed").count();
        if executed == ways.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "calls whose client hung up were not recorded to their end: {stages:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A caller that leaves before its call reached the upstream: the call is not sent (nobody
/// would get the answer), and the record says so. The store's write lock, held from outside,
/// keeps the call in its write-ahead commit until the client has given up.
#[test]
fn a_call_whose_caller_left_before_it_was_sent_is_not_sent() {
    let r = Remit::start(STANDARD);
    let db = r.db();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (held, locked) = std::sync::mpsc::channel::<()>();
    let locker = std::thread::spawn(move || {
        with_sqlite(&db, async |conn| {
            use sqlx::Connection;
            let tx = conn.begin_with("BEGIN IMMEDIATE").await.unwrap();
            held.send(()).unwrap();
            released.recv().ok();
            tx.commit().await.unwrap();
        });
    });
    locked.recv().unwrap();
    let impatient = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let args = json!({ "charge_id": "ch_001", "amount": 5, "reason": "x" });
    let ways = [
        (
            "/v1/calls",
            impatient
                .post(r.url("/v1/calls"))
                .bearer_auth(TOKEN)
                .json(&json!({ "tool": "billing.issue_refund", "arguments": args }))
                .send(),
        ),
        (
            "/mcp, the short way",
            r.stateless_call(
                Some(&impatient),
                &json!(1),
                "billing.issue_refund",
                &args,
                "application/json, text/event-stream",
            )
            .send(),
        ),
    ];
    for (way, gave_up) in &ways {
        assert!(
            gave_up.is_err(),
            "{way}: the call answered while the store was locked"
        );
    }
    release.send(()).unwrap();
    locker.join().unwrap();
    // the calls finish on their own: refused by the pipeline, never sent
    let deadline = Instant::now() + Duration::from_secs(15);
    let failed = loop {
        let events = r.events();
        let failed: Vec<Value> = events
            .iter()
            .filter(|l| l["event"]["stage"] == "failed")
            .cloned()
            .collect();
        if failed.len() == ways.len() {
            break failed;
        }
        assert!(Instant::now() < deadline, "no outcome recorded: {events:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    for failed in &failed {
        assert_eq!(
            failed["event"]["action"], "billing.issue_refund",
            "{failed}"
        );
        assert_eq!(failed["event"]["detail"]["sent"], false, "{failed}");
        assert!(
            failed["event"]["detail"]["error"]
                .as_str()
                .unwrap()
                .contains("stopped waiting before the call was sent"),
            "{failed}"
        );
    }
    assert!(
        r.ledger().is_empty(),
        "the upstream saw it: {:?}",
        r.ledger()
    );
    // a caller that waits is served as always
    let (status, body) = r.call(
        "billing.issue_refund",
        json!({ "charge_id": "ch_001", "amount": 5, "reason": "x" }),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(r.ledger().len(), 1);
}

#[test]
fn an_upstream_that_hangs_on_a_call_times_out_with_a_clear_error() {
    let r = remit_with_echo("slow", "timeout = \"1s\"\n", "sleep");
    let started = Instant::now();
    let (status, body) = r.call("slow.sleep", json!({ "ms": 5000 }));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the timeout did not cut the call short"
    );
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], "failed");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("did not answer within 1s; the call may or may not have run"),
        "{body}"
    );
    // the upstream was told: its sleep ended early, cancelled (the lean client's way)
    let cancelled = |n: u64| {
        let waited = Instant::now();
        while remit_billing::sleeps_cancelled() < n && waited.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            remit_billing::sleeps_cancelled(),
            n,
            "the upstream's sleep was not cancelled"
        );
    };
    cancelled(1);
    // the same with a progress token: rmcp's client, whose own timeout cancels upstream
    let messages = stateless_messages(
        &r,
        7,
        json!({ "name": "slow.sleep", "arguments": { "ms": 5000 }, "_meta": { "progressToken": "p" } }),
    );
    let last = messages.last().unwrap();
    assert_eq!(last["result"]["isError"], true, "{messages:?}");
    assert!(
        last.to_string().contains("did not answer within 1s"),
        "{messages:?}"
    );
    cancelled(2);
    // a quick call on the same upstream still works
    let (status, body) = r.call("slow.sleep", json!({ "ms": 1 }));
    assert_eq!(status, 200, "{body}");
    // and the record says the slow one failed
    let (_, export, _) = r.audit(&["export", "--format", "jsonl"]);
    assert!(export.contains("\"stage\":\"failed\""), "{export}");
}

/// A plain stateless `tools/call` is answered without rmcp's per-request service; the
/// answer must be the one rmcp gives. A weighted `Accept` sends the same call the long way.
#[test]
fn the_short_way_for_stateless_calls_answers_exactly_as_rmcp_does() {
    let r = Remit::start(STANDARD);
    let send = |name: &str, args: Value, accept: &str| {
        let answer = r
            .stateless_call(None, &json!("req-1"), name, &args, accept)
            .send()
            .unwrap();
        let status = answer.status().as_u16();
        let text = answer.text().unwrap();
        let mut v = crate::support::parse_jsonrpc(&text);
        // each call has its own id; everything else must match
        let call = v["result"]["_meta"]["remit"]["call"]
            .as_str()
            .map(str::to_owned);
        if let Some(call) = call {
            v["result"]["_meta"]["remit"]["call"] = json!("CALL");
            let text = serde_json::to_string(&v).unwrap().replace(&call, "CALL");
            v = serde_json::from_str(&text).unwrap();
        }
        (status, v)
    };
    let short = "application/json, text/event-stream";
    let long = "application/json;q=1, text/event-stream";
    for (name, args) in [
        ("billing.get_customer", json!({ "id": "cus_001" })),
        ("billing.get_customer", json!({ "id": "cus_nobody" })),
        (
            "billing.issue_refund",
            json!({ "charge_id": "ch_001", "amount": 900, "reason": "x" }),
        ),
        ("billing.delete_customer", json!({ "id": "cus_001" })),
        ("billing.get_customer", json!({ "id": 5 })),
    ] {
        let (s1, a) = send(name, args.clone(), short);
        let (s2, b) = send(name, args, long);
        assert_eq!((s1, &a), (s2, &b), "{name}");
        assert_eq!(a["id"], "req-1", "{a}");
        assert_eq!(a["result"]["resultType"], "complete", "{a}");
    }
    // both ways went through the pipeline: each call is in the upstream's ledger twice
    let ledger = r.ledger();
    assert_eq!(
        ledger
            .iter()
            .filter(|(tool, _)| tool == "get_customer")
            .count(),
        4,
        "{ledger:?}"
    );
}

/// If the audit append fails, the call fails: a write is refused before the upstream sees
/// it, a read's answer is withheld, and nothing of either is left in the log. The fault is
/// real: the store's own SQLite refuses every new audit row (a trigger added from outside,
/// as a full or failing disk would refuse the write).
#[test]
fn a_call_that_cannot_be_recorded_fails_and_a_write_never_runs() {
    let r = Remit::start(STANDARD);
    let db = r.db();
    let read = json!({ "id": "cus_001" });
    let (status, body) = r.call("billing.get_customer", read.clone());
    assert_eq!(status, 200, "{body}");
    let logged = r.events().len();
    sqlite_exec(
        &db,
        "CREATE TRIGGER audit_refuses BEFORE INSERT ON audit_events \
         BEGIN SELECT RAISE(FAIL, 'the disk refused the write'); END;",
    );

    let refused = crate::support::assert_calls_fail_closed(&r);
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("could not be recorded before it ran"),
        "{refused}"
    );
    assert!(
        !message.contains("the disk refused"),
        "the store's own words reached the agent: {refused}"
    );

    // over MCP the same refusal is a tool error the agent can read
    let (status, v) = r.mcp(
        TOKEN,
        "tools/call",
        json!({ "name": "billing.issue_refund", "arguments": { "charge_id": "ch_001", "amount": 5, "reason": "x" } }),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["isError"], json!(true), "{v}");
    assert_eq!(v["result"]["_meta"]["remit"]["code"], "unavailable", "{v}");
    assert!(r.ledger().iter().all(|(tool, _)| tool != "issue_refund"));

    // once the store writes again, so does remit, and the log is whole: no event of the
    // calls that failed, nothing half-written
    sqlite_exec(&db, "DROP TRIGGER audit_refuses;");
    let (status, body) = r.call("billing.get_customer", read);
    assert_eq!(status, 200, "{body}");
    let events = r.events();
    assert_eq!(events.len(), logged + 3, "only the last read was recorded");
    assert!(
        events
            .iter()
            .all(|l| l["event"]["action"] != "billing.issue_refund"),
        "a refused write left events behind"
    );
    // and the refused writes used none of the agent's budget (3 refunds an hour)
    let refund = json!({ "charge_id": "ch_001", "amount": 5, "reason": "x" });
    for _ in 0..3 {
        let (status, body) = r.call("billing.issue_refund", refund.clone());
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = r.call("billing.issue_refund", refund);
    assert_eq!(status, 429, "{body}");
    r.wait_for_checkpoint();
    let (code, out, err) = r.audit(&["verify"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// A call the tool's schema refuses is recorded without the value that failed: the
/// schema's message quoted it, and the `refused` event kept a redacted argument whole.
#[test]
fn a_schema_refusal_does_not_write_a_redacted_value_into_the_audit() {
    let r = Remit::start(STANDARD);
    let (status, answer) = r.call(
        "billing.issue_refund",
        json!({ "charge_id": "ch_003", "amount": 12, "reason": { "card": "4111 1111 1111 1111" } }),
    );
    assert_eq!(status, 422, "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(message.contains("/reason"), "{message}");
    assert!(message.contains("not of type \"string\""), "{message}");
    assert!(!message.contains("4111"), "{message}");
    let (_, export, _) = r.audit(&["export", "--format", "jsonl"]);
    assert!(export.contains("\"refused\""), "{export}");
    assert!(
        !export.contains("4111"),
        "a redacted value reached the audit: {export}"
    );
    assert!(r.ledger().is_empty());
}

/// An action whose tool its upstream, up and listing others, does not list is refused as
/// unusable, not "retry later" (a retry never helps).
#[test]
fn an_action_for_a_tool_the_upstream_does_not_list_is_refused_without_retry_later() {
    let mut r = Remit::start(&format!(
        "{STANDARD}\n[actions.\"billing.list_refunds\"]\nagents = [\"support-bot\"]\ntier = \"read\"\n"
    ));
    let (status, answer) = r.call("billing.list_refunds", json!({}));
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["code"], "unavailable", "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("does not list a tool `list_refunds`"),
        "{message}"
    );
    assert!(message.contains("retrying will not help"), "{message}");
    assert!(!message.contains("retry later"), "{message}");
    // the operator was told when the tools were listed
    let log = r.stop_and_read_log();
    assert!(
        log.lines()
            .any(|l| l.contains("does not list the action's tool")
                && l.contains("billing.list_refunds")),
        "{log}"
    );
}

/// A budget keeps its charges by what it is (what it counts and its window), not by its
/// place in the action's list: removing the first budget, reordering the rest or raising a
/// `max` and restarting leaves every budget's charges where they were (the sum budget read
/// the removed count budget's charges, and let 1,200 through against a max of 1000).
#[test]
fn a_budget_keeps_its_charges_when_the_register_removes_or_reorders_the_others() {
    let budgets = |list: &str| {
        STANDARD.replace(
            r#"budget = [{ count = 3, per = "1h" }]"#,
            &format!("budget = [{list}]"),
        )
    };
    let refund = |amount: u64| json!({ "charge_id": "ch_003", "amount": amount, "reason": "x" });
    let mut r = Remit::start(&budgets(
        r#"{ count = 20, per = "1h" }, { sum = "args.amount", max = 1000, per = "24h" }"#,
    ));
    for _ in 0..3 {
        let (status, body) = r.call("billing.issue_refund", refund(300));
        assert_eq!(status, 200, "{body}");
    }
    // the count budget removed: the sum budget, now first, still holds 900
    r.kill9();
    std::fs::write(
        r.path(),
        crate::support::register(
            &budgets(r#"{ sum = "args.amount", max = 1000, per = "24h" }"#),
            r.port,
        ),
    )
    .unwrap();
    r.spawn();
    let (status, body) = r.call("billing.issue_refund", refund(300));
    assert_eq!(status, 429, "900 spent, 300 more is over 1000: {body}");
    assert_eq!(body["code"], "over_budget", "{body}");
    let (status, body) = r.call("billing.issue_refund", refund(100));
    assert_eq!(status, 200, "{body}");
    // reordered, the count back second, the max raised: each keeps its own charges
    r.kill9();
    std::fs::write(
        r.path(),
        crate::support::register(
            &budgets(
                r#"{ sum = "args.amount", max = 1100, per = "24h" }, { count = 5, per = "1h" }"#,
            ),
            r.port,
        ),
    )
    .unwrap();
    r.spawn();
    let (status, body) = r.call("billing.issue_refund", refund(100));
    assert_eq!(status, 200, "1000 spent, 100 more fits 1100: {body}");
    let (status, body) = r.call("billing.issue_refund", refund(1));
    assert_eq!(status, 429, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("args.amount"),
        "the sum budget refuses, not the count: {body}"
    );
    let refunds = r
        .ledger()
        .into_iter()
        .filter(|(tool, _)| tool == "issue_refund")
        .count();
    assert_eq!(refunds, 5, "what reached the upstream");
}
