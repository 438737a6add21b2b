//! End-to-end tests: the real `wasmprobe` binary against real local
//! targets on 127.0.0.1, with every scrape parsed by a real parser.
//!
//! Needs the plugins and fixtures built for wasm32-wasip2
//! (`scripts/build-plugins --fixtures`), `promtool`, `prometheus`,
//! `prometheus-blackbox-exporter` and the `prometheus-client` Python
//! package (whose parsers read every scrape); `scripts/test` sees to all.

#![allow(unreachable_pub, reason = "the harness is private to this test binary")]
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a failed expectation in a test harness is a test failure"
)]

mod dns_server;
mod grpc_server;
mod harness;
mod netns;
mod targets;

mod anchor;
mod authoring;
mod blackbox_compat;
mod compile_cache;
mod config_errors;
mod container;
mod container_image;
mod demo;
mod dns;
mod docs_examples;
mod endpoints;
mod grpc;
mod hostile_clients;
mod hostile_loading;
mod hostile_plugins;
mod hostile_targets;
mod http_health;
mod icmp;
mod import;
mod languages;
mod many_targets;
mod operations;
mod packages;
mod prometheus_server;
mod proxy;
mod registry;
mod reload;
mod rules;
mod sandbox;
mod scrape_compare;
mod status_page;
mod tcp;
mod treaty;
mod web_security;
