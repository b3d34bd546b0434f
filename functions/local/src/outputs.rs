//! `usage-local --aws`: the deployed stack's outputs (CloudFormation DescribeStacks),
//! so admin commands find the table, the ledger table and the secrets by themselves.
//! The stack is `--stack-name`, or the `stack_name` of `infra/samconfig.toml`'s
//! `--config-env` (`default`), the one `make deploy` created.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub const SAMCONFIG: &str = "infra/samconfig.toml";

/// `infra/samconfig.toml` from the working directory or the repository.
pub fn samconfig_path() -> PathBuf {
    crate::provision::repo_file(SAMCONFIG)
}

/// The `stack_name` of `[{env}.global.parameters]` (or `[{env}.deploy.parameters]`)
/// in a samconfig.toml text.
pub fn stack_name_in(samconfig: &str, env: &str) -> Option<String> {
    let wanted = [
        format!("[{env}.deploy.parameters]"),
        format!("[{env}.global.parameters]"),
    ];
    let mut found = None;
    let mut section = String::new();
    for line in samconfig.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        let Some(rank) = wanted.iter().position(|w| *w == section) else {
            continue;
        };
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() != "stack_name" {
            continue;
        }
        let value = value.trim().trim_matches('"').trim_matches('\'').to_owned();
        // The deploy section wins over the global one.
        if !value.is_empty() && found.as_ref().is_none_or(|(r, _)| rank < *r) {
            found = Some((rank, value));
        }
    }
    found.map(|(_, v)| v)
}

/// The stack to read: the one given, else samconfig's for `env`.
pub fn stack_name(given: Option<&str>, env: &str) -> Result<String> {
    if let Some(name) = given.filter(|n| !n.trim().is_empty()) {
        return Ok(name.trim().to_owned());
    }
    let path = samconfig_path();
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} for the stack name (or pass --stack-name)",
            path.display()
        )
    })?;
    stack_name_in(&text, env).with_context(|| {
        format!(
            "no stack_name for config env '{env}' in {} (pass --stack-name)",
            path.display()
        )
    })
}

/// A stack's outputs by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackOutputs {
    pub stack: String,
    pub values: BTreeMap<String, String>,
}

impl StackOutputs {
    /// Reads `stack`'s outputs with DescribeStacks.
    pub async fn read(aws: &aws_config::SdkConfig, stack: &str) -> Result<Self> {
        let out = aws_sdk_cloudformation::Client::new(aws)
            .describe_stacks()
            .stack_name(stack)
            .send()
            .await
            .with_context(|| {
                format!("describing stack '{stack}' (deployed? the right region and --stack-name?)")
            })?;
        let found = out
            .stacks()
            .first()
            .with_context(|| format!("stack '{stack}' not found"))?;
        let values = found
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
            .collect();
        tracing::debug!(stack, "stack outputs read");
        Ok(Self {
            stack: stack.to_owned(),
            values,
        })
    }

    /// One output, or an error naming the stack and the key.
    pub fn get(&self, key: &str) -> Result<&str> {
        self.values.get(key).map(String::as_str).with_context(|| {
            format!(
                "stack '{}' has no output {key} (an older template? redeploy)",
                self.stack
            )
        })
    }

    /// The usage table's store.
    pub fn store(&self, aws: &aws_config::SdkConfig) -> Result<aws::dynamo::DynamoStore> {
        Ok(aws::dynamo::DynamoStore::new(
            aws_sdk_dynamodb::Client::new(aws),
            self.get("UsageTableName")?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_name_comes_from_the_config_env_and_deploy_wins_over_global() {
        let text = r#"
version = 0.1
[default.global.parameters]
stack_name = "usage-intel-dev"
[prod.global.parameters]
stack_name = "usage-intel"
[prod.deploy.parameters]
stack_name = 'usage-intel-prod'
capabilities = "CAPABILITY_IAM"
"#;
        assert_eq!(
            stack_name_in(text, "default").as_deref(),
            Some("usage-intel-dev")
        );
        assert_eq!(
            stack_name_in(text, "prod").as_deref(),
            Some("usage-intel-prod")
        );
        assert_eq!(stack_name_in(text, "staging"), None);
    }

    /// SAM's build cache hashes each function's `CodeUri` folder only, so a change in a
    /// shared crate or in the workspace's Cargo.toml was answered "Valid cache found" and
    /// the old binaries were deployed. cargo's own target dir decides staleness correctly.
    #[test]
    fn no_samconfig_environment_serves_sam_build_from_sams_cache() {
        let text = std::fs::read_to_string(samconfig_path()).unwrap();
        let mut section = String::new();
        let mut builds = 0;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line.to_owned();
                builds += usize::from(section.ends_with(".build.parameters]"));
            } else if section.ends_with(".build.parameters]") {
                let setting: String = line.chars().filter(|c| !c.is_whitespace()).collect();
                assert_ne!(
                    setting, "cached=true",
                    "{section} builds from SAM's cache, which ignores shared/ and Cargo.toml"
                );
            }
        }
        assert!(
            builds >= 3,
            "default, dev and prod build sections, found {builds}"
        );
    }

    #[test]
    fn the_committed_samconfig_names_the_dev_and_prod_stacks() {
        let text = std::fs::read_to_string(samconfig_path()).unwrap();
        assert_eq!(
            stack_name_in(&text, "default").as_deref(),
            Some("usage-intel-dev")
        );
        assert_eq!(stack_name_in(&text, "prod").as_deref(), Some("usage-intel"));
        assert_eq!(
            stack_name(Some(" mine "), "default").unwrap(),
            "mine",
            "--stack-name wins"
        );
    }
}
