//! Adapters at the edge: the ports of `domain` implemented on AWS (DynamoDB, SQS,
//! SNS, Secrets Manager) and the HTTPS transport of the HubSpot write-back.

pub mod dynamo;
pub mod hubspot;
pub mod sdk;
pub mod secrets;
pub mod sns;
pub mod sqs;
