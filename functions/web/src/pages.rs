//! The pages, as maud templates (every interpolation is HTML-escaped).

use crate::chart::{self, Point};
use crate::view;
use crate::{Answer, Signed};
use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

pub const CSS: &str = include_str!("app.css");

const BANDS: [(&str, &str); 3] = [
    ("red", "At risk"),
    ("yellow", "Watch"),
    ("green", "Healthy"),
];
const SEGMENTS: [(&str, &str); 5] = [
    ("smb", "SMB"),
    ("mid_market", "Mid-market"),
    ("enterprise", "Enterprise"),
    ("strategic", "Strategic"),
    ("unassigned", "Unassigned"),
];

fn band_badge(band: &str) -> Markup {
    let word = BANDS
        .iter()
        .find(|(b, _)| *b == band)
        .map(|(_, w)| *w)
        .unwrap_or("Unscored");
    html! {
        span class=(format!("band band-{band}")) data-band=(band) {
            span class="dot" aria-hidden="true" {} (word)
        }
    }
}

pub(crate) fn segment_word(s: &str) -> String {
    SEGMENTS
        .iter()
        .find(|(k, _)| *k == s)
        .map(|(_, w)| (*w).to_owned())
        .unwrap_or_else(|| view::humanize(s))
}

pub(crate) fn layout(title: &str, who: Option<&Signed>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(w) = who { meta name="csrf-token" content=(w.csrf); }
                title { (title) " · CS cockpit" }
                link rel="stylesheet" href="/app/static/app.css";
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header class="top" {
                    nav aria-label="Main" {
                        a class="brand" href="/app/portfolio" { "CS cockpit" }
                        @if who.is_some() {
                            a href="/app/portfolio" { "Portfolio" }
                            a href="/app/adoption" { "Adoption" }
                            a href="/app/registry" { "Registry" }
                            a href="/app/quality" { "Data quality" }
                        }
                    }
                    @if let Some(w) = who {
                        div class="who" {
                            span { "Tenant " strong { (w.grant.tenant.as_str()) } " · key " code { (w.grant.key_id) } " · "
                                (if w.is_admin() { "admin" } else { "read only" }) }
                            form method="post" action="/app/sign-out" {
                                input type="hidden" name="csrf" value=(w.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" { (body) }
            }
        }
    }
}

pub fn sign_in(error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            p { "Paste an API key with the " strong { "read" } " scope (or " strong { "admin" }
                ", to manage the registry). The key is checked once and never stored in your browser: "
                "the session cookie holds only its hash, signed by the server." }
            @if let Some(e) = error { p class="error" role="alert" id="sign-in-error" { (e) } }
            form method="post" action="/app/sign-in" class="sign-in" {
                label for="key" { "API key" }
                input id="key" name="key" type="password" autocomplete="off" required
                    aria-describedby=[error.map(|_| "sign-in-error")];
                button type="submit" { "Sign in" }
            }
        },
    )
}

pub fn problem(who: &Signed, status: u16, message: &str) -> Markup {
    layout(
        "Problem",
        Some(who),
        html! {
            h1 { "That did not work" }
            p class="error" role="alert" data-status=(status) { (message) }
            p { a href="/app/portfolio" { "Back to the portfolio" } }
        },
    )
}

/// Filters of the portfolio page, from its query string (unknown values dropped).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PortfolioFilters {
    pub band: Option<String>,
    pub segment: Option<String>,
    /// The owner's e-mail.
    pub owner: Option<String>,
    /// Only accounts whose band changed in the last 7 days.
    pub changed_this_week: bool,
    pub cursor: Option<String>,
}

impl PortfolioFilters {
    pub fn from_query(q: &str) -> Self {
        let mut f = Self::default();
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            match k.as_ref() {
                "band" if BANDS.iter().any(|(b, _)| *b == v) => f.band = Some(v.into_owned()),
                "segment" if SEGMENTS.iter().any(|(s, _)| *s == v) => {
                    f.segment = Some(v.into_owned())
                }
                "owner" if !v.trim().is_empty() && v.chars().count() <= 254 => {
                    f.owner = Some(v.trim().to_owned())
                }
                "changed" if v == "week" => f.changed_this_week = true,
                "cursor" if !v.is_empty() && v.len() < 2048 => f.cursor = Some(v.into_owned()),
                _ => {}
            }
        }
        f
    }

    fn link(&self, cursor: Option<&str>) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if let Some(b) = &self.band {
            s.append_pair("band", b);
        }
        if let Some(x) = &self.segment {
            s.append_pair("segment", x);
        }
        if let Some(o) = &self.owner {
            s.append_pair("owner", o);
        }
        if self.changed_this_week {
            s.append_pair("changed", "week");
        }
        if let Some(c) = cursor {
            s.append_pair("cursor", c);
        }
        format!("/app/portfolio?{}", s.finish())
    }
}

/// Band counts per segment of the latest daily summary, each count a link to the
/// accounts it counts, and a chart of the counts over the summarised days (of the
/// filtered segment, else of all): `GET /v1/health/bands`.
pub fn band_summary(f: &PortfolioFilters, bands: &Answer) -> Markup {
    const KINDS: [(&str, &str); 4] = [
        ("red", "At risk"),
        ("yellow", "Watch"),
        ("green", "Healthy"),
        ("insufficient", "Not enough data"),
    ];
    if !bands.ok() {
        return html! { p class="error" role="alert" { "Band counts: " (bands.message()) } };
    }
    let latest = &bands.body["latest"];
    let Some(as_of) = latest["as_of"].as_str() else {
        return html! { p class="empty" { "Band counts per segment appear after the first daily score run." } };
    };
    let segments = &latest["segments"];
    let count = |seg: &Value, kind: &str| seg[kind].as_u64().unwrap_or(0);
    let present: Vec<(&str, &str)> = SEGMENTS
        .iter()
        .copied()
        .filter(|(k, _)| segments.get(*k).is_some())
        .collect();
    let total = |kind: &str| -> u64 {
        present
            .iter()
            .map(|(k, _)| count(&segments[*k], kind))
            .fold(0u64, u64::saturating_add)
    };
    let link = |segment: Option<&str>, band: &str| {
        PortfolioFilters {
            band: Some(band.to_owned()),
            segment: segment.map(str::to_owned),
            ..PortfolioFilters::default()
        }
        .link(None)
    };
    let days = bands.body["days"].as_array().cloned().unwrap_or_default();
    let shown = f.segment.as_deref();
    let labels: Vec<String> = days
        .iter()
        .map(|d| d["as_of"].as_str().unwrap_or_default().to_owned())
        .collect();
    let series: Vec<chart::Line> = BANDS
        .iter()
        .map(|(b, word)| chart::Line {
            class: match *b {
                "red" => "band-red",
                "yellow" => "band-yellow",
                _ => "band-green",
            },
            name: (*word).to_owned(),
            values: days
                .iter()
                .map(|d| {
                    let segs = d["segments"].as_object();
                    segs.into_iter()
                        .flatten()
                        .filter(|(k, _)| shown.is_none_or(|s| s == k.as_str()))
                        .map(|(_, c)| count(c, b))
                        .fold(0u64, u64::saturating_add) as f64
                })
                .collect(),
        })
        .collect();
    let whose = shown.map_or_else(|| "all segments".to_owned(), segment_word);
    html! {
        section class="band-summary" aria-labelledby="bands-heading" {
            h2 id="bands-heading" class="sr" { "Band counts per segment" }
            table class="bands" data-as-of=(as_of) {
                caption { "Accounts by band per segment, daily score run of " (as_of) }
                thead { tr {
                    th scope="col" { "Segment" }
                    @for (_, w) in KINDS { th scope="col" class="num" { (w) } }
                    th scope="col" class="num" { "Total" }
                } }
                tbody {
                    @for (k, w) in &present {
                        @let seg = &segments[*k];
                        tr data-segment=(k) {
                            th scope="row" { (w) }
                            @for (kind, _) in KINDS {
                                td class="num" data-band=(kind) data-count=(count(seg, kind)) {
                                    @if kind == "insufficient" { (count(seg, kind)) }
                                    @else { a href=(link(Some(k), kind)) { (count(seg, kind)) } }
                                }
                            }
                            td class="num" { (KINDS.iter().map(|(kind, _)| count(seg, kind)).fold(0u64, u64::saturating_add)) }
                        }
                    }
                    tr data-segment="all" {
                        th scope="row" { "All segments" }
                        @for (kind, _) in KINDS { td class="num" data-band=(kind) data-count=(total(kind)) { (total(kind)) } }
                        td class="num" { (KINDS.iter().map(|(kind, _)| total(kind)).fold(0u64, u64::saturating_add)) }
                    }
                }
            }
            figure {
                (chart::lines("band-chart", &format!("Accounts per band, {whose}, last {} days", domain::health::bands::BAND_CHART_DAYS), &labels, &series))
                figcaption { "Accounts per band (" (whose) ") on each of the " (labels.len()) " scored days since " (bands.body["from"].as_str().unwrap_or_default()) "." }
            }
        }
    }
}

/// The 7-day score change as an arrow with its number (a word for screen readers).
fn trend(change: Option<f64>) -> Markup {
    match change {
        None => html! { span class="trend-none" { "—" } },
        Some(c) => {
            let (arrow, word, class) = if c >= 0.5 {
                ("\u{2191}", "up", "up")
            } else if c <= -0.5 {
                ("\u{2193}", "down", "down")
            } else {
                ("\u{2192}", "steady", "flat")
            };
            html! {
                span class=(format!("trend-{class}")) data-change=(format!("{c:.1}")) {
                    span aria-hidden="true" { (arrow) } " " span class="sr" { (word) " " } (signed_points(c))
                }
            }
        }
    }
}

pub fn portfolio(who: &Signed, f: &PortfolioFilters, a: &Answer, bands: &Answer) -> Markup {
    let today = chrono::Utc::now().date_naive();
    let rows = a.body["accounts"].as_array().cloned().unwrap_or_default();
    let next = a.body["next_cursor"].as_str();
    layout(
        "Portfolio",
        Some(who),
        html! {
            h1 { "Portfolio: accounts by risk" }
            form method="get" action="/app/portfolio" class="filters" aria-label="Filters" {
                label for="band" { "Band" }
                select id="band" name="band" {
                    option value="" { "All bands" }
                    @for (b, w) in BANDS { option value=(b) selected[f.band.as_deref() == Some(b)] { (w) " (" (b) ")" } }
                }
                label for="segment" { "Segment" }
                select id="segment" name="segment" {
                    option value="" { "All segments" }
                    @for (s, w) in SEGMENTS { option value=(s) selected[f.segment.as_deref() == Some(s)] { (w) } }
                }
                label for="owner" { "Owner" }
                input id="owner" name="owner" type="email" value=[f.owner.as_deref()] placeholder="csm@example.com" size="22";
                input id="changed" name="changed" type="checkbox" value="week" checked[f.changed_this_week];
                label for="changed" { "Changed band this week" }
                button type="submit" { "Apply" }
            }
            (band_summary(f, bands))
            @if !a.ok() {
                p class="error" role="alert" { (a.message()) }
            } @else if rows.is_empty() {
                p class="empty" { "No scored accounts match. Scores appear after the daily score run (locally: "
                    code { "POST /local/jobs/score" } ")." }
            } @else {
                table class="portfolio" {
                    caption { "Riskiest first; " (rows.len()) " accounts on this page." }
                    thead { tr {
                        th scope="col" { "Account" } th scope="col" class="num" { "Score" } th scope="col" { "7-day trend" } th scope="col" { "Band" }
                        th scope="col" { "Top reason" } th scope="col" { "Segment" } th scope="col" { "Owner" } th scope="col" class="num" { "Renews in" } th scope="col" { "Scored on" }
                    } }
                    tbody {
                        @for r in &rows {
                            @let id = r["account"].as_str().unwrap_or_default();
                            @let reasons: Vec<String> = r["reasons"].as_array().into_iter().flatten().filter_map(|x| x.as_str().map(str::to_owned)).collect();
                            tr data-account=(id) {
                                td { a href=(format!("/app/accounts/{id}")) { (r["name"].as_str().unwrap_or(id)) } br; small { (id) } }
                                td class="num" { (format!("{:.1}", r["score"].as_f64().unwrap_or(0.0))) }
                                td class="trend" { (trend(r["change_7d"].as_f64())) }
                                td { (band_badge(r["band"].as_str().unwrap_or_default()))
                                    @if let Some(d) = r["band_changed_on"].as_str() { br; small data-band-changed=(d) { "since " (d) } } }
                                td { (view::top_reason(&reasons)) }
                                td { (segment_word(r["segment"].as_str().unwrap_or_default())) }
                                td { (r["owner"].as_str().unwrap_or("—")) }
                                @let renews = view::days_to(r["renewal_date"].as_str(), today);
                                td class="num" data-renewal=[r["renewal_date"].as_str()] title=[r["renewal_date"].as_str()] {
                                    @match renews { Some(d) if d < 0 => { (-d) " days ago" } Some(d) => { (d) " days" } None => { "—" } }
                                }
                                td { (r["as_of"].as_str().unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
            nav class="pages" aria-label="Pages" {
                @if f.cursor.is_some() { a href=(f.link(None)) { "First page" } }
                @if let Some(n) = next { a href=(f.link(Some(n))) rel="next" { "Next " (crate::PAGE_ROWS) " accounts" } }
            }
        },
    )
}

/// The API answers an account page is made of.
pub struct AccountPage<'a> {
    pub account: &'a str,
    pub granularity: &'a str,
    pub profile: &'a Answer,
    pub health: &'a Answer,
    pub history: &'a Answer,
    pub usage: &'a Answer,
    pub by_meter: &'a Answer,
    pub entitlements: &'a Answer,
    /// `GET /v1/health/config` (the resolved milestones of the account's segment).
    pub config: &'a Answer,
    /// `GET /v1/accounts/{account}/alerts` (the newest ones).
    pub alerts: &'a Answer,
}

fn signed_points(v: f64) -> String {
    // Rounded first, so a change too small to show prints "+0.0", not "−0.0".
    let v = (v * 10.0).round() / 10.0 + 0.0;
    if v >= 0.0 {
        format!("+{v:.1}")
    } else {
        format!("\u{2212}{:.1}", -v)
    }
}

pub fn account(who: &Signed, p: &AccountPage) -> Markup {
    let prof = &p.profile.body;
    let name = prof["name"].as_str().unwrap_or(p.account);
    let h = &p.health.body;
    layout(
        name,
        Some(who),
        html! {
            p { a href="/app/portfolio" { "← Portfolio" } }
            h1 { (name) " " small { (p.account) } }
            p class="facts" {
                "Segment " strong { (segment_word(prof["segment"].as_str().unwrap_or_default())) }
                " · owner " strong { (prof["owner_email"].as_str().unwrap_or("none")) }
                @if let Some(d) = prof["onboarding_date"].as_str() { " · onboarded " strong { (d) } }
                @if let Some(d) = prof["crm_properties"]["renewal_date"]["value"].as_str().or(prof["renewal_date"].as_str()) {
                    " · renews " strong id="renewal" { (d) }
                }
                @if let Some(c) = prof["crm_ids"]["hubspot_company_id"].as_str() {
                    " · HubSpot company "
                    @if let Some(url) = view::crm_link(prof) { a href=(url) id="crm-link" rel="noopener" { (c) } }
                    @else { strong { (c) } }
                }
            }
            section aria-labelledby="health-h" {
                h2 id="health-h" { "Health" }
                @if p.health.ok() && h["score"].is_number() {
                    p class="score" {
                        span class="big" id="score" { (format!("{:.1}", h["score"].as_f64().unwrap_or(0.0))) }
                        " / 100 " (band_badge(h["band"].as_str().unwrap_or_default()))
                        " scored on " (h["as_of"].as_str().unwrap_or_default())
                    }
                    h3 { "Why" }
                    ol class="reasons" id="reasons" {
                        @for r in h["reasons"].as_array().into_iter().flatten() {
                            li {
                                strong { (view::reason_words(r["code"].as_str().unwrap_or_default())) }
                                " (" (signed_points(r["impact"].as_f64().unwrap_or(0.0))) " points): "
                                (r["detail"].as_str().unwrap_or_default())
                            }
                        }
                    }
                    h3 { "Components against the segment median (50)" }
                    table class="components" {
                        thead { tr { th scope="col" { "Component" } th scope="col" class="num" { "Score" } th scope="col" class="num" { "vs median" } th scope="col" class="num" { "Weight" } th scope="col" { "Measured" } } }
                        tbody {
                            @for (c, v) in h["components"].as_object().into_iter().flatten() {
                                @let s = v["score"].as_f64().unwrap_or(0.0);
                                tr {
                                    th scope="row" { (view::humanize(c)) }
                                    td class="num" { (format!("{s:.1}")) }
                                    td class="num" { (signed_points(s - 50.0)) }
                                    td class="num" { (format!("{:.0} %", v["weight"].as_f64().unwrap_or(0.0) * 100.0)) }
                                    td { ul class="metrics" {
                                        @for (m, mv) in v["metrics"].as_object().into_iter().flatten() {
                                            li { (view::humanize(m)) " " (chart::compact(mv["value"].as_f64().unwrap_or(0.0)))
                                                " (segment median " (chart::compact(mv["segment_median"].as_f64().unwrap_or(0.0))) ")" }
                                        }
                                    } }
                                }
                            }
                        }
                    }
                } @else if p.health.ok() {
                    p class="empty" { "Not enough data to score: " (h["insufficient_reason"].as_str().unwrap_or("unknown")) }
                } @else {
                    p class="empty" { (p.health.message()) }
                }
                h3 { "Milestones" }
                @let onboarded = prof["onboarding_date"].as_str().and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
                @let ms = view::milestone_rows(&p.config.body, prof["segment"].as_str().unwrap_or_default(), onboarded, &h["milestones_reached"], chrono::Utc::now().date_naive());
                @if ms.is_empty() { p class="empty" { "No milestones for this segment." } }
                @else {
                    table class="milestones" id="milestones" {
                        thead { tr { th scope="col" { "Milestone" } th scope="col" { "Meter" } th scope="col" class="num" { "Due (days)" } th scope="col" { "Status" } } }
                        tbody {
                            @for m in &ms {
                                tr data-milestone=(m.name) {
                                    th scope="row" { (m.name) }
                                    td { (m.meter) }
                                    td class="num" { (m.due_days) }
                                    @match &m.state {
                                        view::MilestoneState::Reached { on, days } => { td data-state="reached" { "Reached on " (on) " (day " (days) ")" } }
                                        view::MilestoneState::Overdue { days_behind } => { td data-state="overdue" class="error" { "Overdue by " (days_behind) " days" } }
                                        view::MilestoneState::Due { in_days } => { td data-state="due" { "Due in " (in_days) " days" } }
                                        view::MilestoneState::Pending => { td data-state="pending" { "Not reached (no onboarding date)" } }
                                    }
                                }
                            }
                        }
                    }
                }
                h3 { "Score history" }
                (history(&p.history.body))
            }
            section aria-labelledby="usage-h" {
                h2 id="usage-h" { "Usage by meter" }
                nav class="switch" aria-label="Granularity" {
                    @for (g, w) in [("hour", "Hourly (72 h)"), ("day", "Daily (90 days)"), ("month", "Monthly (12 months)")] {
                        a href=(format!("/app/accounts/{}?granularity={g}", p.account)) id=(format!("g-{g}"))
                            aria-current=[(p.granularity == g).then_some("page")] { (w) }
                    }
                }
                @if !p.by_meter.ok() || !p.usage.ok() {
                    p class="error" { (p.by_meter.message()) }
                } @else {
                    @let meters = view::usage_by_meter(&p.usage.body, &p.by_meter.body, p.granularity);
                    @if meters.is_empty() { p class="empty" { "No usage in this window." } }
                    @let stages = view::usage_by_stage(&p.by_meter.body);
                    @if !stages.is_empty() {
                        table class="stages" id="stages" {
                            caption { "Totals in this window by meter and stage" }
                            thead { tr { th scope="col" { "Meter" }
                                @for s in domain::ids::Stage::ALL { th scope="col" class="num" { (view::humanize(s.as_str())) } } } }
                            tbody {
                                @for (m, totals) in &stages {
                                    tr data-meter=(m) {
                                        th scope="row" { (m) }
                                        @for (s, t) in domain::ids::Stage::ALL.iter().zip(totals) {
                                            td class="num" data-stage=(s.as_str()) data-total=(t) { (chart::compact(*t)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    div class="charts" {
                        @for (i, (m, pts)) in meters.iter().enumerate() {
                            figure {
                                figcaption { (m) }
                                (chart::bars(&format!("usage-{i}"), &format!("{m} by {}", p.granularity), pts))
                            }
                        }
                    }
                }
            }
            section aria-labelledby="ent-h" {
                h2 id="ent-h" { "Entitlements" }
                @let rows = view::entitlement_rows(&p.entitlements.body);
                @if !p.entitlements.ok() { p class="error" { (p.entitlements.message()) } }
                @else if rows.is_empty() { p class="empty" { "No entitlements." } }
                @else {
                    table class="entitlements" {
                        thead { tr { th scope="col" { "Entitlement" } th scope="col" { "Meters" } th scope="col" { "Used / limit" } th scope="col" { "Period" } } }
                        tbody {
                            @for e in &rows {
                                tr data-entitlement=(e.id) {
                                    th scope="row" { (e.id) }
                                    td { (e.meters) }
                                    td {
                                        @if let Some(n) = &e.note { (n) } @else {
                                            @let projected = if e.limit > 0.0 { Some(e.projected / e.limit * 100.0) } else { None };
                                            (chart::usage_bar(&format!("{} of {} used ({:.2} %)", chart::compact(e.used), chart::compact(e.limit), e.percent), e.percent, projected))
                                            br;
                                            span class="meter-text" { (chart::compact(e.used)) " of " (chart::compact(e.limit)) " (" (format!("{:.2}", e.percent)) " %); projected "
                                                (chart::compact(e.projected)) " by the end of the period" }
                                        }
                                    }
                                    td { (e.period) }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="alerts-h" {
                h2 id="alerts-h" { "Recent alerts" }
                (recent_alerts(p.alerts))
            }
        },
    )
}

/// The account's recent alerts: when, how severe (in words), what crossed what, and
/// what to do next.
fn recent_alerts(a: &Answer) -> Markup {
    let alerts = a.body["alerts"].as_array().cloned().unwrap_or_default();
    html! {
        @if !a.ok() { p class="error" { (a.message()) } }
        @else if alerts.is_empty() {
            p class="empty" id="no-alerts" { "No alerts in the last " (a.body["retention_days"].as_i64().unwrap_or(90)) " days." }
        } @else {
            ol class="alerts" id="alerts" {
                @for x in &alerts {
                    @let severity = x["alert"]["severity"].as_str().unwrap_or_default();
                    li data-alert=(x["alert"]["key"].as_str().unwrap_or_default()) data-kind=(x["alert"]["kind"].as_str().unwrap_or_default()) {
                        span class=(format!("severity severity-{severity}")) { (view::humanize(severity)) }
                        " " time datetime=(x["alert"]["raised_at"].as_str().unwrap_or_default()) { (x["alert"]["raised_at"].as_str().unwrap_or_default().get(..16).unwrap_or_default().replace('T', " ")) " UTC" }
                        p class="what" { (x["subject"].as_str().unwrap_or_default()) }
                        p class="next" { strong { "Next step: " } (x["next_step"].as_str().unwrap_or_default()) }
                    }
                }
            }
        }
    }
}

fn history(body: &Value) -> Markup {
    let pts: Vec<Point> = body["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| {
            Some(Point {
                label: d["as_of"].as_str()?.to_owned(),
                value: d["score"].as_f64()?,
            })
        })
        .collect();
    html! {
        @if pts.len() >= 2 {
            (chart::score_line("history", "Score over the last 90 days", &pts, &[]))
        } @else {
            p class="empty" id="history-missing" {
                "Stored score history: " (pts.len()) " day(s) in the last 90. A chart needs two scored days; "
                "the score run stores one record per account per day."
            }
        }
    }
}

pub fn registry(who: &Signed, a: &Answer) -> Markup {
    let defs = a.body["definitions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    layout(
        "Registry",
        Some(who),
        html! {
            h1 { "Event registry" }
            @if who.is_admin() { p { a href="/app/registry/new" id="new-definition" { "New definition" } } }
            @else { p { "You are signed in with a read key: you can look, not change." } }
            p { "Open a meter for its change log (who, when, before → after)" (if who.is_admin() { " and its edit form" } else { "" }) "." }
            @if !a.ok() { p class="error" role="alert" { (a.message()) } }
            table class="registry" {
                thead { tr { th scope="col" { "Meter" } th scope="col" { "Status" } th scope="col" { "Owner" } th scope="col" { "Criticality" } th scope="col" { "Aliases" }
                    @if who.is_admin() { th scope="col" { "Action" } } } }
                tbody {
                    @for d in &defs {
                        @let m = d["meter"].as_str().unwrap_or_default();
                        @let status = d["status"].as_str().unwrap_or_default();
                        tr data-meter=(m) data-status=(status) {
                            th scope="row" { a href=(format!("/app/definitions/{m}")) { (m) } }
                            td { (status) }
                            td { (d["owner"].as_str().unwrap_or("—")) }
                            td { (d["criticality"].as_str().unwrap_or_default()) }
                            td { (d["aliases"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                            @if who.is_admin() {
                                td {
                                    @let verb = if status == "deleted" { "restore" } else { "delete" };
                                    form method="post" action=(format!("/app/definitions/{m}/{verb}")) {
                                        input type="hidden" name="csrf" value=(who.csrf);
                                        button type="submit" aria-label=(format!("{} {m}", view::humanize(verb))) { (view::humanize(verb)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_score_change_too_small_to_show_prints_as_plus_zero() {
        assert_eq!(signed_points(-0.04), "+0.0");
        assert_eq!(signed_points(-0.06), "\u{2212}0.1");
        assert_eq!(signed_points(3.25), "+3.3");
    }

    #[test]
    fn portfolio_filters_keep_only_known_values() {
        let f = PortfolioFilters::from_query("band=red&segment=smb&cursor=abc&x=1");
        assert_eq!(f.band.as_deref(), Some("red"));
        assert_eq!(f.segment.as_deref(), Some("smb"));
        assert_eq!(
            f.link(Some("n x")),
            "/app/portfolio?band=red&segment=smb&cursor=n+x"
        );
        let bad = PortfolioFilters::from_query("band=purple&segment=%3Cscript%3E&changed=year");
        assert_eq!(bad, PortfolioFilters::default());
        let mine = PortfolioFilters::from_query("owner=+csm%40example.com&changed=week");
        assert_eq!(mine.owner.as_deref(), Some("csm@example.com"));
        assert!(mine.changed_this_week);
        assert_eq!(
            mine.link(None),
            "/app/portfolio?owner=csm%40example.com&changed=week"
        );
    }

    #[test]
    fn a_trend_reads_as_an_arrow_a_word_and_its_points() {
        let down = trend(Some(-12.34)).into_string();
        assert!(
            down.contains("trend-down") && down.contains("down") && down.contains("\u{2212}12.3"),
            "{down}"
        );
        assert!(trend(Some(0.2)).into_string().contains("steady"));
        assert!(trend(Some(3.0)).into_string().contains("+3.0"));
        assert!(trend(None).into_string().contains("trend-none"));
    }

    #[test]
    fn a_band_is_shown_as_a_word_as_well_as_a_colour() {
        let b = band_badge("red").into_string();
        assert!(b.contains("band-red") && b.contains("At risk"), "{b}");
    }

    #[test]
    fn the_sign_in_page_labels_its_field_and_escapes_the_error() {
        let p = sign_in(Some("<img src=x>")).into_string();
        assert!(p.contains("<label for=\"key\">"));
        assert!(!p.contains("<img src=x>"), "{p}");
    }
}
