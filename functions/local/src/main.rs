//! `usage-local`: runs the whole stack against the emulator, and manages tenants and
//! API keys (locally, or on AWS with `--aws`).

use anyhow::{Context, Result};
use aws::dynamo::DynamoStore;
use clap::{Parser, Subcommand};
use domain::ids::TenantId;
use domain::pipeline::PipelineConfig;
use local::provision::{provision, template_path, Overrides};
use local::stack::{HubspotSettings, Stack};
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    name = "usage-local",
    about = "Local runner and admin CLI of the usage-intelligence suite"
)]
struct Cli {
    /// Emulator endpoint.
    #[arg(
        long,
        env = "AWS_ENDPOINT_URL",
        default_value = "http://127.0.0.1:4566",
        global = true
    )]
    endpoint: String,
    /// Name prefix of local resources.
    #[arg(
        long,
        env = "LOCAL_PREFIX",
        default_value = "usage-local",
        global = true
    )]
    prefix: String,
    /// Talk to a deployed stack on AWS (standard credential chain), finding its table
    /// and secrets in the stack's outputs.
    #[arg(long, global = true)]
    aws: bool,
    /// With --aws: the CloudFormation stack (default: samconfig.toml's stack_name).
    #[arg(long, env = "USAGE_STACK_NAME", global = true)]
    stack_name: Option<String>,
    /// With --aws: the samconfig.toml environment naming the stack (default, dev, prod).
    #[arg(long, default_value = "default", global = true)]
    config_env: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Provision resources and serve every function locally (the default).
    Serve {
        #[arg(long, env = "LOCAL_HTTP_ADDR", default_value = "127.0.0.1:8080")]
        addr: String,
        /// Dev tenant's API key; generated when unset.
        #[arg(long, env = "DEV_API_KEY", hide_env_values = true)]
        dev_api_key: Option<String>,
        #[arg(long, env = "DEV_TENANT", default_value = "dev")]
        dev_tenant: String,
    },
    /// Create the template's resources in the emulator and print their names.
    Provision,
    /// Check an IAM-enforcing emulator's log (MOTO_LAUNCHER_IAM_LOG, ADR 0010): every
    /// action the template grants a function was used by that function on that
    /// resource in the calls logged. Fails listing the grants nothing used.
    IamCoverage { log: std::path::PathBuf },
    /// Replay health scoring at past cut-offs on generated accounts with known
    /// churn outcomes; print AUC, red precision/recall and lead time per segment.
    Backtest {
        #[arg(long, default_value_t = 2000)]
        accounts: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Cut-off dates, 30 days apart, ending 60 days before the data ends.
        #[arg(long, default_value_t = 6)]
        cutoffs: usize,
        /// A churn within this many days after a cut-off counts as predicted.
        #[arg(long, default_value_t = 60)]
        horizon_days: i64,
        /// Also fit weights and band thresholds by k-fold cross-validation (folds by
        /// account), print held-out and in-sample figures and the fitted configuration.
        #[arg(long)]
        fit: bool,
        /// Folds of the --fit cross-validation.
        #[arg(long, default_value_t = 5)]
        folds: usize,
        /// Write the fitted configuration (a `PUT /v1/health/config` body) here.
        #[arg(long, requires = "fit")]
        write_config: Option<std::path::PathBuf>,
        /// A health config (the `PUT /v1/health/config` body) to score with instead
        /// of the defaults.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// Your own history instead of generated accounts: events in the import
        /// format (JSONL or CSV) ...
        #[arg(long, requires_all = ["profiles", "outcomes"])]
        events: Option<std::path::PathBuf>,
        /// ... account profiles as JSONL (`account`, `segment`, `onboarding_date`) ...
        #[arg(long = "profiles", id = "profiles")]
        profiles: Option<std::path::PathBuf>,
        /// ... and outcomes as CSV `account,churned,churn_date` (they define churn).
        #[arg(long)]
        outcomes: Option<std::path::PathBuf>,
        /// Cut-off dates (YYYY-MM-DD, comma-separated) for --events; default 6, 30
        /// days apart, ending the horizon before the last event.
        #[arg(long = "at", value_delimiter = ',')]
        at: Vec<chrono::NaiveDate>,
        /// The tenant's stored usage (day rollups) and profiles instead of files,
        /// scored with the config the score job resolves (with --outcomes). Locally
        /// from the emulator; with --aws from the stack's table.
        #[arg(long, requires = "outcomes", conflicts_with = "events")]
        tenant: Option<String>,
    },
    /// Load generated demo accounts (a quarter of them decaying) and 63 days of usage
    /// into the local stack, through ingest, under tenant `demo` (printed key).
    Demo {
        #[arg(long, default_value_t = 8)]
        accounts: usize,
        #[arg(long, default_value = "demo")]
        tenant: String,
    },
    /// Tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// HubSpot portals: which tenant receives a portal's webhooks (the same rules as
    /// `PUT/GET/DELETE /v1/hubspot/portals/{portal_id}`: one tenant per portal).
    Portal {
        #[command(subcommand)]
        command: PortalCommand,
    },
    /// HubSpot portal set-up.
    Hubspot {
        #[command(subcommand)]
        command: HubspotCommand,
    },
    /// API keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Import historical events (JSONL or CSV) through validation, aliases and the
    /// exactly-once pipeline; re-running the same file counts nothing twice.
    Import {
        tenant: String,
        /// The file: one JSON event per line (.jsonl) or CSV with a header row.
        file: std::path::PathBuf,
        /// `jsonl` or `csv` (default: from the file extension).
        #[arg(long)]
        format: Option<String>,
        /// Validate and report only; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// How far back events may be timestamped (days). Default: the widest the
        /// ledger retention guards, LEDGER_RETENTION_DAYS - 19 (101 by default); a
        /// wider horizon is refused, as a resend could outlive the ledger.
        #[arg(long)]
        horizon_days: Option<i64>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PortalCommand {
    /// Map a portal to a tenant (refused when another tenant holds it).
    Map { portal: String, tenant: String },
    /// Unmap a portal from a tenant.
    Unmap { portal: String, tenant: String },
    /// Whether a portal is mapped to a tenant.
    Show { portal: String, tenant: String },
}

#[derive(Subcommand)]
enum HubspotCommand {
    /// Create (or repair) the `usage_health` company property group and properties
    /// in the tenant's portal with its write-back token (the same as
    /// `POST /v1/hubspot/setup`); safe to run again. Tokens from
    /// HUBSPOT_WRITEBACK_TOKENS (tenant=token,...) or the secret in
    /// HUBSPOT_WRITEBACK_TOKENS_ARN; HUBSPOT_API_BASE_URL may point at a stand-in.
    Setup {
        tenant: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant with the starter meter definitions.
    Create {
        tenant: String,
        #[arg(long)]
        name: Option<String>,
        /// How far back events may be timestamped (days; at most
        /// LEDGER_RETENTION_DAYS - 19).
        #[arg(long, default_value_t = i64::from(domain::horizon::DEFAULT_BACKFILL_DAYS))]
        backfill_days: i64,
    },
    /// Enrol every existing tenant in the registry the scheduled score and audit
    /// jobs read (one-off migration for tenants created before it; safe to repeat).
    RegisterAll,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Issue a new API key for a tenant (printed once; only its hash is stored).
    Create {
        tenant: String,
        #[arg(long, default_value = "cli")]
        label: String,
        /// What the key may do: ingest, read, admin (repeat or comma-separate).
        #[arg(long = "scope", value_delimiter = ',', default_value = "admin")]
        scopes: Vec<String>,
        /// The key stops working after this many days (1-3650; default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List a tenant's keys (ids, labels, scopes, status; never the keys).
    List { tenant: String },
    /// Revoke a key now.
    Revoke { tenant: String, key_id: String },
    /// Issue a successor with the same label and scopes; the old key keeps working
    /// for the overlap (hours, 0-720).
    Rotate {
        tenant: String,
        key_id: String,
        #[arg(long, default_value_t = domain::auth::DEFAULT_OVERLAP_HOURS)]
        overlap_hours: u32,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    lambda::telemetry::init();
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve {
        addr: std::env::var("LOCAL_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into()),
        dev_api_key: std::env::var("DEV_API_KEY").ok(),
        dev_tenant: std::env::var("DEV_TENANT").unwrap_or_else(|_| "dev".into()),
    });
    let aws = if cli.aws {
        aws::sdk::load().await
    } else {
        aws::sdk::local(&cli.endpoint).await
    };
    // With --aws, the deployed stack's outputs (read once, when a command needs them).
    let outputs_cell = tokio::sync::OnceCell::new();
    let (stack_name, config_env) = (cli.stack_name.clone(), cli.config_env.clone());
    let outputs = || async {
        outputs_cell
            .get_or_try_init(|| async {
                let name = local::outputs::stack_name(stack_name.as_deref(), &config_env)?;
                local::outputs::StackOutputs::read(&aws, &name).await
            })
            .await
    };
    let aws_store = || async { outputs().await?.store(&aws) };
    let public_default = format!(
        "http://{}",
        std::env::var("LOCAL_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into())
    );
    // `serve` runs each function with its own role (ADR 0010); admin commands wire the
    // functions they use with the admin identity instead, and leave the roles of a
    // running `serve` untouched.
    let (aws_ref, prefix, endpoint, public_default_ref) =
        (&aws, &cli.prefix, &cli.endpoint, &public_default);
    let stack = |roles: bool| async move {
        let (aws, public_default) = (aws_ref, public_default_ref);
        let mut overrides = Overrides {
            admin_identity: !roles,
            ..Overrides::default()
        };
        // Secrets the runner's environment sets go into the emulator's Secrets Manager,
        // where the functions read them as on AWS.
        if let Some(h) = HubspotSettings::from_env(public_default)? {
            overrides
                .secret_values
                .insert("HubspotClientSecretStore".into(), h.secret_string());
        }
        if let Some(secret) = local::cockpit::session_secret_from_env()? {
            overrides
                .secret_values
                .insert("WebSessionSecret".into(), secret);
        }
        if let Some(t) = std::env::var("HUBSPOT_WRITEBACK_TOKENS")
            .ok()
            .filter(|t| !t.trim().is_empty())
        {
            overrides.secret_values.insert(
                "HubspotWritebackTokensStore".into(),
                serde_json::json!({ "tokens": t }).to_string(),
            );
        }
        let p = provision(aws, &template_path(), prefix, &overrides)
            .await
            .with_context(|| {
                format!("provisioning in the emulator at {endpoint} (is it running?)")
            })?;
        anyhow::Ok((
            Stack::new(
                aws,
                &p,
                local::stack::runner_pipeline(lambda::config::ledger_retention()?.duration()),
                HubspotSettings::from_env(public_default)?,
            )?,
            p,
        ))
    };
    match command {
        Command::Serve {
            addr,
            dev_api_key,
            dev_tenant,
        } => {
            let (stack, p) = stack(true).await?;
            serve(
                Arc::new(stack),
                &p,
                &addr,
                dev_api_key,
                &dev_tenant,
                &cli.prefix,
            )
            .await
        }
        Command::Backtest {
            accounts,
            seed,
            cutoffs,
            horizon_days,
            fit,
            folds,
            write_config,
            config,
            events,
            profiles,
            outcomes,
            at,
            tenant,
        } => {
            let stored = match config {
                Some(path) => Some(domain::health::config::HealthConfig::from_body(
                    &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
                )?),
                None => None,
            };
            let fit = fit.then(|| local::demo::FitOptions {
                folds,
                seed,
                stored: stored.clone(),
                write_to: write_config,
            });
            if let (Some(tenant), Some(outcomes)) = (&tenant, &outcomes) {
                let tenant = TenantId::parse(tenant)?;
                let store = if cli.aws {
                    aws_store().await?
                } else {
                    let (stack, _) = stack(false).await?;
                    Arc::unwrap_or_clone(stack.store.clone())
                };
                let to = chrono::Utc::now().date_naive() - chrono::Duration::days(1);
                let (inputs, cfg) =
                    local::backtest_stored::load(&store, &tenant, outcomes, &at, horizon_days, to)
                        .await?;
                print!(
                    "{}",
                    local::backtest_files::run(&inputs, &cfg, &at, horizon_days, fit.as_ref())?
                );
                return Ok(());
            }
            if let (Some(events), Some(profiles), Some(outcomes)) = (events, profiles, outcomes) {
                let inputs = local::backtest_files::load(&events, &profiles, &outcomes)?;
                let cfg = local::backtest_files::default_config(&inputs.meters, stored.as_ref());
                print!(
                    "{}",
                    local::backtest_files::run(&inputs, &cfg, &at, horizon_days, fit.as_ref())?
                );
                return Ok(());
            }
            let cfg = domain::health::config::HealthConfig::resolve(stored.as_ref(), &[]).config;
            print!(
                "{}",
                local::demo::backtest(accounts, seed, cutoffs, horizon_days, fit.as_ref(), &cfg)?
            );
            Ok(())
        }
        Command::Demo { accounts, tenant } => {
            let (stack, _) = stack(false).await?;
            local::demo::load(&stack, &TenantId::parse(&tenant)?, accounts)
                .await
                .map(|_| ())
        }
        Command::IamCoverage { log } => {
            let text = std::fs::read_to_string(template_path())?;
            let template: serde_json::Value = serde_json::from_str(&text)?;
            let checks = local::iam::read_log(&log)?;
            let permitted = checks.iter().filter(|c| c.allowed).count();
            let unused = local::iam::unused_grants(&template, &checks)?;
            println!(
                "IAM coverage: {permitted} permitted and {} refused calls in {}",
                checks.len() - permitted,
                log.display()
            );
            if permitted == 0 {
                anyhow::bail!("no permitted calls logged: was IAM enforced (MOTO_LAUNCHER_IAM=1)?");
            }
            for (function, action, resource, why) in local::iam::KEPT_UNUSED {
                println!("  kept unused: {function} may {action} on {resource}: {why}");
            }
            for u in &unused {
                println!(
                    "  unused: {} may {} on {}",
                    u.function, u.action, u.resource
                );
            }
            if !unused.is_empty() {
                anyhow::bail!(
                    "{} granted action(s) no test used: remove them from infra/template.json or test the code path that needs them",
                    unused.len()
                );
            }
            println!("every granted action was used by the function it is granted to");
            Ok(())
        }
        Command::Provision => {
            let (_, p) = stack(false).await?;
            for (function, env) in &p.env {
                println!("# {function}");
                for (k, v) in env {
                    println!("{k}={v}");
                }
            }
            Ok(())
        }
        Command::Tenant {
            command: TenantCommand::RegisterAll,
        } => {
            let store = if cli.aws {
                aws_store().await?
            } else {
                let (stack, _) = stack(false).await?;
                Arc::unwrap_or_clone(stack.store.clone())
            };
            let tenants = store.register_all_tenants().await?;
            println!("{} tenant(s) in the registry", tenants.len());
            for t in tenants {
                println!("  {t}");
            }
            Ok(())
        }
        Command::Tenant {
            command:
                TenantCommand::Create {
                    tenant,
                    name,
                    backfill_days,
                },
        } => {
            let tenant = TenantId::parse(&tenant)?;
            let backfill_days = horizon(backfill_days, "--backfill-days")?;
            let created = if cli.aws {
                let store = aws_store().await?;
                store
                    .create_tenant(
                        &tenant,
                        name.as_deref().unwrap_or(tenant.as_str()),
                        backfill_days,
                    )
                    .await
                    .map(|_| true)?
            } else {
                let (stack, _) = stack(false).await?;
                stack
                    .ensure_tenant(
                        &tenant,
                        name.as_deref().unwrap_or(tenant.as_str()),
                        backfill_days,
                    )
                    .await?
            };
            println!(
                "{}",
                if created {
                    format!("created tenant {tenant}")
                } else {
                    format!("tenant {tenant} already exists")
                }
            );
            Ok(())
        }
        Command::Portal { command } => {
            use domain::ports::PortalAdmin;
            let store = if cli.aws {
                aws_store().await?
            } else {
                let (stack, _) = stack(false).await?;
                Arc::unwrap_or_clone(stack.store.clone())
            };
            let (PortalCommand::Map { portal, tenant }
            | PortalCommand::Unmap { portal, tenant }
            | PortalCommand::Show { portal, tenant }) = &command;
            let id = api::portals::portal_id(portal).map_err(|e| anyhow::anyhow!(e.message))?;
            let tenant = TenantId::parse(tenant)?;
            let line = match command {
                PortalCommand::Map { .. } => {
                    if store.claim_portal(id, &tenant).await? {
                        format!("portal {id} mapped to tenant {tenant}")
                    } else {
                        format!("portal {id} was already mapped to tenant {tenant}")
                    }
                }
                PortalCommand::Unmap { .. } => {
                    if store.release_portal(id, &tenant).await? {
                        format!("portal {id} unmapped from tenant {tenant}")
                    } else {
                        anyhow::bail!("portal {id} is not mapped to tenant {tenant}")
                    }
                }
                PortalCommand::Show { .. } => {
                    if store.owns_portal(id, &tenant).await? {
                        format!("portal {id} is mapped to tenant {tenant}")
                    } else {
                        anyhow::bail!("portal {id} is not mapped to tenant {tenant}")
                    }
                }
            };
            println!("{line}");
            Ok(())
        }
        Command::Hubspot {
            command: HubspotCommand::Setup { tenant, json },
        } => {
            let tenant = TenantId::parse(&tenant)?;
            let tokens = match aws::hubspot::tokens_from_env(&aws).map_err(|e| anyhow::anyhow!(e))? {
                Some(t) => t,
                // On AWS: the stack's write-back tokens secret.
                None if cli.aws => domain::health::writeback::Tokens::Managed(aws::secrets::cached(
                    &aws,
                    domain::secrets::SecretId::parse(
                        outputs().await?.get("HubspotWritebackTokensSecretArn")?,
                    )?,
                )),
                None => anyhow::bail!(
                    "set HUBSPOT_WRITEBACK_TOKENS (tenant=token,...) or HUBSPOT_WRITEBACK_TOKENS_ARN"
                ),
            };
            let setup = api::hubspot_setup::HubSpotSetup {
                client: aws::hubspot::client_from_env().map_err(|e| anyhow::anyhow!(e))?,
                tokens,
            };
            let r = setup
                .run(&tenant)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {}", e.code, e.message))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "property group usage_health {}; created {}, updated {}, unchanged {}; {} requests",
                    r.group,
                    r.created.len(),
                    r.updated.len(),
                    r.unchanged.len(),
                    r.requests
                );
                for (name, why) in &r.conflicts {
                    println!("conflict: {name} {why}");
                }
            }
            anyhow::ensure!(
                r.conflicts.is_empty(),
                "{} properties need attention in HubSpot",
                r.conflicts.len()
            );
            Ok(())
        }
        Command::Key { command } => {
            let store = if cli.aws {
                Arc::new(aws_store().await?)
            } else {
                stack(false).await?.0.store
            };
            keys(store.as_ref(), command).await
        }
        Command::Import {
            tenant,
            file,
            format,
            dry_run,
            horizon_days,
            json,
        } => {
            let store = if cli.aws {
                let ledger = outputs().await?.get("LedgerTableName")?.to_owned();
                let mut s = aws_store().await?.with_ledger_table(ledger);
                s.audit_sample = lambda::config::audit_sample_modulus()?;
                Arc::new(s)
            } else {
                stack(false).await?.0.store
            };
            import(
                store,
                &tenant,
                &file,
                format.as_deref(),
                dry_run,
                horizon_days,
                json,
            )
            .await
        }
    }
}

async fn import(
    store: Arc<DynamoStore>,
    tenant: &str,
    file: &std::path::Path,
    format: Option<&str>,
    dry_run: bool,
    horizon_days: Option<i64>,
    as_json: bool,
) -> Result<()> {
    use domain::ports::Directory;
    use local::import::{csv_records, digest, import_policy, jsonl_records, Format, Importer};
    let tenant = TenantId::parse(tenant)?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let text = String::from_utf8(bytes.clone()).context("the file is not UTF-8")?;
    let path = file.to_string_lossy();
    let records = match Format::detect(format, &path)
        .ok_or_else(|| anyhow::anyhow!("--format must be jsonl or csv"))?
    {
        Format::Jsonl => jsonl_records(&text),
        Format::Csv => csv_records(&text)?,
    };
    let policy = store
        .tenant_policy(&tenant)
        .await?
        .ok_or_else(|| anyhow::anyhow!("tenant {tenant} does not exist"))?;
    let retention = lambda::config::ledger_retention()?;
    let horizon_days = match horizon_days {
        Some(days) => horizon(days, "--horizon-days")?,
        None => domain::horizon::Horizon::widest(retention),
    };
    let policy = import_policy(policy, horizon_days);
    let bar = indicatif::ProgressBar::new(records.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} events ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let importer = Importer {
        ledger: store.as_ref(),
        quality: Some(store.as_ref()),
        quarantine: Some(store.as_ref()),
        journal: Some(store.as_ref()),
        cfg: PipelineConfig {
            retention: retention.duration(),
            claim_group: local::import::IMPORT_CLAIM_GROUP,
            ..PipelineConfig::default()
        },
        batch: 1000,
    };
    let progress = |done: usize| bar.set_position(done as u64);
    let report = importer
        .run(
            &tenant,
            &policy,
            &records,
            &digest(&bytes),
            dry_run,
            &progress,
        )
        .await?;
    bar.finish_and_clear();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{}{} records: {} valid, {} refused; counted {}, already imported {} ({} chunks)",
        if dry_run {
            "DRY RUN - nothing written. "
        } else {
            ""
        },
        report.records,
        report.valid,
        report.refused,
        report.counted,
        report.already_imported,
        report.chunks
    );
    for (meter, n) in &report.by_meter {
        println!("  {meter}: {n}");
    }
    for (alias, n) in &report.aliases {
        println!("  alias {alias}: {n}");
    }
    for (reason, n) in &report.quarantined {
        println!(
            "  {} in quarantine ({reason}): {n}",
            if dry_run { "would be held" } else { "held" }
        );
    }
    for (code, n) in &report.refused_by_code {
        println!("  refused {code}: {n}");
    }
    for r in report.refusals.iter().take(20) {
        println!("  line {}: {} - {}", r.line, r.code, r.message);
    }
    Ok(())
}

/// A horizon from the command line, checked against `LEDGER_RETENTION_DAYS`.
fn horizon(days: i64, flag: &str) -> Result<domain::horizon::Horizon> {
    let retention = lambda::config::ledger_retention()?;
    domain::horizon::Horizon::parse(days, retention)
        .map_err(|e| anyhow::anyhow!("{flag} {days} refused ({}): {e}", e.code()))
}

async fn serve(
    stack: Arc<Stack>,
    p: &local::provision::Provisioned,
    addr: &str,
    dev_key: Option<String>,
    dev_tenant: &str,
    prefix: &str,
) -> Result<()> {
    let tenant = TenantId::parse(dev_tenant)?;
    stack
        .ensure_tenant(
            &tenant,
            "Local development tenant",
            domain::horizon::Horizon::DEFAULT_BACKFILL,
        )
        .await?;
    let key = match dev_key.filter(|k| !k.is_empty()) {
        Some(k) => {
            stack
                .store
                .register_api_key(&tenant, &k, "DEV_API_KEY")
                .await?;
            k
        }
        None => stack.store.create_api_key(&tenant, "make run").await?,
    };
    if let Some(portal) = std::env::var("DEV_HUBSPOT_PORTAL_ID")
        .ok()
        .filter(|v| !v.is_empty())
    {
        let portal: u64 = portal
            .parse()
            .context("DEV_HUBSPOT_PORTAL_ID must be a number")?;
        stack.store.map_portal(portal, &tenant).await?;
        println!("HubSpot portal {portal} -> tenant {tenant}");
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let poller =
        tokio::spawn(Arc::clone(&stack.poller).run_shared(stack.rollup_handler(), stop_rx.clone()));
    let alerts_poller = tokio::spawn(
        Arc::clone(&stack.alerts_poller).run_shared(stack.notify_handler(), stop_rx.clone()),
    );
    let score_poller = tokio::spawn(
        Arc::clone(&stack.score_poller).run_shared(stack.score_handler(), stop_rx.clone()),
    );
    let inbox_url = stack
        .subscribe_queue(&format!("{}-alerts-inbox", prefix), None)
        .await
        .context("subscribing alerts-inbox to the alerts topic")?;
    let inbox = tokio::spawn(print_inbox(stack.sqs.clone(), inbox_url, stop_rx.clone()));
    let scheduler = tokio::spawn(stack.scheduler.clone().run(stop_rx.clone()));
    banner(addr, &tenant, &key, p);
    let mut server_stop = stop_rx.clone();
    axum::serve(listener, local::server::router(stack.clone()))
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = server_stop.changed() => {}
            }
        })
        .await?;
    let _ = stop_tx.send(true);
    let writeback_poller = tokio::spawn(
        Arc::clone(&stack.writeback_poller).run_shared(stack.score_handler(), stop_rx.clone()),
    );
    let _ = tokio::join!(
        poller,
        alerts_poller,
        inbox,
        scheduler,
        score_poller,
        writeback_poller
    );
    eprintln!("usage-local stopped");
    Ok(())
}

/// Prints every alert delivered to the local `alerts-inbox` queue (an SNS
/// subscription of the alerts topic), then deletes it.
async fn print_inbox(sqs: aws_sdk_sqs::Client, url: String, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let recv = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send();
        let out = tokio::select! {
            _ = stop.changed() => return,
            out = recv => out,
        };
        let messages = match out {
            Ok(o) => o.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "alerts-inbox receive failed");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        for m in messages {
            let body = m.body.as_deref().unwrap_or_default();
            let shown = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .map(|v| {
                    format!(
                        "{}\n{}",
                        v["subject"].as_str().unwrap_or("(no subject)"),
                        serde_json::to_string_pretty(&v["alert"]).unwrap_or_default()
                    )
                })
                .unwrap_or_else(|| body.to_owned());
            println!("\n=== alerts-inbox ===\n{shown}\n");
            if let Some(h) = m.receipt_handle {
                let _ = sqs
                    .delete_message()
                    .queue_url(&url)
                    .receipt_handle(h)
                    .send()
                    .await;
            }
        }
    }
}

/// `usage-local key …`: the same operations as the admin routes under `/v1/keys`.
async fn keys(store: &aws::dynamo::DynamoStore, command: KeyCommand) -> Result<()> {
    use domain::ports::KeyAdmin;
    let now = chrono::Utc::now();
    let show = |k: &domain::auth::KeyGrant| {
        let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
        format!(
            "{}  {:<8} {:<20} {:<18} created {}{}",
            k.key_id,
            k.status(now),
            k.label,
            scopes.join(","),
            k.created_at.format("%Y-%m-%d %H:%M"),
            k.expires_at
                .map(|e| format!(", expires {}", e.format("%Y-%m-%d %H:%M")))
                .unwrap_or_default()
        )
    };
    match command {
        KeyCommand::Create {
            tenant,
            label,
            scopes,
            expires_in_days,
        } => {
            let tenant = TenantId::parse(&tenant)?;
            let body = serde_json::json!({
                "label": label, "scopes": scopes, "expires_in_days": expires_in_days
            });
            let new = domain::auth::new_key_from_body(body.to_string().as_bytes())
                .map_err(|e| anyhow::anyhow!("{} ({})", e.message, e.code))?;
            println!("{}", store.create_scoped_key(&tenant, &new).await?);
        }
        KeyCommand::List { tenant } => {
            for k in store.list_keys(&TenantId::parse(&tenant)?).await? {
                println!("{}", show(&k));
            }
        }
        KeyCommand::Revoke { tenant, key_id } => {
            match store
                .revoke_key(&TenantId::parse(&tenant)?, &key_id, now)
                .await?
            {
                Some(k) => println!("{}", show(&k)),
                None => anyhow::bail!("tenant {tenant} has no key {key_id}"),
            }
        }
        KeyCommand::Rotate {
            tenant,
            key_id,
            overlap_hours,
        } => {
            anyhow::ensure!(
                overlap_hours <= domain::auth::MAX_OVERLAP_HOURS,
                "--overlap-hours is at most {}",
                domain::auth::MAX_OVERLAP_HOURS
            );
            match store
                .rotate_key(&TenantId::parse(&tenant)?, &key_id, overlap_hours, now)
                .await?
            {
                Some((key, new, old)) => {
                    eprintln!("new: {}\nold: {}", show(&new), show(&old));
                    println!("{key}");
                }
                None => anyhow::bail!("tenant {tenant} has no key {key_id}"),
            }
        }
    }
    Ok(())
}

fn banner(addr: &str, tenant: &TenantId, key: &str, p: &local::provision::Provisioned) {
    let base = format!("http://{addr}");
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
    println!(
        r#"
usage-local is serving on {base}   (Ctrl-C stops it)
  CS cockpit: {base}/app   (sign in with a read key; `make demo` prints one)
  tenant:   {tenant}
  API key:  {key}
  table:    {table}
  queue:    {queue}

Try it:
  export KEY={key}
  curl -s -X PUT {base}/v1/accounts/acme -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
       -d '{{"name":"Acme Corp","segment":"mid_market","owner_email":"csm@example.com","onboarding_date":"2026-01-15"}}'
  curl -s -X POST {base}/v1/events -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
       -d '[{{"id":"evt-1","account":"acme","meter":"api_calls","quantity":5,"timestamp":"{now}"}},
            {{"id":"evt-2","account":"acme","meter":"tickets_resolved","stage":"delivered"}},
            {{"id":"bad-1","account":"acme","meter":"api_calls","quantity":"lots"}},
            {{"account":"acme","meter":"api_calls"}}]'
  curl -s "{base}/v1/accounts/acme/usage?granularity=hour&group_by=meter" -H "Authorization: Bearer $KEY"
  curl -s {base}/v1/definitions -H "Authorization: Bearer $KEY"

Entitlements and alerts (alerts delivered to alerts-inbox are printed here):
  curl -s -X PUT {base}/v1/entitlements/acme-api -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
       -d '{{"account":"acme","meter":"api_calls","limit":100,"period":"calendar_month","time_zone":"UTC"}}'
  curl -s -X POST {base}/v1/events -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
       -d '[{{"id":"lim-1","account":"acme","meter":"api_calls","quantity":85}}]'     # one 80% alert
  curl -s -X POST {base}/v1/events -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
       -d '[{{"id":"lim-2","account":"acme","meter":"api_calls","quantity":20}}]'     # one 100% alert
  curl -s {base}/v1/accounts/acme/entitlements -H "Authorization: Bearer $KEY"
  curl -s -X POST {base}/local/jobs/dlq-depth -H "Authorization: Bearer $KEY"

Health scores (after `usage-local demo` has loaded synthetic accounts, or your own data):
  curl -s -X POST {base}/local/jobs/score -H "Authorization: Bearer $KEY"
  curl -s "{base}/v1/accounts?band=red" -H "Authorization: Bearer $KEY"
  curl -s {base}/v1/accounts/acme/health -H "Authorization: Bearer $KEY"
  curl -s -X POST {base}/local/jobs/audit -H "Authorization: Bearer $KEY"
"#,
        table = p.refs.get("UsageTable").map(String::as_str).unwrap_or("?"),
        queue = p.refs.get("EventsQueue").map(String::as_str).unwrap_or("?"),
    );
}
