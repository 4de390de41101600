//! The billing server as a child process over stdio, in both eras.

use serde_json::json;

use crate::support::{Era, billing_scenario, call, connect, ledger, spawn_binary, temp_db};

async fn scenario_over_stdio(era: Era) {
    let (_dir, db) = temp_db();
    let transport = spawn_binary(&["--db", db.to_str().unwrap()]);
    let client = connect(transport, era).await;
    billing_scenario(&client, &db, era).await;
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn stdio_initialize_era_runs_the_refund_scenario() {
    scenario_over_stdio(Era::Initialize).await;
}

#[tokio::test]
async fn stdio_discover_era_runs_the_refund_scenario() {
    scenario_over_stdio(Era::Discover).await;
}

#[tokio::test]
async fn reopening_the_file_neither_duplicates_seed_data_nor_revives_deleted_customers() {
    let (_dir, db) = temp_db();
    for round in 0..2 {
        let client = connect(
            spawn_binary(&["--db", db.to_str().unwrap()]),
            Era::Initialize,
        )
        .await;
        let charges = call(&client, "list_charges", json!({"customer": "cus_001"})).await;
        let charges = charges.structured_content.unwrap();
        assert_eq!(
            charges["charges"].as_array().unwrap().len(),
            2,
            "round {round}"
        );
        if round == 0 {
            let deleted = call(&client, "delete_customer", json!({"id": "cus_003"})).await;
            assert_eq!(deleted.is_error, Some(false));
        } else {
            let gone = call(&client, "get_customer", json!({"id": "cus_003"})).await;
            assert_eq!(gone.is_error, Some(true));
        }
        client.cancel().await.unwrap();
    }
    assert_eq!(ledger(&db).await.len(), 4);
}
