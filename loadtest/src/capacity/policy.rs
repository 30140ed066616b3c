//! The scaling policy of `deploy/cloudformation/imgfleet.yaml`: Application Auto Scaling target
//! tracking on `visible messages / running tasks`, as a state machine fed one CloudWatch datapoint
//! per minute.
//!
//! The model, stated so that it can be checked against the template and AWS's documentation:
//! - The metric is the template's metric math: the minute's average of the queue's
//!   `ApproximateNumberOfMessagesVisible` divided by the minute's average `RunningTaskCount`
//!   (tasks that are still starting are not running).
//! - Target tracking creates two alarms: scale out when the last [`Alarms::high_points`]
//!   datapoints are all above the target (3 one-minute points), scale in when the last
//!   [`Alarms::low_points`] are all below [`Alarms::low_ratio`] × target (15 points, 90 %).
//!   While an alarm stays in alarm, the policy is invoked again every minute.
//! - The new desired count is `ceil(desired × metric / target)`, clamped to
//!   `[MinTasks, MaxTasks]`; a scale-out only raises it and a scale-in only lowers it.
//! - After a scale-out, no other scale-out for `ScaleOutCooldownSeconds`. After a scale-in, no
//!   other scale-in for `ScaleInCooldownSeconds`; a scale-out is never held back by it, and a
//!   scale-out cooldown in progress holds back scale-in.

/// The template's scaling parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub min_tasks: u32,
    pub max_tasks: u32,
    /// `TargetBacklogPerTask`.
    pub target: f64,
    /// `TargetCpuUtilization` (percent), the second policy; `None` for the backlog policy alone.
    pub cpu_target: Option<f64>,
    pub scale_out_cooldown_s: u64,
    pub scale_in_cooldown_s: u64,
    pub alarms: Alarms,
}

/// The alarms target tracking makes for the policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alarms {
    /// Consecutive one-minute datapoints above the target that scale out.
    pub high_points: usize,
    /// Consecutive one-minute datapoints below `low_ratio × target` that scale in.
    pub low_points: usize,
    pub low_ratio: f64,
}

impl Default for Alarms {
    fn default() -> Self {
        Self { high_points: 3, low_points: 15, low_ratio: 0.9 }
    }
}

/// What the policy decided at a datapoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Hold,
    ScaleOut { to: u32 },
    ScaleIn { to: u32 },
}

/// One minute's datapoints: the template's backlog-per-task metric math and the service's
/// average CPU utilisation (percent of the running tasks' vCPUs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Datapoint {
    pub backlog_per_task: f64,
    pub cpu_percent: f64,
}

/// The policy's memory: recent datapoints and when it last acted.
#[derive(Debug, Clone)]
pub struct Tracker {
    policy: Policy,
    backlog: Vec<f64>,
    cpu: Vec<f64>,
    last_out_s: Option<u64>,
    last_in_s: Option<u64>,
}

impl Tracker {
    pub fn new(policy: Policy) -> Self {
        Self { policy, backlog: Vec::new(), cpu: Vec::new(), last_out_s: None, last_in_s: None }
    }

    /// Feeds the datapoints of the minute ending at `now_s` and returns the decision for a fleet
    /// whose desired count is `desired`. With two policies, as Application Auto Scaling combines
    /// them: either one scales out (to the larger count), and scale-in needs both.
    pub fn datapoint(&mut self, now_s: u64, point: Datapoint, desired: u32) -> Decision {
        self.backlog.push(point.backlog_per_task);
        self.cpu.push(point.cpu_percent);
        let p = self.policy;
        let mut series = vec![(&self.backlog, p.target)];
        if let Some(cpu_target) = p.cpu_target {
            series.push((&self.cpu, cpu_target));
        }
        let high: Vec<u32> = series
            .iter()
            .filter(|(points, target)| last_n_all(points, p.alarms.high_points, |m| m > *target))
            .map(|(points, target)| self.wanted(points, *target, desired))
            .collect();
        if !high.is_empty() {
            let to = high.into_iter().max().unwrap_or(desired);
            if to > desired && !cooling(self.last_out_s, p.scale_out_cooldown_s, now_s) {
                self.last_out_s = Some(now_s);
                return Decision::ScaleOut { to };
            }
            return Decision::Hold;
        }
        let all_low = series
            .iter()
            .all(|(points, target)| last_n_all(points, p.alarms.low_points, |m| m < target * p.alarms.low_ratio));
        let to = series.iter().map(|(points, target)| self.wanted(points, *target, desired)).max().unwrap_or(desired);
        if all_low
            && to < desired
            && !cooling(self.last_in_s, p.scale_in_cooldown_s, now_s)
            && !cooling(self.last_out_s, p.scale_out_cooldown_s, now_s)
        {
            self.last_in_s = Some(now_s);
            return Decision::ScaleIn { to };
        }
        Decision::Hold
    }

    /// `ceil(desired × metric / target)` for the newest point, within the task limits.
    fn wanted(&self, points: &[f64], target: f64, desired: u32) -> u32 {
        let p = self.policy;
        let metric = points.last().copied().unwrap_or(0.0);
        let raw = (f64::from(desired) * metric / target).ceil();
        (raw.min(f64::from(p.max_tasks)) as u32).clamp(p.min_tasks, p.max_tasks)
    }
}

fn last_n_all(points: &[f64], n: usize, test: impl Fn(f64) -> bool) -> bool {
    n > 0 && points.len() >= n && points[points.len() - n..].iter().all(|m| test(*m))
}

fn cooling(last: Option<u64>, cooldown_s: u64, now_s: u64) -> bool {
    last.is_some_and(|t| now_s < t + cooldown_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            min_tasks: 1,
            max_tasks: 10,
            target: 40.0,
            cpu_target: None,
            scale_out_cooldown_s: 60,
            scale_in_cooldown_s: 300,
            alarms: Alarms::default(),
        }
    }

    fn bp(backlog_per_task: f64) -> Datapoint {
        Datapoint { backlog_per_task, cpu_percent: 50.0 }
    }

    #[test]
    fn scales_out_on_the_third_high_point_by_the_ratio() {
        let mut t = Tracker::new(policy());
        assert_eq!(t.datapoint(60, bp(100.0), 1), Decision::Hold);
        assert_eq!(t.datapoint(120, bp(100.0), 1), Decision::Hold);
        assert_eq!(t.datapoint(180, bp(100.0), 1), Decision::ScaleOut { to: 3 }, "ceil(1 × 100 / 40)");
        // Within the 60 s cooldown: held, even though the alarm is still on.
        assert_eq!(t.datapoint(200, bp(100.0), 3), Decision::Hold);
        assert_eq!(t.datapoint(240, bp(100.0), 3), Decision::ScaleOut { to: 8 }, "ceil(3 × 100 / 40)");
        assert_eq!(t.datapoint(300, bp(1000.0), 8), Decision::ScaleOut { to: 10 }, "clamped to MaxTasks");
    }

    #[test]
    fn a_point_at_or_below_the_target_breaks_the_high_run() {
        let mut t = Tracker::new(policy());
        for (i, m) in [100.0, 100.0, 40.0, 100.0, 100.0].into_iter().enumerate() {
            assert_eq!(t.datapoint(60 * (i as u64 + 1), bp(m), 1), Decision::Hold, "point {i}");
        }
        assert_eq!(t.datapoint(360, bp(100.0), 1), Decision::ScaleOut { to: 3 });
    }

    #[test]
    fn scales_in_after_fifteen_low_points_and_respects_both_cooldowns() {
        let mut t = Tracker::new(policy());
        for m in 1..15 {
            assert_eq!(t.datapoint(60 * m, bp(0.0), 5), Decision::Hold, "minute {m}");
        }
        assert_eq!(t.datapoint(900, bp(0.0), 5), Decision::ScaleIn { to: 1 });
        // Exactly 0.9 × target is not below it (ceil(10 × 36 / 40) = 9 would be a scale-in).
        let mut t = Tracker::new(policy());
        for m in 1..=20 {
            assert_eq!(t.datapoint(60 * m, bp(36.0), 10), Decision::Hold, "minute {m}");
        }
        // Partial scale-in, then the scale-in cooldown.
        let mut t = Tracker::new(policy());
        for m in 1..15 {
            t.datapoint(60 * m, bp(20.0), 8);
        }
        assert_eq!(t.datapoint(900, bp(20.0), 8), Decision::ScaleIn { to: 4 }, "ceil(8 × 20 / 40)");
        assert_eq!(t.datapoint(960, bp(10.0), 4), Decision::Hold, "scale-in cooldown");
        assert_eq!(t.datapoint(1200, bp(10.0), 4), Decision::ScaleIn { to: 1 });
    }

    #[test]
    fn with_two_policies_either_scales_out_and_scale_in_needs_both() {
        let mut p = policy();
        p.cpu_target = Some(70.0);
        let point = |backlog_per_task, cpu_percent| Datapoint { backlog_per_task, cpu_percent };
        // CPU alone high: ceil(2 × 95 / 70) = 3.
        let mut t = Tracker::new(p);
        for m in 1..=2 {
            assert_eq!(t.datapoint(60 * m, point(0.0, 95.0), 2), Decision::Hold);
        }
        assert_eq!(t.datapoint(180, point(0.0, 95.0), 2), Decision::ScaleOut { to: 3 });
        // Both high: the larger count wins, ceil(2 × 100 / 40) = 5 over 3.
        let mut t = Tracker::new(p);
        for m in 1..=2 {
            t.datapoint(60 * m, point(100.0, 95.0), 2);
        }
        assert_eq!(t.datapoint(180, point(100.0, 95.0), 2), Decision::ScaleOut { to: 5 });
        // An empty queue but busy CPUs (60 %, between 63 and 70): no scale-in.
        let mut t = Tracker::new(p);
        for m in 1..=30 {
            assert_eq!(t.datapoint(60 * m, point(0.0, 60.0), 5), Decision::Hold, "minute {m}");
        }
        // Both low: scale in to the larger of the two counts, ceil(5 × 30 / 70) = 3.
        let mut t = Tracker::new(p);
        for m in 1..15 {
            t.datapoint(60 * m, point(0.0, 30.0), 5);
        }
        assert_eq!(t.datapoint(900, point(0.0, 30.0), 5), Decision::ScaleIn { to: 3 });
    }

    #[test]
    fn a_scale_out_cooldown_holds_back_scale_in() {
        let mut p = policy();
        p.scale_out_cooldown_s = 3600;
        let mut t = Tracker::new(p);
        for m in 1..=3 {
            t.datapoint(60 * m, bp(100.0), 1);
        }
        for m in 4..=30 {
            assert_eq!(t.datapoint(60 * m, bp(0.0), 3), Decision::Hold, "minute {m}");
        }
        assert_eq!(t.datapoint(180 + 3600, bp(0.0), 3), Decision::ScaleIn { to: 1 });
    }
}
