//! The agent trusts nothing in an enrollment answer that it cannot check: the certificate must
//! be issued by the pinned CA, for the device id the answer names, and for the key the agent
//! sent. The attacker here holds the controller's server key (a copied data directory, a
//! replica taken over): it passes the CA pin, forwards the enrollment to the real controller
//! (spending the token) and changes the answer on its way back. Whatever it changes, the agent
//! refuses with a clear error and leaves nothing written: no state directory, and no key in
//! the TPM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use ward_agent::enroll::{EnrollOptions, enroll};
use ward_agent::error::AgentError;
use ward_agent::secrets::SecretStoreKind;
use ward_agent::state::StateDir;
use ward_e2e::inprocess::TestController;
use ward_proto::transport::ServerUrl;
use ward_proto::v1::enrollment_service_server::{EnrollmentService, EnrollmentServiceServer};
use ward_proto::v1::{
    EnrollRequest, EnrollResponse, ReportOfflineWipeRequest, ReportOfflineWipeResponse,
};

/// Changes the controller's answer to the request it was for.
type Tamper = Arc<dyn Fn(&EnrollRequest, EnrollResponse) -> EnrollResponse + Send + Sync>;

/// Answers enrollments by asking the real controller, then changing the answer.
struct Interceptor {
    controller: Arc<TestController>,
    tamper: Tamper,
}

#[tonic::async_trait]
impl EnrollmentService for Interceptor {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let request = request.into_inner();
        let answer = self
            .controller
            .enrollment()
            .await
            .enroll(request.clone())
            .await?
            .into_inner();
        Ok(Response::new((self.tamper)(&request, answer)))
    }

    async fn report_offline_wipe(
        &self,
        _: Request<ReportOfflineWipeRequest>,
    ) -> Result<Response<ReportOfflineWipeResponse>, Status> {
        Err(Status::unimplemented("not here"))
    }
}

/// The interceptor on 127.0.0.1, presenting the controller's own server certificate and key.
async fn intercept(controller: &Arc<TestController>, tamper: Tamper) -> ServerUrl {
    let (chain, key) = controller.data.load_server_credentials().unwrap();
    let tls = ward_certs::tls::server_config(
        controller.ca.cert_der(),
        &chain,
        &key,
        controller.app.revoked_serials(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                if let Ok(stream) = acceptor.accept(tcp).await {
                    let _ = tx.send(Ok::<_, std::io::Error>(stream)).await;
                }
            });
        }
    });
    let incoming = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|stream| (stream, rx))
    });
    let service = EnrollmentServiceServer::new(Interceptor {
        controller: Arc::clone(controller),
        tamper,
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming),
    );
    format!("https://127.0.0.1:{}", addr.port())
        .parse()
        .unwrap()
}

fn options(url: ServerUrl, controller: &TestController, token: String) -> EnrollOptions {
    EnrollOptions {
        server: url,
        token: zeroize::Zeroizing::new(token),
        ca_hash: controller.ca.hash(),
        secret_store: SecretStoreKind::File,
        tpm: None,
    }
}

/// Enrolls through an interceptor that changes the answer with `tamper`; the agent's error.
async fn enroll_through(
    controller: &Arc<TestController>,
    state: &Path,
    tamper: Tamper,
) -> AgentError {
    let url = intercept(controller, tamper).await;
    let token = controller.create_token("ines@hospital.org", 3600).await;
    let dir = StateDir::new(state);
    enroll(&dir, options(url, controller, token))
        .await
        .expect_err("the agent took an answer that does not check out")
}

/// Nothing of the enrollment is left at `state`: the directory is gone when the enrollment
/// made it, empty when it was there before.
fn nothing_written(state: &Path, existed: bool) {
    if existed {
        let left: Vec<_> = std::fs::read_dir(state)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "the refused enrollment left {left:?}");
    } else {
        assert!(
            !state.exists(),
            "the refused enrollment left {}",
            state.display()
        );
    }
}

#[tokio::test]
async fn a_certificate_for_another_key_is_refused_and_nothing_is_written() {
    let controller = Arc::new(TestController::start().await);
    // The attacker's own device, enrolled properly: its certificate is valid, issued by the
    // pinned CA, for a key the attacker holds.
    let theirs = controller.enroll("mallory@hospital.org").await;
    let (id, cert) = (theirs.device_id.clone(), theirs.certificate_der.clone());
    let swap: Tamper = Arc::new(move |_, mut answer| {
        answer.device_id = id.clone();
        answer.certificate_der = cert.clone();
        answer
    });
    let tmp = tempfile::tempdir().unwrap();

    let made = tmp.path().join("state");
    let err = enroll_through(&controller, &made, swap.clone()).await;
    assert!(matches!(err, AgentError::Failed(_)), "{err:?}");
    assert!(
        err.to_string().contains("not for the key this agent sent"),
        "{err}"
    );
    nothing_written(&made, false);

    // A state directory made beforehand (by a packager, say) is left as it was.
    let existing = tmp.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    let err = enroll_through(&controller, &existing, swap).await;
    assert!(
        err.to_string().contains("not for the key this agent sent"),
        "{err}"
    );
    nothing_written(&existing, true);
}

#[tokio::test]
async fn a_certificate_of_another_ca_or_for_another_device_is_refused() {
    let controller = Arc::new(TestController::start().await);
    let tmp = tempfile::tempdir().unwrap();

    // Another device's certificate under the answer's own device id.
    let theirs = controller.enroll("mallory@hospital.org").await;
    let cert = theirs.certificate_der.clone();
    let other_device: Tamper = Arc::new(move |_, mut answer| {
        answer.certificate_der = cert.clone();
        answer
    });
    let state = tmp.path().join("other-device");
    let err = enroll_through(&controller, &state, other_device).await;
    assert!(err.to_string().contains("not for device"), "{err}");
    nothing_written(&state, false);

    // A certificate for the agent's own key and the answer's device id, issued by a CA of
    // the attacker's: the answer still includes the pinned CA.
    let rogue = Arc::new(
        ward_certs::CertificateAuthority::create("rogue", time::OffsetDateTime::now_utc()).unwrap(),
    );
    let state = tmp.path().join("other-ca");
    let reissue: Tamper = Arc::new(move |request, mut answer| {
        let csr = ward_certs::VerifiedCsr::from_der(&request.csr_der).unwrap();
        let id = uuid::Uuid::parse_str(&answer.device_id).unwrap();
        answer.certificate_der = rogue
            .issue_client(
                &csr,
                &ward_certs::Identity::Device(id),
                time::OffsetDateTime::now_utc(),
                std::time::Duration::from_secs(7 * 86_400),
            )
            .unwrap()
            .der;
        answer
    });
    let err = enroll_through(&controller, &state, reissue).await;
    assert!(err.to_string().contains("is not valid"), "{err}");
    nothing_written(&state, false);
}

#[tokio::test]
#[cfg_attr(
    not(ward_swtpm),
    ignore = "needs swtpm: apt-get install swtpm swtpm-tools tpm2-tools"
)]
async fn a_certificate_for_another_key_leaves_no_key_in_the_tpm() {
    let controller = Arc::new(TestController::start().await);
    let theirs = controller.enroll("mallory@hospital.org").await;
    let (id, cert) = (theirs.device_id.clone(), theirs.certificate_der.clone());
    let swap: Tamper = Arc::new(move |_, mut answer| {
        answer.device_id = id.clone();
        answer.certificate_der = cert.clone();
        answer
    });
    let tmp = tempfile::tempdir().unwrap();
    let swtpm = ward_e2e::swtpm::Swtpm::start(&tmp.path().join("tpm"));
    let tpm = ward_agent::tpm::TpmChoice::Tcti(swtpm.tcti.clone())
        .resolve()
        .expect("the test's TPM");
    let url = intercept(&controller, swap).await;
    let token = controller.create_token("ines@hospital.org", 3600).await;
    let state = tmp.path().join("state");
    let mut opts = options(url, &controller, token);
    opts.secret_store = SecretStoreKind::Tpm;
    opts.tpm = Some(tpm);
    let err = enroll(&StateDir::new(&state), opts)
        .await
        .expect_err("the agent took a certificate for another key");
    assert!(
        err.to_string().contains("not for the key this agent sent"),
        "{err}"
    );
    nothing_written(&state, false);
    assert_eq!(
        swtpm.persistent_handles(),
        Vec::<u32>::new(),
        "the key made for the refused enrollment stayed in the TPM"
    );
}
