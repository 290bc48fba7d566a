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
