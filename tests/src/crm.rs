//! A local stand-in for the parts of HubSpot's CRM v3 API this suite calls: company
//! property groups and properties (`hubspot setup`), company batch updates (write-back
//! and plays) and tasks. It checks the bearer token, keeps what it is sent, and
//! enforces a per-interval request budget the way HubSpot does: every answer carries
//! `X-HubSpot-RateLimit-Max` / `-Remaining` / `-Interval-Milliseconds`, and a request
//! over the budget gets 429 with `Retry-After`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::Json;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub body: Value,
}

#[derive(Debug, Default)]
pub struct CrmState {
    pub token: String,
    pub groups: BTreeMap<String, Value>,
    pub properties: BTreeMap<String, Value>,
    /// Company id -> properties written to it (last value wins).
    pub companies: BTreeMap<String, BTreeMap<String, Value>>,
    pub tasks: Vec<Value>,
    /// HubSpot owners: e-mail -> owner id (`GET /crm/v3/owners/?email=`).
    pub owners: BTreeMap<String, String>,
    pub requests: Vec<Seen>,
    /// Requests allowed per interval (`None`: unlimited, and no rate headers).
    pub budget: Option<(u64, Duration)>,
    window: Option<(Instant, u64)>,
    /// Seconds of `Retry-After` on a 429.
    pub retry_after: u64,
}

impl CrmState {
    /// Every request that changed something (not GETs, not refused ones).
    pub fn writes(&self) -> Vec<&Seen> {
        self.requests
            .iter()
            .filter(|r| r.method != "GET" && r.status < 300)
            .collect()
    }

    pub fn answered(&self, status: u16) -> usize {
        self.requests.iter().filter(|r| r.status == status).count()
    }

    /// Books a request against the budget: the rate headers to send, or `None` when
    /// the budget is spent.
    fn book(&mut self, now: Instant) -> Result<Vec<(&'static str, String)>, ()> {
        let Some((max, interval)) = self.budget else {
            return Ok(Vec::new());
        };
        let (start, used) = match self.window {
            Some((start, used)) if now.duration_since(start) < interval => (start, used),
            _ => (now, 0),
        };
        if used >= max {
            return Err(());
        }
        self.window = Some((start, used + 1));
        Ok(vec![
            ("x-hubspot-ratelimit-max", max.to_string()),
            (
                "x-hubspot-ratelimit-remaining",
                (max - used - 1).to_string(),
            ),
            (
                "x-hubspot-ratelimit-interval-milliseconds",
                interval.as_millis().to_string(),
            ),
        ])
    }
}

pub type Crm = Arc<Mutex<CrmState>>;

/// A running stand-in: its base URL and its state.
pub struct CrmStandIn {
    pub base: String,
    pub state: Crm,
}

impl CrmStandIn {
    /// Starts one on a free port accepting `Bearer {token}`.
    pub async fn start(token: &str) -> Self {
        let state: Crm = Arc::new(Mutex::new(CrmState {
            token: token.to_owned(),
            retry_after: 1,
            ..Default::default()
        }));
        let app = axum::Router::new()
            .route("/crm/v3/properties/companies/groups", post(create_group))
            .route(
                "/crm/v3/properties/companies/groups/{name}",
                get(read_group),
            )
            .route(
                "/crm/v3/properties/companies",
                get(list_properties).post(create_property),
            )
            .route(
                "/crm/v3/properties/companies/{name}",
                patch(update_property),
            )
            .route("/crm/v3/objects/companies/batch/update", post(batch_update))
            .route("/crm/v3/objects/tasks", post(create_task))
            .route("/crm/v3/owners/", get(list_owners))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("a bound address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base: format!("http://{addr}"),
            state,
        }
    }

    /// Limits requests to `max` per `interval`, as a HubSpot portal's budget does.
    pub fn with_budget(self, max: u64, interval: Duration) -> Self {
        self.state.lock().expect("stand-in state").budget = Some((max, interval));
        self
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, CrmState> {
        self.state.lock().expect("stand-in state")
    }
}

/// The common part of every route: token, budget, record. `handle` answers when
/// the request is let through.
fn serve(
    state: &Crm,
    method: Method,
    path: String,
    headers: &HeaderMap,
    body: Value,
    handle: impl FnOnce(&mut CrmState, &Value) -> (StatusCode, Value),
) -> Response {
    let mut s = state.lock().expect("stand-in state");
    let now = Instant::now();
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {}", s.token));
    let (status, answer, rate, retry) = match s.book(now) {
        Err(()) => (
            StatusCode::TOO_MANY_REQUESTS,
            json!({"status": "error", "category": "RATE_LIMITS", "policyName": "TEN_SECONDLY_ROLLING"}),
            Vec::new(),
            Some(s.retry_after),
        ),
        Ok(rate) if !authorized => (
            StatusCode::UNAUTHORIZED,
            json!({"status": "error", "category": "INVALID_AUTHENTICATION"}),
            rate,
            None,
        ),
        Ok(rate) => {
            let (status, answer) = handle(&mut s, &body);
            (status, answer, rate, None)
        }
    };
    s.requests.push(Seen {
        at: now,
        method: method.to_string(),
        path,
        status: status.as_u16(),
        body,
    });
    let mut h = HeaderMap::new();
    for (k, v) in rate {
        if let Ok(v) = v.parse() {
            h.insert(k, v);
        }
    }
    if let Some(secs) = retry {
        if let Ok(v) = secs.to_string().parse() {
            h.insert("retry-after", v);
        }
    }
    (status, h, Json(answer)).into_response()
}

fn error(status: StatusCode, message: &str) -> (StatusCode, Value) {
    (status, json!({"status": "error", "message": message}))
}

async fn read_group(State(s): State<Crm>, Path(name): Path<String>, h: HeaderMap) -> Response {
    let path = format!("/crm/v3/properties/companies/groups/{name}");
    serve(&s, Method::GET, path, &h, Value::Null, |s, _| {
        match s.groups.get(&name) {
            Some(g) => (StatusCode::OK, g.clone()),
            None => error(StatusCode::NOT_FOUND, "no such group"),
        }
    })
}

async fn create_group(State(s): State<Crm>, h: HeaderMap, Json(b): Json<Value>) -> Response {
    let path = "/crm/v3/properties/companies/groups".to_owned();
    serve(&s, Method::POST, path, &h, b, |s, b| {
        let (Some(name), Some(_label)) = (b["name"].as_str(), b["label"].as_str()) else {
            return error(StatusCode::BAD_REQUEST, "name and label are required");
        };
        if s.groups.contains_key(name) {
            return error(StatusCode::CONFLICT, "group exists");
        }
        s.groups.insert(name.to_owned(), b.clone());
        (StatusCode::CREATED, b.clone())
    })
}

async fn list_properties(State(s): State<Crm>, h: HeaderMap) -> Response {
    let path = "/crm/v3/properties/companies".to_owned();
    serve(&s, Method::GET, path, &h, Value::Null, |s, _| {
        let mut results = vec![
            json!({"name": "name", "label": "Company name", "type": "string", "fieldType": "text", "groupName": "companyinformation"}),
        ];
        results.extend(s.properties.values().cloned());
        (StatusCode::OK, json!({"results": results}))
    })
}

/// `type` and `fieldType` combinations HubSpot accepts (the ones this suite uses).
fn valid_type(kind: &str, field: &str) -> bool {
    matches!(
        (kind, field),
        ("string", "text" | "textarea")
            | ("number", "number")
            | ("date", "date")
            | ("enumeration", "select" | "radio")
    )
}

async fn create_property(State(s): State<Crm>, h: HeaderMap, Json(b): Json<Value>) -> Response {
    let path = "/crm/v3/properties/companies".to_owned();
    serve(&s, Method::POST, path, &h, b, |s, b| {
        let name = b["name"].as_str().unwrap_or_default();
        let kind = b["type"].as_str().unwrap_or_default();
        let field = b["fieldType"].as_str().unwrap_or_default();
        let group = b["groupName"].as_str().unwrap_or_default();
        if name.is_empty() || b["label"].as_str().is_none() || !valid_type(kind, field) {
            return error(StatusCode::BAD_REQUEST, "name, label, type and fieldType");
        }
        if !s.groups.contains_key(group) {
            return error(StatusCode::BAD_REQUEST, "unknown groupName");
        }
        if kind == "enumeration" && b["options"].as_array().is_none_or(Vec::is_empty) {
            return error(StatusCode::BAD_REQUEST, "an enumeration needs options");
        }
        if s.properties.contains_key(name) {
            return error(StatusCode::CONFLICT, "property exists");
        }
        s.properties.insert(name.to_owned(), b.clone());
        (StatusCode::CREATED, b.clone())
    })
}

async fn update_property(
    State(s): State<Crm>,
    Path(name): Path<String>,
    h: HeaderMap,
    Json(b): Json<Value>,
) -> Response {
    let path = format!("/crm/v3/properties/companies/{name}");
    serve(&s, Method::PATCH, path, &h, b, |s, b| {
        let Some(p) = s.properties.get_mut(&name) else {
            return error(StatusCode::NOT_FOUND, "no such property");
        };
        if let (Some(p), Some(patch)) = (p.as_object_mut(), b.as_object()) {
            for (k, v) in patch {
                p.insert(k.clone(), v.clone());
            }
        }
        (StatusCode::OK, p.clone())
    })
}

async fn batch_update(State(s): State<Crm>, h: HeaderMap, Json(b): Json<Value>) -> Response {
    let path = "/crm/v3/objects/companies/batch/update".to_owned();
    serve(&s, Method::POST, path, &h, b, |s, b| {
        let inputs = b["inputs"].as_array().cloned().unwrap_or_default();
        if inputs.is_empty() || inputs.len() > 100 {
            return error(StatusCode::BAD_REQUEST, "1-100 inputs");
        }
        for i in &inputs {
            let (Some(id), Some(props)) = (i["id"].as_str(), i["properties"].as_object()) else {
                return error(StatusCode::BAD_REQUEST, "id and properties");
            };
            if let Some(unknown) = props.keys().find(|k| !s.properties.contains_key(*k)) {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("Property \"{unknown}\" does not exist"),
                );
            }
            let company = s.companies.entry(id.to_owned()).or_default();
            for (k, v) in props {
                company.insert(k.clone(), v.clone());
            }
        }
        (
            StatusCode::OK,
            json!({"status": "COMPLETE", "results": inputs}),
        )
    })
}

async fn create_task(State(s): State<Crm>, h: HeaderMap, Json(b): Json<Value>) -> Response {
    let path = "/crm/v3/objects/tasks".to_owned();
    serve(&s, Method::POST, path, &h, b, |s, b| {
        let props = &b["properties"];
        if props["hs_task_subject"].as_str().is_none() || props["hs_timestamp"].is_null() {
            return error(StatusCode::BAD_REQUEST, "hs_task_subject and hs_timestamp");
        }
        let id = (s.tasks.len() + 1).to_string();
        let mut task = b.clone();
        task["id"] = json!(id);
        s.tasks.push(task.clone());
        (StatusCode::CREATED, task)
    })
}

/// The owners API filtered by `email`, as HubSpot answers it: a page of owners (none
/// when nobody has that address).
async fn list_owners(State(s): State<Crm>, uri: axum::http::Uri, h: HeaderMap) -> Response {
    let email = url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "email")
        .map(|(_, v)| v.into_owned());
    let path = format!("/crm/v3/owners/?{}", uri.query().unwrap_or_default());
    serve(&s, Method::GET, path, &h, Value::Null, |s, _| {
        let Some(email) = email else {
            return error(StatusCode::BAD_REQUEST, "email is required here");
        };
        let results: Vec<Value> = s
            .owners
            .get(&email)
            .map(|id| json!({"id": id, "email": email, "type": "PERSON", "archived": false}))
            .into_iter()
            .collect();
        (StatusCode::OK, json!({"results": results}))
    })
}
