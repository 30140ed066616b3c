//! The worker itself: messages in, jobs run, messages acknowledged by outcome.

pub mod consumer;
pub mod job;
pub mod pool;
pub mod remove;
pub mod render;
pub mod service;
