//! Legacy migration: bulk import of historical events (JSONL or CSV) through the same
//! validation (registry, aliases, schemas) and the same exactly-once path as ingest.
//!
//! Chunk ids are derived from the events each chunk carries ([`content_id`]), so a
//! chunk id names exactly one content, as the part markers require: a re-run with
//! the same registry finds its own claims and part markers and counts nothing twice,
//! and a re-run after the registry changed (say, a meter defined since) counts exactly
//! the events not counted yet (docs/adr/0001, "Import re-runs"). Events keep their
//! ids under the `import` source, so they never collide with live API events.

use domain::audit::store::QualityRecorder;
use domain::chunk::{pack, Chunk, SQS_MAX_BYTES};
use domain::event::{validate_all, Limits, RejectCode, Rejection, TenantPolicy, ValidationContext};
use domain::horizon::Horizon;
use domain::ids::MeterName;
use domain::ids::{Source, TenantId};
use domain::pipeline::{process_chunk, record_quality, ChunkJournal, LedgerStore, PipelineConfig};
use domain::quarantine::{QuarantineStore, Quarantined};
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};

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
    Store(#[from] domain::ports::StoreError),
    #[error("packing failed: {0}")]
    Pack(#[from] domain::chunk::PackError),
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
    /// Of `counted`: events of chunks an interrupted run had begun, completed first.
    pub resumed: usize,
    pub chunks: usize,
    /// Valid events of deleted (or, by policy, deprecated) definitions, per reason:
    /// held in quarantine (with `dry_run`: would be), counted when restored.
    pub quarantined: BTreeMap<String, usize>,
}

/// Events the importer claims per store call (one conditional transaction on
/// DynamoDB): about a hundredth of the requests of one put per event, at 2 write units
/// per claim instead of 1 (docs/adr/0001, "Import: claims in groups").
pub const IMPORT_CLAIM_GROUP: usize = domain::pipeline::MAX_CLAIM_GROUP;

/// Most refusals listed one by one.
pub const MAX_LISTED_REFUSALS: usize = 100;

pub struct Importer<'a> {
    pub ledger: &'a dyn LedgerStore,
    pub quality: Option<&'a dyn QualityRecorder>,
    /// Where events of deleted / deprecated definitions are held (`None`: refused).
    pub quarantine: Option<&'a dyn QuarantineStore>,
    /// Chunks begun and not finished, completed by the next run (`None`: an
    /// interrupted run's claims may stay uncounted if the next run's chunks differ).
    pub journal: Option<&'a dyn ChunkJournal>,
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
        // The ledger forgets `cfg.retention` after receipt: older events are refused
        // whatever the policy says, or a later resend would be counted twice.
        let limits = Limits {
            max_backfill_days: domain::horizon::widest_horizon_days(self.cfg.retention),
            ..Limits::default()
        };
        tracing::info!(tenant = %tenant, file_digest = digest, records = records.len(), dry_run, "import started");
        let mut report = ImportReport {
            dry_run,
            records: records.len(),
            ..Default::default()
        };
        let critical: HashSet<MeterName> = policy
            .governance
            .schemas
            .iter()
            .filter(|(_, s)| s.critical)
            .map(|(m, _)| m.clone())
            .collect();
        if let (false, Some(j)) = (dry_run, self.journal) {
            for chunk in j.unfinished(tenant).await? {
                let before = report.counted;
                self.count(&chunk, &critical, &mut report).await?;
                let counted = report.counted.saturating_sub(before);
                report.resumed += counted;
                tracing::info!(tenant = %tenant, chunk = %chunk.chunk, counted, "completed a chunk an interrupted import had begun");
            }
        }
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
            let (valid, held) = domain::quarantine::split(valid, policy);
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
                // `pack` sizes each message with its chunk id in it, so it is given an id
                // of the final length ("import-" + 32 hex); each packed chunk is then
                // named by its content (`content_id`), which has that same length.
                let mut new_id = || format!("import-{}", "0".repeat(32));
                let packed = pack(
                    tenant,
                    Source::Import,
                    received_at,
                    valid,
                    SQS_MAX_BYTES - 1024,
                    &mut new_id,
                )?;
                for p in &packed {
                    let mut chunk: Chunk = serde_json::from_str(&p.body)?;
                    chunk.chunk = content_id(&chunk)?;
                    self.count(&chunk, &critical, &mut report).await?;
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

impl Importer<'_> {
    /// Counts one chunk: journaled first, then claimed and applied, its data-quality
    /// counters recorded, and only then forgotten by the journal.
    async fn count(
        &self,
        chunk: &Chunk,
        critical: &HashSet<MeterName>,
        report: &mut ImportReport,
    ) -> Result<(), ImportError> {
        if let Some(j) = self.journal {
            j.begin(chunk).await?;
        }
        let outcome = process_chunk(self.ledger, chunk, &self.cfg).await?;
        // Every unit already applied: this exact chunk was counted by an earlier run.
        let again = if outcome.units_applied == 0 && outcome.units_already_applied > 0 {
            outcome.counted
        } else {
            0
        };
        report.counted += outcome.counted - again;
        report.already_imported += outcome.duplicates + again;
        report.chunks += 1;
        if let Some(q) = self.quality {
            record_quality(q, chunk, &outcome, critical, self.cfg.retention).await?;
        }
        if let Some(j) = self.journal {
            j.finish(&chunk.tenant, &chunk.chunk).await?;
        }
        Ok(())
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

/// A file's digest (logged with each run, to tell runs of the same file apart).
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Names a chunk by what it carries: a digest of its tenant, source and events (their
/// normalised JSON, in order). The same events give the same id, and so the same claims
/// and parts; any other content gives another id. `received_at` is left out: it sets
/// expiry times and the data-quality day, not what is counted (a defaulted timestamp
/// it fed is part of the event, so it is in).
pub fn content_id(chunk: &Chunk) -> Result<String, serde_json::Error> {
    let mut h = Sha256::new();
    h.update(b"import-chunk-v1\n");
    h.update(chunk.tenant.as_str().as_bytes());
    h.update(b"\n");
    h.update(chunk.source.as_str().as_bytes());
    h.update(b"\n");
    for e in &chunk.events {
        h.update(serde_json::to_vec(e)?);
        h.update(b"\n");
    }
    Ok(format!("import-{}", hex::encode(&h.finalize()[..16])))
}

/// A policy for history: the tenant's, with the backfill horizon set to `horizon`
/// (which [`Horizon::parse`] has checked against the ledger's retention).
pub fn import_policy(mut policy: TenantPolicy, horizon: Horizon) -> TenantPolicy {
    policy.backfill_days = horizon.as_days();
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

    mod reruns {
        use super::super::*;
        use domain::event::{DefinitionStatus, MeterRule};
        use domain::ids::{MeterName, Segment};
        use domain::pipeline::PipelineConfig;
        use domain::rollup::{aggregate, RollupDelta, RollupKey};
        use memory::{Fault, MemoryLedger};
        use proptest::prelude::*;

        const METERS: [&str; 3] = ["api_calls", "seats", "storage_gb"];

        fn policy(defined: &[bool]) -> TenantPolicy {
            let mut p = TenantPolicy {
                backfill_days: 30,
                ..Default::default()
            };
            for (m, _) in METERS.iter().zip(defined).filter(|(_, on)| **on) {
                let meter = MeterName::parse(m).unwrap();
                p.meters.insert(
                    meter.clone(),
                    MeterRule {
                        meter,
                        unit: None,
                        status: DefinitionStatus::Active,
                    },
                );
            }
            p
        }

        /// Each distinct event of the file counted once, as the rollups should hold it.
        fn expected(tenant: &TenantId, lines: &[String]) -> Vec<(RollupKey, RollupDelta)> {
            let p = policy(&[true; 3]);
            let limits = Limits::default();
            let ctx = ValidationContext {
                received_at: chrono::Utc::now(),
                policy: &p,
                limits: &limits,
            };
            let raws: Vec<Box<RawValue>> = lines
                .iter()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let raw: Vec<&RawValue> = raws.iter().map(|r| r.as_ref()).collect();
            let (valid, rejected) = validate_all(&raw, &ctx);
            assert!(rejected.is_empty(), "{rejected:?} {tenant}");
            aggregate(valid.iter().map(|(_, e)| (e, Segment::Unassigned)))
                .into_iter()
                .collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            /// Issue #11, defect 2: whatever the registry refused in earlier runs, and
            /// wherever a run was interrupted, the last runs (every meter defined) leave
            /// each event counted exactly once; without interruptions the runs'
            /// `counted` figures add up to the number of events.
            #[test]
            fn reruns_under_a_changing_registry_count_every_event_exactly_once(
                events in prop::collection::vec((0usize..3, 0u8..3, 1u32..50, 0i64..72), 1..30),
                registries in prop::collection::vec(
                    (prop::collection::vec(any::<bool>(), 3), prop::option::of((0usize..60, any::<bool>()))),
                    0..4,
                ),
                batch in 1usize..8,
                claim_group in prop_oneof![Just(1usize), 2usize..6],
            ) {
                let base = chrono::Utc::now() - chrono::Duration::days(4);
                let lines: Vec<String> = events
                    .iter()
                    .enumerate()
                    .map(|(i, (m, a, q, h))| {
                        let ts = (base + chrono::Duration::hours(*h))
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                        format!(
                            r#"{{"id":"e{i}","account":"acct-{a}","meter":"{}","quantity":{q},"timestamp":"{ts}"}}"#,
                            METERS[*m]
                        )
                    })
                    .collect();
                let records = jsonl_records(&lines.join("\n"));
                let tenant = TenantId::parse("acme").unwrap();
                let ledger = MemoryLedger::new();
                let importer = Importer {
                    ledger: &ledger,
                    quality: None,
                    quarantine: None,
                    journal: Some(&ledger),
                    cfg: PipelineConfig {
                        claim_group,
                        ..PipelineConfig::default()
                    },
                    batch,
                };
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                let mut counted = 0;
                let mut interrupted = false;
                for (defined, fault) in &registries {
                    if let Some((n, after)) = fault {
                        ledger.fail_call(*n, if *after { Fault::After } else { Fault::Before });
                    }
                    match rt.block_on(importer.run(&tenant, &policy(defined), &records, "d", false, &|_| {})) {
                        Ok(r) => counted += r.counted,
                        Err(_) => interrupted = true,
                    }
                    // A fault that did not strike in this run must not strike later.
                    ledger.clear_faults();
                }
                let all = policy(&[true; 3]);
                let done = rt
                    .block_on(importer.run(&tenant, &all, &records, "d", false, &|_| {}))
                    .unwrap();
                counted += done.counted;
                let last = rt
                    .block_on(importer.run(&tenant, &all, &records, "d", false, &|_| {}))
                    .unwrap();
                if !interrupted {
                    prop_assert_eq!(counted, events.len());
                }
                prop_assert_eq!((last.counted, last.already_imported), (0, events.len()));
                let got: Vec<(RollupKey, RollupDelta)> =
                    ledger.rollups().into_iter().map(|((_, k), d)| (k, d)).collect();
                prop_assert_eq!(got, expected(&tenant, &lines));
            }
        }
    }

    #[test]
    fn the_format_follows_the_flag_or_the_extension() {
        assert_eq!(Format::detect(None, "x.csv"), Some(Format::Csv));
        assert_eq!(Format::detect(None, "x.jsonl"), Some(Format::Jsonl));
        assert_eq!(Format::detect(Some("xml"), "x.csv"), None);
    }
}
