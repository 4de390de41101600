//! Refusals as values, and the pure decision on a call: allow or deny, and why.

use crate::condition::{Bindings, ConditionError};
use crate::ids::ActionName;
use crate::ports::{BudgetCharge, FreezeTarget, StoreError, UpstreamError};
use crate::register::{Action, Budget, BudgetMeasure};
use crate::request_state::StateFault;
use std::collections::HashSet;
use std::fmt;

/// Why a call was not executed. Each variant's `Display` is the message the agent sees.
#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    /// No credential, or one that matches no agent.
    Unauthenticated,
    /// The tool is not in the agent's remit (or does not exist).
    Unlisted {
        /// The name the agent asked for.
        tool: String,
        /// A granted tool with a close name, if any.
        hint: Option<String>,
    },
    /// The arguments do not fit the tool's input schema or are malformed.
    InvalidArguments {
        /// The action.
        action: ActionName,
        /// What is wrong.
        message: String,
    },
    /// A condition of the register is false.
    Condition {
        /// The action.
        action: ActionName,
        /// The condition as written.
        expr: String,
    },
    /// A condition could not be evaluated for these arguments (missing field, wrong type).
    ConditionError {
        /// The action.
        action: ActionName,
        /// The evaluation error.
        message: String,
    },
    /// A budget has no room for this call.
    OverBudget {
        /// The action.
        action: ActionName,
        /// The budget, in words.
        budget: String,
        /// What the window already holds.
        used: f64,
        /// When the call would fit, RFC 3339.
        resets_at: String,
        /// How long from the refusal until then (what HTTP's `Retry-After` says).
        retry_in: std::time::Duration,
    },
    /// A budget could never hold this call, even empty: its amount alone is over the limit.
    BeyondBudget {
        /// The action.
        action: ActionName,
        /// The budget, in words.
        budget: String,
        /// What this call would add.
        amount: f64,
    },
    /// The kill switch is on for the agent or the action.
    Frozen {
        /// What is frozen.
        target: String,
    },
    /// The action needs a control this version does not yet enforce, so it stays closed.
    NotYetEnforced {
        /// The action.
        action: ActionName,
        /// Which control (`approval`, `delay`).
        control: &'static str,
    },
    /// A dependency (store, audit, upstream) failed before anything was executed.
    Unavailable {
        /// What failed, without secrets.
        message: String,
    },
    /// A resuming call's `requestState` did not open: it is not one remit sealed for this
    /// agent, action and arguments, or it expired. Nothing reached the upstream.
    RequestState {
        /// The action.
        action: ActionName,
        /// Why it did not open (expired, or not valid: which part did not match is not said).
        fault: StateFault,
    },
    /// The action cannot be called as the register and its upstream stand (the upstream
    /// does not list the tool, or gives it a schema remit cannot check): retrying will not
    /// help until an operator fixes one of them.
    Unusable {
        /// The action.
        action: ActionName,
        /// Why, without secrets.
        why: String,
    },
}

impl Refusal {
    /// A short machine-readable code for the refusal (`unlisted`, `condition`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::Unlisted { .. } => "unlisted",
            Self::InvalidArguments { .. } => "invalid_arguments",
            Self::Condition { .. } => "condition",
            Self::ConditionError { .. } => "invalid_arguments",
            Self::OverBudget { .. } | Self::BeyondBudget { .. } => "over_budget",
            Self::Frozen { .. } => "frozen",
            Self::NotYetEnforced { .. } => "not_enforced",
            Self::RequestState { .. } => "invalid_request_state",
            Self::Unavailable { .. } | Self::Unusable { .. } => "unavailable",
        }
    }

    /// For `over_budget`: the whole seconds to wait before retrying ([`retry_after_seconds`]).
    pub fn retry_after_seconds(&self) -> Option<u64> {
        match self {
            Self::OverBudget { retry_in, .. } => Some(retry_after_seconds(*retry_in)),
            _ => None,
        }
    }

    /// Whether the request is at fault (its arguments, or the `requestState` it resumes
    /// with: HTTP 422) rather than the remit (403) or a dependency (503).
    pub fn is_bad_arguments(&self) -> bool {
        matches!(
            self,
            Self::InvalidArguments { .. } | Self::ConditionError { .. } | Self::RequestState { .. }
        )
    }
}

/// `wait` in whole seconds, rounded up and at least one: what HTTP's `Retry-After` says.
pub fn retry_after_seconds(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unauthenticated => f.write_str(
                "refused: no valid agent credential; send one `Authorization: Bearer <token>` header",
            ),
            Self::Unlisted { tool, hint } => {
                write!(
                    f,
                    "refused: `{tool}` is outside this agent's remit; list tools to see what it may call"
                )?;
                if let Some(h) = hint {
                    write!(f, " ({h})")?;
                }
                Ok(())
            }
            Self::InvalidArguments { action, message } => {
                write!(
                    f,
                    "refused: arguments for `{action}` are invalid: {message}"
                )
            }
            Self::Condition { action, expr } => {
                write!(f, "refused: condition `{expr}` is false for `{action}`")
            }
            Self::ConditionError { action, message } => {
                write!(
                    f,
                    "refused: arguments for `{action}` are invalid: {message}"
                )
            }
            Self::OverBudget {
                action,
                budget,
                used,
                resets_at,
                ..
            } => write!(
                f,
                "refused: budget for `{action}` is exhausted ({budget}; {used} used); retry after {resets_at}"
            ),
            Self::BeyondBudget {
                action,
                budget,
                amount,
            } => write!(
                f,
                "refused: `{action}` would add {amount} to a budget that never holds that much ({budget}); it will not fit at any time: ask for less, or ask a person"
            ),
            Self::Frozen { target } => write!(
                f,
                "refused: {target} is frozen by an operator; stop and ask a person"
            ),
            Self::NotYetEnforced { action, control } => write!(
                f,
                "refused: `{action}` requires {control}, which this gateway does not yet enforce; the action stays closed"
            ),
            Self::Unavailable { message } => {
                write!(
                    f,
                    "refused: remit could not decide safely ({message}); nothing was executed, retry later"
                )
            }
            Self::RequestState {
                action,
                fault: StateFault::Expired,
            } => write!(
                f,
                "refused: the input request of `{action}` expired (remit takes the answers for {} minutes); nothing was executed: start the call again without `requestState`",
                crate::request_state::LIFETIME.as_secs() / 60
            ),
            Self::RequestState {
                action,
                fault: StateFault::Invalid,
            } => write!(
                f,
                "refused: the `requestState` sent to `{action}` is not one remit gave this agent for this call; nothing was executed: start the call again without `requestState`, then send back the one its answer gives, unchanged, with the same arguments"
            ),
            Self::Unusable { action, why } => {
                write!(
                    f,
                    "refused: `{action}` cannot be called now: {why}; nothing was executed, and retrying will not help until an operator fixes the register or the upstream"
                )
            }
        }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Self::Unavailable {
            message: format!("store {}", e.kind),
        }
    }
}

impl From<UpstreamError> for Refusal {
    fn from(e: UpstreamError) -> Self {
        Self::Unavailable {
            message: e.to_string(),
        }
    }
}

/// The answer of [`decide`].
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Run it, after charging these budgets.
    Allow(Vec<BudgetCharge>),
    /// Do not run it.
    Deny(Refusal),
}

/// Decides a call from the register alone: kill switch, conditions, budgets to charge.
///
/// Pure: the store's answer on the budgets comes after, in the pipeline.
pub fn decide(
    action: &Action,
    agent: &str,
    bindings: &Bindings<'_>,
    frozen: &HashSet<FreezeTarget>,
) -> Decision {
    if let Some(refusal) = frozen_refusal(action, agent, frozen) {
        return Decision::Deny(refusal);
    }
    if action.approve.is_some() {
        return Decision::Deny(Refusal::NotYetEnforced {
            action: action.name.clone(),
            control: "approval",
        });
    }
    if action.delay.is_some() {
        return Decision::Deny(Refusal::NotYetEnforced {
            action: action.name.clone(),
            control: "a delay",
        });
    }
    for c in &action.conditions {
        match c.holds(bindings) {
            Ok(true) => {}
            Ok(false) => {
                return Decision::Deny(Refusal::Condition {
                    action: action.name.clone(),
                    expr: c.source().to_owned(),
                });
            }
            Err(e) => return Decision::Deny(condition_error(action, &e)),
        }
    }
    let mut charges = Vec::with_capacity(action.budgets.len());
    for b in &action.budgets {
        match charge_for(action, agent, b, bindings) {
            // more than the budget ever holds: no wait would let it through
            Ok(c) if !c.fits_on(0.0) => {
                return Decision::Deny(Refusal::BeyondBudget {
                    action: action.name.clone(),
                    budget: b.to_string(),
                    amount: c.amount,
                });
            }
            Ok(c) => charges.push(c),
            Err(e) => return Decision::Deny(condition_error(action, &e)),
        }
    }
    Decision::Allow(charges)
}

/// The kill switch's refusal of a call by `agent` of `action`, if either is frozen.
///
/// [`decide`] asks first; the pipeline asks again just before the upstream is called, so a
/// call held up in a slow store after its decision does not run past a freeze.
pub fn frozen_refusal(
    action: &Action,
    agent: &str,
    frozen: &HashSet<FreezeTarget>,
) -> Option<Refusal> {
    if frozen.is_empty() {
        return None;
    }
    [
        FreezeTarget::Agent(crate::ids::AgentId::new(agent)),
        FreezeTarget::Action(action.name.clone()),
    ]
    .into_iter()
    .find(|target| frozen.contains(target))
    .map(|target| Refusal::Frozen {
        target: target.to_string(),
    })
}

fn condition_error(action: &Action, e: &ConditionError) -> Refusal {
    Refusal::ConditionError {
        action: action.name.clone(),
        message: e.to_string(),
    }
}

fn charge_for(
    action: &Action,
    agent: &str,
    budget: &Budget,
    bindings: &Bindings<'_>,
) -> Result<BudgetCharge, ConditionError> {
    let amount = match &budget.measure {
        BudgetMeasure::Count => 1.0,
        BudgetMeasure::Sum(expr) => expr.number(bindings)?,
    };
    Ok(BudgetCharge {
        // by what the budget is, not its place in the list: removing, adding or reordering
        // budgets leaves every other budget's charges where they were
        key: format!("{agent}/{}/{}", action.name, budget.identity()),
        window_ms: i64::try_from(budget.per.as_millis()).unwrap_or(i64::MAX),
        amount,
        limit: budget.limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::register::{Strictness, compile};
    use serde_json::json;
    use std::path::Path;

    #[test]
    fn a_request_state_refusal_says_expired_or_not_valid_and_to_start_again() {
        use crate::request_state::StateFault;
        let refusal = |fault| Refusal::RequestState {
            action: ActionName::new("asker.ask"),
            fault,
        };
        let expired = refusal(StateFault::Expired);
        let invalid = refusal(StateFault::Invalid);
        for r in [&expired, &invalid] {
            assert_eq!(r.code(), "invalid_request_state");
            assert!(r.is_bad_arguments(), "422, as an invalid argument");
            assert!(
                r.to_string()
                    .contains("start the call again without `requestState`"),
                "{r}"
            );
        }
        assert!(
            expired
                .to_string()
                .contains("expired (remit takes the answers for 30 minutes)"),
            "{expired}"
        );
        assert!(
            invalid
                .to_string()
                .contains("is not one remit gave this agent for this call"),
            "{invalid}"
        );
    }

    #[test]
    fn a_wait_is_retried_after_whole_seconds_rounded_up_and_at_least_one() {
        use std::time::Duration;
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(3600)), 3600);
        let over = Refusal::OverBudget {
            action: ActionName::new("billing.refund"),
            budget: "1 per hour".to_owned(),
            used: 1.0,
            resets_at: "2026-01-01T00:00:00Z".to_owned(),
            retry_in: Duration::from_millis(2500),
        };
        assert_eq!(over.retry_after_seconds(), Some(3));
        let frozen = Refusal::Frozen {
            target: "agent `a`".to_owned(),
        };
        assert_eq!(frozen.retry_after_seconds(), None);
    }

    fn register() -> crate::register::Register {
        register_of(REGISTER)
    }

    fn register_of(src: &str) -> crate::register::Register {
        let (r, d) = compile(src, Path::new("r.toml"), &|_| None, Strictness::Serve);
        r.unwrap_or_else(|| panic!("{d:?}"))
    }

    const REGISTER: &str = r#"
[agents.bot]
[upstreams.billing]
command = ["x"]
[actions."billing.issue_refund"]
agents = ["bot"]
tier = "write"
require = ["args.amount > 0", "args.amount <= 500"]
budget = [{ count = 20, per = "1h" }, { sum = "args.amount", max = 1000, per = "24h" }]
[actions."billing.send_email"]
agents = ["bot"]
tier = "irreversible"
approve = { by = "finance" }
[approvers]
finance = ["ana"]
"#;

    #[test]
    fn a_call_more_than_its_budget_ever_holds_is_refused_with_no_time_to_retry() {
        let r = register_of(&REGISTER.replace("max = 1000", "max = 100"));
        let a = r.action_exposed_as("billing.issue_refund").unwrap();
        let d = decide(a, "bot", &args(json!({"amount": 150})), &HashSet::new());
        let Decision::Deny(refusal) = d else {
            panic!("allowed: {d:?}")
        };
        assert!(
            matches!(&refusal, Refusal::BeyondBudget { amount, .. } if *amount == 150.0),
            "{refusal:?}"
        );
        assert_eq!(refusal.code(), "over_budget");
        // no wait would let it through: no time to retry is given
        assert_eq!(refusal.retry_after_seconds(), None);
        assert!(
            refusal.to_string().contains("will not fit at any time"),
            "{refusal}"
        );
        // exactly the limit fits an empty window
        let d = decide(a, "bot", &args(json!({"amount": 100})), &HashSet::new());
        assert!(matches!(d, Decision::Allow(_)), "{d:?}");
    }

    fn args(v: serde_json::Value) -> Bindings<'static> {
        match v {
            // leaked: a test's few maps outlive nothing that matters
            serde_json::Value::Object(m) => Bindings::for_args(Box::leak(Box::new(m))),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn allowed_call_carries_one_charge_per_budget() {
        let r = register();
        let a = r.action_exposed_as("billing.issue_refund").unwrap();
        let Decision::Allow(charges) =
            decide(a, "bot", &args(json!({"amount": 40.5})), &HashSet::new())
        else {
            panic!("refused")
        };
        assert_eq!(charges.len(), 2);
        assert_eq!(charges[0].amount, 1.0);
        assert_eq!(charges[0].window_ms, 3_600_000);
        assert_eq!(charges[1].amount, 40.5);
        assert_eq!(charges[1].limit, 1000.0);
        assert_ne!(charges[0].key, charges[1].key);
    }

    /// A charge's key says what its budget is, not its place in the action's list.
    #[test]
    fn a_charge_is_keyed_by_what_its_budget_counts_and_its_window() {
        let r = register();
        let a = r.action_exposed_as("billing.issue_refund").unwrap();
        let Decision::Allow(charges) =
            decide(a, "bot", &args(json!({"amount": 40.5})), &HashSet::new())
        else {
            panic!("refused")
        };
        let keys: Vec<&str> = charges.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "bot/billing.issue_refund/count/3600000ms",
                "bot/billing.issue_refund/sum(args.amount)/86400000ms"
            ]
        );
    }

    #[test]
    fn the_first_false_condition_is_named() {
        let r = register();
        let a = r.action_exposed_as("billing.issue_refund").unwrap();
        let d = decide(a, "bot", &args(json!({"amount": 501})), &HashSet::new());
        assert_eq!(
            d,
            Decision::Deny(Refusal::Condition {
                action: a.name.clone(),
                expr: "args.amount <= 500".into()
            })
        );
    }

    #[test]
    fn a_frozen_agent_or_action_is_refused_before_conditions() {
        let r = register();
        let a = r.action_exposed_as("billing.issue_refund").unwrap();
        let frozen: HashSet<_> = [FreezeTarget::Agent(crate::ids::AgentId::new("bot"))].into();
        assert!(matches!(
            decide(a, "bot", &args(json!({"amount": 9999})), &frozen),
            Decision::Deny(Refusal::Frozen { .. })
        ));
        let frozen: HashSet<_> = [FreezeTarget::Action(a.name.clone())].into();
        assert!(matches!(
            decide(a, "bot", &args(json!({"amount": 1})), &frozen),
            Decision::Deny(Refusal::Frozen { .. })
        ));
        let other: HashSet<_> = [FreezeTarget::Agent(crate::ids::AgentId::new(
            "someone-else",
        ))]
        .into();
        assert!(matches!(
            decide(a, "bot", &args(json!({"amount": 1})), &other),
            Decision::Allow(_)
        ));
    }

    #[test]
    fn an_action_needing_approval_stays_closed_until_approvals_exist() {
        let r = register();
        let a = r.action_exposed_as("billing.send_email").unwrap();
        let d = decide(a, "bot", &args(json!({})), &HashSet::new());
        assert!(
            matches!(
                d,
                Decision::Deny(Refusal::NotYetEnforced {
                    control: "approval",
                    ..
                })
            ),
            "{d:?}"
        );
        assert!(d_message(&d).contains("stays closed"));
    }

    fn d_message(d: &Decision) -> String {
        match d {
            Decision::Deny(r) => r.to_string(),
            Decision::Allow(_) => String::new(),
        }
    }

    #[test]
    fn a_sum_budget_amount_that_cannot_be_charged_exactly_is_invalid_arguments() {
        // no `require` guards the amount: the budget alone must refuse what it cannot charge
        let src = r#"
[agents.bot]
[upstreams.billing]
command = ["x"]
[actions."billing.issue_refund"]
agents = ["bot"]
tier = "write"
budget = [{ sum = "args.amount", max = 1000, per = "24h" }, { sum = "[args.amount][0]", max = 1000, per = "24h" }]
"#;
        let (r, d) = compile(src, Path::new("r.toml"), &|_| None, Strictness::Serve);
        let r = r.unwrap_or_else(|| panic!("{d:?}"));
        let a = r.action_exposed_as("billing.issue_refund").unwrap();
        // negative (would give budget back), integers past 2^53 (charged as another
        // integer), doubles past 2^53; through the native path and the interpreter alike
        for amount in [
            json!(-5),
            json!(-0.5),
            json!(9_007_199_254_740_993_i64),
            json!(u64::MAX),
            json!(1e300),
        ] {
            let d = decide(
                a,
                "bot",
                &args(json!({ "amount": amount })),
                &HashSet::new(),
            );
            let Decision::Deny(refusal @ Refusal::ConditionError { .. }) = &d else {
                panic!("amount {amount}: {d:?}")
            };
            assert!(
                refusal
                    .to_string()
                    .contains("a budget amount from 0 to 2^53"),
                "{refusal}"
            );
        }
        for amount in [
            json!(0),
            json!(-0.0),
            json!(40.5),
            json!(9_007_199_254_740_992_i64),
        ] {
            let d = decide(
                a,
                "bot",
                &args(json!({ "amount": amount })),
                &HashSet::new(),
            );
            assert!(
                matches!(d, Decision::Allow(_)) || amount == json!(9_007_199_254_740_992_i64),
                "amount {amount}: {d:?}"
            );
        }
    }

    #[test]
    fn a_sum_budget_over_a_non_number_is_invalid_arguments() {
        let r = register();
        let a = r.action_exposed_as("billing.issue_refund").unwrap();
        let d = decide(a, "bot", &args(json!({"amount": "40"})), &HashSet::new());
        assert!(
            matches!(d, Decision::Deny(Refusal::ConditionError { .. })),
            "{d:?}"
        );
    }
}
