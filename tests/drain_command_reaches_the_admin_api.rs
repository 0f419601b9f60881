//! `phonetree drain` over real HTTP against the admin router: a wrong token is refused
//! and changes nothing, the right one puts the engine in drain mode with its deadline.

use phonetree::catalog::Catalog;
use phonetree::config::{Config, HttpToken};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn admin_token(clear: &str) -> Vec<HttpToken> {
    let mut c = Config::parse("", Path::new("<test>")).unwrap();
    c.add_admin_token("ops", clear);
    c.http_tokens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_command_puts_the_engine_in_drain_mode() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let catalog = Arc::new(Catalog::load(&root.join("flows"), &root.join("prompts"), 1).unwrap());
    let (shared, _engine) =
        phonetree::runtime::EngineShared::detached(catalog, admin_token("s3cret"), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = phonetree::admin::router(shared.clone())
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let run = |token: &str| {
        let url = format!("http://{addr}");
        let token = token.to_string();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_phonetree"))
                .args([
                    "drain",
                    "--url",
                    &url,
                    "--token",
                    &token,
                    "--deadline",
                    "90s",
                ])
                .env_remove("PHONETREE_ADMIN_TOKEN")
                .output()
                .unwrap()
        })
    };
    let refused = run("wrong").await.unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("401"), "{stderr}");
    assert!(!shared.draining());

    let ok = run("s3cret").await.unwrap();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.contains("draining"), "{stdout}");
    assert!(shared.draining());
    let left = shared
        .drain_deadline()
        .unwrap()
        .saturating_duration_since(Instant::now());
    assert!(
        left > Duration::from_secs(85) && left <= Duration::from_secs(90),
        "{left:?}"
    );
}
