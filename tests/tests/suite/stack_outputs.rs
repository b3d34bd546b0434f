//! `usage-local --aws`: admin commands find the deployed stack's table and secrets in
//! its CloudFormation outputs (DescribeStacks, emulated by moto).

use domain::ports::PortalAdmin;
use e2e::{unique, TestStack};
use local::outputs::StackOutputs;
use serde_json::json;

/// A CloudFormation stack whose outputs name `t`'s resources, as `sam deploy` leaves.
async fn deployed(t: &TestStack) -> String {
    let name = unique("stack");
    let outputs = json!({
        "UsageTableName": {"Value": t.provisioned.reference("UsageTable").unwrap()},
        "HubspotWritebackTokensSecretArn": {"Value": t.provisioned.reference("HubspotWritebackTokensStore").unwrap()},
    });
    let template = json!({
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue"}},
        "Outputs": outputs,
    });
    aws_sdk_cloudformation::Client::new(&t.aws)
        .create_stack()
        .stack_name(&name)
        .template_body(template.to_string())
        .send()
        .await
        .expect("create-stack");
    name
}

#[tokio::test]
async fn admin_commands_reach_the_table_the_stack_outputs_name() {
    let t = TestStack::fresh().await;
    let name = deployed(&t).await;
    let outputs = StackOutputs::read(&t.aws, &name).await.unwrap();
    assert_eq!(
        outputs.get("HubspotWritebackTokensSecretArn").unwrap(),
        t.provisioned
            .reference("HubspotWritebackTokensStore")
            .unwrap()
    );
    // `usage-local --aws portal map 80001 <tenant>` writes through the output's table.
    let store = outputs.store(&t.aws).unwrap();
    assert!(store.claim_portal(80_001, &t.tenant).await.unwrap());
    assert!(t.stack.store.owns_portal(80_001, &t.tenant).await.unwrap());
    let missing = outputs.get("LedgerTableName").unwrap_err().to_string();
    assert!(missing.contains("no output LedgerTableName"), "{missing}");
}

#[tokio::test]
async fn a_stack_that_does_not_exist_is_named_in_the_error() {
    let t = TestStack::fresh().await;
    let err = StackOutputs::read(&t.aws, "no-such-stack")
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("no-such-stack"), "{err:#}");
}
