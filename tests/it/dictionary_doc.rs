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
