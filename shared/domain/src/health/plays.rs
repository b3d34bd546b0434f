//! Plays by tier: when an account falls behind its tier's milestone schedule, or its
//! health band changes, HubSpot gets what its workflows need to act —
//! `usage_milestone_lag_days`, `usage_next_milestone` and `usage_health_band` on the
//! company, and optionally a task for the owner with the reason in its body. Which
//! plays run for which tier is the tenant's health config (`plays`, edited through
//! `PUT /v1/hubspot/plays`). Everything here is pure: the score run calls [`decide`]
//! per record and hands the result to the write-back.

use super::config::Milestone;
use super::record::HealthRecord;
use crate::ids::Segment;
use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The company properties a play adds to the write-back (the band is always written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayProperties {
    /// Days behind the tier's milestone schedule (0 on schedule).
    pub lag_days: u32,
    /// The next milestone not reached, with its due day; `None` when all are reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_milestone: Option<String>,
}

/// A HubSpot task a play creates, associated with the company.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmTask {
    pub company_id: String,
    /// The HubSpot portal of the company (the write-back queue's message group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal: Option<String>,
    /// The company owner's HubSpot owner id, when the profile carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// The owner's e-mail when the profile names no owner id: the write-back looks the
    /// HubSpot owner up by it (CRM owners API) before creating the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_email: Option<String>,
    pub subject: String,
    pub body: String,
    pub due: NaiveDate,
}

/// Which band changes set a play off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BandChanges {
    /// Any change of band, up or down.
    #[default]
    Any,
    /// Only a move to a worse band.
    Downgrades,
    /// Band changes alone set nothing off (milestone lag only).
    Ignore,
}

/// One tier's play.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierPlay {
    /// Write lag, next milestone and band to the company.
    pub properties: bool,
    /// Also create a task for the company owner, with the reason in its body.
    pub task: bool,
    /// Days past a milestone's due day tolerated before the account counts as behind.
    pub grace_days: u32,
    pub band_changes: BandChanges,
    /// The task is due this many days after the scored day (1-90).
    pub task_due_days: u32,
}

impl Default for TierPlay {
    fn default() -> Self {
        Self {
            properties: true,
            task: false,
            grace_days: 0,
            band_changes: BandChanges::Any,
            task_due_days: 3,
        }
    }
}

/// The tenant's plays: tiers not named run none.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plays {
    #[serde(default)]
    pub tiers: BTreeMap<Segment, TierPlay>,
}

impl Plays {
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }

    /// Reads and validates a `PUT /v1/hubspot/plays` body (`invalid_plays`).
    pub fn from_body(body: &[u8]) -> Result<Self, crate::input::InputError> {
        let bad = |m: String| crate::input::input_error("invalid_plays", m);
        let plays: Plays = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
        plays.validate().map_err(bad)?;
        Ok(plays)
    }

    /// Why the plays cannot be stored, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        for (s, p) in &self.tiers {
            if *s == Segment::Unassigned {
                return Err("plays.tiers.unassigned: unassigned accounts are not scored".into());
            }
            if !p.properties && !p.task {
                return Err(format!(
                    "plays.tiers.{s}: a play writes properties, creates a task, or both"
                ));
            }
            if p.grace_days > 365 {
                return Err(format!("plays.tiers.{s}.grace_days must be 0-365"));
            }
            if !(1..=90).contains(&p.task_due_days) {
                return Err(format!("plays.tiers.{s}.task_due_days must be 1-90"));
            }
        }
        Ok(())
    }
}

/// Where an account stands against its tier's milestones on a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// Days past the due day of the most overdue milestone not reached (0: none is).
    pub lag_days: u32,
    /// Milestones more than `grace` days overdue.
    pub behind: BTreeSet<String>,
    /// The unreached milestone due first, and its due day.
    pub next: Option<(String, NaiveDate)>,
}

/// The account's standing on `day`: milestones count as reached when reached on or
/// before it. `None` without an onboarding date (no schedule to be behind).
pub fn standing(
    onboarded: Option<NaiveDate>,
    reached: &BTreeMap<String, NaiveDate>,
    milestones: &[Milestone],
    day: NaiveDate,
    grace_days: u32,
) -> Option<Standing> {
    let onboarded = onboarded?;
    let mut out = Standing {
        lag_days: 0,
        behind: BTreeSet::new(),
        next: None,
    };
    for ms in milestones {
        if reached.get(&ms.name).is_some_and(|d| *d <= day) {
            continue;
        }
        let due = onboarded
            .checked_add_signed(Duration::days(i64::from(ms.due_days)))
            .unwrap_or(NaiveDate::MAX);
        let late = u32::try_from((day - due).num_days().max(0)).unwrap_or(u32::MAX);
        out.lag_days = out.lag_days.max(late);
        if late > grace_days {
            out.behind.insert(ms.name.clone());
        }
        if out.next.as_ref().is_none_or(|(_, d)| due < *d) {
            out.next = Some((ms.name.clone(), due));
        }
    }
    Some(out)
}

/// What a play does for one scored account today.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayDecision {
    /// Properties to write (`None`: nothing changed that the play writes).
    pub properties: Option<PlayProperties>,
    pub task: Option<CrmTask>,
    /// Why, in words (the task body's first line; logged).
    pub reason: String,
}

/// Decides `play` for today's record `rec` against its tier's `milestones`. The day
/// before is read from the record itself (milestones reached by then, the last earlier
/// score's band), so re-running a day decides the same. Nothing for accounts without a
/// HubSpot company or a score.
pub fn decide(
    play: &TierPlay,
    rec: &HealthRecord,
    milestones: &[Milestone],
) -> Option<PlayDecision> {
    let company_id = rec.info.hubspot_company_id.clone()?;
    let band = rec.band?;
    let onboarded = rec.info.onboarding_date;
    let reached = &rec.milestones_reached;
    let today = standing(onboarded, reached, milestones, rec.as_of, play.grace_days);
    let yesterday = rec
        .as_of
        .pred_opt()
        .and_then(|d| standing(onboarded, reached, milestones, d, play.grace_days));
    let behind_now = today.as_ref().is_some_and(|s| !s.behind.is_empty());
    let was_behind = yesterday.as_ref().is_some_and(|s| !s.behind.is_empty());
    let newly_behind: Vec<&String> = match (&today, &yesterday) {
        (Some(t), y) => t
            .behind
            .iter()
            .filter(|m| !y.as_ref().is_some_and(|y| y.behind.contains(*m)))
            .collect(),
        (None, _) => Vec::new(),
    };
    let last_band = rec
        .recent
        .iter()
        .rfind(|r| r.as_of < rec.as_of)
        .map(|r| r.band);
    let band_change = last_band.filter(|last| match play.band_changes {
        BandChanges::Any => *last != band,
        BandChanges::Downgrades => band < *last,
        BandChanges::Ignore => false,
    });
    let caught_up = was_behind && !behind_now;
    if !behind_now && !caught_up && band_change.is_none() {
        return None;
    }
    let mut why = Vec::new();
    if let (Some(t), true) = (&today, behind_now) {
        let names: Vec<&str> = t.behind.iter().map(String::as_str).collect();
        why.push(format!(
            "behind the {} milestone schedule by {} days ({} overdue)",
            rec.segment,
            t.lag_days,
            names.join(", ")
        ));
    } else if caught_up {
        why.push(format!("back on the {} milestone schedule", rec.segment));
    }
    if let Some(last) = band_change {
        why.push(format!(
            "health band {} -> {}{}",
            last.as_str(),
            band.as_str(),
            rec.score
                .map(|s| format!(" (score {s:.1})"))
                .unwrap_or_default()
        ));
    }
    let reason = why.join("; ");
    let properties = play.properties.then(|| PlayProperties {
        lag_days: today.as_ref().map_or(0, |s| s.lag_days),
        next_milestone: today
            .as_ref()
            .and_then(|s| s.next.as_ref())
            .map(|(name, due)| format!("{name} (due {due})")),
    });
    let sets_off_task = !newly_behind.is_empty() || band_change.is_some();
    let subject = if !newly_behind.is_empty() {
        format!("is behind its {} milestones", rec.segment)
    } else {
        format!("health band moved to {}", band.as_str())
    };
    let task =
        (play.task && sets_off_task).then(|| task(play, rec, &subject, &company_id, &reason));
    Some(PlayDecision {
        properties,
        task,
        reason,
    })
}

fn task(
    play: &TierPlay,
    rec: &HealthRecord,
    subject: &str,
    company_id: &str,
    reason: &str,
) -> CrmTask {
    let name = rec
        .info
        .name
        .clone()
        .unwrap_or_else(|| rec.account.to_string());
    let mut body = vec![format!("{name}: {reason}.")];
    let negatives: Vec<String> = rec
        .reasons
        .iter()
        .filter(|r| r.impact < 0.0)
        .take(3)
        .map(|r| format!("- {}: {}", r.code, r.detail))
        .collect();
    if !negatives.is_empty() {
        body.push("What drives the score down:".into());
        body.extend(negatives);
    }
    if let Some(owner) = &rec.info.owner {
        body.push(format!("Owner: {owner}"));
    }
    CrmTask {
        company_id: company_id.to_owned(),
        portal: rec.info.hubspot_portal_id.clone(),
        owner_id: rec.info.hubspot_owner_id.clone(),
        owner_email: rec
            .info
            .owner
            .clone()
            .filter(|_| rec.info.hubspot_owner_id.is_none()),
        subject: format!("Usage play: {name} {subject}"),
        body: body.join("\n"),
        due: rec
            .as_of
            .checked_add_signed(Duration::days(i64::from(play.task_due_days)))
            .unwrap_or(rec.as_of),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::model::{Band, Reason};
    use crate::health::record::{AccountInfo, HealthState, RecentScore};
    use crate::ids::{AccountId, MeterName};

    fn day(d: &str) -> NaiveDate {
        NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap()
    }

    fn schedule() -> Vec<Milestone> {
        let m = |name: &str, due_days| Milestone {
            name: name.into(),
            meter: MeterName::parse("api_calls").unwrap(),
            quantity: 10.0,
            due_days,
        };
        vec![m("first_api_calls", 15), m("integration_live", 30)]
    }

    /// An enterprise account onboarded on 1 November, scored on `as_of` with `band`,
    /// yellow the day before, having reached `reached`.
    fn record(as_of: &str, band: Band, reached: &[(&str, &str)]) -> HealthRecord {
        let as_of = day(as_of);
        HealthRecord {
            account: AccountId::parse("acct-1").unwrap(),
            segment: Segment::Enterprise,
            as_of,
            state: HealthState::Scored,
            score: Some(38.0),
            band: Some(band),
            components: BTreeMap::new(),
            baseline: None,
            reasons: vec![Reason {
                code: "usage_down_30d".into(),
                impact: -12.0,
                detail: "api_calls -40 % vs prior 30 d".into(),
                numbers: BTreeMap::new(),
            }],
            insufficient_reason: None,
            expansion_signal: false,
            milestones_reached: reached
                .iter()
                .map(|(n, d)| ((*n).to_owned(), day(d)))
                .collect(),
            recent: vec![
                RecentScore {
                    as_of: as_of.pred_opt().unwrap(),
                    score: 50.0,
                    band: Band::Yellow,
                },
                RecentScore {
                    as_of,
                    score: 38.0,
                    band,
                },
            ],
            alert_state: Default::default(),
            info: AccountInfo {
                name: Some("Acme".into()),
                owner: Some("csm@example.com".into()),
                onboarding_date: Some(day("2026-11-01")),
                hubspot_company_id: Some("5123".into()),
                hubspot_portal_id: Some("77".into()),
                hubspot_owner_id: Some("901".into()),
                ..Default::default()
            },
            computed_at: chrono::Utc::now(),
        }
    }

    fn with_task() -> TierPlay {
        TierPlay {
            task: true,
            ..TierPlay::default()
        }
    }

    #[test]
    fn the_day_a_milestone_goes_overdue_the_play_writes_the_lag_and_creates_a_task() {
        // first_api_calls was due on 16 November; on the 17th it is a day late.
        let rec = record("2026-11-17", Band::Yellow, &[]);
        let d = decide(&with_task(), &rec, &schedule()).expect("a play");
        assert_eq!(
            d.properties,
            Some(PlayProperties {
                lag_days: 1,
                next_milestone: Some("first_api_calls (due 2026-11-16)".into()),
            })
        );
        let task = d.task.expect("a task");
        assert_eq!(task.company_id, "5123");
        assert_eq!(task.owner_id.as_deref(), Some("901"));
        assert_eq!(task.owner_email, None, "the id is known: no look-up");
        assert_eq!(task.portal.as_deref(), Some("77"));
        assert_eq!(task.due, day("2026-11-20"));
        assert!(
            task.subject.contains("behind its enterprise milestones"),
            "{}",
            task.subject
        );
        assert!(
            task.body.contains(
                "behind the enterprise milestone schedule by 1 days (first_api_calls overdue)"
            ) && task.body.contains("usage_down_30d")
                && task.body.contains("csm@example.com"),
            "{}",
            task.body
        );
    }

    #[test]
    fn while_still_behind_the_lag_is_written_daily_but_no_second_task_is_created() {
        let rec = record("2026-11-20", Band::Yellow, &[]);
        let d = decide(&with_task(), &rec, &schedule()).expect("a play");
        assert_eq!(d.properties.map(|p| p.lag_days), Some(4));
        assert_eq!(d.task, None);
    }

    #[test]
    fn a_second_milestone_going_overdue_creates_another_task() {
        let rec = record("2026-12-02", Band::Yellow, &[]);
        let d = decide(&with_task(), &rec, &schedule()).expect("a play");
        assert!(d
            .task
            .is_some_and(|t| t.body.contains("first_api_calls, integration_live")));
    }

    #[test]
    fn grace_days_delay_falling_behind() {
        let play = TierPlay {
            grace_days: 3,
            ..with_task()
        };
        assert_eq!(
            decide(&play, &record("2026-11-19", Band::Yellow, &[]), &schedule()),
            None
        );
        let d = decide(&play, &record("2026-11-20", Band::Yellow, &[]), &schedule()).unwrap();
        assert!(d.task.is_some(), "4 days late, past 3 days of grace");
    }

    #[test]
    fn an_account_on_schedule_with_an_unchanged_band_sets_nothing_off() {
        let rec = record(
            "2026-11-17",
            Band::Yellow,
            &[("first_api_calls", "2026-11-10")],
        );
        assert_eq!(decide(&with_task(), &rec, &schedule()), None);
    }

    #[test]
    fn catching_up_writes_a_lag_of_zero_once_without_a_task() {
        let rec = record(
            "2026-11-20",
            Band::Yellow,
            &[("first_api_calls", "2026-11-20")],
        );
        let d = decide(&with_task(), &rec, &schedule()).expect("the lag is cleared");
        assert_eq!(
            d.properties,
            Some(PlayProperties {
                lag_days: 0,
                next_milestone: Some("integration_live (due 2026-12-01)".into()),
            })
        );
        assert_eq!(d.task, None);
        assert!(d
            .reason
            .contains("back on the enterprise milestone schedule"));
    }

    #[test]
    fn a_band_change_sets_the_play_off_as_the_tier_configures() {
        let on_time = [("first_api_calls", "2026-11-05")];
        let down = record("2026-11-17", Band::Red, &on_time);
        let up = record("2026-11-17", Band::Green, &on_time);
        let d = decide(&with_task(), &down, &schedule()).expect("downgrade");
        assert!(
            d.reason.contains("health band yellow -> red (score 38.0)"),
            "{}",
            d.reason
        );
        assert!(d
            .task
            .is_some_and(|t| t.subject.contains("health band moved to red")));
        assert!(
            decide(&with_task(), &up, &schedule()).is_some(),
            "any change"
        );
        let downgrades = TierPlay {
            band_changes: BandChanges::Downgrades,
            ..with_task()
        };
        assert!(decide(&downgrades, &down, &schedule()).is_some());
        assert_eq!(
            decide(&downgrades, &up, &schedule()),
            None,
            "an upgrade is not a downgrade"
        );
        let ignore = TierPlay {
            band_changes: BandChanges::Ignore,
            ..with_task()
        };
        assert_eq!(decide(&ignore, &down, &schedule()), None);
    }

    #[test]
    fn a_properties_only_play_creates_no_task_and_a_task_only_play_writes_no_lag() {
        let rec = record("2026-11-17", Band::Yellow, &[]);
        let d = decide(&TierPlay::default(), &rec, &schedule()).unwrap();
        assert!(d.properties.is_some() && d.task.is_none());
        let task_only = TierPlay {
            properties: false,
            ..with_task()
        };
        let d = decide(&task_only, &rec, &schedule()).unwrap();
        assert!(d.properties.is_none() && d.task.is_some());
    }

    #[test]
    fn accounts_without_a_company_or_a_score_run_no_play() {
        let mut rec = record("2026-11-17", Band::Red, &[]);
        rec.info.hubspot_company_id = None;
        assert_eq!(decide(&with_task(), &rec, &schedule()), None);
        let mut rec = record("2026-11-17", Band::Red, &[]);
        rec.band = None;
        assert_eq!(decide(&with_task(), &rec, &schedule()), None);
    }

    #[test]
    fn plays_are_validated_field_by_field() {
        let ok =
            Plays::from_body(br#"{"tiers": {"enterprise": {"task": true}, "smb": {}}}"#).unwrap();
        assert_eq!(ok.tiers[&Segment::Enterprise].task_due_days, 3);
        for (body, field) in [
            (r#"{"tiers": {"unassigned": {}}}"#, "plays.tiers.unassigned"),
            (
                r#"{"tiers": {"smb": {"properties": false}}}"#,
                "plays.tiers.smb",
            ),
            (r#"{"tiers": {"smb": {"grace_days": 400}}}"#, "grace_days"),
            (
                r#"{"tiers": {"smb": {"task_due_days": 0}}}"#,
                "task_due_days",
            ),
            (r#"{"tiers": {"smb": {"tasks": true}}}"#, "unknown field"),
            (r#"{"tiers": {"gold": {}}}"#, "unknown variant"),
        ] {
            let e = Plays::from_body(body.as_bytes()).unwrap_err();
            assert_eq!(e.code, "invalid_plays");
            assert!(e.message.contains(field), "{body}: {}", e.message);
        }
    }
}
