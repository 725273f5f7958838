//! The loaders on good, awkward and arbitrary files.
use super::*;

fn write(name: &str, content: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("astrid-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn cols(text: &str, label: &str) -> Columns {
    Columns {
        text: Some(text.into()),
        label: Some(label.into()),
        label_order: None,
        shift_by: None,
    }
}

#[test]
fn scotus_layout_is_recognised_and_cleaned() {
    let path = write(
        "justice.csv",
        b",ID,facts,first_party_winner\n0,1,\"<p>A &amp; B sued.</p>\n\",TRUE\n1,2,<p>C lost.</p>,False\n2,3,<p>D</p>,\n",
    );
    let data = load(&path, &Columns::default()).unwrap();
    assert_eq!(data.texts, ["A & B sued.", "C lost."]);
    assert_eq!(data.label_names, ["False", "True"]);
    assert_eq!(data.labels, [1, 0]);
    assert_eq!(data.dropped_blank_labels, 1);
}

#[test]
fn tsv_and_jsonl_with_stated_label_order() {
    let tsv = write("d.tsv", b"t\tl\nfoo\tneg\nbar\tpos\nbaz\tneu\n");
    let order = Columns {
        label_order: Some(vec!["pos".into(), "neu".into(), "neg".into()]),
        ..cols("t", "l")
    };
    let data = load(&tsv, &order).unwrap();
    assert_eq!(data.labels, [2, 0, 1]);
    let jsonl = write("d.jsonl", b"{\"t\": \"foo\", \"l\": 1}\n\n{\"t\": \"bar\", \"l\": 0}\n");
    let data = load(&jsonl, &cols("t", "l")).unwrap();
    assert_eq!(
        (data.labels.clone(), data.label_names.clone()),
        (vec![1, 0], vec!["0".to_string(), "1".to_string()])
    );
}

mod arbitrary_input {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use proptest::prelude::*;

    use super::*;

    static CASE: AtomicUsize = AtomicUsize::new(0);

    /// Loads `bytes` as a file of type `ext` with several column choices: an error must
    /// say something, and nothing may panic.
    fn load_all_ways(bytes: &[u8], ext: &str) {
        let name = format!("prop-{}.{ext}", CASE.fetch_add(1, Ordering::Relaxed));
        let path = write(&name, bytes);
        let order = Columns {
            label_order: Some(vec!["a".into(), "b".into()]),
            ..cols("t", "l")
        };
        for columns in [
            cols("t", "l"),
            Columns::default(),
            order,
            cols("facts", "first_party_winner"),
        ] {
            if let Err(e) = load(&path, &columns) {
                assert!(e.to_string().contains(&name), "the error names the file: {e}");
            }
        }
        let _ = std::fs::remove_file(path);
    }

    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z ]{0,6}",
            "[,\t\n\r\"]{0,3}",
            "\\PC{0,5}",
            Just("TRUE".to_string()),
            Just(String::new()),
        ]
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            "\\PC{0,8}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![Just("t".to_string()), Just("l".to_string()), "[a-z]{1,3}"],
                    inner,
                    0..3
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400),
                           ext in prop::sample::select(vec!["csv", "tsv", "jsonl"])) {
            load_all_ways(&bytes, ext);
        }

        #[test]
        fn arbitrary_tables(header in proptest::collection::vec(prop_oneof![Just("t".to_string()), Just("l".to_string()), field()], 0..4),
                            rows in proptest::collection::vec(proptest::collection::vec(field(), 0..5), 0..10),
                            tab in any::<bool>(), bom in any::<bool>()) {
            let sep = if tab { "\t" } else { "," };
            let mut text = if bom { "\u{feff}".to_string() } else { String::new() };
            text.push_str(&header.join(sep));
            for row in rows {
                text.push('\n');
                text.push_str(&row.join(sep));
            }
            load_all_ways(text.as_bytes(), if tab { "tsv" } else { "csv" });
        }

        #[test]
        fn arbitrary_json_lines(lines in proptest::collection::vec(json_value(), 0..8)) {
            let text: Vec<String> = lines.iter().map(|v| v.to_string()).collect();
            load_all_ways(text.join("\n").as_bytes(), "jsonl");
        }
    }
}

#[test]
fn awkward_files_get_messages_that_say_what_to_do() {
    let empty = write("empty-file.csv", b"");
    let err = load(&empty, &cols("t", "l")).unwrap_err().to_string();
    assert!(err.contains("the file is empty"), "{err}");
    let tsv_named_csv = write("tabs.csv", b"t\tl\nfoo\ta\nbar\tb\n");
    let err = load(&tsv_named_csv, &cols("t", "l")).unwrap_err().to_string();
    assert!(err.contains("is this a TSV file? Rename it to .tsv"), "{err}");
    let dir = tsv_named_csv.parent().unwrap();
    let err = load(dir, &cols("t", "l")).unwrap_err().to_string();
    assert!(err.contains("is a directory"), "{err}");
    let bom = write(
        "bom.jsonl",
        b"\xEF\xBB\xBF{\"t\": \"foo\", \"l\": 1}\n{\"t\": \"bar\", \"l\": 0}\n",
    );
    assert_eq!(load(&bom, &cols("t", "l")).unwrap().texts, ["foo", "bar"]);
    let bom_csv = write("bom.csv", b"\xEF\xBB\xBFt,l\nfoo,a\nbar,b\n");
    assert_eq!(load(&bom_csv, &cols("t", "l")).unwrap().labels, [0, 1]);
    let not_object = write("array.jsonl", b"[1, 2]\n");
    let err = load(&not_object, &cols("t", "l")).unwrap_err().to_string();
    assert!(err.contains("line 1") && err.contains("array"), "{err}");
    let blank_header = write("blank-header.csv", b"\n\nfoo,a\n");
    let err = load(&blank_header, &cols("t", "l")).unwrap_err().to_string();
    assert!(
        !err.contains("columns are: ;") && !err.ends_with("columns are: "),
        "{err}"
    );
}

#[test]
fn the_data_is_bound_to_its_bytes() {
    let a = write("hash-a.csv", b"t,l\nfoo,a\nbar,b\n");
    let first = load(&a, &cols("t", "l")).unwrap().sha256.unwrap();
    assert_eq!(first.len(), 64);
    let b = write("hash-b.csv", b"t,l\nfoo,b\nbar,a\n");
    assert_ne!(load(&b, &cols("t", "l")).unwrap().sha256.unwrap(), first);
}

#[test]
fn errors_name_file_row_and_field() {
    let missing = load(Path::new("/no/such.csv"), &cols("t", "l"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("/no/such.csv"), "{missing}");
    let p = write("c.csv", b"t,l\nfoo,a\nbar,b\n");
    let err = load(&p, &cols("text", "l")).unwrap_err().to_string();
    assert!(err.contains("'text'") && err.contains("t, l"), "{err}");
    let one = write("one.csv", b"t,l\nfoo,a\nbar,a\n");
    assert!(
        load(&one, &cols("t", "l"))
            .unwrap_err()
            .to_string()
            .contains("two classes")
    );
    let empty = write("empty.csv", b"t,l\nfoo,a\n,b\n");
    let err = load(&empty, &cols("t", "l")).unwrap_err().to_string();
    assert!(err.contains("row 3") && err.contains("\"t\""), "{err}");
    let latin1 = write("latin.csv", b"t,l\nfo\xe9,a\nbar,b\n");
    let err = load(&latin1, &cols("t", "l")).unwrap_err().to_string();
    assert!(err.contains("line 2") && err.contains("UTF-8"), "{err}");
    let unmapped = Columns {
        label_order: Some(vec!["a".into()]),
        ..cols("t", "l")
    };
    let err = load(&p, &unmapped).unwrap_err().to_string();
    assert!(err.contains("row 3") && err.contains("\"b\""), "{err}");
    let bad_json = write("bad.jsonl", b"{\"t\": \"x\", \"l\": 1}\n{\"t\": \n");
    let err = load(&bad_json, &cols("t", "l")).unwrap_err().to_string();
    assert!(err.contains("line 2"), "{err}");
}
