//! End-to-end tests: the real `warming` binary, real sockets on 127.0.0.1, a
//! real SQLite file, and the provider stand-in from `warming-testkit`.

mod support;

mod agents;
mod cli;
mod dashboard;
mod engine;
mod failures;
mod fuzz;
mod gemini;
mod hardening;
mod input;
mod keep_alive;
mod lifecycle;
mod log_failures;
mod money;
mod observability;
mod opt_in;
mod postgres;
mod provider_rules;
mod proxy;
mod seeds;
mod surface;
mod templates;
mod warming;
