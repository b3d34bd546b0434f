//! Alert routing policy: which alerts go out at once and which wait for a segment's
//! digest (weekly for enterprise, monthly for SMB in the default rhythm), and the
//! per-account cooldown that folds repeats of the same alert into the digest instead
//! of paging a CSM twice. Pure: notify applies it, the store keeps the buckets.

use crate::alert::{render, Alert, AlertKind, Rendered, Severity};
use crate::ids::{Segment, TenantId};
use crate::input::{input_error, InputError};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cadence {
    /// Every alert goes out at once.
    Off,
    Daily,
    Weekly,
    Monthly,
}

impl Cadence {
    pub fn as_str(self) -> &'static str {
        match self {
            Cadence::Off => "off",
            Cadence::Daily => "daily",
            Cadence::Weekly => "weekly",
            Cadence::Monthly => "monthly",
        }
    }

    /// The digest period containing `day`: [start, end) in UTC days. Weeks start on
    /// Monday. `None` for `Off`.
    pub fn period(self, day: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
        match self {
            Cadence::Off => None,
            Cadence::Daily => Some((day, day.succ_opt()?)),
            Cadence::Weekly => {
                let start = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
                Some((start, start + Duration::days(7)))
            }
            Cadence::Monthly => {
                let start = day.with_day(1)?;
                let end = if start.month() == 12 {
                    NaiveDate::from_ymd_opt(start.year() + 1, 1, 1)?
                } else {
                    NaiveDate::from_ymd_opt(start.year(), start.month() + 1, 1)?
                };
                Some((start, end))
            }
        }
    }
}

/// A tenant's alert routing policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertPolicy {
    /// Digest cadence per segment; segments not listed use `Off`.
    pub digest: BTreeMap<Segment, Cadence>,
    /// Alerts at or below this severity wait for the digest (where one is on).
    pub digest_max_severity: Severity,
    /// Minimum hours between two published alerts of the same kind and code for the
    /// same account; repeats inside the window join the digest. 0 = no cooldown.
    pub cooldown_hours: BTreeMap<AlertKind, u32>,
}

impl Default for AlertPolicy {
    /// The seeds' operating rhythm: enterprise and strategic weekly, SMB and
    /// mid-market monthly; informational alerts wait, warnings and criticals do not.
    /// Limit alerts have no cooldown (each threshold is its own news); risk alerts
    /// at most daily and data-quality alerts at most every 4 hours per account.
    fn default() -> Self {
        Self {
            digest: BTreeMap::from([
                (Segment::Enterprise, Cadence::Weekly),
                (Segment::Strategic, Cadence::Weekly),
                (Segment::MidMarket, Cadence::Monthly),
                (Segment::Smb, Cadence::Monthly),
            ]),
            digest_max_severity: Severity::Info,
            cooldown_hours: BTreeMap::from([
                (AlertKind::Limit, 0),
                (AlertKind::Risk, 24),
                (AlertKind::DataQuality, 4),
            ]),
        }
    }
}

/// Where one alert goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Publish,
    Digest {
        bucket: DigestBucket,
        reason: &'static str,
    },
}

/// One digest: a tenant's segment over one period.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DigestBucket {
    pub tenant: TenantId,
    pub segment: Segment,
    pub cadence: Cadence,
    pub start: NaiveDate,
    /// Exclusive: the digest is sent once this day has begun.
    pub end: NaiveDate,
}

impl DigestBucket {
    pub fn key(&self) -> String {
        format!(
            "{}#{}#{}",
            self.segment.as_str(),
            self.cadence.as_str(),
            self.start.format("%Y-%m-%d")
        )
    }

    pub fn due(&self, now: DateTime<Utc>) -> bool {
        now.date_naive() >= self.end
    }
}

/// The cooldown scope of an alert: repeats of the same news (kind, code, meters) for
/// the same account.
pub fn cooldown_scope(a: &Alert) -> String {
    let meters: Vec<&str> = a.meters.iter().map(|m| m.as_str()).collect();
    format!(
        "{}:{}:{}:{}",
        a.account,
        a.kind.as_str(),
        a.code,
        meters.join(",")
    )
}

/// Registry change notifications are an audit trail: each one is sent, never cooled.
fn is_change_notice(a: &Alert) -> bool {
    a.code.starts_with("definition_")
}

impl AlertPolicy {
    /// Routes an alert. `last_published` is when an alert of the same cooldown scope
    /// was last published for this account, if ever.
    pub fn route(&self, a: &Alert, last_published: Option<DateTime<Utc>>) -> Route {
        let cadence = self.digest.get(&a.segment).copied().unwrap_or(Cadence::Off);
        let bucket = |cadence: Cadence| {
            cadence
                .period(a.raised_at.date_naive())
                .map(|(start, end)| DigestBucket {
                    tenant: a.tenant.clone(),
                    segment: a.segment,
                    cadence,
                    start,
                    end,
                })
        };
        if a.severity <= self.digest_max_severity {
            if let Some(b) = bucket(cadence) {
                return Route::Digest {
                    bucket: b,
                    reason: "low_severity",
                };
            }
        }
        let cooldown = self.cooldown_hours.get(&a.kind).copied().unwrap_or(0);
        let cooling = !is_change_notice(a)
            && last_published.is_some_and(|t| {
                cooldown > 0 && a.raised_at - t < Duration::hours(i64::from(cooldown))
            });
        // Never page twice inside the cooldown; never lose the repeat either: it joins
        // the segment's digest, or a daily one when the segment has none.
        if cooling && a.severity < Severity::Critical {
            let cadence = if cadence == Cadence::Off {
                Cadence::Daily
            } else {
                cadence
            };
            if let Some(b) = bucket(cadence) {
                return Route::Digest {
                    bucket: b,
                    reason: "cooldown",
                };
            }
        }
        Route::Publish
    }
}

/// Validates a `PUT /v1/alerts/policy` body; fields left out keep the defaults.
pub fn policy_from_body(body: &[u8]) -> Result<AlertPolicy, InputError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(default)]
        digest: Option<BTreeMap<String, Cadence>>,
        #[serde(default)]
        digest_max_severity: Option<Severity>,
        #[serde(default)]
        cooldown_hours: Option<BTreeMap<AlertKind, u32>>,
    }
    let b: Body = serde_json::from_slice(body).map_err(|e| {
        input_error(
            "invalid_alert_policy",
            format!(
                "policy could not be read (line {}, column {}): {e}",
                e.line(),
                e.column()
            ),
        )
    })?;
    let mut p = AlertPolicy::default();
    if let Some(d) = b.digest {
        p.digest.clear();
        for (seg, cadence) in d {
            let segment = Segment::parse(&seg)
                .filter(|s| *s != Segment::Unassigned)
                .ok_or_else(|| {
                    input_error(
                        "invalid_alert_policy",
                        format!(
                            "digest: '{seg}' is not one of smb, mid_market, enterprise, strategic"
                        ),
                    )
                })?;
            p.digest.insert(segment, cadence);
        }
    }
    if let Some(s) = b.digest_max_severity {
        if s == Severity::Critical {
            return Err(input_error(
                "invalid_alert_policy",
                "critical alerts always go out at once: digest_max_severity is info or warning",
            ));
        }
        p.digest_max_severity = s;
    }
    if let Some(c) = b.cooldown_hours {
        if c.values().any(|h| *h > 24 * 31) {
            return Err(input_error(
                "invalid_alert_policy",
                "cooldown_hours is at most 744 (31 days)",
            ));
        }
        p.cooldown_hours.extend(c);
    }
    Ok(p)
}

/// Renders one digest of alerts (any kinds) for a segment's CS team.
pub fn render_digest(bucket: &DigestBucket, alerts: &[(Alert, String)]) -> Rendered {
    render_digest_part(bucket, alerts, None)
}

/// A digest split into as few parts as keep each one within `fits` (SNS takes at
/// most 256 KiB per message). Alerts are ordered by account first, so an account's
/// alerts stay together unless one account alone fills a part. The split depends only
/// on the entries, so a retried run makes the same parts, and per-part markers send
/// each part once. A single alert too large for a part on its own still gets its own
/// part (and only that part can fail to publish).
pub fn render_digest_parts(
    bucket: &DigestBucket,
    alerts: &[(Alert, String)],
    fits: &dyn Fn(&Rendered) -> bool,
) -> Vec<Rendered> {
    let mut sorted: Vec<(Alert, String)> = alerts.to_vec();
    sorted.sort_by_key(|(a, _)| account_label(a));
    let whole = render_digest_part(bucket, &sorted, None);
    if fits(&whole) || sorted.len() <= 1 {
        return vec![whole];
    }
    let mut ranges = Vec::new();
    split_to_fit(bucket, &sorted, 0, sorted.len(), fits, &mut ranges);
    let n = ranges.len();
    ranges
        .into_iter()
        .enumerate()
        .map(|(i, (a, b))| render_digest_part(bucket, &sorted[a..b], Some((i + 1, n))))
        .collect()
}

/// Halves `[a, b)` until each piece fits, measured with the widest part label.
fn split_to_fit(
    bucket: &DigestBucket,
    alerts: &[(Alert, String)],
    a: usize,
    b: usize,
    fits: &dyn Fn(&Rendered) -> bool,
    out: &mut Vec<(usize, usize)>,
) {
    let widest = Some((usize::MAX, usize::MAX));
    if b - a <= 1 || fits(&render_digest_part(bucket, &alerts[a..b], widest)) {
        out.push((a, b));
        return;
    }
    let mid = a + (b - a) / 2;
    split_to_fit(bucket, alerts, a, mid, fits, out);
    split_to_fit(bucket, alerts, mid, b, fits, out);
}

fn account_label(a: &Alert) -> String {
    a.account_name
        .clone()
        .unwrap_or_else(|| a.account.to_string())
}

/// One digest message; `part` is `(index, of)` when the digest is split.
fn render_digest_part(
    bucket: &DigestBucket,
    alerts: &[(Alert, String)],
    part: Option<(usize, usize)>,
) -> Rendered {
    let last = bucket.end.pred_opt().unwrap_or(bucket.end);
    let mut accounts: BTreeMap<String, Vec<(&Alert, Rendered, &str)>> = BTreeMap::new();
    for (a, reason) in alerts {
        accounts
            .entry(
                a.account_name
                    .clone()
                    .unwrap_or_else(|| a.account.to_string()),
            )
            .or_default()
            .push((a, render(a), reason.as_str()));
    }
    let subject = format!(
        "{} digest: {} alert{} for {} {} account{}, {} to {}",
        capitalise(bucket.cadence.as_str()),
        alerts.len(),
        if alerts.len() == 1 { "" } else { "s" },
        accounts.len(),
        bucket.segment.as_str(),
        if accounts.len() == 1 { "" } else { "s" },
        bucket.start.format("%Y-%m-%d"),
        last.format("%Y-%m-%d"),
    );
    let subject = match part {
        Some((i, n)) => format!("[{i}/{n}] {subject}"),
        None => subject,
    };
    let subject: String = subject.chars().filter(char::is_ascii).take(99).collect();
    let mut body = format!(
        "{} alert digest for {} accounts of tenant {}, {} to {}.\n\
         These alerts were informational, or repeated an alert already sent inside its \
         cooldown, so they were held for this digest instead of being sent one by one.\n",
        capitalise(bucket.cadence.as_str()),
        bucket.segment.as_str(),
        bucket.tenant,
        bucket.start.format("%Y-%m-%d"),
        last.format("%Y-%m-%d"),
    );
    if let Some((i, n)) = part {
        body.push_str(&format!(
            "This is part {i} of {n} of this digest; the other parts arrive as separate messages.\n"
        ));
    }
    let mut items = Vec::new();
    for (account, list) in &accounts {
        body.push_str(&format!("\n{account}\n"));
        for (a, r, reason) in list {
            let why = if *reason == "cooldown" {
                " (repeat inside cooldown)"
            } else {
                ""
            };
            body.push_str(&format!(
                "  - [{}] {}{why}\n",
                a.severity.as_str(),
                r.subject
            ));
            // Self-contained: what to do, and where, without opening the JSON.
            if let Some(step) = r.json["suggested_next_step"].as_str() {
                body.push_str(&format!("      Next step: {step}\n"));
            }
            if let Some(url) = &a.crm_url {
                body.push_str(&format!("      CRM record: {url}\n"));
            }
            items.push(serde_json::json!({"held_because": reason, "alert": r.json}));
        }
    }
    body.push_str(&format!(
        "\n{} alert{} for {} account{}. Each alert is also in this message's JSON form, \
         with its key, for tools.\n",
        alerts.len(),
        if alerts.len() == 1 { "" } else { "s" },
        accounts.len(),
        if accounts.len() == 1 { "" } else { "s" },
    ));
    let json = serde_json::json!({
        "kind": "digest",
        "tenant": bucket.tenant,
        "segment": bucket.segment,
        "cadence": bucket.cadence,
        "period": {"start": bucket.start, "end": bucket.end},
        "alerts": items,
    });
    let mut json = json;
    if let (Some((i, n)), Some(obj)) = (part, json.as_object_mut()) {
        obj.insert("part".into(), serde_json::json!({"index": i, "of": n}));
    }
    Rendered {
        subject,
        body,
        json,
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::tests::sample;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(); // a Wednesday
        assert_eq!(
            Cadence::Weekly.period(d).unwrap(),
            (
                NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
                NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()
            )
        );
        let dec = NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
        assert_eq!(
            Cadence::Monthly.period(dec).unwrap(),
            (
                NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
                NaiveDate::from_ymd_opt(2027, 1, 1).unwrap()
            )
        );
        assert_eq!(Cadence::Off.period(dec), None);
    }

    #[test]
    fn informational_alerts_wait_for_their_segments_digest_and_warnings_do_not() {
        let p = AlertPolicy::default();
        let mut a = sample();
        a.segment = Segment::Enterprise;
        a.severity = Severity::Info;
        a.raised_at = at("2026-11-25T10:00:00Z");
        match p.route(&a, None) {
            Route::Digest { bucket, reason } => {
                assert_eq!(reason, "low_severity");
                assert_eq!(bucket.cadence, Cadence::Weekly);
                assert_eq!(bucket.end, NaiveDate::from_ymd_opt(2026, 11, 30).unwrap());
                assert!(!bucket.due(at("2026-11-29T23:59:59Z")));
                assert!(bucket.due(at("2026-11-30T00:00:00Z")));
            }
            r => panic!("{r:?}"),
        }
        a.segment = Segment::Smb;
        assert!(matches!(
            p.route(&a, None),
            Route::Digest { bucket, .. } if bucket.cadence == Cadence::Monthly
        ));
        a.severity = Severity::Warning;
        assert_eq!(p.route(&a, None), Route::Publish);
    }

    #[test]
    fn a_repeat_inside_the_cooldown_joins_the_digest_but_a_critical_one_pages() {
        let p = AlertPolicy::default();
        let mut a = sample();
        a.kind = AlertKind::Risk;
        a.severity = Severity::Warning;
        a.segment = Segment::Unassigned; // no digest for the segment: a daily one
        a.raised_at = at("2026-11-25T10:00:00Z");
        let earlier = Some(at("2026-11-25T01:00:00Z"));
        assert!(matches!(
            p.route(&a, earlier),
            Route::Digest { bucket, reason: "cooldown" } if bucket.cadence == Cadence::Daily
        ));
        assert_eq!(
            p.route(&a, Some(at("2026-11-24T09:00:00Z"))),
            Route::Publish
        );
        a.severity = Severity::Critical;
        assert_eq!(p.route(&a, earlier), Route::Publish);
        // Each registry change notice is sent, however close together.
        a.kind = AlertKind::DataQuality;
        a.code = "definition_updated".into();
        a.severity = Severity::Info;
        assert_eq!(p.route(&a, earlier), Route::Publish);
        // Limit alerts have no cooldown: 80 % and 100 % in one batch both go out.
        a.kind = AlertKind::Limit;
        a.severity = Severity::Warning;
        assert_eq!(p.route(&a, earlier), Route::Publish);
    }

    #[test]
    fn policies_are_validated_and_default_what_they_leave_out() {
        let p = policy_from_body(br#"{"digest":{"smb":"weekly"},"cooldown_hours":{"risk":48}}"#)
            .unwrap();
        assert_eq!(p.digest.get(&Segment::Smb), Some(&Cadence::Weekly));
        assert_eq!(p.digest.get(&Segment::Enterprise), None);
        assert_eq!(p.cooldown_hours[&AlertKind::Risk], 48);
        assert_eq!(p.cooldown_hours[&AlertKind::DataQuality], 4);
        for bad in [
            r#"{"digest":{"huge":"weekly"}}"#,
            r#"{"digest":{"smb":"hourly"}}"#,
            r#"{"digest_max_severity":"critical"}"#,
            r#"{"cooldown_hours":{"risk":100000}}"#,
            r#"{"colour":1}"#,
        ] {
            assert_eq!(
                policy_from_body(bad.as_bytes()).unwrap_err().code,
                "invalid_alert_policy",
                "{bad}"
            );
        }
    }

    #[test]
    fn a_digest_lists_every_held_alert_by_account_with_why_it_was_held() {
        let mut a = sample();
        a.segment = Segment::Enterprise;
        let mut b = sample();
        b.account_name = Some("Globex".into());
        b.threshold = Some(50);
        let bucket = DigestBucket {
            tenant: a.tenant.clone(),
            segment: Segment::Enterprise,
            cadence: Cadence::Weekly,
            start: NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
            end: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
        };
        let r = render_digest(
            &bucket,
            &[(a, "low_severity".into()), (b, "cooldown".into())],
        );
        assert!(
            r.subject.starts_with(
                "Weekly digest: 2 alerts for 2 enterprise accounts, 2026-11-23 to 2026-11-29"
            ),
            "{}",
            r.subject
        );
        assert!(r.body.contains("Globex") && r.body.contains("(repeat inside cooldown)"));
        assert_eq!(r.json["alerts"].as_array().unwrap().len(), 2);
        assert!(r.subject.len() < 100);
    }

    #[test]
    fn a_digest_email_says_what_to_do_for_each_alert_without_the_json() {
        let a = sample();
        let bucket = DigestBucket {
            tenant: a.tenant.clone(),
            segment: a.segment,
            cadence: Cadence::Daily,
            start: NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
            end: NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
        };
        let r = render_digest(&bucket, &[(a, "low_severity".into())]);
        assert!(
            r.body
                .contains("      Next step: Reach out to discuss their usage trend"),
            "{}",
            r.body
        );
        assert!(
            r.body
                .contains("      CRM record: https://app.hubspot.com/contacts/1/company/5123"),
            "{}",
            r.body
        );
        assert!(r.body.contains("1 alert for 1 account."), "{}", r.body);
    }
}
