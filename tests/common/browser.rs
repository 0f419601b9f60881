//! Headless Chromium driven over the DevTools protocol, for tests that look at the
//! dashboard as a browser renders it.
//!
//! No extra crates: the protocol runs over a WebSocket (RFC 6455), and the few parts of it
//! a client needs (handshake, masked text frames out, unmasked frames in) are written here.
//! Only loopback, only the browser we started.

use super::require_tool;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn chromium_path() -> PathBuf {
    require_tool("chromium", "sudo apt-get install -y chromium")
}

/// A headless Chromium with one page open, and a DevTools connection to that page.
pub struct Browser {
    child: Child,
    page: Cdp,
}

impl Browser {
    /// Starts Chromium on `url` with its profile and log in `dir` (a test's scratch
    /// directory), and connects to the page's DevTools endpoint.
    pub fn open(url: &str, dir: &Path) -> Browser {
        let chromium = chromium_path();
        let profile = dir.join("chromium-profile");
        let log = dir.join("chromium.log");
        let log_path = log.clone();
        let mut child = Command::new(&chromium)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--no-first-run",
                "--no-default-browser-check",
                "--window-size=1280,900",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("could not run {}: {e}", chromium.display()));
        // Chromium says where DevTools listens on stderr; the rest of stderr goes to a log.
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut out = std::fs::File::create(&log).ok();
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(out) = out.as_mut() {
                    let _ = writeln!(out, "{line}");
                }
                if let Some(rest) = line.split("DevTools listening on ").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(rest.trim().to_string());
                }
            }
        });
        let browser_ws = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(u) => u,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "chromium did not start DevTools within 30 s (see {})",
                    log_path.display()
                );
            }
        };
        let port: u16 = browser_ws
            .strip_prefix("ws://127.0.0.1:")
            .and_then(|r| r.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected DevTools address {browser_ws}"));
        let page_ws = page_target(port, Duration::from_secs(10));
        let page = Cdp::connect(&page_ws);
        Browser { child, page }
    }

    /// Evaluates a JavaScript expression in the page; its value as JSON.
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.page.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("page script failed: {ex}");
        }
        r.pointer("/result/value").cloned().unwrap_or(Value::Null)
    }

    /// Evaluates `expression` every 200 ms until `done` accepts its value; the last value
    /// either way.
    pub fn poll(
        &mut self,
        expression: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> (bool, Value) {
        let deadline = Instant::now() + within;
        loop {
            let v = self.eval(expression);
            if done(&v) {
                return (true, v);
            }
            if Instant::now() >= deadline {
                return (false, v);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A PNG of the page as it is now.
    pub fn screenshot(&mut self) -> Vec<u8> {
        let r = self
            .page
            .call("Page.captureScreenshot", json!({ "format": "png" }));
        let data = r
            .get("data")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no screenshot data: {r}"));
        base64_decode(data).expect("screenshot is base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The WebSocket address of the first page target (`GET /json/list`).
fn page_target(port: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(body) = http_get(port, "/json/list")
            && let Ok(Value::Array(targets)) = serde_json::from_str::<Value>(&body)
            && let Some(ws) = targets
                .iter()
                .filter(|t| t.get("type").and_then(Value::as_str) == Some("page"))
                .find_map(|t| t.get("webSocketDebuggerUrl").and_then(Value::as_str))
        {
            return ws.to_string();
        }
        assert!(Instant::now() < deadline, "chromium has no page target");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    // DevTools keeps the connection open: read the head, then Content-Length bytes.
    let mut r = BufReader::new(s);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// One DevTools connection: requests with ids, events skipped.
struct Cdp {
    ws: TcpStream,
    next_id: u64,
}

impl Cdp {
    fn connect(url: &str) -> Cdp {
        let rest = url
            .strip_prefix("ws://")
            .unwrap_or_else(|| panic!("not a ws:// address: {url}"));
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut ws = TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
        ws.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        // RFC 6455 §4.1: the key is 16 random bytes, base64; the answer must be 101.
        write!(
            ws,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: cGhvbmV0cmVlLXRlc3Qta2V5\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .expect("handshake");
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            ws.read_exact(&mut b).expect("handshake answer");
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "DevTools refused the WebSocket: {head}"
        );
        Cdp { ws, next_id: 1 }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.send(msg.as_bytes());
        loop {
            let text = self.recv();
            let v: Value = serde_json::from_slice(&text).expect("DevTools sends JSON");
            if v.get("id").and_then(Value::as_u64) != Some(id) {
                continue; // an event, or the answer to nothing we wait for
            }
            if let Some(e) = v.get("error") {
                panic!("DevTools {method} failed: {e}");
            }
            return v.get("result").cloned().unwrap_or(Value::Null);
        }
    }

    /// RFC 6455 §5.2: one final text frame; a client masks what it sends (§5.3).
    fn send(&mut self, payload: &[u8]) {
        let mask = [0x5a, 0x17, 0xc3, 0x8e];
        let mut frame = vec![0x81];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend((n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend((n as u64).to_be_bytes());
            }
        }
        frame.extend(mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.ws.write_all(&frame).expect("DevTools write");
    }

    /// One message (continuation frames joined); pings answered, close is a panic.
    fn recv(&mut self) -> Vec<u8> {
        let mut message = Vec::new();
        loop {
            let mut h = [0u8; 2];
            self.ws.read_exact(&mut h).expect("DevTools read");
            let fin = h[0] & 0x80 != 0;
            let opcode = h[0] & 0x0f;
            let masked = h[1] & 0x80 != 0;
            let len = match h[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    self.ws.read_exact(&mut b).expect("len");
                    u16::from_be_bytes(b) as usize
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.ws.read_exact(&mut b).expect("len");
                    u64::from_be_bytes(b) as usize
                }
                n => n as usize,
            };
            let mut mask = [0u8; 4];
            if masked {
                self.ws.read_exact(&mut mask).expect("mask");
            }
            let mut payload = vec![0u8; len];
            self.ws.read_exact(&mut payload).expect("payload");
            if masked {
                payload
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, b)| *b ^= mask[i % 4]);
            }
            match opcode {
                0x8 => panic!("DevTools closed the connection"),
                0x9 => continue, // ping: Chromium does not need the pong for a short test
                0xa => continue,
                _ => message.extend(payload),
            }
            if fin {
                return message;
            }
        }
    }
}

/// Standard base64 (RFC 4648 §4), as DevTools sends binary data.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&b| b == b'=').count();
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = if i >= chunk.len() - pad { 0 } else { value(c)? };
            n |= v << (18 - 6 * i);
        }
        let full = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend(&full[..3 - pad.min(2)]);
    }
    Some(out)
}
