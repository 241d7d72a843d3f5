use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;
use crate::on_both_backends;
use herald::auth::{SigningKey, mint_service_jwt};
use herald::sandbox::{Identity, KeyFormat};

const UNREAD: &str = "community.herald.getUnreadCount";

fn in_a_minute() -> i64 {
    chrono::Utc::now().timestamp() + 60
}

on_both_backends! {
    async fn every_jwt_failure_answers_401_in_the_xrpc_error_shape(backend) {
        let app = spawn_app(backend).await;
        let alice = app.identity("alice");
        let aud = app.service_did.clone();
        let other_key = SigningKey::generate_k256();
        let cases: Vec<(&str, Option<String>)> = vec![
            ("no token", None),
            ("garbage", Some("not.a.jwt".into())),
            ("bad signature", Some(mint_service_jwt(&other_key, &alice.did, &aud, Some(UNREAD), in_a_minute()))),
            ("wrong aud", Some(mint_service_jwt(&alice.key, &alice.did, "did:web:elsewhere", Some(UNREAD), in_a_minute()))),
            ("wrong lxm", Some(mint_service_jwt(&alice.key, &alice.did, &aud, Some("community.herald.publish"), in_a_minute()))),
            ("expired", Some(mint_service_jwt(&alice.key, &alice.did, &aud, Some(UNREAD), chrono::Utc::now().timestamp() - 600))),
            ("unknown DID", Some(mint_service_jwt(&alice.key, "did:plc:unknownunknownunknown", &aud, Some(UNREAD), in_a_minute()))),
        ];
        for (what, token) in cases {
            let (status, body) = app.call_with_token(token.as_deref(), UNREAD, None, &[]).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
            let error = body["error"].as_str().unwrap_or_default();
            assert!(error == "AuthenticationRequired" || error.starts_with("BadJwt") || error == "JwtExpired",
                "{what}: {body}");
            assert!(body["message"].is_string(), "{what}: {body}");
        }
    }

    async fn es256_keys_legacy_key_formats_and_service_fragments_are_accepted(backend) {
        let app = spawn_app(backend).await;
        let p256 = Identity::plc_p256("p256-member");
        app.plc.register_identity(&p256);
        let (status, body) = app.call(Some(&p256), UNREAD, None, &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");

        for legacy in [
            Identity::plc("legacy-k256").with_format(KeyFormat::Legacy),
            Identity::plc_p256("legacy-p256").with_format(KeyFormat::Legacy),
        ] {
            app.plc.register_identity(&legacy);
            let (status, body) = app.call(Some(&legacy), UNREAD, None, &[]).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }

        let alice = app.identity("alice");
        let token = mint_service_jwt(&alice.key, &format!("{}#atproto_labeler", alice.did), &app.service_did, Some(UNREAD), in_a_minute());
        let (status, body) = app.call_with_token(Some(&token), UNREAD, None, &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    async fn a_rotated_key_is_picked_up_by_resolving_again(backend) {
        let app = spawn_app(backend).await;
        let alice = app.identity("alice");
        let (status, _) = app.call(Some(&alice), UNREAD, None, &[]).await;
        assert_eq!(status, StatusCode::OK);
        // Rotate: same DID, new key; the cached document still holds the old one.
        let rotated = Identity { did: alice.did.clone(), key: SigningKey::generate_k256(), format: KeyFormat::Multikey };
        app.plc.register_identity(&rotated);
        let (status, body) = app.call(Some(&rotated), UNREAD, None, &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    async fn herald_serves_its_did_document_and_health(backend) {
        let app = spawn_app(backend).await;
        let doc: serde_json::Value = app.http.get(format!("{}/.well-known/did.json", app.base))
            .send().await.unwrap().json().await.unwrap();
        assert_eq!(doc["id"], app.service_did);
        assert_eq!(doc["service"][0]["id"], "#herald_appview");
        let (status, body) = app.call(None, "_health", None, &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body["version"].is_string());
        let (status, body) = app.call(None, "com.example.nothing", None, &[]).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::NOT_IMPLEMENTED, Some("MethodNotImplemented")));
        let (status, body) = app.call(None, UNREAD, Some(json!({})), &[]).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
        assert_eq!(body["error"], "InvalidRequest");
    }
}
