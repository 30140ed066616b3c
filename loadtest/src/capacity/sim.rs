//! One run of the fleet against an upload-rate profile, one second per step: uploads join the
//! queue, tasks that finished starting join the fleet, running tasks take what they can, and at
//! the end of every minute the scaling policy sees the minute's datapoint.

use super::policy::{Datapoint, Decision, Policy, Tracker};
use super::queue::Backlog;
use serde::Serialize;
use std::collections::VecDeque;

const DAY_S: f64 = 86_400.0;

/// Uploads over time: a steady rate, an optional daily wave and an optional one-off backlog.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Load {
    /// Uploads per second at all times.
    pub steady_per_s: f64,
    pub daily: Option<Daily>,
    pub backlog: Option<OneOff>,
    /// Seconds simulated.
    pub duration_s: u64,
}

/// A daily wave on top of the steady rate: a cosine with its mean and its peak, peaking at
/// `peak_at_s` seconds into each day (its trough, `2 × mean − peak`, is clamped at 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Daily {
    pub mean_per_s: f64,
    pub peak_per_s: f64,
    pub peak_at_s: u64,
}

/// `count` messages enqueued at once at second `at_s` (a migration or a backfill).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OneOff {
    pub count: f64,
    pub at_s: u64,
}

impl Load {
    /// Uploads per second during second `t`, the one-off backlog excluded.
    pub fn rate_at(&self, t: u64) -> f64 {
        let wave = self.daily.map_or(0.0, |d| {
            let phase = 2.0 * std::f64::consts::PI * (t as f64 - d.peak_at_s as f64) / DAY_S;
            (d.mean_per_s + (d.peak_per_s - d.mean_per_s) * phase.cos()).max(0.0)
        });
        self.steady_per_s + wave
    }
}

/// The fleet: how fast one task renders, how long a new one takes to start, and the policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fleet {
    /// Images per second one task completes, queue round trips included.
    pub per_task_per_s: f64,
    /// Seconds from a scale-out to a new task taking jobs (image pull, start, first poll).
    pub startup_s: u64,
    pub policy: Policy,
}

/// The state at the end of one minute.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Minute {
    pub end_s: u64,
    pub desired: u32,
    pub running: u32,
    pub visible: f64,
    pub oldest_age_s: u64,
    pub uploads_per_s: f64,
}

/// What a run produced.
#[derive(Debug)]
pub struct Trace {
    pub minutes: Vec<Minute>,
    pub queue: Backlog,
    /// Messages that arrived (uploads and the one-off backlog).
    pub arrived: f64,
    /// Seconds from the one-off backlog's arrival until its last message was taken.
    pub drain_s: Option<u64>,
    /// Task-seconds billed: every desired task, starting or running.
    pub task_seconds: f64,
    pub scale_outs: u32,
    pub scale_ins: u32,
}

/// Tasks, by whether they take jobs yet.
struct Tasks {
    running: u32,
    /// When each starting task begins to take jobs, oldest first.
    starting: VecDeque<u64>,
}

impl Tasks {
    fn desired(&self) -> u32 {
        self.running + self.starting.len() as u32
    }

    fn promote(&mut self, now_s: u64) {
        while self.starting.front().is_some_and(|ready| *ready <= now_s) {
            self.starting.pop_front();
            self.running += 1;
        }
    }

    /// Applies a decision: new tasks start; removed ones are the newest starting ones first.
    fn apply(&mut self, decision: Decision, now_s: u64, startup_s: u64) {
        match decision {
            Decision::Hold => {}
            Decision::ScaleOut { to } => {
                for _ in self.desired()..to {
                    self.starting.push_back(now_s + startup_s);
                }
            }
            Decision::ScaleIn { to } => {
                while self.desired() > to && self.starting.pop_back().is_some() {}
                self.running = self.running.min(to);
            }
        }
    }
}

/// Runs `fleet` against `load`, starting from `MinTasks` running tasks and an empty queue.
pub fn simulate(fleet: &Fleet, load: &Load) -> Trace {
    let mut tasks = Tasks { running: fleet.policy.min_tasks, starting: VecDeque::new() };
    let mut tracker = Tracker::new(fleet.policy);
    let mut trace = Trace {
        minutes: Vec::new(),
        queue: Backlog::default(),
        arrived: 0.0,
        drain_s: None,
        task_seconds: 0.0,
        scale_outs: 0,
        scale_ins: 0,
    };
    let (mut sum_visible, mut sum_running, mut sum_rate, mut sum_taken) = (0.0, 0.0, 0.0, 0.0);
    for t in 0..load.duration_s {
        let rate = load.rate_at(t);
        let one_off = load.backlog.filter(|b| b.at_s == t).map_or(0.0, |b| b.count);
        trace.queue.arrive(t, rate + one_off);
        trace.arrived += rate + one_off;
        tasks.promote(t);
        sum_taken += trace.queue.take(t, f64::from(tasks.running) * fleet.per_task_per_s);
        trace.task_seconds += f64::from(tasks.desired());
        let drained = |b: &OneOff| t >= b.at_s && !trace.queue.holds_arrivals_up_to(b.at_s);
        if let Some(b) = load.backlog.filter(|b| trace.drain_s.is_none() && drained(b)) {
            trace.drain_s = Some(t - b.at_s);
        }
        sum_visible += trace.queue.visible();
        sum_running += f64::from(tasks.running);
        sum_rate += rate;
        if (t + 1) % 60 == 0 {
            let end_s = t + 1;
            let point = Datapoint {
                backlog_per_task: sum_visible / sum_running.max(1.0),
                cpu_percent: 100.0 * sum_taken / (sum_running * fleet.per_task_per_s).max(f64::MIN_POSITIVE),
            };
            let decision = tracker.datapoint(end_s, point, tasks.desired());
            match decision {
                Decision::ScaleOut { .. } => trace.scale_outs += 1,
                Decision::ScaleIn { .. } => trace.scale_ins += 1,
                Decision::Hold => {}
            }
            tasks.apply(decision, end_s, fleet.startup_s);
            trace.minutes.push(Minute {
                end_s,
                desired: tasks.desired(),
                running: tasks.running,
                visible: trace.queue.visible(),
                oldest_age_s: trace.queue.oldest_age_s(end_s),
                uploads_per_s: sum_rate / 60.0,
            });
            (sum_visible, sum_running, sum_rate, sum_taken) = (0.0, 0.0, 0.0, 0.0);
        }
    }
    trace
}

#[cfg(test)]
mod tests {
    use super::super::policy::Alarms;
    use super::*;

    fn fleet(min: u32, max: u32, per_task: f64) -> Fleet {
        Fleet {
            per_task_per_s: per_task,
            startup_s: 60,
            policy: Policy {
                min_tasks: min,
                max_tasks: max,
                target: 40.0,
                cpu_target: None,
                scale_out_cooldown_s: 60,
                scale_in_cooldown_s: 300,
                alarms: Alarms::default(),
            },
        }
    }

    fn steady(rate: f64, hours: u64) -> Load {
        Load { steady_per_s: rate, daily: None, backlog: None, duration_s: hours * 3600 }
    }

    #[test]
    fn a_rate_below_one_tasks_capacity_keeps_one_task_and_no_backlog() {
        for rate in [0.0, 0.1, 1.0, 5.0, 9.0, 9.99] {
            let trace = simulate(&fleet(1, 10, 10.0), &steady(rate, 6));
            assert!(trace.minutes.iter().all(|m| m.desired == 1 && m.running == 1), "rate {rate}");
            assert!(trace.minutes.iter().all(|m| m.visible < 1e-6 && m.oldest_age_s == 0), "rate {rate}");
            assert_eq!(trace.queue.max_wait_s(), 0);
            assert_eq!((trace.scale_outs, trace.scale_ins), (0, 0));
            assert!((trace.task_seconds - 6.0 * 3600.0).abs() < 1e-6, "one task billed all along");
            assert!((trace.queue.taken() - rate * 6.0 * 3600.0).abs() < 1e-3, "everything processed");
        }
    }

    #[test]
    fn a_fixed_fleet_drains_a_backlog_in_count_over_capacity() {
        // MinTasks = MaxTasks: the policy cannot act, so the answer is arithmetic.
        for (tasks, per_task, count) in [(1, 10.0, 36_000.0), (4, 9.5, 500_000.0), (10, 7.0, 1234.0)] {
            let load = Load {
                steady_per_s: 0.0,
                daily: None,
                backlog: Some(OneOff { count, at_s: 100 }),
                duration_s: 200_000,
            };
            let trace = simulate(&fleet(tasks, tasks, per_task), &load);
            let expected = (count / (f64::from(tasks) * per_task)).ceil() as u64 - 1;
            assert_eq!(trace.drain_s, Some(expected), "{tasks} tasks at {per_task}/s, {count} messages");
            assert_eq!(trace.queue.max_wait_s(), expected);
        }
    }

    #[test]
    fn a_steady_overload_scales_out_and_keeps_up_on_average() {
        // 35 uploads/s against 10 per task. Once the fleet has caught up the queue is empty, the
        // metric reads 0, and 15 minutes later target tracking scales in to MinTasks, where the
        // backlog builds again: a sawtooth, but nothing piles up from one cycle to the next.
        let trace = simulate(&fleet(1, 20, 10.0), &steady(35.0, 4));
        assert!(trace.scale_outs >= 2 && trace.scale_ins >= 2, "{} out, {} in", trace.scale_outs, trace.scale_ins);
        assert_eq!(trace.minutes.iter().map(|m| m.desired).max(), Some(20));
        let peak_queue = |ms: &[Minute]| ms.iter().map(|m| m.visible).fold(0.0, f64::max);
        let (first, last) = (peak_queue(&trace.minutes[..120]), peak_queue(&trace.minutes[120..]));
        assert!(last <= first * 1.05, "the backlog's peaks grow: {first} then {last}");
        assert!(trace.queue.taken() >= trace.arrived - last - 1e-6);
    }

    #[test]
    fn a_cpu_policy_beside_the_backlog_one_ends_the_sawtooth() {
        // The same load with a 70 % CPU policy: scale-in needs both policies, and CPU stays high
        // while the fleet is busy, so the fleet settles where the rate needs it: 35 / (10 × 0.7)
        // = 5 tasks, give or take the 90 % scale-in threshold (35 / 7 ... 35 / 6.3 → 5 or 6).
        let mut f = fleet(1, 20, 10.0);
        f.policy.cpu_target = Some(70.0);
        let trace = simulate(&f, &steady(35.0, 4));
        let last_hours = &trace.minutes[120..];
        assert!(
            last_hours.iter().all(|m| (5..=6).contains(&m.desired)),
            "{:?}",
            last_hours.iter().map(|m| m.desired).collect::<Vec<_>>()
        );
        assert!(last_hours.iter().all(|m| m.oldest_age_s <= 1), "no backlog once settled");
    }

    #[test]
    fn min_tasks_that_cover_the_rate_hold_steady_with_no_backlog() {
        let trace = simulate(&fleet(4, 20, 10.0), &steady(35.0, 4));
        assert!(trace.minutes.iter().all(|m| m.desired == 4 && m.visible < 1e-6));
        assert_eq!((trace.scale_outs, trace.scale_ins, trace.queue.max_wait_s()), (0, 0, 0));
    }

    #[test]
    fn a_capped_fleet_falls_behind_by_the_difference() {
        // 50/s against at most 3 × 10/s: the queue grows by 20/s once all 3 run.
        let trace = simulate(&fleet(1, 3, 10.0), &steady(50.0, 2));
        let (a, b) = (&trace.minutes[60], &trace.minutes[119]);
        assert_eq!((a.running, b.running), (3, 3));
        let growth = (b.visible - a.visible) / (b.end_s - a.end_s) as f64;
        assert!((growth - 20.0).abs() < 1e-6, "growth {growth}/s");
    }

    #[test]
    fn a_backlog_scales_out_then_back_in_to_the_minimum() {
        let load = Load {
            steady_per_s: 1.0,
            daily: None,
            backlog: Some(OneOff { count: 100_000.0, at_s: 600 }),
            duration_s: 6 * 3600,
        };
        let f = fleet(1, 10, 10.0);
        let trace = simulate(&f, &load);
        let drain = trace.drain_s.expect("drained");
        let (fastest, slowest) = (100_000.0 / 100.0, 100_000.0 / 9.0);
        assert!(drain as f64 >= fastest - 1.0 && (drain as f64) < slowest, "drain {drain} s");
        assert_eq!(trace.minutes.iter().map(|m| m.desired).max(), Some(10), "reaches MaxTasks");
        assert_eq!(trace.minutes.last().map(|m| m.desired), Some(1), "back to MinTasks");
        assert!(trace.minutes.iter().all(|m| m.desired >= 1 && m.desired <= 10));
    }

    #[test]
    fn new_tasks_take_jobs_only_after_their_start_up() {
        let mut f = fleet(1, 10, 10.0);
        f.startup_s = 600;
        let load =
            Load { steady_per_s: 0.0, daily: None, backlog: Some(OneOff { count: 1e6, at_s: 0 }), duration_s: 1200 };
        let trace = simulate(&f, &load);
        let first_out = trace.minutes.iter().position(|m| m.desired > 1).expect("scaled out");
        assert_eq!(trace.minutes[first_out].end_s, 180, "third datapoint");
        for m in &trace.minutes {
            if m.end_s <= 180 + 600 {
                assert_eq!(m.running, 1, "at {} s the new tasks are still starting", m.end_s);
            } else {
                assert!(m.running > 1, "at {} s the new tasks run", m.end_s);
            }
        }
    }

    #[test]
    fn the_daily_wave_has_its_mean_and_peak() {
        let load = Load {
            steady_per_s: 0.0,
            daily: Some(Daily { mean_per_s: 10.0, peak_per_s: 25.0, peak_at_s: 72_000 }),
            backlog: None,
            duration_s: 86_400,
        };
        let mean = (0..86_400).map(|t| load.rate_at(t)).sum::<f64>() / 86_400.0;
        assert!((load.rate_at(72_000) - 25.0).abs() < 1e-9);
        assert!(load.rate_at(72_000 - 43_200).abs() < 1e-9, "trough 2 × 10 − 25 clamped to 0");
        assert!(mean > 10.0, "clamping the trough raises the mean: {mean}");
        let gentle = Load { daily: Some(Daily { mean_per_s: 10.0, peak_per_s: 15.0, peak_at_s: 0 }), ..load };
        let mean = (0..86_400).map(|t| gentle.rate_at(t)).sum::<f64>() / 86_400.0;
        assert!((mean - 10.0).abs() < 1e-6, "{mean}");
    }
}
