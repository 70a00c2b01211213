//! Kubernetes mode: the same rounds against a running deployment, through `kubectl`.
//!
//! - `term`: `kubectl delete pod --force --grace-period=0`. The pod object goes at once and the
//!   ReplicaSet starts a replacement, but the kubelet still stops the container with SIGTERM
//!   (SIGKILL only after the grace period), so for market-service, which exits within
//!   milliseconds of SIGTERM, this is a graceful hand-over.
//! - `delete`: `kubectl delete pod` with the pod's own grace period (rolling update, drain).
//! - `kill`: SIGKILL to the market-service process through `kubectl exec`. The image runs tini
//!   as PID 1 with the service as its child, and has no `pkill` or `pidof` (debian slim); the
//!   script finds the process by `/proc/<pid>/comm` with shell builtins only. tini then exits
//!   with the child's status and the kubelet restarts the container (same pod, restart count
//!   + 1; repeated kills meet the usual crash-loop back-off).
//! - `pause`: SIGSTOP through `kubectl exec`, SIGCONT twice the lease later (the container's
//!   user may signal its own processes; no capability is needed).
//! - `nats-restart` is local only: NATS runs as a StatefulSet whose pods stop in lame-duck mode.
//!
//! Logs: `kubectl logs -f` of every pod matching the selector, attaching to pods the
//! Deployment creates during the drill (the pod list is polled). Times: the fault's time is
//! when the drill issued the kubectl command (its `done` time when the command returned), log
//! times are the pods' own clocks; both are the same clock on a one-machine cluster (kind),
//! NTP-close otherwise.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::drill::{DrillError, Injection, Target};
use crate::fault::FaultKind;
use crate::journal::Journal;
use crate::logs;
use crate::wallclock::Micros;

/// How to reach the cluster.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Kubectl {
    /// The kubectl binary.
    pub(crate) bin: String,
    /// `--context`, when given.
    pub(crate) context: Option<String>,
    /// `--namespace`, when given.
    pub(crate) namespace: Option<String>,
}

/// The shell script run in the container to signal the service process; `SIGNAL` is replaced.
/// Exits non-zero when no market-service process was found.
const SIGNAL_SCRIPT: &str = r#"found=; for p in /proc/[0-9]*; do read -r c 2>/dev/null < "$p/comm" || continue; if [ "$c" = market-service ]; then kill -s SIGNAL "${p#/proc/}" && found=1; fi; done; [ -n "$found" ]"#;

impl Kubectl {
    fn with(&self, rest: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        if let Some(context) = &self.context {
            args.push(format!("--context={context}"));
        }
        if let Some(namespace) = &self.namespace {
            args.push(format!("--namespace={namespace}"));
        }
        args.extend(rest.iter().map(|s| s.to_string()));
        args
    }

    /// `kubectl version`, which fails without a reachable API server.
    pub(crate) fn version(&self) -> Vec<String> {
        self.with(&["version", "--request-timeout=5s"])
    }

    /// The pods matching `selector`, as JSON.
    pub(crate) fn get_pods(&self, selector: &str) -> Vec<String> {
        self.with(&[
            "get",
            "pods",
            &format!("--selector={selector}"),
            "--output=json",
            "--request-timeout=10s",
        ])
    }

    /// Follows the log of `pod`'s running container from its start.
    pub(crate) fn follow_logs(&self, pod: &str) -> Vec<String> {
        self.with(&["logs", "--follow", "--tail=-1", &format!("pod/{pod}")])
    }

    /// Deletes `pod`: forced (`--grace-period=0 --force`) or with its own grace period.
    pub(crate) fn delete(&self, pod: &str, force: bool) -> Vec<String> {
        let mut args = self.with(&["delete", "pod", pod, "--wait=false"]);
        if force {
            args.extend(["--grace-period=0".to_string(), "--force".to_string()]);
        }
        args
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`) to the market-service process in `pod`.
    pub(crate) fn signal(&self, pod: &str, signal: &str) -> Vec<String> {
        let script = SIGNAL_SCRIPT.replace("SIGNAL", signal);
        self.with(&["exec", pod, "--", "sh", "-c", &script])
    }

    async fn run(&self, args: &[String]) -> Result<String, String> {
        let output = Command::new(&self.bin)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| format!("cannot run {}: {e}", self.bin))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "{} {} failed ({}): {}",
                self.bin,
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }
}

/// What the drill needs of a pod.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pod {
    pub(crate) name: String,
    /// The Ready condition (market-service's `/readyz`).
    pub(crate) ready: bool,
    /// Being deleted.
    pub(crate) deleting: bool,
    /// `Running`, `Pending`, ...
    pub(crate) phase: String,
    /// The container's restart count: a process is `POD#RESTARTS`.
    pub(crate) restarts: u64,
}

impl Pod {
    /// The label of the pod's current process.
    pub(crate) fn process(&self) -> String {
        format!("{}#{}", self.name, self.restarts)
    }
}

/// Parses `kubectl get pods -o json`.
pub(crate) fn parse_pods(json: &str) -> Result<Vec<Pod>, String> {
    let value: Value =
        serde_json::from_str(json).map_err(|e| format!("kubectl get pods: not JSON: {e}"))?;
    let items = value
        .get("items")
        .and_then(Value::as_array)
        .ok_or("kubectl get pods: no items")?;
    Ok(items
        .iter()
        .filter_map(|item| {
            let name = item.pointer("/metadata/name")?.as_str()?.to_string();
            let deleting = item.pointer("/metadata/deletionTimestamp").is_some();
            let phase = item
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("Unknown")
                .to_string();
            let ready = item
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|conditions| {
                    conditions.iter().any(|c| {
                        c.get("type").and_then(Value::as_str) == Some("Ready")
                            && c.get("status").and_then(Value::as_str) == Some("True")
                    })
                });
            let restarts = item
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .and_then(|statuses| statuses.first())
                .and_then(|s| s.get("restartCount"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            Some(Pod {
                name,
                ready,
                deleting,
                phase,
                restarts,
            })
        })
        .collect())
}

/// The pods of a deployment, their logs followed.
pub(crate) struct KubeTarget {
    kubectl: Kubectl,
    selector: String,
    lease: Duration,
    expected: usize,
    pods: Vec<Pod>,
    polled: Option<Instant>,
    journal: Journal,
    followers: HashMap<String, Follower>,
}

/// The `kubectl logs -f` of one pod; re-attached when it ends while the pod still runs (a
/// container restart). Lines already seen are skipped.
struct Follower {
    done: Arc<Mutex<bool>>,
    seen: Arc<Mutex<HashSet<String>>>,
}

/// How often the pod list is read.
const POD_POLL: Duration = Duration::from_millis(500);

impl KubeTarget {
    /// Checks that the cluster answers and the selector matches pods, then follows their logs.
    ///
    /// # Errors
    /// [`DrillError::Setup`]: no reachable cluster, or no pod matches.
    pub(crate) async fn connect(
        kubectl: Kubectl,
        selector: String,
        lease: Duration,
    ) -> Result<KubeTarget, DrillError> {
        kubectl
            .run(&kubectl.version())
            .await
            .map_err(|e| DrillError::Setup(format!("no reachable Kubernetes cluster: {e}")))?;
        let mut target = KubeTarget {
            kubectl,
            selector,
            lease,
            expected: 0,
            pods: Vec::new(),
            polled: None,
            journal: Journal::default(),
            followers: HashMap::new(),
        };
        target.poll().await.map_err(DrillError::Setup)?;
        let running = target.pods.iter().filter(|p| !p.deleting).count();
        if running < 2 {
            return Err(DrillError::Setup(format!(
                "{running} pod(s) match --selector {} in namespace {}: a failover needs at least two replicas",
                target.selector,
                target
                    .kubectl
                    .namespace
                    .as_deref()
                    .unwrap_or("(kubectl's default)")
            )));
        }
        target.expected = running;
        Ok(target)
    }

    async fn poll(&mut self) -> Result<(), String> {
        let json = self
            .kubectl
            .run(&self.kubectl.get_pods(&self.selector))
            .await?;
        self.pods = parse_pods(&json)?;
        self.polled = Some(Instant::now());
        for pod in self.pods.clone() {
            if pod.phase != "Running" {
                continue;
            }
            let attach = match self.followers.get(&pod.name) {
                None => true,
                Some(f) => *f.done.lock().unwrap_or_else(|e| e.into_inner()),
            };
            if attach {
                self.follow(&pod);
            }
        }
        Ok(())
    }

    fn follow(&mut self, pod: &Pod) {
        let seen = self
            .followers
            .get(&pod.name)
            .map(|f| f.seen.clone())
            .unwrap_or_default();
        let done = Arc::new(Mutex::new(false));
        self.followers.insert(
            pod.name.clone(),
            Follower {
                done: done.clone(),
                seen: seen.clone(),
            },
        );
        let args = self.kubectl.follow_logs(&pod.name);
        let bin = self.kubectl.bin.clone();
        let journal = self.journal.clone();
        let process = pod.process();
        tokio::spawn(async move {
            let child = Command::new(&bin)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn();
            if let Ok(mut child) = child
                && let Some(stdout) = child.stdout.take()
            {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let new = seen
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(line.clone());
                    if new && let Some(parsed) = logs::parse(&line) {
                        journal.push(&process, parsed);
                    }
                }
                let _ = child.wait().await;
            }
            *done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        });
    }

    fn pod_of(process: &str) -> &str {
        process.split('#').next().unwrap_or(process)
    }

    async fn command(&self, args: Vec<String>) -> Result<(Micros, Micros), DrillError> {
        let at = Micros::now();
        self.kubectl.run(&args).await.map_err(DrillError::Stuck)?;
        Ok((at, Micros::now()))
    }
}

impl Target for KubeTarget {
    fn journal(&self) -> &Journal {
        &self.journal
    }

    fn alive(&mut self) -> Vec<String> {
        self.pods
            .iter()
            .filter(|p| !p.deleting && p.phase == "Running")
            .map(Pod::process)
            .collect()
    }

    async fn all_ready(&mut self) -> Result<bool, DrillError> {
        let ready = self.pods.iter().filter(|p| !p.deleting && p.ready).count();
        Ok(ready >= self.expected)
    }

    async fn inject(&mut self, fault: FaultKind, leader: &str) -> Result<Injection, DrillError> {
        let pod = Self::pod_of(leader).to_string();
        match fault {
            FaultKind::Term | FaultKind::Delete => {
                let (at, done) = self
                    .command(self.kubectl.delete(&pod, fault == FaultKind::Term))
                    .await?;
                Ok(Injection {
                    at,
                    done,
                    resumed: None,
                })
            }
            FaultKind::Kill => {
                let (at, done) = self.command(self.kubectl.signal(&pod, "KILL")).await?;
                Ok(Injection {
                    at,
                    done,
                    resumed: None,
                })
            }
            FaultKind::Pause => {
                let (at, done) = self.command(self.kubectl.signal(&pod, "STOP")).await?;
                tokio::time::sleep(
                    (self.lease * 2)
                        .saturating_sub(Duration::from_micros((done.0 - at.0).max(0) as u64)),
                )
                .await;
                let (resumed, _) = self.command(self.kubectl.signal(&pod, "CONT")).await?;
                Ok(Injection {
                    at,
                    done,
                    resumed: Some(resumed),
                })
            }
            FaultKind::NatsRestart => Err(DrillError::Setup(
                "nats-restart is local only (NATS runs as a StatefulSet in lame-duck mode)".into(),
            )),
        }
    }

    async fn recover(
        &mut self,
        _fault: FaultKind,
        _leader: &str,
    ) -> Result<Option<(String, bool)>, DrillError> {
        // The Deployment replaces a deleted pod and the kubelet restarts a killed container.
        Ok(None)
    }

    async fn tick(&mut self) -> Result<(), DrillError> {
        if self.polled.is_none_or(|at| at.elapsed() >= POD_POLL) {
            // A failed poll (API server busy) is retried at the next tick.
            let _ = self.poll().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubectl() -> Kubectl {
        Kubectl {
            bin: "kubectl".into(),
            context: None,
            namespace: Some("market".into()),
        }
    }

    #[test]
    fn commands_name_the_namespace_the_context_and_the_pod() {
        let k = kubectl();
        assert_eq!(
            k.version(),
            ["--namespace=market", "version", "--request-timeout=5s"]
        );
        assert_eq!(
            k.get_pods("app.kubernetes.io/name=market-service"),
            [
                "--namespace=market",
                "get",
                "pods",
                "--selector=app.kubernetes.io/name=market-service",
                "--output=json",
                "--request-timeout=10s"
            ]
        );
        assert_eq!(
            k.follow_logs("market-service-6f7d8c9b5-x2x7q"),
            [
                "--namespace=market",
                "logs",
                "--follow",
                "--tail=-1",
                "pod/market-service-6f7d8c9b5-x2x7q"
            ]
        );
        let with_context = Kubectl {
            context: Some("kind-kind".into()),
            ..k
        };
        assert_eq!(
            with_context.version()[..2],
            ["--context=kind-kind", "--namespace=market"]
        );
    }

    #[test]
    fn term_is_a_forced_delete_and_delete_keeps_the_grace_period() {
        let k = kubectl();
        assert_eq!(
            k.delete("p1", true),
            [
                "--namespace=market",
                "delete",
                "pod",
                "p1",
                "--wait=false",
                "--grace-period=0",
                "--force"
            ]
        );
        assert_eq!(
            k.delete("p1", false),
            ["--namespace=market", "delete", "pod", "p1", "--wait=false"]
        );
    }

    #[test]
    fn kill_signals_the_service_process_not_tini() {
        let args = kubectl().signal("p1", "KILL");
        assert_eq!(args[..5], ["--namespace=market", "exec", "p1", "--", "sh"]);
        assert_eq!(args[5], "-c");
        let script = &args[6];
        assert!(script.contains(r#"[ "$c" = market-service ]"#), "{script}");
        assert!(script.contains(r#"kill -s KILL "${p#/proc/}""#), "{script}");
        // Fails when nothing was signalled, so a wrong image is noticed.
        assert!(script.ends_with(r#"[ -n "$found" ]"#), "{script}");
        assert!(kubectl().signal("p1", "STOP")[6].contains("kill -s STOP"));
    }

    #[test]
    fn the_script_signals_only_processes_named_market_service() {
        // Run the script for real against this machine's /proc with a harmless signal 0 and a
        // name nothing has: it must find nothing and fail.
        let script = SIGNAL_SCRIPT
            .replace("SIGNAL", "0")
            .replace("market-service", "no-such-process-name");
        let status = std::process::Command::new("sh")
            .args(["-c", &script])
            .status()
            .unwrap();
        assert!(!status.success());
        // And find a process that exists: this test binary's own name is long; use sh itself
        // through a child `sleep`.
        let mut sleep = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let script = SIGNAL_SCRIPT
            .replace("SIGNAL", "0")
            .replace("market-service", "sleep");
        let status = std::process::Command::new("sh")
            .args(["-c", &script])
            .status()
            .unwrap();
        let _ = sleep.kill();
        let _ = sleep.wait();
        assert!(status.success());
    }

    #[test]
    fn pods_are_read_from_kubectl_json() {
        let json = r#"{"apiVersion":"v1","items":[
          {"metadata":{"name":"market-service-6f7d8c9b5-a"},
           "status":{"phase":"Running","conditions":[{"type":"Initialized","status":"True"},{"type":"Ready","status":"True"}],
                     "containerStatuses":[{"name":"market-service","ready":true,"restartCount":2}]}},
          {"metadata":{"name":"market-service-6f7d8c9b5-b","deletionTimestamp":"2026-12-03T18:00:00Z"},
           "status":{"phase":"Running","conditions":[{"type":"Ready","status":"False"}],
                     "containerStatuses":[{"name":"market-service","ready":false,"restartCount":0}]}},
          {"metadata":{"name":"market-service-6f7d8c9b5-c"},"status":{"phase":"Pending"}}
        ],"kind":"List"}"#;
        let pods = parse_pods(json).unwrap();
        assert_eq!(pods.len(), 3);
        assert_eq!(pods[0].process(), "market-service-6f7d8c9b5-a#2");
        assert!(pods[0].ready && !pods[0].deleting);
        assert!(!pods[1].ready && pods[1].deleting);
        assert_eq!((pods[2].phase.as_str(), pods[2].ready), ("Pending", false));
        assert!(parse_pods("error: not json").is_err());
    }
}
