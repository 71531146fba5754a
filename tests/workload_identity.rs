//! Workload identity federation end to end: the real `TailscaleClient` reads an ID token from a
//! file and exchanges it at the simulated tailnet's `POST /api/v2/oauth/token-exchange`, which
//! verifies it against a test issuer's JWKS (signature, issuer, subject pattern, audience,
//! expiry). Counted in calls, never timed.
mod support;

use std::path::PathBuf;
use std::sync::Arc;

use support::client::*;
use tailnet_operator::error::Category;
use tailnet_operator::sim::federation::TestIssuer;
use tailnet_operator::sim::{SimServer, SimTailnet};
use tailnet_operator::tailscale::{ClientConfig, Credentials, DeviceListOptions, TailscaleClient};

const EXCHANGE_ROUTE: &str = "POST /api/v2/oauth/token-exchange";
const ISSUER: &str = "https://oidc.cluster.example";
const AUDIENCE: &str = "api.tailscale.com/tailnet-operator";
const SUBJECT: &str = "system:serviceaccount:tailnet-system:tailnet-operator";

struct Setup {
    server: SimServer,
    issuer: TestIssuer,
    client_id: String,
    token_file: PathBuf,
}

impl Setup {
    async fn new(name: &str) -> Setup {
        let server = start_sim().await;
        let issuer = TestIssuer::new(ISSUER);
        let sim = server.tailnet();
        sim.trust_issuer(ISSUER, issuer.jwks());
        let client_id = sim.add_federated_identity(
            ISSUER,
            "system:serviceaccount:tailnet-system:*",
            AUDIENCE,
            &["tag:k8s-operator"],
        );
        let dir = std::env::temp_dir().join(format!("tnop-wif-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let setup = Setup {
            server,
            issuer,
            client_id,
            token_file: dir.join("token"),
        };
        setup.project(SUBJECT, AUDIENCE, 3600);
        setup
    }

    fn sim(&self) -> &SimTailnet {
        self.server.tailnet()
    }

    /// Writes a token as the kubelet would (a new file content at the same path).
    fn project(&self, subject: &str, audience: &str, lifetime: i64) -> String {
        let token = self.issuer.token(subject, audience, lifetime);
        std::fs::write(&self.token_file, &token).unwrap();
        token
    }

    fn client(&self, audience: Option<&str>) -> TailscaleClient {
        let mut config = ClientConfig::new(
            self.server.base_url(),
            Credentials::WorkloadIdentity {
                client_id: self.client_id.clone(),
                token_file: self.token_file.clone(),
                audience: audience.map(str::to_owned),
            },
        );
        config.retry = fast_retry(2);
        TailscaleClient::new(config).unwrap()
    }

    fn exchanges(&self) -> u64 {
        self.sim().calls().get(EXCHANGE_ROUTE)
    }
}

fn devices() -> DeviceListOptions {
    DeviceListOptions::default()
}

#[tokio::test]
async fn a_projected_token_is_exchanged_once_for_many_concurrent_calls() {
    let setup = Setup::new("once").await;
    let client = Arc::new(setup.client(Some(AUDIENCE)));
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let client = Arc::clone(&client);
            tokio::spawn(async move { client.list_devices(&devices()).await })
        })
        .collect();
    for call in calls {
        assert!(!call.await.unwrap().expect("listed").is_empty());
    }
    assert_eq!(setup.exchanges(), 1, "one exchange in flight, then cached");
    assert_eq!(setup.sim().calls().get(DEVICES_ROUTE), 8);
    assert_eq!(
        setup.sim().calls().get(TOKEN_ROUTE),
        0,
        "no client secret anywhere"
    );
}

#[tokio::test]
async fn a_rotated_token_file_is_read_at_the_next_exchange() {
    let setup = Setup::new("rotate").await;
    let client = setup.client(Some(AUDIENCE));
    client.list_devices(&devices()).await.expect("first token");
    // The kubelet rotates the file; only a token from the *new* file passes now, because the
    // identity's subject is narrowed to the new service account.
    setup.project(
        "system:serviceaccount:tailnet-system:rotated",
        AUDIENCE,
        3600,
    );
    setup.sim().set_federated_subject(
        &setup.client_id,
        "system:serviceaccount:tailnet-system:rotated",
    );
    setup.sim().console_expire_tokens();
    client
        .list_devices(&devices())
        .await
        .expect("the 401 refreshes with the rotated file");
    assert_eq!(setup.exchanges(), 2);
}

#[tokio::test]
async fn a_wrong_audience_is_named_before_anything_is_sent() {
    let setup = Setup::new("aud-local").await;
    setup.project(SUBJECT, "https://kubernetes.default.svc", 3600);
    let err = setup
        .client(Some(AUDIENCE))
        .list_devices(&devices())
        .await
        .unwrap_err();
    assert_eq!(err.category, Category::Auth);
    assert!(
        err.message.contains("https://kubernetes.default.svc"),
        "{err}"
    );
    assert!(err.message.contains(AUDIENCE), "{err}");
    assert!(
        err.message
            .contains(&setup.token_file.display().to_string()),
        "{err}"
    );
    assert_eq!(setup.exchanges(), 0);
}

#[tokio::test]
async fn the_api_refuses_a_wrong_audience_subject_or_signature_with_its_error_shape() {
    let setup = Setup::new("refused").await;
    let cases = [
        (setup.project(SUBJECT, "someone-else", 3600), "audience"),
        (
            setup.project("system:serviceaccount:default:intruder", AUDIENCE, 3600),
            "subject",
        ),
        (
            {
                let impostor = TestIssuer::new(ISSUER).token(SUBJECT, AUDIENCE, 3600);
                std::fs::write(&setup.token_file, &impostor).unwrap();
                impostor
            },
            "signature",
        ),
    ];
    let mut exchanges = 0;
    for (token, word) in cases {
        std::fs::write(&setup.token_file, &token).unwrap();
        // No local audience check: the API's answer is what the user sees.
        let err = setup
            .client(None)
            .list_devices(&devices())
            .await
            .unwrap_err();
        exchanges += 1;
        assert_eq!(err.category, Category::Auth, "{err}");
        assert_eq!(err.status, Some(401), "{err}");
        assert!(err.message.contains("token exchange refused"), "{err}");
        assert!(err.message.contains(word), "{word}: {err}");
        assert!(
            !format!("{err} {err:?}").contains(&token),
            "the token leaked"
        );
        assert_eq!(setup.exchanges(), exchanges, "a refusal is not retried");
    }
}

#[tokio::test]
async fn an_expired_or_missing_token_file_is_named_with_its_path() {
    let setup = Setup::new("stale").await;
    setup.project(SUBJECT, AUDIENCE, -600);
    let err = setup
        .client(None)
        .list_devices(&devices())
        .await
        .unwrap_err();
    assert!(err.message.contains("expired"), "{err}");
    assert!(err.message.contains("stopped refreshing"), "{err}");

    std::fs::remove_file(&setup.token_file).unwrap();
    let err = setup
        .client(None)
        .list_devices(&devices())
        .await
        .unwrap_err();
    assert_eq!(err.category, Category::Auth);
    assert!(
        err.message.contains(&format!(
            "cannot read the workload identity token {}",
            setup.token_file.display()
        )),
        "{err}"
    );
    assert_eq!(
        setup.exchanges(),
        0,
        "nothing sent for a token known to be unusable"
    );
}

#[tokio::test]
async fn a_revoked_federated_identity_stops_working() {
    let setup = Setup::new("revoked").await;
    let client = setup.client(Some(AUDIENCE));
    client.list_devices(&devices()).await.unwrap();
    let admin = api_key_client(&setup.server);
    admin.delete_key(&setup.client_id).await.expect("revoke");
    let err = client.list_devices(&devices()).await.unwrap_err();
    assert_eq!(err.category, Category::Auth, "{err}");
}
