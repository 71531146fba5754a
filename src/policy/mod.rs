//! Policy engine: strict HuJSON parsing and the local access evaluator.
pub mod access;
pub mod hujson;
