use super::*;

#[test]
fn the_budget_is_shared_and_the_prompt_is_free() {
    let t0 = Instant::now();
    let mut b = Budget::new(Duration::from_secs(10));
    assert_eq!(b.deadline(t0), t0 + Duration::from_secs(10));
    // The status check waited 4 s.
    b.spend(t0, t0 + Duration::from_secs(4));
    // The user typed for a minute; the sign-in starts then and gets what is left.
    let t1 = t0 + Duration::from_secs(64);
    assert_eq!(b.deadline(t1), t1 + Duration::from_secs(6));
    b.spend(t1, t1 + Duration::from_secs(9));
    assert_eq!(b.left(), Duration::ZERO);
    assert_eq!(b.deadline(t1), t1);
}
