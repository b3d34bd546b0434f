//! Attribution of HubSpot changes to companies: what a change is about, and what it
//! teaches about which company an object belongs to (associations and merges).

use super::webhook::AppEvent;

/// The CRM object a change concerns, e.g. (`ticket`, 901).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: String,
    pub id: u64,
}

/// What an association or merge event teaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    Associate {
        object: ObjectRef,
        company: u64,
    },
    Dissociate {
        object: ObjectRef,
        company: u64,
    },
    /// `merged` no longer exists; its usage belongs to `into` from now on.
    CompanyMerged {
        merged: u64,
        into: u64,
    },
}

fn kind_of_type_id(id: &str) -> Option<&'static str> {
    Some(match id {
        "0-1" => "contact",
        "0-2" => "company",
        "0-3" => "deal",
        "0-5" => "ticket",
        "0-47" => "meeting",
        "0-48" => "call",
        "0-49" => "email",
        "0-46" => "note",
        "0-27" => "task",
        _ => return None,
    })
}

/// The object a change is about, if any.
pub fn subject(ev: &AppEvent) -> Option<ObjectRef> {
    let prefix = super::webhook::object_kind(&ev.subscription_type);
    let kind = if prefix == "object" || prefix == "workflow" {
        kind_of_type_id(ev.object_type_id.as_deref()?)?.to_owned()
    } else {
        prefix.to_ascii_lowercase()
    };
    // Kinds become part of storage keys: only plain lowercase names are accepted.
    let plain = !kind.is_empty()
        && kind.len() <= 32
        && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    plain.then_some(ObjectRef {
        kind,
        id: ev.object_id?,
    })
}

/// Identity facts carried by an association-change or merge event.
pub fn facts(ev: &AppEvent) -> Vec<Fact> {
    let sub = ev.subscription_type.as_str();
    if sub.ends_with(".associationChange") {
        let (Some(kind), Some(from), Some(to)) = (
            ev.association_type.as_deref(),
            ev.from_object_id,
            ev.to_object_id,
        ) else {
            return Vec::new();
        };
        let upper = kind.to_ascii_uppercase();
        let (object, company) = if let Some(obj) = upper.strip_suffix("_TO_COMPANY") {
            (
                ObjectRef {
                    kind: obj.to_ascii_lowercase(),
                    id: from,
                },
                to,
            )
        } else if let Some(obj) = upper.strip_prefix("COMPANY_TO_") {
            (
                ObjectRef {
                    kind: obj.to_ascii_lowercase(),
                    id: to,
                },
                from,
            )
        } else {
            return Vec::new();
        };
        let plain = !object.kind.is_empty()
            && object.kind.len() <= 32
            && object
                .kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_');
        if object.kind == "company" || !plain {
            return Vec::new(); // company-to-company (parent/child) does not attribute usage
        }
        return vec![if ev.association_removed == Some(true) {
            Fact::Dissociate { object, company }
        } else {
            Fact::Associate { object, company }
        }];
    }
    if let Some(company) = ev.associated_company_id {
        // A workflow payload names the company its record belongs to.
        return match subject(ev) {
            Some(object) if object.kind != "company" => vec![Fact::Associate { object, company }],
            _ => Vec::new(),
        };
    }
    if sub == "company.merge" {
        let into = ev.primary_object_id.or(ev.new_object_id).or(ev.object_id);
        if let Some(into) = into {
            return ev
                .merged_object_ids
                .iter()
                .flatten()
                .filter(|&&m| m != into)
                .map(|&merged| Fact::CompanyMerged { merged, into })
                .collect();
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assoc(kind: &str, from: u64, to: u64, removed: bool) -> AppEvent {
        AppEvent {
            portal_id: 1,
            occurred_at: 1,
            subscription_type: "ticket.associationChange".into(),
            association_type: Some(kind.into()),
            from_object_id: Some(from),
            to_object_id: Some(to),
            association_removed: Some(removed),
            ..AppEvent::default()
        }
    }

    #[test]
    fn associations_in_either_direction_link_an_object_to_its_company() {
        let t = ObjectRef {
            kind: "ticket".into(),
            id: 9,
        };
        assert_eq!(
            facts(&assoc("TICKET_TO_COMPANY", 9, 100, false)),
            vec![Fact::Associate {
                object: t.clone(),
                company: 100
            }]
        );
        assert_eq!(
            facts(&assoc("COMPANY_TO_TICKET", 100, 9, false)),
            vec![Fact::Associate {
                object: t.clone(),
                company: 100
            }]
        );
        assert_eq!(
            facts(&assoc("TICKET_TO_COMPANY", 9, 100, true)),
            vec![Fact::Dissociate {
                object: t,
                company: 100
            }]
        );
        assert!(facts(&assoc("CONTACT_TO_DEAL", 1, 2, false)).is_empty());
        assert!(facts(&assoc("COMPANY_TO_COMPANY", 1, 2, false)).is_empty());
    }

    #[test]
    fn a_company_merge_points_every_merged_id_at_the_survivor() {
        let ev = AppEvent {
            portal_id: 1,
            occurred_at: 1,
            subscription_type: "company.merge".into(),
            object_id: Some(100),
            primary_object_id: Some(100),
            merged_object_ids: Some(vec![100, 200, 300]),
            ..AppEvent::default()
        };
        assert_eq!(
            facts(&ev),
            vec![
                Fact::CompanyMerged {
                    merged: 200,
                    into: 100
                },
                Fact::CompanyMerged {
                    merged: 300,
                    into: 100
                }
            ]
        );
    }

    #[test]
    fn generic_object_events_name_their_kind_by_type_id() {
        let ev = AppEvent {
            subscription_type: "object.creation".into(),
            object_type_id: Some("0-47".into()),
            object_id: Some(5),
            ..AppEvent::default()
        };
        assert_eq!(
            subject(&ev),
            Some(ObjectRef {
                kind: "meeting".into(),
                id: 5
            })
        );
        let ev = AppEvent {
            subscription_type: "ticket.creation".into(),
            object_id: Some(6),
            ..AppEvent::default()
        };
        assert_eq!(
            subject(&ev),
            Some(ObjectRef {
                kind: "ticket".into(),
                id: 6
            })
        );
    }
}
