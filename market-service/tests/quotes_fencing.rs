//! The quote stream's fencing, against a real nats-server: chained publishes, duplicates,
//! and resuming from the stream leader's copy.

use std::path::PathBuf;
use std::time::Duration;

use leader_election::FencingToken;
use leader_election::testing::NatsServer;
use market_service::feed::{Feed, OnBadRow};
use market_service::quotes::{LastQuote, Quote, QuoteStream, StreamErrorKind};

const TIMEOUT: Duration = Duration::from_secs(2);

fn token(revision: u64) -> FencingToken {
    FencingToken { epoch: 1, revision }
}

fn eurusd() -> Feed {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/EURUSD.csv");
    Feed::load(&path, None, OnBadRow::Stop, |_| {}).unwrap()
}

async fn open(server: &NatsServer) -> QuoteStream {
    let client = async_nats::connect(server.url()).await.unwrap();
    QuoteStream::open(client, "quotes", 1, &["EURUSD".to_string()], TIMEOUT)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_publish_chained_on_a_stale_sequence_is_rejected() {
    let server = NatsServer::start();
    let stream = open(&server).await;
    let feed = eurusd();
    assert_eq!(stream.last_quote("EURUSD").await.unwrap(), None);

    let first = stream
        .publish(&Quote::new(&feed, 1), 0, "a", token(5), TIMEOUT)
        .await
        .unwrap();
    assert!(!first.duplicate);
    let second = stream
        .publish(
            &Quote::new(&feed, 2),
            first.stream_sequence,
            "a",
            token(5),
            TIMEOUT,
        )
        .await
        .unwrap();

    // A deposed publisher still expecting the first quote to be the last one.
    let err = stream
        .publish(
            &Quote::new(&feed, 3),
            first.stream_sequence,
            "b",
            token(4),
            TIMEOUT,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StreamErrorKind::Rejected, "{err}");
    assert!(err.to_string().contains("10071"), "{err}");

    assert_eq!(
        stream.last_quote("EURUSD").await.unwrap(),
        Some(LastQuote {
            seq: 2,
            stream_sequence: second.stream_sequence,
            token: Some(token(5)),
        })
    );
}

#[tokio::test]
async fn a_repeated_quote_is_refused_and_found_as_the_last_with_its_token() {
    let server = NatsServer::start();
    let stream = open(&server).await;
    let feed = eurusd();
    let first = stream
        .publish(&Quote::new(&feed, 1), 0, "a", token(5), TIMEOUT)
        .await
        .unwrap();
    // A retry after a lost acknowledgement: same quote, same expected sequence. The server
    // checks the expected sequence before the message id, so it refuses the retry...
    let err = stream
        .publish(&Quote::new(&feed, 1), 0, "a", token(5), TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StreamErrorKind::Rejected, "{err}");
    // ...and the last quote tells the publisher that the refused quote is its own.
    assert_eq!(
        stream.last_quote("EURUSD").await.unwrap(),
        Some(LastQuote {
            seq: 1,
            stream_sequence: first.stream_sequence,
            token: Some(token(5)),
        })
    );
}

#[tokio::test]
async fn an_existing_stream_is_used_only_when_it_takes_every_symbol() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    async_nats::jetstream::new(client.clone())
        .create_stream(async_nats::jetstream::stream::Config {
            name: "quotes".to_string(),
            subjects: vec!["market.quotes.EURUSD".to_string()],
            ..Default::default()
        })
        .await
        .unwrap();
    let symbols = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    QuoteStream::open(client.clone(), "quotes", 1, &symbols(&["EURUSD"]), TIMEOUT)
        .await
        .unwrap();
    let err = QuoteStream::open(client, "quotes", 1, &symbols(&["EURUSD", "GOOG"]), TIMEOUT)
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.kind(), StreamErrorKind::Misconfigured, "{err}");
    assert!(
        err.to_string().contains("do not cover market.quotes.GOOG"),
        "{err}"
    );
}
