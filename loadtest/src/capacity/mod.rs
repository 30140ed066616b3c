//! Capacity and cost plan: simulates the queue and the fleet under the CloudFormation template's
//! target-tracking policy for an upload-rate profile, from measured per-task throughput, and
//! prints the tasks over time, the oldest message's age, the time to drain a backlog and the cost
//! per million photos.
//!
//! - [`queue`]: the jobs queue as a fluid first-in first-out backlog.
//! - [`policy`]: target tracking on backlog per task (alarms, cooldowns, limits).
//! - [`sim`]: the run, one second per step, one datapoint per minute.
//! - [`cost`]: prices, requests per image, and the memory a task needs.

pub mod cost;
pub mod policy;
pub mod queue;
pub mod sim;

use crate::stats;
use serde::Serialize;
use std::fmt::Write as _;

/// Everything one plan needs besides the load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub fleet: sim::Fleet,
    pub size: cost::TaskSize,
    pub requests: cost::Requests,
    pub prices: cost::Prices,
}

/// The outcome of one plan against one load.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub target_backlog_per_task: f64,
    pub per_task_per_s: f64,
    pub images: f64,
    pub tasks_min: u32,
    pub tasks_mean: f64,
    pub tasks_max: u32,
    /// The oldest queued message's age, sampled at the end of every minute.
    pub oldest_age_p50_s: f64,
    pub oldest_age_p99_s: f64,
    pub oldest_age_max_s: u64,
    /// How long messages waited in the queue.
    pub wait_p50_s: u64,
    pub wait_p99_s: u64,
    pub wait_max_s: u64,
    pub drain_s: Option<u64>,
    /// Messages still queued when the run ended.
    pub left_queued: f64,
    pub scale_outs: u32,
    pub scale_ins: u32,
    pub cost: cost::Cost,
    /// Tasks over time, in windows of whole minutes (a table of bounded length).
    pub timeline: Vec<Window>,
}

/// Several minutes of a run, summarised.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Window {
    pub end_s: u64,
    pub uploads_per_s: f64,
    pub desired_min: u32,
    pub desired_max: u32,
    pub queued_max: f64,
    pub oldest_max_s: u64,
}

impl Window {
    fn of(minutes: &[sim::Minute]) -> Self {
        Self {
            end_s: minutes.last().map_or(0, |m| m.end_s),
            uploads_per_s: minutes.iter().map(|m| m.uploads_per_s).sum::<f64>() / minutes.len().max(1) as f64,
            desired_min: minutes.iter().map(|m| m.desired).min().unwrap_or(0),
            desired_max: minutes.iter().map(|m| m.desired).max().unwrap_or(0),
            queued_max: minutes.iter().map(|m| m.visible).fold(0.0, f64::max),
            oldest_max_s: minutes.iter().map(|m| m.oldest_age_s).max().unwrap_or(0),
        }
    }
}

/// Simulates `plan` against `load` and summarises the run; `rows` bounds the timeline's length.
pub fn run(plan: &Plan, load: &sim::Load, rows: usize) -> Summary {
    let trace = sim::simulate(&plan.fleet, load);
    let ages = stats::sorted(trace.minutes.iter().map(|m| m.oldest_age_s as f64));
    let tasks = trace.minutes.iter().map(|m| m.desired);
    let every = trace.minutes.len().div_ceil(rows.max(1)).max(1);
    let images = trace.queue.taken();
    Summary {
        target_backlog_per_task: plan.fleet.policy.target,
        per_task_per_s: plan.fleet.per_task_per_s,
        images,
        tasks_min: tasks.clone().min().unwrap_or(0),
        tasks_mean: trace.task_seconds / load.duration_s.max(1) as f64,
        tasks_max: tasks.max().unwrap_or(0),
        oldest_age_p50_s: stats::percentile(&ages, 50.0).unwrap_or(0.0),
        oldest_age_p99_s: stats::percentile(&ages, 99.0).unwrap_or(0.0),
        oldest_age_max_s: trace.minutes.iter().map(|m| m.oldest_age_s).max().unwrap_or(0),
        wait_p50_s: trace.queue.wait_percentile_s(50.0),
        wait_p99_s: trace.queue.wait_percentile_s(99.0),
        wait_max_s: trace.queue.max_wait_s(),
        drain_s: trace.drain_s,
        left_queued: trace.queue.visible(),
        scale_outs: trace.scale_outs,
        scale_ins: trace.scale_ins,
        cost: cost::cost(images, trace.task_seconds, load.duration_s as f64, plan.size, plan.requests, plan.prices),
        timeline: trace.minutes.chunks(every).map(Window::of).collect(),
    }
}

/// `1h05m`, `42s`: a duration for a table cell.
pub fn human_s(s: f64) -> String {
    let s = s.round() as u64;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

impl Summary {
    /// The tasks-over-time table.
    pub fn timeline_table(&self) -> String {
        let mut out = String::from("  until     uploads/s  tasks (min-max)  queued (max)  oldest (max)\n");
        for w in &self.timeline {
            let _ = writeln!(
                out,
                "  {:>8}  {:>9.2}  {:>15}  {:>12.0}  {:>12}",
                human_s(w.end_s as f64),
                w.uploads_per_s,
                format!("{}-{}", w.desired_min, w.desired_max),
                w.queued_max,
                human_s(w.oldest_max_s as f64)
            );
        }
        out
    }

    /// The header of [`Summary::row`].
    pub fn header() -> &'static str {
        "  target  tasks min/mean/max  oldest p50/p99/max        wait p50/p99    drain     left  $/1M photos (fargate+s3+sqs+redis)\n"
    }

    /// One line: the policy's target and what it gave.
    pub fn row(&self) -> String {
        let per_m = |part: f64| if self.images > 0.0 { part / self.images * 1e6 } else { 0.0 };
        format!(
            "  {:>6}  {:>3} / {:>5.1} / {:<4}  {:>6} / {:>6} / {:<7}  {:>6} / {:<6}  {:>6}  {:>7.0}  {:>6.2} ({:.2}+{:.2}+{:.2}+{:.2})\n",
            self.target_backlog_per_task,
            self.tasks_min,
            self.tasks_mean,
            self.tasks_max,
            human_s(self.oldest_age_p50_s),
            human_s(self.oldest_age_p99_s),
            human_s(self.oldest_age_max_s as f64),
            human_s(self.wait_p50_s as f64),
            human_s(self.wait_p99_s as f64),
            self.drain_s.map_or_else(|| "-".to_string(), |s| human_s(s as f64)),
            self.left_queued,
            self.cost.per_million_images,
            per_m(self.cost.fargate),
            per_m(self.cost.s3_requests),
            per_m(self.cost.sqs_requests),
            per_m(self.cost.redis),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(target: f64) -> Plan {
        Plan {
            fleet: sim::Fleet {
                per_task_per_s: 10.0,
                startup_s: 60,
                policy: policy::Policy {
                    min_tasks: 1,
                    max_tasks: 10,
                    target,
                    cpu_target: None,
                    scale_out_cooldown_s: 60,
                    scale_in_cooldown_s: 300,
                    alarms: policy::Alarms::default(),
                },
            },
            size: cost::TaskSize { vcpu: 1.0, memory_gib: 2.0 },
            requests: cost::Requests::for_outputs(6),
            prices: cost::Prices::default(),
        }
    }

    #[test]
    fn an_idle_fleet_costs_one_task_and_the_node() {
        let load = sim::Load { steady_per_s: 0.0, daily: None, backlog: None, duration_s: 3600 };
        let s = run(&plan(40.0), &load, 24);
        assert_eq!((s.tasks_min, s.tasks_max), (1, 1));
        assert_eq!(s.images, 0.0);
        let p = cost::Prices::default();
        let expected =
            p.fargate_vcpu_hour + 2.0 * p.fargate_gb_hour + 180.0 * p.sqs_per_million / 1e6 + p.redis_node_hour;
        assert!((s.cost.total - expected).abs() < 1e-9);
        assert_eq!(s.timeline.len(), 20, "60 minutes in at most 24 rows: 3 minutes each");
        assert_eq!(s.timeline[0].end_s, 180);
        assert_eq!((s.timeline[0].desired_min, s.timeline[0].desired_max), (1, 1));
    }

    #[test]
    fn a_lower_target_drains_a_backlog_no_slower_and_runs_no_fewer_tasks() {
        let load = sim::Load {
            steady_per_s: 2.0,
            daily: None,
            backlog: Some(sim::OneOff { count: 200_000.0, at_s: 300 }),
            duration_s: 12 * 3600,
        };
        let (low, high) = (run(&plan(10.0), &load, 24), run(&plan(400.0), &load, 24));
        let (low_drain, high_drain) = (low.drain_s.expect("drained"), high.drain_s.expect("drained"));
        assert!(low_drain <= high_drain, "{low_drain} vs {high_drain}");
        assert!(low.tasks_max >= high.tasks_max);
        assert!(low.row().contains("10"), "{}", low.row());
        assert!(high.timeline_table().lines().count() > 1);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_s(42.0), "42s");
        assert_eq!(human_s(150.0), "2m30s");
        assert_eq!(human_s(7260.0), "2h01m");
    }
}
