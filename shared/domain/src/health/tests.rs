//! Unit and property tests of the health model, records and alerts.

use super::config::{Bands, HealthConfig};
use super::model::*;
use super::record::{self, AccountInfo, HealthRecord};
use crate::alert::AlertKind;
use crate::ids::{AccountId, MeterName, Segment, TenantId};
use chrono::{Duration, NaiveDate, Utc};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}
fn m(s: &str) -> MeterName {
    MeterName::parse(s).unwrap()
}
const AS_OF: &str = "2026-11-25";

/// An account with steady usage `level` over 90 days, multiplied by `last30` in the
/// last 30 days, `users` active users and `tickets` per day.
fn series(level: f64, last30: f64, users: f64, tickets: f64) -> Series {
    let as_of = d(AS_OF);
    let mut s = Series::empty(as_of);
    for i in 0..WINDOW_DAYS {
        let day = s.start + Duration::days(i as i64);
        let f = if i >= WINDOW_DAYS - 30 { last30 } else { 1.0 };
        s.add(&m("api_calls"), day, level * f);
        s.add(&m("tickets_resolved"), day, (level / 10.0) * f);
        s.add(&m("seats_active"), day, users);
        if tickets > 0.0 {
            s.add(&m("tickets_opened"), day, tickets);
        }
    }
    s
}

fn subject(id: &str, seg: Segment) -> Subject {
    Subject {
        account: AccountId::parse(id).unwrap(),
        segment: seg,
        onboarding_date: Some(d("2026-01-10")),
        seats: None,
    }
}

fn cfg() -> HealthConfig {
    HealthConfig {
        min_segment_population: 3,
        ..HealthConfig::default()
    }
}

fn measure_one(id: &str, seg: Segment, s: &Series) -> Measurement {
    measure(&subject(id, seg), s, d(AS_OF), &cfg(), &BTreeMap::new())
}

/// A segment population: `n` accounts whose last-30-day factor is `trends[i % len]`.
fn population(seg: Segment, prefix: &str, level: f64, trends: &[f64]) -> Vec<Measurement> {
    (0..8)
        .map(|i| {
            measure_one(
                &format!("{prefix}-{i}"),
                seg,
                &series(
                    level * (1.0 + i as f64 / 10.0),
                    trends[i % trends.len()],
                    10.0,
                    0.2,
                ),
            )
        })
        .collect()
}

#[test]
fn a_steady_account_scores_near_its_segment_median_and_is_not_red() {
    let pop = population(Segment::MidMarket, "mm", 100.0, &[0.95, 1.0, 1.05]);
    let b = baselines(&pop, &cfg());
    let steady = measure_one("steady", Segment::MidMarket, &series(120.0, 1.0, 10.0, 0.2));
    let s = score(&steady, &b[&Segment::MidMarket], &cfg()).unwrap();
    assert!(s.score > 45.0, "{s:?}");
    assert_ne!(s.band, Band::Red);
    assert_eq!(
        s.components.keys().copied().collect::<Vec<_>>(),
        Component::ALL.to_vec()
    );
    let weights: f64 = s.components.values().map(|c| c.weight).sum();
    assert!((weights - 1.0).abs() < 0.01);
    assert!((s.components[&Component::UsageTrend].weight - 0.20).abs() < 0.001);
    assert!((s.components[&Component::Engagement].weight - 0.55).abs() < 0.001);
}

#[test]
fn active_users_are_measured_against_licensed_seats_when_the_profile_has_them() {
    // 10 active users every day: against the 90-day peak that is full use; against
    // 50 licensed seats (synced from the CRM) it is a fifth.
    let s = series(100.0, 1.0, 10.0, 1.0);
    let by_peak = measure_one("a", Segment::Smb, &s);
    assert_eq!(by_peak.metrics.get(&Metric::Utilisation), Some(&1.0));
    let mut licensed = subject("a", Segment::Smb);
    licensed.seats = Some(50.0);
    let by_seats = measure(&licensed, &s, d(AS_OF), &cfg(), &BTreeMap::new());
    assert_eq!(by_seats.metrics.get(&Metric::Utilisation), Some(&0.2));
    assert_eq!(by_seats.signals.licensed_seats, Some(50.0));
    // Nonsense seat counts fall back to the peak.
    for bad in [0.0, -3.0, f64::NAN] {
        licensed.seats = Some(bad);
        let m = measure(&licensed, &s, d(AS_OF), &cfg(), &BTreeMap::new());
        assert_eq!(m.metrics.get(&Metric::Utilisation), Some(&1.0), "{bad}");
    }
    // The reason names the seats it used.
    let mut pop = population(Segment::Smb, "p", 100.0, &[1.0; 8]);
    pop.push(by_seats.clone());
    let base = baselines(&pop, &cfg());
    let scored = score(&by_seats, &base[&Segment::Smb], &cfg()).unwrap();
    let why = scored
        .reasons
        .iter()
        .find(|r| r.code == "low_active_users")
        .map(|r| r.detail.clone())
        .unwrap_or_default();
    assert!(
        why.contains("10 of 50 licensed seats active"),
        "{:?}",
        scored.reasons
    );
}

#[test]
fn bands_follow_the_segment_thresholds() {
    let b = Bands {
        green_min: 70.0,
        yellow_min: 40.0,
    };
    assert_eq!(Band::of(70.0, &b), Band::Green);
    assert_eq!(Band::of(69.9, &b), Band::Yellow);
    assert_eq!(Band::of(40.0, &b), Band::Yellow);
    assert_eq!(Band::of(39.9, &b), Band::Red);
    assert!(Band::Red < Band::Yellow && Band::Yellow < Band::Green);
}

#[test]
fn a_decaying_account_is_red_with_usage_down_first_and_the_numbers_behind_it() {
    let pop = population(Segment::Enterprise, "ent", 1000.0, &[0.97, 1.0, 1.03]);
    let b = baselines(&pop, &cfg());
    let decaying = measure_one("dec", Segment::Enterprise, &series(1000.0, 0.58, 10.0, 0.2));
    let s = score(&decaying, &b[&Segment::Enterprise], &cfg()).unwrap();
    assert_eq!(s.band, Band::Red, "{s:#?}");
    let first = &s.reasons[0];
    assert_eq!(first.code, "usage_down_30d");
    assert!(
        first.detail.contains("\u{2212}42 % vs prior 30 d"),
        "{}",
        first.detail
    );
    assert!(first.detail.contains("segment median"), "{}", first.detail);
    // Ordered by impact: harmful first, most harmful first.
    let harmful: Vec<f64> = s
        .reasons
        .iter()
        .take_while(|r| r.impact < 0.0)
        .map(|r| r.impact)
        .collect();
    assert!(harmful.windows(2).all(|w| w[0] <= w[1]), "{:?}", s.reasons);
}

#[test]
fn the_same_raw_usage_scores_differently_in_smb_and_enterprise() {
    // SMB accounts commonly swing ±30 %, enterprise ones stay within ±3 %.
    let mut pop = population(Segment::Smb, "smb", 50.0, &[0.7, 1.3, 0.75, 1.25, 1.0]);
    pop.extend(population(
        Segment::Enterprise,
        "ent",
        5000.0,
        &[0.97, 1.03, 1.0],
    ));
    let b = baselines(&pop, &cfg());
    let raw = series(100.0, 0.8, 10.0, 0.2);
    let smb = score(
        &measure_one("x", Segment::Smb, &raw),
        &b[&Segment::Smb],
        &cfg(),
    )
    .unwrap();
    let ent = score(
        &measure_one("x", Segment::Enterprise, &raw),
        &b[&Segment::Enterprise],
        &cfg(),
    )
    .unwrap();
    let u = |s: &Scored| s.components[&Component::UsageTrend].score;
    assert!(
        u(&smb) > u(&ent) + 20.0,
        "smb {} vs enterprise {}",
        u(&smb),
        u(&ent)
    );
    assert!(smb.score > ent.score);
    assert_eq!(
        b[&Segment::Smb].get(Metric::UsageTrend).source,
        BaselineSource::Segment
    );
}

#[test]
fn a_small_segment_falls_back_to_the_whole_tenant_then_to_defaults() {
    let mut pop = population(Segment::Smb, "smb", 50.0, &[1.0]);
    pop.truncate(8);
    pop.push(measure_one(
        "s1",
        Segment::Strategic,
        &series(5000.0, 1.0, 10.0, 0.2),
    ));
    let b = baselines(&pop, &cfg());
    assert_eq!(
        b[&Segment::Strategic].get(Metric::UsageTrend).source,
        BaselineSource::AllSegments
    );
    let mut c = cfg();
    c.fallback = super::config::Fallback::Defaults;
    let b = baselines(&pop, &c);
    assert_eq!(
        b[&Segment::Strategic].get(Metric::UsageTrend).source,
        BaselineSource::Defaults
    );
    assert_eq!(b[&Segment::Strategic].population, 1);
}

#[test]
fn new_or_silent_accounts_get_insufficient_data_instead_of_a_score() {
    let mut young = subject("young", Segment::Smb);
    young.onboarding_date = Some(d(AS_OF) - Duration::days(10));
    let m1 = measure(
        &young,
        &series(10.0, 1.0, 3.0, 0.0),
        d(AS_OF),
        &cfg(),
        &BTreeMap::new(),
    );
    assert!(m1
        .insufficient
        .as_deref()
        .unwrap()
        .contains("onboarded 10 days ago"));
    let silent = measure_one("silent", Segment::Smb, &Series::empty(d(AS_OF)));
    assert!(silent
        .insufficient
        .as_deref()
        .unwrap()
        .contains("0 active days"));
    let b = baselines([&m1, &silent], &cfg());
    assert!(score(&m1, &b[&Segment::Smb], &cfg()).is_none());
    assert_eq!(b[&Segment::Smb].population, 0);
    let rec = record::build(
        &m1,
        None,
        None,
        AccountInfo::default(),
        d(AS_OF),
        None,
        Utc::now(),
    );
    assert_eq!(rec.state, record::HealthState::InsufficientData);
    assert!(rec.score.is_none() && rec.band.is_none());
}

#[test]
fn overdue_milestones_rising_tickets_and_silence_each_name_their_reason() {
    let mut s = series(100.0, 0.5, 10.0, 0.3);
    // Tickets triple in the last 30 days while usage halves.
    for i in WINDOW_DAYS - 30..WINDOW_DAYS {
        let day = s.start + Duration::days(i as i64);
        s.add(&m("tickets_opened"), day, 0.6);
    }
    // The last 20 days are silent.
    for (name, v) in s.meters.iter_mut() {
        if name.as_str() == "tickets_opened" {
            continue;
        }
        for x in v[WINDOW_DAYS - 20..].iter_mut() {
            *x = 0.0;
        }
    }
    let mut late = subject("late", Segment::Smb);
    late.onboarding_date = Some(d(AS_OF) - Duration::days(60));
    let mut c = cfg();
    if let Some(smb) = c.segments.get_mut(&Segment::Smb) {
        smb.milestones
            .get_or_insert_with(Vec::new)
            .push(super::config::Milestone {
                name: "sso_enabled".into(),
                meter: m("sso_logins"),
                quantity: 1.0,
                due_days: 30,
            });
    }
    let meas = measure(&late, &s, d(AS_OF), &c, &BTreeMap::new());
    assert!(meas.signals.overdue.iter().any(|o| o.name == "sso_enabled"));
    let pop = population(Segment::Smb, "smb", 100.0, &[1.0, 1.05]);
    let b = baselines(&pop, &c);
    let sc = score(&meas, &b[&Segment::Smb], &c).unwrap();
    let codes: Vec<&str> = sc.reasons.iter().map(|r| r.code.as_str()).collect();
    for c in [
        "usage_down_30d",
        "no_activity_14d",
        "ticket_friction_rising",
        "milestone_overdue",
    ] {
        assert!(codes.contains(&c), "{c} missing from {codes:?}");
    }
    assert_eq!(sc.band, Band::Red);
}

#[test]
fn growing_high_adoption_low_friction_accounts_raise_an_expansion_signal() {
    let pop = population(Segment::MidMarket, "mm", 100.0, &[0.95, 1.0, 1.05]);
    let b = baselines(&pop, &cfg());
    let growing = measure_one("grow", Segment::MidMarket, &series(100.0, 1.6, 10.0, 0.1));
    let s = score(&growing, &b[&Segment::MidMarket], &cfg()).unwrap();
    assert!(s.expansion, "{s:#?}");
    assert!(s.reasons.iter().any(|r| r.code == "expansion_signal"));
    assert_ne!(s.band, Band::Red);
}

fn rec_on(day: NaiveDate, score: f64, band: Band, prev: Option<&HealthRecord>) -> HealthRecord {
    let meas = measure_one("acct", Segment::Smb, &series(10.0, 1.0, 3.0, 0.0));
    let mut r = record::build(
        &meas,
        None,
        None,
        AccountInfo::default(),
        day,
        prev,
        Utc::now(),
    );
    r.state = record::HealthState::Scored;
    r.score = Some(score);
    r.band = Some(band);
    r.recent.push(record::RecentScore {
        as_of: day,
        score,
        band,
    });
    r
}

#[test]
fn a_band_downgrade_and_a_large_drop_alert_once_per_change() {
    let t = TenantId::parse("acme").unwrap();
    let c = cfg();
    let d0 = d(AS_OF);
    let mut r0 = rec_on(d0, 80.0, Band::Green, None);
    assert!(record::decide_alerts(&t, &mut r0, &c, Utc::now()).is_empty());
    // Next day: 60, yellow -> downgrade + drop of 20 >= 15.
    let mut r1 = rec_on(d0 + Duration::days(1), 60.0, Band::Yellow, Some(&r0));
    let a1 = record::decide_alerts(&t, &mut r1, &c, Utc::now());
    let codes: Vec<&str> = a1.iter().map(|a| a.code.as_str()).collect();
    assert_eq!(codes, ["band_downgrade", "health_drop"]);
    assert!(a1.iter().all(|a| a.kind == AlertKind::Risk));
    // Day after: still 60 and yellow: nothing new.
    let mut r2 = rec_on(d0 + Duration::days(2), 59.0, Band::Yellow, Some(&r1));
    assert!(record::decide_alerts(&t, &mut r2, &c, Utc::now()).is_empty());
    // A re-run of day 1 produces the same keys (notify publishes each once).
    let mut again = rec_on(d0 + Duration::days(1), 60.0, Band::Yellow, Some(&r0));
    let keys = |v: &[crate::alert::Alert]| v.iter().map(|a| a.key.clone()).collect::<Vec<_>>();
    assert_eq!(
        keys(&record::decide_alerts(&t, &mut again, &c, Utc::now())),
        keys(&a1)
    );
    // An account first scored red sets its baseline: one informational note that
    // the default policy holds for the digest (no page), not again while it stays red.
    let mut red0 = rec_on(d0, 30.0, Band::Red, None);
    let first = record::decide_alerts(&t, &mut red0, &c, Utc::now());
    assert_eq!(
        first.iter().map(|a| a.code.as_str()).collect::<Vec<_>>(),
        ["starts_red"]
    );
    assert_eq!(first[0].severity, crate::alert::Severity::Info);
    assert!(matches!(
        crate::digest::AlertPolicy::default().route(&first[0], None),
        crate::digest::Route::Digest { .. }
    ));
    let mut red1 = rec_on(d0 + Duration::days(1), 31.0, Band::Red, Some(&red0));
    assert!(record::decide_alerts(&t, &mut red1, &c, Utc::now()).is_empty());
    // An upgrade raises nothing.
    let mut r3 = rec_on(d0 + Duration::days(3), 75.0, Band::Green, Some(&r2));
    assert!(record::decide_alerts(&t, &mut r3, &c, Utc::now()).is_empty());
}

#[test]
fn expansion_is_raised_as_an_opportunity_not_a_risk_and_only_once() {
    let t = TenantId::parse("acme").unwrap();
    let mut r0 = rec_on(d(AS_OF), 85.0, Band::Green, None);
    r0.expansion_signal = true;
    let a = record::decide_alerts(&t, &mut r0, &cfg(), Utc::now());
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].kind, AlertKind::Opportunity);
    let mut r1 = rec_on(d(AS_OF) + Duration::days(1), 86.0, Band::Green, Some(&r0));
    r1.expansion_signal = true;
    assert!(record::decide_alerts(&t, &mut r1, &cfg(), Utc::now()).is_empty());
}

#[test]
fn risk_alerts_render_reasons_and_owner() {
    let t = TenantId::parse("acme").unwrap();
    let r0 = rec_on(d(AS_OF), 80.0, Band::Green, None);
    let mut r1 = rec_on(d(AS_OF) + Duration::days(1), 30.0, Band::Red, Some(&r0));
    r1.info.owner = Some("csm@example.com".into());
    r1.reasons.push(Reason {
        code: "usage_down_30d".into(),
        impact: -20.0,
        detail: "api_calls \u{2212}42 % vs prior 30 d".into(),
        numbers: BTreeMap::new(),
    });
    let a = record::decide_alerts(&t, &mut r1, &cfg(), Utc::now());
    let rendered = crate::alert::render(&a[0]);
    assert!(
        rendered
            .subject
            .starts_with("[critical] risk acct: health green -> red"),
        "{}",
        rendered.subject
    );
    assert!(rendered.body.contains("usage_down_30d: api_calls"));
    assert!(rendered.body.contains("Owner:       csm@example.com"));
}

#[test]
fn a_hand_built_series_of_the_wrong_length_or_with_nan_is_measured_without_panicking() {
    let mut s = series(10.0, 1.0, 3.0, 0.5);
    s.meters.insert(m("api_calls"), vec![1.0; 7]);
    s.meters.insert(m("seats_active"), vec![f64::NAN; 200]);
    let meas = measure_one("odd", Segment::Smb, &s);
    assert!(meas.metrics.values().all(|v| v.is_finite()), "{meas:?}");
}

proptest! {
    #[test]
    fn the_baseline_median_stays_within_the_population_and_resists_one_outlier(
        mut values in proptest::collection::vec(-1.0f64..3.0, 9..60),
        outlier in -1e9f64..1e9,
    ) {
        let s = robust_stat(Metric::UsageTrend, &values).unwrap();
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        prop_assert!(s.median >= lo && s.median <= hi);
        prop_assert!(s.scale >= 0.08);
        prop_assert!(s.p10 <= s.median && s.median <= s.p90);
        // One outlier moves the median by at most one neighbouring order statistic.
        values.sort_by(f64::total_cmp);
        let with = robust_stat(Metric::UsageTrend, &[values.clone(), vec![outlier]].concat()).unwrap();
        let n = values.len();
        let lo_n = values[(n - 1) / 2 - usize::from(n > 1 && (n - 1) / 2 > 0)];
        let hi_n = values[(n / 2 + 1).min(n - 1)];
        prop_assert!(with.median >= lo_n - 1e-9 && with.median <= hi_n + 1e-9,
            "{} not in [{lo_n}, {hi_n}]", with.median);
    }

    #[test]
    fn scores_are_always_within_0_and_100_and_never_panic(
        level in 0.0f64..1e6, last30 in 0.0f64..5.0, users in 0.0f64..5000.0, tickets in 0.0f64..50.0,
        seg in 0usize..4,
    ) {
        let seg = [Segment::Smb, Segment::MidMarket, Segment::Enterprise, Segment::Strategic][seg];
        let meas = measure_one("p", seg, &series(level, last30, users, tickets));
        let pop = population(seg, "pop", 100.0, &[0.9, 1.0, 1.1]);
        let b = baselines(pop.iter().chain([&meas]), &cfg());
        if let Some(s) = score(&meas, &b[&seg], &cfg()) {
            prop_assert!((0.0..=100.0).contains(&s.score));
            for c in s.components.values() {
                prop_assert!((0.0..=100.0).contains(&c.score));
            }
        }
    }

    #[test]
    fn baselines_do_not_depend_on_the_order_accounts_are_measured_in(seed in 0u64..1000) {
        let mut pop = population(Segment::Smb, "a", 50.0, &[0.7, 1.3, 1.0]);
        pop.extend(population(Segment::Enterprise, "b", 500.0, &[0.9, 1.1]));
        let before = baselines(&pop, &cfg());
        let mut r = super::synth::Rng::new(seed);
        for i in (1..pop.len()).rev() {
            let j = (r.next_u64() % (i as u64 + 1)) as usize;
            pop.swap(i, j);
        }
        prop_assert_eq!(before, baselines(&pop, &cfg()));
    }
}

#[test]
fn a_shard_carries_the_seats_synced_onto_the_profile() {
    let mut p = crate::account::AccountProfile {
        account: AccountId::parse("acme").unwrap(),
        name: "Acme".into(),
        segment: Segment::Enterprise,
        owner_email: None,
        onboarding_date: None,
        renewal_date: None,
        crm_ids: BTreeMap::new(),
        crm_properties: BTreeMap::new(),
        created_at: Utc::now(),
        updated_at: Utc::now(),
    };
    assert_eq!(super::run::ShardAccount::of(&p).subject.seats, None);
    p.crm_properties.insert(
        "seats".into(),
        crate::hubspot::profile::CrmProperty {
            value: "250".into(),
            changed_at: Utc::now(),
            source: "seats".into(),
        },
    );
    assert_eq!(super::run::ShardAccount::of(&p).subject.seats, Some(250.0));
}

/// An SMB account of a tenant that sends only its own meter every day (none of the
/// built-in ones), scored with the built-in config: milestones overdue, key meters
/// unused.
fn own_meter_only(id: &str) -> (Measurement, Scored) {
    let as_of = d(AS_OF);
    let mut s = Series::empty(as_of);
    for i in 0..WINDOW_DAYS {
        s.add(&m("reports_run"), s.start + Duration::days(i as i64), 40.0);
    }
    let mut sub = subject(id, Segment::Smb);
    sub.onboarding_date = Some(as_of - Duration::days(60));
    let c = cfg();
    let meas = measure(&sub, &s, as_of, &c, &BTreeMap::new());
    let b = baselines(std::slice::from_ref(&meas), &c);
    let sc = score(&meas, &b[&Segment::Smb], &c).expect("scored");
    (meas, sc)
}

#[test]
fn no_reason_repeats_a_statement_within_itself_or_across_reasons() {
    let (_, sc) = own_meter_only("own");
    let mut seen = std::collections::BTreeSet::new();
    for r in &sc.reasons {
        for part in r.detail.split("; ") {
            assert!(
                seen.insert(part.to_owned()),
                "{:?} repeated in {:#?}",
                part,
                sc.reasons
            );
        }
    }
}

#[test]
fn an_account_active_every_day_on_other_meters_is_never_called_inactive() {
    let (meas, sc) = own_meter_only("own");
    assert_eq!(meas.signals.days_since_activity, Some(1));
    for r in &sc.reasons {
        assert!(
            !r.detail.contains("active in 0 of"),
            "{}: {}",
            r.code,
            r.detail
        );
    }
    let key = sc
        .reasons
        .iter()
        .find(|r| r.code == "key_feature_not_adopted")
        .expect("names the unused key features");
    assert!(
        key.detail.contains("no use of key features") && key.detail.contains("api_calls"),
        "{}",
        key.detail
    );
}

fn arb_measurement() -> impl Strategy<Value = (Measurement, Baseline)> {
    let metric = proptest::sample::select(Metric::ALL.to_vec());
    (
        // Segment medians never at a collapse (an absolute flag) themselves.
        proptest::collection::btree_map(metric, (-2.0f64..5.0, -0.3f64..2.0, 0.05f64..2.0), 1..12),
        proptest::option::of(1u32..60),
        proptest::bool::ANY,
        0usize..3,
        0usize..3,
    )
        .prop_map(|(picked, silent, burst, overdue, unadopted)| {
            let mut meas = Measurement {
                account: AccountId::parse("prop").unwrap(),
                segment: Segment::MidMarket,
                insufficient: None,
                metrics: BTreeMap::new(),
                signals: Signals::default(),
            };
            let mut metrics = BTreeMap::new();
            for (metric, (value, median, scale)) in picked {
                meas.metrics.insert(metric, value);
                metrics.insert(
                    metric,
                    MetricBaseline {
                        stat: Stat {
                            median,
                            scale,
                            p10: median - scale,
                            p90: median + scale,
                            n: 20,
                        },
                        source: BaselineSource::Segment,
                    },
                );
            }
            let sig = &mut meas.signals;
            sig.active_days = 40;
            sig.days_since_activity = silent;
            sig.burst_then_gap = burst.then_some((900.0, 100.0, 12));
            sig.overdue = (0..overdue)
                .map(|i| super::model::Overdue {
                    name: format!("ms_{i}"),
                    meter: m("api_calls"),
                    due_days: 14,
                    age_days: 60,
                })
                .collect();
            sig.unadopted_key_meters =
                [m("api_calls"), m("tickets_resolved")][..unadopted].to_vec();
            let baseline = Baseline {
                segment: Segment::MidMarket,
                population: 20,
                metrics,
                bands: Bands::default(),
                bands_source: BandSource::Defaults,
            };
            (meas, baseline)
        })
}

proptest! {
    /// Issue #14 item 5: the reasons explain the whole score. An account exactly at
    /// its segment median on every metric (and without flags) scores 50; any other
    /// account's reason impacts add up to its distance from that score, within the
    /// rounding of each impact to 0.1.
    #[test]
    fn reason_impacts_add_up_to_the_distance_from_a_segment_median_account(
        (meas, baseline) in arb_measurement()
    ) {
        let c = cfg();
        let Some(sc) = score(&meas, &baseline, &c) else {
            return Ok(());
        };
        let mut median_account = meas.clone();
        median_account.signals = Signals { active_days: 40, ..Signals::default() };
        for (metric, v) in median_account.metrics.iter_mut() {
            *v = baseline.get(*metric).stat.median;
        }
        let reference = score(&median_account, &baseline, &c).expect("scored").score;
        prop_assert!((reference - 50.0).abs() < 1e-9, "{reference}");
        let explained: f64 = sc.reasons.iter().map(|r| r.impact).sum();
        let tolerance = 0.05 * (sc.reasons.len() + 1) as f64 + 1e-6;
        prop_assert!(
            (explained - (sc.score - reference)).abs() <= tolerance,
            "score {} reference {} explained {} by {:#?}", sc.score, reference, explained, sc.reasons
        );
        let mut codes: Vec<&str> = sc.reasons.iter().map(|r| r.code.as_str()).collect();
        codes.sort_unstable();
        let n = codes.len();
        codes.dedup();
        prop_assert_eq!(codes.len(), n, "one reason per code");
    }
}

/// A purchase-log account: one `cds_bought` on each of `days_ago` (1 = yesterday).
fn purchases(days_ago: &[i64]) -> Series {
    let as_of = d(AS_OF);
    let mut s = Series::empty(as_of);
    for ago in days_ago {
        s.add(&m("cds_bought"), as_of - Duration::days(*ago), 1.0);
    }
    s
}

/// Scores `target` among 24 occasional buyers (one to three purchases in 90 days,
/// most a month or more ago), the way the CDNOW backtest sees its customers.
fn score_among_occasional_buyers(target: &[i64]) -> Scored {
    let cfg = HealthConfig {
        key_meters: vec![m("cds_bought")],
        min_active_days: 1,
        min_segment_population: 3,
        ..HealthConfig::default()
    };
    let mut pop: Vec<Measurement> = (0..24i64)
        .map(|i| {
            let days: Vec<i64> = (0..=(i % 3)).map(|k| 10 + 3 * i + 20 * k).collect();
            measure(
                &subject(&format!("buyer-{i}"), Segment::Smb),
                &purchases(&days),
                d(AS_OF),
                &cfg,
                &BTreeMap::new(),
            )
        })
        .collect();
    let t = measure(
        &subject("target", Segment::Smb),
        &purchases(target),
        d(AS_OF),
        &cfg,
        &BTreeMap::new(),
    );
    pop.push(t.clone());
    let b = baselines(&pop, &cfg);
    score(&t, &b[&Segment::Smb], &cfg).expect("scored")
}

#[test]
fn in_a_segment_that_buys_every_few_months_a_quiet_month_is_not_flagged_as_silence() {
    let quiet = score_among_occasional_buyers(&[40, 70]);
    let engagement = &quiet.components[&Component::Engagement];
    assert_eq!(engagement.penalty, 0.0, "{quiet:#?}");
    assert!(
        quiet
            .reasons
            .iter()
            .all(|r| !r.detail.contains("no usage for")),
        "{:#?}",
        quiet.reasons
    );
}

#[test]
fn a_frequent_buyer_quiet_for_forty_days_outranks_a_one_time_buyer_of_last_week() {
    // On the CDNOW log, customers with 4+ purchase days in 90 churn at about a third of
    // the rate of one-time buyers, however recent: frequency ranks before recency.
    let frequent = score_among_occasional_buyers(&[40, 50, 60, 70, 80]);
    let once = score_among_occasional_buyers(&[5]);
    assert!(
        frequent.score > once.score,
        "frequent {} vs once {}\n{:#?}\n{:#?}",
        frequent.score,
        once.score,
        frequent.reasons,
        once.reasons
    );
}

/// How a number may appear in a reason's text: percentages (`_pct`) as `−42 %` /
/// `+12 %` / `12 %`, other numbers as written with 0, 1 or 2 decimals.
fn shown(key: &str, v: f64) -> Vec<String> {
    if key.ends_with("_pct") {
        if v < 0.0 {
            vec![format!("\u{2212}{} %", -v)]
        } else {
            vec![format!("+{v} %"), format!("{v} %")]
        }
    } else {
        vec![
            format!("{v}"),
            format!("{v:.0}"),
            format!("{v:.1}"),
            format!("{v:.2}"),
        ]
    }
}

/// Every named number of every reason is stated in its text, and every reason that
/// states a comparison carries its numbers.
fn assert_numbers_agree_with_text(reasons: &[Reason]) {
    for r in reasons {
        if !matches!(r.code.as_str(), "low_friction" | "expansion_signal") {
            assert!(!r.numbers.is_empty(), "no numbers: {r:#?}");
        }
        for (k, v) in &r.numbers {
            assert!(
                shown(k, *v).iter().any(|s| r.detail.contains(s.as_str())),
                "{k} = {v} is not in the text: {r:#?}"
            );
        }
    }
}

#[test]
fn each_reason_carries_the_numbers_its_text_states() {
    let pop = population(Segment::MidMarket, "mm", 100.0, &[0.95, 1.0, 1.05]);
    let b = baselines(&pop, &cfg());
    let decaying = measure_one("dec", Segment::MidMarket, &series(100.0, 0.3, 4.0, 2.0));
    let sc = score(&decaying, &b[&Segment::MidMarket], &cfg()).expect("scored");
    let down = sc
        .reasons
        .iter()
        .find(|r| r.code == "usage_down_30d")
        .expect("usage_down_30d");
    assert_eq!(down.numbers.get("window_days"), Some(&30.0), "{down:#?}");
    assert!(
        down.numbers.get("change_pct").is_some_and(|c| *c <= -60.0),
        "{down:#?}"
    );
    assert_numbers_agree_with_text(&sc.reasons);
    let growing = measure_one("up", Segment::MidMarket, &series(100.0, 1.6, 10.0, 0.0));
    assert_numbers_agree_with_text(
        &score(&growing, &b[&Segment::MidMarket], &cfg())
            .expect("scored")
            .reasons,
    );
    for target in [&[40i64, 70][..], &[5], &[40, 50, 60, 70, 80]] {
        assert_numbers_agree_with_text(&score_among_occasional_buyers(target).reasons);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn reason_numbers_always_agree_with_their_text((meas, baseline) in arb_measurement()) {
        if let Some(sc) = score(&meas, &baseline, &cfg()) {
            assert_numbers_agree_with_text(&sc.reasons);
        }
    }
}

#[test]
fn a_change_that_rounds_to_zero_prints_as_plus_zero_never_with_two_signs() {
    // A tiny decline rounds to a negative zero; it once printed as "+-0 %".
    assert_eq!(pct(-0.001), "+0 %");
    assert_eq!(pct(-0.0), "+0 %");
    assert_eq!(pct(0.0), "+0 %");
    assert_eq!(pct(-0.006), "\u{2212}1 %");
    assert_eq!(pct(0.25), "+25 %");
}
