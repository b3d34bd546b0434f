//! Everything a HubSpot webhook request's bytes reach before the queue (signature
//! checks, app batch and workflow parsing) and after it (idempotency keys, facts,
//! mapping, profile sync), fed arbitrary input: nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use domain::hubspot::attribution::{facts, subject};
use domain::hubspot::mapping::{default_rules, map_event};
use domain::hubspot::profile::{default_profile_sync, profile_change};
use domain::hubspot::replay::{check_fresh, request_key, LegacyPolicy};
use domain::hubspot::signature::{verify, LegacyVersions, Signed, Version};
use domain::hubspot::webhook::{parse_batch, AppEvent};
use domain::hubspot::workflow::{parse_workflow, QueryTrust, WorkflowQuery};

fn exercise(ev: &AppEvent) {
    let _ = ev.idempotency_key();
    let _ = facts(ev);
    let _ = subject(ev);
    let rules = default_rules();
    let _ = map_event(&rules, ev);
    let _ = profile_change(&default_profile_sync(), ev);
}

fuzz_target!(|data: &[u8]| {
    // The first byte is the length of a header block (URI, v3 signature, timestamp,
    // legacy signature, version, one per line; also read as a query string); the rest
    // is the body.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (head, body) = rest.split_at((n as usize).min(rest.len()));
    let head = String::from_utf8_lossy(head);
    let mut parts = head.split('\n');
    let signed = Signed {
        method: "POST",
        uri: parts.next().unwrap_or_default(),
        body,
        v3: parts.next(),
        timestamp: parts.next(),
        legacy: parts.next(),
        version: parts.next(),
    };
    let all = LegacyVersions { v1: true, v2: true };
    let _ = verify(&signed, &["secret".to_owned()], 1_764_000_000_000, all);
    let _ = verify(
        &signed,
        &["secret".to_owned()],
        1_764_000_000_000,
        LegacyVersions::NONE,
    );
    let _ = request_key(Version::V2, "POST", signed.uri, body);
    let _ = domain::hubspot::mapping::property_quantity(&String::from_utf8_lossy(body));
    let policy = LegacyPolicy::from_settings("v1,v2", None).ok().flatten();

    if let Ok(events) = parse_batch(body) {
        for ev in &events {
            exercise(ev);
        }
        if let Some(p) = &policy {
            let _ = check_fresh(&events, Version::V1, p, 1_764_000_000_000);
        }
    }
    let query = WorkflowQuery::from_pairs(head.split('&').filter_map(|kv| kv.split_once('=')));
    for trust in [QueryTrust::Signed, QueryTrust::Unsigned] {
        if let Ok(ev) = parse_workflow(body, &query, trust, 1_764_000_000_000) {
            exercise(&ev);
        }
    }
    let _ = domain::hubspot::import::associations_from_body(body, 0);
});
