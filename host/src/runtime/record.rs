//! A finished run as the runtime hands it on (`RunRecord`): how it ended,
//! as bounded label values, and what the plugin said.

use std::time::{Duration, SystemTime};

use crate::hostcalls::UsageCounts;
pub use crate::hostcalls::log::LogLine;

/// One sample as a plugin returned it (label values redacted), not yet
/// checked against the plugin's families.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// Bytes the sample occupies, for the run's output cap.
    pub fn size(&self) -> usize {
        self.name.len()
            + 8
            + self
                .labels
                .iter()
                .map(|(k, v)| k.len() + v.len() + 8)
                .sum::<usize>()
    }
}

/// The result label of `wasmprobe_probe_runs_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunResult {
    /// The plugin reported success and its samples were accepted.
    Success,
    /// The plugin ran and reported that the target failed the probe.
    Failure,
    /// The plugin could not probe (it returned an error, or could not be
    /// instantiated).
    Error,
    /// The run passed its deadline.
    Timeout,
    /// The plugin trapped; `TrapReason` says why.
    Trap,
    /// The run's output broke a limit (size, series count, budget) and was
    /// discarded as a whole.
    Rejected,
}

impl RunResult {
    pub const ALL: [RunResult; 6] = [
        RunResult::Success,
        RunResult::Failure,
        RunResult::Error,
        RunResult::Timeout,
        RunResult::Trap,
        RunResult::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Failure => "failure",
            RunResult::Error => "error",
            RunResult::Timeout => "timeout",
            RunResult::Trap => "trap",
            RunResult::Rejected => "rejected",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The reason label of `wasmprobe_probe_traps_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrapReason {
    /// Linear memory or table growth went past the probe's limit.
    MemoryLimit,
    StackOverflow,
    /// `unreachable` executed: a Rust panic or abort lands here.
    Unreachable,
    /// An out-of-bounds memory or table access.
    OutOfBounds,
    /// Integer overflow or division by zero, bad conversion.
    Arithmetic,
    /// An indirect call to a null or mistyped function.
    BadCall,
    /// A host call failed in a way the plugin cannot handle.
    HostCall,
    Other,
}

impl TrapReason {
    pub const ALL: [TrapReason; 8] = [
        TrapReason::MemoryLimit,
        TrapReason::StackOverflow,
        TrapReason::Unreachable,
        TrapReason::OutOfBounds,
        TrapReason::Arithmetic,
        TrapReason::BadCall,
        TrapReason::HostCall,
        TrapReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TrapReason::MemoryLimit => "memory_limit",
            TrapReason::StackOverflow => "stack_overflow",
            TrapReason::Unreachable => "unreachable",
            TrapReason::OutOfBounds => "out_of_bounds",
            TrapReason::Arithmetic => "arithmetic",
            TrapReason::BadCall => "bad_call",
            TrapReason::HostCall => "host_call",
            TrapReason::Other => "other",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Everything a finished run hands to the exposition.
#[derive(Debug)]
pub struct RunRecord {
    pub result: RunResult,
    pub trap: Option<TrapReason>,
    /// `probe_success`.
    pub success: bool,
    pub duration: Duration,
    pub finished_at: SystemTime,
    /// A human explanation (plugin message, error, trap), for logs and the
    /// status page.
    pub message: Option<String>,
    /// The samples of a run that reported (empty otherwise), within the
    /// run's output limits; the exposition validates them.
    pub samples: Vec<Sample>,
    /// What the run's host calls and memory used.
    pub usage: UsageCounts,
    /// The plugin's log lines (redacted, within `limits.log_lines`).
    pub logs: Vec<LogLine>,
    /// The run's host calls, when they were recorded as evidence.
    pub calls: Vec<serde_json::Value>,
    /// Whether the run used optimized code; false on the baseline tier a
    /// plugin starts on while it is compiled optimized.
    pub optimized: bool,
}
