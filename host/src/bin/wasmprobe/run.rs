//! `wasmprobe run`: start the engine, serve the endpoint, reload on
//! SIGHUP and on change, drain on SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;

use wasmprobe::app::App;
use wasmprobe::exposition::Exposition;
use wasmprobe::lifecycle::{self, Lifecycle, Overrides};
use wasmprobe::server;

use crate::setup::{engine_for, probe_runtime, services};
use crate::{Exit, RunArgs, Status, exit};

/// Starts the demo simulators, clearly labelled in the log.
async fn start_demo() -> Result<(), Exit> {
    use wasmprobe::demo;
    let token =
        std::env::var("WASMPROBE_DEMO_LEDGER_TOKEN").unwrap_or_else(|_| "demo-ledger-token".into());
    let partner_addr = SocketAddr::from(([127, 0, 0, 1], 9471));
    let ledger_addr = SocketAddr::from(([127, 0, 0, 1], 9472));
    let partner = demo::bind(partner_addr)
        .await
        .with_context(|| format!("demo partner cannot listen on {partner_addr}"))
        .map_err(exit(Status::Environment))?;
    let ledger = demo::bind(ledger_addr)
        .await
        .with_context(|| format!("demo ledger cannot listen on {ledger_addr}"))
        .map_err(exit(Status::Environment))?;
    let partner_config = demo::partner::PartnerConfig::default();
    tracing::info!(
        addr = %partner_addr,
        fill_rate = partner_config.fill_rate,
        latency_ms = partner_config.latency.as_secs_f64() * 1000.0,
        bad_signature_share = partner_config.bad_signature_share,
        public_key = %partner_config.public_key(),
        "DEMO simulator: treaty partner (not a real service)"
    );
    tracing::info!(addr = %ledger_addr, "DEMO simulator: anchoring ledger (not a real service)");
    for (i, replica) in demo::field::REPLICAS.iter().enumerate() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 9473 + i as u16));
        let listener = demo::bind(addr)
            .await
            .with_context(|| format!("demo field replica cannot listen on {addr}"))
            .map_err(exit(Status::Environment))?;
        tracing::info!(
            addr = %addr,
            replica = replica.name,
            prediction_error = replica.prediction_error,
            "DEMO simulator: field service replica (not a real service)"
        );
        tokio::spawn(demo::serve(listener, demo::field::router(replica.clone())));
    }
    tokio::spawn(demo::serve(partner, demo::partner::router(partner_config)));
    tokio::spawn(demo::serve(
        ledger,
        demo::ledger::router(demo::ledger::LedgerConfig {
            token,
            failure_share: 0.1,
        }),
    ));
    Ok(())
}

pub(crate) fn run(args: &RunArgs) -> Result<ExitCode, Exit> {
    let started = Instant::now();
    // Idle until a beat finds runs or a compile holds the heap busy: what
    // loading frees goes back at once (wasmprobe::heap::Pacer).
    wasmprobe::heap::start_idle();
    let overrides = Overrides {
        listen: args.listen,
        shard: args.shard,
    };
    let config = lifecycle::load(&args.config, &overrides)
        .map_err(|e| Exit(Status::BadInput, anyhow::Error::new(e)))?;
    let web = match &args.web_config {
        Some(p) => Some(Arc::new(load_web_config(p)?)),
        None => None,
    };
    let engine = engine_for(&config, true)?;
    let probe_rt = probe_runtime(config.engine.worker_threads)?;
    let exposition = Arc::new(Exposition::new());
    exposition.global.pool_installed(engine.pool_metrics());
    if let Some(shard) = args.shard {
        exposition.global.shard_assigned(shard.to_string());
    }
    let services = services(&exposition);
    let app = App::new(&config, engine, exposition, probe_rt.handle().clone());
    let (listen, max_connections) = (config.server.listen, config.server.max_connections);
    // Listen for SIGTERM before compiling plugins: as PID 1 in a container
    // an unhandled SIGTERM would be ignored during a long first compile.
    let mut stop_signal = probe_rt.block_on(async { StopSignal::new() });
    let start = Lifecycle::start(
        app.clone(),
        services,
        args.config.clone(),
        overrides,
        config,
    );
    let started_lifecycle = probe_rt.block_on(async {
        tokio::select! {
            l = start => Some(l),
            _ = stop_signal.recv() => None,
        }
    });
    let Some(lifecycle) = started_lifecycle else {
        tracing::info!("stopped while starting");
        return Ok(Status::Ok.into());
    };
    let lifecycle = lifecycle.map_err(|e| Exit(Status::BadInput, anyhow::Error::new(e)))?;
    let probes = app.set.load().probes.len();
    let (drain, demo) = (args.drain, args.demo);

    let server_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the server runtime")
        .map_err(exit(Status::Environment))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    server_rt.block_on(async {
        if demo {
            start_demo().await?;
        }
        let listener = server::bind(listen)
            .await
            .map_err(|e| Exit(Status::Environment, e.into()))?;
        let addr = listener
            .local_addr()
            .context("cannot read listen address")
            .map_err(exit(Status::Environment))?;
        let _watcher = lifecycle.watch();
        let _discovery = lifecycle.refresh_discovery();
        #[cfg(unix)]
        {
            let lifecycle = lifecycle.clone();
            let web = web.clone();
            if let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        let _ = server::reload_all(&lifecycle, web.as_ref(), "sighup").await;
                    }
                });
            }
        }
        app.ready.store(true, Ordering::Relaxed);
        tracing::info!(
            addr = %addr,
            probes,
            startup_ms = started.elapsed().as_millis() as u64,
            "listening"
        );
        // What loading the config and plugins freed goes back to the system.
        wasmprobe::heap::release_free();
        let serve = tokio::spawn(server::serve(
            listener,
            server::router(app.clone(), Some(lifecycle.clone()), web.clone()),
            max_connections,
            stop_rx.clone(),
            web.clone(),
        ));
        stop_signal.recv().await;
        // Readiness goes false first and the endpoint keeps serving while
        // runs drain, so load balancers and Prometheus see the shutdown.
        app.ready.store(false, Ordering::Relaxed);
        lifecycle.stop().await;
        let in_flight = || app.exposition.global.runs_in_flight();
        tracing::info!(
            in_flight = in_flight(),
            drain_ms = drain.as_millis() as u64,
            "shutting down: scheduling stopped, draining runs"
        );
        let drain_started = Instant::now();
        let deadline = drain_started + drain;
        while in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = in_flight();
        if left > 0 {
            tracing::warn!(
                cancelled = left,
                "drain time over; cancelling runs still in flight"
            );
        } else {
            tracing::info!(
                drained_ms = drain_started.elapsed().as_millis() as u64,
                "runs drained"
            );
        }
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), serve).await;
        Ok::<_, Exit>(())
    })?;
    probe_rt.shutdown_timeout(Duration::from_secs(1));
    Ok(Status::Ok.into())
}

/// Loads `--web-config`; a broken one stops the start (exit 2) with the
/// file and the problem named.
fn load_web_config(path: &std::path::Path) -> Result<server::WebState, Exit> {
    let web = server::WebState::load(path).map_err(|e| Exit(Status::BadInput, e.into()))?;
    let current = web.current();
    tracing::info!(
        path = %path.display(),
        tls = current.tls().is_some(),
        basic_auth_users = current.basic_auth_users(),
        "web config loaded"
    );
    Ok(web)
}

/// SIGTERM or Ctrl-C, registered once at start.
struct StopSignal {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl StopSignal {
    /// Must run inside a runtime.
    fn new() -> StopSignal {
        StopSignal {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    async fn recv(&mut self) {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        if let Some(term) = &mut self.term {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = ctrl_c.await;
    }
}
