//! `[[feed.window]]` and `[[defaults.window]]`, validated into [`crate::schedule::Window`]s:
//! days, hours, timezone and holidays parsed, thresholds defaulted to the feed's and checked.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::NaiveDate;

use super::raw;
use super::ConfigError;
use crate::schedule::{Days, Hours, Thresholds, Window};

/// Where the windows being checked were written, for error keys and messages.
#[derive(Debug, Clone, Copy)]
pub(super) struct WindowsAt<'a> {
    /// `feed[0]` or `defaults`: errors name `<owner>.window[N].<field>`.
    pub owner: &'a str,
    /// The feed inherits them from `[defaults]`: threshold errors say so.
    pub inherited: bool,
}

/// Each window in order; thresholds a window does not set are `own_warn_after` /
/// `own_critical_after` (the feed's).
pub(super) fn validate_windows(
    at: WindowsAt<'_>,
    raw_windows: &[raw::RawWindow],
    own_warn_after: Duration,
    own_critical_after: Duration,
) -> Result<Vec<Window>, ConfigError> {
    raw_windows
        .iter()
        .enumerate()
        .map(|(index, raw_window)| {
            validate_window(at, index, raw_window, own_warn_after, own_critical_after)
        })
        .collect()
}

fn validate_window(
    at: WindowsAt<'_>,
    index: usize,
    raw_window: &raw::RawWindow,
    own_warn_after: Duration,
    own_critical_after: Duration,
) -> Result<Window, ConfigError> {
    let key = |field: &str| format!("{}.window[{index}].{field}", at.owner);
    let days = Days::parse(&raw_window.days)
        .map_err(|reason| ConfigError::invalid(key("days"), reason))?;
    let hours = Hours::parse(&raw_window.hours)
        .map_err(|reason| ConfigError::invalid(key("hours"), reason))?;
    let timezone = parse_timezone(key("timezone"), &raw_window.timezone)?;
    let mut holidays = BTreeSet::new();
    for (holiday_index, text) in raw_window.holidays.iter().enumerate() {
        let date = parse_date(text).ok_or_else(|| {
            ConfigError::invalid(
                key(&format!("holidays[{holiday_index}]")),
                format!("{text:?} is not a date \"YYYY-MM-DD\""),
            )
        })?;
        holidays.insert(date);
    }
    let expect_nothing = raw_window.expect == raw::RawExpect::Nothing;
    if expect_nothing && (raw_window.warn_after.is_some() || raw_window.critical_after.is_some()) {
        // Nothing alerts inside; the feed's own thresholds stay in force, so an alert that was
        // firing when the window began stays firing until a record ends it.
        let field = if raw_window.warn_after.is_some() {
            "warn_after"
        } else {
            "critical_after"
        };
        return Err(ConfigError::invalid(
            key(field),
            "an expect = \"nothing\" window raises no alert, so it takes no thresholds (the feed's stay in force)",
        ));
    }
    let warn_after = raw_window.warn_after.unwrap_or(own_warn_after);
    let critical_after = raw_window.critical_after.unwrap_or(own_critical_after);
    if warn_after.is_zero() {
        return Err(ConfigError::invalid(key("warn_after"), "must be positive"));
    }
    if critical_after <= warn_after {
        // Name the key the window set: the other one is the feed's.
        let field = if raw_window.critical_after.is_some() || raw_window.warn_after.is_none() {
            "critical_after"
        } else {
            "warn_after"
        };
        let origin = if at.inherited {
            " (a window from [defaults])"
        } else {
            ""
        };
        return Err(ConfigError::invalid(
            key(field),
            format!(
                "critical_after must be greater than warn_after{origin}: warn_after {}, critical_after {} (a threshold the window does not set is the feed's)",
                humantime::format_duration(warn_after),
                humantime::format_duration(critical_after)
            ),
        ));
    }
    let window = Window {
        days,
        hours,
        timezone,
        holidays,
        thresholds: Thresholds {
            warn_after_ms: duration_ms(warn_after),
            critical_after_ms: duration_ms(critical_after),
            expect_nothing,
        },
    };
    if expect_nothing && window.week_share() >= 1.0 {
        // Days and hours default to all of them: such a window mutes the feed for good.
        return Err(ConfigError::invalid(
            key("expect"),
            "an expect = \"nothing\" window covering every hour of every day mutes the feed for good: set days or hours (holidays are dates it does not apply on, not when it does)",
        ));
    }
    Ok(window)
}

/// A quiet window (`expect = "nothing"`) covering more than this share of the week is
/// probably a mistake: `check-config` warns.
pub const QUIET_WEEK_SHARE_WARNING: f64 = 0.9;

/// What `check-config` warns about in `feeds`' windows: quiet windows that cover more than
/// 90 % of the week (the feed is barely watched).
pub fn window_warnings(feeds: &[super::FeedConfig]) -> Vec<String> {
    let mut warnings = Vec::new();
    for feed in feeds {
        for (index, window) in feed.windows.iter().enumerate() {
            let share = window.week_share();
            if window.thresholds.expect_nothing && share > QUIET_WEEK_SHARE_WARNING {
                warnings.push(format!(
                    "feed {:?} window[{index}]: expect = \"nothing\" covers {:.0} % of the week ({} {}): the feed is watched only outside it",
                    feed.name,
                    share * 100.0,
                    window.days,
                    window.hours
                ));
            }
        }
    }
    warnings
}

/// Strictly `YYYY-MM-DD`.
fn parse_date(text: &str) -> Option<NaiveDate> {
    let well_formed = text.len() == 10
        && text
            .bytes()
            .enumerate()
            .all(|(position, byte)| match position {
                4 | 7 => byte == b'-',
                _ => byte.is_ascii_digit(),
            });
    if !well_formed {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

pub(super) fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// An IANA timezone name, or an error naming `key`.
pub(super) fn parse_timezone(key: String, name: &str) -> Result<chrono_tz::Tz, ConfigError> {
    name.parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!(
                "unknown timezone {name:?}: use an IANA name such as \"Europe/Paris\", \"America/New_York\" or \"UTC\""
            ),
        )
    })
}
