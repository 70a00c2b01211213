//! An in-memory bucket with the same contract as the NATS one, for deterministic tests.
//!
//! Revisions are one counter per bucket, as stream sequences are; TTLs run on `tokio::time`, so
//! tests on paused time control expiry exactly. Each [`MemoryStore`] is one client's view and can
//! be cut off from the bucket to simulate a partition or a frozen connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::broadcast;

use crate::store::{
    KeyState, KeyValue, KeyWatch, LeaseStore, StoreError, StoreErrorKind, Vacancy, WriteRequest,
};

/// A bucket shared by several [`MemoryStore`] clients.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use leader_election::{Election, ElectionConfig, MemoryBucket};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let bucket = MemoryBucket::new();
/// let election = Election::builder(ElectionConfig::new("test-replica"))
///     .start_with_store(Arc::new(bucket.store("leader")))
///     .unwrap();
/// let lease = election.leading().await.unwrap();
/// assert_eq!(lease.token().revision, 1);
/// # }
/// ```
#[derive(Clone, Default)]
pub struct MemoryBucket {
    inner: Arc<Mutex<Bucket>>,
}

#[derive(Default)]
struct Bucket {
    last_revision: u64,
    keys: HashMap<String, KeyState>,
    watchers: HashMap<String, broadcast::Sender<KeyState>>,
    missing: bool,
    /// Bumped each time the bucket is created again, like a stream's creation time.
    generation: u64,
}

impl Bucket {
    fn current(&self, key: &str) -> KeyState {
        self.keys.get(key).cloned().unwrap_or_else(KeyState::empty)
    }

    fn store(&mut self, key: &str, value: KeyValue) -> u64 {
        self.last_revision += 1;
        let state = KeyState {
            revision: self.last_revision,
            value,
            written_at: Some(SystemTime::now()),
        };
        self.keys.insert(key.to_string(), state.clone());
        if let Some(watchers) = self.watchers.get(key) {
            let _ = watchers.send(state);
        }
        self.last_revision
    }

    fn check(&self, key: &str, expected: u64) -> Result<(), StoreError> {
        if self.missing {
            return Err(StoreError::new(
                StoreErrorKind::BucketMissing,
                "bucket deleted",
            ));
        }
        let current = self.current(key).revision;
        if current != expected {
            return Err(StoreError::new(
                StoreErrorKind::Conflict,
                format!("wrong last sequence: {current}"),
            ));
        }
        Ok(())
    }
}

impl MemoryBucket {
    /// An empty bucket.
    pub fn new() -> Self {
        Self::default()
    }

    /// A client of this bucket for the election key `key`.
    pub fn store(&self, key: &str) -> MemoryStore {
        MemoryStore {
            bucket: self.clone(),
            key: key.to_string(),
            cut_off: Arc::new(AtomicBool::new(false)),
            latency: Arc::default(),
            lose_next_ack: Arc::default(),
        }
    }

    /// The key's current state, as the server would report it.
    pub fn get(&self, key: &str) -> KeyState {
        self.lock().current(key)
    }

    /// An operator's unconditional delete (or purge) of a key.
    pub fn remove(&self, key: &str, how: Vacancy) -> u64 {
        self.lock().store(key, KeyValue::Vacant(how))
    }

    /// Another writer's unconditional put, without TTL.
    pub fn put_foreign(&self, key: &str, value: Bytes) -> u64 {
        self.lock().store(key, KeyValue::Held(value))
    }

    /// Deletes the whole bucket (`missing = true`) or creates it again, empty.
    pub fn set_missing(&self, missing: bool) {
        let mut bucket = self.lock();
        if missing {
            bucket.keys.clear();
            bucket.last_revision = 0;
        }
        if bucket.missing && !missing {
            bucket.generation += 1;
        }
        bucket.missing = missing;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One client's view of a [`MemoryBucket`], for one election key.
#[derive(Clone)]
pub struct MemoryStore {
    bucket: MemoryBucket,
    key: String,
    cut_off: Arc<AtomicBool>,
    latency: Arc<Mutex<Duration>>,
    lose_next_ack: Arc<AtomicBool>,
}

impl MemoryStore {
    /// Cuts this client off (`true`): its calls get no answer until their timeout and its watch
    /// receives nothing, as with a frozen connection. Writes sent while cut off are lost.
    pub fn set_cut_off(&self, cut_off: bool) {
        self.cut_off.store(cut_off, Ordering::SeqCst);
    }

    /// Makes every call of this client take `latency`: half on the way to the bucket, half on
    /// the way back, so a write is applied well before its acknowledgement arrives.
    pub fn set_latency(&self, latency: Duration) {
        *self.latency.lock().unwrap_or_else(|e| e.into_inner()) = latency;
    }

    async fn half_trip(&self) {
        let latency = *self.latency.lock().unwrap_or_else(|e| e.into_inner());
        if !latency.is_zero() {
            tokio::time::sleep(latency / 2).await;
        }
    }

    /// Applies the next write but loses its acknowledgement: the call times out, as when a
    /// connection fails right after sending.
    pub fn lose_next_acknowledgement(&self) {
        self.lose_next_ack.store(true, Ordering::SeqCst);
    }

    fn is_cut_off(&self) -> bool {
        self.cut_off.load(Ordering::SeqCst)
    }

    async fn unanswered<T>(&self, timeout: Duration) -> Result<T, StoreError> {
        tokio::time::sleep(timeout).await;
        Err(StoreError::new(
            StoreErrorKind::TimedOut,
            "no answer (cut off)",
        ))
    }

    /// Schedules the server-side expiry of `revision`: if it is still current after `ttl`, an
    /// expiry marker replaces it (and watchers see it), as with NATS subject delete markers.
    fn expire_after(&self, revision: u64, ttl: Duration) {
        let bucket = self.bucket.clone();
        let key = self.key.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ttl).await;
            let mut bucket = bucket.lock();
            if bucket.current(&key).revision == revision && !bucket.missing {
                bucket.store(&key, KeyValue::Vacant(Vacancy::Purged));
            }
        });
    }
}

impl LeaseStore for MemoryStore {
    fn read(&self, timeout: Duration) -> BoxFuture<'_, Result<KeyState, StoreError>> {
        Box::pin(async move {
            if self.is_cut_off() {
                return self.unanswered(timeout).await;
            }
            self.half_trip().await;
            let result = {
                let bucket = self.bucket.lock();
                if bucket.missing {
                    Err(StoreError::new(
                        StoreErrorKind::BucketMissing,
                        "bucket deleted",
                    ))
                } else {
                    Ok(bucket.current(&self.key))
                }
            };
            self.half_trip().await;
            result
        })
    }

    fn write(&self, request: WriteRequest) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            if self.is_cut_off() {
                return self.unanswered(request.timeout).await;
            }
            self.half_trip().await;
            let result = {
                let mut bucket = self.bucket.lock();
                bucket
                    .check(&self.key, request.expected_revision)
                    .map(|()| {
                        let revision = bucket.store(&self.key, KeyValue::Held(request.value));
                        self.expire_after(revision, request.ttl);
                        revision
                    })
            };
            if result.is_ok() && self.lose_next_ack.swap(false, Ordering::SeqCst) {
                return self.unanswered(request.timeout).await;
            }
            self.half_trip().await;
            result
        })
    }

    fn delete(
        &self,
        expected_revision: u64,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            if self.is_cut_off() {
                return self.unanswered(timeout).await;
            }
            self.half_trip().await;
            let result = {
                let mut bucket = self.bucket.lock();
                bucket
                    .check(&self.key, expected_revision)
                    .map(|()| bucket.store(&self.key, KeyValue::Vacant(Vacancy::Deleted)))
            };
            self.half_trip().await;
            result
        })
    }

    fn watch(&self) -> BoxFuture<'_, Result<KeyWatch, StoreError>> {
        Box::pin(async move {
            let (current, receiver) = {
                let mut bucket = self.bucket.lock();
                if bucket.missing {
                    return Err(StoreError::new(
                        StoreErrorKind::BucketMissing,
                        "bucket deleted",
                    ));
                }
                let current = bucket.keys.get(&self.key).cloned();
                let sender = bucket
                    .watchers
                    .entry(self.key.clone())
                    .or_insert_with(|| broadcast::channel(1024).0);
                (current, sender.subscribe())
            };
            let cut_off = self.cut_off.clone();
            let changes = futures::stream::unfold(receiver, move |mut receiver| {
                let cut_off = cut_off.clone();
                async move {
                    loop {
                        match receiver.recv().await {
                            Ok(_) if cut_off.load(Ordering::SeqCst) => continue,
                            Ok(state) => return Some((Ok(state), receiver)),
                            Err(broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(broadcast::error::RecvError::Closed) => return None,
                        }
                    }
                }
            });
            Ok(futures::stream::iter(current.map(Ok))
                .chain(changes)
                .boxed())
        })
    }

    fn put_fenced(
        &self,
        key: &str,
        value: Bytes,
        lease_revision: u64,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        let key = key.to_string();
        Box::pin(async move {
            if self.is_cut_off() {
                return self.unanswered(timeout).await;
            }
            self.half_trip().await;
            let result = {
                let mut bucket = self.bucket.lock();
                bucket
                    .check(&self.key, lease_revision)
                    .map(|()| bucket.store(&key, KeyValue::Held(value)))
            };
            self.half_trip().await;
            result
        })
    }

    fn epoch(&self) -> u64 {
        self.bucket.lock().generation
    }
}
