//! One test per configuration rule: each broken rule gets its own precise error.

use std::time::Duration;

use leader_election::{ConfigError, ElectionConfig};

fn valid() -> ElectionConfig {
    ElectionConfig::new("replica-1")
}

fn rejected(config: ElectionConfig) -> ConfigError {
    config
        .validate()
        .expect_err("the configuration should be rejected")
}

#[test]
fn defaults_are_valid() {
    valid().validate().unwrap();
}

#[test]
fn empty_identity_is_rejected() {
    assert_eq!(
        rejected(ElectionConfig::new("  ")),
        ConfigError::EmptyIdentity
    );
}

#[test]
fn identity_with_control_characters_is_rejected() {
    assert!(matches!(
        rejected(ElectionConfig::new("a\nb")),
        ConfigError::InvalidIdentity(_)
    ));
    assert!(matches!(
        rejected(ElectionConfig::new("x".repeat(300))),
        ConfigError::InvalidIdentity(_)
    ));
}

#[test]
fn invalid_bucket_name_is_rejected() {
    for bad in ["", "has.dot", "has space", "star*"] {
        assert_eq!(
            rejected(valid().bucket(bad)),
            ConfigError::InvalidBucket(bad.to_string())
        );
    }
}

#[test]
fn invalid_election_key_is_rejected() {
    for bad in ["", ".leading", "trailing.", "a..b", "wild*", "sp ace"] {
        assert_eq!(
            rejected(valid().election(bad)),
            ConfigError::InvalidElection(bad.to_string())
        );
    }
    valid()
        .election("team/feed=eu.primary_1")
        .validate()
        .unwrap();
}

#[test]
fn bucket_replicas_outside_one_to_five_are_rejected() {
    assert_eq!(
        rejected(valid().bucket_replicas(0)),
        ConfigError::InvalidReplicas(0)
    );
    assert_eq!(
        rejected(valid().bucket_replicas(6)),
        ConfigError::InvalidReplicas(6)
    );
}

#[test]
fn zero_lease_is_rejected() {
    assert_eq!(
        rejected(valid().lease_duration(Duration::ZERO)),
        ConfigError::ZeroLeaseDuration
    );
}

#[test]
fn zero_renew_interval_is_rejected() {
    assert_eq!(
        rejected(valid().renew_interval(Duration::ZERO)),
        ConfigError::ZeroRenewInterval
    );
}

#[test]
fn clock_drift_outside_zero_to_half_is_rejected() {
    for bad in [-0.1, 0.5, f64::NAN] {
        assert!(matches!(
            rejected(valid().clock_drift(bad)),
            ConfigError::InvalidClockDrift(_)
        ));
    }
}

#[test]
fn margin_that_eats_the_lease_is_rejected() {
    let err = rejected(valid().safety_margin(Duration::from_millis(500)));
    assert!(matches!(err, ConfigError::MarginTooLarge { .. }), "{err}");
}

#[test]
fn renew_interval_not_shorter_than_step_down_point_is_rejected() {
    // 500 ms × 0.99 − 50 ms = 445 ms.
    let err = rejected(valid().renew_interval(Duration::from_millis(445)));
    assert_eq!(
        err,
        ConfigError::RenewIntervalTooLong {
            renew_interval: Duration::from_millis(445),
            step_down_after: Duration::from_millis(445),
        }
    );
    assert!(err.to_string().contains("renew several times per lease"));
    valid()
        .renew_interval(Duration::from_millis(444))
        .validate()
        .unwrap();
}

#[test]
fn server_ttl_in_fractions_of_a_second_is_rejected() {
    for bad in [
        Duration::from_millis(500),
        Duration::from_millis(1900),
        Duration::ZERO,
    ] {
        assert_eq!(
            rejected(valid().server_ttl(bad)),
            ConfigError::ServerTtlNotWholeSeconds(bad)
        );
    }
}

#[test]
fn server_ttl_shorter_than_lease_is_rejected() {
    let err = rejected(
        valid()
            .lease_duration(Duration::from_secs(3))
            .renew_interval(Duration::from_secs(1))
            .server_ttl(Duration::from_secs(2)),
    );
    assert!(
        matches!(err, ConfigError::ServerTtlShorterThanLease { .. }),
        "{err}"
    );
}

#[test]
fn a_rejected_config_is_an_invalid_config_error_when_starting() {
    let bucket = leader_election::MemoryBucket::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = runtime.block_on(async {
        leader_election::Election::builder(ElectionConfig::new(""))
            .start_with_store(std::sync::Arc::new(bucket.store("leader")))
            .err()
            .unwrap()
    });
    assert_eq!(err.kind(), leader_election::ErrorKind::InvalidConfig);
    assert_eq!(err.config_error(), Some(&ConfigError::EmptyIdentity));
}
