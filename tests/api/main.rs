//! Integration tests: the real server on port 0 with a fresh database, a local Jetstream and a
//! local PLC directory; the interop tests add a real PDS (`atproto.rs`). Every test runs on
//! SQLite and on PostgreSQL.

mod atproto;
mod helpers;

mod auth;
mod compliance;
mod contacts;
mod crash;
mod deliver;
mod email_identity;
mod inbox;
mod ingest;
mod interop;
mod publish;
mod schedule;
