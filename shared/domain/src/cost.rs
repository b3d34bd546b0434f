//! What counting costs on AWS, in US dollars per million events, from what a run
//! measured (requests, write units, handler time) and list prices. Pure: the bench
//! feeds it its measurements and prints the breakdown.

/// On-demand list prices, US East (N. Virginia). Free tiers are left out: this is the
/// marginal price of one more million events.
///
/// Sources and dates (AWS pricing pages; this machine has no network, so they were not
/// re-checked on the day of a bench run):
/// - DynamoDB on-demand, after the price cut of 2024-11-01: $0.625 per million write
///   request units and $0.125 per million read request units on the Standard table
///   class; $0.78125 and $0.155 on Standard-Infrequent Access. Storage $0.25 per
///   GB-month (Standard) and $0.10 (Standard-IA), each item counted with 100 bytes of
///   overhead.
/// - SQS standard queues: $0.40 per million requests (2024).
/// - Lambda: $0.20 per million requests; arm64 $0.0000133334 per GB-second (2024).
/// - API Gateway HTTP API: $1.00 per million requests, first 300 million a month (2024).
/// - SNS: $0.50 per million publishes, e-mail deliveries $2.00 per 100,000 (2024).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    /// DynamoDB on-demand, per million write request units (Standard table class).
    pub dynamodb_per_million_wru: f64,
    /// DynamoDB on-demand, per million read request units (Standard table class).
    pub dynamodb_per_million_rru: f64,
    /// DynamoDB storage, per GB-month (Standard table class).
    pub dynamodb_storage_per_gb_month: f64,
    /// The same three on the Standard-Infrequent Access table class.
    pub dynamodb_ia_per_million_wru: f64,
    pub dynamodb_ia_per_million_rru: f64,
    pub dynamodb_ia_storage_per_gb_month: f64,
    /// SQS standard queue, per million requests (each up to 64 KB).
    pub sqs_per_million_requests: f64,
    /// Lambda, per million invocations.
    pub lambda_per_million_requests: f64,
    /// Lambda on arm64, per GB-second.
    pub lambda_arm64_per_gb_second: f64,
    /// API Gateway HTTP API, per million requests (first 300 million a month).
    pub http_api_per_million_requests: f64,
    /// SNS, per million publishes.
    pub sns_per_million_publishes: f64,
    /// SNS e-mail deliveries, per million.
    pub sns_per_million_emails: f64,
}

pub const LIST_PRICES: Prices = Prices {
    dynamodb_per_million_wru: 0.625,
    dynamodb_per_million_rru: 0.125,
    dynamodb_storage_per_gb_month: 0.25,
    dynamodb_ia_per_million_wru: 0.781_25,
    dynamodb_ia_per_million_rru: 0.155,
    dynamodb_ia_storage_per_gb_month: 0.10,
    sqs_per_million_requests: 0.40,
    lambda_per_million_requests: 0.20,
    lambda_arm64_per_gb_second: 0.000_013_333_4,
    http_api_per_million_requests: 1.00,
    sns_per_million_publishes: 0.50,
    sns_per_million_emails: 20.0,
};

/// DynamoDB bills each stored item with this many bytes of overhead.
pub const ITEM_OVERHEAD_BYTES: u64 = 100;

/// Average days in a month (365.25 / 12), to turn a retention into GB-months.
const DAYS_PER_MONTH: f64 = 30.4375;

/// The ledger table's DynamoDB table class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableClass {
    Standard,
    /// Standard-Infrequent Access: cheaper storage, dearer requests.
    InfrequentAccess,
}

/// A function's share of a run: how often it ran and for how long, at what memory.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionRun {
    pub name: &'static str,
    pub invocations: u64,
    /// Total billed duration of those invocations, in seconds.
    pub seconds: f64,
    pub memory_mb: u32,
}

/// How long the ledger keeps each event's record, and on which table class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LedgerRetention {
    pub days: u32,
    pub class: TableClass,
}

/// What a run of `events` accepted events used.
#[derive(Debug, Clone, PartialEq)]
pub struct RunUsage {
    pub events: u64,
    /// Every write request unit of the run, the ledger's included.
    pub write_units: u64,
    /// The part of `write_units` that went to the ledger table.
    pub ledger_write_units: u64,
    /// Read request units, in halves (an eventually consistent read of up to 4 KB is
    /// half a unit).
    pub read_half_units: u64,
    /// Bytes the run's ledger records occupy, DynamoDB's per-item overhead included.
    pub ledger_bytes: u64,
    pub sqs_requests: u64,
    pub http_requests: u64,
    pub sns_publishes: u64,
    pub emails: u64,
    pub functions: Vec<FunctionRun>,
}

/// One line of the bill, per million events.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub item: String,
    pub dollars: f64,
}

/// The bill for a million events like those of `usage`, whose ledger records are kept
/// as `ledger` says, line by line, and its total. `None` when the run counted no
/// events (no rate to scale).
pub fn per_million_events(
    usage: &RunUsage,
    ledger: LedgerRetention,
    prices: &Prices,
) -> Option<(Vec<Line>, f64)> {
    if usage.events == 0 {
        return None;
    }
    let scale = 1_000_000.0 / usage.events as f64;
    let per_million = |count: u64, price: f64| count as f64 * scale * price / 1_000_000.0;
    let (ledger_wru_price, storage_price) = match ledger.class {
        TableClass::Standard => (
            prices.dynamodb_per_million_wru,
            prices.dynamodb_storage_per_gb_month,
        ),
        TableClass::InfrequentAccess => (
            prices.dynamodb_ia_per_million_wru,
            prices.dynamodb_ia_storage_per_gb_month,
        ),
    };
    let other_wru = usage.write_units.saturating_sub(usage.ledger_write_units);
    let gb_months =
        usage.ledger_bytes as f64 * scale / 1e9 * f64::from(ledger.days) / DAYS_PER_MONTH;
    let mut lines = vec![
        Line {
            item: "DynamoDB writes, usage table".into(),
            dollars: per_million(other_wru, prices.dynamodb_per_million_wru),
        },
        Line {
            item: "DynamoDB writes, ledger table".into(),
            dollars: per_million(usage.ledger_write_units, ledger_wru_price),
        },
        Line {
            item: "DynamoDB reads".into(),
            dollars: per_million(usage.read_half_units, prices.dynamodb_per_million_rru) / 2.0,
        },
        Line {
            item: format!("DynamoDB ledger storage, {} days", ledger.days),
            dollars: gb_months * storage_price,
        },
        Line {
            item: "SQS requests".into(),
            dollars: per_million(usage.sqs_requests, prices.sqs_per_million_requests),
        },
        Line {
            item: "HTTP API requests".into(),
            dollars: per_million(usage.http_requests, prices.http_api_per_million_requests),
        },
        Line {
            item: "SNS publishes + e-mails".into(),
            dollars: per_million(usage.sns_publishes, prices.sns_per_million_publishes)
                + per_million(usage.emails, prices.sns_per_million_emails),
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
            ledger_write_units: events,
            read_half_units: events / 50,
            ledger_bytes: events * 300,
            sqs_requests: events / 100,
            http_requests: events / 1000,
            sns_publishes: events / 10_000,
            emails: events / 10_000,
            functions: vec![FunctionRun {
                name: "rollup",
                invocations: events / 1000,
                seconds: events as f64 / 1000.0 * 0.5,
                memory_mb: 1024,
            }],
        }
    }

    const STANDARD_400: LedgerRetention = LedgerRetention {
        days: 400,
        class: TableClass::Standard,
    };

    fn line(lines: &[Line], prefix: &str) -> f64 {
        lines
            .iter()
            .find(|l| l.item.starts_with(prefix))
            .map(|l| l.dollars)
            .unwrap_or(f64::NAN)
    }

    #[test]
    fn each_line_of_the_bill_is_its_count_per_million_events_times_its_price() {
        let (lines, total) =
            per_million_events(&usage(10_000), STANDARD_400, &LIST_PRICES).unwrap();
        let close = |prefix: &str, want: f64| {
            let got = line(&lines, prefix);
            assert!(
                (got - want).abs() < 1e-6,
                "{prefix}: {got} vs {want}: {lines:?}"
            );
        };
        // A million events: a million WRU in each table, 10,000 RRU.
        close("DynamoDB writes, usage", 0.625);
        close("DynamoDB writes, ledger", 0.625);
        close("DynamoDB reads", 0.001_25);
        // 300 B x 1M = 0.3 GB kept 400 days = 13.1417 months.
        close(
            "DynamoDB ledger storage, 400 days",
            0.3 * 400.0 / 30.4375 * 0.25,
        );
        close("SQS", 0.004);
        close("HTTP API", 0.001);
        // 100 publishes and 100 e-mails.
        close("SNS", 0.000_05 + 0.002);
        // 1,000 invocations ($0.0002) and 500 GB-s ($0.0066667).
        close("Lambda rollup", 0.006_866_7);
        let sum: f64 = lines.iter().map(|l| l.dollars).sum();
        assert!((total - sum).abs() < 1e-12);
    }

    #[test]
    fn infrequent_access_trades_dearer_ledger_writes_for_cheaper_ledger_storage() {
        let ia = LedgerRetention {
            days: 400,
            class: TableClass::InfrequentAccess,
        };
        let (std_lines, _) =
            per_million_events(&usage(10_000), STANDARD_400, &LIST_PRICES).unwrap();
        let (ia_lines, _) = per_million_events(&usage(10_000), ia, &LIST_PRICES).unwrap();
        assert!((line(&ia_lines, "DynamoDB writes, ledger") - 0.781_25).abs() < 1e-9);
        assert_eq!(
            line(&ia_lines, "DynamoDB writes, usage"),
            line(&std_lines, "DynamoDB writes, usage")
        );
        let storage = |l: &[Line]| line(l, "DynamoDB ledger storage");
        assert!((storage(&ia_lines) / storage(&std_lines) - 0.4).abs() < 1e-9);
    }

    #[test]
    fn ledger_storage_grows_with_the_retention() {
        let short = LedgerRetention {
            days: 54,
            ..STANDARD_400
        };
        let (long, _) = per_million_events(&usage(10_000), STANDARD_400, &LIST_PRICES).unwrap();
        let (short, _) = per_million_events(&usage(10_000), short, &LIST_PRICES).unwrap();
        let ratio =
            line(&long, "DynamoDB ledger storage") / line(&short, "DynamoDB ledger storage");
        assert!((ratio - 400.0 / 54.0).abs() < 1e-9, "{ratio}");
    }

    #[test]
    fn the_bill_scales_with_the_rate_not_the_size_of_the_run() {
        let (_, small) = per_million_events(&usage(10_000), STANDARD_400, &LIST_PRICES).unwrap();
        let (_, large) = per_million_events(&usage(1_000_000), STANDARD_400, &LIST_PRICES).unwrap();
        assert!((small - large).abs() < 1e-9, "{small} vs {large}");
    }

    #[test]
    fn a_run_without_events_has_no_rate() {
        assert_eq!(
            per_million_events(&usage(0), STANDARD_400, &LIST_PRICES),
            None
        );
    }
}
