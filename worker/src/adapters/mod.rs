//! The narrow interfaces the fleet needs from the outside world, each with its real implementation
//! (SQS, S3, Redis) and the local stand-ins of `imgfleet demo`. Adapters know nothing of the fleet
//! or the pipeline.

pub mod events;
pub mod local;
pub mod queue;
pub mod storage;
