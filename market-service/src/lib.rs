//! market-service: replays recorded market data as a quote feed on NATS JetStream, published
//! by whichever of its replicas leads the election on a JetStream KV bucket.
//!
//! Every replica joins the election ([`leader_election::Election`]); the leader replays the
//! feeds ([`feed`]) as quotes on a stream ([`quotes`]), chained and fenced so that the sequence
//! of each symbol has no gap and no duplicate across failovers; the others stand by, connected.
//! The binary wires [`config`] → [`telemetry`] → [`app`]; [`http`] serves probes, metrics and
//! `/leader`; [`shutdown`] turns signals into a graceful stop.

pub mod app;
pub mod config;
pub mod duration;
pub mod feed;
pub mod http;
pub mod metrics;
pub mod quotes;
pub mod shutdown;
pub mod telemetry;
