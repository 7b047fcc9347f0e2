//! Installs (or upgrades) charts/iris-operator with our images and waits until the operator
//! is available, once, before the e2e tests: the setup script of .config/nextest.toml's `e2e`
//! profile. nextest runs each test in a process of its own, so the tests would otherwise each
//! install the chart; this writes `E2E_OPERATOR_READY=1` to `$NEXTEST_ENV`, and the tests then
//! share this release.
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    if let Err(e) = e2e::cluster::install_operator() {
        eprintln!("install-operator: helm install of charts/iris-operator failed: {e}");
        return ExitCode::FAILURE;
    }
    let Some(path) = std::env::var_os("NEXTEST_ENV") else {
        return ExitCode::SUCCESS;
    };
    let written = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(b"E2E_OPERATOR_READY=1\n"));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "install-operator: cannot write {}: {e}",
                path.to_string_lossy()
            );
            ExitCode::FAILURE
        }
    }
}
