//! `docs/architecture.md` maps every file of `hyperlight-sys/src`, one row each: the map and the
//! tree stay equal.

use std::collections::BTreeSet;
use std::path::Path;

fn files(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).unwrap();
            out.insert(relative.to_str().unwrap().replace('\\', "/"));
        }
    }
}

#[test]
fn the_architecture_map_lists_exactly_the_source_files() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = crate_dir.join("src");
    let mut tree = BTreeSet::new();
    files(&src, &src, &mut tree);
    let doc = std::fs::read_to_string(crate_dir.join("../docs/architecture.md")).unwrap();
    let section = doc
        .split("## The folders of `hyperlight-sys`")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/architecture.md has the folder map");
    let mapped: BTreeSet<String> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_string)
        .collect();
    let missing: Vec<_> = tree.difference(&mapped).collect();
    let stale: Vec<_> = mapped.difference(&tree).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "files without a row: {missing:?}; rows without a file: {stale:?}"
    );
}
