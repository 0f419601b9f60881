//! The interop harness itself, without the engine: RTP carrying known prompts
//! (encoded with a different G.711 encoder than the engine's, with sequence and
//! timestamp wrap-around) is sent over loopback, captured with tcpdump, read back,
//! decoded and matched. If this fails, the interop tests' verdicts mean nothing.

mod common;

use common::*;
use std::net::UdpSocket;
use std::time::Duration;

/// G.711 µ-law encoder (the classic truncating one; sox and the engine round differently).
fn linear_to_ulaw(sample: i16) -> u8 {
    let mut x = sample as i32;
    let sign = if x < 0 {
        x = -x;
        0x80
    } else {
        0
    };
    x = (x + 0x84).min(32767);
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && x & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (x >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) | mantissa) as u8
}

struct Sender {
    sock: UdpSocket,
    to: std::net::SocketAddr,
    seq: u16,
    ts: u32,
}

impl Sender {
    fn frame(&mut self, samples: &[i16], marker: bool) {
        let mut p = vec![0x80, if marker { 0x80 } else { 0 }];
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&self.ts.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend((0..FRAME).map(|i| linear_to_ulaw(samples.get(i).copied().unwrap_or(0))));
        self.sock.send_to(&p, self.to).expect("send");
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(FRAME as u32);
        std::thread::sleep(Duration::from_micros(200));
    }

    fn silence(&mut self, frames: usize) {
        for _ in 0..frames {
            self.frame(&[], false);
        }
    }

    /// The first `frames` frames of a prompt (all when None), marker on the first.
    fn prompt(&mut self, name: &str, frames: Option<usize>) {
        let p = load_prompt(name);
        let n = frames.unwrap_or(p.len().div_ceil(FRAME));
        for i in 0..n {
            let end = ((i + 1) * FRAME).min(p.len());
            self.frame(&p[i * FRAME..end], i == 0);
        }
    }
}

#[test]
fn harness_recognises_prompts_in_rtp() {
    self_check();
    let scratch = Scratch::new("harness");
    let ports = free_port_block(10);
    let capture = Capture::start(ports, &scratch);
    let sink = UdpSocket::bind("127.0.0.1:0").expect("bind sink");
    let mut tx = Sender {
        sock: UdpSocket::bind(("127.0.0.1", ports.0)).expect("bind sender"),
        to: sink.local_addr().expect("addr"),
        seq: 65530,
        ts: u32::MAX - 5000,
    };
    tx.silence(10);
    tx.prompt("welcome", None);
    tx.silence(3);
    tx.prompt("main-menu", Some(60)); // barge-in after 1.2 s
    tx.prompt("hours", None);
    tx.silence(5);
    let packets = capture.stop();

    let (stream, heard) = engine_audio(&packets, ports);
    let found = assert_heard_in_order(
        &heard,
        &[
            ("welcome", Need::Complete),
            ("main-menu", Need::AtLeast(Duration::from_millis(300))),
            ("hours", Need::Complete),
        ],
    );
    assert_eq!(found[0].start_frame, 10);
    assert!(!found[1].complete());
    assert_eq!(found[1].frames_matched, 60, "{}", found[1]);
    assert!(found[2].complete());
    assert_markers(&stream, &found);

    // The transcript names exactly these three, although "goodbye" starts with the same
    // words as "welcome" ("Thank you for calling").
    let t = transcript(&heard);
    let names: Vec<&str> = t.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        ["welcome", "main-menu", "hours"],
        "transcript:\n{}",
        describe(&t)
    );

    // Unrelated audio does not match, and a prompt needs its full length for `Complete`.
    let hours = load_prompt("hours");
    assert!(find_prompt("hours", &load_prompt("welcome"), &hours, 0, 15).is_none());
    assert!(find_prompt("main-menu", &heard, &load_prompt("main-menu"), 0, 61).is_none());

    // Sequence numbers and timestamps wrapped, yet the stream is seen as gapless.
    let problems: Vec<String> = stream
        .pacing_problems()
        .into_iter()
        .filter(|p| !p.contains("between packets"))
        .collect();
    assert!(problems.is_empty(), "{problems:?}");
}
