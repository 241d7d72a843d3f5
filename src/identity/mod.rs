//! Identity: DID resolution, DID documents and the public keys they carry.
//!
//! Owns turning a DID (`did:plc:…`, `did:web:…`) into its [`DidDocument`] — fetched over HTTP
//! from the PLC directory or the `did:web` host, validated, cached with a TTL — and turning the
//! document's `#atproto` verification method into a [`PublicKey`] that verifies ATProto
//! signatures (service-auth JWTs, repo commits).
//!
//! Must not touch storage or HTTP serving: callers (auth, ingest) hold a [`Resolver`] and ask it
//! questions; nothing here knows a database or a router exists.
//!
//! # Layout
//! - `did`: DID syntax and the URL each supported method resolves through. Invalid DIDs and
//!   unsupported methods are rejected here, before any network call.
//! - `document`: the [`DidDocument`] shape and how its signing key and PDS endpoint are found.
//! - `key`: [`PublicKey`] — multikey / `did:key` parsing and formatting, legacy key formats,
//!   strict (low-S, compact) ECDSA verification on secp256k1 and P-256.
//! - `resolver`: the caching [`Resolver`].

mod did;
mod document;
mod key;
mod resolver;

#[cfg(test)]
pub(crate) mod test_plc;

pub use document::{DidDocument, Service, VerificationMethod};
pub use key::{KeyError, PublicKey, SignatureError, parse_did_key};
pub use resolver::{ResolveError, Resolver, ResolverConfig};
