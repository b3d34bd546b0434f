//! The CS cockpit (`/app`): server-rendered HTML for CSMs, behind the same HTTP API.
//!
//! Every number on a page comes from the API's own JSON response, obtained by calling
//! the API in-process on behalf of the signed-in key ([`api::Api::handle_as`]): the
//! page and `curl` always agree, and the API's scope check is the one that refuses a
//! read key's attempt to change anything. See docs/adr/0012-cs-cockpit-web-app.md.

pub mod adoption;
pub mod chart;
pub mod pages;
pub mod quality;
pub mod registry;
pub mod session;
pub mod view;

use domain::auth::{hash_key, KeyGrant, KeyScope};
use domain::ports::Directory;
use lambda_http::http::{header, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::Value;
use session::{Session, SessionKeys, SessionSecret};
use std::sync::Arc;

/// Accounts per portfolio page.
pub const PAGE_ROWS: usize = 50;
/// Recent alerts on an account page.
pub const ALERTS_SHOWN: usize = 10;
/// Largest form body accepted (a sign-in or an admin action).
pub const MAX_FORM_BYTES: usize = 4096;

pub struct Web {
    pub api: Arc<api::Api>,
    pub directory: Arc<dyn Directory>,
    pub sessions: SessionSecret,
    /// `Secure` cookies (everywhere but the plain-HTTP local runner).
    pub secure_cookies: bool,
}

/// Who is signed in, for one request.
pub struct Signed {
    pub session: Session,
    pub grant: KeyGrant,
    pub csrf: String,
}

impl Signed {
    pub fn is_admin(&self) -> bool {
        self.grant.allows(KeyScope::Admin)
    }
}

/// The API's answer to an in-process call: status and JSON body.
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// The API's error message, for a page to show.
    pub fn message(&self) -> String {
        self.body["error"]["message"]
            .as_str()
            .unwrap_or("the API refused the request")
            .to_owned()
    }
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

impl Web {
    pub fn new(
        api: Arc<api::Api>,
        directory: Arc<dyn Directory>,
        sessions: impl Into<SessionSecret>,
    ) -> Self {
        Self {
            api,
            directory,
            sessions: sessions.into(),
            secure_cookies: true,
        }
    }

    /// The session keys for this request; `None` (logged) when the secret cannot be
    /// read, so nobody is signed in and sign-in answers 503.
    async fn keys(&self) -> Option<SessionKeys> {
        match self.sessions.keys().await {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::error!(error = %e, code = e.code(), "session secret unavailable");
                None
            }
        }
    }

    /// The Lambda entry point: never fails; every problem is a page.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let started = std::time::Instant::now();
        let method = req.method().as_str().to_owned();
        let path = req.uri().path().trim_end_matches('/').to_owned();
        let gzip = accepts_gzip(&req);
        let resp = self.route(&method, &path, req).await;
        let resp = if gzip { compress(resp) } else { resp };
        tracing::info!(method = %method, path = %path, status = resp.status().as_u16(), ms = started.elapsed().as_millis() as u64, "web request");
        resp
    }

    async fn route(&self, method: &str, path: &str, req: Request) -> Response<Body> {
        if method == "POST" && cross_origin(&req) {
            // A form posted from another site (sign-in included: SameSite and the CSRF
            // token do not cover a forced sign-in to someone else's tenant).
            tracing::warn!(path = %path, "cross-origin form refused");
            return html(
                403,
                pages::sign_in(Some("Forms are accepted from this site only.")),
            );
        }
        match (method, path) {
            ("GET", "/app/static/app.css") => asset(pages::CSS, "text/css; charset=utf-8"),
            ("GET", "/app/sign-in") => html(200, pages::sign_in(None)),
            ("POST", "/app/sign-in") => self.sign_in(&req).await,
            _ => {
                let Some(who) = self.signed(&req).await else {
                    return if method == "GET" {
                        redirect("/app/sign-in")
                    } else {
                        html(
                            401,
                            pages::sign_in(Some("Your session has ended; sign in again.")),
                        )
                    };
                };
                if method == "POST" {
                    return self.action(&who, path, &req).await;
                }
                if method != "GET" {
                    return html(
                        405,
                        pages::problem(&who, 405, "Use the page's links and buttons."),
                    );
                }
                let query = req.uri().query().unwrap_or_default().to_owned();
                match path {
                    "/app" => redirect("/app/portfolio"),
                    "/app/portfolio" => self.portfolio(&who, &query).await,
                    "/app/registry" => self.registry(&who).await,
                    "/app/registry/new" if who.is_admin() => html(
                        200,
                        registry::new_page(&who, &registry::DefinitionForm::blank(), None),
                    ),
                    "/app/registry/new" => html(
                        403,
                        pages::problem(&who, 403, "Creating a definition needs an admin key."),
                    ),
                    "/app/adoption" => self.adoption(&who, &query).await,
                    "/app/quality" => self.quality(&who, &query).await,
                    _ => match (
                        path.strip_prefix("/app/accounts/"),
                        path.strip_prefix("/app/definitions/"),
                    ) {
                        (Some(account), _) if !account.contains('/') => {
                            self.account(&who, account, &query).await
                        }
                        (_, Some(meter)) if !meter.contains('/') => {
                            self.definition(&who, meter, None).await
                        }
                        _ => html(404, pages::problem(&who, 404, "There is no such page.")),
                    },
                }
            }
        }
    }

    /// The signed-in key of a request, looked up again by its hash: a revoked or
    /// expired key (or one that lost its read scope) has no session any more.
    async fn signed(&self, req: &Request) -> Option<Signed> {
        let cookie = req.headers().get(header::COOKIE)?.to_str().ok()?;
        let value = session::cookie_value(cookie, session::COOKIE)?;
        let now = chrono::Utc::now();
        let keys = self.keys().await?;
        let session = keys.open(value, now.timestamp())?;
        let grant = match self.directory.key_grant(&session.h).await {
            Ok(g) => g?,
            Err(e) => {
                tracing::error!(error = %e, "key lookup failed");
                return None;
            }
        };
        if grant.tenant.as_str() != session.t || grant.check(KeyScope::Read, now).is_err() {
            return None;
        }
        let csrf = keys.csrf(&session);
        Some(Signed {
            session,
            grant,
            csrf,
        })
    }

    async fn sign_in(&self, req: &Request) -> Response<Body> {
        let form = form(req);
        let key = form
            .iter()
            .find(|(k, _)| k == "key")
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default();
        let refuse = |msg: &str| html(401, pages::sign_in(Some(msg)));
        if key.is_empty() || key.len() > 256 {
            return refuse("Paste a read (or admin) API key.");
        }
        let hash = hash_key(&key);
        let now = chrono::Utc::now();
        let grant = match self.directory.key_grant(&hash).await {
            Ok(Some(g)) => g,
            Ok(None) => return refuse("That key is not valid."),
            Err(e) => {
                tracing::error!(error = %e, "key lookup failed");
                return html(
                    503,
                    pages::sign_in(Some("The key store did not answer; try again.")),
                );
            }
        };
        if let Err(r) = grant.check(KeyScope::Read, now) {
            tracing::info!(key_id = %grant.key_id, refusal = ?r, "sign-in refused");
            return refuse(match r {
                domain::auth::KeyRefusal::Revoked => "That key has been revoked.",
                domain::auth::KeyRefusal::Expired => "That key has expired.",
                domain::auth::KeyRefusal::Scope(_) => {
                    "That key cannot read: sign in with a read or admin key."
                }
            });
        }
        let Some(keys) = self.keys().await else {
            return html(
                503,
                pages::sign_in(Some("Sessions cannot be started right now; try again.")),
            );
        };
        let session = match keys.start(grant.tenant.as_str(), &hash, now.timestamp()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "no randomness for a session");
                return html(
                    503,
                    pages::sign_in(Some("Could not start a session; try again.")),
                );
            }
        };
        tracing::info!(tenant = %grant.tenant, key_id = %grant.key_id, admin = grant.allows(KeyScope::Admin), "signed in");
        let mut resp = redirect("/app/portfolio");
        if let Ok(v) = session::set_cookie(&keys.seal(&session), self.secure_cookies).parse() {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
        resp
    }

    /// A form POST of a signed-in user: CSRF first, then the API decides (with the
    /// user's own key, so a read key is refused by the API's scope check).
    async fn action(&self, who: &Signed, path: &str, req: &Request) -> Response<Body> {
        let form = form(req);
        let token = form
            .iter()
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        let keys = self.keys().await;
        if !keys.is_some_and(|k| k.csrf_ok(&who.session, token)) {
            tracing::warn!(tenant = %who.grant.tenant, path = %path, "CSRF token missing or wrong");
            return html(
                403,
                pages::problem(
                    who,
                    403,
                    "This form has expired; reload the page and try again.",
                ),
            );
        }
        if path == "/app/sign-out" {
            let mut resp = redirect("/app/sign-in");
            if let Ok(v) = session::clear_cookie(self.secure_cookies).parse() {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            return resp;
        }
        if path == "/app/definitions" {
            return self.create_definition(who, &form).await;
        }
        if let Some(meter) = path.strip_prefix("/app/quality/replay/") {
            return self.replay(who, meter).await;
        }
        if let Some(meter) = path
            .strip_prefix("/app/definitions/")
            .and_then(|rest| rest.strip_suffix("/edit"))
        {
            return self.edit_definition(who, meter, &form).await;
        }
        let call = path.strip_prefix("/app/definitions/").and_then(|rest| {
            let (meter, verb) = rest.split_once('/')?;
            let meter = domain::ids::MeterName::parse(meter).ok()?;
            match verb {
                "delete" => Some(("DELETE", format!("/v1/definitions/{meter}"))),
                "restore" => Some(("POST", format!("/v1/definitions/{meter}/restore"))),
                _ => None,
            }
        });
        let Some((method, api_path)) = call else {
            return html(404, pages::problem(who, 404, "There is no such action."));
        };
        let answer = self.call(who, method, &api_path).await;
        if answer.ok() {
            tracing::info!(tenant = %who.grant.tenant, key_id = %who.grant.key_id, api = %api_path, "admin action done");
            return redirect("/app/registry");
        }
        tracing::info!(tenant = %who.grant.tenant, key_id = %who.grant.key_id, api = %api_path, status = answer.status, code = %answer.code(), "action refused by the API");
        html(
            answer.status,
            pages::problem(who, answer.status, &answer.message()),
        )
    }

    /// Calls the API in-process as the signed-in key.
    pub async fn call(&self, who: &Signed, method: &str, path_and_query: &str) -> Answer {
        self.send(who, method, path_and_query, None).await
    }

    /// Calls the API in-process as the signed-in key, with a JSON body; the change log
    /// records the key (by its hash's prefix, as for a JSON client) as the actor.
    pub async fn send(
        &self,
        who: &Signed,
        method: &str,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Answer {
        let req = lambda_http::http::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(header::CONTENT_TYPE, "application/json")
            .extension(api::governance::Actor::of_key_hash(&who.session.h))
            .body(body.map_or(Body::Empty, |b| Body::Text(b.to_string())));
        let Ok(req) = req else {
            return Answer {
                status: 400,
                body: serde_json::json!({"error": {"code": "bad_request", "message": "bad request"}}),
            };
        };
        let resp = self.api.handle_as(&who.grant, req).await;
        let status = resp.status().as_u16();
        let body = match resp.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap_or(Value::Null),
            Body::Binary(b) => serde_json::from_slice(b).unwrap_or(Value::Null),
            _ => Value::Null,
        };
        Answer { status, body }
    }

    async fn portfolio(&self, who: &Signed, query: &str) -> Response<Body> {
        let filters = pages::PortfolioFilters::from_query(query);
        let mut api_q: Vec<(String, String)> = vec![
            ("sort".into(), "risk".into()),
            ("limit".into(), PAGE_ROWS.to_string()),
        ];
        if let Some(b) = &filters.band {
            api_q.push(("band".into(), b.clone()));
        }
        if let Some(s) = &filters.segment {
            api_q.push(("segment".into(), s.clone()));
        }
        if let Some(o) = &filters.owner {
            api_q.push(("owner".into(), o.clone()));
        }
        if filters.changed_this_week {
            api_q.push(("band_changed_within".into(), "7".into()));
        }
        if let Some(c) = &filters.cursor {
            api_q.push(("cursor".into(), c.clone()));
        }
        let path = format!("/v1/accounts?{}", encode(&api_q));
        let (answer, bands) = tokio::join!(
            self.call(who, "GET", &path),
            self.call(who, "GET", "/v1/health/bands")
        );
        html(
            if answer.ok() { 200 } else { answer.status },
            pages::portfolio(who, &filters, &answer, &bands),
        )
    }

    async fn account(&self, who: &Signed, account: &str, query: &str) -> Response<Body> {
        let Ok(account) = domain::ids::AccountId::parse(account) else {
            return html(404, pages::problem(who, 404, "There is no such account."));
        };
        let granularity = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "granularity")
            .map(|(_, v)| v.into_owned())
            .filter(|g| ["hour", "day", "month"].contains(&g.as_str()))
            .unwrap_or_else(|| "day".to_owned());
        let (from, to) = usage_window(&granularity, chrono::Utc::now());
        let window = encode(&[
            ("granularity".into(), granularity.clone()),
            ("from".into(), from),
            ("to".into(), to),
        ]);
        let a = account.as_str();
        let paths = [
            format!("/v1/accounts/{a}"),
            format!("/v1/accounts/{a}/health"),
            format!("/v1/accounts/{a}/health/history"),
            format!("/v1/accounts/{a}/usage?{window}"),
            format!("/v1/accounts/{a}/usage?{window}&group_by=meter,stage"),
            format!("/v1/accounts/{a}/entitlements"),
            "/v1/health/config".to_owned(),
            format!("/v1/accounts/{a}/alerts?limit={ALERTS_SHOWN}"),
        ];
        let (profile, health, history, usage, by_meter, ents, config, alerts) = tokio::join!(
            self.call(who, "GET", &paths[0]),
            self.call(who, "GET", &paths[1]),
            self.call(who, "GET", &paths[2]),
            self.call(who, "GET", &paths[3]),
            self.call(who, "GET", &paths[4]),
            self.call(who, "GET", &paths[5]),
            self.call(who, "GET", &paths[6]),
            self.call(who, "GET", &paths[7]),
        );
        if profile.status == 404 {
            return html(404, pages::problem(who, 404, "There is no such account."));
        }
        let page = pages::AccountPage {
            account: a,
            granularity: &granularity,
            profile: &profile,
            health: &health,
            history: &history,
            usage: &usage,
            by_meter: &by_meter,
            entitlements: &ents,
            config: &config,
            alerts: &alerts,
        };
        html(200, pages::account(who, &page))
    }

    async fn adoption(&self, who: &Signed, query: &str) -> Response<Body> {
        let q = adoption::AdoptionQuery::from_query(query);
        let answer = self.call(who, "GET", &q.api_path()).await;
        html(
            if answer.ok() { 200 } else { answer.status },
            adoption::page(who, &q, &answer),
        )
    }

    async fn quality(&self, who: &Signed, query: &str) -> Response<Body> {
        let runs_path = format!("/v1/audits?limit={}", quality::TREND_RUNS);
        let (latest, runs) = tokio::join!(
            self.call(who, "GET", "/v1/audits/latest"),
            self.call(who, "GET", &runs_path),
        );
        let status = if latest.ok() || latest.status == 404 {
            200
        } else {
            latest.status
        };
        // What each definition of the audit holds now (the quarantine route's count).
        let meters: Vec<String> = latest.body["definitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["meter"].as_str())
            .filter_map(|m| domain::ids::MeterName::parse(m).ok())
            .map(|m| m.to_string())
            .collect();
        let counts = futures::future::join_all(meters.iter().map(|m| async move {
            let a = self
                .call(
                    who,
                    "GET",
                    &format!("/v1/definitions/{m}/quarantine?limit=1"),
                )
                .await;
            (m.clone(), a.body["held"].as_u64().filter(|_| a.ok()))
        }))
        .await;
        let held_now: quality::HeldNow = counts
            .into_iter()
            .filter_map(|(m, n)| Some((m, n?)))
            .collect();
        html(
            status,
            quality::page(
                who,
                &latest,
                &runs,
                &held_now,
                &quality::Notice::from_query(query),
            ),
        )
    }

    /// `POST /app/quality/replay/{meter}`: the API replays (an admin key's; a read
    /// key is refused by the API's scope check).
    async fn replay(&self, who: &Signed, meter: &str) -> Response<Body> {
        let Ok(meter) = domain::ids::MeterName::parse(meter) else {
            return html(
                404,
                pages::problem(who, 404, "There is no such definition."),
            );
        };
        let answer = self
            .call(
                who,
                "POST",
                &format!("/v1/definitions/{meter}/quarantine/replay"),
            )
            .await;
        if !answer.ok() {
            return refused_by_scope(who, &answer);
        }
        let replayed = answer.body["replayed"].as_u64().unwrap_or(0);
        let remaining = answer.body["remaining"].as_bool().unwrap_or(false);
        tracing::info!(tenant = %who.grant.tenant, key_id = %who.grant.key_id, meter = %meter, replayed, remaining, "held events replayed from the cockpit");
        redirect(&quality::Notice::link(meter.as_str(), replayed, remaining))
    }

    async fn registry(&self, who: &Signed) -> Response<Body> {
        let answer = self.call(who, "GET", "/v1/definitions?limit=200").await;
        html(
            if answer.ok() { 200 } else { answer.status },
            pages::registry(who, &answer),
        )
    }
}

impl Web {
    /// A definition's page: its edit form (admin; refilled as posted when the API
    /// refused it) and its change log.
    async fn definition(
        &self,
        who: &Signed,
        meter: &str,
        refused: Option<(&registry::DefinitionForm, &registry::Refusal, u16)>,
    ) -> Response<Body> {
        let Ok(meter) = domain::ids::MeterName::parse(meter) else {
            return html(
                404,
                pages::problem(who, 404, "There is no such definition."),
            );
        };
        let def_path = format!("/v1/definitions/{meter}");
        let changes_path = format!(
            "/v1/definitions/{meter}/changes?limit={}",
            registry::CHANGES_SHOWN
        );
        let (def, changes) = tokio::join!(
            self.call(who, "GET", &def_path),
            self.call(who, "GET", &changes_path),
        );
        if def.status == 404 {
            return html(
                404,
                pages::problem(who, 404, "There is no such definition."),
            );
        }
        let stored = registry::DefinitionForm::of_definition(&def.body);
        let (form, refusal, status) = match refused {
            Some((f, r, s)) => (f, Some(r), s),
            None => (&stored, None, if def.ok() { 200 } else { def.status }),
        };
        html(
            status,
            registry::definition_page(who, &def, &changes, form, refusal),
        )
    }

    /// `POST /app/definitions`: a new definition (refused if the meter exists, so a
    /// create never overwrites).
    async fn create_definition(&self, who: &Signed, pairs: &[(String, String)]) -> Response<Body> {
        let form = registry::DefinitionForm::from_pairs(pairs);
        let refuse = |answer: &Answer| {
            let r = registry::Refusal::of(answer);
            tracing::info!(tenant = %who.grant.tenant, key_id = %who.grant.key_id, code = %r.code, "definition create refused");
            html(answer.status, registry::new_page(who, &form, Some(&r)))
        };
        let meter = match domain::ids::MeterName::parse(&form.meter) {
            Ok(m) => m,
            // The API's own check of the name, with its words (the name is part of the
            // route, so it cannot be sent to be refused there).
            Err(e) => {
                return refuse(&Answer {
                    status: 400,
                    body: serde_json::json!({"error": {"code": "invalid_meter", "message": e.to_string()}}),
                })
            }
        };
        let path = format!("/v1/definitions/{meter}");
        let existing = self.call(who, "GET", &path).await;
        if existing.ok() {
            return refuse(&registry::meter_exists(meter.as_str()));
        }
        let answer = self.send(who, "PUT", &path, Some(&form.body(None))).await;
        if answer.status == 403 {
            return refused_by_scope(who, &answer);
        }
        if !answer.ok() {
            return refuse(&answer);
        }
        tracing::info!(tenant = %who.grant.tenant, key_id = %who.grant.key_id, meter = %meter, "definition created");
        redirect(&format!("/app/definitions/{meter}"))
    }

    /// `POST /app/definitions/{meter}/edit`: the stored definition with the form's
    /// fields, saved; a refusal shows the form as posted with the API's error.
    async fn edit_definition(
        &self,
        who: &Signed,
        meter: &str,
        pairs: &[(String, String)],
    ) -> Response<Body> {
        let Ok(meter) = domain::ids::MeterName::parse(meter) else {
            return html(
                404,
                pages::problem(who, 404, "There is no such definition."),
            );
        };
        let path = format!("/v1/definitions/{meter}");
        let existing = self.call(who, "GET", &path).await;
        if !existing.ok() {
            return html(
                existing.status,
                pages::problem(who, existing.status, &existing.message()),
            );
        }
        let mut form = registry::DefinitionForm::from_pairs(pairs);
        form.meter = meter.as_str().to_owned();
        let answer = self
            .send(who, "PUT", &path, Some(&form.body(Some(&existing.body))))
            .await;
        if answer.ok() {
            tracing::info!(tenant = %who.grant.tenant, key_id = %who.grant.key_id, meter = %meter, "definition edited");
            return redirect(&format!("/app/definitions/{meter}"));
        }
        if answer.status == 403 {
            return refused_by_scope(who, &answer);
        }
        let r = registry::Refusal::of(&answer);
        tracing::info!(tenant = %who.grant.tenant, key_id = %who.grant.key_id, meter = %meter, code = %r.code, "definition edit refused");
        self.definition(who, meter.as_str(), Some((&form, &r, answer.status)))
            .await
    }
}

/// The API's refusal, as a page of its own (a read key's scope has no form to show
/// it next to; a replay has no form field).
fn refused_by_scope(who: &Signed, answer: &Answer) -> Response<Body> {
    tracing::info!(tenant = %who.grant.tenant, key_id = %who.grant.key_id, code = %answer.code(), "action refused by the API");
    html(
        answer.status,
        pages::problem(who, answer.status, &answer.message()),
    )
}

/// The usage window shown for a granularity: 72 hours, 90 days or 12 months, ending
/// at the end of the current window.
pub fn usage_window(granularity: &str, now: chrono::DateTime<chrono::Utc>) -> (String, String) {
    use chrono::{Datelike, Duration, TimeZone, Timelike};
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let hour = now
        - Duration::seconds(i64::from(now.minute() * 60 + now.second()))
        - Duration::nanoseconds(i64::from(now.nanosecond()));
    let day = chrono::Utc.from_utc_datetime(&now.date_naive().and_time(chrono::NaiveTime::MIN));
    match granularity {
        "hour" => (
            fmt(hour - Duration::hours(71)),
            fmt(hour + Duration::hours(1)),
        ),
        "month" => {
            let (y, m) = (now.year(), now.month());
            let month_start = |y: i32, m: u32| {
                chrono::NaiveDate::from_ymd_opt(y, m, 1)
                    .map(|d| chrono::Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN)))
                    .unwrap_or(day)
            };
            let back = (y * 12 + m as i32 - 1) - 11;
            let next = y * 12 + m as i32;
            (
                fmt(month_start(back / 12, (back % 12) as u32 + 1)),
                fmt(month_start(next / 12, (next % 12) as u32 + 1)),
            )
        }
        _ => (fmt(day - Duration::days(89)), fmt(day + Duration::days(1))),
    }
}

/// Whether a request carries an `Origin` that is not its own host.
pub fn cross_origin(req: &Request) -> bool {
    let h = |name| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    match (h(header::ORIGIN), h(header::HOST)) {
        (Some(origin), Some(host)) => {
            origin.split_once("://").map(|(_, rest)| rest) != Some(host.as_str())
        }
        (Some(_), None) => true,
        _ => false,
    }
}

/// Whether the client takes gzip (`Accept-Encoding`).
fn accepts_gzip(req: &Request) -> bool {
    req.headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|e| e.split(';').next().map(str::trim) == Some("gzip"))
        })
}

/// Pages and the style sheet gzipped (API Gateway HTTP APIs do not compress); small
/// bodies and redirects are left as they are.
pub fn compress(resp: Response<Body>) -> Response<Body> {
    use std::io::Write;
    let (mut parts, body) = resp.into_parts();
    let bytes: Vec<u8> = match body {
        Body::Text(t) if t.len() >= 1024 => t.into_bytes(),
        other => return Response::from_parts(parts, other),
    };
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    match enc.write_all(&bytes).and_then(|()| enc.finish()) {
        Ok(gz) => {
            parts.headers.insert(
                header::CONTENT_ENCODING,
                header::HeaderValue::from_static("gzip"),
            );
            parts.headers.insert(
                header::VARY,
                header::HeaderValue::from_static("accept-encoding"),
            );
            Response::from_parts(parts, Body::Binary(gz))
        }
        Err(e) => {
            tracing::error!(error = %e, "gzip failed; sending the page as it is");
            Response::from_parts(parts, Body::Binary(bytes))
        }
    }
}

fn encode(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn form(req: &Request) -> Vec<(String, String)> {
    let body = lambda::http::body_bytes(req);
    if body.len() > MAX_FORM_BYTES {
        return Vec::new();
    }
    form_urlencoded::parse(body).into_owned().collect()
}

fn security_headers(
    b: lambda_http::http::response::Builder,
) -> lambda_http::http::response::Builder {
    b.header(
        "content-security-policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    )
    .header("x-content-type-options", "nosniff")
    .header("referrer-policy", "same-origin")
}

pub fn html(status: u16, body: maud::Markup) -> Response<Body> {
    security_headers(Response::builder())
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::Text(body.into_string()))
        .unwrap_or_default()
}

fn asset(body: &'static str, content_type: &str) -> Response<Body> {
    security_headers(Response::builder())
        .status(200)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "public, max-age=3600")
        .body(Body::Text(body.to_owned()))
        .unwrap_or_default()
}

fn redirect(to: &str) -> Response<Body> {
    security_headers(Response::builder())
        .status(303)
        .header(header::LOCATION, to)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::Empty)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn post(origin: Option<&str>, host: Option<&str>) -> Request {
        let mut b = lambda_http::http::Request::builder()
            .method("POST")
            .uri("/app/sign-in");
        if let Some(o) = origin {
            b = b.header("origin", o);
        }
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(Body::Empty).unwrap()
    }

    #[test]
    fn a_large_page_is_gzipped_and_reads_back_the_same() {
        use std::io::Read;
        let page = maud::html! { @for i in 0..200 { p { "row " (i) } } };
        let plain = page.clone().into_string();
        let resp = compress(html(200, page));
        assert_eq!(resp.headers()[header::CONTENT_ENCODING], "gzip");
        let Body::Binary(gz) = resp.body() else {
            panic!("a binary body")
        };
        assert!(
            gz.len() < plain.len() / 4,
            "{} of {}",
            gz.len(),
            plain.len()
        );
        let mut back = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, plain);
        let small = compress(redirect("/app"));
        assert!(small.headers().get(header::CONTENT_ENCODING).is_none());
    }

    #[test]
    fn gzip_is_sent_only_to_clients_that_take_it() {
        let req = |v: &str| {
            lambda_http::http::Request::builder()
                .header("accept-encoding", v)
                .body(Body::Empty)
                .unwrap()
        };
        assert!(accepts_gzip(&req("gzip, deflate, br")));
        assert!(accepts_gzip(&req("br;q=1.0, gzip;q=0.8")));
        assert!(!accepts_gzip(&req("br, identity")));
    }

    #[test]
    fn only_forms_from_the_sites_own_origin_are_accepted() {
        assert!(!cross_origin(&post(
            Some("http://127.0.0.1:8080"),
            Some("127.0.0.1:8080")
        )));
        assert!(
            !cross_origin(&post(None, Some("127.0.0.1:8080"))),
            "no Origin: not a browser form"
        );
        assert!(cross_origin(&post(
            Some("https://evil.example"),
            Some("api.example.com")
        )));
        assert!(cross_origin(&post(Some("null"), Some("api.example.com"))));
        assert!(cross_origin(&post(Some("https://api.example.com"), None)));
    }

    #[test]
    fn usage_windows_end_with_the_current_window() {
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 1, 15, 10, 30, 5)
            .unwrap();
        assert_eq!(
            usage_window("hour", now),
            ("2026-01-12T11:00:00Z".into(), "2026-01-15T11:00:00Z".into())
        );
        assert_eq!(
            usage_window("day", now),
            ("2025-10-18T00:00:00Z".into(), "2026-01-16T00:00:00Z".into())
        );
        assert_eq!(
            usage_window("month", now),
            ("2025-02-01T00:00:00Z".into(), "2026-02-01T00:00:00Z".into())
        );
        let dec = chrono::Utc.with_ymd_and_hms(2026, 12, 3, 0, 0, 0).unwrap();
        assert_eq!(
            usage_window("month", dec),
            ("2026-01-01T00:00:00Z".into(), "2027-01-01T00:00:00Z".into())
        );
    }
}
