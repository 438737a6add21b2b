//! `log`: plugin log lines, carried into the host's log under the probe's
//! name at the level the plugin chose (an `error` from a plugin is a WARN of
//! the host: it is the probe's trouble, not the engine's).
//!
//! Lines past the run's `limits.log_lines` are counted and dropped; a line
//! longer than [`MAX_LINE`] bytes is cut. A plugin that calls this in a loop
//! costs one counter increment per call.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::secrets::Revealed;
use super::{Capability, LoadScope, RunScope, Usage};
use crate::bindings::wasmprobe::plugin::log::{self as wit, Host, Level};
use crate::config::ProbeConfig;

/// Longest log line kept, in bytes.
pub const MAX_LINE: usize = 4096;

/// One line a plugin logged, kept for the run's evidence.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
}

/// A run's log allowance.
#[derive(Debug)]
pub(crate) struct LogSink {
    left: u32,
    pub(crate) dropped: u64,
    /// The lines kept, for the run's evidence and `/probe?debug=true`.
    pub(crate) lines: Vec<LogLine>,
}

impl LogSink {
    pub(crate) fn new(lines: u32) -> Self {
        LogSink {
            left: lines,
            dropped: 0,
            lines: Vec::new(),
        }
    }

    /// Takes one line from the allowance.
    fn take(&mut self) -> bool {
        if self.left == 0 {
            self.dropped += 1;
            false
        } else {
            self.left -= 1;
            true
        }
    }
}

fn cut(message: &str) -> &str {
    cut_to(message, MAX_LINE)
}

/// `message` cut to at most `max` bytes, on a character boundary.
fn cut_to(message: &str, max: usize) -> &str {
    if message.len() <= max {
        return message;
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// The `log` unit: every run may log, so its grant is empty.
#[derive(Debug)]
pub struct Log;

/// One run's `log`.
#[derive(Debug)]
pub struct LogContext {
    probe: Arc<str>,
    pub(crate) sink: LogSink,
    revealed: Revealed,
    usage: Arc<Usage>,
}

impl Capability for Log {
    const NAME: &'static str = "log";
    type Grant = ();
    type Context = LogContext;

    fn grant(_: &ProbeConfig, _: &mut LoadScope<'_>) -> Result<(), String> {
        Ok(())
    }

    fn context(_: Option<&Arc<()>>, run: &RunScope) -> LogContext {
        LogContext {
            probe: run.probe.clone(),
            sink: LogSink::new(run.limits.log_lines),
            revealed: run.revealed.clone(),
            usage: run.usage.clone(),
        }
    }

    fn link<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut LogContext,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, HasSelf<LogContext>>(linker, get)
    }
}

impl Host for LogContext {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.usage.call(Log::NAME);
        if !self.sink.take() {
            return Ok(());
        }
        let probe = &*self.probe;
        // Redacted before it is cut, so a secret across the cut cannot
        // leave its first bytes in the log; only the part that can reach
        // the kept line is searched.
        let window = cut_to(&message, MAX_LINE.saturating_add(self.revealed.longest()));
        let redacted = self.revealed.redact(window);
        let message = cut(&redacted);
        self.sink.lines.push(LogLine {
            level: match level {
                Level::Trace => "trace",
                Level::Debug => "debug",
                Level::Info => "info",
                Level::Warn => "warn",
                Level::Error => "error",
            },
            message: message.to_string(),
        });
        match level {
            Level::Trace => tracing::trace!(probe, plugin_log = message),
            Level::Debug => tracing::debug!(probe, plugin_log = message),
            Level::Info => tracing::info!(probe, plugin_log = message),
            Level::Warn | Level::Error => tracing::warn!(probe, plugin_log = message),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowance_runs_out() {
        let mut sink = LogSink::new(2);
        assert!(sink.take());
        assert!(sink.take());
        assert!(!sink.take());
        assert!(!sink.take());
        assert_eq!(sink.dropped, 2);
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let line = "é".repeat(MAX_LINE);
        let c = cut(&line);
        assert!(c.len() <= MAX_LINE);
        assert!(c.chars().all(|ch| ch == 'é'));
    }

    #[test]
    fn a_context_spends_its_allowance_and_redacts_what_the_run_revealed() {
        let revealed = Revealed::default();
        revealed.add("hunter22");
        let mut ctx = LogContext {
            probe: "p".into(),
            sink: LogSink::new(1),
            revealed,
            usage: Arc::default(),
        };
        assert!(ctx.log(Level::Info, "token hunter22".into()).is_ok());
        assert!(ctx.log(Level::Info, "second".into()).is_ok());
        assert_eq!(ctx.sink.dropped, 1);
    }

    #[test]
    fn a_secret_across_the_cut_leaves_none_of_itself() {
        let revealed = Revealed::default();
        revealed.add("hunter22-token");
        let window = format!("{}hunter22-token tail", "x".repeat(MAX_LINE - 5));
        let cut_window = cut_to(&window, MAX_LINE.saturating_add(revealed.longest()));
        let redacted = revealed.redact(cut_window);
        let kept = cut(&redacted);
        assert!(!kept.contains("hunte"), "{}", &kept[kept.len() - 20..]);
        assert!(kept.ends_with("[reda"), "{}", &kept[kept.len() - 20..]);
    }
}
