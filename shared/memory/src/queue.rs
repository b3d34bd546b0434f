//! The in-memory [`EventQueue`]: bodies are kept in order for the caller to drain
//! (or discarded, for benchmarks), sends can be made to fail, and requests are counted
//! as SQS would bill them (10 messages per `SendMessageBatch`).

use async_trait::async_trait;
use domain::queue::{EventQueue, QueueError};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

pub struct MemoryQueue {
    pub bodies: Mutex<VecDeque<String>>,
    /// `SendMessageBatch` requests the bodies would have taken.
    pub requests: AtomicU64,
    /// Bodies accepted so far (kept or not).
    pub sent: AtomicU64,
    discard: bool,
    /// The next this-many bodies are refused with [`QueueError::Send`].
    failing: AtomicUsize,
    /// Bodies still accepted before every later one is refused (`usize::MAX`: no limit).
    accepting: AtomicUsize,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self {
            bodies: Mutex::default(),
            requests: AtomicU64::default(),
            sent: AtomicU64::default(),
            discard: false,
            failing: AtomicUsize::default(),
            accepting: AtomicUsize::new(usize::MAX),
        }
    }
}

impl MemoryQueue {
    /// A queue that counts what it is sent and keeps nothing (benchmarks).
    pub fn discarding() -> Self {
        Self {
            discard: true,
            ..Self::default()
        }
    }
    /// Refuses the next `n` bodies sent (each gets its own error, as SQS's batch
    /// entries do); later ones are accepted.
    pub fn fail_next(&self, n: usize) {
        self.failing.store(n, Ordering::SeqCst);
    }
    /// Accepts the next `n` bodies, then refuses every later one (a queue that goes
    /// down part-way through a run).
    pub fn fail_after(&self, n: usize) {
        self.accepting.store(n, Ordering::SeqCst);
    }
    pub fn pop(&self) -> Option<String> {
        self.bodies.lock().ok()?.pop_front()
    }
    /// Every body kept, oldest first, leaving the queue empty.
    pub fn drain(&self) -> Vec<String> {
        self.bodies
            .lock()
            .map(|mut q| q.drain(..).collect())
            .unwrap_or_default()
    }
    pub fn len(&self) -> usize {
        self.bodies.lock().map(|b| b.len()).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl EventQueue for MemoryQueue {
    async fn send(&self, bodies: &[String]) -> Vec<Result<(), QueueError>> {
        self.requests
            .fetch_add(bodies.len().div_ceil(10) as u64, Ordering::Relaxed);
        let Ok(mut q) = self.bodies.lock() else {
            return bodies
                .iter()
                .map(|_| Err(QueueError::Send("poisoned".into())))
                .collect();
        };
        bodies
            .iter()
            .map(|body| {
                let refused = self
                    .failing
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if refused {
                    return Err(QueueError::Send("injected send failure".into()));
                }
                let accepted = self
                    .accepting
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                        usize::MAX => Some(n),
                        n => n.checked_sub(1),
                    })
                    .is_ok();
                if !accepted {
                    return Err(QueueError::Send("queue down (injected)".into()));
                }
                self.sent.fetch_add(1, Ordering::Relaxed);
                if !self.discard {
                    q.push_back(body.clone());
                }
                Ok(())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("m{i}")).collect()
    }

    #[tokio::test]
    async fn bodies_come_out_in_the_order_they_went_in_and_are_billed_per_ten() {
        let q = MemoryQueue::default();
        assert!(q.send(&bodies(12)).await.iter().all(Result::is_ok));
        assert_eq!(q.requests.load(Ordering::Relaxed), 2);
        assert_eq!(q.pop().as_deref(), Some("m0"));
        assert_eq!(q.drain().len(), 11);
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn an_injected_failure_refuses_exactly_that_many_bodies_and_keeps_the_rest() {
        let q = MemoryQueue::default();
        q.fail_next(2);
        let out = q.send(&bodies(3)).await;
        assert_eq!(out.iter().filter(|r| r.is_err()).count(), 2);
        assert_eq!(q.drain(), vec!["m2".to_owned()]);
        assert!(q.send(&bodies(1)).await[0].is_ok());
    }

    #[tokio::test]
    async fn a_queue_that_fails_after_n_accepts_n_and_refuses_every_later_body() {
        let q = MemoryQueue::default();
        q.fail_after(2);
        let out = q.send(&bodies(3)).await;
        assert_eq!(
            out.iter().map(Result::is_ok).collect::<Vec<_>>(),
            [true, true, false]
        );
        assert!(q.send(&bodies(1)).await[0].is_err());
        assert_eq!(q.drain(), vec!["m0".to_owned(), "m1".to_owned()]);
    }

    #[tokio::test]
    async fn a_discarding_queue_counts_what_it_is_sent_and_keeps_nothing() {
        let q = MemoryQueue::discarding();
        q.send(&bodies(25)).await;
        assert_eq!(q.sent.load(Ordering::Relaxed), 25);
        assert!(q.is_empty());
    }
}
