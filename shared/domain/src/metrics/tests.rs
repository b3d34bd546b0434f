use super::*;
use serde_json::json;

/// Checks a document against the EMF specification's rules (structure, the members
/// directives refer to, limits, units) and returns the metric values by name.
fn assert_valid_emf(doc: &Value) -> BTreeMap<String, Vec<f64>> {
    let root = doc.as_object().expect("the root is an object");
    let aws = root["_aws"].as_object().expect("_aws is an object");
    assert!(aws["Timestamp"].is_i64(), "Timestamp is an integer of ms");
    let directives = aws["CloudWatchMetrics"].as_array().expect("an array");
    assert!(!directives.is_empty());
    let mut values = BTreeMap::new();
    for d in directives {
        let d = d.as_object().expect("a directive is an object");
        let mut keys: Vec<&String> = d.keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["Dimensions", "Metrics", "Namespace"],
            "no other members"
        );
        let ns = d["Namespace"].as_str().expect("Namespace is a string");
        assert!((1..=255).contains(&ns.len()));
        for set in d["Dimensions"].as_array().expect("Dimensions is an array") {
            let set = set.as_array().expect("a dimension set is an array");
            assert!(set.len() <= MAX_DIMENSIONS);
            for k in set {
                let k = k.as_str().expect("a dimension key is a string");
                let v = root[k]
                    .as_str()
                    .expect("a dimension's root member is a string");
                assert!((1..=1024).contains(&v.len()));
            }
        }
        let metrics = d["Metrics"].as_array().expect("Metrics is an array");
        assert!(metrics.len() <= MAX_METRICS_PER_DOCUMENT);
        for m in metrics {
            let m = m.as_object().expect("a definition is an object");
            assert!(m.keys().all(|k| k == "Name" || k == "Unit"));
            let name = m["Name"].as_str().expect("Name is a string");
            let unit = m["Unit"].as_str().expect("Unit is a string");
            assert!(Unit::parse(unit).is_some(), "{unit} is a CloudWatch unit");
            let vs: Vec<f64> = match &root[name] {
                Value::Array(a) => {
                    assert!(a.len() <= MAX_VALUES_PER_METRIC);
                    a.iter().map(|v| v.as_f64().expect("a number")).collect()
                }
                v => vec![v.as_f64().expect("a metric's root member is a number")],
            };
            assert!(vs.iter().all(|v| v.is_finite() && v.abs() <= MAX_MAGNITUDE));
            values.insert(name.to_owned(), vs);
        }
    }
    values
}

fn ingest_set() -> MetricSet {
    MetricSet::new("UsageIntel", &[("Function", "ingest")]).unwrap()
}

#[test]
fn a_set_renders_as_one_document_the_specification_accepts() {
    let mut set = ingest_set();
    set.count("EventsAccepted", 3).unwrap();
    set.count("EventsRejected.invalid_meter", 1).unwrap();
    set.put("RollupLag", Unit::Milliseconds, 12.5).unwrap();
    set.put("RollupLag", Unit::Milliseconds, 40.0).unwrap();
    set.property("tenant", "acme").unwrap();
    let docs = set.to_emf(1_700_000_000_000);
    assert_eq!(docs.len(), 1);
    let values = assert_valid_emf(&docs[0]);
    assert_eq!(values["EventsAccepted"], [3.0]);
    assert_eq!(values["RollupLag"], [12.5, 40.0]);
    assert_eq!(docs[0]["Function"], "ingest");
    assert_eq!(docs[0]["tenant"], "acme");
    assert_eq!(docs[0]["_aws"]["Timestamp"], 1_700_000_000_000_i64);
    assert_eq!(
        docs[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Function"]]),
        "the tenant is a property, never a dimension"
    );
    assert_eq!(
        docs[0]["EventsAccepted"],
        json!(3.0),
        "one value is a number"
    );
}

#[test]
fn more_than_a_hundred_values_are_split_over_documents_and_none_is_lost() {
    let mut set = ingest_set();
    for i in 0..250 {
        set.put("RollupLag", Unit::Milliseconds, f64::from(i))
            .unwrap();
    }
    set.count("ChunksRetried", 1).unwrap();
    let docs = set.to_emf(0);
    assert_eq!(docs.len(), 3);
    let mut all = Vec::new();
    let mut retried = 0.0;
    for d in &docs {
        let v = assert_valid_emf(d);
        all.extend(v["RollupLag"].iter().copied());
        retried += v.get("ChunksRetried").map_or(0.0, |v| v.iter().sum());
    }
    assert_eq!(all, (0..250).map(f64::from).collect::<Vec<_>>());
    assert_eq!(
        retried, 1.0,
        "a single value is sent once, not per document"
    );
}

#[test]
fn more_than_a_hundred_metrics_are_split_over_documents() {
    let mut set = ingest_set();
    for i in 0..150 {
        set.count(&format!("M{i:03}"), 1).unwrap();
    }
    let docs = set.to_emf(0);
    assert_eq!(docs.len(), 2);
    let names: usize = docs.iter().map(|d| assert_valid_emf(d).len()).sum();
    assert_eq!(names, 150);
}

#[test]
fn values_cloudwatch_refuses_are_dropped_and_counted() {
    let mut set = ingest_set();
    for v in [f64::NAN, f64::INFINITY, -f64::INFINITY, 1e200, 7.0] {
        set.put("Lag", Unit::Milliseconds, v).unwrap();
    }
    assert_eq!(set.dropped, 4);
    let docs = set.to_emf(0);
    assert_eq!(assert_valid_emf(&docs[0])["Lag"], [7.0]);
    let mut only_bad = ingest_set();
    only_bad.put("Lag", Unit::Milliseconds, f64::NAN).unwrap();
    assert!(only_bad.is_empty());
    assert!(only_bad.to_emf(0).is_empty(), "no document without a value");
}

#[test]
fn namespaces_dimensions_and_names_outside_the_limits_are_refused() {
    assert!(matches!(
        MetricSet::new("", &[]),
        Err(EmfError::Namespace(_))
    ));
    assert!(matches!(
        MetricSet::new(":x", &[]),
        Err(EmfError::Namespace(_))
    ));
    assert!(matches!(
        MetricSet::new("a b", &[]),
        Err(EmfError::Namespace(_))
    ));
    assert!(matches!(
        MetricSet::new("N", &[("Function", "")]),
        Err(EmfError::Dimension(_))
    ));
    assert!(matches!(
        MetricSet::new("N", &[("Function", "é")]),
        Err(EmfError::Dimension(_))
    ));
    let long = "x".repeat(1025);
    assert!(matches!(
        MetricSet::new("N", &[("Function", long.as_str())]),
        Err(EmfError::Dimension(_))
    ));
    let names: Vec<String> = (0..31).map(|i| format!("D{i}")).collect();
    let dims: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    assert_eq!(MetricSet::new("N", &dims), Err(EmfError::TooManyDimensions));
    assert!(MetricSet::new("N", &dims[..30]).is_ok());
    let mut set = ingest_set();
    assert!(matches!(set.count("", 1), Err(EmfError::MetricName(_))));
    assert!(matches!(
        set.count("Function", 1),
        Err(EmfError::Collision(_))
    ));
    assert!(matches!(set.count("_aws", 1), Err(EmfError::Collision(_))));
    set.count("Accepted", 1).unwrap();
    assert!(matches!(
        set.property("Accepted", 1),
        Err(EmfError::Collision(_))
    ));
    assert!(matches!(
        set.property("Function", "x"),
        Err(EmfError::Collision(_))
    ));
    assert_eq!(
        set.put("Accepted", Unit::Milliseconds, 1.0),
        Err(EmfError::UnitConflict("Accepted".into()))
    );
}

#[test]
fn the_tally_sums_counters_and_gives_percentiles_per_function_and_tenant() {
    let tally = Tally::default();
    for (tenant, lag) in [("acme", 10.0), ("acme", 30.0), ("globex", 1000.0)] {
        let mut set = MetricSet::new("UsageIntel", &[("Function", "rollup")]).unwrap();
        set.put("RollupLag", Unit::Milliseconds, lag).unwrap();
        set.count("ChunksCounted", 2).unwrap();
        set.property("tenant", tenant).unwrap();
        tally.publish(&set);
    }
    tally.read(&json!({"message": "not EMF"}));
    let mut by_code = MetricSet::new(
        "UsageIntel",
        &[("Function", "ingest"), ("Code", "unknown_meter")],
    )
    .unwrap();
    by_code.count("EventsRejected", 2).unwrap();
    tally.publish(&by_code);
    let all = tally.summaries(None);
    let lag = &all["rollup"]["RollupLag"];
    assert_eq!(
        (lag.samples, lag.sum, lag.min, lag.max),
        (3, 1040.0, 10.0, 1000.0)
    );
    assert_eq!((lag.p50, lag.p99, lag.unit), (30.0, 1000.0, "Milliseconds"));
    assert_eq!(all["rollup"]["ChunksCounted"].sum, 6.0);
    assert_eq!(all["ingest"]["EventsRejected[Code=unknown_meter]"].sum, 2.0);
    let acme = tally.summaries(Some("acme"));
    assert_eq!(acme["rollup"]["RollupLag"].max, 30.0);
    assert_eq!(acme["rollup"]["ChunksCounted"].sum, 4.0);
    assert!(tally.summaries(Some("initech")).is_empty());
}

#[test]
fn percentiles_use_the_nearest_rank() {
    let v: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(percentile(&v, 50.0), 50.0);
    assert_eq!(percentile(&v, 99.0), 99.0);
    assert_eq!(percentile(&[5.0], 99.0), 5.0);
    assert_eq!(percentile(&[], 50.0), 0.0);
}
