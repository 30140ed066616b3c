//! What a run costs: Fargate task time, S3 and SQS requests, and the Redis node, at stated
//! prices, and the task memory the worker needs.

use serde::Serialize;

/// Unit prices in US dollars. The defaults are AWS's published on-demand list prices for
/// us-east-1 (Fargate Linux/x86-64, S3 Standard, SQS standard queues, ElastiCache
/// cache.t4g.micro); check them against the pricing pages of your region before relying on them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prices {
    pub fargate_vcpu_hour: f64,
    pub fargate_gb_hour: f64,
    pub s3_put_per_1000: f64,
    pub s3_get_per_1000: f64,
    pub sqs_per_million: f64,
    pub redis_node_hour: f64,
}

impl Default for Prices {
    fn default() -> Self {
        Self {
            fargate_vcpu_hour: 0.040_48,
            fargate_gb_hour: 0.004_445,
            s3_put_per_1000: 0.005,
            s3_get_per_1000: 0.0004,
            sqs_per_million: 0.40,
            redis_node_hour: 0.016,
        }
    }
}

/// Requests the fleet makes per image and per task.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Requests {
    /// `GetObject` per image (the source).
    pub s3_gets_per_image: f64,
    /// `PutObject` per image: one per rendition output of the preset.
    pub s3_puts_per_image: f64,
    /// SQS requests per image: S3's `SendMessage`, the worker's `ReceiveMessage` and
    /// `DeleteMessageBatch` (counted as one each: a conservative bound, batches only help).
    pub sqs_per_image: f64,
    /// Empty long polls per task-hour when idle: one `ReceiveMessage` per 20 s wait.
    pub sqs_idle_polls_per_task_hour: f64,
}

impl Requests {
    /// The requests of a preset with `outputs` rendition outputs (6 for the built-in profile).
    pub fn for_outputs(outputs: usize) -> Self {
        Self {
            s3_gets_per_image: 1.0,
            s3_puts_per_image: outputs as f64,
            sqs_per_image: 3.0,
            sqs_idle_polls_per_task_hour: 3600.0 / 20.0,
        }
    }
}

/// A Fargate task size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TaskSize {
    pub vcpu: f64,
    pub memory_gib: f64,
}

/// Dollars for one run, by part, and per million images processed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cost {
    pub fargate: f64,
    pub s3_requests: f64,
    pub sqs_requests: f64,
    pub redis: f64,
    pub total: f64,
    pub per_million_images: f64,
}

/// The cost of `images` processed with `task_seconds` of `size` tasks over `duration_s`.
pub fn cost(images: f64, task_seconds: f64, duration_s: f64, size: TaskSize, req: Requests, prices: Prices) -> Cost {
    let task_hours = task_seconds / 3600.0;
    let fargate = task_hours * (size.vcpu * prices.fargate_vcpu_hour + size.memory_gib * prices.fargate_gb_hour);
    let s3_requests = images
        * (req.s3_gets_per_image * prices.s3_get_per_1000 + req.s3_puts_per_image * prices.s3_put_per_1000)
        / 1000.0;
    // A task is busy for images / (task_hours × rate) of its time; the idle-poll bound counts all of it.
    let sqs = images * req.sqs_per_image + task_hours * req.sqs_idle_polls_per_task_hour;
    let sqs_requests = sqs * prices.sqs_per_million / 1e6;
    let redis = duration_s / 3600.0 * prices.redis_node_hour;
    let total = fargate + s3_requests + sqs_requests + redis;
    let per_million_images = if images > 0.0 { total / images * 1e6 } else { 0.0 };
    Cost { fargate, s3_requests, sqs_requests, redis, total, per_million_images }
}

/// Peak worker memory, by the bound of docs/reliability.md:
/// `base + concurrency × (4 B × max_source_pixels + max_source_bytes) + prefetch × max_source_bytes`.
pub fn peak_memory_mib(base_mib: f64, concurrency: u32, max_source_pixels: f64, max_source_bytes: f64) -> f64 {
    const PREFETCH: f64 = 1.0;
    let mib = 1024.0 * 1024.0;
    base_mib
        + f64::from(concurrency) * (4.0 * max_source_pixels + max_source_bytes) / mib
        + PREFETCH * max_source_bytes / mib
}

/// The smallest Fargate memory (MiB) allowed for `vcpu` that holds `needed_mib`, or `None`.
pub fn fargate_memory_mib(vcpu: f64, needed_mib: f64) -> Option<u32> {
    // (vCPU, smallest GiB, largest GiB, step GiB) from Fargate's task size table.
    const SIZES: [(f64, u32, u32, u32); 5] =
        [(0.25, 1, 2, 1), (0.5, 1, 4, 1), (1.0, 2, 8, 1), (2.0, 4, 16, 1), (4.0, 8, 30, 1)];
    if vcpu == 0.25 && needed_mib <= 512.0 {
        return Some(512);
    }
    let (_, lo, hi, step) = SIZES.iter().find(|s| s.0 == vcpu)?;
    (*lo..=*hi).step_by(*step as usize).map(|gib| gib * 1024).find(|mib| f64::from(*mib) >= needed_mib)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_by_hand() {
        // One 1 vCPU / 2 GiB task for 10 hours, 360 000 images, 6 outputs each.
        let c = cost(
            360_000.0,
            36_000.0,
            36_000.0,
            TaskSize { vcpu: 1.0, memory_gib: 2.0 },
            Requests::for_outputs(6),
            Prices::default(),
        );
        let fargate = 10.0 * (0.040_48 + 2.0 * 0.004_445);
        let s3 = 360.0 * (0.0004 + 6.0 * 0.005);
        let sqs = (360_000.0 * 3.0 + 10.0 * 180.0) * 0.40 / 1e6;
        let redis = 10.0 * 0.016;
        assert!((c.fargate - fargate).abs() < 1e-9);
        assert!((c.s3_requests - s3).abs() < 1e-9);
        assert!((c.sqs_requests - sqs).abs() < 1e-9);
        assert!((c.redis - redis).abs() < 1e-9);
        assert!((c.per_million_images - (fargate + s3 + sqs + redis) / 0.36).abs() < 1e-9);
        assert_eq!(
            cost(0.0, 1.0, 1.0, TaskSize { vcpu: 1.0, memory_gib: 2.0 }, Requests::for_outputs(6), Prices::default())
                .per_million_images,
            0.0
        );
    }

    #[test]
    fn memory_bound_matches_the_reliability_notes() {
        // docs/reliability.md: 25 MB + 2 × (160 + 20) MB + 20 MB ≈ 405 MB on 2 CPUs.
        let two = peak_memory_mib(25.0, 2, 40e6, 20.0 * 1024.0 * 1024.0);
        assert!((two - (25.0 + 2.0 * (152.6 + 20.0) + 20.0)).abs() < 1.0, "{two}");
        assert_eq!(fargate_memory_mib(1.0, 225.0), Some(2048));
        assert_eq!(fargate_memory_mib(2.0, 4097.0), Some(5120));
        assert_eq!(fargate_memory_mib(0.25, 300.0), Some(512));
        assert_eq!(fargate_memory_mib(4.0, 31.0 * 1024.0), None);
        assert_eq!(fargate_memory_mib(3.0, 1.0), None, "not a Fargate size");
    }
}
