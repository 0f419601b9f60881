//! A headless baresip (Debian `baresip-core`) for the interop tests: a config on loopback
//! with no audio device (the microphone is a WAV file, the `sndfile` filter dumps what
//! baresip decoded), driven over `ctrl_tcp` (JSON in netstrings).
#![allow(dead_code)]

use super::require_tool;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Modules the headless config loads; all are in Debian's `baresip-core`.
pub const MODULES: &[&str] = &[
    "g711", "aufile", "aubridge", "sndfile", "account", "menu", "ctrl_tcp",
];

/// Hard limit for the baresip process (`-t`), and the backstop kill a little later.
pub const BARESIP_LIMIT: Duration = Duration::from_secs(40);

/// Writes 8 kHz mono 16-bit samples as a WAV file.
pub fn write_wav(path: &Path, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    for s in samples {
        w.write_sample(*s).expect("write wav");
    }
    w.finalize().expect("finalize wav");
}

pub fn baresip_path() -> PathBuf {
    require_tool("baresip", "sudo apt-get install -y baresip-core")
}

/// The directory holding baresip's modules (`g711.so`, ...): Debian's old layout, the
/// multiarch one of newer packages, or a local build.
pub fn baresip_module_dir() -> PathBuf {
    let mut candidates = vec![
        PathBuf::from("/usr/lib/baresip/modules"),
        PathBuf::from("/usr/local/lib/baresip/modules"),
    ];
    if let Ok(dirs) = std::fs::read_dir("/usr/lib") {
        for d in dirs.flatten() {
            candidates.push(d.path().join("baresip/modules"));
        }
    }
    let Some(dir) = candidates.iter().find(|d| d.join("g711.so").is_file()) else {
        panic!(
            "baresip is installed but none of {candidates:?} holds its modules (g711.so).\n  \
             Install them: sudo apt-get install -y baresip-core"
        );
    };
    let missing: Vec<&str> = MODULES
        .iter()
        .copied()
        .filter(|m| !dir.join(format!("{m}.so")).is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "baresip modules {missing:?} are missing from {} (the headless test needs {MODULES:?}); \
         install the full package: sudo apt-get install -y baresip-core",
        dir.display()
    );
    dir.clone()
}

/// A config directory for `baresip -f`: loopback only, no audio device, ctrl_tcp on
/// `ctrl_port`, the `accounts` line given, `mic` (or silence) as the microphone.
pub fn write_config(
    dir: &Path,
    modules: &Path,
    ctrl_port: u16,
    mic: Option<&Path>,
    accounts: &str,
) {
    std::fs::create_dir_all(dir).expect("create baresip config dir");
    let mic = match mic {
        Some(m) => m.to_path_buf(),
        None => {
            // 30 s of silence at 8 kHz mono. It also keeps the send path running, which is
            // where baresip emits its telephone-events.
            let silence = dir.join("silence.wav");
            let samples = vec![0i16; 8000 * 30];
            write_wav(&silence, &samples);
            silence
        }
    };
    let config = format!(
        "# phonetree interop test: headless baresip on loopback\n\
         poll_method\t\tepoll\n\
         sip_listen\t\t127.0.0.1:0\n\
         net_interface\t\t127.0.0.1\n\
         call_local_timeout\t20\n\
         call_max_calls\t\t1\n\
         audio_source\t\taufile,{mic}\n\
         audio_player\t\taubridge,speaker\n\
         audio_alert\t\taubridge,alert\n\
         audio_level\t\tno\n\
         ausrc_srate\t\t8000\n\
         auplay_srate\t\t8000\n\
         ausrc_channels\t\t1\n\
         auplay_channels\t\t1\n\
         rtp_ports\t\t10000-19999\n\
         rtcp_mux\t\tno\n\
         jitter_buffer_delay\t5-10\n\
         rtp_stats\t\tno\n\
         module_path\t\t{modules}\n\
         module\t\t\tg711.so\n\
         module\t\t\taufile.so\n\
         module\t\t\taubridge.so\n\
         module\t\t\tsndfile.so\n\
         module_tmp\t\taccount.so\n\
         module_app\t\tmenu.so\n\
         module_app\t\tctrl_tcp.so\n\
         ctrl_tcp_listen\t\t127.0.0.1:{ctrl_port}\n\
         snd_path\t\t{dir}\n",
        mic = mic.display(),
        modules = modules.display(),
        dir = dir.display(),
    );
    std::fs::write(dir.join("config"), config).expect("write baresip config");
    std::fs::write(dir.join("accounts"), format!("{accounts}\n")).expect("write baresip accounts");
    std::fs::write(dir.join("contacts"), "").expect("write baresip contacts");
}

/// The running baresip and its ctrl_tcp connection.
pub struct Baresip {
    child: Child,
    log: PathBuf,
    /// Connected once baresip's ctrl_tcp listens.
    ctrl: Option<TcpStream>,
    buf: Vec<u8>,
    started: Instant,
    /// Everything ctrl_tcp said, with seconds since start, for failure reports.
    pub said: Vec<(f64, Value)>,
}

impl Baresip {
    pub fn start(dir: &Path, ctrl_port: u16) -> Baresip {
        let log = dir.join("baresip.log");
        let out = std::fs::File::create(&log).expect("create baresip.log");
        let err = out.try_clone().expect("clone");
        let child = Command::new(baresip_path())
            .arg("-f")
            .arg(dir)
            .args(["-t", &BARESIP_LIMIT.as_secs().to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("could not run baresip: {e}"));
        let started = Instant::now();
        let mut b = Baresip {
            child,
            log,
            ctrl: None,
            buf: Vec::new(),
            started,
            said: Vec::new(),
        };
        // ctrl_tcp listens once the modules are loaded.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = b.child.try_wait() {
                panic!(
                    "baresip exited ({status}) before it was ready\n{}",
                    b.report()
                );
            }
            if let Ok(s) = TcpStream::connect(("127.0.0.1", ctrl_port)) {
                s.set_read_timeout(Some(Duration::from_millis(50)))
                    .expect("read timeout");
                b.ctrl = Some(s);
                return b;
            }
            if Instant::now() > deadline {
                panic!(
                    "baresip's ctrl_tcp did not listen on 127.0.0.1:{ctrl_port} within 10 s\n{}",
                    b.report()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Sends one ctrl_tcp command (`{"command","params","token"}` in a netstring).
    pub fn command(&mut self, command: &str, params: &str) {
        let j = serde_json::json!({ "command": command, "params": params, "token": command })
            .to_string();
        let frame = format!("{}:{},", j.len(), j);
        let ctrl = self.ctrl.as_mut().expect("ctrl_tcp connected");
        if let Err(e) = ctrl.write_all(frame.as_bytes()) {
            panic!(
                "ctrl_tcp: could not send `{command}`: {e}\n{}",
                self.report()
            );
        }
    }

    /// Reads ctrl_tcp messages for `d` (or until `stop` is true for one) and returns the
    /// one that stopped it.
    pub fn pump(&mut self, d: Duration, mut stop: impl FnMut(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + d;
        loop {
            // Complete netstrings already buffered.
            while let Some(colon) = self.buf.iter().position(|&c| c == b':') {
                let Some(len) = std::str::from_utf8(&self.buf[..colon])
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok())
                else {
                    panic!(
                        "ctrl_tcp: not a netstring: {:?}\n{}",
                        String::from_utf8_lossy(&self.buf),
                        self.report()
                    );
                };
                if self.buf.len() < colon + 1 + len + 1 {
                    break;
                }
                let body = self.buf[colon + 1..colon + 1 + len].to_vec();
                self.buf.drain(..colon + 1 + len + 1);
                let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
                    panic!(
                        "ctrl_tcp: bad JSON {:?}: {e}",
                        String::from_utf8_lossy(&body)
                    )
                });
                let t = self.secs();
                self.said.push((t, v.clone()));
                if stop(&v) {
                    return Some(v);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            let mut chunk = [0u8; 4096];
            let ctrl = self.ctrl.as_mut().expect("ctrl_tcp connected");
            match ctrl.read(&mut chunk) {
                Ok(0) => {
                    // baresip closed the connection (it quit); nothing more will come.
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                    return None;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("ctrl_tcp read: {e}\n{}", self.report()),
            }
        }
    }

    /// The response to `command`, which must be `ok`.
    pub fn expect_ok(&mut self, command: &str) {
        let r = self.pump(Duration::from_secs(5), |v| {
            v["response"] == true && v["token"] == command
        });
        match r {
            Some(v) if v["ok"] == true => {}
            Some(v) => panic!("baresip refused `{command}`: {v}\n{}", self.report()),
            None => panic!("no answer from baresip to `{command}`\n{}", self.report()),
        }
    }

    /// Waits for the call event `kind`; fails if the call closes first.
    pub fn expect_event(&mut self, kind: &str, within: Duration) -> Value {
        let r = self.pump(within, |v| {
            v["event"] == true && (v["type"] == kind || v["type"] == "CALL_CLOSED")
        });
        match r {
            Some(v) if v["type"] == kind => v,
            Some(v) => panic!(
                "baresip's call closed while waiting for {kind}: {}\n{}",
                v["param"],
                self.report()
            ),
            None => panic!(
                "no {kind} from baresip within {within:?}\n{}",
                self.report()
            ),
        }
    }

    /// Listens for `d`; the call must stay up.
    pub fn stay_up(&mut self, d: Duration, what: &str) {
        if let Some(v) = self.pump(d, |v| v["event"] == true && v["type"] == "CALL_CLOSED") {
            panic!(
                "the call closed {what} ({}), at {:.2}s\n{}",
                v["param"],
                self.secs(),
                self.report()
            );
        }
    }

    /// Quits baresip and waits for it (killed if it does not go).
    pub fn quit(&mut self) {
        self.command("quit", "");
        let _ = self.pump(Duration::from_secs(2), |v| {
            v["response"] == true && v["token"] == "quit"
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("baresip did not quit within 5 s\n{}", self.report());
    }

    pub fn report(&self) -> String {
        let log = std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        // baresip rewrites its status line with \r; keep the log readable.
        let lines: Vec<&str> = log
            .split(['\r', '\n'])
            .filter(|l| !l.trim().is_empty() && !l.starts_with("[0:") && !l.starts_with("//"))
            .collect();
        let said: Vec<String> = self
            .said
            .iter()
            .map(|(t, v)| format!("  {t:6.2}s {v}"))
            .collect();
        format!(
            "--- baresip ctrl_tcp\n{}\n--- baresip log ({}, tail)\n{}",
            said.join("\n"),
            self.log.display(),
            lines[lines.len().saturating_sub(60)..].join("\n")
        )
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The audio baresip decoded (the `sndfile` filter's `dump-*-dec.wav`), as 8 kHz mono.
pub fn baresip_heard(dir: &Path) -> Vec<i16> {
    let dumps: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read baresip dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("dump-") && n.ends_with("-dec.wav"))
        })
        .collect();
    assert_eq!(
        dumps.len(),
        1,
        "expected one decoded-audio dump from baresip's sndfile module in {}, found {dumps:?}",
        dir.display()
    );
    let mut r = hound::WavReader::open(&dumps[0])
        .unwrap_or_else(|e| panic!("read {}: {e}", dumps[0].display()));
    let spec = r.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (8000, 1, 16),
        "baresip's dump {} is not 8 kHz mono 16-bit",
        dumps[0].display()
    );
    r.samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("read {}: {e}", dumps[0].display()))
}
