//! Policy engine: strict HuJSON parsing, composition of the effective policy, local checks and
//! the local access evaluator.
pub mod access;
pub mod checks;
pub mod compose;
pub mod hujson;
