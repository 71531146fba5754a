//! Tailscale API v2 client.
