//! What one run's host calls use, and the budgets they draw from.
//!
//! A run's budgets (`limits.max_requests`, `max_transfer`, `max_packets`)
//! are taken before the work they pay for: a call that would pass one is
//! refused whole (nothing sent) with an error naming the budget, and the
//! refusal is counted under a bounded reason so an operator sees which
//! probe hits which wall.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::Limits;

/// A per-run budget host calls draw from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Network exchanges started (HTTP requests and redirect hops).
    Requests,
    /// Bytes sent, and received as the host holds them.
    Transfer,
    /// ICMP echo requests sent.
    Packets,
}

impl Budget {
    /// The `limits` key that sets it.
    pub fn key(self) -> &'static str {
        match self {
            Budget::Requests => "max_requests",
            Budget::Transfer => "max_transfer",
            Budget::Packets => "max_packets",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Budget::Requests => "requests",
            Budget::Transfer => "bytes",
            Budget::Packets => "packets",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a host call was refused before anything left: the `reason` label
/// of `wasmprobe_probe_refusals_total`, a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// The probe's allow-list does not admit the target, an address or a
    /// redirect hop.
    AllowList,
    /// A run budget is spent.
    Budget(Budget),
}

impl RefusalReason {
    /// Every reason, in exposition order.
    pub const ALL: [RefusalReason; 4] = [
        RefusalReason::AllowList,
        RefusalReason::Budget(Budget::Requests),
        RefusalReason::Budget(Budget::Transfer),
        RefusalReason::Budget(Budget::Packets),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::AllowList => "allow_list",
            RefusalReason::Budget(b) => b.key(),
        }
    }

    fn index(self) -> usize {
        match self {
            RefusalReason::AllowList => 0,
            RefusalReason::Budget(b) => 1 + b.index(),
        }
    }
}

/// A call refused because it would pass a run budget: the message the
/// plugin gets names the budget, its limit and what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "run budget spent: this needs {asked} more {unit} but {used} of limits.{key} = {limit} per run are used",
    unit = budget.unit(),
    key = budget.key()
)]
pub struct Spent {
    pub budget: Budget,
    pub limit: u64,
    pub used: u64,
    pub asked: u64,
}

/// What one run's host calls used, so an operator sees which team's
/// plugin costs what, and what is left of the run's budgets.
#[derive(Debug)]
pub struct Usage {
    calls: Mutex<BTreeMap<&'static str, u64>>,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    packets_sent: AtomicU64,
    packets_received: AtomicU64,
    /// Limits and amounts taken, by [`Budget::index`].
    limits: [u64; 3],
    taken: [AtomicU64; 3],
    /// Refusals by [`RefusalReason::index`].
    refused: [AtomicU64; 4],
}

impl Default for Usage {
    /// Counters without budgets (tests and `describe()`, which has no
    /// grants to spend them on).
    fn default() -> Self {
        Usage::with_limits([u64::MAX; 3])
    }
}

impl Usage {
    /// Counters for a run under `limits`' budgets.
    pub fn new(limits: &Limits) -> Usage {
        Usage::with_limits([
            u64::from(limits.max_requests),
            limits.max_transfer,
            u64::from(limits.max_packets),
        ])
    }

    fn with_limits(limits: [u64; 3]) -> Usage {
        Usage {
            calls: Mutex::default(),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            packets_sent: AtomicU64::new(0),
            packets_received: AtomicU64::new(0),
            limits,
            taken: Default::default(),
            refused: Default::default(),
        }
    }

    /// One call to the capability `name` (its [`super::Capability::NAME`]).
    pub fn call(&self, name: &'static str) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        *calls.entry(name).or_default() += 1;
    }

    /// Takes `n` from `budget`, or takes nothing and counts the refusal
    /// when that would pass its limit.
    pub fn take(&self, budget: Budget, n: u64) -> Result<(), Spent> {
        let limit = self.limits[budget.index()];
        let taken = &self.taken[budget.index()];
        let result = taken.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
            used.checked_add(n).filter(|total| *total <= limit)
        });
        result.map(|_| ()).map_err(|used| {
            self.refused(RefusalReason::Budget(budget));
            Spent {
                budget,
                limit,
                used,
                asked: n,
            }
        })
    }

    /// Returns `n` taken from `budget` and not used after all.
    pub fn give_back(&self, budget: Budget, n: u64) {
        let _ =
            self.taken[budget.index()].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(n))
            });
    }

    /// What is left of `budget`.
    pub fn left(&self, budget: Budget) -> u64 {
        let used = self.taken[budget.index()].load(Ordering::Relaxed);
        self.limits[budget.index()].saturating_sub(used)
    }

    /// A call refused before anything left.
    pub fn refused(&self, why: RefusalReason) {
        self.refused[why.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Bytes a call sent and received on the network.
    pub fn bytes(&self, sent: u64, received: u64) {
        self.bytes_sent.fetch_add(sent, Ordering::Relaxed);
        self.bytes_received.fetch_add(received, Ordering::Relaxed);
    }

    /// ICMP packets a call sent and received.
    pub fn packets(&self, sent: u64, received: u64) {
        self.packets_sent.fetch_add(sent, Ordering::Relaxed);
        self.packets_received.fetch_add(received, Ordering::Relaxed);
    }

    /// The counts so far, with the run's peak linear memory and CPU time.
    pub fn counts(&self, memory_peak: u64, cpu: Duration) -> UsageCounts {
        UsageCounts {
            calls: self
                .calls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| (*k, *v))
                .collect(),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            packets_sent: self.packets_sent.load(Ordering::Relaxed),
            packets_received: self.packets_received.load(Ordering::Relaxed),
            refusals: RefusalReason::ALL.map(|r| self.refused[r.index()].load(Ordering::Relaxed)),
            memory_peak,
            cpu_seconds: cpu.as_secs_f64(),
        }
    }
}

/// What one run used, as plain numbers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageCounts {
    /// Host calls by capability name.
    pub calls: Vec<(&'static str, u64)>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Calls refused before anything left, in [`RefusalReason::ALL`] order.
    pub refusals: [u64; 4],
    /// The largest linear memory the run reached, in bytes.
    pub memory_peak: u64,
    /// CPU time the run's instance and host calls took on the probe
    /// runtime's threads.
    pub cpu_seconds: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_refuses_what_would_pass_it_and_keeps_the_rest() {
        let usage = Usage::new(&Limits {
            max_requests: 3,
            ..Limits::default()
        });
        assert!(usage.take(Budget::Requests, 2).is_ok());
        let spent = usage.take(Budget::Requests, 2);
        assert_eq!(
            spent,
            Err(Spent {
                budget: Budget::Requests,
                limit: 3,
                used: 2,
                asked: 2
            })
        );
        let message = spent.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("limits.max_requests = 3"), "{message}");
        assert!(
            usage.take(Budget::Requests, 1).is_ok(),
            "the refusal took nothing"
        );
        assert!(usage.take(Budget::Requests, 1).is_err());
        let counts = usage.counts(0, Duration::ZERO);
        assert_eq!(counts.refusals, [0, 2, 0, 0]);
    }

    #[test]
    fn reasons_are_a_closed_set_in_order() {
        let names: Vec<_> = RefusalReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            ["allow_list", "max_requests", "max_transfer", "max_packets"]
        );
        for (i, r) in RefusalReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
