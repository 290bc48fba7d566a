//! What each fuzz target does with its input (the `cargo fuzz` targets in `fuzz/` call these),
//! so the same bodies also run in the ordinary test suite, over the committed corpora
//! (`tests/tests/fuzz_corpora.rs`): a smoke run that keeps every target building and its
//! corpus passing.
//!
//! Every parser of outside input is here: the socket's frames and messages, the config file,
//! the public key registry, the state files alohad reads back, the sealed face profiles, and
//! the image and camera-buffer decoders. Beyond "never panics, never hangs, never allocates
//! without bound" (libFuzzer's -timeout and -rss_limit_mb), each checks a property that could
//! fail: a frame is never longer than the cap, a config alohad accepts prints back to one it
//! accepts again, a decoded frame's pixels fill exactly its width × height.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aloha::frame::{self, Deadlined, MAX_FRAME_LEN};
use aloha::protocol::{self, Request, Response};

/// A target's body: one input.
pub type Body = fn(&[u8]);

/// The targets by name, for the corpus replay and the fuzz crate.
pub const TARGETS: [(&str, Body); 6] = [
    ("frames", frames),
    ("config", config),
    ("registry", registry),
    ("state_files", state_files),
    ("face_profile", face_profile),
    ("images", images),
];

/// A byte stream that hands out its bytes in chunks of a size the input chooses, as a socket
/// may: the frame decoder must reassemble headers and bodies split anywhere.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.chunk).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

impl Write for Chunked<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Deadlined for Chunked<'_> {
    fn set_read_deadline_in(&self, _: Duration) -> io::Result<()> {
        Ok(())
    }
    fn set_write_deadline_in(&self, _: Duration) -> io::Result<()> {
        Ok(())
    }
}

/// The socket: frames read from a stream split anywhere, each decoded as a request (alohad's
/// side) and as a reply (the clients' side).
pub fn frames(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut stream = Chunked {
        data: rest,
        chunk: usize::from(first % 16) + 1,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Ok(bytes) = frame::read_frame(&mut stream, deadline, MAX_FRAME_LEN) {
        assert!(!bytes.is_empty() && bytes.len() <= MAX_FRAME_LEN);
        if let Ok(request) = protocol::decode::<Request>(&bytes) {
            // What alohad accepts, it can also log and answer about: encoding never fails.
            protocol::encode(&request).expect("a decoded request encodes");
        }
        if let Ok(reply) = protocol::decode::<Response>(&bytes) {
            let again = protocol::encode(&reply).expect("a decoded reply encodes");
            protocol::decode::<Response>(&again).expect("an encoded reply decodes");
        }
    }
}

/// aloha.toml: what alohad accepts (including the face engine's keys) prints back, as
/// `alohad --check-config` does, to a file it accepts again.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("aloha.toml");
    let Ok(config) = aloha::config::Config::parse(text, path) else {
        return;
    };
    let face = aloha_helper::recognition::face_config(&config.face);
    let printed = toml::to_string(&config).expect("an accepted config prints");
    let again = aloha::config::Config::parse(&printed, path)
        .unwrap_or_else(|e| panic!("the printed config is refused: {e}\n{printed}"));
    assert_eq!(
        face.is_ok(),
        aloha_helper::recognition::face_config(&again.face).is_ok()
    );
}

/// A public key registry entry, as pam_aloha and `aloha verify` check it.
pub fn registry(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("public/alice.pub");
    if let Ok(key) = aloha::registry::parse_entry(text, path, "alice", Some(1000)) {
        assert_eq!((key.user.as_str(), key.uid), ("alice", 1000));
    }
}

static STATE_DIR: OnceLock<PathBuf> = OnceLock::new();

/// A state directory on tmpfs, made once per process and removed when it exits (libFuzzer
/// ends with exit(3), so a Drop would never run).
fn state_dir() -> &'static Path {
    STATE_DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("aloha-fuzz-state-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("private/users/alice")).expect("fuzz state dir");
        extern "C" fn remove_state_dir() {
            if let Some(dir) = STATE_DIR.get() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        // SAFETY: registers a plain function without arguments; it only touches a OnceLock
        // that is set by then.
        unsafe { libc::atexit(remove_state_dir) };
        dir
    })
}

/// The files alohad reads back from its state directory, each holding the input, read through
/// the store exactly as alohad reads them.
pub fn state_files(data: &[u8]) {
    use aloha_helper::backend::tpm::PrimaryPin;
    use aloha_helper::store::Store;
    let dir = state_dir();
    let store = Store::open_unlocked(dir).expect("the fuzz state dir opens");
    let user = dir.join("private/users/alice");
    for name in [
        "container.json",
        "attempts.json",
        "history.json",
        "face.json",
        "face-attempts.json",
    ] {
        std::fs::write(user.join(name), data).expect("write a state file");
    }
    let private = dir.join("private");
    std::fs::write(private.join("tpm-primary.json"), data).expect("write tpm-primary.json");
    if let Ok(Some(c)) = store.load_container("alice") {
        assert_eq!(c.user, "alice", "a container for someone else was accepted");
    }
    let _ = store.load_attempts("alice");
    let _ = store.load_history("alice");
    let _ = store.load_face("alice");
    let _ = store.load_face_attempts("alice");
    let _ = store.load_attempts_and_debt("alice");
    let _ = PrimaryPin::new(&private.join("tpm-primary.json")).check(&[0, 11, 1, 2, 3], "fuzz");
}

/// A sealed face profile set: the input as a sealed file (header, version, AEAD), and, since
/// random bytes never pass the tag, as the plaintext behind it.
pub fn face_profile(data: &[u8]) {
    use aloha_face::{ProfileKey, ProfileSet};
    let key = ProfileKey::new([7; 32]);
    let _ = ProfileSet::open("alice", data, &key);
    #[cfg(fuzzing)]
    if let Ok(set) = ProfileSet::fuzz_from_plaintext("alice", data) {
        // What opens, seals and opens again to the same set.
        let sealed = set.seal(&key).expect("an opened set seals");
        let again = ProfileSet::open("alice", &sealed, &key).expect("a sealed set opens");
        assert_eq!(again.references(), set.references());
    }
}

/// Image files (the replay camera, the tools) and camera buffers in every pixel format alohad
/// negotiates: a frame that decodes has exactly width × height pixels.
pub fn images(data: &[u8]) {
    use aloha_helper::camera::pixels::{PREFERENCE, to_frame};
    if let Ok(frame) = aloha_face::Frame::decode(data) {
        assert_eq!(frame.to_gray8().len(), frame.width() * frame.height());
    }
    let [a, b, c, d, rest @ ..] = data else {
        return;
    };
    let format = PREFERENCE[usize::from(*a) % PREFERENCE.len()];
    let width = usize::from(*b) % 64 + 1;
    let height = usize::from(*c) % 64 + 1;
    let bytesperline = width * 3 + usize::from(*d) % 8;
    if let Ok(frame) = to_frame(format, width, height, bytesperline, rest) {
        assert_eq!(frame.to_gray8().len(), frame.width() * frame.height());
    }
}
