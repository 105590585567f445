//! Emergency-broadcast terminals (应急广播, the loudspeaker on the pole): the last mile.
//!
//! Built so far: the spoken script from a template (`script.rs`) and its audio (`audio.rs`:
//! espeak-ng's Mandarin voice after an alert tone, a content-addressed WAV cache). The
//! county-platform adapter (EBD/EBM), plain IP audio (Icecast) and terminal status follow
//! (issue #7), behind the same `Channel` trait as SMS.

pub mod audio;
pub mod channel;
pub mod ebd;
pub mod icecast;
pub mod jobs;
pub mod script;
pub mod sign;
