//! The failover-drill binary end to end: a short local drill against real nats-server and
//! market-service processes, and kubectl mode without a cluster.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn drill() -> Command {
    Command::new(env!("CARGO_BIN_EXE_failover-drill"))
}

#[test]
fn a_short_drill_of_term_and_kill_passes_and_writes_rounds_svg_and_logs() {
    let out = tempfile::tempdir().unwrap();
    // Short timings keep it quick: a kill costs about one lease.
    let output = drill()
        .args(["--rounds", "2", "--faults", "term,kill", "--seed", "7"])
        .args([
            "--lease", "300ms", "--renew", "60ms", "--drain", "1s", "--rate", "50",
        ])
        .arg("--service-bin")
        .arg(env!("CARGO_BIN_EXE_market-service"))
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("running failover-drill");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "failover-drill failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("result: PASS"), "{stdout}");
    assert!(stderr.contains("seed 7"), "{stderr}");

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("rounds.json")).unwrap())
            .unwrap();
    assert_eq!(report["passed"], true);
    let rounds = report["rounds"].as_array().unwrap();
    let faults: Vec<&str> = rounds
        .iter()
        .map(|r| r["fault"].as_str().unwrap())
        .collect();
    assert_eq!(faults, ["term", "term", "kill", "kill"]);
    for round in rounds {
        let acquired = round["fault_to_acquired_ms"].as_f64().expect("a successor");
        assert!(acquired > 0.0 && acquired < 10_000.0, "{round}");
        assert!(round["quote_gap_ms"].as_f64().is_some(), "{round}");
        assert_ne!(round["successor"], round["leader"], "{round}");
        assert_eq!(round["violations"].as_array().unwrap().len(), 0, "{round}");
    }
    // A crash is noticed only after the lease; a graceful stop well before it.
    assert!(rounds[2]["fault_to_acquired_ms"].as_f64().unwrap() > 100.0);
    assert!(rounds[0]["fault_to_acquired_ms"].as_f64().unwrap() < 300.0);
    assert_eq!(rounds[0]["old_leader_exit"], "exit 0");
    assert_eq!(rounds[2]["old_leader_exit"], "signal 9");
    assert!(report["summary"]["kill"]["figures"]["fault_to_acquired_ms"]["p99"].is_number());
    assert!(report["stream"]["quotes"].as_u64().unwrap() > 10);

    let svg = std::fs::read_to_string(out.path().join("drill.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(
        svg.contains("term: 2 rounds") && svg.contains("kill: 2 rounds"),
        "{svg}"
    );
    assert!(Path::new(&out.path().join("logs/r1.1.log")).is_file());
}

#[test]
fn kubectl_mode_without_a_cluster_fails_at_once_with_exit_code_2() {
    let out = tempfile::tempdir().unwrap();
    let output = drill()
        .args(["--kubectl", "--namespace", "market"])
        .args(["--kubectl-bin", "/nonexistent/kubectl", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no reachable Kubernetes cluster"),
        "{stderr}"
    );
    assert!(!out.path().join("rounds.json").exists());
}

#[test]
fn faults_the_mode_cannot_inject_are_refused_before_anything_starts() {
    let output = drill().args(["--faults", "term,delete"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("delete is a kubectl fault"));
}
