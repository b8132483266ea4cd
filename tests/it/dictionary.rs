use outreach_warehouse::dictionary::Dictionary;

#[test]
fn committed_readme_matches_the_dictionary() {
    let expected = Dictionary::builtin().unwrap().to_markdown();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data-dictionary/README.md");
    let committed = std::fs::read_to_string(path).expect("data-dictionary/README.md exists");
    assert!(
        committed == expected,
        "data-dictionary/README.md is stale: regenerate it with `cargo run --release -- dictionary > data-dictionary/README.md`"
    );
}

#[test]
fn markdown_documents_every_column() {
    let d = Dictionary::builtin().unwrap();
    let md = d.to_markdown();
    for t in d.tables() {
        assert!(md.contains(&format!("## {}", t.name)));
        for c in &t.columns {
            assert!(
                md.contains(&format!("| `{}` |", c.name)),
                "{}.{}",
                t.name,
                c.name
            );
        }
    }
    assert!(md.contains("`police_led`, `co_responder`, `public_health_led`, `peer_led`"));
}

#[test]
fn every_id_column_that_references_nothing_declares_its_pattern() {
    use outreach_warehouse::dictionary::{ColumnClass, ColumnType, IDENTIFIER_EXAMPLES, IdPattern};
    let d = Dictionary::builtin().unwrap();
    let md = d.to_markdown();
    for t in d.tables() {
        for c in &t.columns {
            if c.ty != ColumnType::Id || c.references.is_some() {
                continue;
            }
            let text = c
                .pattern
                .as_deref()
                .unwrap_or_else(|| panic!("{}.{} declares no pattern", t.name, c.name));
            let p = IdPattern::parse(text).unwrap();
            // No declared format lets a written SSN or phone number through.
            for e in IDENTIFIER_EXAMPLES {
                assert!(
                    !p.matches(e.as_bytes()),
                    "{}.{} accepts {e}",
                    t.name,
                    c.name
                );
            }
            assert!(
                md.contains(&format!("pattern `{}`", text.replace('|', "\\|"))),
                "{}.{}",
                t.name,
                c.name
            );
            // A pseudonymous key is a letter-first key or a digest, and no short raw number
            // passes as one (ingest rejects a longer one of digits only).
            if c.class == ColumnClass::PersonKey {
                assert!(p.matches(b"pk0123456789abcdef"));
                assert!(p.matches("0123456789abcdef".repeat(8).as_bytes()));
                assert!(p.matches(b"3fa85f64-5717-4562-b3fc-2c963f66afa6"));
                for raw in ["123456789", "0012345", "MRN:12345", "a.b", "_pk"] {
                    assert!(
                        !p.matches(raw.as_bytes()),
                        "{}.{} accepts {raw}",
                        t.name,
                        c.name
                    );
                }
            }
        }
    }
}
