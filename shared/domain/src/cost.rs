//! What counting costs on AWS, in US dollars per million events, from what a run
//! measured (requests, write units, handler time) and list prices. Pure: the bench
//! feeds it its measurements and prints the breakdown.

/// On-demand list prices, US East (N. Virginia), as published in 2026. Free tiers are
/// left out: this is the marginal price of one more million events.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    /// DynamoDB on-demand, per million write request units.
    pub dynamodb_per_million_wru: f64,
    /// SQS standard queue, per million requests (each up to 64 KB).
    pub sqs_per_million_requests: f64,
    /// Lambda, per million invocations.
    pub lambda_per_million_requests: f64,
    /// Lambda on arm64, per GB-second.
    pub lambda_arm64_per_gb_second: f64,
    /// API Gateway HTTP API, per million requests (first 300 million a month).
    pub http_api_per_million_requests: f64,
}

pub const LIST_PRICES: Prices = Prices {
    dynamodb_per_million_wru: 0.625,
    sqs_per_million_requests: 0.40,
    lambda_per_million_requests: 0.20,
    lambda_arm64_per_gb_second: 0.000_013_333_4,
    http_api_per_million_requests: 1.00,
};

/// A function's share of a run: how often it ran and for how long, at what memory.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionRun {
    pub name: &'static str,
    pub invocations: u64,
    /// Total billed duration of those invocations, in seconds.
    pub seconds: f64,
    pub memory_mb: u32,
}

/// What a run of `events` accepted events used.
#[derive(Debug, Clone, PartialEq)]
pub struct RunUsage {
    pub events: u64,
    pub write_units: u64,
    pub sqs_requests: u64,
    pub http_requests: u64,
    pub functions: Vec<FunctionRun>,
}

/// One line of the bill, per million events.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub item: String,
    pub dollars: f64,
}

/// The bill for a million events like those of `usage`, line by line, and its total.
/// `None` when the run counted no events (no rate to scale).
pub fn per_million_events(usage: &RunUsage, prices: &Prices) -> Option<(Vec<Line>, f64)> {
    if usage.events == 0 {
        return None;
    }
    let scale = 1_000_000.0 / usage.events as f64;
    let per_million = |count: u64, price: f64| count as f64 * scale * price / 1_000_000.0;
    let mut lines = vec![
        Line {
            item: "DynamoDB writes".into(),
            dollars: per_million(usage.write_units, prices.dynamodb_per_million_wru),
        },
        Line {
            item: "SQS requests".into(),
            dollars: per_million(usage.sqs_requests, prices.sqs_per_million_requests),
        },
        Line {
            item: "HTTP API requests".into(),
            dollars: per_million(usage.http_requests, prices.http_api_per_million_requests),
        },
    ];
    for f in &usage.functions {
        let gb_seconds = f.seconds * f64::from(f.memory_mb) / 1024.0;
        lines.push(Line {
            item: format!("Lambda {} (invocations + GB-s)", f.name),
            dollars: per_million(f.invocations, prices.lambda_per_million_requests)
                + gb_seconds * scale * prices.lambda_arm64_per_gb_second,
        });
    }
    let total = lines.iter().map(|l| l.dollars).sum();
    Some((lines, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(events: u64) -> RunUsage {
        RunUsage {
            events,
            write_units: events * 2,
            sqs_requests: events / 100,
            http_requests: events / 1000,
            functions: vec![FunctionRun {
                name: "rollup",
                invocations: events / 1000,
                seconds: events as f64 / 1000.0 * 0.5,
                memory_mb: 1024,
            }],
        }
    }

    #[test]
    fn a_million_events_at_two_write_units_each_cost_two_million_units_of_writes() {
        let (lines, total) = per_million_events(&usage(10_000), &LIST_PRICES).unwrap();
        assert!((lines[0].dollars - 1.25).abs() < 1e-9, "{lines:?}");
        assert!((lines[1].dollars - 0.004).abs() < 1e-9, "{lines:?}");
        assert!((lines[2].dollars - 0.001).abs() < 1e-9, "{lines:?}");
        // 1,000 invocations ($0.0002) and 500 GB-s ($0.0066667).
        assert!((lines[3].dollars - 0.006_866_7).abs() < 1e-6, "{lines:?}");
        let sum: f64 = lines.iter().map(|l| l.dollars).sum();
        assert!((total - sum).abs() < 1e-12);
    }

    #[test]
    fn the_bill_scales_with_the_rate_not_the_size_of_the_run() {
        let (_, small) = per_million_events(&usage(10_000), &LIST_PRICES).unwrap();
        let (_, large) = per_million_events(&usage(1_000_000), &LIST_PRICES).unwrap();
        assert!((small - large).abs() < 1e-9, "{small} vs {large}");
    }

    #[test]
    fn a_run_without_events_has_no_rate() {
        assert_eq!(per_million_events(&usage(0), &LIST_PRICES), None);
    }
}
