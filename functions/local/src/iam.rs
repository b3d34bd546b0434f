//! Each function's role, built in the emulator from its policy in the template (ADR 0010):
//! one IAM user and access key per function, carrying exactly the function's statements
//! with `Ref`/`Fn::GetAtt`/`Fn::Sub` and SAM policy templates resolved to local ARNs.
//! Under the IAM-enforcing launcher (`MOTO_LAUNCHER_IAM=1`) every request a function
//! makes is then checked against them, as AWS checks its execution role.

use anyhow::{anyhow, bail, Context, Result};
use aws_config::SdkConfig;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

/// Local stand-ins for `AWS::Region` and `AWS::AccountId` (moto's defaults).
pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";

/// Removes `action` from the statements of `function`'s policy (only those on
/// `resource`, a logical id, when given), to prove a test needs it. Statements left
/// without actions are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoke {
    pub function: String,
    pub action: String,
    pub resource: Option<String>,
}

impl Revoke {
    pub fn action(function: &str, action: &str) -> Self {
        Self {
            function: function.to_owned(),
            action: action.to_owned(),
            resource: None,
        }
    }

    pub fn on(mut self, resource: &str) -> Self {
        self.resource = Some(resource.to_owned());
        self
    }
}

/// Access key of one function's user.
#[derive(Debug, Clone)]
pub struct Key {
    pub id: String,
    pub secret: String,
}

impl Key {
    /// `aws` with this key as its credentials: the function's own identity.
    pub fn config(&self, aws: &SdkConfig) -> SdkConfig {
        let creds = aws_sdk_dynamodb::config::Credentials::new(
            self.id.clone(),
            self.secret.clone(),
            None,
            None,
            "local-function-role",
        );
        aws.to_builder()
            .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
                creds,
            ))
            .build()
    }
}

/// Physical names the template's intrinsics resolve to (from provisioning).
pub struct Names<'a> {
    /// Table name, topic ARN or queue URL by logical id.
    pub refs: &'a HashMap<String, String>,
    /// Queue and topic ARNs by logical id.
    pub arns: &'a HashMap<String, String>,
}

impl Names<'_> {
    fn arn(&self, logical: &str) -> Result<String> {
        if let Some(arn) = self.arns.get(logical) {
            return Ok(arn.clone());
        }
        let name = self
            .refs
            .get(logical)
            .ok_or_else(|| anyhow!("policy names {logical}, which is not provisioned"))?;
        // Tables are the resources without a stored ARN.
        Ok(format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"))
    }

    /// Last segment of a queue's or topic's ARN: its name.
    fn name(&self, logical: &str) -> Result<String> {
        let arn = self.arn(logical)?;
        Ok(arn.rsplit([':', '/']).next().unwrap_or_default().to_owned())
    }

    fn resolve(&self, v: &Value) -> Result<String> {
        if let Some(s) = v.as_str() {
            return Ok(s.to_owned());
        }
        if let Some(getatt) = v.get("Fn::GetAtt").and_then(Value::as_array) {
            let logical = getatt.first().and_then(Value::as_str).unwrap_or_default();
            return match getatt.get(1).and_then(Value::as_str) {
                Some("Arn") => self.arn(logical),
                Some("QueueName" | "TopicName") => self.name(logical),
                other => bail!("Fn::GetAtt {logical}.{other:?} is not resolved locally"),
            };
        }
        if let Some(logical) = v.get("Ref").and_then(Value::as_str) {
            return self
                .refs
                .get(logical)
                .cloned()
                .ok_or_else(|| anyhow!("Ref {logical} is not provisioned"));
        }
        if let Some(sub) = v.get("Fn::Sub").and_then(Value::as_str) {
            return Ok(sub
                .replace("${AWS::Partition}", "aws")
                .replace("${AWS::Region}", REGION)
                .replace("${AWS::AccountId}", ACCOUNT));
        }
        bail!("cannot resolve {v} locally")
    }
}

/// The logical id a policy resource names (`Fn::GetAtt [X, ...]`, `Ref X`), if any.
fn logical_id(v: &Value) -> Option<&str> {
    v.get("Fn::GetAtt")
        .and_then(|g| g.get(0))
        .or_else(|| v.get("Ref"))
        .and_then(Value::as_str)
}

/// SAM policy templates the template uses, as SAM expands them
/// (github.com/aws/serverless-application-model, policy_templates.json).
fn sam_template(name: &str, args: &Value) -> Result<(Vec<&'static str>, Value, &'static str)> {
    let queue = || args.get("QueueName").cloned();
    let topic = || args.get("TopicName").cloned();
    let (actions, arg, service): (Vec<&str>, Option<Value>, &str) = match name {
        "SQSPollerPolicy" => (
            vec![
                "sqs:ChangeMessageVisibility",
                "sqs:ChangeMessageVisibilityBatch",
                "sqs:DeleteMessage",
                "sqs:DeleteMessageBatch",
                "sqs:GetQueueAttributes",
                "sqs:ReceiveMessage",
            ],
            queue(),
            "sqs",
        ),
        "SQSSendMessagePolicy" => (vec!["sqs:SendMessage*"], queue(), "sqs"),
        "SNSPublishMessagePolicy" => (vec!["sns:Publish"], topic(), "sns"),
        other => bail!("SAM policy template {other} is not expanded locally; extend iam.rs"),
    };
    let arg = arg.ok_or_else(|| anyhow!("{name} without its name argument"))?;
    Ok((actions, arg, service))
}

/// Logical ids of the template's functions.
fn functions(template: &Value) -> Result<Vec<&String>> {
    Ok(template["Resources"]
        .as_object()
        .ok_or_else(|| anyhow!("template has no Resources"))?
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(id, _)| id)
        .collect())
}

/// One function's statements as the template grants them, each with the logical id of
/// its resource: `Policies` entries that are documents, and expanded SAM templates.
pub fn statements(template: &Value, function: &str) -> Result<Vec<(Vec<String>, Value)>> {
    let policies = template["Resources"][function]["Properties"]["Policies"]
        .as_array()
        .ok_or_else(|| anyhow!("{function} has no Policies list"))?;
    let mut out = Vec::new();
    for p in policies {
        if let Some(sts) = p.get("Statement").and_then(Value::as_array) {
            for st in sts {
                if st["Effect"] != "Allow" {
                    bail!("{function}: only Allow statements are built locally");
                }
                let actions = match &st["Action"] {
                    Value::String(a) => vec![a.clone()],
                    Value::Array(a) => a
                        .iter()
                        .filter_map(|a| a.as_str().map(str::to_owned))
                        .collect(),
                    _ => bail!("{function}: statement without Action"),
                };
                let resources = match &st["Resource"] {
                    Value::Array(r) => r.clone(),
                    r => vec![r.clone()],
                };
                for r in resources {
                    out.push((actions.clone(), r));
                }
            }
            continue;
        }
        let (name, args) = p
            .as_object()
            .and_then(|o| o.iter().next())
            .ok_or_else(|| anyhow!("{function}: unreadable policy {p}"))?;
        let (actions, arg, service) = sam_template(name, args)?;
        let resource = json!({"SAM": service, "name": arg, "template": name});
        out.push((actions.into_iter().map(str::to_owned).collect(), resource));
    }
    Ok(out)
}

/// The resolved inline policy document of `function`, with `revoke` applied.
pub fn policy(
    template: &Value,
    function: &str,
    names: &Names<'_>,
    revoke: &[Revoke],
) -> Result<Value> {
    let mut kept_statements = Vec::new();
    for (actions, resource) in statements(template, function)? {
        let (arn, logical) = if let Some(service) = resource.get("SAM").and_then(Value::as_str) {
            let name = names.resolve(&resource["name"])?;
            let logical = logical_id(&resource["name"]).map(str::to_owned);
            (
                format!("arn:aws:{service}:{REGION}:{ACCOUNT}:{name}"),
                logical,
            )
        } else {
            (
                names.resolve(&resource)?,
                logical_id(&resource).map(str::to_owned),
            )
        };
        let kept: Vec<String> = actions
            .into_iter()
            .filter(|a| {
                !revoke.iter().any(|r| {
                    r.function == function
                        && &r.action == a
                        && (r.resource.is_none() || r.resource == logical)
                })
            })
            .collect();
        if !kept.is_empty() {
            kept_statements.push(json!({"Effect": "Allow", "Action": kept, "Resource": arn}));
        }
    }
    Ok(json!({"Version": "2012-10-17", "Statement": kept_statements}))
}

/// Creates one IAM user per function (named `{prefix}-{function}`) with its policy and
/// an access key, through the emulator's IAM API as the configured (admin) identity.
pub async fn create_roles(
    aws: &SdkConfig,
    template: &Value,
    prefix: &str,
    names: &Names<'_>,
    revoke: &[Revoke],
) -> Result<BTreeMap<String, Key>> {
    let iam = Iam::new(aws).await?;
    let functions = functions(template)?;
    let mut keys = BTreeMap::new();
    for function in functions {
        let document = policy(template, function, names, revoke)?;
        let user = format!("{prefix}-{function}");
        match iam
            .call(&[("Action", "CreateUser"), ("UserName", &user)])
            .await
        {
            Ok(_) => {}
            // Provisioned before (a restarted `make run` on a running emulator): the new
            // process replaces the old one, so its keys are replaced too.
            Err(e) if e.to_string().contains("EntityAlreadyExists") => {
                let listed = iam
                    .call(&[("Action", "ListAccessKeys"), ("UserName", &user)])
                    .await
                    .with_context(|| format!("listing the access keys of {function}"))?;
                for old in xml_texts(&listed, "AccessKeyId") {
                    iam.call(&[
                        ("Action", "DeleteAccessKey"),
                        ("UserName", &user),
                        ("AccessKeyId", &old),
                    ])
                    .await
                    .with_context(|| format!("deleting an old access key of {function}"))?;
                }
            }
            Err(e) => return Err(e.context(format!("creating the user of {function}"))),
        }
        iam.call(&[
            ("Action", "PutUserPolicy"),
            ("UserName", &user),
            ("PolicyName", "template"),
            ("PolicyDocument", &document.to_string()),
        ])
        .await
        .with_context(|| format!("putting the policy of {function}"))?;
        let created = iam
            .call(&[("Action", "CreateAccessKey"), ("UserName", &user)])
            .await
            .with_context(|| format!("creating the access key of {function}"))?;
        let key = Key {
            id: xml_text(&created, "AccessKeyId")?,
            secret: xml_text(&created, "SecretAccessKey")?,
        };
        keys.insert(function.clone(), key);
    }
    Ok(keys)
}

/// One authorisation the IAM-enforcing launcher made (`MOTO_LAUNCHER_IAM_LOG`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Check {
    /// The caller's user ARN (`.../user/{prefix}-{Function}`).
    pub user: String,
    /// The API operation called (`TransactWriteItems`), which may need several actions.
    #[serde(default)]
    pub operation: String,
    pub action: String,
    pub resource: String,
    pub allowed: bool,
}

impl Check {
    /// The caller's user name: `{prefix}-{Function}` for a function's role.
    fn user_name(&self) -> &str {
        self.user.rsplit('/').next().unwrap_or_default()
    }

    /// The function (logical id) whose role made the call, if it was one.
    pub fn function(&self) -> Option<&str> {
        self.user_name().rsplit_once('-').map(|(_, f)| f)
    }

    /// Whether the call came from a role of the stack provisioned under `prefix`.
    pub fn from_stack(&self, prefix: &str) -> bool {
        self.user_name()
            .rsplit_once('-')
            .is_some_and(|(p, _)| p == prefix)
    }

    /// The logical id of the resource (`{prefix}-{Logical}` is every local name).
    pub fn logical_resource(&self) -> Option<&str> {
        let mut name = self.resource.rsplit([':', '/']).next()?;
        // FIFO queues' names end in `.fifo`.
        name = name.strip_suffix(".fifo").unwrap_or(name);
        if self.resource.contains(":secretsmanager:") {
            // Secrets Manager appends `-` and six random characters to a secret's name.
            name = name.rsplit_once('-')?.0;
        }
        name.rsplit_once('-').map(|(_, l)| l)
    }
}

/// Reads the launcher's log of authorisations (JSON lines).
pub fn read_log(path: &std::path::Path) -> Result<Vec<Check>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("reading IAM log line {l}")))
        .collect()
}

/// SAM's `SQSPollerPolicy` lists these, but AWS has no such IAM actions: batch calls
/// are authorised as `sqs:DeleteMessage`/`sqs:ChangeMessageVisibility`. No request can
/// ever use them, so the coverage check does not ask for them.
const NOT_IAM_ACTIONS: &[&str] = &["sqs:DeleteMessageBatch", "sqs:ChangeMessageVisibilityBatch"];

/// `SQSPollerPolicy` grants these for Lambda's SQS event source mapping, which runs
/// them on AWS (Lambda's code, not ours: it reads queue attributes and returns failed
/// messages); the local poller (esm.rs) only receives and deletes.
const EVENT_SOURCE_MAPPING_ONLY: &[&str] =
    &["sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"];

/// Grants kept although no test uses them, each with the code path that needs it and
/// why no test can reach it. Keep this list short: every entry is a blind spot.
pub const KEPT_UNUSED: &[(&str, &str, &str, &str)] = &[(
    "RollupFunction",
    "dynamodb:GetItem",
    "LedgerTable",
    "the ledger claim's fallback read (shared store, `claim_lookup`) when a failed \
         conditional put does not return the old item; AWS and moto both return it",
)];

/// A granted action on a resource that no permitted call used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unused {
    pub function: String,
    pub action: String,
    pub resource: String,
}

fn matches(pattern: &str, action: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(stem) => action.starts_with(stem),
        None => pattern == action,
    }
}

/// Every grant of the template (function, action, logical resource) that no permitted
/// call in `checks` used: the over-broad grants. With enforcement, every permitted call
/// is granted, so an empty answer means the grants and the calls agree both ways.
pub fn unused_grants(template: &Value, checks: &[Check]) -> Result<Vec<Unused>> {
    let functions = functions(template)?;
    let mut out = Vec::new();
    for function in functions {
        for (actions, resource) in statements(template, function)? {
            let target = if resource.get("SAM").is_some() {
                &resource["name"]
            } else {
                &resource
            };
            let logical = logical_id(target)
                .ok_or_else(|| anyhow!("{function}: grant on {target}, not a template resource"))?;
            let poller = resource["template"] == "SQSPollerPolicy";
            for action in actions {
                let kept = KEPT_UNUSED
                    .iter()
                    .any(|(f, a, r, _)| f == function && *a == action && *r == logical);
                if kept
                    || NOT_IAM_ACTIONS.contains(&action.as_str())
                    || (poller && EVENT_SOURCE_MAPPING_ONLY.contains(&action.as_str()))
                {
                    continue;
                }
                let used = checks.iter().any(|c| {
                    c.allowed
                        && c.function() == Some(function.as_str())
                        && c.logical_resource() == Some(logical)
                        && matches(&action, &c.action)
                });
                if !used {
                    out.push(Unused {
                        function: function.clone(),
                        action,
                        resource: logical.to_owned(),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Every text of `<element>` in `xml`, in order.
fn xml_texts(xml: &str, element: &str) -> Vec<String> {
    let open = format!("<{element}>");
    let close = format!("</{element}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i + open.len()..];
        let Some(j) = rest.find(&close) else { break };
        out.push(rest[..j].to_owned());
        rest = &rest[j + close.len()..];
    }
    out
}

fn xml_text(xml: &str, element: &str) -> Result<String> {
    let open = format!("<{element}>");
    let close = format!("</{element}>");
    let start = xml
        .find(&open)
        .map(|i| i + open.len())
        .ok_or_else(|| anyhow!("IAM answer without {element}: {xml}"))?;
    let len = xml[start..]
        .find(&close)
        .ok_or_else(|| anyhow!("IAM answer without {close}"))?;
    Ok(xml[start..start + len].to_owned())
}

/// The few IAM calls provisioning needs: query protocol, SigV4-signed with the
/// configured credentials (the SDK has no IAM client in this workspace).
struct Iam {
    endpoint: String,
    credentials: aws_sdk_dynamodb::config::Credentials,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
}

impl Iam {
    async fn new(aws: &SdkConfig) -> Result<Self> {
        use aws_sdk_dynamodb::config::ProvideCredentials;
        let endpoint = aws
            .endpoint_url()
            .ok_or_else(|| anyhow!("IAM roles are built only in the emulator (AWS_ENDPOINT_URL)"))?
            .trim_end_matches('/')
            .to_owned();
        if !endpoint.starts_with("http://") {
            bail!("the emulator endpoint {endpoint} is not plain http");
        }
        let credentials = aws
            .credentials_provider()
            .ok_or_else(|| anyhow!("no credentials configured"))?
            .provide_credentials()
            .await
            .map_err(|e| anyhow!("credentials: {e}"))?;
        Ok(Self {
            endpoint,
            credentials,
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build_http(),
        })
    }

    async fn call(&self, params: &[(&str, &str)]) -> Result<String> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        use http_body_util::BodyExt;
        let mut form = form_urlencoded(params);
        form.push_str("&Version=2010-05-08");
        let url = format!("{}/", self.endpoint);
        let identity = self.credentials.clone().into();
        let signing = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(REGION)
            .name("iam")
            .time(std::time::SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| anyhow!("signing IAM request: {e}"))?
            .into();
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let signable = SignableRequest::new(
            "POST",
            url.as_str(),
            [("content-type", content_type)].into_iter(),
            SignableBody::Bytes(form.as_bytes()),
        )
        .map_err(|e| anyhow!("signing IAM request: {e}"))?;
        let (instructions, _) = sign(signable, &signing)
            .map_err(|e| anyhow!("signing IAM request: {e}"))?
            .into_parts();
        let mut req = http::Request::post(&url).header("content-type", content_type);
        for (name, value) in instructions.headers() {
            req = req.header(name, value);
        }
        let req = req.body(http_body_util::Full::new(bytes::Bytes::from(form)))?;
        let resp = self.client.request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        if !status.is_success() {
            bail!("IAM {status}: {text}");
        }
        Ok(text)
    }
}

fn form_urlencoded(params: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Value {
        let text = std::fs::read_to_string(crate::provision::template_path()).expect("template");
        serde_json::from_str(&text).expect("JSON")
    }

    fn names() -> (HashMap<String, String>, HashMap<String, String>) {
        let refs = HashMap::from([
            ("UsageTable".to_owned(), "p-UsageTable".to_owned()),
            ("LedgerTable".to_owned(), "p-LedgerTable".to_owned()),
        ]);
        let arns = HashMap::from([
            (
                "EventsQueue".to_owned(),
                format!("arn:aws:sqs:{REGION}:{ACCOUNT}:p-EventsQueue"),
            ),
            (
                "AlertsQueue".to_owned(),
                format!("arn:aws:sqs:{REGION}:{ACCOUNT}:p-AlertsQueue"),
            ),
            (
                "AlertsTopic".to_owned(),
                format!("arn:aws:sns:{REGION}:{ACCOUNT}:p-AlertsTopic"),
            ),
        ]);
        (refs, arns)
    }

    fn grants(doc: &Value) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for st in doc["Statement"].as_array().into_iter().flatten() {
            for a in st["Action"].as_array().into_iter().flatten() {
                out.push((
                    a.as_str().unwrap_or_default().to_owned(),
                    st["Resource"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
        out
    }

    #[test]
    fn the_rollups_policy_resolves_to_local_arns_with_sam_templates_expanded() {
        let (refs, arns) = names();
        let doc = policy(
            &template(),
            "RollupFunction",
            &Names {
                refs: &refs,
                arns: &arns,
            },
            &[],
        )
        .expect("policy");
        let g = grants(&doc);
        let ledger = format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/p-LedgerTable");
        assert!(g.contains(&("dynamodb:PutItem".into(), ledger)), "{g:?}");
        assert!(g.contains(&(
            "sqs:ReceiveMessage".into(),
            format!("arn:aws:sqs:{REGION}:{ACCOUNT}:p-EventsQueue")
        )));
        assert!(g.contains(&(
            "sqs:SendMessage*".into(),
            format!("arn:aws:sqs:{REGION}:{ACCOUNT}:p-AlertsQueue")
        )));
    }

    #[test]
    fn a_revoked_action_is_removed_only_on_the_resource_named() {
        let (refs, arns) = names();
        let names = Names {
            refs: &refs,
            arns: &arns,
        };
        let revoke = [Revoke::action("RollupFunction", "dynamodb:PutItem").on("LedgerTable")];
        let g = grants(&policy(&template(), "RollupFunction", &names, &revoke).expect("policy"));
        let ledger = format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/p-LedgerTable");
        let usage = format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/p-UsageTable");
        assert!(!g.contains(&("dynamodb:PutItem".into(), ledger.clone())));
        assert!(g.contains(&("dynamodb:GetItem".into(), ledger)));
        assert!(g.contains(&("dynamodb:PutItem".into(), usage)));
    }

    fn check(user: &str, action: &str, resource: &str) -> Check {
        Check {
            user: format!("arn:aws:iam::{ACCOUNT}:user/{user}"),
            operation: String::new(),
            action: action.into(),
            resource: resource.into(),
            allowed: true,
        }
    }

    #[test]
    fn a_check_names_the_function_and_the_resource_by_logical_id() {
        let c = check(
            "t-1-0-ab-RollupFunction",
            "dynamodb:PutItem",
            "arn:aws:dynamodb:us-east-1:1:table/t-1-0-ab-LedgerTable",
        );
        assert_eq!(c.function(), Some("RollupFunction"));
        assert_eq!(c.logical_resource(), Some("LedgerTable"));
        assert!(c.from_stack("t-1-0-ab"));
        assert!(!c.from_stack("t-1-0"));
        let secret = check(
            "t-1-0-ab-IngestFunction",
            "secretsmanager:GetSecretValue",
            "arn:aws:secretsmanager:us-east-1:1:secret:t-1-0-ab-HubspotClientSecretStore-AbCdEf",
        );
        assert_eq!(secret.logical_resource(), Some("HubspotClientSecretStore"));
    }

    #[test]
    fn a_grant_no_call_used_is_reported_and_a_wildcard_is_used_by_any_match() {
        let t = json!({"Resources": {"F": {"Type": "AWS::Serverless::Function", "Properties": {"Policies": [
            {"Statement": [{"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:PutItem"],
                            "Resource": [{"Fn::GetAtt": ["T", "Arn"]}]}]},
            {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["Q", "QueueName"]}}}
        ]}}}});
        let checks = [
            check("p-F", "dynamodb:GetItem", "arn:aws:dynamodb:r:1:table/p-T"),
            check("p-F", "sqs:SendMessage", "arn:aws:sqs:r:1:p-Q"),
            // Another function's use, or a use on another table, does not count.
            check("p-G", "dynamodb:PutItem", "arn:aws:dynamodb:r:1:table/p-T"),
            check("p-F", "dynamodb:PutItem", "arn:aws:dynamodb:r:1:table/p-U"),
        ];
        let unused = unused_grants(&t, &checks).expect("coverage");
        assert_eq!(
            unused,
            vec![Unused {
                function: "F".into(),
                action: "dynamodb:PutItem".into(),
                resource: "T".into()
            }]
        );
        let mut denied = check("p-F", "dynamodb:PutItem", "arn:aws:dynamodb:r:1:table/p-T");
        denied.allowed = false;
        let with_denied: Vec<Check> = checks.iter().cloned().chain([denied]).collect();
        assert_eq!(unused_grants(&t, &with_denied).expect("coverage").len(), 1);
    }

    #[test]
    fn every_element_text_is_read_in_order() {
        let xml = "<r><AccessKeyId>A</AccessKeyId><x/><AccessKeyId>B</AccessKeyId></r>";
        assert_eq!(xml_texts(xml, "AccessKeyId"), vec!["A", "B"]);
        assert_eq!(xml_text(xml, "AccessKeyId").expect("first"), "A");
        assert!(xml_text(xml, "SecretAccessKey").is_err());
    }

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(
            form_urlencoded(&[("PolicyDocument", "{\"a\": \"b:c/*\"}")]),
            "PolicyDocument=%7B%22a%22%3A%20%22b%3Ac%2F%2A%22%7D"
        );
    }
}
