//! Legacy migration: bulk import of historical events (JSONL or CSV) through the same
//! validation (registry, aliases, schemas) and the same exactly-once path as ingest.
//!
//! Chunk ids are derived from the file's digest and the chunk's position, so a re-run
//! of the same file finds its own claims and part markers and counts nothing twice;
//! an interrupted run is completed by running it again. Events keep their ids under
//! the `import` source, so they never collide with live API events.

use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use shared::audit::series::critical_series;
use shared::audit::store::QualityRecorder;
use shared::chunk::{pack, Chunk, SQS_MAX_BYTES};
use shared::event::{validate_all, Limits, RejectCode, Rejection, TenantPolicy, ValidationContext};
use shared::ids::{Source, TenantId};
use shared::pipeline::{process_chunk, LedgerStore, PipelineConfig};
use shared::quarantine::{QuarantineStore, Quarantined};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
}

impl Format {
    /// From a name (`jsonl`, `csv`) or, failing that, the file extension.
    pub fn detect(name: Option<&str>, path: &str) -> Option<Self> {
        match name {
            Some("jsonl" | "ndjson" | "json") => Some(Self::Jsonl),
            Some("csv") => Some(Self::Csv),
            Some(_) => None,
            None if path.ends_with(".csv") => Some(Self::Csv),
            None => Some(Self::Jsonl),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("CSV header has no '{0}' column")]
    MissingColumn(&'static str),
    #[error(transparent)]
    Store(#[from] shared::store::StoreError),
    #[error("packing failed: {0}")]
    Pack(#[from] shared::chunk::PackError),
    #[error("chunk could not be read back: {0}")]
    Chunk(#[from] serde_json::Error),
}

/// One input record: its line number and its JSON text (or why it has none).
#[derive(Debug, Clone)]
pub struct Record {
    pub line: usize,
    pub json: Result<String, String>,
}

/// Splits JSONL into records (blank lines skipped).
pub fn jsonl_records(text: &str) -> Vec<Record> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| Record {
            line: i + 1,
            json: Ok(l.trim().to_owned()),
        })
        .collect()
}

const CSV_TEXT: &[&str] = &[
    "id",
    "account",
    "meter",
    "unit",
    "timestamp",
    "contact",
    "entitlement",
    "service_line",
    "stage",
    "correction_reason",
];

fn numeric_literal(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .next()
            .is_some_and(|b| b == b'-' || b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
        && serde_json::from_str::<&RawValue>(s).is_ok()
}

/// Reads CSV with a header row into JSON events. Known columns: id, account, meter,
/// quantity (kept as the exact literal), unit, timestamp, contact, entitlement,
/// service_line, stage, correction_reason, properties (a JSON object). Empty cells
/// are absent; unknown columns are refused per record (`unknown_field`) by validation.
pub fn csv_records(text: &str) -> Result<Vec<Record>, ImportError> {
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = rd.headers()?.iter().map(|h| h.trim().to_owned()).collect();
    for required in ["id", "account", "meter"] {
        if !headers.iter().any(|h| h == required) {
            return Err(ImportError::MissingColumn(required));
        }
    }
    let mut out = Vec::new();
    for (i, row) in rd.records().enumerate() {
        let line = i + 2;
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                out.push(Record {
                    line,
                    json: Err(e.to_string()),
                });
                continue;
            }
        };
        let mut parts = Vec::new();
        let mut problem = None;
        for (h, v) in headers.iter().zip(row.iter()) {
            if v.is_empty() {
                continue;
            }
            let key = serde_json::to_string(h).unwrap_or_default();
            let value = if h == "quantity" {
                if numeric_literal(v.trim()) {
                    v.trim().to_owned()
                } else {
                    serde_json::to_string(v).unwrap_or_default()
                }
            } else if h == "properties" {
                match serde_json::from_str::<&RawValue>(v) {
                    Ok(raw) => raw.get().to_owned(),
                    Err(e) => {
                        problem = Some(format!("properties is not JSON: {e}"));
                        break;
                    }
                }
            } else if CSV_TEXT.contains(&h.as_str()) || !h.is_empty() {
                serde_json::to_string(v).unwrap_or_default()
            } else {
                continue;
            };
            parts.push(format!("{key}:{value}"));
        }
        out.push(Record {
            line,
            json: match problem {
                Some(p) => Err(p),
                None => Ok(format!("{{{}}}", parts.join(","))),
            },
        });
    }
    Ok(out)
}

/// A refused record of the import.
#[derive(Debug, Clone, Serialize)]
pub struct Refused {
    pub line: usize,
    pub code: String,
    pub message: String,
}

/// What an import did (or, with `dry_run`, would do).
#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    pub dry_run: bool,
    pub records: usize,
    pub valid: usize,
    pub refused: usize,
    pub refused_by_code: BTreeMap<String, usize>,
    /// The first refusals, with their line numbers.
    pub refusals: Vec<Refused>,
    /// Valid events per (current) meter.
    pub by_meter: BTreeMap<String, usize>,
    /// Valid events sent under a legacy alias, per alias -> meter.
    pub aliases: BTreeMap<String, usize>,
    /// Newly counted by this run.
    pub counted: usize,
    /// Counted by an earlier run (or already present as API events' duplicates).
    pub already_imported: usize,
    pub chunks: usize,
    /// Valid events of deleted (or, by policy, deprecated) definitions, per reason:
    /// held in quarantine (with `dry_run`: would be), counted when restored.
    pub quarantined: BTreeMap<String, usize>,
}

/// Most refusals listed one by one.
pub const MAX_LISTED_REFUSALS: usize = 100;

pub struct Importer<'a> {
    pub ledger: &'a dyn LedgerStore,
    pub quality: Option<&'a dyn QualityRecorder>,
    /// Where events of deleted / deprecated definitions are held (`None`: refused).
    pub quarantine: Option<&'a dyn QuarantineStore>,
    pub cfg: PipelineConfig,
    /// Records validated and counted together (like one ingest request).
    pub batch: usize,
}

impl Importer<'_> {
    /// Validates and (unless `dry_run`) counts every record. `progress` is called
    /// with the number of records done after each batch.
    pub async fn run(
        &self,
        tenant: &TenantId,
        policy: &TenantPolicy,
        records: &[Record],
        digest: &str,
        dry_run: bool,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<ImportReport, ImportError> {
        let limits = Limits::default();
        let mut report = ImportReport {
            dry_run,
            records: records.len(),
            ..Default::default()
        };
        let mut chunk_no = 0usize;
        let critical: std::collections::HashSet<shared::ids::MeterName> = policy
            .governance
            .schemas
            .iter()
            .filter(|(_, s)| s.critical)
            .map(|(m, _)| m.clone())
            .collect();
        let mut done = 0;
        for batch in records.chunks(self.batch.max(1)) {
            let received_at = chrono::Utc::now();
            let mut raws: Vec<Box<RawValue>> = Vec::new();
            let mut lines = Vec::new();
            for r in batch {
                match r
                    .json
                    .as_ref()
                    .map(|j| serde_json::from_str::<Box<RawValue>>(j))
                {
                    Ok(Ok(raw)) => {
                        raws.push(raw);
                        lines.push(r.line);
                    }
                    Ok(Err(e)) => refuse(&mut report, r.line, "malformed_json", e.to_string()),
                    Err(e) => refuse(&mut report, r.line, "malformed_record", e.clone()),
                }
            }
            let raw: Vec<&RawValue> = raws.iter().map(|b| b.as_ref()).collect();
            let ctx = ValidationContext {
                received_at,
                policy,
                limits: &limits,
            };
            let (valid, mut rejected) = validate_all(&raw, &ctx);
            let (valid, held) = shared::quarantine::split(valid, policy);
            let observed = ingest::governance::observe(&raw, &valid, &held, &rejected, policy);
            if !held.is_empty() {
                match (dry_run, self.quarantine) {
                    (true, _) => {}
                    (false, Some(q)) => {
                        let records: Vec<Quarantined> = held
                            .iter()
                            .map(|(_, e, reason)| Quarantined {
                                source: Source::Import,
                                reason: *reason,
                                received_at,
                                event: e.clone(),
                            })
                            .collect();
                        q.hold(tenant, &records).await?;
                    }
                    (false, None) => {
                        rejected.extend(held.iter().map(|(index, e, reason)| Rejection {
                            index: *index,
                            id: Some(e.id.to_string()),
                            code: RejectCode::TemporarilyUnavailable,
                            message: format!("{}; no quarantine is configured", reason.as_str()),
                        }));
                    }
                }
                if dry_run || self.quarantine.is_some() {
                    for (_, _, reason) in &held {
                        *report
                            .quarantined
                            .entry(reason.as_str().to_owned())
                            .or_default() += 1;
                    }
                }
            }
            for rej in &rejected {
                let line = lines.get(rej.index).copied().unwrap_or(0);
                refuse(&mut report, line, rej.code.as_str(), rej.message.clone());
            }
            for (i, ev) in valid.iter().map(|(i, e)| (i, e)).chain(
                held.iter()
                    .filter(|_| dry_run || self.quarantine.is_some())
                    .map(|(i, e, _)| (i, e)),
            ) {
                report.valid += 1;
                *report.by_meter.entry(ev.meter.to_string()).or_default() += 1;
                if let Some(sent) = sent_as(raw[*i]) {
                    if sent != ev.meter.as_str() {
                        *report
                            .aliases
                            .entry(format!("{sent} -> {}", ev.meter))
                            .or_default() += 1;
                    }
                }
            }
            if !dry_run && !valid.is_empty() {
                let mut new_id = || {
                    chunk_no += 1;
                    let mut h = Sha256::new();
                    h.update(tenant.as_str().as_bytes());
                    h.update(digest.as_bytes());
                    h.update(chunk_no.to_le_bytes());
                    format!("import-{}", hex::encode(&h.finalize()[..16]))
                };
                let packed = pack(
                    tenant,
                    Source::Import,
                    received_at,
                    valid,
                    SQS_MAX_BYTES - 1024,
                    &mut new_id,
                )?;
                for p in &packed {
                    let chunk: Chunk = serde_json::from_str(&p.body)?;
                    let outcome = process_chunk(self.ledger, &chunk, &self.cfg).await?;
                    let again = if outcome.parts_applied == 0 && outcome.parts_already_applied > 0 {
                        outcome.counted
                    } else {
                        0
                    };
                    report.counted += outcome.counted - again;
                    report.already_imported += outcome.duplicates + again;
                    report.chunks += 1;
                    if let Some(q) = self.quality {
                        let expires_at = (chunk.received_at + self.cfg.retention).timestamp();
                        q.record_chunk(
                            tenant,
                            &chunk.chunk,
                            received_at.date_naive(),
                            &outcome.quality,
                            expires_at,
                        )
                        .await?;
                        let owned = outcome
                            .owned
                            .iter()
                            .filter_map(|&p| chunk.events.get(p as usize));
                        let series = critical_series(owned, &critical);
                        if !series.is_empty() {
                            q.record_series(tenant, &chunk.chunk, &series, expires_at)
                                .await?;
                        }
                    }
                }
            }
            if let (false, Some(q)) = (dry_run, self.quality) {
                ingest::governance::record(q, tenant, received_at, observed, &rejected).await;
            }
            done += batch.len();
            progress(done);
        }
        Ok(report)
    }
}

fn sent_as(raw: &RawValue) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct M {
        meter: Option<serde_json::Value>,
    }
    serde_json::from_str::<M>(raw.get())
        .ok()?
        .meter?
        .as_str()
        .map(str::to_owned)
}

fn refuse(report: &mut ImportReport, line: usize, code: &str, message: String) {
    report.refused += 1;
    *report.refused_by_code.entry(code.to_owned()).or_default() += 1;
    if report.refusals.len() < MAX_LISTED_REFUSALS {
        report.refusals.push(Refused {
            line,
            code: code.to_owned(),
            message,
        });
    }
}

/// The digest that names a file's chunks.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A policy for history: the tenant's, with the backfill horizon widened to `days`.
pub fn import_policy(mut policy: TenantPolicy, days: u32) -> TenantPolicy {
    policy.backfill_days = days.min(36_500);
    policy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_become_events_with_exact_quantities_and_json_properties() {
        let text = "id,account,meter,quantity,timestamp,properties\n\
                    e1,acme,api_calls,2.50,2026-01-01T00:00:00Z,\"{\"\"plan\"\":\"\"pro\"\"}\"\n\
                    e2,acme,api_calls,,,\n";
        let r = csv_records(text).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0].json.as_ref().unwrap(),
            r#"{"id":"e1","account":"acme","meter":"api_calls","quantity":2.50,"timestamp":"2026-01-01T00:00:00Z","properties":{"plan":"pro"}}"#
        );
        assert_eq!(
            r[1].json.as_ref().unwrap(),
            r#"{"id":"e2","account":"acme","meter":"api_calls"}"#
        );
        assert_eq!(r[1].line, 3);
    }

    #[test]
    fn a_csv_without_the_key_columns_is_refused_whole() {
        assert!(matches!(
            csv_records("id,meter\n1,a\n"),
            Err(ImportError::MissingColumn("account"))
        ));
    }

    #[test]
    fn a_non_numeric_quantity_stays_a_string_so_validation_names_it() {
        let r = csv_records("id,account,meter,quantity\ne,a,m,lots\ne2,a,m,1e400\n").unwrap();
        assert!(r[0].json.as_ref().unwrap().contains(r#""quantity":"lots""#));
        assert!(r[1].json.as_ref().unwrap().contains(r#""quantity":1e400"#));
    }

    #[test]
    fn the_format_follows_the_flag_or_the_extension() {
        assert_eq!(Format::detect(None, "x.csv"), Some(Format::Csv));
        assert_eq!(Format::detect(None, "x.jsonl"), Some(Format::Jsonl));
        assert_eq!(Format::detect(Some("xml"), "x.csv"), None);
    }
}
