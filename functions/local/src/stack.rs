//! The whole system in one process: every handler wired to the provisioned resources,
//! exactly as each function's `main.rs` wires it on Lambda.

use crate::esm::{Mapping, Poller, SqsHandler};
use crate::jobs::{DlqDepth, Job, Scheduler};
use crate::provision::Provisioned;
use anyhow::Result;
use aws::dynamo::{AdminError, DynamoStore};
use aws::sqs::SqsQueue;
use aws_config::SdkConfig;
use domain::definition::Definition;
use domain::health::writeback::Tokens;
use domain::ids::{MeterName, TenantId};
use domain::pipeline::PipelineConfig;
use domain::ports::DefinitionStore;
use std::sync::Arc;
use std::time::Duration;

pub struct Stack {
    pub store: Arc<DynamoStore>,
    pub queue: Arc<SqsQueue>,
    pub ingest: Arc<ingest::Ingest>,
    pub rollup: Arc<rollup::Rollup>,
    pub api: Arc<api::Api>,
    pub notify: Arc<notify::Notify>,
    pub poller: Arc<Poller>,
    /// Event source mapping of the alerts queue onto notify.
    pub alerts_poller: Arc<Poller>,
    pub sns: aws_sdk_sns::Client,
    pub alerts_topic_arn: String,
    pub scheduler: Scheduler,
    pub sqs: aws_sdk_sqs::Client,
    pub dlq_url: String,
    /// Health scoring: the score function and its shard-queue mapping.
    pub score: Arc<score::Score>,
    pub score_poller: Arc<Poller>,
    /// The FIFO write-back queue's mapping onto the score function (HubSpot company
    /// updates and play tasks, one portal's messages at a time).
    pub writeback_poller: Arc<Poller>,
    pub audit: Arc<audit::Audit>,
    /// The CS cockpit (`/app`), calling the same API in-process.
    pub web: Arc<web::Web>,
    /// The score function's identity, for [`Stack::health_runner`].
    score_role: ScoreRole,
}

/// What the score function's runner is built from: its own store and SQS client.
struct ScoreRole {
    store: Arc<DynamoStore>,
    sqs: aws_sdk_sqs::Client,
    score_url: String,
    alerts_url: String,
}

/// HubSpot webhook settings of the local stack.
#[derive(Debug, Clone)]
pub struct HubspotSettings {
    pub secrets: Vec<String>,
    pub public_base_url: String,
    /// Legacy (v1/v2) signatures accepted besides v3; `None`: v3 only.
    pub legacy: Option<domain::hubspot::replay::LegacyPolicy>,
}

impl HubspotSettings {
    /// The value of the template's `HubspotClientSecretStore` secret for these secrets.
    pub fn secret_string(&self) -> String {
        serde_json::json!({
            "current": self.secrets.first().cloned().unwrap_or_default(),
            "previous": self.secrets.get(1).cloned().unwrap_or_default(),
        })
        .to_string()
    }

    /// `HUBSPOT_CLIENT_SECRET` (+ `HUBSPOT_CLIENT_SECRET_PREVIOUS` during a rotation),
    /// `PUBLIC_BASE_URL` and the legacy-signature opt-in (`HUBSPOT_LEGACY_SIGNATURES`,
    /// `HUBSPOT_LEGACY_REPLAY_WINDOW_HOURS`); `None` when no secret is set.
    pub fn from_env(default_base_url: &str) -> Result<Option<Self>> {
        let secrets: Vec<String> = ["HUBSPOT_CLIENT_SECRET", "HUBSPOT_CLIENT_SECRET_PREVIOUS"]
            .iter()
            .filter_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
            .collect();
        if secrets.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            secrets,
            public_base_url: std::env::var("PUBLIC_BASE_URL")
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default_base_url.to_owned()),
            legacy: lambda::config::hubspot_legacy_policy()?,
        }))
    }
}

impl Stack {
    /// Wires every function with its own identity (`p.keys`, its role built from the
    /// template policy), as on Lambda, so the emulator checks each call against that
    /// function's policy (ADR 0010). `aws` is the admin identity: `store`, `sqs` and
    /// `sns` use it, for admin commands and test set-up; `queue` is ingest's producer.
    pub fn new(
        aws: &SdkConfig,
        p: &Provisioned,
        cfg: PipelineConfig,
        hubspot: Option<HubspotSettings>,
    ) -> Result<Self> {
        // The functions' EMF metrics are tallied in-process (`GET /local/metrics`).
        let _ = lambda::metrics::tally();
        let roles = Roles::new(aws, p)?;
        let sqs = aws_sdk_sqs::Client::new(aws);
        let store = roles.store(aws)?;
        let queue_url = p.reference("EventsQueue")?.to_owned();
        let alerts_url = p.reference("AlertsQueue")?.to_owned();

        let (ingest_store, ingest_sqs) = roles.clients("IngestFunction")?;
        // The events queue as ingest sends to it (with ingest's key).
        let queue = Arc::new(SqsQueue::new(ingest_sqs, queue_url.clone()));
        // As on AWS: the client secret is read from Secrets Manager (the emulator) with
        // ingest's own key, on first use; provisioning stored `h.secret_string()` there.
        let hubspot = match hubspot {
            None => None,
            Some(h) => Some(ingest::HubspotWiring {
                secrets: match p.refs.get("HubspotClientSecretStore") {
                    Some(arn) => ingest::ClientSecrets::Managed(aws::secrets::cached(
                        &roles.config("IngestFunction")?,
                        domain::secrets::SecretId::parse(arn)?,
                    )),
                    None => ingest::ClientSecrets::Fixed(h.secrets),
                },
                public_base_url: Some(h.public_base_url),
                legacy: h.legacy,
            }),
        };
        // One quota per tenant for the whole local runner (ingest and API alike).
        let quotas = Arc::new(domain::quota::Quotas::from_env()?);
        let ingest = Arc::new(ingest::wired(
            ingest_store,
            queue.clone(),
            ingest::Wiring {
                // As on AWS: nothing older than the ledger's retention guards is accepted.
                max_backfill_days: domain::horizon::widest_horizon_days(cfg.retention),
                hubspot,
                quotas: quotas.clone(),
                event_quotas: Arc::new(domain::quota::Quotas::from_env_for(
                    &domain::quota::EVENTS,
                )?),
            },
        ));

        let (rollup_store, rollup_sqs) = roles.clients("RollupFunction")?;
        let rollup = Arc::new(rollup::wired(
            rollup_store,
            cfg,
            &rollup_sqs,
            queue_url.clone(),
            alerts_url.clone(),
        ));

        let sns = aws_sdk_sns::Client::new(aws);
        let alerts_topic_arn = p.reference("AlertsTopic")?.to_owned();
        let (notify_store, notify_sqs) = roles.clients("NotifyFunction")?;
        let notify = Arc::new(notify::wired(
            notify_store,
            aws_sdk_sns::Client::new(&roles.config("NotifyFunction")?),
            alerts_topic_arn.clone(),
        ));
        // Event source mappings poll with the consumer's role, as Lambda's do.
        let alerts_poller = Arc::new(Poller {
            sqs: notify_sqs,
            mapping: Mapping {
                queue_url: alerts_url.clone(),
                queue_arn: p.arns.get("AlertsQueue").cloned().unwrap_or_default(),
                batch_size: 10,
                batching_window: Duration::from_secs(1),
            },
            requests: Default::default(),
        });
        // The api function, and the web function (the cockpit runs the same API code
        // in-process, under its own role).
        let api_as = |function: &str| -> Result<(api::Api, Arc<DynamoStore>)> {
            let (fn_store, fn_sqs) = roles.clients(function)?;
            let api = api::wired(
                fn_store.clone(),
                &fn_sqs,
                quotas.clone(),
                Some(alerts_url.clone()),
                Some(queue_url.clone()),
            );
            Ok((api, fn_store))
        };
        let api = Arc::new(
            api_as("ApiFunction")?
                .0
                .with_hubspot_setup(hubspot_setup(p, &roles.config("ApiFunction")?)?),
        );
        let (web_api, web_store) = api_as("WebFunction")?;
        // As on AWS: the session secret is read from Secrets Manager (the emulator) with
        // the web function's key on first use; without the template's secret, a random one.
        let web_sessions = match p.refs.get("WebSessionSecret") {
            Some(arn) => web::session::SessionSecret::Managed(aws::secrets::cached(
                &roles.config("WebFunction")?,
                domain::secrets::SecretId::parse(arn)?,
            )),
            None => web::session::SessionKeys::random()
                .map_err(|e| anyhow::anyhow!("a random session secret: {e}"))?
                .into(),
        };
        let web = Arc::new(crate::cockpit::web_app(
            Arc::new(web_api),
            web_store,
            web_sessions,
        ));
        let poller = Arc::new(Poller {
            sqs: rollup_sqs,
            mapping: Mapping {
                queue_url,
                queue_arn: p.arns.get("EventsQueue").cloned().unwrap_or_default(),
                batch_size: 10,
                batching_window: Duration::from_secs(1),
            },
            requests: Default::default(),
        });
        let dlq_url = p.reference("EventsDLQ")?.to_owned();
        let score_url = p.reference("ScoreQueue")?.to_owned();
        let (score_store, score_sqs) = roles.clients("ScoreFunction")?;
        let score_role = ScoreRole {
            store: score_store,
            sqs: score_sqs.clone(),
            score_url: score_url.clone(),
            alerts_url: alerts_url.clone(),
        };
        // As on AWS: the write-back tokens are read from the provisioned secret (where
        // provisioning stored `HUBSPOT_WRITEBACK_TOKENS`) with the score role's key.
        let score_cfg = roles.config("ScoreFunction")?;
        let crm = match aws::hubspot::tokens_from_env(&score_cfg).map_err(anyhow::Error::msg)? {
            None => None,
            Some(tokens) => Some(
                score::writeback(match p.refs.get("HubspotWritebackTokensStore") {
                    Some(arn) => Tokens::Managed(aws::secrets::cached(
                        &score_cfg,
                        domain::secrets::SecretId::parse(arn)?,
                    )),
                    None => tokens,
                })
                .map_err(anyhow::Error::msg)?,
            ),
        };
        // As on AWS: with tokens, the run queues its CRM work on the FIFO write-back
        // queue and the score function drains it through the HubSpot client.
        let writeback_url = p.reference("WritebackQueue")?.to_owned();
        let score = Arc::new(match crm {
            Some(sink) => score::Score::new(Arc::new(
                score_role.runner(Some(score::queued_writeback(&score_sqs, &writeback_url)))?,
            ))
            .with_writeback_consumer(sink),
            None => score::Score::new(Arc::new(score_role.runner(None)?)),
        });
        let writeback_poller = Arc::new(Poller {
            sqs: score_sqs.clone(),
            mapping: Mapping {
                queue_url: writeback_url,
                queue_arn: p.arns.get("WritebackQueue").cloned().unwrap_or_default(),
                // As the template's mapping: one message (at most 100 companies, one
                // HubSpot request) per invocation.
                batch_size: 1,
                batching_window: Duration::from_millis(0),
            },
            requests: Default::default(),
        });
        let score_poller = Arc::new(Poller {
            sqs: score_sqs,
            mapping: Mapping {
                queue_url: score_url,
                queue_arn: p.arns.get("ScoreQueue").cloned().unwrap_or_default(),
                batch_size: 1,
                batching_window: Duration::from_millis(0),
            },
            requests: Default::default(),
        });
        let (audit_store, audit_sqs) = roles.clients("AuditFunction")?;
        let audit = Arc::new(audit::wired(
            audit_store,
            audit_sqs,
            alerts_url,
            dlq_url.clone(),
        ));
        let jobs: Vec<Arc<dyn Job>> = vec![
            Arc::new(DlqDepth {
                sqs: sqs.clone(),
                dlq_url: dlq_url.clone(),
            }),
            Arc::new(crate::jobs::Digests {
                notify: notify.clone(),
            }),
            Arc::new(crate::jobs::ScoreJob {
                score: score.clone(),
            }),
            Arc::new(crate::jobs::AuditJob {
                audit: audit.clone(),
            }),
        ];
        Ok(Self {
            store,
            queue,
            ingest,
            rollup,
            api,
            notify,
            poller,
            alerts_poller,
            sns,
            alerts_topic_arn,
            scheduler: Scheduler::new(jobs),
            sqs,
            dlq_url,
            score,
            score_poller,
            writeback_poller,
            audit,
            web,
            score_role,
        })
    }

    /// A score runner with the score function's identity (tests swap the CRM sink).
    pub fn health_runner(
        &self,
        crm: Option<Arc<dyn domain::health::writeback::CrmSink>>,
    ) -> Result<domain::health::run::HealthRunner> {
        self.score_role.runner(crm)
    }

    pub fn rollup_handler(&self) -> Arc<dyn SqsHandler> {
        self.rollup.clone()
    }

    pub fn notify_handler(&self) -> Arc<dyn SqsHandler> {
        self.notify.clone()
    }

    pub fn score_handler(&self) -> Arc<dyn SqsHandler> {
        self.score.clone()
    }

    /// Creates an SQS queue `name`, subscribes it to the alerts topic with raw
    /// delivery (and an optional filter policy on message attributes) and returns its
    /// URL. `make run` does this for `alerts-inbox` so every alert is visible locally.
    pub async fn subscribe_queue(&self, name: &str, filter_policy: Option<&str>) -> Result<String> {
        let url = self
            .sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?
            .queue_url
            .unwrap_or_default();
        let arn = self
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?
            .attributes
            .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .unwrap_or_default();
        let mut req = self
            .sns
            .subscribe()
            .topic_arn(&self.alerts_topic_arn)
            .protocol("sqs")
            .endpoint(arn)
            .attributes("RawMessageDelivery", "true");
        if let Some(f) = filter_policy {
            req = req
                .attributes("FilterPolicy", f)
                .attributes("FilterPolicyScope", "MessageAttributes");
        }
        req.send()
            .await
            .map_err(|e| anyhow::anyhow!(aws_sdk_sns::error::DisplayErrorContext(e).to_string()))?;
        Ok(url)
    }

    /// Creates a tenant with the starter meter definitions, unless it exists.
    pub async fn ensure_tenant(
        &self,
        tenant: &TenantId,
        name: &str,
        backfill: domain::horizon::Horizon,
    ) -> Result<bool, AdminError> {
        match self.store.create_tenant(tenant, name, backfill).await {
            Ok(()) => {}
            Err(AdminError::TenantExists(_)) => {
                // Tenants created before the tenant index existed join it here.
                self.store.register_tenant(tenant).await?;
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        let now = chrono::Utc::now();
        for (meter, unit, description) in STARTER_METERS {
            let mut def = Definition::new(
                MeterName::parse(meter).map_err(|e| AdminError::Random(e.to_string()))?,
                now,
            );
            def.description = Some((*description).to_owned());
            def.unit = Some((*unit).to_owned());
            self.store.put_definition(tenant, &def).await?;
        }
        Ok(true)
    }
}

/// Each function's identity in the emulator, and clients built with it.
struct Roles<'a> {
    aws: &'a SdkConfig,
    p: &'a Provisioned,
    /// One write meter for every function's store, so `stack.store.meter` counts the
    /// whole stack's writes (the benches' write units per event), whoever made them.
    meter: Arc<aws::dynamo::WriteMeter>,
}

impl<'a> Roles<'a> {
    fn new(aws: &'a SdkConfig, p: &'a Provisioned) -> Result<Self> {
        Ok(Self {
            aws,
            p,
            meter: Arc::default(),
        })
    }

    fn config(&self, function: &str) -> Result<SdkConfig> {
        self.p.function_config(self.aws, function)
    }

    /// The table store (usage and ledger tables) as `aws` sees them.
    fn store(&self, aws: &SdkConfig) -> Result<Arc<DynamoStore>> {
        let mut store = DynamoStore::new(
            aws_sdk_dynamodb::Client::new(aws),
            self.p.reference("UsageTable")?,
        )
        .with_ledger_table(self.p.reference("LedgerTable")?);
        store.audit_sample = lambda::config::audit_sample_modulus()?;
        store.meter = self.meter.clone();
        Ok(Arc::new(store))
    }

    /// `function`'s store and SQS client, both signed with its own key.
    fn clients(&self, function: &str) -> Result<(Arc<DynamoStore>, aws_sdk_sqs::Client)> {
        let cfg = self.config(function)?;
        Ok((self.store(&cfg)?, aws_sdk_sqs::Client::new(&cfg)))
    }
}

/// Meters every new local tenant starts with (more through `PUT /v1/definitions/{meter}`).
pub const STARTER_METERS: &[(&str, &str, &str)] = &[
    ("api_calls", "call", "Product API calls"),
    ("seats_active", "seat", "Seats active in the period"),
    ("storage_gb", "GB", "Storage used"),
    ("tickets_opened", "ticket", "Support tickets opened"),
    ("tickets_resolved", "ticket", "Support tickets resolved"),
    ("meetings_logged", "meeting", "CS meetings held"),
    ("calls_logged", "call", "CS calls held"),
    ("tickets_reopened", "ticket", "Support tickets reopened"),
    ("tickets_escalated", "ticket", "Support tickets escalated"),
];

impl ScoreRole {
    fn runner(
        &self,
        crm: Option<Arc<dyn domain::health::writeback::CrmSink>>,
    ) -> Result<domain::health::run::HealthRunner> {
        Ok(score::runner(
            &self.store,
            &self.sqs,
            &self.score_url,
            &self.alerts_url,
            crm,
        )?)
    }
}

/// `POST /v1/hubspot/setup` as the api function has it on AWS: the provisioned tokens
/// secret read with the api role's key (on first use); `HUBSPOT_API_BASE_URL` may
/// point at a local stand-in.
pub fn hubspot_setup(
    p: &Provisioned,
    api_role: &SdkConfig,
) -> Result<Option<Arc<api::hubspot_setup::HubSpotSetup>>> {
    let Some(arn) = p.refs.get("HubspotWritebackTokensStore") else {
        return Ok(None);
    };
    Ok(Some(Arc::new(api::hubspot_setup::HubSpotSetup {
        client: aws::hubspot::client_from_env().map_err(|e| anyhow::anyhow!(e))?,
        tokens: domain::health::writeback::Tokens::Managed(aws::secrets::cached(
            api_role,
            domain::secrets::SecretId::parse(arn)?,
        )),
    })))
}

/// The pipeline settings of the runner's own stack (`usage-local serve` and the admin
/// commands), over the emulator: the rollup claims its events in groups of
/// [`crate::import::IMPORT_CLAIM_GROUP`], as the importer does. moto serves one request
/// at a time, and a conditional put per event made the demo's rollup send one request
/// per event (about 6x the importer's cost per event; ADR 0008, "The runner's rollup");
/// a group travels as one conditional transaction and each claim decides exactly what
/// its own put would (ADR 0001, "Import: claims in groups"). The deployed rollup keeps
/// one put per event: 1 write unit per claim instead of 2 (`PipelineConfig::default`).
pub fn runner_pipeline(retention: chrono::Duration) -> PipelineConfig {
    PipelineConfig {
        retention,
        claim_group: crate::import::IMPORT_CLAIM_GROUP,
        ..PipelineConfig::default()
    }
}

#[cfg(test)]
mod runner_pipeline_tests {
    use super::*;
    use domain::pipeline::MAX_CLAIM_GROUP;

    #[test]
    fn the_runners_rollup_claims_in_full_groups_and_keeps_the_retention_it_is_given() {
        let cfg = runner_pipeline(chrono::Duration::days(30));
        assert_eq!(cfg.claim_group, MAX_CLAIM_GROUP);
        assert!(cfg.claim_group > 1);
        assert_eq!(cfg.retention, chrono::Duration::days(30));
        assert!(cfg.merge_chunks, "the units of a batch are still merged");
    }

    #[test]
    fn the_deployed_rollup_still_claims_one_event_per_put() {
        assert_eq!(PipelineConfig::default().claim_group, 1);
    }
}
