//! Event definitions (the meter registry): what may be sent and in which unit.

use crate::event::DefinitionStatus;
use crate::ids::MeterName;
use crate::input::{input_error, object, opt_string, InputError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Definition {
    pub meter: MeterName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default)]
    pub status: DefinitionStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const FIELDS: &[&str] = &["description", "unit", "status"];

/// Validates a `PUT /v1/definitions/{meter}` body.
pub fn definition_from_body(
    meter: MeterName,
    body: &[u8],
    now: DateTime<Utc>,
    existing: Option<&Definition>,
) -> Result<Definition, InputError> {
    let map = object(body, FIELDS)?;
    let description = opt_string(&map, "description", 1000, "invalid_description")?;
    let unit = opt_string(&map, "unit", 32, "invalid_unit")?.filter(|u| !u.is_empty());
    let status = match opt_string(&map, "status", 16, "invalid_status")?.as_deref() {
        None | Some("active") => DefinitionStatus::Active,
        Some("deprecated") => DefinitionStatus::Deprecated,
        Some("deleted") => DefinitionStatus::Deleted,
        Some(other) => {
            return Err(input_error(
                "invalid_status",
                format!("status '{other}' is not one of active, deprecated, deleted"),
            ))
        }
    };
    Ok(Definition {
        meter,
        description,
        unit,
        status,
        created_at: existing.map_or(now, |e| e.created_at),
        updated_at: now,
    })
}
