//! Fault injection: 429 with `Retry-After`, 5xx, added latency and dropped connections, per route
//! or for every API call, probabilistic (seeded) or for the next N matching calls.
//!
//! Dropped connections: [`super::server::SimServer`] serves each connection through a stream
//! wrapper with a kill switch. A drop fault flips the switch of the request's connection, so
//! hyper's attempt to write the response fails and it closes the socket without sending a byte
//! of response; reqwest reports that as a request error ("connection closed before message
//! completed"), exactly like a proxy or load balancer dropping the connection. When the router
//! is used without `SimServer` (no connection to kill) a drop answers 502 instead.
use std::time::Duration;

use axum::Json;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::SimTailnet;
use super::calls::RouteKey;
use super::server::ConnHandle;

/// One fault rule. Rates are probabilities in `[0, 1]`; a rate of 1.0 always fires. Matching
/// rules are applied in the order they were set: their latencies add up and the first rule whose
/// fault fires decides the answer (drop, then 429, then 5xx are rolled in that order per rule).
///
/// JSON form (for `PUT /sim/faults`): camelCase fields, `latencyMs` for the latency, every field
/// optional, e.g. `{"route": "GET /api/v2/tailnet/{tailnet}/devices", "rateLimitRate": 1.0,
/// "retryAfterSecs": 2, "remaining": 3}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FaultRule {
    /// A counter key (`"METHOD /api/v2/templated/path"`), or `None` for every API call.
    pub route: Option<String>,
    /// Probability of answering 429 with `Retry-After: retry_after_secs`.
    pub rate_limit_rate: f64,
    pub retry_after_secs: u64,
    /// Probability of answering `server_error_status` (e.g. 500, 502, 503, 504).
    pub server_error_rate: f64,
    pub server_error_status: u16,
    /// Probability of closing the connection without a response.
    pub drop_rate: f64,
    /// Added before the request is handled (or the fault answered).
    #[serde(rename = "latencyMs", with = "millis")]
    pub latency: Duration,
    /// Apply to the next N matching calls only, then the rule is removed. `None` = forever.
    pub remaining: Option<u32>,
}

impl Default for FaultRule {
    fn default() -> Self {
        FaultRule {
            route: None,
            rate_limit_rate: 0.0,
            retry_after_secs: 1,
            server_error_rate: 0.0,
            server_error_status: 503,
            drop_rate: 0.0,
            latency: Duration::ZERO,
            remaining: None,
        }
    }
}

impl FaultRule {
    /// A rule for every API call (set its faults with the builder methods).
    pub fn all() -> FaultRule {
        FaultRule::default()
    }

    /// A rule for one route key, e.g. `"GET /api/v2/tailnet/{tailnet}/devices"`.
    pub fn route(key: impl Into<String>) -> FaultRule {
        FaultRule {
            route: Some(key.into()),
            ..FaultRule::default()
        }
    }

    /// Always answer 429 with `Retry-After: retry_after_secs`.
    pub fn rate_limited(mut self, retry_after_secs: u64) -> FaultRule {
        self.rate_limit_rate = 1.0;
        self.retry_after_secs = retry_after_secs;
        self
    }

    /// Always answer `status`.
    pub fn server_error(mut self, status: u16) -> FaultRule {
        self.server_error_rate = 1.0;
        self.server_error_status = status;
        self
    }

    /// Always drop the connection.
    pub fn dropped(mut self) -> FaultRule {
        self.drop_rate = 1.0;
        self
    }

    pub fn with_latency(mut self, latency: Duration) -> FaultRule {
        self.latency = latency;
        self
    }

    /// Only for the next `n` matching calls.
    pub fn times(mut self, n: u32) -> FaultRule {
        self.remaining = Some(n);
        self
    }

    fn matches(&self, key: &str) -> bool {
        self.route.as_deref().is_none_or(|r| r == key)
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// What the injector decided for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Pass,
    RateLimit { retry_after_secs: u64 },
    ServerError { status: u16 },
    Drop,
}

/// The active rules and the seeded random source they roll with.
#[derive(Debug)]
pub(crate) struct FaultSet {
    pub rules: Vec<FaultRule>,
    rng: fastrand::Rng,
}

impl FaultSet {
    pub fn new(seed: u64) -> FaultSet {
        FaultSet {
            rules: Vec::new(),
            rng: fastrand::Rng::with_seed(seed ^ 0xfa17_fa17),
        }
    }

    /// Adds `rule`, replacing an existing rule for the same route (or the global rule).
    pub fn set(&mut self, rule: FaultRule) {
        match self.rules.iter_mut().find(|r| r.route == rule.route) {
            Some(existing) => *existing = rule,
            None => self.rules.push(rule),
        }
    }

    fn roll(&mut self, rate: f64) -> bool {
        // Rates of 0 consume no randomness, so adding a latency-only rule does not change which
        // calls a probabilistic rule hits.
        rate > 0.0 && self.rng.f64() < rate
    }

    /// Decides the latency and outcome of a call to `key`, consuming `remaining` counts.
    pub fn decide(&mut self, key: &str) -> (Duration, Outcome) {
        let mut latency = Duration::ZERO;
        let mut outcome = Outcome::Pass;
        let mut i = 0;
        while i < self.rules.len() && outcome == Outcome::Pass {
            if !self.rules[i].matches(key) {
                i += 1;
                continue;
            }
            let rule = self.rules[i].clone();
            latency += rule.latency;
            if self.roll(rule.drop_rate) {
                outcome = Outcome::Drop;
            } else if self.roll(rule.rate_limit_rate) {
                outcome = Outcome::RateLimit {
                    retry_after_secs: rule.retry_after_secs,
                };
            } else if self.roll(rule.server_error_rate) {
                outcome = Outcome::ServerError {
                    status: rule.server_error_status,
                };
            }
            match rule.remaining {
                Some(n) if n <= 1 => {
                    self.rules.remove(i);
                }
                Some(n) => {
                    self.rules[i].remaining = Some(n - 1);
                    i += 1;
                }
                None => i += 1,
            }
        }
        (latency, outcome)
    }
}

/// Marks a response whose connection was dropped (the exchange log records status 0).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DroppedConnection;

/// API middleware (inside `observe`, outside authentication): applies the matching faults.
pub(crate) async fn inject(State(sim): State<SimTailnet>, req: Request, next: Next) -> Response {
    let key = req
        .extensions()
        .get::<RouteKey>()
        .map(|k| k.0.clone())
        .unwrap_or_default();
    let (latency, outcome) = sim.inner.faults().decide(&key);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match outcome {
        Outcome::Pass => next.run(req).await,
        Outcome::RateLimit { retry_after_secs } => {
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({"message": "rate limit exceeded, please retry later"})),
            )
                .into_response();
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(retry_after_secs));
            response
        }
        Outcome::ServerError { status } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let message = match status.as_u16() {
                504 => "request took too long to process, please try again later",
                _ => "internal server error (simulated)",
            };
            (status, Json(json!({"message": message}))).into_response()
        }
        Outcome::Drop => match req.extensions().get::<ConnectInfo<ConnHandle>>() {
            Some(ConnectInfo(conn)) => {
                conn.kill();
                let mut response = StatusCode::BAD_GATEWAY.into_response();
                response.extensions_mut().insert(DroppedConnection);
                response
            }
            None => (
                StatusCode::BAD_GATEWAY,
                Json(json!({"message": "connection dropped (simulated; served without SimServer, so answered 502)"})),
            )
                .into_response(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEVICES: &str = "GET /api/v2/tailnet/{tailnet}/devices";

    #[test]
    fn next_n_rules_fire_exactly_n_times_then_disappear() {
        let mut set = FaultSet::new(7);
        set.set(FaultRule::route(DEVICES).rate_limited(3).times(2));
        let outcomes: Vec<_> = (0..3).map(|_| set.decide(DEVICES).1).collect();
        assert_eq!(
            outcomes,
            [
                Outcome::RateLimit {
                    retry_after_secs: 3
                },
                Outcome::RateLimit {
                    retry_after_secs: 3
                },
                Outcome::Pass
            ]
        );
        assert!(set.rules.is_empty());
    }

    #[test]
    fn route_rules_leave_other_routes_alone_and_global_rules_hit_everything() {
        let mut set = FaultSet::new(7);
        set.set(FaultRule::route(DEVICES).server_error(500));
        assert_eq!(
            set.decide("GET /api/v2/tailnet/{tailnet}/acl").1,
            Outcome::Pass
        );
        assert_eq!(set.decide(DEVICES).1, Outcome::ServerError { status: 500 });
        set.set(
            FaultRule::all()
                .dropped()
                .with_latency(Duration::from_millis(5)),
        );
        let (latency, outcome) = set.decide("GET /api/v2/tailnet/{tailnet}/acl");
        assert_eq!(
            (latency, outcome),
            (Duration::from_millis(5), Outcome::Drop)
        );
    }

    #[test]
    fn setting_a_rule_for_the_same_route_replaces_it() {
        let mut set = FaultSet::new(7);
        set.set(FaultRule::route(DEVICES).server_error(500));
        set.set(FaultRule::route(DEVICES).rate_limited(1));
        assert_eq!(set.rules.len(), 1);
        assert_eq!(
            set.decide(DEVICES).1,
            Outcome::RateLimit {
                retry_after_secs: 1
            }
        );
    }

    #[test]
    fn probabilistic_rules_are_reproducible_for_a_seed_and_roughly_honour_the_rate() {
        let run = |seed| {
            let mut set = FaultSet::new(seed);
            set.set(FaultRule {
                server_error_rate: 0.3,
                ..FaultRule::all()
            });
            (0..1000)
                .map(|_| set.decide(DEVICES).1 != Outcome::Pass)
                .collect::<Vec<_>>()
        };
        let a = run(42);
        assert_eq!(a, run(42));
        let fired = a.iter().filter(|f| **f).count();
        assert!(
            (200..400).contains(&fired),
            "fired {fired} of 1000 at rate 0.3"
        );
    }

    #[test]
    fn fault_rules_round_trip_through_json_with_latency_in_millis() {
        let rule: FaultRule =
            serde_json::from_str(r#"{"route": "GET /x", "latencyMs": 250, "remaining": 2}"#)
                .unwrap();
        assert_eq!(rule.latency, Duration::from_millis(250));
        assert_eq!(rule.server_error_status, 503);
        assert_eq!(rule.remaining, Some(2));
        let back: FaultRule = serde_json::from_value(serde_json::to_value(&rule).unwrap()).unwrap();
        assert_eq!(back, rule);
    }
}
