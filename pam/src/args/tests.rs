use super::*;

#[test]
fn arguments() {
    let a = Args::parse([
        "socket=/tmp/s",
        "config=/tmp/c.toml",
        "timeout=2.5",
        "debug",
        "bogus",
        "timeout=-1",
    ]);
    assert_eq!(a.socket, Some(PathBuf::from("/tmp/s")));
    assert_eq!(a.config, Some(PathBuf::from("/tmp/c.toml")));
    assert_eq!(a.timeout, Duration::from_millis(2500));
    assert!(a.debug);
    assert_eq!(
        a.unknown,
        vec!["bogus".to_string(), "timeout=-1".to_string()]
    );
    let d = Args::parse([]);
    assert_eq!(d.timeout, DEFAULT_TIMEOUT);
    assert_eq!(d.socket, None);
}

#[test]
fn face_arguments() {
    let d = Args::parse([]);
    assert!(d.face && d.pin);
    assert_eq!(d.face_timeout, DEFAULT_FACE_TIMEOUT);
    let a = Args::parse(["noface", "nopin", "face_timeout=1.5"]);
    assert!(!a.face && !a.pin);
    assert_eq!(a.face_timeout, Duration::from_millis(1500));
    assert!(a.unknown.is_empty());
    for bad in [
        "face_timeout=0",
        "face_timeout=31",
        "face_timeout=x",
        "nofaces",
    ] {
        let a = Args::parse([bad]);
        assert_eq!(a.unknown, [bad.to_string()], "{bad}");
        assert_eq!(a.face_timeout, DEFAULT_FACE_TIMEOUT);
    }
}
