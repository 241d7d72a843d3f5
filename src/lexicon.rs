//! The `community.herald.*` lexicons and record validation.
//!
//! Owns the lexicon set: every JSON file under `lexicons/`, embedded into the binary at compile
//! time. Those files are the source of truth for record, request and response shapes; this module
//! loads them once, checks them with the schema-level validator of `slices_lexicon`, and answers
//! one question for ingest: "is this record well-formed for its collection?".
//!
//! It must not touch anything else: no IO beyond the embedded files, no storage, no network. What
//! a valid record *means* (who may publish, what a route resolves to) belongs to other modules.
//!
//! # Why records are not validated with `slices_lexicon::validate_record`
//! Ingest validates ~20,000 records a second. `slices_lexicon` 0.3.1 is correct enough for our
//! schemas but slow on three counts, measured on a subscription record (release build):
//! - `validate_record` rebuilds its `ValidationContext` from the raw documents on every call;
//! - `ValidationContext::with_path`, called for every nested field and array item, deep-clones
//!   every loaded lexicon document (~40 µs for our set, ~700 µs for one subscription record);
//! - string formats such as `did` and `uri` compile a `Regex` for every value (~10 µs each).
//!
//! So [`Lexicons::embedded`] compiles each record schema once: references are inlined, so the
//! per-collection context only needs a stub document and is cheap to clone; the formats our
//! records use (`did`, `datetime`, `uri`) are taken out of the schema and checked by hand-written
//! functions following the ATProto syntax rules. `slices_lexicon`'s own validators still check
//! the structure: types, required and nullable fields, byte and grapheme lengths, integer ranges
//! and array lengths. Formats without a fast check here stay in the schema and are checked (slowly)
//! by `slices_lexicon`. Result: ~5 µs for a typical subscription record, in a release build and
//! in the dev profile (dependencies at opt-level 1) alike.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::model::is_did;
use include_dir::{Dir, include_dir};
use serde_json::{Map, Value, json};
use slices_lexicon::validation::field::object::ObjectValidator;
use slices_lexicon::validation::{ValidationContext, Validator};

/// Every lexicon document, mirrored from `lexicons/` at compile time. Edits to existing files
/// trigger a rebuild; an added or removed file needs `touch src/lexicon.rs` (the test
/// `the_embedded_lexicons_match_the_files_on_disk` catches a stale build).
static LEXICON_DIR: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/lexicons");

/// Longest value quoted back in a validation error, so a hostile record cannot bloat the logs.
const QUOTED_VALUE_MAX_CHARS: usize = 64;

/// The loaded lexicon set, with each record schema compiled for fast validation.
///
/// Built once at startup and shared (it is `Send + Sync`); validation takes `&self`.
pub struct Lexicons {
    /// Raw documents by NSID, sorted so that [`Lexicons::ids`] is stable.
    documents: BTreeMap<String, Value>,
    /// Compiled schemas of the lexicons whose `main` definition is a record, by collection NSID.
    records: HashMap<String, RecordSchema>,
}

/// Why the embedded lexicon set could not be loaded. Any of these is a build defect: the files are
/// compiled in, so the tests in this module fail before a binary with a bad set can ship.
#[derive(Debug, thiserror::Error)]
pub enum LexiconError {
    #[error("no lexicon files are embedded from lexicons/")]
    Empty,
    #[error("lexicon file {path} is not UTF-8")]
    NotUtf8 { path: String },
    #[error("lexicon file {path} is not valid JSON")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("lexicon file {path} declares id {id:?}, but its path says {expected}")]
    PathMismatch {
        path: String,
        id: Option<String>,
        expected: String,
    },
    #[error("lexicon {id} is defined by more than one file")]
    Duplicate { id: String },
    #[error("lexicon set cannot be loaded")]
    Load(#[source] slices_lexicon::ValidationError),
    #[error("lexicons fail schema validation: {}", .errors.join("; "))]
    Schema { errors: Vec<String> },
    #[error("record schema of {collection} cannot be compiled: {reason}")]
    RecordSchema { collection: String, reason: String },
}

/// Why a record was rejected. Ingest records, counts and skips such a record; it never stops.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("no record lexicon for collection {0}")]
    UnknownCollection(String),
    #[error("invalid {collection} record: {reason}")]
    Invalid { collection: String, reason: String },
}

/// One collection's record schema, prepared once by [`compile`].
struct RecordSchema {
    /// The record's object schema with references inlined and fast-checked formats removed.
    structure: Value,
    /// Where the removed formats apply; `None` when the record has none.
    formats: Option<FormatPlan>,
    /// A context holding only a stub document: with references inlined the validators never look
    /// anything up, and the stub keeps the per-field clone in `with_path` cheap.
    ctx: ValidationContext,
}

/// String formats checked by this module rather than by `slices_lexicon`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Did,
    Datetime,
    Uri,
}

impl Format {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "did" => Some(Self::Did),
            "datetime" => Some(Self::Datetime),
            "uri" => Some(Self::Uri),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Did => "did",
            Self::Datetime => "datetime",
            Self::Uri => "uri",
        }
    }

    fn accepts(self, value: &str) -> bool {
        match self {
            Self::Did => is_did(value),
            Self::Datetime => is_datetime(value),
            Self::Uri => is_uri(value),
        }
    }
}

/// The parts of a record schema that carry a fast-checked format, and nothing else.
#[derive(Debug)]
enum FormatPlan {
    Check(Format),
    Object(Vec<(String, FormatPlan)>),
    Array(Box<FormatPlan>),
}

impl fmt::Debug for Lexicons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lexicons")
            .field("ids", &self.ids())
            .finish_non_exhaustive()
    }
}

impl Lexicons {
    /// All lexicon files under `lexicons/`, embedded at compile time with include_dir.
    pub fn embedded() -> Result<Self, LexiconError> {
        let mut files = Vec::new();
        collect_files(&LEXICON_DIR, &mut files);
        let mut documents = Vec::with_capacity(files.len());
        for file in files {
            let path = file.path().to_string_lossy().into_owned();
            let text = file
                .contents_utf8()
                .ok_or_else(|| LexiconError::NotUtf8 { path: path.clone() })?;
            let document = serde_json::from_str(text).map_err(|source| LexiconError::Json {
                path: path.clone(),
                source,
            })?;
            documents.push((path, document));
        }
        Self::from_documents(documents)
    }

    /// NSIDs of every loaded lexicon document.
    pub fn ids(&self) -> Vec<String> {
        self.documents.keys().cloned().collect()
    }

    /// Validate a record (JSON as found on the firehose, may include "$type") against the collection's record schema.
    pub fn validate_record(&self, collection: &str, record: &Value) -> Result<(), RecordError> {
        let schema = self
            .records
            .get(collection)
            .ok_or_else(|| RecordError::UnknownCollection(collection.to_owned()))?;
        let invalid = |reason: String| RecordError::Invalid {
            collection: collection.to_owned(),
            reason,
        };
        match record.get("$type") {
            Some(declared) if declared.as_str() != Some(collection) => {
                return Err(invalid(format!(
                    "$type is {}, expected {collection}",
                    quote(declared)
                )));
            }
            _ => {}
        }
        ObjectValidator
            .validate_data(record, &schema.structure, &schema.ctx)
            .map_err(|e| invalid(e.to_string()))?;
        if let Some(plan) = &schema.formats {
            check_formats(plan, record)
                .map_err(|violation| invalid(violation.describe(collection)))?;
        }
        Ok(())
    }

    /// Load a set of documents, each given with the path (relative to `lexicons/`) it came from.
    fn from_documents(documents: Vec<(String, Value)>) -> Result<Self, LexiconError> {
        if documents.is_empty() {
            return Err(LexiconError::Empty);
        }
        let mut by_id = BTreeMap::new();
        for (path, document) in documents {
            let expected = path.trim_end_matches(".json").replace(['/', '\\'], ".");
            let id = document.get("id").and_then(Value::as_str);
            if id != Some(expected.as_str()) {
                return Err(LexiconError::PathMismatch {
                    id: id.map(str::to_owned),
                    path,
                    expected,
                });
            }
            if by_id.insert(expected.clone(), document).is_some() {
                return Err(LexiconError::Duplicate { id: expected });
            }
        }

        // Build the context ourselves first: `slices_lexicon::validate` reports a failure to build
        // it only as "Failed to build validation context", losing the reason.
        ValidationContext::builder()
            .with_lexicons(by_id.values().cloned().collect())
            .and_then(|builder| builder.build())
            .map_err(LexiconError::Load)?;
        if let Err(by_lexicon) = slices_lexicon::validate(by_id.values().cloned().collect()) {
            let mut errors: Vec<String> = by_lexicon
                .into_iter()
                .flat_map(|(id, errors)| errors.into_iter().map(move |e| format!("{id}: {e}")))
                .collect();
            errors.sort();
            return Err(LexiconError::Schema { errors });
        }

        let mut records = HashMap::new();
        for (id, document) in &by_id {
            let main = &document["defs"]["main"];
            if main.get("type").and_then(Value::as_str) != Some("record") {
                continue;
            }
            let fail = |reason: String| LexiconError::RecordSchema {
                collection: id.clone(),
                reason,
            };
            let record = main
                .get("record")
                .ok_or_else(|| fail("the record definition has no `record` schema".into()))?;
            let mut stack = Vec::new();
            let (structure, formats) = compile(record, id, &by_id, &mut stack).map_err(fail)?;
            let ctx = ValidationContext::builder()
                .with_lexicons(vec![json!({ "lexicon": 1, "id": id, "defs": {} })])
                .and_then(|builder| builder.build())
                .map_err(|e| fail(e.to_string()))?
                .with_current_lexicon(id)
                .with_path(id);
            records.insert(
                id.clone(),
                RecordSchema {
                    structure,
                    formats,
                    ctx,
                },
            );
        }
        Ok(Self {
            documents: by_id,
            records,
        })
    }
}

fn collect_files<'a>(dir: &'a Dir<'a>, out: &mut Vec<&'a include_dir::File<'a>>) {
    for file in dir.files() {
        if file.path().extension().is_some_and(|ext| ext == "json") {
            out.push(file);
        }
    }
    for sub in dir.dirs() {
        collect_files(sub, out);
    }
}

/// Prepare `schema` (found in lexicon `lexicon`) for fast validation: references replaced by the
/// definitions they name, descriptions dropped, fast-checked formats moved into a [`FormatPlan`].
/// `stack` holds the references being expanded, to refuse a schema that contains itself.
fn compile(
    schema: &Value,
    lexicon: &str,
    documents: &BTreeMap<String, Value>,
    stack: &mut Vec<String>,
) -> Result<(Value, Option<FormatPlan>), String> {
    let Some(object) = schema.as_object() else {
        return Err(format!("schema {schema} is not an object"));
    };
    match object.get("type").and_then(Value::as_str) {
        Some("ref") => {
            let reference = object
                .get("ref")
                .and_then(Value::as_str)
                .ok_or("a ref has no `ref` string")?;
            let (target_lexicon, def_name) = match reference.split_once('#') {
                Some(("", def)) => (lexicon, def),
                Some((nsid, def)) => (nsid, def),
                None => (reference, "main"),
            };
            let key = format!("{target_lexicon}#{def_name}");
            if stack.contains(&key) {
                return Err(format!(
                    "{key} refers to itself; recursive schemas cannot be inlined"
                ));
            }
            let target = documents
                .get(target_lexicon)
                .and_then(|document| document["defs"].get(def_name))
                .ok_or_else(|| format!("reference {reference} does not resolve"))?;
            stack.push(key);
            let compiled = compile(target, target_lexicon, documents, stack);
            stack.pop();
            compiled
        }
        Some("object") => {
            let mut out = without_description(object);
            let mut plans = Vec::new();
            if let Some(properties) = object.get("properties").and_then(Value::as_object) {
                let mut compiled = Map::with_capacity(properties.len());
                for (name, property) in properties {
                    let (property, plan) = compile(property, lexicon, documents, stack)?;
                    compiled.insert(name.clone(), property);
                    if let Some(plan) = plan {
                        plans.push((name.clone(), plan));
                    }
                }
                out.insert("properties".into(), Value::Object(compiled));
            }
            let plan = (!plans.is_empty()).then_some(FormatPlan::Object(plans));
            Ok((Value::Object(out), plan))
        }
        Some("array") => {
            let mut out = without_description(object);
            let mut plan = None;
            if let Some(items) = object.get("items") {
                let (items, items_plan) = compile(items, lexicon, documents, stack)?;
                out.insert("items".into(), items);
                plan = items_plan.map(|p| FormatPlan::Array(Box::new(p)));
            }
            Ok((Value::Object(out), plan))
        }
        Some("string") => {
            let mut out = without_description(object);
            let format = object
                .get("format")
                .and_then(Value::as_str)
                .and_then(Format::parse);
            if format.is_some() {
                out.remove("format");
            }
            Ok((Value::Object(out), format.map(FormatPlan::Check)))
        }
        // A union picks its branch by looking `$type` up in the context, which the inlined schema
        // no longer carries; supporting one means keeping the referenced lexicons in the context.
        Some("union") => Err("unions in record schemas are not supported by lexicon.rs".into()),
        Some("record" | "query" | "procedure" | "subscription") => {
            Err("a record field refers to a primary definition".into())
        }
        Some(_) => Ok((Value::Object(without_description(object)), None)),
        None => Err(format!("schema {schema} has no type")),
    }
}

fn without_description(object: &Map<String, Value>) -> Map<String, Value> {
    object
        .iter()
        .filter(|(key, _)| key.as_str() != "description")
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// A string that failed its format; the path is collected innermost-first while unwinding, so the
/// happy path allocates nothing.
struct FormatViolation {
    reversed_path: Vec<String>,
    format: Format,
    value: String,
}

impl FormatViolation {
    fn describe(&self, collection: &str) -> String {
        let mut path = collection.to_owned();
        for segment in self.reversed_path.iter().rev() {
            path.push_str(segment);
        }
        format!(
            "String at '{path}' value {} is not a valid {}",
            self.value,
            self.format.name()
        )
    }
}

/// Apply the format checks of `plan` to `data`, which the structural validation already accepted
/// (so types are right; anything else is skipped rather than reported twice).
fn check_formats(plan: &FormatPlan, data: &Value) -> Result<(), FormatViolation> {
    match plan {
        FormatPlan::Check(format) => match data.as_str() {
            Some(value) if !format.accepts(value) => Err(FormatViolation {
                reversed_path: Vec::new(),
                format: *format,
                value: quote(data),
            }),
            _ => Ok(()),
        },
        FormatPlan::Object(fields) => {
            for (name, field_plan) in fields {
                if let Some(value) = data.get(name) {
                    check_formats(field_plan, value).map_err(|mut violation| {
                        violation.reversed_path.push(format!(".{name}"));
                        violation
                    })?;
                }
            }
            Ok(())
        }
        FormatPlan::Array(item_plan) => {
            for (index, item) in data.as_array().into_iter().flatten().enumerate() {
                check_formats(item_plan, item).map_err(|mut violation| {
                    violation.reversed_path.push(format!(".[{index}]"));
                    violation
                })?;
            }
            Ok(())
        }
    }
}

/// A JSON value for an error message, cut short if long.
fn quote(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(QUOTED_VALUE_MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// ATProto datetime syntax: RFC 3339 with an uppercase `T`, seconds, optional fraction and a
/// mandatory `Z` or `±hh:mm` offset (not `-00:00`), naming a real calendar date and time.
fn is_datetime(value: &str) -> bool {
    let b = value.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let slice = b.get(range)?;
        slice.iter().try_fold(0u32, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return false;
    };
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return false;
    }
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let len = fraction.iter().take_while(|d| d.is_ascii_digit()).count();
        if !(1..=20).contains(&len) {
            return false;
        }
        rest = &fraction[len..];
    }
    match rest {
        b"Z" => true,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let all_digits = [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit());
            let hours = u32::from(h1.wrapping_sub(b'0')) * 10 + u32::from(h2.wrapping_sub(b'0'));
            let minutes = u32::from(m1.wrapping_sub(b'0')) * 10 + u32::from(m2.wrapping_sub(b'0'));
            let negative_zero = *sign == b'-' && hours == 0 && minutes == 0;
            all_digits && hours <= 23 && minutes <= 59 && !negative_zero
        }
        _ => false,
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// ATProto URI syntax: a scheme, a colon and at least one more character, no whitespace, at most
/// 8 KiB.
fn is_uri(value: &str) -> bool {
    /// Longest URI the ATProto specification allows.
    const URI_MAX_BYTES: usize = 8192;
    if value.len() > URI_MAX_BYTES {
        return false;
    }
    let Some((scheme, rest)) = value.split_once(':') else {
        return false;
    };
    let mut scheme_bytes = scheme.bytes();
    scheme_bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme_bytes.all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b))
        && !rest.is_empty()
        && !rest.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    static FIXTURES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/tests/fixtures/records");

    const SUBSCRIPTION: &str = "community.herald.subscription";
    const PREFERENCES: &str = "community.herald.preferences";
    const COMMUNITY: &str = "community.herald.community";

    fn lexicons() -> Lexicons {
        Lexicons::embedded().expect("the embedded lexicons load")
    }

    fn fixture(collection: &str, name: &str) -> Value {
        let file = FIXTURES
            .get_file(format!("{collection}/{name}.json"))
            .unwrap_or_else(|| panic!("fixture {collection}/{name}.json exists"));
        serde_json::from_str(file.contents_utf8().expect("fixture is UTF-8"))
            .expect("fixture is JSON")
    }

    fn embedded_documents() -> Vec<Value> {
        let mut files = Vec::new();
        collect_files(&LEXICON_DIR, &mut files);
        files
            .iter()
            .map(|f| serde_json::from_str(f.contents_utf8().expect("UTF-8")).expect("JSON"))
            .collect()
    }

    /// Validate `record` as `collection` and return the rejection reason.
    fn rejection(collection: &str, record: &Value) -> String {
        match lexicons().validate_record(collection, record) {
            Ok(()) => panic!("{collection} record was accepted: {record}"),
            Err(RecordError::Invalid {
                collection: c,
                reason,
            }) => {
                assert_eq!(c, collection);
                reason
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }

    fn with(mut record: Value, key: &str, value: Value) -> Value {
        record[key] = value;
        record
    }

    fn without(mut record: Value, key: &str) -> Value {
        record
            .as_object_mut()
            .expect("record is an object")
            .remove(key);
        record
    }

    #[test]
    fn every_lexicon_file_loads_and_is_listed() {
        let ids = lexicons().ids();
        let expected = [
            "community.herald.community",
            "community.herald.contact.add",
            "community.herald.contact.defs",
            "community.herald.contact.list",
            "community.herald.contact.remove",
            "community.herald.contact.verify",
            "community.herald.defs",
            "community.herald.getPreferences",
            "community.herald.getSubscribers",
            "community.herald.getUnreadCount",
            "community.herald.listNotifications",
            "community.herald.preferences",
            "community.herald.publish",
            "community.herald.subscribeEmail",
            "community.herald.subscription",
            "community.herald.updateSeen",
        ];
        assert_eq!(ids, expected);
    }

    #[test]
    fn every_lexicon_file_passes_the_schema_validator() {
        let documents = embedded_documents();
        assert!(!documents.is_empty());
        if let Err(errors) = slices_lexicon::validate(documents) {
            panic!("schema errors: {errors:?}");
        }
    }

    #[test]
    fn every_declared_method_error_has_a_name() {
        // slices_lexicon does not check the shape of `errors`; the XRPC error mapping relies on it.
        for document in embedded_documents() {
            let main = &document["defs"]["main"];
            let Some(errors) = main.get("errors") else {
                continue;
            };
            let errors = errors.as_array().expect("errors is an array");
            for error in errors {
                let name = error["name"].as_str().expect("error has a name");
                assert!(
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()),
                    "{}: {name}",
                    document["id"]
                );
            }
        }
    }

    #[test]
    fn the_embedded_lexicons_match_the_files_on_disk() {
        fn on_disk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).expect("readable dir") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    on_disk(&path, out);
                } else if path.extension().is_some_and(|e| e == "json") {
                    out.push(path);
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lexicons");
        let mut disk = Vec::new();
        on_disk(&root, &mut disk);
        let mut embedded = Vec::new();
        collect_files(&LEXICON_DIR, &mut embedded);
        assert_eq!(
            disk.len(),
            embedded.len(),
            "lexicons/ gained or lost a file since the last build: touch src/lexicon.rs"
        );
        for file in embedded {
            let current =
                std::fs::read(root.join(file.path())).expect("embedded file still on disk");
            assert_eq!(
                current,
                file.contents(),
                "{} is stale",
                file.path().display()
            );
        }
    }

    #[test]
    fn every_record_fixture_is_valid() {
        let lexicons = lexicons();
        let mut checked = 0;
        for dir in FIXTURES.dirs() {
            let collection = dir.path().to_string_lossy().into_owned();
            for file in dir.files() {
                let record: Value =
                    serde_json::from_str(file.contents_utf8().expect("UTF-8")).expect("JSON");
                if let Err(e) = lexicons.validate_record(&collection, &record) {
                    panic!("{}: {e}", file.path().display());
                }
                checked += 1;
            }
        }
        assert!(checked >= 6, "only {checked} fixtures found");
    }

    #[test]
    fn the_record_lexicons_are_exactly_subscription_preferences_and_community() {
        let lexicons = lexicons();
        let mut records: Vec<_> = lexicons.records.keys().cloned().collect();
        records.sort();
        assert_eq!(records, [COMMUNITY, PREFERENCES, SUBSCRIPTION]);
    }

    #[test]
    fn lexicons_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Lexicons>();
    }

    #[test]
    fn a_subscription_without_subject_is_rejected() {
        let record = without(fixture(SUBSCRIPTION, "full"), "subject");
        let reason = rejection(SUBSCRIPTION, &record);
        assert!(reason.contains("subject"), "{reason}");
    }

    #[test]
    fn a_subscription_without_created_at_is_rejected() {
        let record = without(fixture(SUBSCRIPTION, "minimal"), "createdAt");
        let reason = rejection(SUBSCRIPTION, &record);
        assert!(reason.contains("createdAt"), "{reason}");
    }

    #[test]
    fn a_subscription_whose_subject_is_not_a_did_is_rejected() {
        for subject in [
            "alice.example.com",
            "did:PLC:abc",
            "did:plc:",
            "did:plc:abc:",
            "did:plc:a b",
        ] {
            let record = with(fixture(SUBSCRIPTION, "full"), "subject", json!(subject));
            let reason = rejection(SUBSCRIPTION, &record);
            assert!(
                reason.contains("subject") && reason.contains("did"),
                "{reason}"
            );
        }
    }

    #[test]
    fn a_subscription_with_a_number_for_subject_is_rejected() {
        let record = with(fixture(SUBSCRIPTION, "full"), "subject", json!(42));
        let reason = rejection(SUBSCRIPTION, &record);
        assert!(reason.contains("Expected string"), "{reason}");
    }

    #[test]
    fn a_subscription_with_a_string_for_muted_is_rejected() {
        let record = with(fixture(SUBSCRIPTION, "full"), "muted", json!("false"));
        let reason = rejection(SUBSCRIPTION, &record);
        assert!(reason.contains("muted"), "{reason}");
    }

    #[test]
    fn a_subscription_with_null_recursive_is_rejected() {
        let record = with(fixture(SUBSCRIPTION, "full"), "recursive", Value::Null);
        rejection(SUBSCRIPTION, &record);
    }

    #[test]
    fn a_subscription_with_a_malformed_created_at_is_rejected() {
        for created_at in [
            "2025-03-14",
            "2025-03-14 09:26:53Z",
            "2025-03-14t09:26:53Z",
            "2025-03-14T09:26:53",
            "2025-02-29T09:26:53Z",
            "2025-03-14T24:00:00Z",
            "2025-03-14T09:26:53-00:00",
            "2025-03-14T09:26:53.Z",
            "yesterday",
        ] {
            let record = with(
                fixture(SUBSCRIPTION, "full"),
                "createdAt",
                json!(created_at),
            );
            let reason = rejection(SUBSCRIPTION, &record);
            assert!(reason.contains("datetime"), "{created_at}: {reason}");
        }
    }

    #[test]
    fn a_route_without_channels_is_rejected() {
        let record = with(
            fixture(SUBSCRIPTION, "full"),
            "routes",
            json!([{ "pipe": "announcement" }]),
        );
        let reason = rejection(SUBSCRIPTION, &record);
        assert!(reason.contains("channels"), "{reason}");
    }

    #[test]
    fn a_route_with_a_channel_that_is_not_a_string_is_rejected() {
        let record = with(
            fixture(SUBSCRIPTION, "full"),
            "routes",
            json!([{ "pipe": "announcement", "channels": ["inbox", 7] }]),
        );
        rejection(SUBSCRIPTION, &record);
    }

    #[test]
    fn routes_that_are_not_an_array_are_rejected() {
        let record = with(
            fixture(SUBSCRIPTION, "full"),
            "routes",
            json!({ "pipe": "digest" }),
        );
        rejection(SUBSCRIPTION, &record);
    }

    #[test]
    fn unknown_pipes_and_channels_are_accepted_because_they_are_known_values_not_an_enum() {
        let record = with(
            fixture(SUBSCRIPTION, "full"),
            "routes",
            json!([{ "pipe": "harvestSwap", "channels": ["carrierPigeon"] }]),
        );
        lexicons()
            .validate_record(SUBSCRIPTION, &record)
            .expect("open sets accept new values");
    }

    #[test]
    fn unknown_fields_are_accepted_as_the_lexicon_spec_requires() {
        let record = with(
            fixture(SUBSCRIPTION, "full"),
            "futureField",
            json!({ "x": 1 }),
        );
        lexicons()
            .validate_record(SUBSCRIPTION, &record)
            .expect("open schema");
    }

    #[test]
    fn an_oversize_path_is_rejected() {
        let record = with(
            fixture(SUBSCRIPTION, "full"),
            "path",
            json!("p".repeat(1025)),
        );
        let reason = rejection(SUBSCRIPTION, &record);
        assert!(reason.contains("maxLength"), "{reason}");
    }

    #[test]
    fn too_many_routes_are_rejected() {
        let route = json!({ "pipe": "announcement", "channels": ["inbox"] });
        let record = with(
            fixture(SUBSCRIPTION, "full"),
            "routes",
            json!(vec![route; 65]),
        );
        let reason = rejection(SUBSCRIPTION, &record);
        assert!(reason.contains("maximum length"), "{reason}");
    }

    #[test]
    fn a_record_with_the_wrong_type_is_rejected() {
        let record = with(fixture(SUBSCRIPTION, "full"), "$type", json!(PREFERENCES));
        let reason = rejection(SUBSCRIPTION, &record);
        assert!(reason.contains("$type"), "{reason}");
        let record = with(fixture(SUBSCRIPTION, "full"), "$type", json!(7));
        rejection(SUBSCRIPTION, &record);
    }

    #[test]
    fn a_record_that_is_not_an_object_is_rejected() {
        for record in [json!("subject"), json!([]), Value::Null] {
            rejection(SUBSCRIPTION, &record);
        }
    }

    #[test]
    fn a_record_of_an_unknown_collection_is_rejected() {
        let err = lexicons()
            .validate_record("app.bsky.feed.post", &json!({ "text": "hi" }))
            .expect_err("unknown collection");
        assert!(matches!(err, RecordError::UnknownCollection(c) if c == "app.bsky.feed.post"));
    }

    #[test]
    fn a_method_lexicon_is_not_a_record_collection() {
        let err = lexicons()
            .validate_record("community.herald.publish", &json!({}))
            .expect_err("publish is a procedure");
        assert!(matches!(err, RecordError::UnknownCollection(_)));
    }

    #[test]
    fn a_digest_hour_outside_the_day_is_rejected() {
        for hour in [-1, 24] {
            let record = with(fixture(PREFERENCES, "full"), "digestHour", json!(hour));
            let reason = rejection(PREFERENCES, &record);
            assert!(reason.contains("digestHour"), "{reason}");
        }
        let record = with(fixture(PREFERENCES, "full"), "digestHour", json!(8.5));
        rejection(PREFERENCES, &record);
    }

    #[test]
    fn a_negative_channel_limit_is_rejected() {
        let record = with(
            fixture(PREFERENCES, "full"),
            "channelLimits",
            json!([{ "channel": "sms", "maxPerDay": -1 }]),
        );
        let reason = rejection(PREFERENCES, &record);
        assert!(reason.contains("minimum"), "{reason}");
    }

    #[test]
    fn a_channel_limit_without_max_per_day_is_rejected() {
        let record = with(
            fixture(PREFERENCES, "full"),
            "channelLimits",
            json!([{ "channel": "sms" }]),
        );
        let reason = rejection(PREFERENCES, &record);
        assert!(reason.contains("maxPerDay"), "{reason}");
    }

    #[test]
    fn quiet_hours_without_an_end_are_rejected() {
        let record = with(
            fixture(PREFERENCES, "full"),
            "quietHours",
            json!({ "start": "22:00" }),
        );
        let reason = rejection(PREFERENCES, &record);
        assert!(reason.contains("end"), "{reason}");
    }

    #[test]
    fn quiet_hours_that_are_not_hh_mm_long_are_rejected() {
        let record = with(
            fixture(PREFERENCES, "full"),
            "quietHours",
            json!({ "start": "22:00:00", "end": "7:00" }),
        );
        rejection(PREFERENCES, &record);
    }

    #[test]
    fn default_routes_are_checked_like_subscription_routes() {
        let record = with(
            fixture(PREFERENCES, "full"),
            "defaultRoutes",
            json!([{ "channels": ["inbox"] }]),
        );
        let reason = rejection(PREFERENCES, &record);
        assert!(reason.contains("pipe"), "{reason}");
    }

    #[test]
    fn a_community_without_a_name_is_rejected() {
        let record = without(fixture(COMMUNITY, "full"), "name");
        let reason = rejection(COMMUNITY, &record);
        assert!(reason.contains("name"), "{reason}");
    }

    #[test]
    fn a_community_without_created_at_is_rejected() {
        let record = without(fixture(COMMUNITY, "minimal"), "createdAt");
        rejection(COMMUNITY, &record);
    }

    #[test]
    fn a_community_name_longer_than_64_graphemes_is_rejected() {
        // Both limits bind: 65 ASCII letters break maxGraphemes (64); 30 family emoji are 30
        // graphemes but 750 bytes, which breaks maxLength (640).
        let record = with(fixture(COMMUNITY, "full"), "name", json!("n".repeat(65)));
        let reason = rejection(COMMUNITY, &record);
        assert!(reason.contains("maxGraphemes"), "{reason}");
        let record = with(fixture(COMMUNITY, "full"), "name", json!("👨‍👩‍👧‍👦".repeat(30)));
        let reason = rejection(COMMUNITY, &record);
        assert!(reason.contains("maxLength"), "{reason}");
    }

    #[test]
    fn a_community_name_of_64_accented_graphemes_is_accepted() {
        let record = with(fixture(COMMUNITY, "full"), "name", json!("é".repeat(64)));
        lexicons()
            .validate_record(COMMUNITY, &record)
            .expect("64 graphemes, 128 bytes");
    }

    #[test]
    fn an_oversize_community_description_is_rejected() {
        let record = with(
            fixture(COMMUNITY, "full"),
            "description",
            json!("d".repeat(301)),
        );
        rejection(COMMUNITY, &record);
    }

    #[test]
    fn a_publisher_that_is_not_a_did_is_rejected_with_its_position() {
        let record = with(
            fixture(COMMUNITY, "full"),
            "publishers",
            json!(["did:plc:ewvi7nxzyoun6zhxrhs64oiz", "calendar.example.org"]),
        );
        let reason = rejection(COMMUNITY, &record);
        assert!(reason.contains("publishers.[1]"), "{reason}");
    }

    #[test]
    fn a_pipe_without_an_id_is_rejected() {
        let record = with(
            fixture(COMMUNITY, "full"),
            "pipes",
            json!([{ "name": "News" }]),
        );
        let reason = rejection(COMMUNITY, &record);
        assert!(reason.contains("id"), "{reason}");
    }

    #[test]
    fn a_long_quoted_value_is_cut_short_in_the_error() {
        let subject = format!("not-a-did-{}", "x".repeat(500));
        let record = with(fixture(SUBSCRIPTION, "full"), "subject", json!(subject));
        let reason = rejection(SUBSCRIPTION, &record);
        assert!(reason.len() < 200, "{reason}");
    }

    #[test]
    fn did_syntax_follows_the_atproto_rules() {
        for valid in [
            "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
            "did:web:example.com",
            "did:web:localhost%3A2470",
            "did:method:val:two",
            "did:m:v",
            "did:method:-:_:.",
        ] {
            assert!(is_did(valid), "{valid}");
        }
        for invalid in [
            "did",
            "did:",
            "did:plc",
            "did:plc:",
            "did::abc",
            "DID:plc:abc",
            "did:PLC:abc",
            "did:pl1:abc",
            "did:plc:abc:",
            "did:plc:abc%",
            "did:plc:a/b",
            "did:plc:a b",
        ] {
            assert!(!is_did(invalid), "{invalid}");
        }
        assert!(!is_did(&format!("did:plc:{}", "a".repeat(2048))));
    }

    #[test]
    fn datetime_syntax_follows_the_atproto_rules() {
        for valid in [
            "1985-04-12T23:20:50.123Z",
            "1985-04-12T23:20:50Z",
            "1985-04-12T23:20:50.123456789012Z",
            "1985-04-12T23:20:50.120+00:00",
            "1985-04-12T23:20:50.120-07:00",
            "2024-02-29T00:00:00Z",
            "2000-02-29T00:00:00Z",
        ] {
            assert!(is_datetime(valid), "{valid}");
        }
        for invalid in [
            "1985-04-12",
            "1985-04-12T23:20Z",
            "1985-04-12T23:20:50",
            "1985-04-12T23:20:50z",
            "1985-04-12t23:20:50Z",
            "1985-04-12 23:20:50Z",
            "1985-04-12T23:20:50.Z",
            "1985-04-12T23:20:50.123456789012345678901Z",
            "1985-04-12T23:20:50-00:00",
            "1985-04-12T23:20:50+0000",
            "1985-04-12T23:20:50+24:00",
            "1985-13-12T23:20:50Z",
            "1985-00-12T23:20:50Z",
            "1985-04-31T23:20:50Z",
            "1900-02-29T00:00:00Z",
            "1985-04-12T23:60:50Z",
            "1985-04-12T23:20:60Z",
            "+1985-04-12T23:20:50Z",
            "85-04-12T23:20:50Z",
            "1985-04-12T23:20:50Z ",
            "１９８５-04-12T23:20:50Z",
        ] {
            assert!(!is_datetime(invalid), "{invalid}");
        }
    }

    #[test]
    fn uri_syntax_follows_the_atproto_rules() {
        for valid in [
            "https://example.com/a?b#c",
            "at://did:plc:abc/x/y",
            "mailto:a@b.c",
            "dns:x",
        ] {
            assert!(is_uri(valid), "{valid}");
        }
        for invalid in [
            "",
            "example.com",
            "https:",
            "1http://x",
            "https://exa mple.com",
            ":x",
        ] {
            assert!(!is_uri(invalid), "{invalid}");
        }
    }

    fn doc(id: &str, defs: Value) -> (String, Value) {
        (
            format!("{}.json", id.replace('.', "/")),
            json!({ "lexicon": 1, "id": id, "defs": defs }),
        )
    }

    #[test]
    fn a_lexicon_whose_id_does_not_mirror_its_path_is_refused() {
        let (_, document) = doc("community.herald.x", json!({ "main": { "type": "token" } }));
        let err = Lexicons::from_documents(vec![("community/herald/y.json".into(), document)])
            .expect_err("mismatch");
        assert!(matches!(err, LexiconError::PathMismatch { .. }), "{err}");
    }

    #[test]
    fn a_lexicon_that_fails_the_schema_validator_is_refused() {
        let bad = doc(
            "community.herald.x",
            json!({ "main": { "type": "record", "key": "tid", "record": {
                "type": "object", "required": ["missing"], "properties": {} } } }),
        );
        let err = Lexicons::from_documents(vec![bad]).expect_err("invalid schema");
        assert!(matches!(err, LexiconError::Schema { .. }), "{err}");
    }

    #[test]
    fn an_empty_lexicon_set_is_refused() {
        assert!(matches!(
            Lexicons::from_documents(Vec::new()),
            Err(LexiconError::Empty)
        ));
    }

    #[test]
    fn a_record_schema_with_a_union_is_refused_rather_than_validated_wrongly() {
        let set = vec![doc(
            "community.herald.x",
            json!({
                "main": { "type": "record", "key": "tid", "record": { "type": "object",
                    "properties": { "u": { "type": "union", "refs": ["#a"] } } } },
                "a": { "type": "object", "properties": {} }
            }),
        )];
        let err = Lexicons::from_documents(set).expect_err("union");
        assert!(matches!(err, LexiconError::RecordSchema { .. }), "{err}");
    }

    /// Facts about `slices_lexicon` 0.3.1 that the design above depends on or works around.
    mod slices_lexicon_behaviour {
        use super::*;

        fn full_context() -> ValidationContext {
            ValidationContext::builder()
                .with_lexicons(embedded_documents())
                .and_then(|b| b.build())
                .expect("context builds")
                .with_current_lexicon(SUBSCRIPTION)
        }

        fn subscription_schema() -> Value {
            embedded_documents()
                .into_iter()
                .find(|d| d["id"] == SUBSCRIPTION)
                .expect("subscription lexicon")["defs"]["main"]["record"]
                .clone()
        }

        #[test]
        fn its_object_validator_rejects_what_we_rely_on() {
            let ctx = full_context();
            let schema = subscription_schema();
            let valid = fixture(SUBSCRIPTION, "full");
            ObjectValidator
                .validate_data(&valid, &schema, &ctx)
                .expect("fixture is valid");
            for bad in [
                without(valid.clone(), "subject"),
                with(valid.clone(), "subject", json!(1)),
                with(valid.clone(), "subject", json!("not a did")),
                with(valid.clone(), "muted", json!("no")),
                with(valid.clone(), "path", json!("p".repeat(1025))),
                with(valid.clone(), "routes", json!([{ "pipe": "x" }])),
                with(
                    valid.clone(),
                    "routes",
                    json!([{ "pipe": "x", "channels": [1] }]),
                ),
            ] {
                assert!(
                    ObjectValidator.validate_data(&bad, &schema, &ctx).is_err(),
                    "{bad}"
                );
            }
        }

        #[test]
        fn its_datetime_check_accepts_what_atproto_forbids() {
            // chrono's lenient RFC 3339 parser: a space for T and a -00:00 offset pass. This is
            // why `datetime` is checked by `is_datetime` instead.
            let ctx = full_context();
            let schema = subscription_schema();
            for lenient in ["2025-03-14 09:26:53Z", "2025-03-14T09:26:53-00:00"] {
                let record = with(fixture(SUBSCRIPTION, "full"), "createdAt", json!(lenient));
                assert!(
                    ObjectValidator
                        .validate_data(&record, &schema, &ctx)
                        .is_ok(),
                    "slices_lexicon now rejects {lenient}; the workaround may be unnecessary"
                );
                assert!(!is_datetime(lenient));
            }
        }

        #[test]
        fn its_did_check_rejects_colons_in_the_identifier() {
            // slices_lexicon's DID regex allows no ':' after the method; the DID syntax does.
            let ctx = full_context();
            let schema = subscription_schema();
            let record = with(
                fixture(SUBSCRIPTION, "full"),
                "subject",
                json!("did:web:a:b"),
            );
            assert!(
                ObjectValidator
                    .validate_data(&record, &schema, &ctx)
                    .is_err()
            );
            assert!(is_did("did:web:a:b"));
        }
    }
}
