//! The scripted support agent run straight at the billing server over HTTP,
//! with no gateway in between: the calls the demo register allows come out
//! as expected, and the ones only remit would refuse go through.

use std::sync::{Arc, Mutex};

use axum::{extract::Request, http::header::AUTHORIZATION, middleware::Next};
use remit_billing::{Expect, Route, Step, StepOutcome, run_support_agent};
use serde_json::json;

use crate::support::{ledger, serve_billing_http, temp_db};

#[tokio::test]
async fn support_agent_runs_straight_at_billing_and_only_the_refusals_miss() {
    let (_dir, db) = temp_db();
    let url = serve_billing_http(&db).await;
    let mut seen = Vec::new();
    let steps = run_support_agent(&url, "direct-token", Route::Direct, &mut |step: &Step| {
        seen.push(step.tool.clone());
    })
    .await
    .unwrap();

    let tools: Vec<&str> = steps.iter().map(|step| step.tool.as_str()).collect();
    assert_eq!(
        tools,
        [
            "tools/list",
            "get_customer",
            "list_charges",
            "issue_refund",
            "issue_refund",
            "delete_customer",
            "issue_refund",
            "issue_refund",
            "issue_refund",
        ]
    );
    assert_eq!(seen, tools, "on_step saw every step, in order");

    // The agent sees all seven billing tools when nothing stands in between.
    let StepOutcome::Result(listed) = &steps[0].outcome else {
        panic!("tools/list: {:?}", steps[0].outcome);
    };
    let listed = listed["tools"].as_array().unwrap();
    assert_eq!(listed.len(), 7, "{listed:?}");
    assert!(listed.contains(&json!("delete_customer")));

    // Allowed steps succeed with real results; the refusals only remit
    // makes (condition, unlisted, over budget) do not happen here.
    let as_expected: Vec<bool> = steps.iter().map(|step| step.as_expected).collect();
    assert_eq!(
        as_expected,
        [true, true, true, true, false, false, true, true, false]
    );
    for step in &steps {
        assert!(
            matches!(step.outcome, StepOutcome::Result(_)),
            "{}: {:?}",
            step.tool,
            step.outcome
        );
        assert_eq!(
            step.arguments.get("_reason"),
            None,
            "direct sends no _reason"
        );
    }
    assert_eq!(steps[4].expect, Expect::Refused("condition"));
    assert_eq!(steps[5].expect, Expect::Refused("unlisted"));
    assert_eq!(steps[8].expect, Expect::Refused("over_budget"));

    let StepOutcome::Result(customer) = &steps[1].outcome else {
        unreachable!()
    };
    assert_eq!(customer["name"], "Ada Lovelace");
    let StepOutcome::Result(charges) = &steps[2].outcome else {
        unreachable!()
    };
    assert_eq!(charges["charges"].as_array().unwrap().len(), 2);
    let StepOutcome::Result(refund) = &steps[3].outcome else {
        unreachable!()
    };
    assert!(
        refund["refund_id"].as_str().unwrap().starts_with("r_"),
        "{refund}"
    );
    assert_eq!(refund["amount"], 40.0);
    assert_eq!(refund["charge_id"], "ch_001");
    let StepOutcome::Result(over_limit) = &steps[4].outcome else {
        unreachable!()
    };
    assert_eq!(over_limit["amount"], 700.0);
    let StepOutcome::Result(deleted) = &steps[5].outcome else {
        unreachable!()
    };
    assert_eq!(deleted["deleted"], true);

    // The upstream's own ledger: every call arrived, once, in order, in the
    // 2026-07-28 era, with the arguments the steps report.
    let rows = ledger(&db).await;
    assert_eq!(rows.len(), 8);
    for (row, step) in rows.iter().zip(&steps[1..]) {
        assert_eq!(row.tool, step.tool);
        assert_eq!(row.arguments, step.arguments);
        assert_eq!(row.protocol_version.as_deref(), Some("2026-07-28"));
    }
    assert_eq!(
        rows[8 - 1].arguments,
        json!({"charge_id": "ch_002", "amount": 10, "reason": "goodwill credit"})
    );
}

#[tokio::test]
async fn gateway_route_names_tools_billing_dot_and_states_a_reason() {
    // Straight at billing, the gateway's names are unknown tools: every call
    // fails, but the ledger and the headers show what remit would receive.
    let (_dir, db) = temp_db();
    let authorizations = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = Arc::clone(&authorizations);
    let router =
        remit_billing::billing_router(&db)
            .await
            .unwrap()
            .layer(axum::middleware::from_fn(
                move |request: Request, next: Next| {
                    let header = request.headers().get(AUTHORIZATION).cloned();
                    seen.lock().unwrap().push(
                        header
                            .map(|value| value.to_str().unwrap().to_owned())
                            .unwrap_or_default(),
                    );
                    next.run(request)
                },
            ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let steps = run_support_agent(&url, "agent-token", Route::Gateway, &mut |_: &Step| {})
        .await
        .unwrap();

    assert_eq!(steps.len(), 9);
    for step in &steps[1..] {
        assert!(step.tool.starts_with("billing."), "{}", step.tool);
        assert!(
            step.arguments["_reason"]
                .as_str()
                .is_some_and(|r| !r.is_empty())
        );
        assert!(
            matches!(step.outcome, StepOutcome::ToolError(_)),
            "{}: {:?}",
            step.tool,
            step.outcome
        );
        assert!(!step.as_expected);
    }

    let rows = ledger(&db).await;
    let tools: Vec<&str> = rows.iter().map(|row| row.tool.as_str()).collect();
    assert_eq!(
        tools,
        [
            "billing.get_customer",
            "billing.list_charges",
            "billing.issue_refund",
            "billing.issue_refund",
            "billing.delete_customer",
            "billing.issue_refund",
            "billing.issue_refund",
            "billing.issue_refund",
        ]
    );
    assert_eq!(rows[2].arguments["_reason"], steps[3].arguments["_reason"]);

    let authorizations = authorizations.lock().unwrap().clone();
    assert!(
        authorizations.len() >= 10,
        "discover, list, eight calls: {authorizations:?}"
    );
    assert!(
        authorizations
            .iter()
            .all(|header| header == "Bearer agent-token"),
        "{authorizations:?}"
    );
}
