//! Registry forms: create and edit a definition through `PUT /v1/definitions/{meter}`,
//! with the API's validation errors shown next to the fields they concern, and a
//! definition's change log (who, when, before -> after).

use crate::pages::layout;
use crate::view;
use crate::{Answer, Signed};
use maud::{html, Markup};
use serde_json::{json, Map, Value};

/// Change-log entries shown on a definition's page (the API's largest page).
pub const CHANGES_SHOWN: usize = 200;

/// The choices of a definition's select fields: (field, label, options).
const CHOICES: [(&str, &str, &[&str]); 4] = [
    ("criticality", "Criticality", &["normal", "critical"]),
    (
        "value_type",
        "Value type",
        &["decimal", "integer", "boolean"],
    ),
    (
        "anomaly_sensitivity",
        "Anomaly sensitivity",
        &["low", "medium", "high"],
    ),
    ("status", "Status", &["active", "deprecated", "deleted"]),
];

/// The text fields: (field, label, hint).
const TEXTS: [(&str, &str, &str); 6] = [
    ("name", "Display name", "Up to 200 characters."),
    (
        "owner",
        "Owner",
        "Who answers for this event (an e-mail or team); alerts go to it.",
    ),
    ("unit", "Unit", "Up to 32 characters, e.g. calls or GB."),
    (
        "expected_cadence_hours",
        "Expected cadence (hours)",
        "A longer silence of an active account is a usage gap; 1 to 2160.",
    ),
    (
        "aliases",
        "Aliases",
        "Legacy meter names mapped to this one, separated by commas.",
    ),
    ("description", "Description", "Up to 1,000 characters."),
];

/// What a definition form holds, as typed (so a refused form comes back as it was).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DefinitionForm {
    pub meter: String,
    pub text: Map<String, Value>,
    pub key_feature: bool,
    pub milestone: bool,
}

impl DefinitionForm {
    /// A new definition's defaults (those the API gives fields left out).
    pub fn blank() -> Self {
        let mut f = Self::default();
        for (field, _, options) in CHOICES {
            let default = if field == "anomaly_sensitivity" {
                "medium"
            } else {
                options[0]
            };
            f.text.insert(field.into(), default.into());
        }
        f
    }

    /// The form of a stored definition (`GET /v1/definitions/{meter}`).
    pub fn of_definition(def: &Value) -> Self {
        let mut f = Self::blank();
        f.meter = def["meter"].as_str().unwrap_or_default().to_owned();
        for field in CHOICES.iter().map(|c| c.0).chain(TEXTS.iter().map(|t| t.0)) {
            let shown = match &def[field] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                Value::Array(a) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            f.text.insert(field.into(), shown.into());
        }
        f.key_feature = def["key_feature"].as_bool().unwrap_or(false);
        f.milestone = def["milestone"].as_bool().unwrap_or(false);
        f
    }

    /// The form as posted (unknown fields ignored; an unchecked box is absent).
    pub fn from_pairs(pairs: &[(String, String)]) -> Self {
        let mut f = Self::default();
        for (k, v) in pairs {
            match k.as_str() {
                "meter" => f.meter = v.trim().to_owned(),
                "key_feature" => f.key_feature = true,
                "milestone" => f.milestone = true,
                k if CHOICES.iter().any(|c| c.0 == k) || TEXTS.iter().any(|t| t.0 == k) => {
                    f.text.insert(k.to_owned(), Value::String(v.clone()));
                }
                _ => {}
            }
        }
        f
    }

    fn value(&self, field: &str) -> &str {
        self.text.get(field).and_then(Value::as_str).unwrap_or("")
    }

    /// The `PUT` body: the form's fields as typed, the stored definition's for fields
    /// the form does not show (required properties) or did not post. A cadence that
    /// is not a number is sent as text, so the API's own validation answers it.
    pub fn body(&self, existing: Option<&Value>) -> Value {
        let mut body = Map::new();
        let posted = |field: &str| self.text.contains_key(field);
        for field in CHOICES
            .iter()
            .map(|c| c.0)
            .chain(TEXTS.iter().map(|t| t.0))
            .filter(|f| !posted(f))
            .chain(["required_properties"])
        {
            if let Some(v) = existing.map(|e| &e[field]).filter(|v| !v.is_null()) {
                body.insert(field.into(), v.clone());
            }
        }
        for (field, _, _) in CHOICES.into_iter().filter(|c| posted(c.0)) {
            let v = self.value(field).trim();
            if !v.is_empty() {
                body.insert(field.into(), v.into());
            }
        }
        for (field, _, _) in TEXTS.into_iter().filter(|t| posted(t.0)) {
            let v = self.value(field).trim();
            let value = match field {
                "aliases" => Value::Array(
                    v.split([',', ' ', '\n'])
                        .map(str::trim)
                        .filter(|a| !a.is_empty())
                        .map(|a| Value::String(a.to_owned()))
                        .collect(),
                ),
                _ if v.is_empty() => Value::Null,
                "expected_cadence_hours" => match serde_json::from_str::<Value>(v) {
                    Ok(n @ Value::Number(_)) => n,
                    _ => Value::String(v.to_owned()),
                },
                _ => Value::String(v.to_owned()),
            };
            body.insert(field.into(), value);
        }
        body.insert("key_feature".into(), self.key_feature.into());
        body.insert("milestone".into(), self.milestone.into());
        Value::Object(body)
    }
}

/// The form field an API error code concerns (`None`: the form as a whole).
pub fn field_of(code: &str) -> Option<&'static str> {
    Some(match code {
        "invalid_meter" | "meter_exists" => "meter",
        "invalid_name" => "name",
        "invalid_description" => "description",
        "invalid_owner" => "owner",
        "invalid_unit" => "unit",
        "invalid_status" => "status",
        "invalid_value_type" => "value_type",
        "invalid_criticality" => "criticality",
        "invalid_sensitivity" => "anomaly_sensitivity",
        "invalid_cadence" => "expected_cadence_hours",
        "invalid_aliases" | "alias_conflict" => "aliases",
        "invalid_key_feature" => "key_feature",
        "invalid_milestone" => "milestone",
        _ => return None,
    })
}

/// A refusal to show: the field it concerns (if any) and the API's message.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub field: Option<&'static str>,
    pub code: String,
    pub message: String,
}

impl Refusal {
    pub fn of(a: &Answer) -> Self {
        Self {
            field: field_of(a.code()),
            code: a.code().to_owned(),
            message: a.message(),
        }
    }
}

fn error_id(field: &str) -> String {
    format!("{field}-error")
}

/// The create (`meter` editable) or edit form, with a refusal next to its field.
pub fn form(who: &Signed, f: &DefinitionForm, creating: bool, refused: Option<&Refusal>) -> Markup {
    let err = |field: &str| refused.filter(|r| r.field == Some(field));
    let described = |field: &str, hint: bool| {
        let mut ids = Vec::new();
        if hint {
            ids.push(format!("{field}-hint"));
        }
        if err(field).is_some() {
            ids.push(error_id(field));
        }
        (!ids.is_empty()).then(|| ids.join(" "))
    };
    let field_error = |field: &str| {
        html! {
            @if let Some(r) = err(field) {
                p class="error field-error" id=(error_id(field)) data-code=(r.code) { (r.message) }
            }
        }
    };
    let action = if creating {
        "/app/definitions".to_owned()
    } else {
        format!("/app/definitions/{}/edit", f.meter)
    };
    html! {
        @if let Some(r) = refused.filter(|r| r.field.is_none()) {
            p class="error" role="alert" id="form-error" data-code=(r.code) { (r.message) }
        } @else if refused.is_some() {
            p class="error" role="alert" { "The API refused the definition: see the field marked below." }
        }
        form method="post" action=(action) class="definition" id="definition-form" novalidate {
            input type="hidden" name="csrf" value=(who.csrf);
            div class="field" {
                label for="meter" { "Meter" }
                @if creating {
                    input id="meter" name="meter" value=(f.meter) required autocomplete="off"
                        aria-invalid=[err("meter").map(|_| "true")] aria-describedby=[described("meter", true)];
                    small id="meter-hint" { "A lowercase letter first, then a-z, 0-9, _ and ." }
                } @else {
                    input id="meter" name="meter" value=(f.meter) readonly;
                }
                (field_error("meter"))
            }
            @for (field, label, hint) in TEXTS {
                div class="field" {
                    label for=(field) { (label) }
                    @if field == "description" {
                        textarea id=(field) name=(field) rows="3"
                            aria-invalid=[err(field).map(|_| "true")] aria-describedby=[described(field, true)] { (f.value(field)) }
                    } @else {
                        input id=(field) name=(field) value=(f.value(field))
                            inputmode=[(field == "expected_cadence_hours").then_some("numeric")]
                            aria-invalid=[err(field).map(|_| "true")] aria-describedby=[described(field, true)];
                    }
                    small id=(format!("{field}-hint")) { (hint) }
                    (field_error(field))
                }
            }
            @for (field, label, options) in CHOICES {
                @if creating && field == "status" {} @else {
                    div class="field" {
                        label for=(field) { (label) }
                        select id=(field) name=(field)
                            aria-invalid=[err(field).map(|_| "true")] aria-describedby=[described(field, false)] {
                            @for o in options { option value=(o) selected[f.value(field) == *o] { (view::humanize(o)) } }
                        }
                        (field_error(field))
                    }
                }
            }
            @for (field, label, on) in [("key_feature", "Key feature (adoption counts it)", f.key_feature), ("milestone", "Milestone event", f.milestone)] {
                div class="field check" {
                    input type="checkbox" id=(field) name=(field) value="true" checked[on]
                        aria-describedby=[described(field, false)];
                    label for=(field) { (label) }
                    (field_error(field))
                }
            }
            button type="submit" { (if creating { "Create definition" } else { "Save changes" }) }
        }
    }
}

/// `/app/registry/new`: the create form.
pub fn new_page(who: &Signed, f: &DefinitionForm, refused: Option<&Refusal>) -> Markup {
    layout(
        "New definition",
        Some(who),
        html! {
            p { a href="/app/registry" { "← Registry" } }
            h1 { "New definition" }
            p { "Saved through " code { "PUT /v1/definitions/{meter}" } "; the API checks every field." }
            (form(who, f, true, refused))
        },
    )
}

/// `/app/definitions/{meter}`: the definition, its edit form (admin) and change log.
pub fn definition_page(
    who: &Signed,
    def: &Answer,
    changes: &Answer,
    f: &DefinitionForm,
    refused: Option<&Refusal>,
) -> Markup {
    let meter = f.meter.as_str();
    layout(
        meter,
        Some(who),
        html! {
            p { a href="/app/registry" { "← Registry" } }
            h1 { "Definition " code { (meter) } }
            @if !def.ok() { p class="error" role="alert" { (def.message()) } }
            @else {
                p class="facts" {
                    "Status " strong data-status=(def.body["status"].as_str().unwrap_or_default()) { (def.body["status"].as_str().unwrap_or_default()) }
                    " · created " (def.body["created_at"].as_str().unwrap_or_default())
                    " · updated " (def.body["updated_at"].as_str().unwrap_or_default())
                }
                @if who.is_admin() {
                    section aria-labelledby="edit-h" {
                        h2 id="edit-h" { "Edit" }
                        (form(who, f, false, refused))
                    }
                } @else {
                    p { "You are signed in with a read key: you can look, not change." }
                }
            }
            section aria-labelledby="changes-h" {
                h2 id="changes-h" { "Change log" }
                (change_log(who, changes))
            }
        },
    )
}

/// A field's value in a change-log entry, in short words.
fn shown(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "—".to_owned(),
        Some(Value::String(s)) if s.is_empty() => "\"\"".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.is_empty() => "none".to_owned(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(", "),
        Some(other) => other.to_string(),
    }
}

/// The change log, newest first: who, when, what, and each changed field's before ->
/// after.
pub fn change_log(who: &Signed, changes: &Answer) -> Markup {
    let mut entries = changes.body["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    entries.reverse();
    let me = api::governance::Actor::of_key_hash(&who.session.h).0;
    html! {
        @if !changes.ok() { p class="error" { (changes.message()) } }
        @else if entries.is_empty() { p class="empty" id="no-changes" { "No changes recorded yet." } }
        @else {
            table class="changes" id="changes" {
                caption { (entries.len()) " change(s), newest first"
                    @if changes.body["next_cursor"].is_string() { "; only the first " (CHANGES_SHOWN) " are shown" } "." }
                thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Action" } th scope="col" { "Before → after" } } }
                tbody {
                    @for e in &entries {
                        @let actor = e["actor"].as_str().unwrap_or("unknown");
                        tr data-action=(e["action"].as_str().unwrap_or_default()) {
                            td { (e["at"].as_str().unwrap_or_default()) }
                            td { code { (actor) } @if actor == me { " (you)" } }
                            td { (view::humanize(e["action"].as_str().unwrap_or_default())) }
                            td { ul class="diff" {
                                @for field in e["changed"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                                    @if !matches!(field, "meter") {
                                        li data-field=(field) { strong { (view::humanize(field)) } ": "
                                            span class="before" { (shown(e["before"].get(field))) } " → "
                                            span class="after" { (shown(e["after"].get(field))) } }
                                    }
                                }
                            } }
                        }
                    }
                }
            }
        }
    }
}

/// The JSON of an answer that refused a create because the meter exists.
pub fn meter_exists(meter: &str) -> Answer {
    Answer {
        status: 409,
        body: json!({"error": {"code": "meter_exists", "message":
            format!("meter '{meter}' is already defined; open it from the registry to edit it")}}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use domain::definition::definition_from_body;
    use domain::ids::MeterName;

    fn posted(pairs: &[(&str, &str)]) -> DefinitionForm {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        DefinitionForm::from_pairs(&owned)
    }

    /// The API's code for a form, as `PUT /v1/definitions/{meter}` validates it.
    fn api_code(f: &DefinitionForm) -> Option<&'static str> {
        let meter = MeterName::parse("api_calls").unwrap();
        let body = f.body(None).to_string();
        definition_from_body(meter, body.as_bytes(), Utc::now(), None)
            .err()
            .map(|e| e.code)
    }

    #[test]
    fn a_well_filled_form_is_a_definition_the_api_accepts() {
        let f = posted(&[
            ("meter", "api_calls"),
            ("name", "API calls"),
            ("owner", "ops@example.com"),
            ("expected_cadence_hours", "24"),
            ("aliases", "apicalls_v1, calls_old"),
            ("criticality", "critical"),
            ("key_feature", "true"),
        ]);
        let body = f.body(None);
        assert_eq!(body["expected_cadence_hours"], 24);
        assert_eq!(body["aliases"], json!(["apicalls_v1", "calls_old"]));
        assert_eq!(body["key_feature"], true);
        assert_eq!(body["milestone"], false);
        assert_eq!(api_code(&f), None, "{body}");
    }

    #[test]
    fn each_field_the_api_refuses_is_named_by_its_error_code() {
        for (field, bad) in [
            ("expected_cadence_hours", "every day"),
            ("expected_cadence_hours", "0"),
            ("aliases", "Not A Meter"),
            ("criticality", "urgent"),
            ("value_type", "text"),
            ("anomaly_sensitivity", "extreme"),
            ("status", "gone"),
            ("unit", "a unit far longer than thirty-two characters"),
            ("name", &"n".repeat(201)),
            ("owner", &"o".repeat(255)),
            ("description", &"d".repeat(1001)),
        ] {
            let f = posted(&[("meter", "api_calls"), (field, bad)]);
            let code = api_code(&f).unwrap_or_else(|| panic!("{field}={bad} accepted"));
            assert_eq!(field_of(code), Some(field), "{field}={bad}: {code}");
        }
        assert_eq!(field_of("invalid_meter"), Some("meter"));
        assert_eq!(field_of("alias_conflict"), Some("aliases"));
        assert_eq!(field_of("too_many_definitions"), None);
    }

    #[test]
    fn editing_keeps_what_the_form_does_not_show_and_round_trips_the_rest() {
        let stored = json!({
            "meter": "api_calls", "name": "API calls", "owner": "ops@example.com",
            "value_type": "integer", "required_properties": {"region": "string"},
            "criticality": "critical", "key_feature": true, "milestone": false,
            "anomaly_sensitivity": "high", "expected_cadence_hours": 24,
            "aliases": ["apicalls_v1"], "status": "deprecated",
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-02T00:00:00Z"
        });
        let f = DefinitionForm::of_definition(&stored);
        assert_eq!(f.value("aliases"), "apicalls_v1");
        let body = f.body(Some(&stored));
        assert_eq!(body["required_properties"], json!({"region": "string"}));
        for k in [
            "name",
            "owner",
            "value_type",
            "criticality",
            "key_feature",
            "anomaly_sensitivity",
            "expected_cadence_hours",
            "aliases",
            "status",
        ] {
            assert_eq!(body[k], stored[k], "{k}");
        }
        assert!(body.get("created_at").is_none() && body.get("meter").is_none());
        assert_eq!(api_code(&f), None);
        // A form that posts only some fields changes only those.
        let partial = posted(&[("owner", "cs@example.com")]).body(Some(&stored));
        assert_eq!(partial["owner"], "cs@example.com");
        assert_eq!(partial["expected_cadence_hours"], 24);
        assert_eq!(partial["status"], "deprecated");
    }

    #[test]
    fn a_change_logs_values_read_as_words() {
        assert_eq!(shown(None), "—");
        assert_eq!(shown(Some(&json!(["a", "b"]))), "a, b");
        assert_eq!(shown(Some(&json!([]))), "none");
        assert_eq!(shown(Some(&json!(24))), "24");
        assert_eq!(shown(Some(&json!("ops"))), "ops");
    }
}
