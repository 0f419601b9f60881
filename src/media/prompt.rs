//! Prompts: WAV files loaded once, encoded once into both G.711 laws, shared by every call.
//!
//! - Owns: the loaded [`PromptSet`] (PCM plus µ-law and A-law bytes per prompt, padded to
//!   whole 20 ms frames) and the name → [`PromptId`] index.
//! - Takes: a prompt directory (`prompts/**/*.wav`, 8 kHz mono 16-bit integer PCM), or PCM
//!   in memory for tests.
//! - Gives: ids by name, borrowed frames per codec for the player, and *all* load errors at
//!   once, each naming the file and what is wrong with it.
//! - Never: copies audio per call, re-encodes per packet, or panics on a bad file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::media::codec;
use crate::media::types::{Codec, PTIME_MS, PromptId, SAMPLES_PER_FRAME};

/// The only sample rate we play (G.711 is 8 kHz).
pub const SAMPLE_RATE: u32 = 8000;
/// How deep `load_dir` descends (guards against symlink loops).
const MAX_DEPTH: usize = 16;
const SOX_HINT: &str = "convert with: sox in.wav -r 8000 -c 1 -b 16 -e signed-integer out.wav";

/// One prompt, padded with silence to a whole number of 160-sample frames.
#[derive(Debug)]
pub struct Prompt {
    name: String,
    pcm: Box<[i16]>,
    pcmu: Box<[u8]>,
    pcma: Box<[u8]>,
}

impl Prompt {
    /// Builds a prompt from PCM at 8 kHz, padding the last frame with silence.
    pub fn from_pcm(name: impl Into<String>, mut pcm: Vec<i16>) -> Prompt {
        let rem = pcm.len() % SAMPLES_PER_FRAME;
        if rem != 0 {
            pcm.resize(pcm.len() + SAMPLES_PER_FRAME - rem, 0);
        }
        let mut pcmu = Vec::with_capacity(pcm.len());
        codec::encode(Codec::Pcmu, &pcm, &mut pcmu);
        let mut pcma = Vec::with_capacity(pcm.len());
        codec::encode(Codec::Pcma, &pcm, &mut pcma);
        Prompt {
            name: name.into(),
            pcm: pcm.into_boxed_slice(),
            pcmu: pcmu.into_boxed_slice(),
            pcma: pcma.into_boxed_slice(),
        }
    }

    /// Name relative to the prompt directory, `/`-separated, without `.wav` (`en/welcome`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Linear PCM (padded to whole frames).
    pub fn pcm(&self) -> &[i16] {
        &self.pcm
    }

    /// All encoded bytes for `codec`; the length is a multiple of 160.
    pub fn encoded(&self, codec: Codec) -> &[u8] {
        match codec {
            Codec::Pcmu => &self.pcmu,
            Codec::Pcma => &self.pcma,
        }
    }

    /// The encoded 20 ms frames for `codec`, 160 bytes each.
    pub fn frames(&self, codec: Codec) -> std::slice::ChunksExact<'_, u8> {
        self.encoded(codec).chunks_exact(SAMPLES_PER_FRAME)
    }

    /// Frame `index` (160 bytes), or `None` past the end.
    pub fn frame(&self, codec: Codec, index: usize) -> Option<&[u8]> {
        let start = index.checked_mul(SAMPLES_PER_FRAME)?;
        let end = start.checked_add(SAMPLES_PER_FRAME)?;
        self.encoded(codec).get(start..end)
    }

    /// Number of 20 ms frames.
    pub fn frame_count(&self) -> usize {
        self.pcm.len() / SAMPLES_PER_FRAME
    }

    /// Playing time (whole frames, so a multiple of 20 ms).
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.frame_count() as u64 * PTIME_MS)
    }
}

/// What is wrong with one prompt file (or the directory).
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a usable WAV file: {reason}", path.display())]
    Wav { path: PathBuf, reason: String },
    #[error("{}: is {found}; need 8000 Hz, mono, 16-bit integer PCM ({SOX_HINT})", path.display())]
    Format { path: PathBuf, found: String },
    #[error("{}: contains no audio", path.display())]
    Empty { path: PathBuf },
    #[error("{}: file name is not valid UTF-8", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("{}: prompt name `{name}` is already used by {}", path.display(), first.display())]
    Duplicate {
        name: String,
        path: PathBuf,
        first: PathBuf,
    },
    #[error("{}: directories nested deeper than {MAX_DEPTH} levels (symlink loop?)", path.display())]
    TooDeep { path: PathBuf },
}

impl PromptError {
    /// The file or directory the error is about.
    pub fn path(&self) -> &Path {
        match self {
            PromptError::Io { path, .. }
            | PromptError::Wav { path, .. }
            | PromptError::Format { path, .. }
            | PromptError::Empty { path }
            | PromptError::NotUtf8 { path }
            | PromptError::Duplicate { path, .. }
            | PromptError::TooDeep { path } => path,
        }
    }
}

/// All prompts of a deployment, immutable once loaded; share it behind an `Arc`.
#[derive(Debug, Default)]
pub struct PromptSet {
    prompts: Vec<Prompt>,
    by_name: BTreeMap<String, PromptId>,
}

impl PromptSet {
    /// Loads every `*.wav` (any case of the extension) under `dir`, recursively; other
    /// files are ignored. Ids are assigned in name order, so they are stable for a given
    /// directory. Returns every problem found, not only the first.
    pub fn load_dir(dir: &Path) -> Result<PromptSet, Vec<PromptError>> {
        let mut files = Vec::new();
        let mut errors = Vec::new();
        walk(dir, dir, 0, &mut files, &mut errors);
        files.sort();

        let mut loaded: Vec<(String, PathBuf, Vec<i16>)> = Vec::new();
        let mut first_path: BTreeMap<String, PathBuf> = BTreeMap::new();
        for (name, path) in files {
            if let Some(first) = first_path.get(&name) {
                errors.push(PromptError::Duplicate {
                    name,
                    path,
                    first: first.clone(),
                });
                continue;
            }
            first_path.insert(name.clone(), path.clone());
            match read_wav(&path) {
                Ok(pcm) => loaded.push((name, path, pcm)),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(PromptSet::from_prompts(
            loaded.into_iter().map(|(n, _, pcm)| (n, pcm)).collect(),
        ))
    }

    /// Builds a set from PCM already at 8 kHz (tests, generated audio). Ids follow name
    /// order; a repeated name keeps the last PCM given.
    pub fn from_prompts(prompts: Vec<(String, Vec<i16>)>) -> PromptSet {
        let mut sorted: BTreeMap<String, Vec<i16>> = BTreeMap::new();
        for (name, pcm) in prompts {
            sorted.insert(name, pcm);
        }
        let mut set = PromptSet::default();
        for (i, (name, pcm)) in sorted.into_iter().enumerate() {
            let id = PromptId(u32::try_from(i).unwrap_or(u32::MAX));
            set.by_name.insert(name.clone(), id);
            set.prompts.push(Prompt::from_pcm(name, pcm));
        }
        set
    }

    pub fn lookup(&self, name: &str) -> Option<PromptId> {
        self.by_name.get(name).copied()
    }

    /// The prompt for `id`; `None` for an id from another set.
    pub fn get(&self, id: PromptId) -> Option<&Prompt> {
        self.prompts.get(usize::try_from(id.0).ok()?)
    }

    /// Prompt names in id order (which is name order).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.prompts.iter().map(|p| p.name.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (PromptId, &Prompt)> {
        self.by_name
            .values()
            .filter_map(|&id| Some((id, self.get(id)?)))
    }

    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }
}

fn walk(
    root: &Path,
    dir: &Path,
    depth: usize,
    files: &mut Vec<(String, PathBuf)>,
    errors: &mut Vec<PromptError>,
) {
    if depth > MAX_DEPTH {
        errors.push(PromptError::TooDeep {
            path: dir.to_path_buf(),
        });
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(source) => {
            errors.push(PromptError::Io {
                path: dir.to_path_buf(),
                source,
            });
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(source) => {
                errors.push(PromptError::Io {
                    path: dir.to_path_buf(),
                    source,
                });
                continue;
            }
        };
        let path = entry.path();
        // `metadata` follows symlinks, so linked files and directories are loaded too.
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(source) => {
                errors.push(PromptError::Io { path, source });
                continue;
            }
        };
        if meta.is_dir() {
            walk(root, &path, depth + 1, files, errors);
            continue;
        }
        let is_wav = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("wav"));
        if !meta.is_file() || !is_wav {
            continue;
        }
        match prompt_name(root, &path) {
            Some(name) => files.push((name, path)),
            None => errors.push(PromptError::NotUtf8 { path }),
        }
    }
}

/// `root/en/welcome.wav` → `en/welcome`.
fn prompt_name(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?.with_extension("");
    let mut parts = Vec::new();
    for c in rel.components() {
        parts.push(c.as_os_str().to_str()?);
    }
    Some(parts.join("/"))
}

fn read_wav(path: &Path) -> Result<Vec<i16>, PromptError> {
    let mut reader = hound::WavReader::open(path).map_err(|e| wav_error(path, e))?;
    let spec = reader.spec();
    let rate_ok = spec.sample_rate == SAMPLE_RATE;
    let mono = spec.channels == 1;
    let int16 = spec.bits_per_sample == 16 && spec.sample_format == hound::SampleFormat::Int;
    if !(rate_ok && mono && int16) {
        let kind = match spec.sample_format {
            hound::SampleFormat::Int => "integer",
            hound::SampleFormat::Float => "float",
        };
        let mut wrong = Vec::new();
        if !rate_ok {
            wrong.push(format!("{} Hz", spec.sample_rate));
        }
        if !mono {
            wrong.push(format!("{} channels", spec.channels));
        }
        if !int16 {
            wrong.push(format!("{}-bit {kind}", spec.bits_per_sample));
        }
        return Err(PromptError::Format {
            path: path.to_path_buf(),
            found: wrong.join(", "),
        });
    }
    let promised = reader.len();
    let mut pcm = Vec::with_capacity(promised as usize);
    for s in reader.samples::<i16>() {
        match s {
            Ok(s) => pcm.push(s),
            // hound reports a short data chunk as `Other` ("Failed to read enough bytes").
            Err(hound::Error::IoError(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Other | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                return Err(PromptError::Wav {
                    path: path.to_path_buf(),
                    reason: format!(
                        "file is truncated: header promises {promised} samples, only {} present",
                        pcm.len()
                    ),
                });
            }
            Err(e) => return Err(wav_error(path, e)),
        }
    }
    if pcm.is_empty() {
        return Err(PromptError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(pcm)
}

fn wav_error(path: &Path, e: hound::Error) -> PromptError {
    let path = path.to_path_buf();
    match e {
        hound::Error::IoError(source) if source.kind() == std::io::ErrorKind::UnexpectedEof => {
            PromptError::Wav {
                path,
                reason: "file is truncated (header incomplete)".into(),
            }
        }
        hound::Error::IoError(source) => PromptError::Io { path, source },
        hound::Error::Unsupported => PromptError::Wav {
            path,
            reason: format!(
                "unsupported WAV encoding (µ-law, A-law, ADPCM, ...); need 16-bit integer PCM \
                 ({SOX_HINT})"
            ),
        },
        other => PromptError::Wav {
            path,
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "phonetree-prompt-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn write_wav(path: &Path, rate: u32, channels: u16, bits: u16, samples: usize) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..samples * channels as usize {
            let v = ((i as f64 * 0.3).sin() * 8000.0) as i32;
            if bits == 8 {
                w.write_sample((v >> 8) as i8).unwrap();
            } else {
                w.write_sample(v as i16).unwrap();
            }
        }
        w.finalize().unwrap();
    }

    fn write_float_wav(path: &Path) {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        w.write_sample(0.5f32).unwrap();
        w.finalize().unwrap();
    }

    #[test]
    fn frames_are_padded_with_silence() {
        let p = Prompt::from_pcm("x", vec![1000; 161]);
        assert_eq!(p.frame_count(), 2);
        assert_eq!(p.pcm().len(), 320);
        assert_eq!(p.duration(), Duration::from_millis(40));
        for c in [Codec::Pcmu, Codec::Pcma] {
            assert_eq!(p.encoded(c).len(), 320);
            assert_eq!(p.frames(c).count(), 2);
            let last = p.frame(c, 1).unwrap();
            assert_ne!(last[0], codec::silence(c));
            assert!(last[1..].iter().all(|&b| b == codec::silence(c)));
            assert!(p.frame(c, 2).is_none());
            assert!(p.frame(c, usize::MAX).is_none());
            assert!(p.frame(c, usize::MAX / SAMPLES_PER_FRAME).is_none());
        }
        let exact = Prompt::from_pcm("y", vec![0; 320]);
        assert_eq!(exact.frame_count(), 2);
        assert_eq!(Prompt::from_pcm("z", vec![]).frame_count(), 0);
    }

    #[test]
    fn encoded_once_into_both_laws() {
        let pcm: Vec<i16> = (0..160).map(|i| (i * 100) as i16).collect();
        let p = Prompt::from_pcm("x", pcm.clone());
        let mut u = Vec::new();
        codec::encode(Codec::Pcmu, &pcm, &mut u);
        let mut a = Vec::new();
        codec::encode(Codec::Pcma, &pcm, &mut a);
        assert_eq!(p.encoded(Codec::Pcmu), &u[..]);
        assert_eq!(p.encoded(Codec::Pcma), &a[..]);
    }

    #[test]
    fn from_prompts_lookup_get_names() {
        let set = PromptSet::from_prompts(vec![
            ("en/welcome".into(), vec![0; 800]),
            ("en/goodbye".into(), vec![0; 100]),
        ]);
        assert_eq!(set.len(), 2);
        assert!(!set.is_empty());
        assert_eq!(
            set.names().collect::<Vec<_>>(),
            ["en/goodbye", "en/welcome"]
        );
        let w = set.lookup("en/welcome").unwrap();
        assert_eq!(set.get(w).unwrap().name(), "en/welcome");
        assert_eq!(set.get(w).unwrap().frame_count(), 5);
        assert!(set.lookup("welcome").is_none());
        assert!(set.get(PromptId(7)).is_none());
        assert_eq!(set.iter().count(), 2);
    }

    #[test]
    fn load_dir_recurses_and_names_by_relative_path() {
        let d = TempDir::new();
        write_wav(&d.0.join("en/welcome.wav"), 8000, 1, 16, 1000);
        write_wav(&d.0.join("en/menu/main.WAV"), 8000, 1, 16, 160);
        write_wav(&d.0.join("beep.wav"), 8000, 1, 16, 10);
        std::fs::write(d.0.join("generate.sh"), "#!/bin/sh\n").unwrap();
        std::fs::write(d.0.join("en/README"), "x").unwrap();
        let set = PromptSet::load_dir(&d.0).unwrap();
        assert_eq!(
            set.names().collect::<Vec<_>>(),
            ["beep", "en/menu/main", "en/welcome"]
        );
        let w = set.get(set.lookup("en/welcome").unwrap()).unwrap();
        assert_eq!(w.frame_count(), 7); // 1000 samples → 6.25 frames → 7
        let expected: Vec<i16> = (0..3)
            .map(|i| ((i as f64 * 0.3).sin() * 8000.0) as i16)
            .collect();
        assert_eq!(w.pcm()[..3], expected[..]); // what write_wav wrote
    }

    #[test]
    fn load_dir_collects_every_error_with_file_and_reason() {
        let d = TempDir::new();
        write_wav(&d.0.join("ok.wav"), 8000, 1, 16, 160);
        write_wav(&d.0.join("hifi.wav"), 44100, 2, 16, 160);
        write_wav(&d.0.join("sub/wideband.wav"), 16000, 1, 16, 160);
        write_wav(&d.0.join("eight-bit.wav"), 8000, 1, 8, 160);
        write_float_wav(&d.0.join("float.wav"));
        write_wav(&d.0.join("empty.wav"), 8000, 1, 16, 0);
        std::fs::write(d.0.join("text.wav"), "not a wav").unwrap();
        // A µ-law WAV (format tag 7), which hound does not read.
        let mut ulaw = Vec::new();
        ulaw.extend_from_slice(b"RIFF");
        ulaw.extend_from_slice(&(4u32 + 8 + 16 + 8 + 2).to_le_bytes());
        ulaw.extend_from_slice(b"WAVEfmt ");
        ulaw.extend_from_slice(&16u32.to_le_bytes());
        ulaw.extend_from_slice(&7u16.to_le_bytes()); // WAVE_FORMAT_MULAW
        ulaw.extend_from_slice(&1u16.to_le_bytes());
        ulaw.extend_from_slice(&8000u32.to_le_bytes());
        ulaw.extend_from_slice(&8000u32.to_le_bytes());
        ulaw.extend_from_slice(&1u16.to_le_bytes());
        ulaw.extend_from_slice(&8u16.to_le_bytes());
        ulaw.extend_from_slice(b"data");
        ulaw.extend_from_slice(&2u32.to_le_bytes());
        ulaw.extend_from_slice(&[0xFF, 0xFF]);
        std::fs::write(d.0.join("ulaw.wav"), &ulaw).unwrap();
        // Truncated: header promises more data than there is.
        write_wav(&d.0.join("cut.wav"), 8000, 1, 16, 1000);
        let cut = std::fs::read(d.0.join("cut.wav")).unwrap();
        std::fs::write(d.0.join("cut.wav"), &cut[..cut.len() - 500]).unwrap();

        let errs = PromptSet::load_dir(&d.0).unwrap_err();
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        let find = |file: &str| {
            msgs.iter()
                .find(|m| m.contains(file))
                .unwrap_or_else(|| panic!("no error for {file}: {msgs:#?}"))
                .clone()
        };
        assert_eq!(errs.len(), 8, "{msgs:#?}");
        let m = find("hifi.wav");
        assert!(m.contains("44100 Hz") && m.contains("2 channels"), "{m}");
        assert!(m.contains("need 8000 Hz, mono, 16-bit integer PCM"), "{m}");
        assert!(find("wideband.wav").contains("16000 Hz"));
        assert!(find("eight-bit.wav").contains("8-bit integer"));
        assert!(find("float.wav").contains("32-bit float"));
        assert!(find("empty.wav").contains("contains no audio"));
        assert!(find("text.wav").contains("not a usable WAV file"));
        assert!(find("ulaw.wav").contains("unsupported WAV encoding"));
        assert!(find("cut.wav").contains("truncated"), "{}", find("cut.wav"));
        assert!(!msgs.iter().any(|m| m.contains("ok.wav")));
    }

    #[test]
    fn missing_directory_and_duplicate_names_are_errors() {
        let d = TempDir::new();
        let errs = PromptSet::load_dir(&d.0.join("nope")).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].to_string().contains("nope: cannot read"),
            "{}",
            errs[0]
        );

        write_wav(&d.0.join("a.wav"), 8000, 1, 16, 160);
        write_wav(&d.0.join("a.WAV"), 8000, 1, 16, 160);
        match PromptSet::load_dir(&d.0) {
            // Case-insensitive file systems hold only one of the two.
            Ok(set) => assert_eq!(set.len(), 1),
            Err(errs) => {
                assert_eq!(errs.len(), 1);
                assert!(
                    errs[0].to_string().contains("`a` is already used"),
                    "{}",
                    errs[0]
                );
            }
        }
    }

    #[test]
    fn the_project_prompts_load() {
        // The repository's own prompts, when this file sits in the main crate.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
        if !dir.is_dir() {
            return;
        }
        let set = PromptSet::load_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "{}",
                e.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        assert!(!set.is_empty());
        assert!(set.lookup("en/goodbye").is_some());
    }
}
