//! Period boundaries computed from the bundled tz database (`domain::zone`, jiff) are the
//! ones chrono-tz computed before it, for every zone name chrono-tz knows.
//!
//! The reference below is the code `domain::entitlement` ran on chrono-tz, kept verbatim.
//! Two things differ by design, and are left out of the comparison:
//! - chrono-tz 0.10.4 carries tzdata 2025b, the bundled database 2026f. Where a release
//!   in between changed a zone, `CHANGED_AFTER_2025B` lists the zone and the instants the
//!   change touches (found by this test); `the_differences_are_tzdata_releases_not_code`
//!   shows that jiff reading 2025b's own files gives chrono-tz's answers there.
//! - chrono-tz's tables stop at the last transition before 2100 and keep its offset
//!   forever after; jiff goes on applying the zone's rule. Comparisons end at 2099-12-31.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::{Tz, TZ_VARIANTS};
use domain::entitlement::{entitlement_from_body, local_midnight, Entitlement, PeriodKind};
use domain::ids::EntitlementId;
use domain::zone::Zone;
use proptest::prelude::*;

/// `local_midnight` as it was written on chrono-tz.
fn reference_midnight(tz: Tz, d: NaiveDate) -> DateTime<Utc> {
    let mut naive = d.and_time(chrono::NaiveTime::MIN);
    for _ in 0..4 {
        if let Some(t) = tz.from_local_datetime(&naive).earliest() {
            return t.with_timezone(&Utc);
        }
        naive += Duration::minutes(30);
    }
    naive.and_utc()
}

fn reference_date(tz: Tz, at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

const CANADA: &str = "2026-11-01T00:00:00Z..2100-01-01T00:00:00Z";
const MOROCCO: &str = "2026-09-01T00:00:00Z..2100-01-01T00:00:00Z";
const CUBA: &str = "2026-11-01T00:00:00Z..2027-03-16T00:00:00Z";
const BAJA_CALIFORNIA: &str = "1970-01-01T00:00:00Z..1976-01-01T00:00:00Z";

/// Zones a tzdata release after 2025b changed, and the UTC instants `[from..until)` it
/// changed (what bundled 2026f and chrono-tz's 2025b disagree on, found by this test).
const CHANGED_AFTER_2025B: &[(&str, &str)] = &[
    ("Africa/Casablanca", MOROCCO),
    ("Africa/El_Aaiun", MOROCCO),
    ("America/Edmonton", CANADA),
    ("America/Inuvik", CANADA),
    ("America/Rainy_River", CANADA),
    ("America/Vancouver", CANADA),
    ("America/Winnipeg", CANADA),
    ("America/Yellowknife", CANADA),
    ("Canada/Central", CANADA),
    ("Canada/Mountain", CANADA),
    ("Canada/Pacific", CANADA),
    ("America/Havana", CUBA),
    ("Cuba", CUBA),
    ("America/Tijuana", BAJA_CALIFORNIA),
    ("America/Ensenada", BAJA_CALIFORNIA),
    ("America/Santa_Isabel", BAJA_CALIFORNIA),
    ("Mexico/BajaNorte", BAJA_CALIFORNIA),
    ("Asia/Tehran", "1979-05-26T00:00:00Z..1979-05-28T00:00:00Z"),
];

fn instant(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// 2100-01-01T00:00:00Z.
fn end_of_comparison() -> DateTime<Utc> {
    DateTime::from_timestamp(4_102_444_800, 0).unwrap()
}

/// Whether chrono-tz's answer for `name` at `at` is the one to expect from the bundle.
fn compared(name: &str, at: DateTime<Utc>) -> bool {
    at < end_of_comparison()
        && !CHANGED_AFTER_2025B.iter().any(|(zone, window)| {
            *zone == name && {
                let (from, until) = window.split_once("..").unwrap();
                instant(from) <= at && at < instant(until)
            }
        })
}

fn zone(tz: Tz) -> Zone {
    Zone::parse(tz.name()).unwrap_or_else(|| panic!("{} is not in the bundled database", tz.name()))
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// Midnight of `d` in `tz`, both ways, where the two databases are expected to agree.
fn check_midnight(tz: Tz, z: &Zone, d: NaiveDate) -> Result<(), String> {
    let (got, expected) = (local_midnight(z, d), reference_midnight(tz, d));
    if got == expected || !compared(tz.name(), got) || !compared(tz.name(), expected) {
        Ok(())
    } else {
        Err(format!(
            "{} {d}: midnight {got}, chrono-tz {expected}",
            tz.name()
        ))
    }
}

fn check_date(tz: Tz, z: &Zone, at: DateTime<Utc>) -> Result<(), String> {
    let (got, expected) = (z.local_date(at), reference_date(tz, at));
    if got == expected || !compared(tz.name(), at) {
        Ok(())
    } else {
        Err(format!(
            "{} {at}: local date {got}, chrono-tz {expected}",
            tz.name()
        ))
    }
}

/// Midnight of `d`, and the local date just before and at that instant.
fn check_day(tz: Tz, z: &Zone, d: NaiveDate) -> Result<(), String> {
    check_midnight(tz, z, d)?;
    let midnight = reference_midnight(tz, d);
    check_date(tz, z, midnight - Duration::seconds(1))?;
    check_date(tz, z, midnight)
}

fn fail_with(errors: Vec<String>) {
    assert!(
        errors.is_empty(),
        "{} differences, first ones:\n{}",
        errors.len(),
        errors
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn every_zone_chrono_tz_knows_is_in_the_bundled_database_under_the_same_name() {
    let missing: Vec<&str> = TZ_VARIANTS
        .iter()
        .map(|tz| tz.name())
        .filter(|name| {
            Zone::parse(name).is_none()
                || entitlement(PeriodKind::Year, day(2026, 1, 1), name).is_err()
        })
        .collect();
    assert!(missing.is_empty(), "missing: {missing:?}");
    assert!(TZ_VARIANTS.len() > 500);
}

#[test]
fn names_chrono_tz_refused_are_still_refused() {
    for name in [
        "Mars/Base",
        "europe/berlin",
        "EUROPE/BERLIN",
        "Europe/Berlin/",
        "",
        "Etc/Unknown",
        "Local",
    ] {
        assert!(
            name.parse::<Tz>().is_err(),
            "{name:?} was accepted by chrono-tz"
        );
        assert!(Zone::parse(name).is_none(), "{name:?} is accepted now");
        assert_eq!(
            entitlement(PeriodKind::Year, day(2026, 1, 1), name).map(|_| ()),
            Err("invalid_time_zone"),
            "{name:?}"
        );
    }
}

#[test]
fn every_first_of_month_from_1970_to_2099_starts_at_the_same_instant_in_every_zone() {
    let mut errors = Vec::new();
    for &tz in TZ_VARIANTS.iter() {
        let z = zone(tz);
        for y in 1970..=2099 {
            for m in 1..=12 {
                if let Err(e) = check_midnight(tz, &z, day(y, m, 1)) {
                    errors.push(e);
                }
            }
        }
    }
    fail_with(errors);
}

/// Zones with midnight transitions, half- and quarter-hour offsets, the southern
/// hemisphere's reversed seasons, and whole skipped or repeated days.
const HARD_ZONES: &[&str] = &[
    "Pacific/Apia",
    "Pacific/Kiritimati",
    "Pacific/Chatham",
    "Australia/Lord_Howe",
    "Australia/Adelaide",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Tehran",
    "Asia/Beirut",
    "Asia/Amman",
    "Asia/Damascus",
    "Asia/Gaza",
    "Africa/Cairo",
    "Africa/Casablanca",
    "America/Havana",
    "America/Santiago",
    "America/Sao_Paulo",
    "America/Asuncion",
    "America/St_Johns",
    "America/Godthab",
    "America/Scoresbysund",
    "America/Caracas",
    "Antarctica/Troll",
    "Europe/Dublin",
    "Europe/Moscow",
    "America/New_York",
    "Europe/Berlin",
];

#[test]
fn every_midnight_from_1970_to_2099_and_the_date_either_side_of_it_agree_in_the_hard_zones() {
    let mut errors = Vec::new();
    for name in HARD_ZONES {
        let tz: Tz = name.parse().unwrap();
        let z = zone(tz);
        let mut d = day(1970, 1, 1);
        while d <= day(2099, 12, 31) {
            if let Err(e) = check_day(tz, &z, d) {
                errors.push(e);
            }
            d += Duration::days(1);
        }
    }
    fail_with(errors);
}

#[test]
fn apia_skipped_the_30th_of_december_2011_and_its_period_boundaries_say_so() {
    let z = Zone::parse("Pacific/Apia").unwrap();
    // 2011-12-29 24:00 -10:00 was followed by 2011-12-31 00:00 +14:00.
    assert_eq!(
        local_midnight(&z, day(2011, 12, 31)),
        instant("2011-12-30T10:00:00Z")
    );
    assert_eq!(
        z.local_date(instant("2011-12-30T09:59:59Z")),
        day(2011, 12, 29)
    );
    assert_eq!(
        z.local_date(instant("2011-12-30T10:00:00Z")),
        day(2011, 12, 31)
    );
}

/// The system's tzdata version, if it has one and it is chrono-tz's.
fn system_tzdata_is_chrono_tzs() -> bool {
    let header = std::fs::read_to_string("/usr/share/zoneinfo/tzdata.zi").unwrap_or_default();
    let version = header
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("# version ");
    if version == chrono_tz::IANA_TZDB_VERSION {
        return true;
    }
    eprintln!(
        "skipped: system tzdata is {version:?}, chrono-tz's is {}",
        chrono_tz::IANA_TZDB_VERSION
    );
    false
}

#[test]
fn the_differences_are_tzdata_releases_not_code() {
    if !system_tzdata_is_chrono_tzs() {
        return;
    }
    let mut errors = Vec::new();
    for (name, _) in CHANGED_AFTER_2025B {
        let tz: Tz = name.parse().unwrap();
        let tzif = std::fs::read(format!("/usr/share/zoneinfo/{name}")).unwrap();
        let z = Zone::from_tzif(name, &tzif).unwrap();
        let mut d = day(1970, 1, 1);
        while d <= day(2099, 12, 31) {
            let midnight = reference_midnight(tz, d);
            let got = (
                local_midnight(&z, d),
                z.local_date(midnight - Duration::seconds(1)),
                z.local_date(midnight),
            );
            let expected = (
                midnight,
                reference_date(tz, midnight - Duration::seconds(1)),
                d,
            );
            if got != expected {
                errors.push(format!("{name} {d}: {got:?}, chrono-tz {expected:?}"));
            }
            d += Duration::days(1);
        }
    }
    fail_with(errors);
}

#[test]
fn after_2099_a_zones_rule_still_applies() {
    let new_york = Zone::parse("America/New_York").unwrap();
    assert_eq!(
        local_midnight(&new_york, day(2100, 1, 1)),
        instant("2100-01-01T05:00:00Z")
    );
    assert_eq!(
        local_midnight(&new_york, day(2100, 7, 1)),
        instant("2100-07-01T04:00:00Z")
    );
    assert_eq!(
        local_midnight(&new_york, day(2250, 7, 1)),
        instant("2250-07-01T04:00:00Z")
    );
}

/// An entitlement in `time_zone`, made the way the API makes one (so validated).
fn entitlement(
    period: PeriodKind,
    starts_on: NaiveDate,
    time_zone: &str,
) -> Result<Entitlement, &'static str> {
    let body = serde_json::json!({
        "account": "acme",
        "meter": "api_calls",
        "limit": 100,
        "period": period,
        "starts_on": starts_on.format("%Y-%m-%d").to_string(),
        "time_zone": time_zone,
    });
    let now = day(2026, 1, 1).and_hms_opt(0, 0, 0).unwrap().and_utc();
    let id = EntitlementId::parse("e1").unwrap();
    entitlement_from_body(id, body.to_string().as_bytes(), now, None).map_err(|e| e.code)
}

fn period_kind() -> impl Strategy<Value = PeriodKind> {
    prop_oneof![
        Just(PeriodKind::CalendarMonth),
        Just(PeriodKind::AnniversaryMonth),
        Just(PeriodKind::Quarter),
        Just(PeriodKind::Year),
    ]
}

/// An instant from 1970 to 2099, half the time within two days of a month's turn in a
/// month in which zones usually change their clocks.
fn any_instant() -> impl Strategy<Value = DateTime<Utc>> {
    let start = day(1970, 1, 1)
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp();
    let end = end_of_comparison().timestamp();
    let anywhere = (start..end).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap());
    let near_a_change = (
        1970..=2099i32,
        prop::sample::select(vec![3u32, 4, 9, 10, 11]),
        0u32..31,
        -2 * 86_400i64..2 * 86_400,
    )
        .prop_map(|(y, m, d, s)| {
            let base = day(y, m, 1).and_hms_opt(0, 0, 0).unwrap().and_utc();
            base + Duration::days(i64::from(d)) + Duration::seconds(s)
        });
    prop_oneof![anywhere, near_a_change]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn the_period_containing_an_instant_is_the_one_chrono_tz_gave_in_any_zone(
        tz in prop::sample::select(TZ_VARIANTS.to_vec()),
        kind in period_kind(),
        anchor in (1970..=2099i32, 1..=12u32, 1..=31u32),
        at in any_instant(),
    ) {
        let (y, m, d) = anchor;
        let starts_on = NaiveDate::from_ymd_opt(y, m, d.min(28)).unwrap();
        let e = entitlement(kind, starts_on.min(reference_date(tz, at)), tz.name()).unwrap();
        prop_assume!(compared(tz.name(), at));
        let p = e.period_at(at).expect("in force from starts_on");
        let local = reference_date(tz, at);
        prop_assert!(p.start_date <= local && local < p.end_date, "{local} not in {p:?}");
        let z = zone(tz);
        for d in [p.start_date, p.end_date, local] {
            prop_assert_eq!(check_midnight(tz, &z, d), Ok(()));
        }
        prop_assert_eq!(check_date(tz, &z, at), Ok(()));
        prop_assert_eq!(p.start, local_midnight(&z, p.start_date));
        prop_assert_eq!(p.end, local_midnight(&z, p.end_date));
    }
}
