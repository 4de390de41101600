//! Sliding-window budget arithmetic shared by both backends: room, and when room returns.
//!
//! A budget's window at time `now` holds every charge stamped after `now - window_ms`.
//! On PostgreSQL `now` is the database's clock for every replica
//! ([`crate::ChargeClock::Database`]), so replicas agree on what a window holds whatever
//! their own clocks say. Charges stamped later than `now` (a clock set back) count too.

use remit_core::ports::{BudgetCharge, ChargeOutcome, StoreError, StoreErrorKind};

/// The first instant a charge no longer counts is `time_ms + window_ms`; rows after `since` count.
pub(crate) fn since(now_ms: i64, window_ms: i64) -> i64 {
    now_ms.saturating_sub(window_ms)
}

/// Charges at or before this instant may be deleted: two windows back, to spare replicas whose clocks lag.
pub(crate) fn prune_before(now_ms: i64, window_ms: i64) -> i64 {
    now_ms.saturating_sub(window_ms.saturating_mul(2))
}

/// Refuses charges the arithmetic cannot honour: negative or non-finite amounts, empty windows.
pub(crate) fn check_charges(charges: &[BudgetCharge]) -> Result<(), StoreError> {
    for charge in charges {
        let bad = if charge.window_ms <= 0 {
            Some("its window must be longer than 0 ms")
        } else if !charge.amount.is_finite() || charge.amount < 0.0 {
            Some("its amount must be a finite number of at least 0")
        } else if !charge.limit.is_finite() {
            Some("its limit must be a finite number")
        } else {
            None
        };
        if let Some(why) = bad {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                format!("cannot charge budget `{}`: {why}", charge.key),
            ));
        }
    }
    Ok(())
}

/// The first budget of a call with no room, and what its window holds.
///
/// `used[i]` is what the store's window for `charges[i]` holds; a key charged twice in
/// one call also counts the call's own earlier amounts.
pub(crate) fn first_exceeded(charges: &[BudgetCharge], used: &[f64]) -> Option<(usize, f64)> {
    for (i, (charge, used)) in charges.iter().zip(used).enumerate() {
        let earlier: f64 = charges
            .iter()
            .take(i)
            .filter(|c| c.key == charge.key)
            .map(|c| c.amount)
            .sum();
        let used = used + earlier;
        if !charge.fits_on(used) {
            return Some((i, used));
        }
    }
    None
}

/// The running total a charge must reach for its leaving to make room for `charge`.
///
/// `base` is the running total just before the window, `used` what the window holds
/// (the call's own earlier amounts on this key included).
pub(crate) fn need_to_leave(base: f64, used: f64, charge: &BudgetCharge) -> f64 {
    base + used + charge.amount - charge.limit - charge.rounding_slack()
}

/// When room returns: when the first charge reaching the needed running total leaves the window.
///
/// `first` is that charge's time, if any; without one the call cannot fit even in an
/// empty window, and this is when the window empties (`last` is the key's latest charge).
pub(crate) fn resets_at(
    first: Option<i64>,
    last: Option<i64>,
    charge: &BudgetCharge,
    now_ms: i64,
) -> i64 {
    first
        .or(last)
        .map_or(now_ms, |t| t.saturating_add(charge.window_ms))
        .max(now_ms)
}

/// The time and running total of a new charge: never earlier than the key's last charge.
///
/// INVARIANT: per key, `time_ms` never decreases, so `cum` grows with it and a window's
/// sum is a difference of two running totals. A replica whose clock lags stamps its charge
/// at the key's latest time, which only keeps the charge in the window longer.
pub(crate) fn next_charge(last: Option<(i64, f64)>, amount: f64, now_ms: i64) -> (i64, f64) {
    match last {
        Some((time, cum)) => (time.max(now_ms), cum + amount),
        None => (now_ms, amount),
    }
}

/// The statements a budget charge runs, on one backend's connection inside the batch's transaction.
///
/// Each backend answers them with the SQL in `sql`; [`charge`] is the one algorithm over them.
pub(crate) trait ChargeTable {
    /// The backend's error.
    type Error;
    /// The key's latest charge: its time and running total (`sql::LAST_CHARGE`).
    async fn last_charge(&mut self, key: &str) -> Result<Option<(i64, f64)>, Self::Error>;
    /// The running total of the latest charge at or before `since_ms` (`sql::BASE_CUM`).
    async fn base_cum(&mut self, key: &str, since_ms: i64) -> Result<Option<f64>, Self::Error>;
    /// The time of the oldest charge whose running total reaches `need` (`sql::FIRST_REACHING`).
    async fn first_reaching(&mut self, key: &str, need: f64) -> Result<Option<i64>, Self::Error>;
    /// Records a charge, then forgets the key's charges before `prune_before_ms` but the newest of them
    /// (`sql::INSERT_CHARGE`, `sql::PRUNE_CHARGES`).
    async fn record(
        &mut self,
        key: &str,
        charge: (i64, f64, f64),
        prune_before_ms: i64,
    ) -> Result<(), Self::Error>;
}

/// Checks every budget of one call and charges all of them, or none.
pub(crate) async fn charge<L: ChargeTable>(
    ledger: &mut L,
    charges: &[BudgetCharge],
    now_ms: i64,
) -> Result<ChargeOutcome, L::Error> {
    let mut used = Vec::with_capacity(charges.len());
    let mut state = Vec::with_capacity(charges.len());
    for c in charges {
        let last = ledger.last_charge(&c.key).await?;
        let base = ledger
            .base_cum(&c.key, since(now_ms, c.window_ms))
            .await?
            .unwrap_or(0.0);
        used.push((last.map_or(0.0, |l| l.1) - base).max(0.0));
        state.push((last, base));
    }
    if let Some((index, used)) = first_exceeded(charges, &used) {
        let mut resets_at_ms = now_ms;
        if let (Some(c), Some((last, base))) = (charges.get(index), state.get(index)) {
            let first = ledger
                .first_reaching(&c.key, need_to_leave(*base, used, c))
                .await?;
            resets_at_ms = resets_at(first, last.map(|l| l.0), c, now_ms);
        }
        return Ok(ChargeOutcome::Exceeded {
            index,
            used,
            resets_at_ms,
        });
    }
    for c in charges {
        // read again: an earlier charge of this call may have been on the same key
        let (time_ms, cum) = next_charge(ledger.last_charge(&c.key).await?, c.amount, now_ms);
        ledger
            .record(
                &c.key,
                (time_ms, c.amount, cum),
                prune_before(now_ms, c.window_ms),
            )
            .await?;
    }
    Ok(ChargeOutcome::Charged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(key: &str, amount: f64, limit: f64) -> BudgetCharge {
        BudgetCharge {
            key: key.to_owned(),
            window_ms: 1_000,
            amount,
            limit,
        }
    }

    #[test]
    fn float_rounding_does_not_refuse_an_exact_fit() {
        assert!(charge("k", 0.7, 1.0).fits_on(0.1 + 0.2));
        assert!(!charge("k", 0.6, 1.0).fits_on(0.5));
    }

    #[test]
    fn first_budget_without_room_is_reported() {
        let charges = [charge("a", 1.0, 10.0), charge("b", 5.0, 10.0)];
        assert_eq!(first_exceeded(&charges, &[3.0, 4.0]), None);
        assert_eq!(first_exceeded(&charges, &[3.0, 6.0]), Some((1, 6.0)));
    }

    #[test]
    fn a_key_charged_twice_in_one_call_counts_both() {
        let charges = [charge("a", 4.0, 10.0), charge("a", 4.0, 10.0)];
        assert_eq!(first_exceeded(&charges, &[3.0, 3.0]), Some((1, 7.0)));
    }

    /// The oldest charge of `window` (time, running total) reaching `need`, as the store finds it.
    fn first_reaching(window: &[(i64, f64)], need: f64) -> Option<i64> {
        window.iter().find(|(_, cum)| *cum >= need).map(|(t, _)| *t)
    }

    #[test]
    fn resets_when_enough_old_charges_leave() {
        // limit 10, holds 3 + 4 + 2 = 9 (running totals 3, 7, 9); a charge of 5 needs 4 to
        // leave: the first two, so room returns when the one at 200 leaves.
        let window = [(100, 3.0), (200, 7.0), (300, 9.0)];
        let c = charge("a", 5.0, 10.0);
        let need = need_to_leave(0.0, 9.0, &c);
        assert_eq!(
            resets_at(first_reaching(&window, need), Some(300), &c, 350),
            1_200
        );
    }

    #[test]
    fn a_charge_over_the_limit_resets_when_the_window_empties() {
        let window = [(100, 3.0)];
        let c = charge("a", 50.0, 10.0);
        let need = need_to_leave(0.0, 3.0, &c);
        assert_eq!(
            resets_at(first_reaching(&window, need), Some(100), &c, 150),
            1_100
        );
        assert_eq!(resets_at(None, None, &c, 150), 150);
    }

    #[test]
    fn charges_never_go_back_in_time_per_key() {
        assert_eq!(next_charge(None, 2.0, 100), (100, 2.0));
        assert_eq!(next_charge(Some((100, 2.0)), 3.0, 150), (150, 5.0));
        assert_eq!(next_charge(Some((200, 5.0)), 1.0, 150), (200, 6.0));
    }

    #[test]
    fn negative_amounts_are_refused() {
        assert!(check_charges(&[charge("a", -1.0, 10.0)]).is_err());
        assert!(check_charges(&[charge("a", f64::NAN, 10.0)]).is_err());
        assert!(check_charges(&[charge("a", 1.0, 10.0)]).is_ok());
    }
}
