//! The billing server over Streamable HTTP, driven by rmcp's HTTP client in
//! both eras, plus the tools not covered by the common scenario.

use serde_json::json;

use rmcp::model::CallToolRequestParams;

use crate::support::{
    Era, billing_scenario, call, connect, http_transport, ledger, object, serve_billing_http,
    temp_db, text,
};

#[tokio::test]
async fn http_runs_the_refund_scenario_in_both_eras() {
    for era in Era::ALL {
        let (_dir, db) = temp_db();
        let url = serve_billing_http(&db).await;
        let client = connect(http_transport(&url), era).await;
        billing_scenario(&client, &db, era).await;
        client.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn customers_emails_and_deletion_behave() {
    let (_dir, db) = temp_db();
    let url = serve_billing_http(&db).await;
    let client = connect(http_transport(&url), Era::Discover).await;

    let ada = call(&client, "get_customer", json!({"id": "cus_001"})).await;
    let ada = ada.structured_content.unwrap();
    assert_eq!(ada["name"], "Ada Lovelace");
    assert_eq!(ada["card_number"], "4242 4242 4242 4242");

    let sent = call(
        &client,
        "send_email",
        json!({"to": "ada@example.com", "subject": "Your refund", "body": "On its way."}),
    )
    .await;
    let sent = sent.structured_content.unwrap();
    assert_eq!(sent["status"], "sent");
    assert!(sent["email_id"].as_str().unwrap().starts_with("em_"));
    let bad = call(
        &client,
        "send_email",
        json!({"to": "nobody", "subject": "x", "body": "y"}),
    )
    .await;
    assert_eq!(bad.is_error, Some(true));

    let deleted = call(&client, "delete_customer", json!({"id": "cus_002"})).await;
    assert_eq!(deleted.structured_content.unwrap()["deleted"], true);
    let again = call(&client, "delete_customer", json!({"id": "cus_002"})).await;
    assert_eq!(again.is_error, Some(true));
    assert_eq!(text(&again), "customer `cus_002` not found");

    client.cancel().await.unwrap();
    assert_eq!(ledger(&db).await.len(), 5);
}

#[tokio::test]
async fn bad_arguments_are_tool_errors_and_still_reach_the_ledger() {
    let (_dir, db) = temp_db();
    let url = serve_billing_http(&db).await;
    let client = connect(http_transport(&url), Era::Initialize).await;

    let wrong_type = call(
        &client,
        "issue_refund",
        json!({"charge_id": "ch_001", "amount": "40", "reason": "string amount"}),
    )
    .await;
    assert_eq!(wrong_type.is_error, Some(true), "{wrong_type:?}");
    let fractional = call(
        &client,
        "issue_refund",
        json!({"charge_id": "ch_001", "amount": 1.005, "reason": "sub-cent"}),
    )
    .await;
    assert_eq!(fractional.is_error, Some(true));
    let extra = call(
        &client,
        "get_customer",
        json!({"id": "cus_001", "fields": "all"}),
    )
    .await;
    assert_eq!(extra.is_error, Some(true));

    client.cancel().await.unwrap();
    let tools: Vec<String> = ledger(&db).await.into_iter().map(|row| row.tool).collect();
    assert_eq!(tools, ["issue_refund", "issue_refund", "get_customer"]);
}

#[tokio::test]
async fn concurrent_refunds_never_exceed_the_charge() {
    let (_dir, db) = temp_db();
    let url = serve_billing_http(&db).await;
    let client = connect(http_transport(&url), Era::Discover).await;
    // ch_004 is 15.50: of ten concurrent refunds of 2.00, seven fit.
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let peer = client.peer().clone();
        calls.spawn(async move {
            let arguments = object(json!({"charge_id": "ch_004", "amount": 2, "reason": "race"}));
            peer.call_tool(CallToolRequestParams::new("issue_refund").with_arguments(arguments))
                .await
                .unwrap()
        });
    }
    let results = calls.join_all().await;
    let issued = results
        .iter()
        .filter(|result| result.is_error == Some(false))
        .count();
    assert_eq!(issued, 7);
    client.cancel().await.unwrap();
}
