//! The billing MCP server: seven tools over the SQLite records, written with
//! rmcp's `#[tool]` macros, plus a hand-written `call_tool` that writes every
//! received call to the `received_calls` ledger before the tool runs.

use std::{path::Path, sync::Arc};

use rmcp::{
    ErrorData, Json, RoleServer, ServerHandler,
    handler::server::{
        router::tool::ToolRouter,
        tool::{IntoCallToolResult, ToolCallContext},
        wrapper::Parameters,
    },
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
        ServerCapabilities, ServerConfig,
    },
    service::RequestContext,
    tool, tool_handler, tool_router,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

use crate::{
    Error,
    store::{self, Cents, Charge, Customer, Email, ReceivedCall, Refund},
};

/// The billing system of record as an MCP server (customers, charges,
/// refunds, outbound email), backed by one SQLite file.
///
/// Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Billing {
    pool: SqlitePool,
    tools: Arc<ToolRouter<Self>>,
}

impl Billing {
    /// Opens the SQLite file at `db` (creating it if needed), ensures the
    /// schema and seeds the demo data once.
    pub async fn open(db: &Path) -> Result<Self, Error> {
        let pool = store::open(db).await?;
        store::seed(&pool).await?;
        Ok(Self {
            pool,
            tools: Arc::new(Self::tool_router()),
        })
    }

    /// Every `tools/call` this server's file has received, oldest first.
    pub async fn received_calls(&self) -> Result<Vec<ReceivedCall>, Error> {
        store::received_calls(&self.pool).await
    }
}

/// A business refusal or a storage failure, returned to the caller as a tool
/// result with `isError: true` (never as a JSON-RPC error).
#[derive(Debug)]
struct Refused(String);

impl From<sqlx::Error> for Refused {
    fn from(error: sqlx::Error) -> Self {
        tracing::error!(%error, "billing storage failed");
        Self("billing storage failed; try again later".to_owned())
    }
}

impl IntoCallToolResult for Refused {
    fn into_call_tool_result(self) -> Result<CallToolResponse, ErrorData> {
        Ok(CallToolResult::error(vec![ContentBlock::text(self.0)]).into())
    }
}

fn new_id(prefix: &str) -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", hex.get(..12).unwrap_or(&hex))
}

/// Arguments of `get_customer` and `delete_customer`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CustomerId {
    /// Customer id, e.g. `cus_001`.
    id: String,
}

/// Arguments of `list_charges`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListChargesArgs {
    /// Customer id, e.g. `cus_001`.
    customer: String,
}

/// Result of `list_charges`.
#[derive(Debug, Serialize, JsonSchema)]
struct ChargeList {
    /// The customer whose charges these are.
    customer: String,
    /// The customer's charges, oldest id first.
    charges: Vec<Charge>,
}

/// Arguments of `issue_refund`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct IssueRefundArgs {
    /// The charge to refund, e.g. `ch_001`.
    charge_id: String,
    /// Amount to refund, in the charge's currency, at most two decimals
    /// (e.g. `40` or `19.99`). Must not exceed what is left unrefunded.
    amount: f64,
    /// Why the refund is issued; kept on the refund record.
    reason: String,
}

/// Arguments of `get_refund` and `cancel_refund`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RefundId {
    /// Refund id as returned by `issue_refund`, e.g. `r_1a2b3c4d5e6f`.
    id: String,
}

/// Arguments of `send_email`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SendEmailArgs {
    /// Recipient address.
    to: String,
    /// Subject line.
    subject: String,
    /// Plain-text body.
    body: String,
}

/// Result of `delete_customer`.
#[derive(Debug, Serialize, JsonSchema)]
struct Deleted {
    /// The customer id that was deleted.
    id: String,
    /// Always `true`.
    deleted: bool,
}

#[tool_router]
impl Billing {
    #[tool(
        description = "Look up one customer by id (e.g. `cus_001`): name, email, card on file and balance.",
        annotations(title = "Get customer", read_only_hint = true, open_world_hint = false)
    )]
    async fn get_customer(
        &self,
        Parameters(CustomerId { id }): Parameters<CustomerId>,
    ) -> Result<Json<Customer>, Refused> {
        store::customer(&self.pool, &id)
            .await?
            .map(Json)
            .ok_or_else(|| Refused(format!("customer `{id}` not found")))
    }

    #[tool(
        description = "List a customer's charges, each with the amount already refunded and the amount still refundable.",
        annotations(title = "List charges", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_charges(
        &self,
        Parameters(ListChargesArgs { customer }): Parameters<ListChargesArgs>,
    ) -> Result<Json<ChargeList>, Refused> {
        if store::customer(&self.pool, &customer).await?.is_none() {
            return Err(Refused(format!("customer `{customer}` not found")));
        }
        let charges = store::charges_of(&self.pool, &customer).await?;
        Ok(Json(ChargeList { customer, charges }))
    }

    #[tool(
        description = "Refund part or all of a charge. Refuses when the charge does not exist or the amount exceeds what is left unrefunded. Returns the new refund (`refund_id`, `status`, `amount`); undo it with `cancel_refund`.",
        annotations(
            title = "Issue refund",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn issue_refund(
        &self,
        Parameters(args): Parameters<IssueRefundArgs>,
    ) -> Result<Json<Refund>, Refused> {
        let amount = Cents::parse(args.amount).map_err(Refused)?;
        if args.reason.trim().is_empty() {
            return Err(Refused("a refund needs a reason".to_owned()));
        }
        let refund_id = new_id("r_");
        if let Some(refund) = store::issue_refund(
            &self.pool,
            &refund_id,
            &args.charge_id,
            amount,
            &args.reason,
        )
        .await?
        {
            return Ok(Json(refund));
        }
        // Nothing was inserted: say why.
        match store::charge(&self.pool, &args.charge_id).await? {
            None => Err(Refused(format!("charge `{}` not found", args.charge_id))),
            Some(charge) => Err(Refused(format!(
                "refund of `{:.2}` exceeds the {:.2} left unrefunded on charge `{}`",
                amount.amount(),
                charge.refundable,
                charge.id
            ))),
        }
    }

    #[tool(
        description = "Look up one refund by id: status (`issued` or `cancelled`), amount, charge, customer and reason.",
        annotations(title = "Get refund", read_only_hint = true, open_world_hint = false)
    )]
    async fn get_refund(
        &self,
        Parameters(RefundId { id }): Parameters<RefundId>,
    ) -> Result<Json<Refund>, Refused> {
        store::refund(&self.pool, &id)
            .await?
            .map(Json)
            .ok_or_else(|| Refused(format!("refund `{id}` not found")))
    }

    #[tool(
        description = "Cancel an issued refund, returning its amount to the charge's refundable remainder. Cancelling an already cancelled refund changes nothing.",
        annotations(
            title = "Cancel refund",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn cancel_refund(
        &self,
        Parameters(RefundId { id }): Parameters<RefundId>,
    ) -> Result<Json<Refund>, Refused> {
        store::cancel_refund(&self.pool, &id)
            .await?
            .map(Json)
            .ok_or_else(|| Refused(format!("refund `{id}` not found")))
    }

    #[tool(
        description = "Send an email to a customer. It cannot be unsent.",
        annotations(
            title = "Send email",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn send_email(
        &self,
        Parameters(args): Parameters<SendEmailArgs>,
    ) -> Result<Json<Email>, Refused> {
        let to = args.to.trim();
        let valid = to
            .split_once('@')
            .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'));
        if !valid {
            return Err(Refused(format!("`{to}` is not an email address")));
        }
        let email_id = new_id("em_");
        let email = store::send_email(&self.pool, &email_id, to, &args.subject, &args.body).await?;
        Ok(Json(email))
    }

    #[tool(
        description = "Delete a customer record permanently. Their charges and refunds stay on file.",
        annotations(
            title = "Delete customer",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn delete_customer(
        &self,
        Parameters(CustomerId { id }): Parameters<CustomerId>,
    ) -> Result<Json<Deleted>, Refused> {
        if store::delete_customer(&self.pool, &id).await? {
            Ok(Json(Deleted { id, deleted: true }))
        } else {
            Err(Refused(format!("customer `{id}` not found")))
        }
    }
}

#[tool_handler(router = self.tools)]
impl ServerHandler for Billing {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "remit-billing",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Example billing system of record: customers, charges, refunds and outbound email.",
            )
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        // INVARIANT: the call is in the ledger before any tool code runs, so a
        // test can tell "refused upstream" from "never arrived".
        let arguments = serde_json::to_string(&request.arguments)
            .map_err(|error| ErrorData::internal_error(error.to_string(), None))?;
        let version = context.protocol_version().map(|v| v.to_string());
        if let Err(error) =
            store::record_call(&self.pool, &request.name, &arguments, version.as_deref()).await
        {
            // Fail closed: a call that cannot be recorded does not run.
            tracing::error!(%error, tool = %request.name, "could not record received call");
            return Ok(CallToolResult::error(vec![ContentBlock::text(
                "billing storage failed; the call was not run",
            )])
            .into());
        }
        let call = ToolCallContext::new(self, request, context);
        self.tools.call(call).await
    }
}
