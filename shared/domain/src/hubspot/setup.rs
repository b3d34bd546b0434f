//! `hubspot setup`: the `usage_health` company property group and every property the
//! write-back and the plays write, created through HubSpot's CRM properties API
//! (`/crm/v3/properties/companies/groups`, `/crm/v3/properties/companies`).
//! Idempotent: what exists as specified is left alone, what differs in label,
//! description, group or options is updated (PATCH), a property of another type is
//! reported as a conflict and never changed, and a 409 on create (created meanwhile)
//! counts as existing. [`plan`] is the pure part; [`run`] reads, plans and applies.

use super::client::{HubSpotClient, Method};
use serde::Serialize;
use serde_json::{json, Value};

pub const GROUP_NAME: &str = "usage_health";
pub const GROUP_LABEL: &str = "Usage health";
pub const GROUPS_PATH: &str = "/crm/v3/properties/companies/groups";
pub const PROPERTIES_PATH: &str = "/crm/v3/properties/companies";

/// One company property as this suite needs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PropertySpec {
    pub name: &'static str,
    pub label: &'static str,
    pub description: &'static str,
    /// HubSpot's `type` (`string`, `number`, `date`, `enumeration`).
    pub kind: &'static str,
    pub field_type: &'static str,
    /// (value, label) of an enumeration, in display order.
    pub options: &'static [(&'static str, &'static str)],
}

const BANDS: &[(&str, &str)] = &[("green", "Green"), ("yellow", "Yellow"), ("red", "Red")];

/// Every property the write-back ([`crate::health::writeback`]) and the plays write.
pub const PROPERTIES: &[PropertySpec] = &[
    PropertySpec {
        name: "usage_health_score",
        label: "Usage health score",
        description: "Health score 0-100 from product usage, written daily by the usage-intelligence score run.",
        kind: "number",
        field_type: "number",
        options: &[],
    },
    PropertySpec {
        name: "usage_health_band",
        label: "Usage health band",
        description: "Health band (green, yellow, red) of the latest score run.",
        kind: "enumeration",
        field_type: "select",
        options: BANDS,
    },
    PropertySpec {
        name: "usage_health_reasons",
        label: "Usage health reasons",
        description: "The top reasons behind the health score, with their numbers.",
        kind: "string",
        field_type: "textarea",
        options: &[],
    },
    PropertySpec {
        name: "usage_health_as_of",
        label: "Usage health as of",
        description: "The day the health score describes.",
        kind: "date",
        field_type: "date",
        options: &[],
    },
    PropertySpec {
        name: "usage_milestone_lag_days",
        label: "Usage milestone lag (days)",
        description: "Days the account is behind its tier's milestone schedule (0 when on schedule).",
        kind: "number",
        field_type: "number",
        options: &[],
    },
    PropertySpec {
        name: "usage_next_milestone",
        label: "Usage next milestone",
        description: "The next adoption milestone the account has not reached.",
        kind: "string",
        field_type: "text",
        options: &[],
    },
];

impl PropertySpec {
    fn options_json(&self) -> Value {
        Value::Array(
            self.options
                .iter()
                .enumerate()
                .map(|(i, (value, label))| {
                    json!({"label": label, "value": value, "displayOrder": i, "hidden": false})
                })
                .collect(),
        )
    }

    /// The body of `POST /crm/v3/properties/companies`.
    pub fn create_body(&self) -> Value {
        let mut b = json!({
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "groupName": GROUP_NAME,
            "type": self.kind,
            "fieldType": self.field_type,
        });
        if !self.options.is_empty() {
            b["options"] = self.options_json();
        }
        b
    }

    /// What to change on an existing property so it matches, as a PATCH body; `None`
    /// when nothing differs.
    fn patch_for(&self, existing: &Value) -> Option<Value> {
        let mut patch = serde_json::Map::new();
        let text = |k: &str| existing[k].as_str().unwrap_or_default().to_owned();
        if text("label") != self.label {
            patch.insert("label".into(), json!(self.label));
        }
        if text("description") != self.description {
            patch.insert("description".into(), json!(self.description));
        }
        if text("groupName") != GROUP_NAME {
            patch.insert("groupName".into(), json!(GROUP_NAME));
        }
        if text("fieldType") != self.field_type {
            patch.insert("fieldType".into(), json!(self.field_type));
        }
        if !self.options.is_empty() {
            let have: Vec<(String, String)> = existing["options"]
                .as_array()
                .map(|o| {
                    o.iter()
                        .map(|x| {
                            (
                                x["value"].as_str().unwrap_or_default().to_owned(),
                                x["label"].as_str().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let want: Vec<(String, String)> = self
                .options
                .iter()
                .map(|(v, l)| ((*v).to_owned(), (*l).to_owned()))
                .collect();
            if have != want {
                patch.insert("options".into(), self.options_json());
            }
        }
        (!patch.is_empty()).then_some(Value::Object(patch))
    }
}

/// One step of a setup.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    CreateGroup,
    Create(&'static PropertySpec),
    Update(&'static PropertySpec, Value),
    Unchanged(&'static PropertySpec),
    /// The property exists with another type: changing it could lose data.
    Conflict(&'static PropertySpec, String),
}

/// The steps that bring a portal to [`PROPERTIES`], given whether the group exists and
/// the company properties the portal has (`GET /crm/v3/properties/companies` results).
pub fn plan(group_exists: bool, existing: &[Value]) -> Vec<Step> {
    let mut steps = Vec::new();
    if !group_exists {
        steps.push(Step::CreateGroup);
    }
    for spec in PROPERTIES {
        let found = existing
            .iter()
            .find(|p| p["name"].as_str() == Some(spec.name));
        steps.push(match found {
            None => Step::Create(spec),
            Some(p) if p["type"].as_str() != Some(spec.kind) => Step::Conflict(
                spec,
                format!(
                    "exists with type '{}', expected '{}'; change or delete it in HubSpot",
                    p["type"].as_str().unwrap_or("?"),
                    spec.kind
                ),
            ),
            Some(p) => match spec.patch_for(p) {
                Some(patch) => Step::Update(spec, patch),
                None => Step::Unchanged(spec),
            },
        });
    }
    steps
}

/// What a setup did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SetupReport {
    /// `created` or `unchanged`.
    pub group: String,
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
    /// Properties left alone with the reason.
    pub conflicts: Vec<(String, String)>,
    /// HTTP requests sent (retries included) and 429 answers among them.
    pub requests: usize,
    pub throttled: usize,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SetupError {
    #[error("HubSpot refused the token ({status}): {detail}")]
    Unauthorized { status: u16, detail: String },
    #[error("HubSpot answered {status} to {what}: {detail}")]
    Refused {
        what: String,
        status: u16,
        detail: String,
    },
    #[error("HubSpot could not be reached for {what}: {detail}")]
    Unreachable { what: String, detail: String },
}

impl SetupError {
    pub fn code(&self) -> &'static str {
        match self {
            SetupError::Unauthorized { .. } => "hubspot_unauthorized",
            SetupError::Refused { .. } => "hubspot_refused",
            SetupError::Unreachable { .. } => "hubspot_unreachable",
        }
    }
}

/// Sends one call and returns its status and body, counting requests; 401/403 and
/// transport failures are errors, any other status is the caller's to judge.
async fn call(
    client: &HubSpotClient,
    report: &mut SetupReport,
    what: &str,
    method: Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> Result<(u16, String), SetupError> {
    let out = client.call(method, path, token, body).await;
    report.requests += out.requests;
    report.throttled += out.throttled;
    let reply = out.reply.map_err(|detail| SetupError::Unreachable {
        what: what.to_owned(),
        detail,
    })?;
    if matches!(reply.status, 401 | 403) {
        return Err(SetupError::Unauthorized {
            status: reply.status,
            detail: reply.excerpt(),
        });
    }
    Ok((reply.status, reply.body))
}

fn refused(what: &str, status: u16, body: &str) -> SetupError {
    SetupError::Refused {
        what: what.to_owned(),
        status,
        detail: body.chars().take(300).collect(),
    }
}

/// Reads the portal's group and company properties, plans, and applies the plan.
pub async fn run(client: &HubSpotClient, token: &str) -> Result<SetupReport, SetupError> {
    let mut r = SetupReport::default();
    let what = "reading the property group";
    let group_exists = match call(
        client,
        &mut r,
        what,
        Method::Get,
        &format!("{GROUPS_PATH}/{GROUP_NAME}"),
        token,
        None,
    )
    .await?
    {
        (200, _) => true,
        (404, _) => false,
        (s, b) => return Err(refused(what, s, &b)),
    };
    let what = "listing company properties";
    let existing = match call(
        client,
        &mut r,
        what,
        Method::Get,
        PROPERTIES_PATH,
        token,
        None,
    )
    .await?
    {
        (200, body) => serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["results"].as_array().cloned())
            .ok_or_else(|| refused(what, 200, "no results array in the answer"))?,
        (s, b) => return Err(refused(what, s, &b)),
    };
    r.group = "unchanged".into();
    for step in plan(group_exists, &existing) {
        match step {
            Step::CreateGroup => {
                let what = "creating the property group";
                let body = json!({"name": GROUP_NAME, "label": GROUP_LABEL, "displayOrder": -1});
                match call(
                    client,
                    &mut r,
                    what,
                    Method::Post,
                    GROUPS_PATH,
                    token,
                    Some(&body),
                )
                .await?
                {
                    (200 | 201, _) => r.group = "created".into(),
                    (409, _) => {}
                    (s, b) => return Err(refused(what, s, &b)),
                }
            }
            Step::Create(spec) => {
                let what = format!("creating {}", spec.name);
                let body = spec.create_body();
                match call(
                    client,
                    &mut r,
                    &what,
                    Method::Post,
                    PROPERTIES_PATH,
                    token,
                    Some(&body),
                )
                .await?
                {
                    (200 | 201, _) => r.created.push(spec.name.into()),
                    (409, _) => r.unchanged.push(spec.name.into()),
                    (s, b) => return Err(refused(&what, s, &b)),
                }
            }
            Step::Update(spec, patch) => {
                let what = format!("updating {}", spec.name);
                let path = format!("{PROPERTIES_PATH}/{}", spec.name);
                match call(
                    client,
                    &mut r,
                    &what,
                    Method::Patch,
                    &path,
                    token,
                    Some(&patch),
                )
                .await?
                {
                    (200, _) => r.updated.push(spec.name.into()),
                    (s, b) => return Err(refused(&what, s, &b)),
                }
            }
            Step::Unchanged(spec) => r.unchanged.push(spec.name.into()),
            Step::Conflict(spec, why) => r.conflicts.push((spec.name.into(), why)),
        }
    }
    tracing::info!(
        group = %r.group,
        created = r.created.len(),
        updated = r.updated.len(),
        unchanged = r.unchanged.len(),
        conflicts = r.conflicts.len(),
        requests = r.requests,
        "HubSpot setup done"
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_hubspot_has_it(spec: &PropertySpec) -> Value {
        let mut v = spec.create_body();
        v["hidden"] = json!(false);
        v["createdAt"] = json!("2026-11-01T00:00:00Z");
        v
    }

    #[test]
    fn an_empty_portal_gets_the_group_and_every_property() {
        let steps = plan(false, &[]);
        assert_eq!(steps[0], Step::CreateGroup);
        assert_eq!(steps.len(), PROPERTIES.len() + 1);
        assert!(steps[1..].iter().all(|s| matches!(s, Step::Create(_))));
    }

    #[test]
    fn a_portal_set_up_already_needs_nothing() {
        let existing: Vec<Value> = PROPERTIES.iter().map(as_hubspot_has_it).collect();
        let steps = plan(true, &existing);
        assert!(
            steps.iter().all(|s| matches!(s, Step::Unchanged(_))),
            "{steps:?}"
        );
    }

    #[test]
    fn a_changed_label_or_missing_option_is_patched_and_another_type_is_a_conflict() {
        let mut existing: Vec<Value> = PROPERTIES.iter().map(as_hubspot_has_it).collect();
        existing[0]["label"] = json!("Health");
        existing[1]["options"] = json!([{"value": "green", "label": "Green"}]);
        existing[2]["type"] = json!("number");
        existing[3]["groupName"] = json!("companyinformation");
        let steps = plan(true, &existing);
        assert_eq!(
            steps[0],
            Step::Update(&PROPERTIES[0], json!({"label": "Usage health score"}))
        );
        let Step::Update(_, patch) = &steps[1] else {
            panic!("{:?}", steps[1])
        };
        assert_eq!(patch["options"].as_array().map(Vec::len), Some(3));
        assert!(matches!(&steps[2], Step::Conflict(_, why) if why.contains("'number'")));
        assert_eq!(
            steps[3],
            Step::Update(&PROPERTIES[3], json!({"groupName": "usage_health"}))
        );
    }

    #[test]
    fn the_properties_cover_everything_the_write_back_and_the_plays_send() {
        for name in [
            "usage_health_score",
            "usage_health_band",
            "usage_health_reasons",
            "usage_health_as_of",
            "usage_milestone_lag_days",
            "usage_next_milestone",
        ] {
            assert!(PROPERTIES.iter().any(|p| p.name == name), "{name}");
        }
    }
}
