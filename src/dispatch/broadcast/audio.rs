//! Broadcast audio: an alert tone, then the script spoken by espeak-ng (Mandarin voice `cmn`),
//! as a 16-bit mono WAV, cached by content.
//!
//! The tone is the attention signal loudspeaker broadcasts open with: two alternating tones
//! (960 and 770 Hz, half a second each) for three seconds, then half a second of silence. The
//! speech comes from the `espeak-ng` program (Debian `espeak-ng`; called as a process with the
//! text on standard input, so no shell and no quoting). The file is named by the SHA-256 of
//! everything that shaped it (format version, voice, speed, script): the same warning text is
//! synthesised once, and a digest identifies the audio wherever it is sent.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// How to speak.
#[derive(Debug, Clone)]
pub struct Synth {
    /// The espeak-ng program.
    pub program: PathBuf,
    /// Voice (`cmn` Mandarin, `en` English).
    pub voice: String,
    /// Words per minute.
    pub speed: u32,
    /// Where audio files are kept.
    pub cache: PathBuf,
    /// The ffmpeg program, for MP3 (platforms and IP speakers take MP3, not WAV).
    pub encoder: PathBuf,
}

/// A rendered broadcast.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// The WAV file.
    pub path: PathBuf,
    /// SHA-256 (hex) of the file's bytes.
    pub sha256: String,
    /// SHA-1 (hex) of the file's bytes: CAP 1.2's `<resource><digest>` (the standard names
    /// SHA-1), so a CAP reader can check the audio it fetched.
    pub sha1: String,
    /// Size in bytes (CAP `<size>`).
    pub size: u64,
    /// Length of the audio.
    pub duration: Duration,
    /// Sample rate (Hz).
    pub sample_rate: u32,
    /// Whether it came from the cache.
    pub cached: bool,
}

/// Why audio could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// espeak-ng is missing or failed.
    #[error("espeak-ng ({program}): {why}")]
    Speech {
        /// The program.
        program: String,
        /// What happened.
        why: String,
    },
    /// ffmpeg is missing or failed.
    #[error("ffmpeg ({program}): {why}")]
    Encode {
        /// The program.
        program: String,
        /// What happened.
        why: String,
    },
    /// Reading or writing a WAV.
    #[error("audio file {path}: {why}")]
    File {
        /// Which file.
        path: String,
        /// What happened.
        why: String,
    },
}

/// A name part no other writer in this machine uses at the same time: process id and a
/// per-process counter. Two channels rendering the same script at once (the platform and the
/// Icecast route do) must not write into one temporary file.
fn unique() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Silence after the speech in an MP3 (see [`Synth::mp3`]).
pub const MP3_TAIL: Duration = Duration::from_millis(1500);

/// Bump when the layout of the audio changes (tone, gaps, format): old cache entries then
/// stop matching.
const FORMAT: &str = "stormbell-broadcast-v1";

impl Synth {
    /// Mandarin at a calm pace, cached under `cache`.
    pub fn mandarin(cache: impl Into<PathBuf>) -> Synth {
        Synth {
            program: PathBuf::from("espeak-ng"),
            voice: "cmn".into(),
            speed: 150,
            cache: cache.into(),
            encoder: PathBuf::from("ffmpeg"),
        }
    }

    /// Check at start-up that the programs exist, naming the Debian package when one does not:
    /// a missing voice must stop the daemon before the storm, not fail the first warning.
    pub fn check(&self, mp3: bool) -> Result<(), AudioError> {
        let run = |program: &Path, args: &[&str], package: &str| match Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!(
                "`{} {}` exited with {s}",
                program.display(),
                args.join(" ")
            )),
            Err(e) => Err(format!(
                "cannot start it: {e} (install the Debian package {package})"
            )),
        };
        run(&self.program, &["--version"], "espeak-ng").map_err(|why| AudioError::Speech {
            program: self.program.display().to_string(),
            why,
        })?;
        if mp3 {
            run(&self.encoder, &["-hide_banner", "-version"], "ffmpeg").map_err(|why| {
                AudioError::Encode {
                    program: self.encoder.display().to_string(),
                    why,
                }
            })?;
        }
        Ok(())
    }

    /// The MP3 of a rendered WAV at `kbps` (mono, constant bit rate, no ID3 or Xing header, so
    /// a stream can start anywhere), encoded by ffmpeg with LAME and cached by the WAV's digest.
    /// It ends in [`MP3_TAIL`] of silence: a streaming server holds back its last partial
    /// buffer when the source leaves (Icecast drops up to 4 KB), and that must be quiet, not
    /// the end of the last word.
    pub fn mp3(&self, wav: &Audio, kbps: u32) -> Result<Audio, AudioError> {
        let file = |path: &Path, why: String| AudioError::File {
            path: path.display().to_string(),
            why,
        };
        let path = self.cache.join(format!("{}-{kbps}k.mp3", wav.sha256));
        if path.is_file() {
            return describe_mp3(&path, wav, true);
        }
        let tmp = self
            .cache
            .join(format!(".{}-{kbps}k.{}.tmp", wav.sha256, unique()));
        let err = |why: String| AudioError::Encode {
            program: self.encoder.display().to_string(),
            why,
        };
        let out = Command::new(&self.encoder)
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i"])
            .arg(&wav.path)
            .args(["-ac", "1", "-af"])
            .arg(format!("apad=pad_dur={}", MP3_TAIL.as_secs_f64()))
            .args(["-c:a", "libmp3lame", "-b:a"])
            .arg(format!("{kbps}k"))
            .args([
                "-map_metadata",
                "-1",
                "-id3v2_version",
                "0",
                "-write_xing",
                "0",
                "-f",
                "mp3",
            ])
            .arg(&tmp)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| err(format!("cannot start it: {e} (Debian package ffmpeg)")))?;
        if !out.status.success() {
            let _ = std::fs::remove_file(&tmp);
            return Err(err(format!(
                "exit {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        std::fs::rename(&tmp, &path).map_err(|e| file(&path, e.to_string()))?;
        describe_mp3(&path, wav, false)
    }

    /// The file a script would be cached in.
    pub fn key(&self, script: &str) -> String {
        let mut h = Sha256::new();
        for part in [FORMAT, &self.voice, &self.speed.to_string(), script] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())
    }

    /// The audio for a script: from the cache, or synthesised and cached.
    pub fn render(&self, script: &str) -> Result<Audio, AudioError> {
        let file = |path: &Path, why: String| AudioError::File {
            path: path.display().to_string(),
            why,
        };
        std::fs::create_dir_all(&self.cache).map_err(|e| file(&self.cache, e.to_string()))?;
        let (said, unsaid) = speakable(script);
        if !unsaid.is_empty() {
            tracing::warn!(
                "the voice cannot say {:?} in the broadcast script; left out of the audio (the SMS keeps them): {script}",
                unsaid.iter().collect::<String>()
            );
        }
        let script = said.as_str();
        let path = self.cache.join(format!("{}.wav", self.key(script)));
        if path.is_file() {
            return describe(&path, true);
        }
        let speech = self.speak(script)?;
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: speech.0,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let tmp = self
            .cache
            .join(format!(".{}.{}.tmp", self.key(script), unique()));
        {
            let mut w =
                hound::WavWriter::create(&tmp, spec).map_err(|e| file(&tmp, e.to_string()))?;
            for s in tone(speech.0).into_iter().chain(speech.1) {
                w.write_sample(s).map_err(|e| file(&tmp, e.to_string()))?;
            }
            w.finalize().map_err(|e| file(&tmp, e.to_string()))?;
        }
        // Whole or not at all: a player never sees a half-written file.
        std::fs::rename(&tmp, &path).map_err(|e| file(&path, e.to_string()))?;
        describe(&path, false)
    }

    /// Run espeak-ng: (sample rate, mono 16-bit samples).
    fn speak(&self, script: &str) -> Result<(u32, Vec<i16>), AudioError> {
        let err = |why: String| AudioError::Speech {
            program: self.program.display().to_string(),
            why,
        };
        let mut child = Command::new(&self.program)
            .args([
                "-v",
                &self.voice,
                "-s",
                &self.speed.to_string(),
                "--stdout",
                "--stdin",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| err(format!("cannot start it: {e} (Debian package espeak-ng)")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| err(format!("writing the script: {e}")))?;
        }
        let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
        if !out.status.success() {
            return Err(err(format!(
                "exit {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        // espeak-ng writes a WAV whose header claims an unknown length when streaming: read
        // the format from the header and take every sample that follows its data chunk.
        let (rate, samples) = wav_samples(&out.stdout).ok_or_else(|| {
            err(format!(
                "its output is not the 16-bit mono WAV expected ({} bytes)",
                out.stdout.len()
            ))
        })?;
        if samples.is_empty() {
            return Err(err("it produced no speech".into()));
        }
        Ok((rate, samples))
    }
}

/// What the Mandarin voice can say of a script, and the characters it cannot (emoji, symbols,
/// private-use and rare ideographs outside the basic and extension-A blocks, control
/// characters). Those are left out of the audio rather than read as noise or a code point's
/// name; the caller says which they were.
pub fn speakable(script: &str) -> (String, Vec<char>) {
    let mut said = String::with_capacity(script.len());
    let mut unsaid = Vec::new();
    for c in script.chars() {
        let ok = matches!(c,
            '\u{4E00}'..='\u{9FFF}'      // CJK unified ideographs
            | '\u{3400}'..='\u{4DBF}'    // extension A
            | '\u{3000}'..='\u{303F}'    // CJK punctuation
            | '\u{FF01}'..='\u{FF5E}'    // full-width forms
            | '\u{2014}' | '\u{2026}' | '\u{201C}' | '\u{201D}' | '\u{00B7}'
            | ' ' | '\n')
            || c.is_ascii_alphanumeric()
            || (c.is_ascii_punctuation()
                && !matches!(
                    c,
                    '<' | '>' | '{' | '}' | '\\' | '^' | '`' | '|' | '~' | '#' | '@' | '*' | '_'
                ));
        if ok {
            said.push(c);
        } else {
            if !unsaid.contains(&c) {
                unsaid.push(c);
            }
            // Keep the pause a dropped symbol stood for.
            if !said.ends_with(' ') {
                said.push(' ');
            }
        }
    }
    (said, unsaid)
}

/// Sample rate and samples of a 16-bit mono PCM WAV, tolerating a streamed header (chunk sizes
/// of 0 or 0xFFFFFFFF).
pub(crate) fn wav_samples(b: &[u8]) -> Option<(u32, Vec<i16>)> {
    if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        return None;
    }
    let mut at = 12;
    let mut rate = None;
    while at + 8 <= b.len() {
        let id = &b[at..at + 4];
        let size = u32::from_le_bytes([b[at + 4], b[at + 5], b[at + 6], b[at + 7]]) as usize;
        let body = at + 8;
        if id == b"fmt " {
            let f = b.get(body..body + 16)?;
            let (format, channels) = (
                u16::from_le_bytes([f[0], f[1]]),
                u16::from_le_bytes([f[2], f[3]]),
            );
            let bits = u16::from_le_bytes([f[14], f[15]]);
            if format != 1 || channels != 1 || bits != 16 {
                return None;
            }
            rate = Some(u32::from_le_bytes([f[4], f[5], f[6], f[7]]));
        } else if id == b"data" {
            let end = if size == 0 || size == 0xFFFF_FFFF || body + size > b.len() {
                b.len()
            } else {
                body + size
            };
            let samples = b[body..end]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return Some((rate?, samples));
        }
        at = body.checked_add(size + (size & 1))?;
    }
    None
}

/// The attention signal: 960/770 Hz alternating every half second for 3 s, then 0.5 s quiet.
fn tone(rate: u32) -> Vec<i16> {
    let mut out = Vec::with_capacity(rate as usize * 7 / 2);
    let half = rate as usize / 2;
    for k in 0..6 {
        let f = if k % 2 == 0 { 960.0 } else { 770.0 };
        for i in 0..half {
            let t = i as f64 / f64::from(rate);
            // Short fades at each edge: no click.
            let edge = (i.min(half - i) as f64 / (f64::from(rate) * 0.01)).min(1.0);
            out.push((0.5 * edge * (2.0 * std::f64::consts::PI * f * t).sin() * 32767.0) as i16);
        }
    }
    out.extend(std::iter::repeat_n(0, half));
    out
}

fn describe(path: &Path, cached: bool) -> Result<Audio, AudioError> {
    let file = |why: String| AudioError::File {
        path: path.display().to_string(),
        why,
    };
    let bytes = std::fs::read(path).map_err(|e| file(e.to_string()))?;
    let r = hound::WavReader::new(std::io::Cursor::new(&bytes)).map_err(|e| file(e.to_string()))?;
    let spec = r.spec();
    let duration = Duration::from_secs_f64(f64::from(r.duration()) / f64::from(spec.sample_rate));
    Ok(Audio {
        path: path.to_path_buf(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        sha1: hex::encode(sha1::Sha1::digest(&bytes)),
        size: bytes.len() as u64,
        duration,
        sample_rate: spec.sample_rate,
        cached,
    })
}

/// An MP3's description: digests and size of its bytes, length and rate of the WAV it encodes.
fn describe_mp3(path: &Path, wav: &Audio, cached: bool) -> Result<Audio, AudioError> {
    let bytes = std::fs::read(path).map_err(|e| AudioError::File {
        path: path.display().to_string(),
        why: e.to_string(),
    })?;
    Ok(Audio {
        path: path.to_path_buf(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        sha1: hex::encode(sha1::Sha1::digest(&bytes)),
        size: bytes.len() as u64,
        duration: wav.duration + MP3_TAIL,
        sample_rate: wav.sample_rate,
        cached,
    })
}

/// Root-mean-square level (0–1) of a stretch of a WAV file, for checks that it is not
/// silence.
pub fn rms(path: &Path, from: Duration, to: Duration) -> Result<f64, AudioError> {
    let file = |why: String| AudioError::File {
        path: path.display().to_string(),
        why,
    };
    let mut r = hound::WavReader::open(path).map_err(|e| file(e.to_string()))?;
    let rate = f64::from(r.spec().sample_rate);
    let (a, b) = (
        (from.as_secs_f64() * rate) as usize,
        (to.as_secs_f64() * rate) as usize,
    );
    let mut sum = 0.0;
    let mut n = 0usize;
    for (i, s) in r.samples::<i16>().enumerate() {
        if i < a {
            continue;
        }
        if i >= b {
            break;
        }
        let x = f64::from(s.map_err(|e| file(e.to_string()))?) / 32768.0;
        sum += x * x;
        n += 1;
    }
    Ok(if n == 0 { 0.0 } else { (sum / n as f64).sqrt() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_wav_headers_are_read() {
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF\xff\xff\xff\xffWAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&22050u32.to_le_bytes());
        b.extend_from_slice(&44100u32.to_le_bytes());
        b.extend_from_slice(&2u16.to_le_bytes());
        b.extend_from_slice(&16u16.to_le_bytes());
        b.extend_from_slice(b"data\xff\xff\xff\xff");
        b.extend_from_slice(&[1, 0, 2, 0, 3]);
        assert_eq!(wav_samples(&b), Some((22050, vec![1, 2])));
        // Stereo or 8-bit is refused, not misread.
        let mut stereo = b.clone();
        stereo[22] = 2;
        assert_eq!(wav_samples(&stereo), None);
        assert_eq!(wav_samples(b"RIFF"), None);
    }

    #[test]
    fn what_the_voice_cannot_say_is_named_and_left_out() {
        let (said, unsaid) = speakable("上坞村🌊请立即转移！\u{E000}𡌶村 3号");
        assert_eq!(unsaid, vec!['🌊', '\u{E000}', '𡌶']);
        assert_eq!(said, "上坞村 请立即转移！ 村 3号");
        let (said, unsaid) = speakable("山洪灾害红色预警，请到溪口镇中心小学避险。");
        assert!(unsaid.is_empty());
        assert_eq!(said, "山洪灾害红色预警，请到溪口镇中心小学避险。");
    }

    #[test]
    fn the_tone_alternates_and_ends_in_quiet() {
        let t = tone(8000);
        assert_eq!(t.len(), 8000 * 3 + 4000);
        assert!(t[..24000].iter().any(|s| s.unsigned_abs() > 10_000));
        assert!(t[24000..].iter().all(|s| *s == 0));
    }
}
