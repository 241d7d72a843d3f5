//! A record block as JSON, the form the lexicon validator and the index take: bytes become
//! `{"$bytes": base64}` and links `{"$link": cid}`, as in ATProto's JSON encoding.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ipld_core::ipld::Ipld;
use serde_json::Value;

use super::{RepoError, decode};

/// Decodes a DAG-CBOR record block into its JSON form.
pub fn record_json(block: &[u8]) -> Result<Value, RepoError> {
    let ipld: Ipld = decode("record", block)?;
    to_json(ipld)
}

fn to_json(ipld: Ipld) -> Result<Value, RepoError> {
    Ok(match ipld {
        Ipld::Null => Value::Null,
        Ipld::Bool(b) => Value::Bool(b),
        Ipld::Integer(i) => match i64::try_from(i) {
            Ok(i) => Value::from(i),
            Err(_) => {
                return Err(RepoError::Cbor {
                    what: "record",
                    detail: format!("integer {i} is outside the 64-bit range"),
                });
            }
        },
        // ATProto data has no floats; keep them rather than fail, and let the lexicon judge.
        Ipld::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        Ipld::String(s) => Value::String(s),
        Ipld::Bytes(b) => serde_json::json!({ "$bytes": STANDARD_NO_PAD.encode(b) }),
        Ipld::List(items) => {
            Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Ipld::Map(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| Ok((k, to_json(v)?)))
                .collect::<Result<_, RepoError>>()?,
        ),
        Ipld::Link(cid) => serde_json::json!({ "$link": cid.to_string() }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_out_as_atproto_json() {
        let cid = crate::repo::car::cid_of(b"x");
        let value = Ipld::Map(
            [
                (
                    "$type".to_owned(),
                    Ipld::String("community.herald.subscription".into()),
                ),
                ("n".to_owned(), Ipld::Integer(3)),
                ("b".to_owned(), Ipld::Bytes(vec![1, 2, 3])),
                ("l".to_owned(), Ipld::Link(cid)),
                (
                    "a".to_owned(),
                    Ipld::List(vec![Ipld::Bool(true), Ipld::Null]),
                ),
            ]
            .into_iter()
            .collect(),
        );
        let block = serde_ipld_dagcbor::to_vec(&value).unwrap();
        assert_eq!(
            record_json(&block).unwrap(),
            serde_json::json!({"$type": "community.herald.subscription", "n": 3,
                "b": {"$bytes": "AQID"}, "l": {"$link": cid.to_string()}, "a": [true, null]})
        );
        assert_eq!(
            record_json(&block[..block.len() - 1]).unwrap_err().reason(),
            "bad_cbor"
        );
    }
}
