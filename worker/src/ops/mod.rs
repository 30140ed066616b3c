//! What operators see and what the platform needs: metrics and health, logs, memory settings, ECS
//! task protection.

pub mod memory;
pub mod metrics;
pub mod protection;
pub mod telemetry;
