//! Schedules and quiet windows: the one home of "which thresholds are in force at an instant,
//! and when does that next change?".
//!
//! A feed's own thresholds apply outside its `[[feed.window]]`s; inside, the first window (in
//! config order) that contains the instant applies, with its own thresholds and, for
//! `expect = "nothing"`, the rule that silence there is normal. [`crate::evaluate`] asks
//! [`Schedule::in_force`] when it judges and [`Schedule::next_look_ms`] to re-judge a feed's
//! series at each boundary; `check-config` and the API show the same answers.
//!
//! Windows are wall-clock rules in a timezone (`chrono-tz`), so a boundary is found by walking
//! the instants where any window could start or stop applying: each day's start and end times
//! (both instants of a time the clocks pass twice when they fall back) and each UTC-offset change
//! (a time skipped when the clocks spring forward begins at the change).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike, Weekday};
use chrono_tz::Tz;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
const MINUTES_PER_DAY: u32 = 24 * 60;

/// How far [`Schedule::next_change`] looks: a window disabled by a long run of holidays may not
/// change anything for months; beyond this the evaluator simply looks again.
pub const LOOK_AHEAD_MS: i64 = 400 * DAY_MS;

/// The days of the week a window applies on (bit 0 = Monday).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days(u8);

pub const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Days {
    pub const DAILY: Days = Days(0x7f);

    /// `"daily"`, a day (`"mon"`, `"monday"`), a range (`"mon-fri"`; `"fri-mon"` wraps the
    /// weekend), or a comma-separated list of those (`"mon,wed,fri"`).
    pub fn parse(text: &str) -> Result<Days, String> {
        let mut bits = 0u8;
        for item in text.split(',').map(str::trim) {
            if item.eq_ignore_ascii_case("daily") {
                bits |= Days::DAILY.0;
                continue;
            }
            let (first, last) = match item.split_once('-') {
                Some((first, last)) => (day_number(first.trim())?, day_number(last.trim())?),
                None => {
                    let day = day_number(item)?;
                    (day, day)
                }
            };
            let mut day = first;
            loop {
                bits |= 1 << day;
                if day == last {
                    break;
                }
                day = (day + 1) % 7;
            }
        }
        Ok(Days(bits))
    }

    pub fn contains(self, weekday: Weekday) -> bool {
        self.0 & (1 << weekday.num_days_from_monday()) != 0
    }

    /// How many days of the week.
    pub fn count(self) -> u32 {
        self.0.count_ones()
    }
}

fn day_number(name: &str) -> Result<u8, String> {
    let lower = name.to_ascii_lowercase();
    const FULL_NAMES: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    DAY_NAMES
        .iter()
        .zip(FULL_NAMES)
        .position(|(short, full)| lower == *short || lower == full)
        .map(|index| index as u8)
        .ok_or_else(|| {
            format!(
                "unknown day {name:?}: use mon, tue, wed, thu, fri, sat, sun, a range such as \"mon-fri\", a list such as \"mon,wed,fri\", or \"daily\""
            )
        })
}

impl fmt::Display for Days {
    /// Runs of days as ranges: `mon-fri`, `sat-sun`, `mon,wed,fri`, `daily`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Days::DAILY {
            return formatter.write_str("daily");
        }
        let mut runs = Vec::new();
        let mut day = 0;
        while day < 7 {
            if self.0 & (1 << day) == 0 {
                day += 1;
                continue;
            }
            let first = day;
            while day + 1 < 7 && self.0 & (1 << (day + 1)) != 0 {
                day += 1;
            }
            runs.push(if first == day {
                DAY_NAMES[first].to_owned()
            } else {
                format!("{}-{}", DAY_NAMES[first], DAY_NAMES[day])
            });
            day += 1;
        }
        formatter.write_str(&runs.join(","))
    }
}

/// A time-of-day range in the window's timezone, in minutes since midnight; the end may be
/// 24:00. A range whose end is before its start wraps midnight and belongs to the day it starts
/// on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    start_minute: u32,
    end_minute: u32,
}

impl Hours {
    pub const ALL_DAY: Hours = Hours {
        start_minute: 0,
        end_minute: MINUTES_PER_DAY,
    };

    /// `"HH:MM-HH:MM"`, from 00:00 to 24:00.
    pub fn parse(text: &str) -> Result<Hours, String> {
        let shape = || format!("{text:?} is not a range \"HH:MM-HH:MM\" (00:00 to 24:00)");
        let (start, end) = text.split_once('-').ok_or_else(shape)?;
        let start_minute = minute_of_day(start.trim()).ok_or_else(shape)?;
        let end_minute = minute_of_day(end.trim()).ok_or_else(shape)?;
        if start_minute == MINUTES_PER_DAY {
            return Err(format!("{text:?} starts at 24:00: start at 00:00 instead"));
        }
        if start_minute == end_minute {
            return Err(format!(
                "{text:?} starts and ends at the same time; use \"00:00-24:00\" for the whole day"
            ));
        }
        Ok(Hours {
            start_minute,
            end_minute,
        })
    }

    fn wraps(self) -> bool {
        self.end_minute < self.start_minute
    }

    /// Minutes of a day the range covers (one that wraps midnight: both sides).
    pub fn minutes(self) -> u32 {
        if self.wraps() {
            MINUTES_PER_DAY - self.start_minute + self.end_minute
        } else {
            self.end_minute - self.start_minute
        }
    }

    fn start_ms(self) -> i64 {
        i64::from(self.start_minute) * MINUTE_MS
    }

    fn end_ms(self) -> i64 {
        i64::from(self.end_minute) * MINUTE_MS
    }
}

fn minute_of_day(text: &str) -> Option<u32> {
    let (hours, minutes) = text.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let hours: u32 = hours.parse().ok()?;
    let minutes: u32 = minutes.parse().ok()?;
    let valid = (hours < 24 && minutes < 60) || (hours == 24 && minutes == 0);
    valid.then_some(hours * 60 + minutes)
}

impl fmt::Display for Hours {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{:02}:{:02}-{:02}:{:02}",
            self.start_minute / 60,
            self.start_minute % 60,
            self.end_minute / 60,
            self.end_minute % 60
        )
    }
}

/// What a series is judged against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub warn_after_ms: i64,
    pub critical_after_ms: i64,
    /// `expect = "nothing"`: silence is normal, so no series starts (or worsens) an alert.
    pub expect_nothing: bool,
}

/// One `[[feed.window]]`, validated.
#[derive(Debug, Clone)]
pub struct Window {
    pub days: Days,
    pub hours: Hours,
    pub timezone: Tz,
    /// Dates (in `timezone`) on which the window does not apply; a range that wraps midnight
    /// is skipped when the date it starts on is a holiday.
    pub holidays: BTreeSet<NaiveDate>,
    pub thresholds: Thresholds,
}

impl Window {
    /// The share of a week the window covers, from its days and hours (0 to 1); holidays,
    /// being dates, take nothing off it: a window that sets only holidays covers the week.
    pub fn week_share(&self) -> f64 {
        let minutes = self.days.count() * self.hours.minutes();
        f64::from(minutes) / f64::from(7 * MINUTES_PER_DAY)
    }

    /// Whether the window applies at `at_ms` (unix ms). Start inclusive, end exclusive.
    pub fn contains(&self, at_ms: i64) -> bool {
        let Some(utc) = DateTime::from_timestamp_millis(at_ms) else {
            return false;
        };
        let local = utc.with_timezone(&self.timezone).naive_local();
        let date = local.date();
        let time_of_day_ms = i64::from(local.num_seconds_from_midnight()) * 1000
            + i64::from(local.nanosecond() / 1_000_000);
        if !self.hours.wraps() {
            return self.applies_on(date)
                && self.hours.start_ms() <= time_of_day_ms
                && time_of_day_ms < self.hours.end_ms();
        }
        let started_today = self.applies_on(date) && time_of_day_ms >= self.hours.start_ms();
        let started_yesterday = time_of_day_ms < self.hours.end_ms()
            && date.pred_opt().is_some_and(|day| self.applies_on(day));
        started_today || started_yesterday
    }

    fn applies_on(&self, date: NaiveDate) -> bool {
        self.days.contains(date.weekday()) && !self.holidays.contains(&date)
    }

    /// The first instant after `after_ms` at which this window could start or stop applying:
    /// its start or end time on a nearby day, or a change of UTC offset. Always within ~2 days.
    fn next_candidate_after(&self, after_ms: i64) -> Option<i64> {
        let utc = DateTime::from_timestamp_millis(after_ms)?;
        let today = utc.with_timezone(&self.timezone).date_naive();
        let mut best: Option<i64> = None;
        let mut consider = |instant_ms: i64| {
            if instant_ms > after_ms && best.is_none_or(|best_ms| instant_ms < best_ms) {
                best = Some(instant_ms);
            }
        };
        for day_offset in -1..=2 {
            let Some(date) = today.checked_add_signed(chrono::Duration::days(day_offset)) else {
                continue;
            };
            let midnight = date.and_hms_opt(0, 0, 0)?;
            for minute in [self.hours.start_minute, self.hours.end_minute] {
                let wall = midnight + chrono::Duration::minutes(i64::from(minute));
                for instant_ms in instants_at(self.timezone, wall) {
                    consider(instant_ms);
                }
            }
            if let Some(change_ms) = offset_change_within(self.timezone, midnight) {
                consider(change_ms);
            }
        }
        best
    }
}

/// Every instant at which the clocks of `timezone` read `wall`: one, two when they fall back
/// over it, none when they spring forward over it (the offset change is a candidate of its own).
fn instants_at(timezone: Tz, wall: NaiveDateTime) -> Vec<i64> {
    match timezone.from_local_datetime(&wall) {
        chrono::LocalResult::Single(instant) => vec![instant.timestamp_millis()],
        chrono::LocalResult::Ambiguous(first, second) => {
            vec![first.timestamp_millis(), second.timestamp_millis()]
        }
        chrono::LocalResult::None => Vec::new(),
    }
}

fn utc_offset_seconds(timezone: Tz, at_ms: i64) -> i32 {
    match DateTime::from_timestamp_millis(at_ms) {
        Some(utc) => timezone
            .offset_from_utc_datetime(&utc.naive_utc())
            .fix()
            .local_minus_utc(),
        None => 0,
    }
}

/// The instant the UTC offset of `timezone` changes in the day-long span around local `midnight`
/// (from 14 hours before it read as UTC), if it does; spans of consecutive days tile time.
fn offset_change_within(timezone: Tz, midnight: NaiveDateTime) -> Option<i64> {
    let mut before_ms = midnight.and_utc().timestamp_millis() - 14 * HOUR_MS;
    let mut after_ms = before_ms + DAY_MS;
    let offset_before = utc_offset_seconds(timezone, before_ms);
    if offset_before == utc_offset_seconds(timezone, after_ms) {
        return None;
    }
    // One change a day at most: the first instant with the later offset.
    while after_ms - before_ms > 1 {
        let middle_ms = before_ms + (after_ms - before_ms) / 2;
        if utc_offset_seconds(timezone, middle_ms) == offset_before {
            before_ms = middle_ms;
        } else {
            after_ms = middle_ms;
        }
    }
    Some(after_ms)
}

/// What applies at an instant: a window (its index in config order) or the feed's own
/// thresholds.
/// Hours of the week on a timezone's clocks, for learning by hour (`learn_by_hour`): Monday
/// 00:00 local is hour 0. Local, not UTC, so a feed that follows business hours keeps its
/// hours across a clock change instead of finding its busy hour learned as a quiet one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeekClock {
    pub timezone: Tz,
}

/// Hours in a week.
pub const WEEK_HOURS: usize = 168;

impl WeekClock {
    /// The hour of the week `at_ms` falls in, and when that hour ends (unix ms, after `at_ms`).
    pub fn hour(&self, at_ms: i64) -> (usize, i64) {
        let (local_hours, offset_ms) = self.local(at_ms);
        (
            Self::hour_of_week(local_hours),
            (local_hours + 1) * HOUR_MS - offset_ms,
        )
    }

    /// Whole hours on the local clocks since 1970-01-01 00:00 local.
    pub fn local_hours(&self, at_ms: i64) -> i64 {
        self.local(at_ms).0
    }

    /// [`WeekClock::local_hours`], and the UTC offset (ms) it was counted with.
    fn local(&self, at_ms: i64) -> (i64, i64) {
        let offset_ms = i64::from(utc_offset_seconds(self.timezone, at_ms)) * 1_000;
        (
            at_ms.saturating_add(offset_ms).div_euclid(HOUR_MS),
            offset_ms,
        )
    }

    /// The hour of the week of a count of [`WeekClock::local_hours`].
    pub fn hour_of_week(local_hours: i64) -> usize {
        // 1970-01-01 was a Thursday: 72 hours after a Monday's midnight.
        (local_hours + 72).rem_euclid(WEEK_HOURS as i64) as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InForce {
    pub window: Option<usize>,
    pub thresholds: Thresholds,
}

/// The next boundary: from `at_ms` on, `to` applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub at_ms: i64,
    pub to: InForce,
}

/// A feed's own thresholds and its windows. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Schedule {
    own: Thresholds,
    windows: Arc<[Window]>,
}

impl Schedule {
    pub fn new(own: Thresholds, windows: Arc<[Window]>) -> Self {
        Schedule { own, windows }
    }

    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// The first window containing `at_ms`, else the feed's own thresholds.
    pub fn in_force(&self, at_ms: i64) -> InForce {
        match self
            .windows
            .iter()
            .position(|window| window.contains(at_ms))
        {
            Some(index) => InForce {
                window: Some(index),
                thresholds: self.windows[index].thresholds,
            },
            None => InForce {
                window: None,
                thresholds: self.own,
            },
        }
    }

    /// The first instant after `after_ms` at which a different window (or none) applies, within
    /// [`LOOK_AHEAD_MS`]. `None` for a feed without windows, or nothing changing that soon.
    pub fn next_change(&self, after_ms: i64) -> Option<Change> {
        if self.windows.is_empty() {
            return None;
        }
        let current = self.in_force(after_ms).window;
        let horizon_ms = after_ms.saturating_add(LOOK_AHEAD_MS);
        let mut cursor_ms = after_ms;
        // What applies only changes at a candidate: walk them in order.
        while cursor_ms < horizon_ms {
            let candidate_ms = self
                .windows
                .iter()
                .filter_map(|window| window.next_candidate_after(cursor_ms))
                .min()?;
            let to = self.in_force(candidate_ms);
            if to.window != current {
                return Some(Change {
                    at_ms: candidate_ms,
                    to,
                });
            }
            cursor_ms = candidate_ms;
        }
        None
    }

    /// When the evaluator must look at the feed's series again whatever their deadlines: the
    /// next change, or (with windows that change nothing for a long while) the look-ahead's end.
    pub fn next_look_ms(&self, after_ms: i64) -> i64 {
        if self.windows.is_empty() {
            return i64::MAX;
        }
        match self.next_change(after_ms) {
            Some(change) => change.at_ms,
            None => after_ms.saturating_add(LOOK_AHEAD_MS),
        }
    }
}

#[cfg(test)]
mod tests;
