//! Tailscale webhooks: drift found in seconds instead of at the next resync.
//!
//! `run --webhook-listen ADDR` serves `POST /webhooks/<ManagedTailnet name>` on its own
//! listener (never the metrics port). A delivery is verified ([`signature`]) against the
//! tailnet's signing secrets (registered by the ManagedTailnet controller from
//! `spec.webhook.secretRef`), then each event ([`events`]) refreshes the snapshot area it
//! concerns (only if the snapshot was read before the event happened, so a burst costs one
//! read) and wakes the resources that read that area, of that tailnet only. Unsigned,
//! malformed or wrongly signed deliveries get 401 with no detail; every delivery is counted.
//! A standby replica answers 503 so Tailscale retries (and, behind a Service, reaches the
//! leader). The answer is sent as soon as the events are queued: Tailscale retries non-2xx.
pub mod events;
pub mod signature;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use kube::api::Api;
use tokio::sync::broadcast;

use crate::controller::{Context, publish_event};
use crate::resources::ManagedTailnet;
use crate::secret::Secret;
use crate::snapshot::Area;
use events::Effect;

/// How far a signature's timestamp may be from now (replay protection).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// The largest delivery accepted; Tailscale batches events, a few hundred KiB is plenty.
pub const MAX_BODY: usize = 1024 * 1024;
/// The path prefix; the ManagedTailnet's name follows.
pub const PATH_PREFIX: &str = "/webhooks/";
/// Event reason on the ManagedTailnet for the IP-forwarding warnings.
pub const FORWARDING_WARNING: &str = "IPForwardingNotEnabled";

/// A snapshot area of a tailnet re-read because of a webhook: its resources look again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wakeup {
    pub tailnet: String,
    pub area: Area,
}

/// The signing secrets per tailnet and the wake-up channel the controllers subscribe to.
#[derive(Debug)]
pub struct Webhooks {
    secrets: RwLock<HashMap<String, Vec<Secret>>>,
    /// The latest IP-forwarding warning per tailnet: when, and its message.
    forwarding: RwLock<HashMap<String, (chrono::DateTime<chrono::Utc>, String)>>,
    wakeups: broadcast::Sender<Wakeup>,
    pub tolerance: Duration,
}

impl Default for Webhooks {
    fn default() -> Self {
        Webhooks {
            secrets: RwLock::default(),
            forwarding: RwLock::default(),
            wakeups: broadcast::channel(1024).0,
            tolerance: DEFAULT_TOLERANCE,
        }
    }
}

impl Webhooks {
    /// Refusing signatures whose timestamp is further than `tolerance` from now.
    pub fn with_tolerance(tolerance: Duration) -> Webhooks {
        Webhooks {
            tolerance,
            ..Webhooks::default()
        }
    }

    /// The secrets deliveries for `tailnet` may be signed with (several while a rotation
    /// overlaps); empty stops accepting them.
    pub fn set_secrets(&self, tailnet: &str, secrets: Vec<Secret>) {
        let mut map = self.secrets.write().unwrap_or_else(|e| e.into_inner());
        if secrets.is_empty() {
            map.remove(tailnet);
        } else {
            map.insert(tailnet.to_owned(), secrets);
        }
    }

    fn secrets_of(&self, tailnet: &str) -> Option<Vec<Secret>> {
        let map = self.secrets.read().unwrap_or_else(|e| e.into_inner());
        map.get(tailnet).cloned()
    }

    /// The latest IP-forwarding warning a webhook delivered for `tailnet`.
    pub fn forwarding_warning(
        &self,
        tailnet: &str,
    ) -> Option<(chrono::DateTime<chrono::Utc>, String)> {
        let map = self.forwarding.read().unwrap_or_else(|e| e.into_inner());
        map.get(tailnet).cloned()
    }

    /// Wake-ups from now on (a controller subscribes when it starts).
    pub fn subscribe(&self) -> broadcast::Receiver<Wakeup> {
        self.wakeups.subscribe()
    }

    fn wake(&self, wakeup: Wakeup) {
        // No subscriber (no controller running yet) is fine: nothing to wake.
        let _ = self.wakeups.send(wakeup);
    }
}

/// The receiver's routes.
pub fn router(ctx: Arc<Context>) -> Router {
    Router::new()
        .route(&format!("{PATH_PREFIX}{{tailnet}}"), post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(ctx)
}

/// Serves the receiver on `listener` until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: Arc<Context>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(
        ?addr,
        "serving Tailscale webhooks on {PATH_PREFIX}<ManagedTailnet>"
    );
    axum::serve(listener, router(ctx))
        .with_graceful_shutdown(stop)
        .await
}

async fn receive(
    State(ctx): State<Arc<Context>>,
    Path(tailnet): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let webhooks = &ctx.webhooks;
    let Some(secrets) = webhooks.secrets_of(&tailnet) else {
        // Same answer as a wrong signature: a caller learns nothing about which tailnets exist.
        ctx.metrics
            .record_webhook_delivery("unknown", "unauthorized");
        tracing::warn!("webhook delivery for a tailnet with no webhook secret: refused");
        return StatusCode::UNAUTHORIZED;
    };
    let header = headers.get(signature::HEADER).and_then(|v| v.to_str().ok());
    let now = ctx.clock.now().timestamp();
    if let Err(err) = signature::verify(header, &body, &secrets, now, webhooks.tolerance) {
        ctx.metrics
            .record_webhook_delivery(&tailnet, "unauthorized");
        tracing::warn!(tailnet = %tailnet, "webhook delivery refused: {err}");
        return StatusCode::UNAUTHORIZED;
    }
    if !ctx.metrics.is_leader() {
        ctx.metrics.record_webhook_delivery(&tailnet, "standby");
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let events = match events::parse(&body) {
        Ok(events) => events,
        Err(err) => {
            ctx.metrics.record_webhook_delivery(&tailnet, "malformed");
            tracing::warn!(tailnet = %tailnet, "webhook delivery is not a JSON array of events: {err}");
            return StatusCode::BAD_REQUEST;
        }
    };
    ctx.metrics.record_webhook_delivery(&tailnet, "accepted");
    let ctx = Arc::clone(&ctx);
    // Answer now; the refreshes and events happen after.
    tokio::spawn(async move { handle(&ctx, &tailnet, events).await });
    StatusCode::OK
}

/// Refreshes and wakes per event.
async fn handle(ctx: &Context, tailnet: &str, events: Vec<events::Event>) {
    let snapshots = ctx.snapshots.get(tailnet);
    for event in events {
        ctx.metrics
            .record_webhook_event(tailnet, events::label(&event.type_));
        match events::effect(&event.type_) {
            Effect::Refresh(area) => {
                if let Some(snapshots) = &snapshots {
                    let at = happened_at(&event, ctx, snapshots.now());
                    snapshots.refresh_if_older_than(area, at);
                }
                tracing::debug!(tailnet, event = %event.type_, area = area.as_str(), "webhook: refresh");
                ctx.webhooks.wake(Wakeup {
                    tailnet: tailnet.to_owned(),
                    area,
                });
            }
            Effect::ForwardingWarning => forwarding_warning(ctx, tailnet, &event).await,
            Effect::Unknown => {
                tracing::debug!(tailnet, event = %event.type_, "webhook: unknown event type ignored");
            }
        }
    }
}

/// When the event happened, on the snapshot clock (`now` on it): a snapshot read after it
/// already shows it.
fn happened_at(
    event: &events::Event,
    ctx: &Context,
    now: std::time::Instant,
) -> std::time::Instant {
    let Ok(at) = chrono::DateTime::parse_from_rfc3339(&event.timestamp) else {
        return now;
    };
    // Timestamps may have whole seconds only: the event happened before the end of its second,
    // so a snapshot is fresh only if read after that.
    let end_of_second = at.with_timezone(&chrono::Utc) + chrono::Duration::seconds(1);
    let ago = (ctx.clock.now() - end_of_second)
        .to_std()
        .unwrap_or_default();
    now.checked_sub(ago).unwrap_or(now)
}

/// A Warning event on the ManagedTailnet naming the device that routes without forwarding; the
/// ManagedTailnet's `IPForwardingNotEnabled` condition shows it for a day from its next
/// reconcile.
async fn forwarding_warning(ctx: &Context, tailnet: &str, event: &events::Event) {
    let Ok(Some(object)) = Api::<ManagedTailnet>::all(ctx.client.clone())
        .get_opt(tailnet)
        .await
    else {
        return;
    };
    let note = format!(
        "{} ({}): enable IP forwarding on the device (https://tailscale.com/kb/1019/subnets)",
        event.message, event.type_
    );
    ctx.webhooks
        .forwarding
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(tailnet.to_owned(), (ctx.clock.now(), note.clone()));
    publish_event(ctx, &object, true, FORWARDING_WARNING, "Webhook", note).await;
}
