//! Validated newtypes for every identifier that crosses a trust boundary.
//!
//! Each `parse` checks length and character set once at the edge so the rest of the
//! code (key builders in particular) can rely on the value never containing the `#`
//! key separator, control characters or whitespace.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an identifier was refused; carries the field name for the error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("{field} is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("{field} contains a character that is not allowed ({allowed})")]
    BadChar {
        field: &'static str,
        allowed: &'static str,
    },
}

fn check(
    value: &str,
    field: &'static str,
    max: usize,
    allowed: &'static str,
    ok: impl Fn(usize, char) -> bool,
) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { field });
    }
    if value.chars().count() > max {
        return Err(IdError::TooLong { field, max });
    }
    if !value.chars().enumerate().all(|(i, c)| ok(i, c)) {
        return Err(IdError::BadChar { field, allowed });
    }
    Ok(())
}

macro_rules! newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(v: String) -> Result<Self, IdError> {
                Self::parse(&v)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@' | '+' | '/' | '=')
}

newtype!(
    /// A tenant: one customer company of ours. Lowercase, digits and dashes.
    TenantId
);
impl TenantId {
    pub const MAX: usize = 63;
    pub fn parse(v: &str) -> Result<Self, IdError> {
        check(v, "tenant", Self::MAX, "a-z, 0-9, -", |i, c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || (i > 0 && c == '-')
        })?;
        Ok(Self(v.to_owned()))
    }
}

newtype!(
    /// An external account id (e.g. a HubSpot company id or a customer key).
    AccountId
);
impl AccountId {
    pub const MAX: usize = 128;
    pub fn parse(v: &str) -> Result<Self, IdError> {
        check(
            v,
            "account",
            Self::MAX,
            "A-Z a-z 0-9 - _ . : @ + / =",
            |_, c| id_char(c),
        )?;
        Ok(Self(v.to_owned()))
    }
}

newtype!(
    /// A meter (event definition) name: `lower_snake` with optional dots.
    MeterName
);
impl MeterName {
    pub const MAX: usize = 64;
    pub fn parse(v: &str) -> Result<Self, IdError> {
        check(
            v,
            "meter",
            Self::MAX,
            "lowercase letter first, then a-z 0-9 _ .",
            |i, c| {
                c.is_ascii_lowercase() || (i > 0 && (c.is_ascii_digit() || c == '_' || c == '.'))
            },
        )?;
        Ok(Self(v.to_owned()))
    }
}

newtype!(
    /// A service line / product line that usage is attributed to.
    ServiceLine
);
impl ServiceLine {
    pub const MAX: usize = 64;
    pub const DEFAULT: &'static str = "default";
    pub fn parse(v: &str) -> Result<Self, IdError> {
        check(v, "service_line", Self::MAX, "A-Z a-z 0-9 - _ .", |_, c| {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
        })?;
        Ok(Self(v.to_owned()))
    }
    pub fn default_line() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

newtype!(
    /// A client-supplied event id: the idempotency key within (tenant, source).
    EventId
);
impl EventId {
    pub const MAX: usize = 200;
    pub fn parse(v: &str) -> Result<Self, IdError> {
        check(v, "id", Self::MAX, "printable characters", |_, c| {
            !c.is_control() && !c.is_whitespace()
        })?;
        Ok(Self(v.to_owned()))
    }
}

/// Where an event came from; part of its idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Api,
    Hubspot,
    Import,
}
impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Hubspot => "hubspot",
            Source::Import => "import",
        }
    }
}

/// Usage lifecycle stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Requested,
    Delivered,
    Billed,
}
impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Requested, Stage::Delivered, Stage::Billed];
    pub fn parse(v: &str) -> Option<Stage> {
        Self::ALL.into_iter().find(|s| s.as_str() == v)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Requested => "requested",
            Stage::Delivered => "delivered",
            Stage::Billed => "billed",
        }
    }
}

/// Account size tier used to normalise and aggregate usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    Smb,
    MidMarket,
    Enterprise,
    Strategic,
    /// Usage of an account we have no profile for (yet): orphaned usage.
    Unassigned,
}
impl Segment {
    pub const ALL: [Segment; 5] = [
        Segment::Smb,
        Segment::MidMarket,
        Segment::Enterprise,
        Segment::Strategic,
        Segment::Unassigned,
    ];
    pub fn parse(v: &str) -> Option<Segment> {
        Self::ALL.into_iter().find(|s| s.as_str() == v)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Segment::Smb => "smb",
            Segment::MidMarket => "mid_market",
            Segment::Enterprise => "enterprise",
            Segment::Strategic => "strategic",
            Segment::Unassigned => "unassigned",
        }
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_names_must_start_with_a_lowercase_letter() {
        assert!(MeterName::parse("api_calls").is_ok());
        assert!(MeterName::parse("v2.api_calls").is_ok());
        assert!(MeterName::parse("1calls").is_err());
        assert!(MeterName::parse("Api").is_err());
        assert!(MeterName::parse("a#b").is_err());
        assert!(MeterName::parse("").is_err());
    }

    #[test]
    fn account_ids_never_contain_the_key_separator() {
        assert!(AccountId::parse("12345").is_ok());
        assert!(AccountId::parse("acme@corp.com").is_ok());
        assert!(matches!(
            AccountId::parse("a#1"),
            Err(IdError::BadChar { .. })
        ));
        assert!(AccountId::parse("a b").is_err());
        assert!(matches!(
            AccountId::parse(&"x".repeat(129)),
            Err(IdError::TooLong { .. })
        ));
    }

    #[test]
    fn tenants_are_lowercase_slugs() {
        assert!(TenantId::parse("acme-co").is_ok());
        assert!(TenantId::parse("-acme").is_err());
        assert!(TenantId::parse("Acme").is_err());
    }

    #[test]
    fn stages_and_segments_round_trip_through_their_names() {
        for s in Stage::ALL {
            assert_eq!(Stage::parse(s.as_str()), Some(s));
        }
        for s in Segment::ALL {
            assert_eq!(Segment::parse(s.as_str()), Some(s));
        }
        assert_eq!(Stage::parse("shipped"), None);
    }
}

newtype!(
    /// An entitlement id, chosen by the caller (e.g. a contract line id).
    EntitlementId
);
impl EntitlementId {
    pub const MAX: usize = 128;
    pub fn parse(v: &str) -> Result<Self, IdError> {
        check(
            v,
            "entitlement",
            Self::MAX,
            "A-Z a-z 0-9 - _ . : @ + / =",
            |_, c| id_char(c),
        )?;
        Ok(Self(v.to_owned()))
    }
}
