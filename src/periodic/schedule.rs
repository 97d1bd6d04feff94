//! When a schedule ticks: a cron expression read in a time zone, or a fixed interval.
//!
//! Ticks are instants (whole seconds, as [`Millis`]). A cron expression is matched
//! against the wall clock of its time zone with croner's rules for daylight-saving
//! changes (those of Vixie cron and the Open Cron Pattern Specification):
//!
//! - a **fixed-time** expression (seconds, minutes and hours all fixed, such as
//!   `30 2 * * *`) whose time falls into the hour skipped in spring runs at the first
//!   instant after the gap (03:00 in Europe/Berlin), and in the hour repeated in autumn
//!   runs once, at the first occurrence (02:30 summer time);
//! - an **interval** expression (a wildcard or step in those fields, such as
//!   `*/30 * * * *`) has no ticks in the skipped hour and ticks on both passes of the
//!   repeated hour, because each is a wall-clock time it names.
//!
//! `every <duration>` ticks at the multiples of the duration since the Unix epoch: real
//! time, so a time zone and daylight saving change nothing (`every 1h` is 23 ticks on
//! the spring-forward day in Berlin, 25 in autumn).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::clock::Millis;

/// Longest schedule text accepted (a cron expression is a few dozen characters).
pub const MAX_SCHEDULE_LEN: usize = 200;
/// Shortest `every` interval: one tick a second is what one enqueue per tick can keep.
pub const MIN_EVERY: Duration = Duration::from_secs(1);
/// Longest `every` interval (a year and a day; anything longer is a typo).
pub const MAX_EVERY: Duration = Duration::from_secs(366 * 86_400);

/// When a schedule ticks.
#[derive(Clone)]
pub struct Schedule {
    text: String,
    rule: Rule,
}

#[derive(Clone)]
enum Rule {
    Cron(Box<Cron>),
    /// The interval in milliseconds (whole seconds).
    Every(i64),
}

/// Why a schedule text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);

impl Schedule {
    /// Parses a cron expression (5 fields, or 6 with seconds first, as croner reads
    /// them: `*/5 * * * *`, `0 30 2 * * *`) or `every <duration>` (`every 30s`,
    /// `every 1h 30m`; whole seconds, from 1 s to 366 days).
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ScheduleError("is empty".into()));
        }
        if text.len() > MAX_SCHEDULE_LEN {
            return Err(ScheduleError(format!(
                "is {} bytes long; at most {MAX_SCHEDULE_LEN} are allowed",
                text.len()
            )));
        }
        if text.chars().any(char::is_control) {
            return Err(ScheduleError("contains a control character".into()));
        }
        let rule = match text.strip_prefix("every") {
            Some(rest) if rest.starts_with(char::is_whitespace) => Rule::Every(every(rest)?),
            _ => {
                let cron = CronParser::builder()
                    .seconds(Seconds::Optional)
                    .build()
                    .parse(text)
                    .map_err(|e| {
                        ScheduleError(format!(
                            "`{}` is neither a cron expression (minute hour day month weekday, \
                             optionally seconds first) nor `every <duration>`: {e}",
                            text.escape_debug()
                        ))
                    })?;
                Rule::Cron(Box::new(cron))
            }
        };
        Ok(Schedule {
            text: text.to_string(),
            rule,
        })
    }

    /// The schedule as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The interval of an `every` schedule.
    pub fn interval(&self) -> Option<Duration> {
        match self.rule {
            Rule::Every(ms) => Some(Duration::from_millis(ms as u64)),
            Rule::Cron(_) => None,
        }
    }

    /// The first tick strictly after `after`, reading the wall clock in `tz`; `None`
    /// when there is none (an expression that never matches, such as 30 February, or a
    /// time beyond what the calendar search covers).
    pub fn next_after(&self, after: Millis, tz: Tz) -> Option<Millis> {
        match &self.rule {
            Rule::Every(p) => after
                .0
                .div_euclid(*p)
                .checked_add(1)?
                .checked_mul(*p)
                .map(Millis),
            Rule::Cron(cron) => {
                // Ticks are whole seconds: searching from the second `after` lies in,
                // exclusively, finds the first tick after it.
                let at = zoned(floor_second(after), tz)?;
                let next = cron.find_next_occurrence(&at, false).ok()?;
                Some(Millis(next.timestamp_millis()))
            }
        }
    }

    /// The last tick at or before `at` in `tz`, if any.
    pub fn latest_at_or_before(&self, at: Millis, tz: Tz) -> Option<Millis> {
        match &self.rule {
            Rule::Every(p) => at.0.div_euclid(*p).checked_mul(*p).map(Millis),
            Rule::Cron(cron) => {
                let at = zoned(floor_second(at), tz)?;
                let prev = cron.find_previous_occurrence(&at, true).ok()?;
                Some(Millis(prev.timestamp_millis()))
            }
        }
    }
}

/// `at` rounded down to its second.
fn floor_second(at: Millis) -> Millis {
    Millis(at.0.div_euclid(1000) * 1000)
}

/// The instant `at` on the wall clock of `tz`.
fn zoned(at: Millis, tz: Tz) -> Option<DateTime<Tz>> {
    DateTime::<Utc>::from_timestamp_millis(at.0).map(|t| t.with_timezone(&tz))
}

/// The interval of `every <rest>`, in milliseconds.
fn every(rest: &str) -> Result<i64, ScheduleError> {
    let d = humantime_serde::re::humantime::parse_duration(rest.trim()).map_err(|e| {
        ScheduleError(format!(
            "`every {}`: {e} (write a duration such as 30s, 5m or 1h 30m)",
            rest.trim().escape_debug()
        ))
    })?;
    if d < MIN_EVERY || d > MAX_EVERY {
        return Err(ScheduleError(format!(
            "`every` must be from 1s to 366 days, got {}",
            humantime_serde::re::humantime::format_duration(d)
        )));
    }
    if d.subsec_nanos() != 0 {
        return Err(ScheduleError(
            "`every` must be whole seconds (ticks are whole seconds)".into(),
        ));
    }
    Ok(d.as_millis() as i64)
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.text)
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Schedule {}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Schedule::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Reads an IANA time zone name (`Europe/Berlin`, `UTC`), refusing anything else with
/// a message that says what is expected.
pub fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    name.parse::<Tz>().map_err(|_| {
        let shown: String = name.chars().take(64).collect();
        ScheduleError(format!(
            "unknown time zone `{}`; use an IANA name such as Europe/Berlin or UTC",
            shown.escape_debug()
        ))
    })
}

/// Serde for a [`Tz`] as its IANA name.
pub mod tz_name {
    use chrono_tz::Tz;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the zone's name.
    pub fn serialize<S: Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(tz.name())
    }

    /// Reads a zone name with [`super::parse_timezone`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Tz, D::Error> {
        let name = String::deserialize(d)?;
        super::parse_timezone(&name).map_err(serde::de::Error::custom)
    }
}
