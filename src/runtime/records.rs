//! Call records: every ended call is published (broadcast, for the admin API and tests) and
//! appended as one JSON line to `call-records.jsonl` by a writer thread, so a slow disk
//! never stalls a media shard. Lines are flushed at once and fsynced at least every second.

use super::metrics::Metrics;
use crate::call::CallRecord;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

#[derive(Clone)]
pub struct RecordSink {
    file: Option<mpsc::Sender<CallRecord>>,
    live: broadcast::Sender<CallRecord>,
    metrics: Arc<Metrics>,
}

impl RecordSink {
    pub fn new(path: Option<PathBuf>, metrics: Arc<Metrics>) -> std::io::Result<RecordSink> {
        let (live, _) = broadcast::channel(4096);
        let file = match path {
            None => None,
            Some(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                // Records hold caller numbers: readable by the engine's user only, also when
                // an older file was created with a wider mode.
                use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(&path)?;
                f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
                let (tx, rx) = mpsc::channel::<CallRecord>();
                std::thread::Builder::new()
                    .name("call-records".into())
                    .spawn(move || write_loop(f, rx))?;
                Some(tx)
            }
        };
        Ok(RecordSink {
            file,
            live,
            metrics,
        })
    }

    pub fn publish(&self, record: CallRecord) {
        tracing::info!(
            call = record.id,
            outcome = %record.outcome,
            status = record.status,
            flow = %record.flow,
            duration_ms = record.duration_ms,
            path = ?record.path,
            digits = %record.digits.iter().map(|d| format!("{}({})", d.digit, d.source)).collect::<Vec<_>>().join(" "),
            "call ended"
        );
        self.metrics.call_ended(&record);
        if let Some(f) = &self.file {
            if f.send(record.clone()).is_err() {
                tracing::error!(
                    call = record.id,
                    "call record writer is gone; record only logged"
                );
            }
        }
        let _ = self.live.send(record);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<CallRecord> {
        self.live.subscribe()
    }
}

fn write_loop(file: std::fs::File, rx: mpsc::Receiver<CallRecord>) {
    let mut out = std::io::BufWriter::new(file);
    let mut last_sync = Instant::now();
    let mut dirty = false;
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(rec) => match serde_json::to_string(&rec) {
                Ok(line) => {
                    if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                        tracing::error!(call = rec.id, "writing call record failed");
                    }
                    dirty = true;
                }
                Err(e) => tracing::error!(error = %e, "serialising call record failed"),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = out.flush();
                let _ = out.get_ref().sync_data();
                return;
            }
        }
        if dirty && last_sync.elapsed() >= Duration::from_secs(1) {
            let _ = out.get_ref().sync_data();
            last_sync = Instant::now();
            dirty = false;
        }
    }
}
