//! Who may act for whom.

use super::*;

#[test]
fn only_root_acts_for_others() {
    let f = fixture();
    assert_eq!(
        f.code(f.set(BOB, "alice", Some("bob-password"), PIN)),
        ErrorCode::Forbidden
    );
    f.set(ROOT, "alice", None, PIN).unwrap();
    assert_eq!(f.code(f.sign_in(BOB, "alice", PIN)), ErrorCode::Forbidden);
    assert_eq!(
        f.code(f.call(
            BOB,
            Request::Status {
                user: "alice".into()
            }
        )),
        ErrorCode::Forbidden
    );
    assert_eq!(
        f.code(f.call(
            BOB,
            Request::AdminRemove {
                user: "alice".into()
            }
        )),
        ErrorCode::Forbidden
    );
    // A refused request costs the victim nothing.
    assert_eq!(f.status("alice").failed_attempts, 0);
    assert_eq!(
        f.code(f.sign_in(ROOT, "mallory", PIN)),
        ErrorCode::UnknownUser
    );
    assert_eq!(
        f.code(f.sign_in(ROOT, "../etc", PIN)),
        ErrorCode::BadRequest
    );
}
