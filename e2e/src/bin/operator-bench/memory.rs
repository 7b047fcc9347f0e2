//! The operator's memory: the kubelet's summary API (cgroup working set and rss) and, where
//! kind's nodes are containers on this host, /proc of the operator's process.
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::cluster::{OPERATOR_NAMESPACE, OPERATOR_SELECTOR};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::Value;

/// The operator container's memory from the kubelet's summary API, and its pod's UID.
pub struct OperatorMemory {
    pub working_set_mib: f64,
    /// The cgroup's `rss`: anonymous memory only.
    pub rss_mib: f64,
    pub pod_uid: String,
}

pub async fn operator_memory(client: &Client) -> Result<OperatorMemory> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let pod = pods
        .list(&ListParams::default().labels(OPERATOR_SELECTOR))
        .await?
        .items
        .into_iter()
        .find(|p| p.metadata.deletion_timestamp.is_none() && e2e::serving::pod_is_ready(p))
        .context("a ready operator pod")?;
    let node = pod
        .spec
        .and_then(|s| s.node_name)
        .context("scheduled operator pod")?;
    let pod_uid = pod.metadata.uid.unwrap_or_default();
    let name = pod.metadata.name.unwrap_or_default();
    // The kubelet collects stats every few seconds: a new pod shows up after a while.
    let deadline = Instant::now() + Duration::from_secs(90);
    let stats = loop {
        let req = http::Request::get(format!("/api/v1/nodes/{node}/proxy/stats/summary"))
            .body(Vec::new())?;
        let summary: Value = client.request(req).await?;
        let found = summary["pods"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["podRef"]["name"] == name.as_str()))
            .filter(|p| p["containers"][0]["memory"]["workingSetBytes"].is_number())
            .cloned();
        match found {
            Some(stats) => break stats,
            None if Instant::now() > deadline => {
                bail!("operator pod {name} not in the kubelet's summary")
            }
            None => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    };
    let mem = &stats["containers"][0]["memory"];
    let mib = |v: &Value| v.as_f64().unwrap_or(0.0) / 1024.0 / 1024.0;
    Ok(OperatorMemory {
        working_set_mib: mib(&mem["workingSetBytes"]),
        rss_mib: mib(&mem["rssBytes"]),
        pod_uid,
    })
}

/// What /proc on this host shows of one `/iris-operator` process.
pub struct HostProcess {
    /// VmRSS in MiB: resident memory including its mapped binary, which the cgroup's `rss`
    /// (anonymous memory only) leaves out.
    pub rss_mib: f64,
    /// VmHWM in MiB: the peak of VmRSS over the process's life (what a memory limit must allow).
    pub peak_mib: f64,
    /// utime + stime in seconds: CPU the process used since it started.
    pub cpu_s: f64,
}

/// Each `/iris-operator` process of the pod `pod_uid` visible on this host (kind's nodes are
/// containers here): found by the pod UID in its cgroup, so that the operator of another cluster
/// on the same host is not counted.
pub fn host_processes(pod_uid: &str) -> Vec<HostProcess> {
    let forms = [pod_uid.to_string(), pod_uid.replace('-', "_")];
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let kib = |status: &str, key: &str| -> Option<f64> {
        status
            .lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse::<f64>()
            .ok()
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).next() == Some(b"/iris-operator".as_slice()))
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("cgroup"))
                .is_ok_and(|c| forms.iter().any(|f| c.contains(f.as_str())))
        })
        .filter_map(|e| {
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // Fields after the command (which is in parentheses): state is field 3, utime 14,
            // stime 15, in clock ticks (100 a second on Linux).
            let after = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            let ticks =
                fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            Some(HostProcess {
                rss_mib: kib(&status, "VmRSS:")? / 1024.0,
                peak_mib: kib(&status, "VmHWM:")? / 1024.0,
                cpu_s: ticks / 100.0,
            })
        })
        .collect()
}

pub fn print_memory(when: &str, memory: OperatorMemory) {
    let (ws, rss) = (memory.working_set_mib, memory.rss_mib);
    let host: Vec<String> = host_processes(&memory.pod_uid)
        .iter()
        .map(|p| {
            format!(
                "{:.1} MiB (peak VmHWM {:.1} MiB, CPU used {:.1} s)",
                p.rss_mib, p.peak_mib, p.cpu_s
            )
        })
        .collect();
    println!(
        "operator memory {when}: process VmRSS {} (from /proc on this host); cgroup working set {ws:.1} MiB, cgroup rss (anonymous) {rss:.1} MiB",
        if host.is_empty() { "not visible here".to_string() } else { host.join(", ") }
    );
}
