//! Running `kubectl` (from the PATH, or $KUBECTL) the way a user does.
use std::io::Write;
use std::process::{Command, Output, Stdio};

/// The kubectl binary: $KUBECTL or `kubectl` on the PATH (`make e2e` puts the one it built first).
pub fn binary() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_string())
}

/// Runs kubectl with `args`, feeding `stdin` when given.
pub fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {} {args:?}: {e}", binary()));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input.as_bytes())
            .expect("write kubectl stdin");
    }
    child.wait_with_output().expect("kubectl finished")
}

/// Runs kubectl and returns its stdout; panics with its stderr when it fails.
pub fn ok(args: &[&str]) -> String {
    let out = run(args, None);
    assert!(
        out.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl apply -n NS -f -` with `yaml`; Ok(stdout) or Err(stderr).
pub fn apply(ns: &str, yaml: &str) -> Result<String, String> {
    let out = run(&["apply", "-n", ns, "-f", "-"], Some(yaml));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `kubectl apply -n NS -f FILE`, panicking with kubectl's message when it fails.
pub fn apply_file(ns: &str, path: &std::path::Path) {
    let path = path.to_str().expect("utf-8 path");
    ok(&["apply", "-n", ns, "-f", path]);
}

/// `kubectl patch --type=merge` of the IrisModel `name` in `ns`; panics on failure.
pub fn patch_model(ns: &str, name: &str, patch: &str) {
    ok(&[
        "patch",
        "-n",
        ns,
        &format!("irismodel/{name}"),
        "--type=merge",
        "-p",
        patch,
    ]);
}
