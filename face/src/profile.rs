//! Enrolment profiles: labelled sets of descriptors (never images), sealed at rest with
//! XChaCha20-Poly1305 under a key the caller supplies (alohad keeps it sealed by the TPM).
//!
//! Sealed layout: `"ALOHAFP\0"` · version (u16 LE) · 24-byte random nonce · ciphertext+tag.
//! The AAD is the magic, the version and the user name, so a profile moved to another user,
//! or downgraded to another format version, fails to open.

use crate::DESCRIPTOR_LEN;
use crate::engine::Analysis;
use crate::error::{FaceError, Result};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

const MAGIC: &[u8; 8] = b"ALOHAFP\0";
/// Current sealed-profile format version.
pub const FORMAT_VERSION: u16 = 1;
/// Most profiles per user and descriptors per profile; `seal` refuses more, `open` too.
pub const MAX_PROFILES: usize = 64;
/// Most descriptors per profile (see [`MAX_PROFILES`]).
pub const MAX_DESCRIPTORS: usize = 256;
/// Longest profile label in bytes.
pub const MAX_LABEL_BYTES: usize = 64;

/// Invisible Unicode format characters (general category Cf) that could make a label look
/// like another: the bidirectional controls and overrides, zero-width characters, the
/// invisible operators, the byte-order mark and the interlinear annotation marks.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// Refuses labels that are empty, too long, or hold control or invisible format characters
/// (a label is shown to people and written into logs).
pub fn check_label(label: &str) -> Result<()> {
    if label.is_empty()
        || label.len() > MAX_LABEL_BYTES
        || label.chars().any(|c| c.is_control() || is_format(c))
    {
        return Err(FaceError::Profile(format!(
            "a profile label must be 1–{MAX_LABEL_BYTES} bytes of printable characters, got {:?}",
            label.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

/// A 128-D face descriptor. Zeroized on drop and never printed.
#[derive(Clone, PartialEq, Zeroize, ZeroizeOnDrop)]
pub struct Descriptor(pub [f32; DESCRIPTOR_LEN]);

impl std::fmt::Debug for Descriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Descriptor(<redacted>)")
    }
}

impl Descriptor {
    /// Euclidean distance (dlib's metric).
    pub fn distance(&self, other: &Descriptor) -> f32 {
        self.0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            .sqrt()
    }
}

/// The caller's 32-byte profile key. Zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ProfileKey([u8; 32]);

impl std::fmt::Debug for ProfileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProfileKey(<redacted>)")
    }
}

impl ProfileKey {
    /// Wraps key bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    /// A fresh random key from the OS.
    pub fn generate() -> Result<Self> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k)
            .map_err(|e| FaceError::Profile(format!("no randomness from the OS: {e}")))?;
        Ok(Self(k))
    }
}

/// How frames become a profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnrolSettings {
    /// Fewest good frames a profile needs. Default 3.
    pub min_frames: usize,
    /// Most frames kept (the most pose-diverse ones). Default 8.
    pub max_frames: usize,
    /// Smallest spread of yaw or pitch (degrees) among the kept frames. Default 3.
    pub min_pose_spread: f32,
}

impl Default for EnrolSettings {
    fn default() -> Self {
        Self {
            min_frames: 3,
            max_frames: 8,
            min_pose_spread: 3.0,
        }
    }
}

/// One labelled set of descriptors ("default", "glasses", …).
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The label.
    pub label: String,
    /// The enrolled descriptors.
    pub descriptors: Vec<Descriptor>,
}

impl Profile {
    /// Builds a profile from good frames: keeps up to `max_frames` of them, chosen greedily
    /// to spread over head poses, and requires some pose diversity.
    pub fn enrol(label: &str, frames: &[Analysis], s: &EnrolSettings) -> Result<Self> {
        check_label(label)?;
        if frames.len() < s.min_frames {
            return Err(FaceError::Profile(format!(
                "enrolment needs at least {} good frames, got {}: keep looking at the camera a little longer",
                s.min_frames,
                frames.len()
            )));
        }
        // Farthest-point selection in (yaw, pitch), starting from the most frontal frame.
        let pose = |a: &Analysis| (a.pose.yaw, a.pose.pitch);
        let mut kept: Vec<usize> = Vec::new();
        if let Some(first) = (0..frames.len()).min_by(|&a, &b| {
            let (ya, pa) = pose(&frames[a]);
            let (yb, pb) = pose(&frames[b]);
            (ya.abs() + pa.abs()).total_cmp(&(yb.abs() + pb.abs()))
        }) {
            kept.push(first);
        }
        while kept.len() < s.max_frames.min(frames.len()) {
            let far = (0..frames.len())
                .filter(|i| !kept.contains(i))
                .max_by(|&a, &b| {
                    let d = |i: usize| {
                        let (y, p) = pose(&frames[i]);
                        kept.iter()
                            .map(|&k| {
                                let (yk, pk) = pose(&frames[k]);
                                (y - yk).hypot(p - pk)
                            })
                            .fold(f32::INFINITY, f32::min)
                    };
                    d(a).total_cmp(&d(b))
                });
            match far {
                Some(i) => kept.push(i),
                None => break,
            }
        }
        let spread = |f: fn(&Analysis) -> f32| {
            let v: Vec<f32> = kept.iter().map(|&i| f(&frames[i])).collect();
            v.iter().copied().fold(f32::NEG_INFINITY, f32::max)
                - v.iter().copied().fold(f32::INFINITY, f32::min)
        };
        let (sy, sp) = (spread(|a| a.pose.yaw), spread(|a| a.pose.pitch));
        if sy.max(sp) < s.min_pose_spread {
            return Err(FaceError::Profile(format!(
                "the enrolment frames all show the same head pose (yaw spread {sy:.1}°, pitch spread {sp:.1}°, need {:.1}°): move your head slightly while enrolling",
                s.min_pose_spread
            )));
        }
        Ok(Self {
            label: label.into(),
            descriptors: kept.iter().map(|&i| frames[i].descriptor.clone()).collect(),
        })
    }

    /// Smallest distance from `probe` to any of the profile's descriptors. Each enrolled
    /// descriptor is compared on its own, like the 1-image comparisons the threshold is
    /// fitted on (a mean of several descriptors sits closer to everyone, impostors included).
    pub fn distance(&self, probe: &Descriptor) -> Option<f32> {
        self.descriptors
            .iter()
            .map(|d| d.distance(probe))
            .min_by(f32::total_cmp)
    }
}

/// All of one user's profiles.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileSet {
    /// The user name (bound into the encryption).
    pub user: String,
    /// The profiles.
    pub profiles: Vec<Profile>,
}

fn aad(user: &str, version: u16) -> Vec<u8> {
    let mut a = MAGIC.to_vec();
    a.extend_from_slice(&version.to_le_bytes());
    a.extend_from_slice(b"user:");
    a.extend_from_slice(user.as_bytes());
    a
}

fn bad(m: &str) -> FaceError {
    FaceError::Profile(format!(
        "{m}: the profile file is damaged or was tampered with; enrol the face again"
    ))
}

impl ProfileSet {
    /// An empty set for `user`.
    pub fn new(user: &str) -> Self {
        Self {
            user: user.into(),
            profiles: Vec::new(),
        }
    }

    /// Adds or replaces the profile with the same label.
    pub fn upsert(&mut self, p: Profile) {
        self.profiles.retain(|q| q.label != p.label);
        self.profiles.push(p);
    }

    /// Removes a profile; true when one was removed.
    pub fn remove(&mut self, label: &str) -> bool {
        let n = self.profiles.len();
        self.profiles.retain(|q| q.label != label);
        n != self.profiles.len()
    }

    /// Best (smallest) distance from `probe` to any enrolled descriptor of any profile, and
    /// that profile's label.
    pub fn best_match(&self, probe: &Descriptor) -> Option<(f32, &str)> {
        self.profiles
            .iter()
            .filter_map(|p| p.distance(probe).map(|d| (d, p.label.as_str())))
            .min_by(|a, b| a.0.total_cmp(&b.0))
    }

    /// Enrolled descriptors over all profiles: the `R` of the threshold (see `decide`).
    pub fn references(&self) -> usize {
        self.profiles.iter().map(|p| p.descriptors.len()).sum()
    }

    /// The limits both `seal` and `open` enforce, so a set that seals also opens and one that
    /// opens also seals again.
    fn check_limits(&self) -> Result<()> {
        if self.profiles.len() > MAX_PROFILES {
            return Err(FaceError::Profile(format!(
                "{} has {} face profiles, at most {MAX_PROFILES} can be stored: remove some first",
                self.user,
                self.profiles.len()
            )));
        }
        for p in &self.profiles {
            check_label(&p.label)?;
            if p.descriptors.len() > MAX_DESCRIPTORS {
                return Err(FaceError::Profile(format!(
                    "face profile {:?} has {} descriptors, at most {MAX_DESCRIPTORS} can be stored: enrol it again",
                    p.label,
                    p.descriptors.len()
                )));
            }
            if p.descriptors
                .iter()
                .any(|d| d.0.iter().any(|v| !v.is_finite()))
            {
                return Err(FaceError::Profile(format!(
                    "face profile {:?} holds a descriptor that is not finite: enrol it again",
                    p.label
                )));
            }
        }
        Ok(())
    }

    fn plaintext(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        out.extend_from_slice(&(self.profiles.len() as u32).to_le_bytes());
        for p in &self.profiles {
            out.extend_from_slice(&(p.label.len() as u16).to_le_bytes());
            out.extend_from_slice(p.label.as_bytes());
            out.extend_from_slice(&(p.descriptors.len() as u32).to_le_bytes());
            for d in &p.descriptors {
                for v in &d.0 {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        out
    }

    fn from_plaintext(user: &str, b: &[u8]) -> Result<Self> {
        let mut pos = 0usize;
        let mut take = |n: usize| -> Result<&[u8]> {
            let s = b
                .get(pos..pos + n)
                .ok_or_else(|| bad("truncated profile"))?;
            pos += n;
            Ok(s)
        };
        let u32_at = |s: &[u8]| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize;
        let count = u32_at(take(4)?);
        if count > MAX_PROFILES {
            return Err(bad("too many profiles"));
        }
        let mut profiles = Vec::with_capacity(count);
        for _ in 0..count {
            let l = take(2)?;
            let ln = usize::from(u16::from_le_bytes([l[0], l[1]]));
            let label =
                String::from_utf8(take(ln)?.to_vec()).map_err(|_| bad("label is not UTF-8"))?;
            let n = u32_at(take(4)?);
            if n > MAX_DESCRIPTORS {
                return Err(bad("too many descriptors"));
            }
            let mut descriptors = Vec::with_capacity(n);
            for _ in 0..n {
                let raw = take(4 * DESCRIPTOR_LEN)?;
                let mut d = [0f32; DESCRIPTOR_LEN];
                for (o, c) in d.iter_mut().zip(raw.chunks_exact(4)) {
                    *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
                if d.iter().any(|v| !v.is_finite()) {
                    return Err(bad("descriptor is not finite"));
                }
                descriptors.push(Descriptor(d));
            }
            profiles.push(Profile { label, descriptors });
        }
        if pos != b.len() {
            return Err(bad("trailing bytes"));
        }
        let set = Self {
            user: user.into(),
            profiles,
        };
        set.check_limits()?;
        Ok(set)
    }

    /// Encrypts the set for storage. Refuses a set that [`ProfileSet::open`] would refuse
    /// (more than 64 profiles or 256 descriptors per profile, a bad label, a non-finite value).
    pub fn seal(&self, key: &ProfileKey) -> Result<Vec<u8>> {
        self.check_limits()?;
        self.seal_unchecked(key)
    }

    fn seal_unchecked(&self, key: &ProfileKey) -> Result<Vec<u8>> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce)
            .map_err(|e| FaceError::Profile(format!("no randomness from the OS: {e}")))?;
        let cipher = XChaCha20Poly1305::new(&key.0.into());
        let pt = self.plaintext();
        let aad = aad(&self.user, FORMAT_VERSION);
        let ct = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &pt,
                    aad: &aad,
                },
            )
            .map_err(|_| FaceError::Profile("encryption failed".into()))?;
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// The parser behind [`ProfileSet::open`], on plaintext: only for the fuzzer, which could
    /// not get past the authentication tag otherwise.
    #[cfg(fuzzing)]
    pub fn fuzz_from_plaintext(user: &str, plaintext: &[u8]) -> Result<Self> {
        Self::from_plaintext(user, plaintext)
    }

    /// Decrypts and checks a sealed set for `user`. Fails on a wrong key, another user's
    /// file, an unknown version or any modified byte.
    pub fn open(user: &str, sealed: &[u8], key: &ProfileKey) -> Result<Self> {
        if sealed.len() < 8 + 2 + 24 + 16 || &sealed[..8] != MAGIC {
            return Err(FaceError::Profile(
                "not an Aloha face profile (bad header): enrol the face again".into(),
            ));
        }
        let version = u16::from_le_bytes([sealed[8], sealed[9]]);
        if version != FORMAT_VERSION {
            return Err(FaceError::Profile(format!(
                "face profile format version {version} is not supported by this alohad (it reads version {FORMAT_VERSION}); enrol the face again"
            )));
        }
        let mut nonce = [0u8; 24];
        nonce.copy_from_slice(&sealed[10..34]);
        let cipher = XChaCha20Poly1305::new(&key.0.into());
        let aad = aad(user, version);
        let pt = Zeroizing::new(
            cipher
                .decrypt(&XNonce::from(nonce), Payload { msg: &sealed[34..], aad: &aad })
                .map_err(|_| {
                    FaceError::Profile(format!(
                        "face profile of {user} cannot be authenticated (wrong key, another user's file, or modified); enrol the face again"
                    ))
                })?,
        );
        Self::from_plaintext(user, &pt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pose::Pose;
    use crate::quality::Quality;

    fn desc(seed: u32) -> Descriptor {
        let mut d = [0f32; DESCRIPTOR_LEN];
        let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
        for v in &mut d {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *v = (x % 2000) as f32 / 10000.0 - 0.1;
        }
        Descriptor(d)
    }

    fn analysis(seed: u32, yaw: f32) -> Analysis {
        Analysis {
            descriptor: desc(seed),
            pose: Pose {
                yaw,
                pitch: 0.0,
                roll: 0.0,
            },
            quality: Quality::default(),
            landmarks: [[0.0; 2]; 5],
            face_box: [0.0; 4],
        }
    }

    fn set() -> ProfileSet {
        let mut s = ProfileSet::new("alice");
        s.upsert(Profile {
            label: "default".into(),
            descriptors: vec![desc(1), desc(2)],
        });
        s.upsert(Profile {
            label: "glasses".into(),
            descriptors: vec![desc(3)],
        });
        s
    }

    #[test]
    fn seal_open_round_trip() {
        let key = ProfileKey::generate().unwrap();
        let s = set();
        let sealed = s.seal(&key).unwrap();
        assert_eq!(ProfileSet::open("alice", &sealed, &key).unwrap(), s);
        // Two seals of the same data differ (fresh nonce).
        assert_ne!(s.seal(&key).unwrap(), sealed);
        // No descriptor value appears in clear.
        let needle = desc(1).0[0].to_le_bytes();
        assert!(!sealed.windows(4).any(|w| w == needle) || needle == [0; 4]);
    }

    #[test]
    fn tampering_wrong_key_wrong_user_and_version_fail() {
        let key = ProfileKey::new([7; 32]);
        let sealed = set().seal(&key).unwrap();
        for i in [0, 9, 12, 40, sealed.len() - 1] {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert!(
                ProfileSet::open("alice", &t, &key).is_err(),
                "flipped byte {i} went unnoticed"
            );
        }
        assert!(ProfileSet::open("alice", &sealed, &ProfileKey::new([8; 32])).is_err());
        assert!(ProfileSet::open("bob", &sealed, &key).is_err());
        assert!(ProfileSet::open("alice", &sealed[..sealed.len() - 1], &key).is_err());
        assert!(ProfileSet::open("alice", b"short", &key).is_err());
        let mut v2 = sealed.clone();
        v2[8] = 2;
        let e = ProfileSet::open("alice", &v2, &key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("version 2"), "{e}");
    }

    #[test]
    fn secrets_are_not_printed() {
        let k = ProfileKey::new([0x41; 32]);
        assert!(!format!("{k:?}").contains("65"));
        let s = format!("{:?}", set());
        assert!(s.contains("redacted") && !s.contains("0.0"), "{s}");
    }

    #[test]
    fn enrol_needs_frames_and_pose_diversity() {
        let s = EnrolSettings::default();
        let still: Vec<Analysis> = (0..5).map(|i| analysis(i, 1.0)).collect();
        assert!(Profile::enrol("default", &still[..2], &s).is_err());
        let e = Profile::enrol("default", &still, &s)
            .unwrap_err()
            .to_string();
        assert!(e.contains("same head pose"), "{e}");
        let moving: Vec<Analysis> = (0..12).map(|i| analysis(i, i as f32 - 6.0)).collect();
        let p = Profile::enrol("default", &moving, &s).unwrap();
        assert_eq!(p.descriptors.len(), 8);
        assert!(Profile::enrol("", &moving, &s).is_err());
    }

    #[test]
    fn best_match_picks_the_closest_descriptor() {
        let s = set();
        let (d, label) = s.best_match(&desc(3)).unwrap();
        assert_eq!(label, "glasses");
        assert!(d < 1e-6);
        // Each enrolled descriptor counts on its own, not their mean.
        let (d, label) = s.best_match(&desc(2)).unwrap();
        assert_eq!(label, "default");
        assert!(d < 1e-6, "{d}");
        assert_eq!(s.references(), 3);
        assert!(ProfileSet::new("x").best_match(&desc(3)).is_none());
    }

    #[test]
    fn seal_refuses_what_open_would_refuse() {
        let key = ProfileKey::new([3; 32]);
        let profile = |label: &str, n: u32| Profile {
            label: label.into(),
            descriptors: (0..n).map(desc).collect(),
        };
        let mut long = ProfileSet::new("alice");
        long.upsert(profile(&"x".repeat(MAX_LABEL_BYTES + 1), 1));
        let e = long.seal(&key).unwrap_err().to_string();
        assert!(e.contains("label"), "{e}");
        // 65,537 bytes would have been truncated to 1 by `as u16`.
        long.profiles[0].label = "y".repeat(65_537);
        assert!(long.seal(&key).is_err());

        let mut many = ProfileSet::new("alice");
        for i in 0..=MAX_PROFILES {
            many.upsert(profile(&format!("p{i}"), 1));
        }
        let e = many.seal(&key).unwrap_err().to_string();
        assert!(e.contains("at most 64"), "{e}");
        many.profiles.pop();
        let sealed = many.seal(&key).unwrap();
        assert_eq!(ProfileSet::open("alice", &sealed, &key).unwrap(), many);

        let mut big = ProfileSet::new("alice");
        big.upsert(profile("default", MAX_DESCRIPTORS as u32 + 1));
        let e = big.seal(&key).unwrap_err().to_string();
        assert!(e.contains("at most 256"), "{e}");
        big.profiles[0].descriptors.pop();
        let sealed = big.seal(&key).unwrap();
        assert_eq!(ProfileSet::open("alice", &sealed, &key).unwrap(), big);

        let mut nan = ProfileSet::new("alice");
        nan.upsert(profile("default", 1));
        nan.profiles[0].descriptors[0].0[5] = f32::NAN;
        assert!(nan.seal(&key).is_err());
    }

    #[test]
    fn labels_with_invisible_format_characters_neither_seal_nor_open() {
        let key = ProfileKey::new([4; 32]);
        for label in [
            "ok\u{202E}txt",
            "a\u{200B}b",
            "\u{2066}x",
            "x\u{FEFF}",
            "tab\there",
        ] {
            let mut s = ProfileSet::new("alice");
            s.upsert(Profile {
                label: label.into(),
                descriptors: vec![desc(1)],
            });
            let e = s.seal(&key).unwrap_err().to_string();
            assert!(e.contains("printable"), "{label:?}: {e}");
            // A file written without the check (an older alohad) does not open either, so
            // every set that opens seals again.
            let sealed = s.seal_unchecked(&key).unwrap();
            let e = ProfileSet::open("alice", &sealed, &key)
                .unwrap_err()
                .to_string();
            assert!(e.contains("printable"), "{label:?}: {e}");
        }
        let mut fine = ProfileSet::new("alice");
        fine.upsert(Profile {
            label: "Brille – glasses 👓".into(),
            descriptors: vec![desc(1)],
        });
        let sealed = fine.seal(&key).unwrap();
        assert_eq!(ProfileSet::open("alice", &sealed, &key).unwrap(), fine);
    }
}
