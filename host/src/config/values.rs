//! Constrained config values, each a newtype parsed through `TryFrom<String>`
//! so a bad value is reported by the TOML parser with its line and column,
//! and no later code can hold an invalid one.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// A probe's name: also the value of its `probe` label and the `module` of
/// `/probe`, so it stays short and free of characters that need quoting.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct ProbeName(String);

impl TryFrom<String> for ProbeName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
        if ok {
            Ok(ProbeName(s))
        } else {
            Err(format!(
                "probe name {s:?} must be 1-128 characters of letters, digits, `_`, `-`, `.` or `:`, starting with a letter or digit"
            ))
        }
    }
}

impl ProbeName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProbeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A plugin's name, as referenced by `probes.<name>.plugin` and derived from
/// a `.wasm` file's stem in a plugin directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct PluginName(String);

impl TryFrom<String> for PluginName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
        if ok {
            Ok(PluginName(s))
        } else {
            Err(format!(
                "plugin name {s:?} must be 1-64 characters of lowercase letters, digits, `_` or `-`"
            ))
        }
    }
}

impl PluginName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A package's plugin, `package:plugin`: unique across packages and
    /// never equal to a name a config can write.
    pub fn qualified(package: &str, plugin: &PluginName) -> PluginName {
        PluginName(format!("{package}:{}", plugin.0))
    }
}

impl fmt::Display for PluginName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Prometheus label name a config may set. Names starting with `__` are
/// reserved by Prometheus itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct LabelName(String);

impl TryFrom<String> for LabelName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if crate::names::is_valid_label_name(&s) && !s.starts_with("__") {
            Ok(LabelName(s))
        } else {
            Err(format!(
                "label name {s:?} must match [a-zA-Z_][a-zA-Z0-9_]* and not start with `__`"
            ))
        }
    }
}

impl LabelName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A label the host sets (`package`, `team`).
    pub(crate) fn host(name: &'static str) -> LabelName {
        LabelName(name.to_string())
    }
}

/// A duration written as a string such as `"10s"`, `"1m30s"` or `"250ms"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct HumanDuration(pub Duration);

impl TryFrom<String> for HumanDuration {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|e| {
                format!("duration {s:?} is not valid ({e}); write e.g. \"10s\" or \"1m30s\"")
            })
    }
}

/// A size written as a string such as `"64MiB"` or `"512KiB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct ByteSize(pub u64);

impl TryFrom<String> for ByteSize {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        bytesize::ByteSize::from_str(s.trim())
            .map(|b| ByteSize(b.as_u64()))
            .map_err(|e| format!("size {s:?} is not valid ({e}); write e.g. \"64MiB\""))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", bytesize::ByteSize::b(self.0).display().iec())
    }
}

/// A cron expression with seconds: `sec min hour day-of-month month
/// day-of-week [year]`, as the `cron` crate reads it.
///
/// A parsed schedule holds every admitted value of every field (a few KiB);
/// probes with the same expression share one, so 100,000 probes on a
/// handful of schedules hold a handful.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct CronSchedule(pub std::sync::Arc<cron::Schedule>);

/// Schedules in use, by expression.
fn interned(s: &str) -> Option<std::sync::Arc<cron::Schedule>> {
    INTERNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(s)
        .and_then(std::sync::Weak::upgrade)
}

static INTERNED: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<cron::Schedule>>>,
> = std::sync::LazyLock::new(Default::default);

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({:?})", self.0.source())
    }
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.0.source() == other.0.source()
    }
}

impl TryFrom<String> for CronSchedule {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let fields = s.split_whitespace().count();
        if fields != 6 && fields != 7 {
            return Err(format!(
                "schedule {s:?} has {fields} fields; write 6 or 7, seconds first (e.g. \"*/15 * * * * *\")"
            ));
        }
        if let Some(shared) = interned(&s) {
            return Ok(CronSchedule(shared));
        }
        let parsed = std::sync::Arc::new(
            cron::Schedule::from_str(&s)
                .map_err(|e| format!("schedule {s:?} is not a valid cron expression ({e})"))?,
        );
        let mut map = INTERNED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget schedules no probe uses any more, now and then (amortised:
        // at each power of two).
        if map.len().is_power_of_two() {
            map.retain(|_, w| w.strong_count() > 0);
        }
        map.insert(s, std::sync::Arc::downgrade(&parsed));
        Ok(CronSchedule(parsed))
    }
}

impl CronSchedule {
    /// The first time after `after` the expression names, read on the
    /// clocks of `zone` (UTC when `None`): `0 0 9 * * 2-6` in
    /// `Europe/Berlin` is nine in Berlin, summer and winter.
    pub fn next_after(
        &self,
        after: &chrono::DateTime<chrono::Utc>,
        zone: Option<chrono_tz::Tz>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        match zone {
            None => self.0.after(after).next(),
            Some(zone) => self
                .0
                .after(&after.with_timezone(&zone))
                .next()
                .map(|t| t.with_timezone(&chrono::Utc)),
        }
    }

    /// The schedule of `interval = "15s"`: the cron expression that fires
    /// at that period, aligned to the clock (every 15 s at :00, :15, ...).
    /// Only periods that divide a minute, an hour or a day have one; any
    /// other would drift at each boundary, so it is refused.
    pub fn every(period: Duration) -> Result<CronSchedule, String> {
        let secs = period.as_secs();
        let shown = humantime::format_duration(period);
        if period.subsec_nanos() != 0 || secs == 0 {
            return Err(format!(
                "interval {shown} must be a whole number of seconds, at least 1s"
            ));
        }
        let expression = if secs < 60 && 60u64.is_multiple_of(secs) {
            format!("*/{secs} * * * * *")
        } else if secs.is_multiple_of(60) && secs < 3600 && 3600u64.is_multiple_of(secs) {
            format!("0 */{} * * * *", secs / 60)
        } else if secs == 86_400 {
            "0 0 0 * * *".to_string()
        } else if secs.is_multiple_of(3600) && secs < 86_400 && 86_400u64.is_multiple_of(secs) {
            format!("0 0 */{} * * *", secs / 3600)
        } else {
            return Err(format!(
                "interval {shown} does not divide a minute, an hour or a day evenly; pick one that does (15s, 30s, 1m, 5m, 1h, ...) or write a cron `schedule`"
            ));
        };
        CronSchedule::try_from(expression)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe's `timezone` moves the schedule with the zone's clocks,
    /// daylight saving time included.
    #[test]
    fn a_schedule_is_read_on_its_time_zones_clocks() {
        use chrono::TimeZone;
        let nine =
            CronSchedule::try_from("0 0 9 * * *".to_string()).unwrap_or_else(|e| panic!("{e}"));
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap_or_else(|e| panic!("{e}"));
        let at = |y, m, d, h| {
            chrono::Utc
                .with_ymd_and_hms(y, m, d, h, 0, 0)
                .single()
                .unwrap_or_else(|| panic!("time"))
        };
        assert_eq!(
            nine.next_after(&at(2026, 12, 3, 0), None),
            Some(at(2026, 12, 3, 9))
        );
        // Winter: Berlin is UTC+1; summer: UTC+2.
        assert_eq!(
            nine.next_after(&at(2026, 12, 3, 0), Some(berlin)),
            Some(at(2026, 12, 3, 8))
        );
        assert_eq!(
            nine.next_after(&at(2026, 7, 1, 0), Some(berlin)),
            Some(at(2026, 7, 1, 7))
        );
        // The days the clocks move: 02:30 does not exist on 29 March and
        // happens twice on 25 October.
        let half_two =
            CronSchedule::try_from("0 30 2 * * *".to_string()).unwrap_or_else(|e| panic!("{e}"));
        let min = |y, m, d, h, mi| {
            chrono::Utc
                .with_ymd_and_hms(y, m, d, h, mi, 0)
                .single()
                .unwrap_or_else(|| panic!("time"))
        };
        let spring = half_two.next_after(&min(2026, 3, 28, 12, 0), Some(berlin));
        let autumn = half_two.next_after(&min(2026, 10, 24, 12, 0), Some(berlin));
        let after_autumn = autumn.and_then(|t| half_two.next_after(&t, Some(berlin)));
        assert_eq!(spring, Some(min(2026, 3, 30, 0, 30)), "skipped, next day");
        assert_eq!(autumn, Some(min(2026, 10, 25, 0, 30)), "the first 02:30");
        assert_eq!(after_autumn, Some(min(2026, 10, 26, 1, 30)), "only once");
    }

    /// The dialect docs/configuration.md documents: UTC, seconds first, day of week
    /// 1-7 with 1 = Sunday (or SUN-SAT).
    #[test]
    fn cron_days_of_week_count_from_sunday_in_utc() {
        use chrono::{Datelike, TimeZone};
        let thursday = chrono::Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).single();
        let next = |expr: &str| {
            let s = CronSchedule::try_from(expr.to_string()).ok()?;
            let from = thursday?;
            s.0.after(&from).next().map(|t| t.weekday())
        };
        assert_eq!(next("0 0 0 * * 1"), Some(chrono::Weekday::Sun));
        assert_eq!(next("0 0 0 * * 2"), Some(chrono::Weekday::Mon));
        assert_eq!(next("0 0 0 * * SUN"), Some(chrono::Weekday::Sun));
        assert_eq!(next("0 0 0 * * 7"), Some(chrono::Weekday::Sat));
    }

    #[test]
    fn intervals_become_clock_aligned_schedules() {
        let source =
            |d: u64| CronSchedule::every(Duration::from_secs(d)).map(|s| s.0.source().to_string());
        assert_eq!(source(15).as_deref(), Ok("*/15 * * * * *"));
        assert_eq!(source(60).as_deref(), Ok("0 */1 * * * *"));
        assert_eq!(source(300).as_deref(), Ok("0 */5 * * * *"));
        assert_eq!(source(7200).as_deref(), Ok("0 0 */2 * * *"));
        assert_eq!(source(86_400).as_deref(), Ok("0 0 0 * * *"));
        assert!(source(7).is_err());
        assert!(source(90).is_err());
        assert!(source(0).is_err());
        assert!(CronSchedule::every(Duration::from_millis(1500)).is_err());
    }

    #[test]
    fn probe_names() {
        assert!(ProbeName::try_from("api-1.eu:443".to_string()).is_ok());
        assert!(ProbeName::try_from("".to_string()).is_err());
        assert!(ProbeName::try_from("-x".to_string()).is_err());
        assert!(ProbeName::try_from("a b".to_string()).is_err());
        assert!(ProbeName::try_from("a\"b".to_string()).is_err());
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(
            HumanDuration::try_from("1m30s".to_string()).ok(),
            Some(HumanDuration(Duration::from_secs(90)))
        );
        assert!(HumanDuration::try_from("10".to_string()).is_err());
        assert_eq!(
            ByteSize::try_from("64MiB".to_string()).ok(),
            Some(ByteSize(64 << 20))
        );
        assert!(ByteSize::try_from("lots".to_string()).is_err());
    }

    #[test]
    fn cron_needs_seconds() {
        assert!(CronSchedule::try_from("*/15 * * * * *".to_string()).is_ok());
        let err = CronSchedule::try_from("* * * * *".to_string()).err();
        assert!(err.is_some_and(|e| e.contains("has 5 fields")));
        assert!(CronSchedule::try_from("99 * * * * *".to_string()).is_err());
    }

    #[test]
    fn label_names() {
        assert!(LabelName::try_from("env".to_string()).is_ok());
        assert!(LabelName::try_from("__x".to_string()).is_err());
        assert!(LabelName::try_from("1x".to_string()).is_err());
    }
}
