//! TLS and authentication as the flags set them up, and the timer that re-reads their files
//! (`--reload-seconds`, default 10): a renewed certificate or a new tokens file takes effect
//! without a restart. A file that cannot be read or parsed keeps what was served before,
//! with one warning per distinct problem (and `model_server_reloads_total{result="error"}`),
//! and an info line once it is fixed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rustls::ServerConfig;
use tracing::{info, warn};

use crate::auth::{Auth, Tokens};
use crate::config::ServeArgs;
use crate::metrics::{Metrics, Reloaded};
use crate::tls::{CertStore, TlsError, TlsFiles, GRPC_ALPN, HTTP_ALPN};

/// TLS (both ports) and authentication (both ports); each optional.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// HTTPS and gRPC over TLS.
    pub tls: Option<Tls>,
    /// Bearer tokens.
    pub auth: Option<Auth>,
}

/// The certificate and the two ports' rustls configurations, which share it.
#[derive(Clone, Debug)]
pub struct Tls {
    /// The certificate, re-read by [`Security::reload`].
    pub store: Arc<CertStore>,
    /// The HTTP port's configuration: ALPN `h2`, `http/1.1`.
    pub http: Arc<ServerConfig>,
    /// The gRPC port's configuration: ALPN `h2`.
    pub grpc: Arc<ServerConfig>,
}

impl Tls {
    /// Both ports' configurations over `store`.
    pub fn new(store: Arc<CertStore>) -> Result<Tls, TlsError> {
        Ok(Tls {
            http: store.server_config(&HTTP_ALPN)?,
            grpc: store.server_config(&GRPC_ALPN)?,
            store,
        })
    }
}

/// The last problem reported per file, so that a file that stays broken is not reported
/// again at every tick.
#[derive(Debug, Default)]
pub(crate) struct ReloadState {
    tls: Option<String>,
    tokens: Option<String>,
}

impl Security {
    /// From `--tls-cert`/`--tls-key`, `--auth-tokens` and `--auth-metrics`; the files are
    /// read now, and errors name them.
    pub fn from_args(args: &ServeArgs) -> anyhow::Result<Security> {
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => {
                let store = CertStore::load(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                })?;
                Some(Tls::new(store)?)
            }
            (None, None) => None,
            // clap's `requires` refuses these first; this is for callers that build the args.
            (Some(_), None) | (None, Some(_)) => {
                anyhow::bail!("--tls-cert and --tls-key go together: give both files or neither")
            }
        };
        let auth = match &args.auth_tokens {
            Some(path) => Some(Auth::new(
                Tokens::load(path).context("cannot start with --auth-tokens")?,
                args.auth_metrics,
            )),
            None if args.auth_metrics => {
                anyhow::bail!("--auth-metrics needs --auth-tokens (the tokens to check)")
            }
            None => None,
        };
        if let Some(auth) = &auth {
            if auth.tokens().is_empty() {
                warn!(
                    file = %auth.tokens().path().display(),
                    "the tokens file has no tokens: every protected request is refused"
                );
            }
        }
        Ok(Security { tls, auth })
    }

    /// Whether any file needs watching.
    pub fn has_files(&self) -> bool {
        self.tls.is_some() || self.auth.is_some()
    }

    /// Re-reads every file once; logs and counts what changed or failed.
    pub(crate) fn reload(&self, metrics: &Metrics, state: &mut ReloadState) {
        if let Some(tls) = &self.tls {
            let files = tls.store.files();
            let outcome = tls.store.reload().map_err(|e| e.to_string());
            report(
                &outcome,
                &mut state.tls,
                metrics,
                Reloaded::Certificate,
                || {
                    info!(
                        cert = %files.cert.display(),
                        sha256 = tls.store.fingerprint(),
                        "TLS certificate reloaded: new handshakes use it"
                    );
                },
            );
        }
        if let Some(auth) = &self.auth {
            let tokens = auth.tokens();
            let outcome = tokens.reload().map_err(|e| e.to_string());
            report(
                &outcome,
                &mut state.tokens,
                metrics,
                Reloaded::Tokens,
                || {
                    info!(
                        file = %tokens.path().display(),
                        count = tokens.len(),
                        "tokens reloaded"
                    );
                },
            );
        }
    }

    /// Calls [`Security::reload`] every `every`, forever.
    pub(crate) async fn reload_every(self, every: Duration, metrics: Arc<Metrics>) {
        let mut state = ReloadState::default();
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.reload(&metrics, &mut state);
        }
    }
}

fn report(
    outcome: &Result<bool, String>,
    last_error: &mut Option<String>,
    metrics: &Metrics,
    file: Reloaded,
    changed: impl FnOnce(),
) {
    match outcome {
        Ok(swapped) => {
            if last_error.take().is_some() && !swapped {
                info!("{} files readable again; unchanged", file_name(file));
            }
            if *swapped {
                metrics.count_reload(file, true);
                changed();
            }
        }
        Err(e) => {
            metrics.count_reload(file, false);
            if last_error.as_deref() != Some(e.as_str()) {
                warn!("{e}; still serving the previous {}", file_name(file));
                *last_error = Some(e.clone());
            }
        }
    }
}

fn file_name(file: Reloaded) -> &'static str {
    match file {
        Reloaded::Certificate => "certificate",
        Reloaded::Tokens => "tokens",
    }
}
