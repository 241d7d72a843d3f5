//! Herald: an ATProto-native community notification hub (an AppView).
//!
//! Members publish `community.herald.*` records to their own PDS; Herald follows the firehose,
//! indexes them, and fans out what communities publish to every subscribed member over the
//! channels each member chose.
//!
//! # Layout
//! Dependencies point one way, from pure types to wiring:
//!
//! - [`model`]: pure domain types — records, channels, routes, member facts.
//! - [`lexicon`]: the `community.herald.*` lexicons (source of truth for shapes) and record
//!   validation.
//! - [`settings`]: configuration from a TOML file and `HERALD_*` variables.
//! - [`storage`]: every SQL statement; index, inbox and outbox on SQLite or PostgreSQL.
//! - [`identity`]: DID resolution (did:plc, did:web), DID documents and their signing keys.
//! - [`auth`]: ATProto inter-service JWT verification (and minting, for demos and tests).
//! - [`ingest`]: the Jetstream consumer that keeps the index current.
//! - [`distribute`]: preference resolution and the publish use case.
//! - [`inbound`]: provider callbacks (bounces, complaints, inbound SMS keywords) turned into
//!   suppression and opt-outs in the vault.
//! - [`xrpc`] and [`web`]: the HTTP surface.
//! - [`metrics`]: Prometheus counters.
//! - [`startup`]: wiring, used by `main`, tests, the demo and benchmarks alike.
//! - [`sandbox`] and [`demo`]: local stand-ins for Jetstream and PLC, and the offline demo.
pub mod auth;
pub mod backfill;
pub mod channels;
pub mod clock;
pub mod deliver;
pub mod demo;
pub mod distribute;
pub mod identity;
pub mod inbound;
pub mod ingest;
pub mod lexicon;
pub mod metrics;
pub mod model;
pub mod repo;
pub mod sandbox;
pub mod schedule;
pub mod settings;
pub mod startup;
pub mod storage;
pub mod vault;
pub mod web;
pub mod xrpc;
