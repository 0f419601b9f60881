//! No demo prompt makes the in-band DTMF detector hear a key (talk-off): not the speech,
//! not the `say` fragments, and above all not the hold music, which loops for minutes
//! while the caller waits in a queue and a leave key would take them out of it.
//! Each prompt goes through G.711 (both laws), as the caller's side would send it back
//! with echo, in 20 ms packets.

use phonetree::media::codec;
use phonetree::media::dtmf::InbandDetector;
use phonetree::media::types::Codec;
use std::path::{Path, PathBuf};

fn wavs(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("prompts dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            wavs(&p, out);
        } else if p.extension().is_some_and(|x| x == "wav") {
            out.push(p);
        }
    }
}

fn samples(path: &Path) -> Vec<i16> {
    let mut r = hound::WavReader::open(path).expect("wav");
    r.samples::<i16>().map(|s| s.expect("sample")).collect()
}

/// Digits the detector finds in `pcm` after a round trip through `law`.
fn heard(pcm: &[i16], law: Codec) -> Vec<String> {
    let mut bytes = Vec::new();
    codec::encode(law, pcm, &mut bytes);
    let mut back = Vec::new();
    codec::decode(law, &bytes, &mut back);
    let mut det = InbandDetector::new();
    let mut out = Vec::new();
    for chunk in back.chunks(160) {
        if let Some(d) = det.process(chunk) {
            out.push(d.to_string());
        }
        while let Some(d) = det.poll_digit() {
            out.push(d.to_string());
        }
    }
    out
}

#[test]
fn no_prompt_and_no_loop_of_hold_music_sounds_like_a_key() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("prompts/en");
    let mut files = Vec::new();
    wavs(&root, &mut files);
    files.sort();
    assert!(
        files.iter().any(|f| f.ends_with("hold-music.wav")),
        "hold-music.wav exists (prompts/generate.sh hold-music)"
    );
    let mut failures = Vec::new();
    for f in &files {
        let mut pcm = samples(f);
        if f.ends_with("hold-music.wav") {
            // Three loops back to back, as the queue plays it: the seams count too.
            let once = pcm.clone();
            pcm.extend_from_slice(&once);
            pcm.extend_from_slice(&once);
        }
        for law in [Codec::Pcmu, Codec::Pcma] {
            let digits = heard(&pcm, law);
            if !digits.is_empty() {
                failures.push(format!("{} ({law:?}): {digits:?}", f.display()));
            }
        }
    }
    assert!(failures.is_empty(), "talk-off in:\n{}", failures.join("\n"));
}

#[test]
fn the_detector_does_hear_a_key_mixed_into_the_hold_music() {
    // The test above would pass with a deaf detector: check it hears a real key here.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("prompts/en");
    let mut pcm = samples(&root.join("hold-music.wav"));
    // Key 1 (697 + 1209 Hz) for 80 ms at about -10 dBm0 per tone, 2 s in.
    let start = 16_000;
    for k in 0..640 {
        let t = k as f64 / 8000.0;
        let tone = 3000.0
            * ((std::f64::consts::TAU * 697.0 * t).sin()
                + (std::f64::consts::TAU * 1209.0 * t).sin());
        let i = start + k;
        pcm[i] = (f64::from(pcm[i]) * 0.1 + tone).clamp(-32768.0, 32767.0) as i16;
    }
    assert_eq!(heard(&pcm[..40_000], Codec::Pcmu), ["1"]);
}
