//! The alerts topic on SNS ([`AlertPublisher`]).

use async_trait::async_trait;
use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_sns::Client;
use domain::alert::Rendered;
use domain::publish::{message, AlertPublisher, PublishError};
use std::collections::BTreeMap;

pub struct SnsPublisher {
    client: Client,
    topic_arn: String,
}

impl SnsPublisher {
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        Self {
            client,
            topic_arn: topic_arn.into(),
        }
    }
}

#[async_trait]
impl AlertPublisher for SnsPublisher {
    async fn publish_with(
        &self,
        attributes: BTreeMap<&'static str, String>,
        rendered: &Rendered,
    ) -> Result<(), PublishError> {
        let mut req = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(&rendered.subject)
            .message_structure("json")
            .message(message(rendered)?);
        for (k, v) in attributes {
            let attr = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(|e| PublishError::Encode(e.to_string()))?;
            req = req.message_attributes(k, attr);
        }
        req.send().await.map_err(|e| {
            PublishError::Sns(aws_sdk_sns::error::DisplayErrorContext(e).to_string())
        })?;
        Ok(())
    }
}
