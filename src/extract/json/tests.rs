//! `find` against serde_json's `Value::pointer`, and the pointer parser.

use super::*;
use proptest::prelude::*;
use serde_json::Value;

/// What serde_json says is at `pointer`, in `find`'s terms.
fn expected(document: &[u8], pointer: &str) -> Option<Option<Value>> {
    let value: Value = serde_json::from_slice(document).ok()?;
    Some(value.pointer(pointer).cloned())
}

fn same(found: &Option<JsonScalar<'_>>, want: &Option<Value>) -> bool {
    match (found, want) {
        (None, None) => true,
        (Some(JsonScalar::String(text)), Some(Value::String(want))) => text == want,
        (Some(JsonScalar::Number(literal)), Some(Value::Number(_))) => {
            serde_json::from_str::<Value>(literal).ok().as_ref() == want.as_ref()
        }
        (Some(JsonScalar::Bool(value)), Some(Value::Bool(want))) => value == want,
        (Some(JsonScalar::Null), Some(Value::Null)) => true,
        (Some(JsonScalar::Object), Some(Value::Object(_))) => true,
        (Some(JsonScalar::Array), Some(Value::Array(_))) => true,
        _ => false,
    }
}

fn check(document: &str, pointer: &str) {
    let parsed = JsonPointer::parse(pointer).unwrap();
    let found = find(document.as_bytes(), &parsed);
    match expected(document.as_bytes(), pointer) {
        Some(want) => {
            let found =
                found.unwrap_or_else(|error| panic!("{error} on valid {document:?} at {pointer}"));
            assert!(
                same(&found, &want),
                "{document:?} at {pointer}: found {found:?}, serde_json {want:?}"
            );
        }
        None => {
            // Invalid for serde_json: we must not panic; an error is expected on the path.
            let _ = found;
        }
    }
}

/// Two pointers in one scan must each agree with serde_json.
fn check_each(document: &str, first: &str, second: &str) {
    let (first_parsed, second_parsed) = (
        JsonPointer::parse(first).unwrap(),
        JsonPointer::parse(second).unwrap(),
    );
    let found = find_each(document.as_bytes(), [&first_parsed, &second_parsed]);
    let (Some(want_first), Some(want_second)) = (
        expected(document.as_bytes(), first),
        expected(document.as_bytes(), second),
    ) else {
        return; // invalid for serde_json: only "no panic" is asked
    };
    let [found_first, found_second] =
        found.unwrap_or_else(|error| panic!("{error} on valid {document:?}"));
    assert!(
        same(&found_first, &want_first) && same(&found_second, &want_second),
        "{document:?} at {first} and {second}: found {found_first:?}, {found_second:?}; \
         serde_json {want_first:?}, {want_second:?}"
    );
}

const CORPUS: &[&str] = &[
    r#"{"tenant_id":"acme","updated_at":1700000000123}"#,
    r#"  { "a" : { "b" : [ 1 , { "c" : "deep" } ] } , "tenant_id" : "x" }  "#,
    r#"{"tenant_id":"first","tenant_id":"last"}"#,
    r#"{"tenant_id":{"nested":1},"tenant_id":"scalar-wins"}"#,
    r#"{"tenant_id":"scalar","tenant_id":{"object":"wins"}}"#,
    r#"{"na\"me":"quoted key","tenant_id":"esc\"aped \\ \/ \b\f\n\r\t"}"#,
    r#"{"tenant\u005fid":"escaped key","x":1}"#,
    r#"{"tenant_id":"caf\u00e9 \ud83d\ude00 raw é 😀"}"#,
    r#"{"n":[-0,0.5,1e10,-1.5E-3,12345678901234567890,3.0e+2]}"#,
    r#"{"empty":{},"list":[],"t":true,"f":false,"z":null}"#,
    r#"{"a/b":1,"m~n":2,"":3}"#,
    r#"[{"tenant_id":"in-array"},{"tenant_id":"second"}]"#,
    r#"{"items":[[0,1],[2,[3,{"k":"v"}]]]}"#,
    r#"{"meta":{"at":"2026-01-02T03:04:05Z","at":"later"}}"#,
    "\"just a string\"",
    "42",
    r#"{"a":1}"#,
];

const POINTERS: &[&str] = &[
    "/tenant_id",
    "/updated_at",
    "/a/b/1/c",
    "/a/b/0",
    "/a/b/2",
    "/na\"me",
    "/tenant_id/nested",
    "/tenant_id/object",
    "/n/0",
    "/n/1",
    "/n/2",
    "/n/3",
    "/n/4",
    "/n/5",
    "/n/01",
    "/empty",
    "/list",
    "/t",
    "/f",
    "/z",
    "/a~1b",
    "/m~0n",
    "/",
    "/0/tenant_id",
    "/1/tenant_id",
    "/items/1/1/1/k",
    "/meta/at",
    "/x",
    "/missing",
];

#[test]
fn agrees_with_serde_json_on_the_corpus() {
    for document in CORPUS {
        assert!(
            serde_json::from_str::<Value>(document).is_ok(),
            "corpus entry must be valid: {document}"
        );
        for pointer in POINTERS {
            check(document, pointer);
        }
    }
}

#[test]
fn one_scan_for_two_pointers_agrees_with_serde_json_on_the_corpus() {
    for document in CORPUS {
        for first in POINTERS {
            for second in POINTERS {
                check_each(document, first, second);
            }
        }
    }
}

#[test]
fn unescaped_strings_are_borrowed() {
    let pointer = JsonPointer::parse("/tenant_id").unwrap();
    let document = br#"{"tenant_id":"acme"}"#;
    assert!(matches!(
        find(document, &pointer),
        Ok(Some(JsonScalar::String(Cow::Borrowed("acme"))))
    ));
}

#[test]
fn truncations_and_garbage_never_panic_and_agree_when_valid() {
    for document in CORPUS {
        for end in 0..document.len() {
            let Some(prefix) = document.get(..end) else {
                continue;
            };
            for pointer in ["/tenant_id", "/a/b/1/c", "/n/4"] {
                check(prefix, pointer);
            }
        }
    }
    let pointer = JsonPointer::parse("/tenant_id").unwrap();
    for garbage in [
        &b"{"[..],
        b"}",
        b"{\"tenant_id\"",
        b"{\"tenant_id\":}",
        b"{\"a\":[}",
        b"{\"a\":{]}",
        b"{\"tenant_id\":\"unterminated",
        b"{\"tenant_id\":\"x\"} trailing",
        b"not json",
        b"{\"tenant_id\":\"\xff\xfe\"}",
        b"{\"tenant_id\":\"\\ud800\"}",
        b"{\"tenant_id\":01}",
        b"",
    ] {
        assert!(
            find(garbage, &pointer).is_err(),
            "{:?}",
            String::from_utf8_lossy(garbage)
        );
    }
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert_eq!(find(deep.as_bytes(), &pointer), Err(JsonError::TooDeep));
}

#[test]
fn pointers_are_validated() {
    assert!(JsonPointer::parse("tenant_id").is_err());
    assert!(JsonPointer::parse("/a~2").is_err());
    assert_eq!(
        JsonPointer::parse("/a~1b~0").unwrap().tokens[0]
            .key
            .as_ref(),
        "a/b~"
    );
    assert_eq!(JsonPointer::parse("/10").unwrap().tokens[0].index, Some(10));
    assert_eq!(JsonPointer::parse("/010").unwrap().tokens[0].index, None);
}

fn json_value() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec!["tenant_id", "a", "b", "t\"q", "é", "0", "1"]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1.0e12f64..1.0e12).prop_map(Value::from),
        "[a-z é😀\"\\\\/\n\t\u{1}]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6).prop_map(|pairs| {
                Value::Object(
                    pairs
                        .into_iter()
                        .map(|(key, value)| (key.to_owned(), value))
                        .collect(),
                )
            }),
        ]
    })
}

proptest! {
    #[test]
    fn agrees_with_serde_json_on_generated_documents(
        value in json_value(),
        pretty in any::<bool>(),
        duplicate in prop::option::of((json_value(), json_value())),
        path in prop::collection::vec(prop::sample::select(vec!["tenant_id", "a", "b", "t\"q", "é", "0", "1", "2"]), 1..4),
    ) {
        let mut document = if pretty {
            serde_json::to_string_pretty(&value).unwrap()
        } else {
            serde_json::to_string(&value).unwrap()
        };
        // Wrap with a duplicated key, which serde_json's serializer never writes itself.
        if let Some((first, last)) = duplicate {
            document = format!(
                "{{\"tenant_id\":{},\"a\":{document},\"tenant_id\":{}}}",
                serde_json::to_string(&first).unwrap(),
                serde_json::to_string(&last).unwrap()
            );
        }
        let pointer: String = path
            .iter()
            .map(|token| format!("/{}", token.replace('~', "~0").replace('/', "~1")))
            .collect();
        check(&document, &pointer);
        check_each(&document, &pointer, "/tenant_id");
        check_each(&document, "/a", &pointer);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let pointer = JsonPointer::parse("/tenant_id").unwrap();
        let _ = find(&bytes, &pointer);
    }
}
