//! The harness of the benchmark programs beside `coldstart` and `soak` (src/bin/bench-*.rs,
//! run by bench/*.sh): a model server (or a peer) started locally and waited for
//! ([`server`]), the load generators run and their output read ([`load`]), and the figures'
//! context (the machine, its load, medians). Loopback only; every wait has a deadline.
pub mod load;
pub mod server;

use std::str::FromStr;

/// `name` from the environment, parsed, or `default` when unset or empty. Panics naming the
/// variable when it is set to something that does not parse (a typo must not run a
/// different benchmark than the one asked for).
pub fn env_or<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a valid value")),
        _ => default,
    }
}

/// Whether `name` is set to anything but empty or 0 (SPLIT_CORES=1, SKIP_OURS=1, ...).
pub fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A plain-HTTP client for readiness checks and scrapes, with the ring provider installed
/// (the e2e crate's rustls has none built in).
pub fn http_client() -> reqwest::Client {
    // Err when a provider is installed already: that one serves as well.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A benchmark's first lines: `## title`, the date and the machine with its load average.
pub fn print_header(title: &str) {
    println!("## {title}");
    println!("date:     {}", utc_now());
    println!(
        "machine:  {}; load average before: {}",
        machine(),
        load_average()
    );
}

/// The first three fields of /proc/loadavg.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// "N cores, <CPU model>, M GiB RAM", from /proc.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kib: f64 = m.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib / 1024.0 / 1024.0)
        })
        .unwrap_or(0.0);
    format!("{cores} cores, {cpu}, {gib:.0} GiB RAM")
}

/// The date and time in UTC, as `date -u '+%F %H:%M UTC'` prints them.
pub fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%F %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// `v` rounded, with a comma every three digits (5,374,960).
pub fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < -0.5 {
        out.insert(0, '-');
    }
    out
}

/// The median element of `runs` by `key` (of an even count, the lower middle), or None when
/// there is none.
pub fn median_by<T: Clone>(runs: &[T], key: impl Fn(&T) -> f64) -> Option<T> {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let middle = sorted.len().checked_sub(1)? / 2;
    sorted.get(middle).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_run_or_the_lower_middle_of_an_even_count() {
        assert_eq!(median_by(&[3.0, 1.0, 2.0], |v| *v), Some(2.0));
        assert_eq!(median_by(&[4.0, 1.0, 3.0, 2.0], |v| *v), Some(2.0));
        assert_eq!(median_by(&[5.0], |v| *v), Some(5.0));
        assert_eq!(median_by::<f64>(&[], |v| *v), None);
    }

    #[test]
    fn thousands_are_separated_by_commas() {
        assert_eq!(thousands(5_374_960.4), "5,374,960");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(0.0), "0");
    }

    #[test]
    fn an_unset_variable_gives_the_default() {
        assert_eq!(env_or("IRIS_BENCH_SURELY_UNSET", 7u64), 7);
        assert!(!env_flag("IRIS_BENCH_SURELY_UNSET"));
    }
}
