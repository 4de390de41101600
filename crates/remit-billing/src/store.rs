//! The billing system's own records, kept in one SQLite file.
//!
//! Money is stored as integer cents; the tools speak decimal amounts
//! (`40.0`) and convert at the edge with [`Cents::parse`].

use std::{path::Path, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};
use sqlx::{
    Row, SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow},
};

use crate::Error;

/// SQL for "now" as an RFC 3339 UTC timestamp with milliseconds.
const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ','now')";

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS billing_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS customers (
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        email         TEXT NOT NULL,
        card_number   TEXT NOT NULL,
        balance_cents INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS charges (
        id           TEXT PRIMARY KEY,
        customer     TEXT NOT NULL,
        amount_cents INTEGER NOT NULL,
        description  TEXT NOT NULL,
        created      TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS refunds (
        id           TEXT PRIMARY KEY,
        charge_id    TEXT NOT NULL,
        customer     TEXT NOT NULL,
        amount_cents INTEGER NOT NULL,
        status       TEXT NOT NULL CHECK (status IN ('issued', 'cancelled')),
        reason       TEXT NOT NULL,
        created      TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS refunds_by_charge ON refunds (charge_id, status)",
    "CREATE TABLE IF NOT EXISTS outbound_emails (
        id       TEXT PRIMARY KEY,
        \"to\"   TEXT NOT NULL,
        subject  TEXT NOT NULL,
        body     TEXT NOT NULL,
        sent_at  TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS received_calls (
        seq              INTEGER PRIMARY KEY AUTOINCREMENT,
        tool             TEXT NOT NULL,
        arguments        TEXT NOT NULL,
        protocol_version TEXT,
        received_at      TEXT NOT NULL
    )",
];

/// `(id, name, email, card_number, balance_cents)`
const SEED_CUSTOMERS: &[(&str, &str, &str, &str, i64)] = &[
    (
        "cus_001",
        "Ada Lovelace",
        "ada@example.com",
        "4242 4242 4242 4242",
        0,
    ),
    (
        "cus_002",
        "Grace Hopper",
        "grace@example.com",
        "5555 5555 5555 4444",
        2_500,
    ),
    (
        "cus_003",
        "Alan Turing",
        "alan@example.com",
        "3782 822463 10005",
        -1_250,
    ),
];

/// `(id, customer, amount_cents, description)`
const SEED_CHARGES: &[(&str, &str, i64, &str)] = &[
    ("ch_001", "cus_001", 12_000, "annual plan"),
    ("ch_002", "cus_001", 4_000, "extra seats"),
    ("ch_003", "cus_002", 99_900, "enterprise onboarding"),
    ("ch_004", "cus_003", 1_550, "usage overage"),
];

/// An amount of money in integer cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Cents(pub(crate) i64);

impl Cents {
    /// Reads a decimal amount from a tool argument: positive, finite, at most
    /// two decimals, below a trillion.
    pub(crate) fn parse(amount: f64) -> Result<Self, String> {
        if !amount.is_finite() || amount <= 0.0 {
            return Err(format!("amount `{amount}` must be a positive number"));
        }
        if amount >= 1e12 {
            return Err(format!("amount `{amount}` is too large"));
        }
        let scaled = (amount * 100.0).round();
        if (scaled - amount * 100.0).abs() > 1e-6 {
            return Err(format!("amount `{amount}` has more than two decimals"));
        }
        #[expect(
            clippy::cast_possible_truncation,
            reason = "scaled is finite, whole and below 1e14, so it fits in i64 exactly"
        )]
        let cents = scaled as i64;
        Ok(Self(cents))
    }

    /// The amount as a decimal number, for tool results.
    #[expect(
        clippy::cast_precision_loss,
        reason = "amounts are below 1e14 cents, well inside f64's exact integer range"
    )]
    pub(crate) fn amount(self) -> f64 {
        self.0 as f64 / 100.0
    }
}

/// Opens (creating if needed) the SQLite file at `db` and makes sure the
/// schema exists.
pub(crate) async fn open(db: &Path) -> Result<SqlitePool, Error> {
    let options = SqliteConnectOptions::from_str("sqlite:")
        .map_err(Error::Storage)?
        .filename(db)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .map_err(Error::Storage)?;
    for statement in SCHEMA {
        sqlx::query(*statement)
            .execute(&pool)
            .await
            .map_err(Error::Storage)?;
    }
    Ok(pool)
}

/// Inserts the demo customers and charges once per file. A later open does
/// not bring back customers that were deleted since.
pub(crate) async fn seed(pool: &SqlitePool) -> Result<(), Error> {
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(Error::Storage)?;
    let first =
        sqlx::query("INSERT OR IGNORE INTO billing_meta (key, value) VALUES ('seeded', '1')")
            .execute(&mut *tx)
            .await
            .map_err(Error::Storage)?
            .rows_affected()
            == 1;
    if first {
        for (id, name, email, card, balance) in SEED_CUSTOMERS {
            sqlx::query(
                "INSERT OR IGNORE INTO customers (id, name, email, card_number, balance_cents)
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(name)
            .bind(email)
            .bind(card)
            .bind(balance)
            .execute(&mut *tx)
            .await
            .map_err(Error::Storage)?;
        }
        for (id, customer, cents, description) in SEED_CHARGES {
            sqlx::query(
                "INSERT OR IGNORE INTO charges (id, customer, amount_cents, description, created)
                 VALUES (?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
            )
            .bind(id)
            .bind(customer)
            .bind(cents)
            .bind(description)
            .execute(&mut *tx)
            .await
            .map_err(Error::Storage)?;
        }
    }
    tx.commit().await.map_err(Error::Storage)?;
    Ok(())
}

/// Writes one received `tools/call` to the ledger. Runs before the tool does.
pub(crate) async fn record_call(
    pool: &SqlitePool,
    tool: &str,
    arguments: &str,
    protocol_version: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO received_calls (tool, arguments, protocol_version, received_at)
         VALUES (?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
    )
    .bind(tool)
    .bind(arguments)
    .bind(protocol_version)
    .execute(pool)
    .await?;
    Ok(())
}

/// One `tools/call` as the billing server's ledger recorded it on arrival.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReceivedCall {
    /// Order of arrival, from 1.
    pub seq: i64,
    /// The tool name exactly as the caller sent it.
    pub tool: String,
    /// The `arguments` object as sent (`null` when absent).
    pub arguments: serde_json::Value,
    /// The protocol version the request ran under, when known.
    pub protocol_version: Option<String>,
    /// When it arrived, RFC 3339 UTC.
    pub received_at: String,
}

/// Every call in the ledger, oldest first.
pub(crate) async fn received_calls(pool: &SqlitePool) -> Result<Vec<ReceivedCall>, Error> {
    let rows = sqlx::query(
        "SELECT seq, tool, arguments, protocol_version, received_at
         FROM received_calls ORDER BY seq",
    )
    .fetch_all(pool)
    .await
    .map_err(Error::Storage)?;
    rows.iter()
        .map(|row| {
            let arguments: String = row.try_get("arguments").map_err(Error::Storage)?;
            Ok(ReceivedCall {
                seq: row.try_get("seq").map_err(Error::Storage)?,
                tool: row.try_get("tool").map_err(Error::Storage)?,
                arguments: serde_json::from_str(&arguments).map_err(Error::Ledger)?,
                protocol_version: row.try_get("protocol_version").map_err(Error::Storage)?,
                received_at: row.try_get("received_at").map_err(Error::Storage)?,
            })
        })
        .collect()
}

/// A customer record.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Customer {
    /// Customer id, e.g. `cus_001`.
    pub(crate) id: String,
    /// Full name.
    pub(crate) name: String,
    /// Contact email address.
    pub(crate) email: String,
    /// Card on file (sensitive).
    pub(crate) card_number: String,
    /// Account balance in the account currency; negative means the customer owes.
    pub(crate) balance: f64,
}

pub(crate) async fn customer(pool: &SqlitePool, id: &str) -> Result<Option<Customer>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, name, email, card_number, balance_cents FROM customers WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(|row| {
        Ok(Customer {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            email: row.try_get("email")?,
            card_number: row.try_get("card_number")?,
            balance: Cents(row.try_get("balance_cents")?).amount(),
        })
    })
    .transpose()
}

pub(crate) async fn delete_customer(pool: &SqlitePool, id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM customers WHERE id = ?")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// A charge on a customer's card, with what has been refunded of it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Charge {
    /// Charge id, e.g. `ch_001`.
    pub(crate) id: String,
    /// The customer charged.
    pub(crate) customer: String,
    /// Amount charged.
    pub(crate) amount: f64,
    /// What the charge was for.
    pub(crate) description: String,
    /// Sum of the refunds currently issued against this charge.
    pub(crate) refunded: f64,
    /// What may still be refunded: `amount - refunded`.
    pub(crate) refundable: f64,
    /// When the charge was made, RFC 3339 UTC.
    pub(crate) created: String,
}

const CHARGE_COLUMNS: &str = "c.id, c.customer, c.amount_cents, c.description, c.created,
     COALESCE((SELECT SUM(r.amount_cents) FROM refunds r
               WHERE r.charge_id = c.id AND r.status = 'issued'), 0) AS refunded_cents";

fn charge_from_row(row: &SqliteRow) -> Result<Charge, sqlx::Error> {
    let amount = Cents(row.try_get("amount_cents")?);
    let refunded = Cents(row.try_get("refunded_cents")?);
    Ok(Charge {
        id: row.try_get("id")?,
        customer: row.try_get("customer")?,
        amount: amount.amount(),
        description: row.try_get("description")?,
        refunded: refunded.amount(),
        refundable: Cents(amount.0 - refunded.0).amount(),
        created: row.try_get("created")?,
    })
}

pub(crate) async fn charges_of(
    pool: &SqlitePool,
    customer: &str,
) -> Result<Vec<Charge>, sqlx::Error> {
    let sql = format!("SELECT {CHARGE_COLUMNS} FROM charges c WHERE c.customer = ? ORDER BY c.id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(customer)
        .fetch_all(pool)
        .await?;
    rows.iter().map(charge_from_row).collect()
}

pub(crate) async fn charge(pool: &SqlitePool, id: &str) -> Result<Option<Charge>, sqlx::Error> {
    let sql = format!("SELECT {CHARGE_COLUMNS} FROM charges c WHERE c.id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(charge_from_row).transpose()
}

/// A refund against a charge.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Refund {
    /// Refund id, e.g. `r_1a2b3c4d5e6f`.
    pub(crate) refund_id: String,
    /// `issued` or `cancelled`.
    pub(crate) status: String,
    /// Amount refunded.
    pub(crate) amount: f64,
    /// The charge refunded.
    pub(crate) charge_id: String,
    /// The customer the charge belongs to.
    pub(crate) customer: String,
    /// Why the refund was issued.
    pub(crate) reason: String,
    /// When the refund was issued, RFC 3339 UTC.
    pub(crate) created: String,
}

fn refund_from_row(row: &SqliteRow) -> Result<Refund, sqlx::Error> {
    Ok(Refund {
        refund_id: row.try_get("id")?,
        status: row.try_get("status")?,
        amount: Cents(row.try_get("amount_cents")?).amount(),
        charge_id: row.try_get("charge_id")?,
        customer: row.try_get("customer")?,
        reason: row.try_get("reason")?,
        created: row.try_get("created")?,
    })
}

pub(crate) async fn refund(pool: &SqlitePool, id: &str) -> Result<Option<Refund>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, charge_id, customer, amount_cents, status, reason, created
         FROM refunds WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(refund_from_row).transpose()
}

/// Issues a refund if the charge exists and its unrefunded remainder covers
/// `amount`. Returns `None` when it does not (the caller finds out why).
///
/// INVARIANT: the check and the insert are one statement, so two concurrent
/// refunds can never together exceed the charge.
pub(crate) async fn issue_refund(
    pool: &SqlitePool,
    refund_id: &str,
    charge_id: &str,
    amount: Cents,
    reason: &str,
) -> Result<Option<Refund>, sqlx::Error> {
    let sql = format!(
        "INSERT INTO refunds (id, charge_id, customer, amount_cents, status, reason, created)
         SELECT ?1, c.id, c.customer, ?2, 'issued', ?3, {NOW}
         FROM charges c
         WHERE c.id = ?4
           AND c.amount_cents - COALESCE((SELECT SUM(r.amount_cents) FROM refunds r
                                          WHERE r.charge_id = c.id AND r.status = 'issued'), 0)
               >= ?2"
    );
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(refund_id)
        .bind(amount.0)
        .bind(reason)
        .bind(charge_id)
        .execute(pool)
        .await?;
    if done.rows_affected() == 1 {
        refund(pool, refund_id).await
    } else {
        Ok(None)
    }
}

/// Marks a refund cancelled. Returns the refund as it now stands, or `None`
/// when there is no such refund. Cancelling twice is harmless.
pub(crate) async fn cancel_refund(
    pool: &SqlitePool,
    id: &str,
) -> Result<Option<Refund>, sqlx::Error> {
    sqlx::query("UPDATE refunds SET status = 'cancelled' WHERE id = ?")
        .bind(id)
        .execute(pool)
        .await?;
    refund(pool, id).await
}

/// An email the billing system sent.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Email {
    /// Email id, e.g. `em_1a2b3c4d5e6f`.
    pub(crate) email_id: String,
    /// Always `sent`.
    pub(crate) status: String,
    /// Recipient address.
    pub(crate) to: String,
    /// Subject line.
    pub(crate) subject: String,
    /// When it was sent, RFC 3339 UTC.
    pub(crate) sent_at: String,
}

pub(crate) async fn send_email(
    pool: &SqlitePool,
    email_id: &str,
    to: &str,
    subject: &str,
    body: &str,
) -> Result<Email, sqlx::Error> {
    let sql = format!(
        "INSERT INTO outbound_emails (id, \"to\", subject, body, sent_at)
         VALUES (?, ?, ?, ?, {NOW}) RETURNING sent_at"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(email_id)
        .bind(to)
        .bind(subject)
        .bind(body)
        .fetch_one(pool)
        .await?;
    Ok(Email {
        email_id: email_id.to_owned(),
        status: "sent".to_owned(),
        to: to.to_owned(),
        subject: subject.to_owned(),
        sent_at: row.try_get("sent_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::Cents;

    #[test]
    fn amounts_convert_to_cents_exactly() {
        assert_eq!(Cents::parse(40.0), Ok(Cents(4_000)));
        assert_eq!(Cents::parse(0.1 + 0.2), Ok(Cents(30)));
        assert_eq!(Cents::parse(19.99), Ok(Cents(1_999)));
        assert_eq!(Cents(1_999).amount(), 19.99);
    }

    #[test]
    fn rejects_zero_negative_fractional_cents_and_non_finite_amounts() {
        for bad in [0.0, -1.0, 10.005, f64::NAN, f64::INFINITY, 1e13] {
            assert!(Cents::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
