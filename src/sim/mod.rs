//! The simulated tailnet.
