//! The jobs queue as a fluid, first-in first-out backlog: arrivals join the tail as one lot per
//! second, running tasks take from the head. Counts are fractional (a rate of 0.3 uploads/s adds
//! 0.3 of a message each second), which keeps the model exact for rates far below one per step.
//!
//! SQS standard queues do not promise order, but with enough pollers they deliver close to it;
//! first-in first-out is also the order that makes the oldest message's age (what the CloudWatch
//! alarm watches) the smallest for a given throughput, so the ages printed are a lower bound.

use std::collections::VecDeque;

/// Counts below this are treated as an empty lot (floating-point dust from fractional rates).
const EPSILON: f64 = 1e-9;

/// Queued messages grouped by the second they arrived in, plus how long taken ones waited.
#[derive(Debug, Default)]
pub struct Backlog {
    lots: VecDeque<Lot>,
    visible: f64,
    /// `waits[s]` = messages taken after waiting `s` whole seconds (rounded down).
    waits: Vec<f64>,
    taken: f64,
}

#[derive(Debug, Clone, Copy)]
struct Lot {
    arrived_s: u64,
    count: f64,
}

impl Backlog {
    /// Adds `count` messages that arrived at second `now_s`.
    pub fn arrive(&mut self, now_s: u64, count: f64) {
        if count <= EPSILON {
            return;
        }
        match self.lots.back_mut() {
            Some(last) if last.arrived_s == now_s => last.count += count,
            _ => self.lots.push_back(Lot { arrived_s: now_s, count }),
        }
        self.visible += count;
    }

    /// Takes up to `capacity` messages from the head at second `now_s`; returns how many.
    pub fn take(&mut self, now_s: u64, capacity: f64) -> f64 {
        let mut left = capacity;
        while left > EPSILON {
            let Some(head) = self.lots.front_mut() else { break };
            let n = head.count.min(left);
            let waited = now_s.saturating_sub(head.arrived_s) as usize;
            if self.waits.len() <= waited {
                self.waits.resize(waited + 1, 0.0);
            }
            self.waits[waited] += n;
            head.count -= n;
            left -= n;
            if head.count <= EPSILON {
                self.lots.pop_front();
            }
        }
        let taken = capacity - left.max(0.0);
        self.visible = (self.visible - taken).max(0.0);
        self.taken += taken;
        if self.lots.is_empty() {
            self.visible = 0.0;
        }
        taken
    }

    /// Messages waiting (SQS `ApproximateNumberOfMessagesVisible`).
    pub fn visible(&self) -> f64 {
        self.visible
    }

    /// Seconds the oldest waiting message has waited at `now_s` (0 when the queue is empty).
    pub fn oldest_age_s(&self, now_s: u64) -> u64 {
        self.lots.front().map_or(0, |lot| now_s.saturating_sub(lot.arrived_s))
    }

    /// Whether any message that arrived at or before `second` is still waiting.
    pub fn holds_arrivals_up_to(&self, second: u64) -> bool {
        self.lots.front().is_some_and(|lot| lot.arrived_s <= second)
    }

    /// Messages taken so far.
    pub fn taken(&self) -> f64 {
        self.taken
    }

    /// The `p`-th percentile (0–100) of the seconds taken messages waited, by whole seconds.
    pub fn wait_percentile_s(&self, p: f64) -> u64 {
        if self.taken <= EPSILON {
            return 0;
        }
        let rank = self.taken * p.clamp(0.0, 100.0) / 100.0;
        let mut seen = 0.0;
        for (s, n) in self.waits.iter().enumerate() {
            seen += n;
            if *n > EPSILON && seen + EPSILON >= rank {
                return s as u64;
            }
        }
        self.waits.len().saturating_sub(1) as u64
    }

    /// The longest wait of any taken message, in whole seconds.
    pub fn max_wait_s(&self) -> u64 {
        self.waits.iter().rposition(|n| *n > EPSILON).unwrap_or(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_in_first_out_with_waits() {
        let mut q = Backlog::default();
        q.arrive(0, 10.0);
        q.arrive(5, 10.0);
        assert_eq!(q.visible(), 20.0);
        assert_eq!(q.oldest_age_s(7), 7);
        assert_eq!(q.take(10, 15.0), 15.0);
        assert_eq!(q.visible(), 5.0);
        assert_eq!(q.oldest_age_s(10), 5, "the second lot is now the head");
        assert!(!q.holds_arrivals_up_to(4));
        assert!(q.holds_arrivals_up_to(5));
        assert_eq!(q.take(20, 100.0), 5.0, "never more than is queued");
        assert_eq!(q.visible(), 0.0);
        assert_eq!(q.oldest_age_s(30), 0);
        // 10 waited 10 s, 5 waited 5 s, 5 waited 15 s.
        assert_eq!(q.wait_percentile_s(0.0), 5);
        assert_eq!(q.wait_percentile_s(50.0), 10);
        assert_eq!(q.wait_percentile_s(99.0), 15);
        assert_eq!(q.max_wait_s(), 15);
        assert_eq!(q.taken(), 20.0);
    }

    #[test]
    fn fractional_rates_add_up() {
        let mut q = Backlog::default();
        for s in 0..1000 {
            q.arrive(s, 0.3);
            q.take(s, 1.0);
        }
        assert!((q.taken() - 300.0).abs() < 1e-6);
        assert_eq!(q.max_wait_s(), 0, "capacity above the rate: nothing waits a whole second");
    }
}
