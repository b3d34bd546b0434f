//! Creates the template's resources in the emulator, from `infra/template.json` itself,
//! so the local stack and AWS cannot drift. Also resolves each function's environment
//! variables from the template (`Ref`s to tables and queues become their local names).

use anyhow::{anyhow, bail, Context, Result};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, PointInTimeRecoverySpecification,
    ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Path of the template, relative to the repository root.
pub const TEMPLATE: &str = "infra/template.json";

/// Finds `infra/template.json` from the current directory or the crate's location.
pub fn template_path() -> PathBuf {
    if let Ok(p) = std::env::var("TEMPLATE_PATH") {
        return PathBuf::from(p);
    }
    repo_file(TEMPLATE)
}

/// A file of the repository by its path from the root: from the working directory
/// when there, else from this crate's checkout.
pub fn repo_file(rel: &str) -> PathBuf {
    let cwd = PathBuf::from(rel);
    if cwd.exists() {
        return cwd;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// Local adjustments for tests (short visibility timeouts, quick redrive).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub visibility_timeout: Option<i32>,
    pub max_receive_count: Option<u32>,
    /// Actions taken out of functions' policies (tests proving an action is needed).
    pub revoke: Vec<crate::iam::Revoke>,
    /// Build no roles: every function acts as the admin identity (admin commands).
    pub admin_identity: bool,
    /// `SecretString` of secrets by logical id (e.g. the HubSpot client secret from the
    /// local runner's environment), instead of the template's value.
    pub secret_values: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct Provisioned {
    /// Physical name (table, topic ARN) or URL (queue) by logical id.
    pub refs: HashMap<String, String>,
    /// ARNs by logical id (queues, topics).
    pub arns: HashMap<String, String>,
    /// Environment variables per function logical id, resolved from the template.
    pub env: BTreeMap<String, BTreeMap<String, String>>,
    /// Each function's access key (its role: an IAM user with its template policy).
    pub keys: BTreeMap<String, crate::iam::Key>,
    /// No roles were built ([`Overrides::admin_identity`]): functions use the admin's.
    pub admin_identity: bool,
}

impl Provisioned {
    pub fn reference(&self, logical: &str) -> Result<&str> {
        self.refs
            .get(logical)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("template has no resource {logical}"))
    }

    /// `aws` with `function`'s own credentials, so the emulator checks its policy.
    pub fn function_config(&self, aws: &SdkConfig, function: &str) -> Result<SdkConfig> {
        if self.admin_identity {
            return Ok(aws.clone());
        }
        self.keys
            .get(function)
            .map(|k| k.config(aws))
            .ok_or_else(|| anyhow!("no role provisioned for {function}"))
    }
}

fn resources(template: &Value) -> Result<&Map<String, Value>> {
    template
        .get("Resources")
        .and_then(Value::as_object)
        .ok_or_else(|| anyhow!("template has no Resources"))
}

fn props(r: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    r.get("Properties")
        .and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Parameter defaults, for resolving `Ref`s to parameters.
fn parameters(template: &Value) -> HashMap<String, String> {
    template
        .get("Parameters")
        .and_then(Value::as_object)
        .map(|ps| {
            ps.iter()
                .filter_map(|(k, p)| p.get("Default").and_then(scalar).map(|d| (k.clone(), d)))
                .collect()
        })
        .unwrap_or_default()
}

pub async fn provision(
    aws: &SdkConfig,
    template: &Path,
    prefix: &str,
    overrides: &Overrides,
) -> Result<Provisioned> {
    let text = std::fs::read_to_string(template)
        .with_context(|| format!("reading {}", template.display()))?;
    let template: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", template.display()))?;
    let mut out = Provisioned::default();
    let dynamo = aws_sdk_dynamodb::Client::new(aws);
    let sqs = aws_sdk_sqs::Client::new(aws);
    let sns = aws_sdk_sns::Client::new(aws);
    let res = resources(&template)?;

    for (id, r) in res
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::DynamoDB::Table")
    {
        let name = format!("{prefix}-{id}");
        create_table(&dynamo, &name, props(r))
            .await
            .with_context(|| format!("creating table {id}"))?;
        out.refs.insert(id.clone(), name);
    }
    // Queues without a redrive policy first: they are the DLQs others point at.
    let mut queues: Vec<(&String, &Value)> = res
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::SQS::Queue")
        .collect();
    queues.sort_by_key(|(_, r)| props(r).contains_key("RedrivePolicy"));
    for (id, r) in queues {
        // FIFO queue names end in `.fifo` (CloudFormation appends it to generated names).
        let fifo = if props(r).get("FifoQueue").and_then(scalar).as_deref() == Some("true") {
            ".fifo"
        } else {
            ""
        };
        let (url, arn) = create_queue(
            &sqs,
            &format!("{prefix}-{id}{fifo}"),
            props(r),
            &out,
            overrides,
        )
        .await
        .with_context(|| format!("creating queue {id}"))?;
        out.refs.insert(id.clone(), url);
        out.arns.insert(id.clone(), arn);
    }
    for (id, r) in res.iter().filter(|(_, r)| r["Type"] == "AWS::SNS::Topic") {
        let name = format!("{prefix}-{id}");
        let mut req = sns.create_topic().name(&name);
        for (k, v) in props(r) {
            if let (Some(v), true) = (
                scalar(v),
                ["FifoTopic", "ContentBasedDeduplication"].contains(&k.as_str()),
            ) {
                req = req.attributes(k, v);
            }
        }
        let arn = req
            .send()
            .await
            .with_context(|| format!("creating topic {id}"))?
            .topic_arn
            .unwrap_or_default();
        out.refs.insert(id.clone(), arn.clone());
        out.arns.insert(id.clone(), arn);
    }

    let params = parameters(&template);
    let secrets = aws_sdk_secretsmanager::Client::new(aws);
    for (id, r) in res
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::SecretsManager::Secret")
    {
        // A value given replaces the stored one; the template's value only creates the
        // secret (admin commands must not reset a running runner's secrets).
        let (value, replace) = match overrides.secret_values.get(id) {
            Some(v) => (v.clone(), true),
            None => (secret_string(props(r), &params)?, false),
        };
        let arn = put_secret(&secrets, &format!("{prefix}-{id}"), &value, replace)
            .await
            .with_context(|| format!("creating secret {id}"))?;
        out.refs.insert(id.clone(), arn.clone());
        out.arns.insert(id.clone(), arn);
    }
    for (id, r) in res
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
    {
        let vars = props(r)
            .get("Environment")
            .and_then(|e| e.get("Variables"))
            .and_then(Value::as_object);
        let mut env = BTreeMap::new();
        for (k, v) in vars.into_iter().flatten() {
            let resolved = match v.get("Ref").and_then(Value::as_str) {
                Some(target) => out.refs.get(target).or_else(|| params.get(target)).cloned(),
                None => scalar(v),
            };
            if let Some(val) = resolved {
                env.insert(k.clone(), val);
            }
        }
        out.env.insert(id.clone(), env);
    }
    if overrides.admin_identity {
        out.admin_identity = true;
        return Ok(out);
    }
    let names = crate::iam::Names {
        refs: &out.refs,
        arns: &out.arns,
    };
    let keys = crate::iam::create_roles(aws, &template, prefix, &names, &overrides.revoke)
        .await
        .context("creating each function's role")?;
    out.keys = keys;
    Ok(out)
}

/// A secret's value as the template sets it: `SecretString` (a string, or `Fn::Sub`
/// over parameters, resolved to their defaults), or `GenerateSecretString` (random
/// letters and digits of `PasswordLength`).
fn secret_string(p: &Map<String, Value>, params: &HashMap<String, String>) -> Result<String> {
    if let Some(v) = p.get("SecretString") {
        if let Some(s) = v.as_str() {
            return Ok(s.to_owned());
        }
        if let Some(sub) = v.get("Fn::Sub").and_then(Value::as_str) {
            let mut out = sub.to_owned();
            for (k, d) in params {
                out = out.replace(&format!("${{{k}}}"), d);
            }
            if out.contains("${") {
                bail!("SecretString {sub:?} names something other than parameters");
            }
            return Ok(out);
        }
        bail!("SecretString {v} is not resolved locally");
    }
    let len = p
        .get("GenerateSecretString")
        .and_then(|g| g.get("PasswordLength"))
        .and_then(Value::as_u64)
        .unwrap_or(32)
        .clamp(1, 4096) as usize;
    let mut out = String::new();
    while out.len() < len {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out.truncate(len);
    Ok(out)
}

/// Creates the secret `name` with `value`; when it exists (a restarted runner on a
/// running emulator), puts `value` as its current version if `replace`. Its ARN.
async fn put_secret(
    client: &aws_sdk_secretsmanager::Client,
    name: &str,
    value: &str,
    replace: bool,
) -> Result<String> {
    match client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
    {
        Ok(out) => Ok(out.arn.unwrap_or_default()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_exists_exception()) =>
        {
            if !replace {
                let out = client
                    .describe_secret()
                    .secret_id(name)
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow!(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())
                    })?;
                return Ok(out.arn.unwrap_or_default());
            }
            let out = client
                .put_secret_value()
                .secret_id(name)
                .secret_string(value)
                .send()
                .await
                .map_err(|e| {
                    anyhow!(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())
                })?;
            Ok(out.arn.unwrap_or_default())
        }
        Err(e) => Err(anyhow!(aws_sdk_secretsmanager::error::DisplayErrorContext(
            e
        )
        .to_string())),
    }
}

async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    p: &Map<String, Value>,
) -> Result<()> {
    let mut req = client.create_table().table_name(name);
    for a in p
        .get("AttributeDefinitions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ty = ScalarAttributeType::from(a["AttributeType"].as_str().unwrap_or("S"));
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(a["AttributeName"].as_str().unwrap_or_default())
                .attribute_type(ty)
                .build()?,
        );
    }
    for k in p
        .get("KeySchema")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        req = req.key_schema(
            KeySchemaElement::builder()
                .attribute_name(k["AttributeName"].as_str().unwrap_or_default())
                .key_type(KeyType::from(k["KeyType"].as_str().unwrap_or("HASH")))
                .build()?,
        );
    }
    if p.get("GlobalSecondaryIndexes").is_some() {
        bail!("GlobalSecondaryIndexes are not provisioned locally yet; extend provision.rs");
    }
    req = req.billing_mode(BillingMode::from(
        p.get("BillingMode")
            .and_then(Value::as_str)
            .unwrap_or("PAY_PER_REQUEST"),
    ));
    match req.send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            return Ok(())
        }
        Err(e) => {
            return Err(anyhow!(
                aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()
            ))
        }
    }
    if let Some(ttl) = p.get("TimeToLiveSpecification") {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(ttl["AttributeName"].as_str().unwrap_or_default())
                    .enabled(ttl["Enabled"].as_bool().unwrap_or(true))
                    .build()?,
            )
            .send()
            .await
            .map_err(|e| anyhow!(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()))?;
    }
    if let Some(pitr) = p.get("PointInTimeRecoverySpecification") {
        let enabled = pitr["PointInTimeRecoveryEnabled"]
            .as_bool()
            .unwrap_or(false);
        // The emulator may not implement backups; the setting matters only on AWS.
        if let Err(e) = client
            .update_continuous_backups()
            .table_name(name)
            .point_in_time_recovery_specification(
                PointInTimeRecoverySpecification::builder()
                    .point_in_time_recovery_enabled(enabled)
                    .build()?,
            )
            .send()
            .await
        {
            tracing::debug!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(e), "point-in-time recovery not set locally");
        }
    }
    Ok(())
}

async fn create_queue(
    client: &aws_sdk_sqs::Client,
    name: &str,
    p: &Map<String, Value>,
    done: &Provisioned,
    o: &Overrides,
) -> Result<(String, String)> {
    let mut attrs: HashMap<QueueAttributeName, String> = HashMap::new();
    for key in [
        "VisibilityTimeout",
        "MessageRetentionPeriod",
        "DelaySeconds",
        "MaximumMessageSize",
        "ReceiveMessageWaitTimeSeconds",
        "FifoQueue",
        "ContentBasedDeduplication",
    ] {
        if let Some(v) = p.get(key).and_then(scalar) {
            attrs.insert(QueueAttributeName::from(key), v);
        }
    }
    if let Some(v) = o.visibility_timeout {
        attrs.insert(QueueAttributeName::VisibilityTimeout, v.to_string());
    }
    if let Some(rp) = p.get("RedrivePolicy") {
        let target = rp["deadLetterTargetArn"]["Fn::GetAtt"][0]
            .as_str()
            .ok_or_else(|| anyhow!("RedrivePolicy needs Fn::GetAtt [Queue, Arn]"))?;
        let arn = done
            .arns
            .get(target)
            .ok_or_else(|| anyhow!("dead-letter queue {target} not provisioned"))?;
        let max = o
            .max_receive_count
            .map(u64::from)
            .or_else(|| rp["maxReceiveCount"].as_u64())
            .unwrap_or(5);
        attrs.insert(
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": max}).to_string(),
        );
    }
    let url = client
        .create_queue()
        .queue_name(name)
        .set_attributes(Some(attrs))
        .send()
        .await
        .map_err(|e| anyhow!(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?
        .queue_url
        .ok_or_else(|| anyhow!("no queue url"))?;
    let arn = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| anyhow!(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| anyhow!("no queue arn"))?;
    Ok((url, arn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::horizon::{
        DEFAULT_RETENTION_DAYS, DELIVERY_DAYS, MAX_RETENTION_DAYS, MIN_RETENTION_DAYS,
    };

    fn template() -> serde_json::Value {
        let text = std::fs::read_to_string(template_path()).expect("infra/template.json");
        serde_json::from_str(&text).expect("the template is JSON")
    }

    #[test]
    fn the_templates_queue_and_dlq_retention_fit_the_delivery_window_horizons_are_checked_against()
    {
        let t = template();
        let secs = |queue: &str| {
            t["Resources"][queue]["Properties"]["MessageRetentionPeriod"]
                .as_i64()
                .unwrap_or_else(|| panic!("{queue} has a MessageRetentionPeriod"))
        };
        let delivery = secs("EventsQueue") + secs("EventsDLQ");
        assert!(
            delivery <= i64::from(DELIVERY_DAYS) * 86_400,
            "events queue + DLQ keep a message {delivery} s, more than the {DELIVERY_DAYS} days horizons allow for"
        );
    }

    #[test]
    fn the_templates_ledger_retention_parameter_agrees_with_the_code() {
        let p = &template()["Parameters"]["LedgerRetentionDays"];
        assert_eq!(
            p["Default"].as_u64(),
            Some(u64::from(DEFAULT_RETENTION_DAYS))
        );
        assert_eq!(p["MinValue"].as_u64(), Some(u64::from(MIN_RETENTION_DAYS)));
        assert_eq!(p["MaxValue"].as_u64(), Some(u64::from(MAX_RETENTION_DAYS)));
    }
}

#[cfg(test)]
mod policy_tests {
    use super::template_path;

    fn template() -> serde_json::Value {
        let text = std::fs::read_to_string(template_path()).expect("infra/template.json");
        serde_json::from_str(&text).expect("the template is JSON")
    }

    /// Every DynamoDB action a function's inline policies allow on the usage table.
    fn usage_table_actions(function: &str) -> Vec<String> {
        let t = template();
        let mut out = Vec::new();
        for p in t["Resources"][function]["Properties"]["Policies"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for st in p["Statement"].as_array().into_iter().flatten() {
                let on_usage = st["Resource"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| r["Fn::GetAtt"][0] == "UsageTable");
                if on_usage {
                    out.extend(
                        st["Action"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|a| a.as_str().map(str::to_owned)),
                    );
                }
            }
        }
        out
    }

    #[test]
    fn the_rollup_may_batch_write_the_hubspot_changes_it_holds_in_quarantine() {
        // HubSpot changes mapped to a deleted meter are held with BatchWriteItem
        // (shared/aws/src/dynamo/quarantine.rs) while the rollup processes the batch.
        let actions = usage_table_actions("RollupFunction");
        assert!(
            actions.iter().any(|a| a == "dynamodb:BatchWriteItem"),
            "{actions:?}"
        );
    }

    #[test]
    fn no_function_repeats_a_grant_on_the_usage_table() {
        for f in [
            "IngestFunction",
            "RollupFunction",
            "ApiFunction",
            "NotifyFunction",
            "ScoreFunction",
            "AuditFunction",
        ] {
            let mut actions = usage_table_actions(f);
            let n = actions.len();
            actions.sort();
            actions.dedup();
            assert_eq!(actions.len(), n, "{f} repeats a grant: {actions:?}");
        }
    }
}
