//! Shared helpers for validating JSON request bodies of the admin API.

use serde_json::{Map, Value};

/// A refused request body: a snake_case code and a sentence for humans.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct InputError {
    pub code: &'static str,
    pub message: String,
}

pub fn input_error(code: &'static str, message: impl Into<String>) -> InputError {
    InputError {
        code,
        message: message.into(),
    }
}

/// Parses a body as a JSON object, reporting the position of syntax errors and
/// refusing fields outside `allowed`.
pub fn object(body: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, InputError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        input_error(
            "malformed_json",
            format!(
                "malformed JSON at line {}, column {}: {e}",
                e.line(),
                e.column()
            ),
        )
    })?;
    let Value::Object(map) = value else {
        return Err(input_error(
            "invalid_body",
            "the body must be a JSON object",
        ));
    };
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(input_error(
            "unknown_field",
            format!(
                "unknown field '{k}'; expected one of {}",
                allowed.join(", ")
            ),
        ));
    }
    Ok(map)
}

/// An optional string field with a length limit and no control characters.
pub fn opt_string(
    map: &Map<String, Value>,
    name: &str,
    max: usize,
    code: &'static str,
) -> Result<Option<String>, InputError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            if s.chars().count() > max {
                Err(input_error(
                    code,
                    format!("{name} is longer than {max} characters"),
                ))
            } else if s.chars().any(char::is_control) {
                Err(input_error(
                    code,
                    format!("{name} contains control characters"),
                ))
            } else {
                Ok(Some(s.trim().to_owned()))
            }
        }
        Some(_) => Err(input_error(code, format!("{name} must be a string"))),
    }
}
