//! Hot reload on file change: watches the flows and prompts directories and
//! asks for a reload ([`EngineShared::reload`]) once a burst of changes has
//! settled. A reload that fails changes nothing (the engine logs its errors),
//! so saving a half-written file is harmless.
//!
//! Started by `phonetree serve` ([`spawn`]); engines started by tests have
//! no watcher unless the test starts one.

use super::EngineShared;
use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Changes closer together than this are one reload.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// A running watcher; dropping it stops watching.
pub struct Watcher {
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Watches `dirs` recursively and reloads the engine's flows and prompts when
/// a `*.yaml`, `*.yml` or `*.wav` file under them changes. Must be called
/// inside a Tokio runtime.
pub fn spawn(shared: Arc<EngineShared>, dirs: Vec<PathBuf>) -> Result<Watcher, notify::Error> {
    spawn_with(dirs, DEBOUNCE, move || {
        let shared = shared.clone();
        async move { shared.reload().await }
    })
}

/// As [`spawn`], calling `reload` (at most one at a time) after each settled
/// burst of changes, `debounce` after the last one.
pub fn spawn_with<F, Fut>(
    dirs: Vec<PathBuf>,
    debounce: Duration,
    reload: F,
) -> Result<Watcher, notify::Error>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<u64, Vec<String>>> + Send,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<PathBuf>>();
    // The debouncer merges the events of one save (create, modify, close,
    // rename); the task below waits until changes stop for `debounce`.
    let mut debouncer = new_debouncer(
        debounce / 3,
        None,
        move |res: DebounceEventResult| match res {
            Ok(events) => {
                let changed: Vec<PathBuf> = events
                    .iter()
                    .filter(|e| e.need_rescan() || is_change(&e.kind))
                    .flat_map(|e| e.paths.iter())
                    .filter(|p| is_relevant(p))
                    .cloned()
                    .collect();
                let rescan = events.iter().any(|e| e.need_rescan());
                if !changed.is_empty() || rescan {
                    let _ = tx.send(changed);
                }
            }
            Err(errors) => {
                for e in errors {
                    tracing::warn!(error = %e, "watching flow files");
                }
            }
        },
    )?;
    for d in &dirs {
        debouncer.watch(d, RecursiveMode::Recursive)?;
    }
    tracing::info!(dirs = ?dirs, "watching for flow and prompt changes");
    let task = tokio::spawn(async move {
        while let Some(mut changed) = rx.recv().await {
            // Wait for quiet: a save in several writes, or many files copied, is one reload.
            loop {
                match tokio::time::timeout(debounce, rx.recv()).await {
                    Ok(Some(more)) => changed.extend(more),
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            changed.sort();
            changed.dedup();
            tracing::info!(files = ?changed, "flow files changed; reloading");
            match reload().await {
                Ok(version) => tracing::info!(version, "reloaded after a file change"),
                // The reload task has logged every error with its location.
                Err(errors) => tracing::warn!(
                    errors = errors.len(),
                    "file change not applied; the running flows are unchanged"
                ),
            }
        }
    });
    Ok(Watcher {
        _debouncer: debouncer,
        task,
    })
}

/// Creations, removals, renames, writes; not reads or opens.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Any => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Other => false,
    }
}

/// Files the catalog reads (flows `*.yaml`/`*.yml`, prompts `*.wav`).
/// Editor scratch files (`.main.yaml.swp`, `main.yaml~`, `4913`) are not.
fn is_relevant(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "yaml" | "yml" | "wav"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("phonetree-watch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub")).unwrap();
        d
    }

    async fn wait_for(count: &AtomicU64, n: u64, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if count.load(Ordering::SeqCst) >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        count.load(Ordering::SeqCst) >= n
    }

    #[test]
    fn only_catalog_files_count() {
        assert!(is_relevant(Path::new("flows/main.yaml")));
        assert!(is_relevant(Path::new("flows/x/main.YML")));
        assert!(is_relevant(Path::new("prompts/en/welcome.wav")));
        assert!(!is_relevant(Path::new("flows/.main.yaml.swp")));
        assert!(!is_relevant(Path::new("flows/main.yaml~")));
        assert!(!is_relevant(Path::new("flows/4913")));
        assert!(!is_change(&EventKind::Access(AccessKind::Open(
            notify::event::AccessMode::Any
        ))));
        assert!(is_change(&EventKind::Modify(ModifyKind::Data(
            notify::event::DataChange::Content
        ))));
    }

    /// A burst of writes is one reload; a nested file counts; other files do not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_writes_is_one_reload() {
        let dir = scratch("burst");
        let count = Arc::new(AtomicU64::new(0));
        let c = count.clone();
        let _w = spawn_with(vec![dir.clone()], Duration::from_millis(400), move || {
            let c = c.clone();
            async move { Ok(c.fetch_add(1, Ordering::SeqCst) + 1) }
        })
        .unwrap();
        for i in 0..5 {
            std::fs::write(dir.join("sub/main.yaml"), format!("# {i}\n")).unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        assert!(wait_for(&count, 1, Duration::from_secs(5)).await);
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(count.load(Ordering::SeqCst), 1, "one reload per burst");

        std::fs::write(dir.join("notes.txt"), "x").unwrap();
        std::fs::write(dir.join(".main.yaml.swp"), "x").unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(count.load(Ordering::SeqCst), 1, "not a flow or prompt file");

        std::fs::remove_file(dir.join("sub/main.yaml")).unwrap();
        assert!(
            wait_for(&count, 2, Duration::from_secs(5)).await,
            "a removed flow file reloads"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A real engine: saving a flow file changes the version new calls get; a
    /// broken save changes nothing; fixing it reloads again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn saving_a_flow_file_reloads_the_engine() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = scratch("engine");
        let good = std::fs::read_to_string(repo.join("tests/data/flows-e2e/main.yaml")).unwrap();
        std::fs::write(dir.join("main.yaml"), &good).unwrap();
        let mut config = crate::config::Config::for_tests(dir.clone(), repo.join("prompts"));
        config.rtp_ports = (41000, 41019);
        let engine_owned = crate::runtime::Engine::start(config).await.unwrap();
        let _w = spawn(engine_owned.shared().clone(), vec![dir.clone()]).unwrap();
        let engine = &engine_owned;
        let version = || engine.catalog().version;
        let wait_version = |v: u64| async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while tokio::time::Instant::now() < deadline && engine.catalog().version < v {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            engine.catalog().version
        };
        assert_eq!(version(), 1);

        std::fs::write(
            dir.join("main.yaml"),
            good.replace("[welcome]", "[support]"),
        )
        .unwrap();
        assert_eq!(wait_version(2).await, 2);

        std::fs::write(
            dir.join("main.yaml"),
            good.replace("next: main_menu", "next: mian_menu"),
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(version(), 2, "a broken file is refused");
        let flows = engine.catalog().flows.clone();
        assert!(flows.flow_by_name("main").is_some());

        std::fs::write(dir.join("main.yaml"), &good).unwrap();
        assert_eq!(wait_version(3).await, 3);
        drop(_w);
        engine_owned.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
