//! The physical floor: what NATS itself costs for the steps an election is made of, measured
//! with the bare client, without the library.
//!
//! - a core request/reply round trip (requester and responder on separate connections);
//! - a JetStream compare-and-swap publish with a per-message TTL, the one round trip that
//!   acquires or renews a lease (`Nats-Expected-Last-Subject-Sequence` + `Nats-TTL`);
//! - a bare handover: one connection deletes the key at its revision, another that watches the
//!   key acquires it by CAS the moment the delete arrives.

use std::error::Error;
use std::time::{Duration, Instant};

use async_nats::{Client, HeaderMap, Request};
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::PATIENCE;

/// What the bare-client helpers fail with; the bench panics with it.
pub type FloorError = Box<dyn Error + Send + Sync>;

/// A value of the size of the library's lease record (identity, per-process instance, lease),
/// so the floor moves as many bytes as the library does.
pub fn record_like_payload() -> Bytes {
    Bytes::from_static(
        br#"{"identity":"bench-candidate","instance":"bench-candidate-Zq3Xh0uCk9RrEwV1bY7m2P","lease_ms":500}"#,
    )
}

/// The subject of a key of a KV bucket.
pub fn key_subject(bucket: &str, key: &str) -> String {
    format!("$KV.{bucket}.{key}")
}

#[derive(Deserialize)]
struct PublishAck {
    #[serde(default)]
    seq: u64,
    error: Option<serde_json::Value>,
}

async fn publish(
    client: &Client,
    subject: &str,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<u64, FloorError> {
    let request = Request::new()
        .headers(headers)
        .payload(payload)
        .timeout(Some(Duration::from_secs(5)));
    let reply = client.send_request(subject.to_string(), request).await?;
    let ack: PublishAck = serde_json::from_slice(&reply.payload)?;
    match ack.error {
        Some(error) => Err(format!("{subject}: {error}").into()),
        None => Ok(ack.seq),
    }
}

/// Writes `payload` to the key's subject if the key is at `expected` (0: no message on the
/// key), with a server-side TTL; returns the new revision. One round trip.
///
/// # Errors
/// The server's answer when it refused the write, or the client's error.
pub async fn cas_publish(
    client: &Client,
    subject: &str,
    expected: u64,
    ttl: Duration,
    payload: Bytes,
) -> Result<u64, FloorError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        "Nats-Expected-Last-Subject-Sequence",
        expected.to_string().as_str(),
    );
    headers.insert("Nats-TTL", ttl.as_secs().to_string().as_str());
    publish(client, subject, headers, payload).await
}

/// Deletes the key if it is at `expected` (a KV delete marker); returns the marker's revision.
///
/// # Errors
/// As [`cas_publish`].
pub async fn cas_delete(client: &Client, subject: &str, expected: u64) -> Result<u64, FloorError> {
    let mut headers = HeaderMap::new();
    headers.insert("KV-Operation", "DEL");
    headers.insert(
        "Nats-Expected-Last-Subject-Sequence",
        expected.to_string().as_str(),
    );
    publish(client, subject, headers, Bytes::new()).await
}

/// A responder that echoes every request on `subject`, on its own connection; stops on drop.
pub struct EchoResponder {
    task: JoinHandle<()>,
}

impl EchoResponder {
    /// Subscribes and returns once the server has the subscription.
    ///
    /// # Errors
    /// When subscribing fails.
    pub async fn start(client: Client, subject: &str) -> Result<EchoResponder, FloorError> {
        let mut requests = client.subscribe(subject.to_string()).await?;
        client.flush().await?;
        let probe = client.clone();
        let task = tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                if let Some(reply) = request.reply {
                    let _ = client.publish(reply, request.payload).await;
                }
            }
        });
        // `flush` only writes the SUB to the socket. A request on the same connection is
        // processed after it, so once one is answered other connections' requests find the
        // subscription too.
        let ready = Instant::now();
        while let Err(err) = probe.request(subject.to_string(), Bytes::new()).await {
            if ready.elapsed() > PATIENCE {
                return Err(format!("the echo responder never answered: {err}").into());
            }
        }
        Ok(EchoResponder { task })
    }
}

impl Drop for EchoResponder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One core request/reply round trip.
///
/// # Errors
/// When no reply arrives.
pub async fn request_reply(client: &Client, subject: &str) -> Result<(), FloorError> {
    client
        .request(subject.to_string(), record_like_payload())
        .await?;
    Ok(())
}

/// The API error code of a CAS refused because another write to the key is in flight.
const WRITE_IN_FLIGHT: &str = "\"err_code\":10164";

/// A CAS at `expected`, sent again while the server answers 10164.
///
/// In a cluster the watch can deliver a write before the stream leader has finished with it,
/// and a CAS on the same key sent at once is then refused with 10164, although `expected` is
/// right; sending it again is the cheapest way on, and what the physical floor includes.
async fn acquire(
    client: &Client,
    subject: &str,
    expected: u64,
    ttl: Duration,
) -> Result<u64, FloorError> {
    let mut attempts = 0;
    loop {
        match cas_publish(client, subject, expected, ttl, record_like_payload()).await {
            Err(err) if err.to_string().contains(WRITE_IN_FLIGHT) && attempts < 100 => {
                attempts += 1;
            }
            result => return result,
        }
    }
}

/// A bare handover, repeated: the "leader" connection deletes the key at its revision; a task
/// on the "standby" connection watches the key and, when it sees the delete marker, acquires
/// the key by CAS at the marker's revision. Then the next iteration deletes that revision.
pub struct RawHandover {
    leader: Client,
    subject: String,
    revision: u64,
    acquired: mpsc::Receiver<Result<(u64, Instant), String>>,
    watcher: JoinHandle<()>,
}

impl RawHandover {
    /// Writes the key once (it must not exist yet) and starts the standby's watch.
    ///
    /// # Errors
    /// When the bucket is missing or a write is refused.
    pub async fn start(
        leader: Client,
        standby: Client,
        bucket: &str,
        key: &str,
        ttl: Duration,
    ) -> Result<RawHandover, FloorError> {
        let subject = key_subject(bucket, key);
        let revision = cas_publish(&leader, &subject, 0, ttl, record_like_payload()).await?;
        let kv = async_nats::jetstream::new(standby.clone())
            .get_key_value(bucket)
            .await?;
        let mut watch = kv.watch(key).await?;
        let (tx, acquired) = mpsc::channel(1);
        let watched = subject.clone();
        let watcher = tokio::spawn(async move {
            while let Some(entry) = watch.next().await {
                let outcome = match entry {
                    Ok(entry)
                        if entry.operation == async_nats::jetstream::kv::Operation::Delete =>
                    {
                        acquire(&standby, &watched, entry.revision, ttl)
                            .await
                            .map(|revision| (revision, Instant::now()))
                            .map_err(|err| err.to_string())
                    }
                    Ok(_) => continue,
                    Err(err) => Err(err.to_string()),
                };
                if tx.send(outcome).await.is_err() {
                    return;
                }
            }
        });
        Ok(RawHandover {
            leader,
            subject,
            revision,
            acquired,
            watcher,
        })
    }

    /// One handover: from sending the delete to the standby's acquisition acknowledged.
    ///
    /// # Errors
    /// When a write is refused or the standby does not acquire within [`PATIENCE`].
    pub async fn once(&mut self) -> Result<Duration, FloorError> {
        let mut attempts = 0;
        let t0 = loop {
            let t0 = Instant::now();
            match cas_delete(&self.leader, &self.subject, self.revision).await {
                Ok(_) => break t0,
                // In a cluster, a CAS sent right after the previous write to the same key was
                // acknowledged can be refused with 10164 (that write is still in flight on the
                // stream leader). A refused write changes nothing, so the handover starts
                // with the attempt that succeeds.
                Err(err) if err.to_string().contains(WRITE_IN_FLIGHT) && attempts < 100 => {
                    attempts += 1;
                }
                Err(err) => return Err(err),
            }
        };
        let (revision, t1) = tokio::time::timeout(PATIENCE, self.acquired.recv())
            .await
            .map_err(|_| "the standby did not acquire the key")?
            .ok_or("the standby's watch ended")??;
        self.revision = revision;
        Ok(t1 - t0)
    }
}

impl Drop for RawHandover {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}
