//! Sliding-window budget arithmetic shared by both backends: room, and when room returns.
//!
//! A budget's window at time `now` holds every charge stamped after `now - window_ms`.
//! Charges stamped later than `now` (another replica's clock running ahead) count
//! too: when clocks disagree the budget errs on the side of refusing.

use remit_core::ports::{BudgetCharge, StoreError, StoreErrorKind};

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

/// Whether `amount` fits on top of `used` under `limit`, forgiving float rounding (0.1 + 0.2).
pub(crate) fn fits(used: f64, amount: f64, limit: f64) -> bool {
    used + amount <= limit + 1e-9 * limit.abs().max(1.0)
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
        if !fits(used, charge.amount, charge.limit) {
            return Some((i, used));
        }
    }
    None
}

/// When enough of the window expires for `charge` to fit.
///
/// `window` is the window's charges, `(time_ms, amount)` in time order. When the call
/// cannot fit even in an empty window, this is when the window empties.
pub(crate) fn resets_at(
    window: &[(i64, f64)],
    used: f64,
    charge: &BudgetCharge,
    now_ms: i64,
) -> i64 {
    let mut left = used;
    for (time_ms, amount) in window {
        left -= amount;
        if fits(left, charge.amount, charge.limit) {
            return time_ms.saturating_add(charge.window_ms).max(now_ms);
        }
    }
    window
        .last()
        .map_or(now_ms, |(time_ms, _)| {
            time_ms.saturating_add(charge.window_ms)
        })
        .max(now_ms)
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
        assert!(fits(0.1 + 0.2, 0.7, 1.0));
        assert!(!fits(0.5, 0.6, 1.0));
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

    #[test]
    fn resets_when_enough_old_charges_leave() {
        // limit 10, holds 3 + 4 + 2 = 9; a charge of 5 needs 4 to leave: the first two.
        let window = [(100, 3.0), (200, 4.0), (300, 2.0)];
        let at = resets_at(&window, 9.0, &charge("a", 5.0, 10.0), 350);
        assert_eq!(at, 1_200);
    }

    #[test]
    fn a_charge_over_the_limit_resets_when_the_window_empties() {
        let window = [(100, 3.0)];
        assert_eq!(
            resets_at(&window, 3.0, &charge("a", 50.0, 10.0), 150),
            1_100
        );
        assert_eq!(resets_at(&[], 0.0, &charge("a", 50.0, 10.0), 150), 150);
    }

    #[test]
    fn negative_amounts_are_refused() {
        assert!(check_charges(&[charge("a", -1.0, 10.0)]).is_err());
        assert!(check_charges(&[charge("a", f64::NAN, 10.0)]).is_err());
        assert!(check_charges(&[charge("a", 1.0, 10.0)]).is_ok());
    }
}
