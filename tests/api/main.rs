//! Integration tests: the real server on port 0 with a fresh database, a local Jetstream and a
//! local PLC directory. Every test runs on SQLite and on PostgreSQL.

mod helpers;

mod auth;
mod compliance;
mod contacts;
mod crash;
mod deliver;
mod email_identity;
mod inbox;
mod ingest;
mod publish;
mod schedule;
