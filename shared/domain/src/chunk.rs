//! The SQS message format: many validated events of one request per message.
//!
//! A chunk's body never changes across redeliveries, so its id is a stable name for
//! "this exact set of events", which the rollup uses to recognise its own earlier work.

use crate::event::UsageEvent;
use crate::ids::{Source, TenantId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// SQS's message size limit (body + attributes), and the batch-call payload limit.
pub const SQS_MAX_BYTES: usize = 262_144;
/// Entries per `SendMessageBatch` call.
pub const SQS_MAX_BATCH: usize = 10;
pub const CHUNK_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub v: u8,
    pub chunk: String,
    pub tenant: TenantId,
    pub source: Source,
    pub received_at: DateTime<Utc>,
    pub events: Vec<UsageEvent>,
}

#[derive(Serialize)]
struct Header<'a> {
    v: u8,
    chunk: &'a str,
    tenant: &'a TenantId,
    source: Source,
    received_at: DateTime<Utc>,
}

/// One SQS message body and the request indices of the events inside it.
#[derive(Debug, Clone)]
pub struct PackedChunk {
    pub body: String,
    pub indices: Vec<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("serialising an event failed: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("event at index {0} alone exceeds the SQS message limit")]
    EventTooLarge(usize),
}

/// Packs events into as few messages as fit under `max_bytes` each. Events are sorted
/// by account and meter first so each message pre-aggregates well.
pub fn pack(
    tenant: &TenantId,
    source: Source,
    received_at: DateTime<Utc>,
    mut events: Vec<(usize, UsageEvent)>,
    max_bytes: usize,
    new_id: &mut dyn FnMut() -> String,
) -> Result<Vec<PackedChunk>, PackError> {
    events.sort_by(|a, b| {
        (&a.1.account, &a.1.meter, a.1.stage, a.0).cmp(&(&b.1.account, &b.1.meter, b.1.stage, b.0))
    });
    let mut out = Vec::new();
    let mut current: Option<(String, Vec<usize>, String)> = None; // (prefix, indices, events json)
    for (index, ev) in events {
        let json = serde_json::to_string(&ev)?;
        loop {
            let (prefix, indices, body) = current.get_or_insert_with(|| {
                let id = new_id();
                let header = Header {
                    v: CHUNK_VERSION,
                    chunk: &id,
                    tenant,
                    source,
                    received_at,
                };
                let mut prefix = serde_json::to_string(&header).unwrap_or_default();
                prefix.pop(); // drop the closing brace; events are appended
                prefix.push_str(",\"events\":[");
                (prefix, Vec::new(), String::new())
            });
            let size = prefix.len() + body.len() + json.len() + 3;
            if size <= max_bytes {
                if !body.is_empty() {
                    body.push(',');
                }
                body.push_str(&json);
                indices.push(index);
                break;
            }
            if indices.is_empty() {
                return Err(PackError::EventTooLarge(index));
            }
            if let Some(done) = current.take() {
                out.push(finish(done));
            }
        }
    }
    if let Some(done) = current.take() {
        out.push(finish(done));
    }
    Ok(out)
}

fn finish((prefix, indices, events): (String, Vec<usize>, String)) -> PackedChunk {
    PackedChunk {
        body: format!("{prefix}{events}]}}"),
        indices,
    }
}

/// Groups message bodies into `SendMessageBatch` calls within SQS's entry and byte caps.
pub fn batch_calls(sizes: &[usize]) -> Vec<Vec<usize>> {
    let mut calls: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for (i, &size) in sizes.iter().enumerate() {
        match calls.last_mut() {
            Some(call) if call.len() < SQS_MAX_BATCH && bytes + size <= SQS_MAX_BYTES => {
                call.push(i);
                bytes += size;
            }
            _ => {
                calls.push(vec![i]);
                bytes = size;
            }
        }
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::*;
    use rust_decimal::Decimal;

    fn ev(i: usize) -> UsageEvent {
        UsageEvent::new(
            EventId::parse(&format!("event-{i}")).unwrap(),
            AccountId::parse(&format!("acct-{}", i % 7)).unwrap(),
            MeterName::parse("api_calls").unwrap(),
            Decimal::from(i as i64),
            Utc::now(),
        )
    }

    #[test]
    fn packing_respects_the_size_limit_and_keeps_every_event_once() {
        let t = TenantId::parse("acme").unwrap();
        let events: Vec<_> = (0..500).map(|i| (i, ev(i))).collect();
        let mut n = 0;
        let mut ids = || {
            n += 1;
            format!("c{n}")
        };
        let chunks = pack(&t, Source::Api, Utc::now(), events, 20_000, &mut ids).unwrap();
        assert!(chunks.len() > 1);
        let mut seen = Vec::new();
        for c in &chunks {
            assert!(c.body.len() <= 20_000, "{}", c.body.len());
            let parsed: Chunk = serde_json::from_str(&c.body).unwrap();
            assert_eq!(parsed.events.len(), c.indices.len());
            seen.extend(c.indices.iter().copied());
        }
        seen.sort();
        assert_eq!(seen, (0..500).collect::<Vec<_>>());
    }

    #[test]
    fn batch_calls_stay_under_ten_entries_and_the_byte_cap() {
        let calls = batch_calls(&[100; 25]);
        assert_eq!(
            calls.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![10, 10, 5]
        );
        let calls = batch_calls(&[200_000, 200_000, 10]);
        assert_eq!(calls, vec![vec![0], vec![1, 2]]);
    }
}
