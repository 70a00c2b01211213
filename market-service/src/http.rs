//! The admin endpoint: probes, metrics and who leads.
//!
//! - `/livez`: 200 while the process works; 503 only when it believes it leads on a lease that
//!   has run out (its election task is stuck). Never NATS reachability: a NATS outage must not
//!   get every replica restarted at once.
//! - `/readyz`: 200 when connected to NATS with the election running, on every replica, leader
//!   or standby; 503 with the reason while connecting, starting, reconnecting or shutting down.
//! - `/metrics`: Prometheus text format.
//! - `/leader`: who leads, as this replica sees it, in JSON.

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::SystemTime;

use async_nats::Client;
use async_nats::connection::State;
use axum::Router;
use axum::extract::State as Extract;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use leader_election::{Election, LeadershipState};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::metrics::Metrics;

/// Where the process is in its life, for `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Not connected to NATS yet; the last attempt's error.
    Connecting(String),
    /// Connected; opening the quote stream or starting the election (the last error, if any).
    Starting(String),
    /// The election runs.
    Running,
    /// A signal arrived; the process is releasing leadership and exiting.
    ShuttingDown,
}

/// What the admin endpoint reports, shared with the application.
#[derive(Clone)]
pub struct Admin {
    inner: Arc<Inner>,
}

struct Inner {
    identity: String,
    metrics: Metrics,
    phase: Mutex<Phase>,
    client: OnceLock<Client>,
    // Weak: the application owns the election and consumes it on shutdown.
    election: Mutex<Weak<Election>>,
    leader: Mutex<LeaderView>,
}

/// The body of `/leader`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct LeaderView {
    /// The election's name.
    pub election: String,
    /// The leader's identity; `null` when nobody is known to lead.
    pub leader: Option<String>,
    /// The leader's process instance (identity plus a per-process nonce).
    pub instance: Option<String>,
    /// Whether this replica leads.
    pub is_me: bool,
    /// This replica's identity.
    pub me: String,
    /// The fencing token of the leader's term: exact on the leader; on a standby, the first
    /// revision it saw of that leader's term.
    pub token: Option<u64>,
    /// When the term began (RFC 3339, UTC): on a standby, when it first saw that leader.
    pub since: Option<String>,
}

impl Admin {
    /// A fresh state: connecting, no election.
    pub fn new(identity: &str, election_name: &str, metrics: Metrics) -> Admin {
        Admin {
            inner: Arc::new(Inner {
                identity: identity.to_string(),
                metrics,
                phase: Mutex::new(Phase::Connecting("not attempted yet".to_string())),
                client: OnceLock::new(),
                election: Mutex::new(Weak::new()),
                leader: Mutex::new(LeaderView {
                    election: election_name.to_string(),
                    me: identity.to_string(),
                    ..LeaderView::default()
                }),
            }),
        }
    }

    /// Records the phase.
    pub fn set_phase(&self, phase: Phase) {
        *lock(&self.inner.phase) = phase;
    }

    /// Records the NATS connection, once connected.
    pub fn set_client(&self, client: Client) {
        let _ = self.inner.client.set(client);
    }

    /// Records the running election and follows its state for `/leader` until it ends.
    pub fn set_election(&self, election: &Arc<Election>) {
        *lock(&self.inner.election) = Arc::downgrade(election);
        let instance = election.holder().instance.clone();
        let admin = self.clone();
        let mut state = election.state();
        tokio::spawn(async move {
            loop {
                admin.observe(&state.borrow_and_update(), &instance);
                if state.changed().await.is_err() {
                    break;
                }
            }
        });
    }

    fn observe(&self, state: &LeadershipState, my_instance: &str) {
        let mut view = lock(&self.inner.leader);
        match state {
            LeadershipState::Leading(lease) => {
                view.leader = Some(self.inner.identity.clone());
                view.instance = Some(my_instance.to_string());
                view.is_me = true;
                view.token = Some(lease.token().revision);
                view.since = Some(rfc3339(lease.since()));
            }
            LeadershipState::Following { leader, revision } => {
                let instance = leader.as_ref().map(|h| h.instance.clone());
                // A new term as seen from here: the first revision of that leader is its token.
                if view.is_me || view.instance != instance || view.leader.is_none() {
                    view.token = Some(*revision);
                    view.since = Some(rfc3339(SystemTime::now()));
                }
                view.leader = leader.as_ref().map(|h| h.identity.clone());
                view.instance = instance;
                view.is_me = false;
            }
            LeadershipState::NoLeader => {
                view.leader = None;
                view.instance = None;
                view.is_me = false;
                view.token = None;
                view.since = None;
            }
        }
    }

    fn readiness(&self) -> Result<(), String> {
        match &*lock(&self.inner.phase) {
            Phase::Connecting(error) => Err(format!("connecting to NATS: {error}")),
            Phase::Starting(reason) => Err(format!("starting: {reason}")),
            Phase::ShuttingDown => Err("shutting down".to_string()),
            Phase::Running => {
                match self.inner.client.get().map(Client::connection_state) {
                    Some(State::Connected) => {}
                    _ => return Err("disconnected from NATS; reconnecting".to_string()),
                }
                self.health()
            }
        }
    }

    fn health(&self) -> Result<(), String> {
        let election = lock(&self.inner.election).upgrade();
        match election {
            Some(election) => election.health().map_err(|err| err.to_string()),
            None => Ok(()),
        }
    }

    /// Serves the endpoint on `listener` until `stop` is cancelled.
    pub async fn serve(self, listener: TcpListener, stop: CancellationToken) {
        let router = Router::new()
            .route("/livez", get(livez))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .route("/leader", get(leader))
            .with_state(self);
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(err) = result {
            warn!(error = %err, "the HTTP endpoint stopped");
        }
    }
}

async fn livez(Extract(admin): Extract<Admin>) -> Response {
    match admin.health() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

async fn readyz(Extract(admin): Extract<Admin>) -> Response {
    match admin.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

async fn metrics(Extract(admin): Extract<Admin>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        admin.inner.metrics.render(),
    )
        .into_response()
}

async fn leader(Extract(admin): Extract<Admin>) -> Json<LeaderView> {
    Json(lock(&admin.inner.leader).clone())
}

fn rfc3339(at: SystemTime) -> String {
    OffsetDateTime::from(at)
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
