//! Addresses that keep failing authentication: after a burst of failures, answered 429 for a while.
//!
//! Every request is authenticated first, so an agent with a valid token is never held back
//! by others failing from the same address (a proxy, a NAT): only failures count. Each
//! address (an IPv6 address by its /64, which one host can rotate through) has a bucket of
//! [`BURST`] failures, refilled at one per [`REFILL`]. Once it is empty, further failures
//! from that address are answered 429 with `Retry-After` instead of 401, which slows down
//! anyone guessing tokens, and they are logged as one summary line per address per minute
//! instead of one line per request.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failed authentications an address may make at once.
pub(crate) const BURST: u32 = 20;

/// How often an address gets one failure back.
pub(crate) const REFILL: Duration = Duration::from_secs(1);

/// Addresses tracked at once; past it, addresses whose bucket is full again are forgotten,
/// and if all are still failing, a new failing address is answered 429 at once.
const MAX_ADDRESSES: usize = 65_536;

/// How often an address over its limit is logged.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// The peer address of the connection a request came on (set by [`crate::serve`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer(pub(crate) SocketAddr);

/// The failure buckets of every address that failed lately.
#[derive(Debug, Default)]
pub(crate) struct AuthFailures {
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    /// Failures left, as of `at`.
    left: f64,
    at: Instant,
    /// Requests answered 429 since the last log line.
    refused: u64,
    logged: Option<Instant>,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let gained = now.saturating_duration_since(self.at).as_secs_f64() / REFILL.as_secs_f64();
        self.left = (self.left + gained).min(f64::from(BURST));
        self.at = now;
    }
}

impl AuthFailures {
    /// Records a failed authentication from `peer` (unknown: one shared bucket); `Some(wait)` when it is over its limit.
    pub(crate) fn failed(&self, peer: Option<SocketAddr>, now: Instant) -> Option<Duration> {
        let key = peer.map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |p| key(p.ip()));
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_ADDRESSES && !buckets.contains_key(&key) {
            buckets.retain(|_, b| {
                b.refill(now);
                b.left < f64::from(BURST)
            });
            if buckets.len() >= MAX_ADDRESSES {
                tracing::warn!(
                    addresses = buckets.len(),
                    "too many addresses failing authentication at once; refusing new ones"
                );
                return Some(REFILL);
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            left: f64::from(BURST),
            at: now,
            refused: 0,
            logged: None,
        });
        bucket.refill(now);
        if bucket.left >= 1.0 {
            bucket.left -= 1.0;
            return None;
        }
        bucket.refused += 1;
        if bucket
            .logged
            .is_none_or(|at| now.saturating_duration_since(at) >= LOG_EVERY)
        {
            tracing::warn!(
                address = %key,
                refused = bucket.refused,
                "an address keeps failing authentication; answering it 429"
            );
            bucket.refused = 0;
            bucket.logged = Some(now);
        }
        let wait = (1.0 - bucket.left) * REFILL.as_secs_f64();
        Some(Duration::from_secs_f64(wait.max(0.0)))
    }
}

/// The bucket an address counts against: itself, or its /64 for IPv6 (an IPv4-mapped IPv6 address as IPv4).
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_burst_of_failures_is_allowed_then_refused_until_the_bucket_refills() {
        let limit = AuthFailures::default();
        let t0 = Instant::now();
        for _ in 0..BURST {
            assert_eq!(limit.failed(peer("10.0.0.1:1000"), t0), None);
        }
        let wait = limit.failed(peer("10.0.0.1:1001"), t0).unwrap();
        assert!(wait > Duration::ZERO && wait <= REFILL, "{wait:?}");
        // another address is not held back
        assert_eq!(limit.failed(peer("10.0.0.2:1000"), t0), None);
        // one failure comes back per REFILL
        assert_eq!(limit.failed(peer("10.0.0.1:1000"), t0 + REFILL), None);
        assert!(limit.failed(peer("10.0.0.1:1000"), t0 + REFILL).is_some());
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_bucket_and_mapped_ipv4_counts_as_ipv4() {
        let limit = AuthFailures::default();
        let t0 = Instant::now();
        for i in 0..BURST {
            assert_eq!(
                limit.failed(peer(&format!("[2001:db8::{i:x}]:80")), t0),
                None
            );
        }
        assert!(limit.failed(peer("[2001:db8::ffff:1]:80"), t0).is_some());
        assert_eq!(limit.failed(peer("[2001:db8:0:1::1]:80"), t0), None);
        for _ in 0..BURST {
            assert_eq!(limit.failed(peer("192.0.2.7:80"), t0), None);
        }
        assert!(limit.failed(peer("[::ffff:192.0.2.7]:80"), t0).is_some());
    }

    #[test]
    fn addresses_whose_bucket_refilled_are_forgotten_when_the_table_is_full() {
        let limit = AuthFailures::default();
        let t0 = Instant::now();
        for i in 0..MAX_ADDRESSES {
            let ip = std::net::Ipv4Addr::from_bits(0x0a00_0000 + u32::try_from(i).unwrap());
            assert_eq!(limit.failed(Some(SocketAddr::from((ip, 1))), t0), None);
        }
        // all still failing: a new address is refused at once
        assert!(limit.failed(peer("192.0.2.1:1"), t0).is_some());
        // a second later every bucket has refilled, so the table empties for the newcomer
        assert_eq!(limit.failed(peer("192.0.2.1:1"), t0 + REFILL), None);
        assert_eq!(limit.buckets.lock().unwrap().len(), 1);
    }
}
