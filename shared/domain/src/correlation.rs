//! Correlation ids: one id per piece of work across functions, taken from the caller's
//! `x-correlation-id` header (or generated), returned in the response header, carried
//! on the SQS messages it causes (a message attribute) and logged on every line.
//!
//! The id of the work in progress is task-local ([`scope`]), so adapters that send
//! messages ([`current`]) carry it without every port passing it along.

use std::future::Future;

/// The HTTP request and response header.
pub const HEADER: &str = "x-correlation-id";
/// The SQS message attribute (String).
pub const ATTRIBUTE: &str = "correlation_id";
/// Longest id accepted from a caller.
pub const MAX_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: String;
}

/// The caller's id when it is 1-128 characters of `[A-Za-z0-9._:/=+-]` (what tracing
/// systems use), else a new one: a log line never carries what a caller injected.
pub fn accept(given: Option<&str>) -> String {
    match given.map(str::trim) {
        Some(id)
            if (1..=MAX_LEN).contains(&id.len())
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._:/=+-".contains(c)) =>
        {
            id.to_owned()
        }
        _ => uuid::Uuid::now_v7().to_string(),
    }
}

/// The id of the work this task is doing, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `f` as the work of correlation id `id`.
pub async fn scope<F: Future>(id: String, f: F) -> F::Output {
    CURRENT.scope(id, f).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callers_well_formed_id_is_kept_and_anything_else_replaced() {
        assert_eq!(accept(Some("req-42:abc")), "req-42:abc");
        assert_eq!(accept(Some("  trimmed ")), "trimmed");
        for bad in [None, Some(""), Some("a b"), Some("<script>"), Some("é")] {
            let id = accept(bad);
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{bad:?} -> {id}");
        }
        let long = "x".repeat(MAX_LEN + 1);
        assert_ne!(accept(Some(&long)), long);
        assert_eq!(accept(Some(&long[1..])), long[1..]);
    }

    #[tokio::test]
    async fn the_id_is_current_inside_its_scope_only() {
        assert_eq!(current(), None);
        let seen = scope("c-1".into(), async { current() }).await;
        assert_eq!(seen.as_deref(), Some("c-1"));
        assert_eq!(current(), None);
    }
}
