//! IANA time zones, resolved from the tz database compiled into the binary (jiff's bundled
//! copy, so no file under `/usr/share/zoneinfo` is needed on Lambda). jiff stays inside
//! this module: callers pass and get chrono's types.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Timelike, Utc};
use jiff::tz::{AmbiguousOffset, TimeZone};

/// A named IANA time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone(TimeZone);

impl Zone {
    pub fn utc() -> Self {
        Self(TimeZone::UTC)
    }

    /// The zone named exactly `name` (case-sensitive, as `Europe/Berlin` or a link such as
    /// `US/Eastern`), or `None` if the database has no such name.
    pub fn parse(name: &str) -> Option<Self> {
        let tz = jiff::tz::db().get(name).ok()?;
        // The database looks names up ignoring ASCII case; only the exact spelling counts.
        (tz.iana_name() == Some(name)).then_some(Self(tz))
    }

    /// A zone read from TZif data (RFC 8536), such as a file of a system's zoneinfo.
    pub fn from_tzif(name: &str, data: &[u8]) -> Option<Self> {
        TimeZone::tzif(name, data).ok().map(Self)
    }

    /// The zone's offset east of UTC at `at`, in seconds. Instants outside the range the
    /// database covers (years -9999 to 9999) take the offset at its nearest end.
    fn offset_seconds(&self, at: DateTime<Utc>) -> i64 {
        let secs = at.timestamp();
        let ts = jiff::Timestamp::from_second(secs).unwrap_or(if secs < 0 {
            jiff::Timestamp::MIN
        } else {
            jiff::Timestamp::MAX
        });
        i64::from(self.0.to_offset(ts).seconds())
    }

    /// The local calendar date at instant `at`.
    pub fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.naive_utc()
            .checked_add_signed(Duration::seconds(self.offset_seconds(at)))
            .map_or_else(|| at.date_naive(), |local| local.date())
    }

    /// The earliest instant whose local wall time is `local` (the first of the two on a
    /// backward change), or `None` if `local` falls in a gap (a forward change skips it).
    pub fn earliest(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        let offset = match civil(local) {
            Some(dt) => match self.0.to_ambiguous_timestamp(dt).offset() {
                AmbiguousOffset::Unambiguous { offset } => offset.seconds(),
                AmbiguousOffset::Gap { .. } => return None,
                // The larger offset reaches the wall time first.
                AmbiguousOffset::Fold { before, after } => before.seconds().max(after.seconds()),
            },
            None => {
                let guess = self.offset_seconds(local.and_utc());
                i32::try_from(guess).unwrap_or(0)
            }
        };
        local
            .checked_sub_signed(Duration::seconds(i64::from(offset)))
            .map(|utc| utc.and_utc())
    }
}

/// `local` as jiff's civil date-time, if jiff can represent it.
fn civil(local: NaiveDateTime) -> Option<jiff::civil::DateTime> {
    let narrow = |v: u32| i8::try_from(v).ok();
    jiff::civil::DateTime::new(
        i16::try_from(local.year()).ok()?,
        narrow(local.month())?,
        narrow(local.day())?,
        narrow(local.hour())?,
        narrow(local.minute())?,
        narrow(local.second())?,
        i32::try_from(local.nanosecond()).ok()?,
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }
    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M").unwrap()
    }

    #[test]
    fn zone_names_are_matched_exactly_and_links_are_accepted() {
        assert!(Zone::parse("Europe/Berlin").is_some());
        assert!(Zone::parse("US/Eastern").is_some());
        assert!(Zone::parse("UTC").is_some());
        assert!(Zone::parse("europe/berlin").is_none());
        assert!(Zone::parse("Mars/Base").is_none());
        assert!(Zone::parse("").is_none());
        assert!(Zone::parse("Etc/Unknown").is_none());
    }

    #[test]
    fn a_local_date_is_the_wall_calendars_day_at_that_instant() {
        let kolkata = Zone::parse("Asia/Kolkata").unwrap();
        assert_eq!(
            kolkata.local_date(at("2026-03-01T18:29:59Z")),
            NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()
        );
        assert_eq!(
            kolkata.local_date(at("2026-03-01T18:30:00Z")),
            NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()
        );
    }

    #[test]
    fn a_skipped_wall_time_has_no_instant_and_a_repeated_one_takes_the_first() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        assert_eq!(berlin.earliest(local("2026-03-29T02:30")), None);
        assert_eq!(
            berlin.earliest(local("2026-10-25T02:30")),
            Some(at("2026-10-25T00:30:00Z"))
        );
    }

    #[test]
    fn wall_times_beyond_the_databases_years_keep_the_offset_at_its_end() {
        let tokyo = Zone::parse("Asia/Tokyo").unwrap();
        let far = NaiveDate::from_ymd_opt(12345, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        assert_eq!(
            tokyo.earliest(far),
            Some(far.and_utc() - Duration::hours(9))
        );
        assert_eq!(tokyo.local_date(far.and_utc()), far.date());
    }
}
