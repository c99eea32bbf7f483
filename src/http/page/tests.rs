use super::*;

#[test]
fn a_selected_page_equals_the_same_slice_of_a_full_sort() {
    // Many ties, so the order rule's later keys matter.
    let items: Vec<(u8, i64, u32)> = (0..5_000u32)
        .map(|index| ((index * 7 % 5) as u8, i64::from(index * 13 % 97), index))
        .collect();
    let order = |a: &(u8, i64, u32), b: &(u8, i64, u32)| {
        b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2))
    };
    let mut sorted = items.clone();
    sorted.sort_by(order);
    for (offset, length) in [
        (0, 100),
        (100, 100),
        (4_950, 100),
        (4_999, 100),
        (0, 5_000),
        (5_000, 100),
        (17, 0),
    ] {
        let mut scratch = items.clone();
        let page = select_page(&mut scratch, offset, length, order).to_vec();
        let end = (offset + length).min(sorted.len());
        let expected = sorted.get(offset..end).unwrap_or_default();
        assert_eq!(page, expected, "offset {offset}, length {length}");
    }
}

#[test]
fn groups_rank_on_the_feeds_scale_and_keep_their_own_label() {
    assert_eq!(
        Shown::group(GroupStatus::Critical).rank,
        Status::Critical.rank()
    );
    assert_eq!(
        Shown::group(GroupStatus::Stalled).rank,
        Status::Warning.rank()
    );
    assert_eq!(Shown::group(GroupStatus::Stalled).label, "stalled");
    assert!(Shown::feed(Status::NeverSeen).rank > Shown::group(GroupStatus::Critical).rank);
}

#[test]
fn front_rows_go_stalest_first_never_seen_counting_as_stalest() {
    let row = |name: &str, status: Status, staleness_ms: Option<i64>| FrontRow {
        kind: Kind::Feed,
        name: name.into(),
        shown: Shown::feed(status),
        staleness_ms,
        last_seen_ms: None,
        detail: String::new(),
    };
    let mut rows = [
        row("fresh", Status::Ok, Some(1_000)),
        row("late", Status::Warning, Some(6_000)),
        row("later", Status::Warning, Some(7_000)),
        row("gone", Status::Critical, Some(9_000)),
        row("empty", Status::Critical, None),
    ];
    rows.sort_by(FrontRow::order);
    let names: Vec<&str> = rows.iter().map(|row| row.name.as_str()).collect();
    assert_eq!(names, ["empty", "gone", "later", "late", "fresh"]);
}

#[test]
fn filters_ignore_empty_values_and_case() {
    let filters = Filters {
        status: Some("critical".into()),
        q: Some("PROF".into()),
        page: Some("x".into()),
    };
    assert!(filters.admits("critical", "cdp-profiles"));
    assert!(!filters.admits("warning", "cdp-profiles"));
    assert!(!filters.admits("critical", "orders"));
    assert_eq!(filters.page(), 1);
    let none = Filters {
        status: Some("".into()),
        q: Some("  ".into()),
        page: Some("3".into()),
    };
    assert!(none.admits("ok", "anything"));
    assert_eq!(none.page(), 3);
}

#[test]
fn json_only_for_clients_that_ask_for_it() {
    let with = |accept: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(axum::http::header::ACCEPT, accept.parse().unwrap());
        wants_json(&headers)
    };
    assert!(with("application/json"));
    assert!(!with(
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    ));
    assert!(!with("*/*"));
    assert!(!wants_json(&HeaderMap::new()));
}

#[test]
fn links_are_percent_encoded() {
    assert_eq!(encode("cdp profiles/€"), "cdp%20profiles%2F%E2%82%AC");
    assert_eq!(encode("a-b_c.d~e"), "a-b_c.d~e");
}
