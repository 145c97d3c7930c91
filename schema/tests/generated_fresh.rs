//! The checked-in flatc output (`schema/src/generated/`) matches the schemas (`schema/fbs/`).
//!
//! `scripts/regen-schema.sh` writes `schema/src/generated/SOURCE_HASH`: the flatc version, a
//! SHA-256 of the `.fbs` files and one of the generated files. This test recomputes both hashes
//! without flatc, so editing a schema without regenerating (or hand-editing generated code) fails
//! the normal test suite. Where the pinned flatc is installed (`.tools/flatc`, as the script
//! installs it; `scripts/test.sh` installs it first), it also runs `scripts/regen-schema.sh
//! --check`, a byte-for-byte comparison; elsewhere that test is reported skipped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The flatc version the generated code must come from: the `flatbuffers` crate's version.
const FLATC_VERSION: &str = "25.12.19";

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn source_hash_field(name: &str) -> String {
    let path = schema_dir().join("src/generated/SOURCE_HASH");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let prefix = format!("{name}: ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{} has no `{name}` line", path.display()))
        .trim()
        .to_string()
}

/// Files under `dir` (recursively) accepted by `keep`, as `/`-separated relative paths.
fn files(dir: &Path, keep: &dyn Fn(&Path) -> bool) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, keep: &dyn Fn(&Path) -> bool, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, keep, out);
            } else if keep(&path) {
                let rel = path.strip_prefix(root).unwrap();
                let parts: Vec<_> = rel
                    .components()
                    .map(|c| c.as_os_str().to_str().unwrap().to_string())
                    .collect();
                out.push(parts.join("/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, keep, &mut out);
    out.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    out
}

/// What `sha256sum FILES... | sha256sum` prints (the script's `tree_hash`), run in `dir`.
fn tree_hash(dir: &Path, files: &[String]) -> String {
    let mut listing = String::new();
    for f in files {
        let data = fs::read(dir.join(f)).unwrap();
        listing.push_str(&hex(&sha256(&data)));
        listing.push_str("  ");
        listing.push_str(f);
        listing.push('\n');
    }
    hex(&sha256(listing.as_bytes()))
}

fn has_ext(path: &Path, ext: &str) -> bool {
    path.extension().is_some_and(|e| e == ext)
}

#[test]
fn generated_code_comes_from_the_pinned_flatc() {
    assert_eq!(source_hash_field("flatc-version"), FLATC_VERSION);
}

#[test]
fn generated_code_matches_the_schemas() {
    let fbs = schema_dir().join("fbs");
    // Only the top directory, as the script hashes `*.fbs`.
    let names = files(&fbs, &|p| {
        has_ext(p, "fbs") && p.parent() == Some(fbs.as_path())
    });
    assert!(!names.is_empty());
    assert_eq!(
        tree_hash(&fbs, &names),
        source_hash_field("fbs-sha256"),
        "schema/fbs changed since schema/src/generated was generated: run scripts/regen-schema.sh"
    );
}

#[test]
fn generated_code_is_unedited() {
    let dir = schema_dir().join("src/generated");
    let names = files(&dir, &|p| has_ext(p, "rs"));
    assert!(names.iter().any(|n| n == "mod.rs"));
    assert_eq!(
        tree_hash(&dir, &names),
        source_hash_field("generated-sha256"),
        "schema/src/generated differs from what scripts/regen-schema.sh wrote: run it again"
    );
}

#[test]
fn regen_script_check_passes_where_flatc_is_installed() {
    let schema = schema_dir().canonicalize().unwrap();
    let root = schema.parent().unwrap();
    let flatc = root.join(".tools/flatc/flatc/bin/flatc");
    let version = Command::new(&flatc).arg("--version").output();
    let installed = matches!(&version, Ok(o) if o.status.success()
        && String::from_utf8_lossy(&o.stdout).trim() == format!("flatc version {FLATC_VERSION}"));
    if !installed {
        hyperlight_testing::skip(format!(
            "{} is not flatc {FLATC_VERSION} (`scripts/regen-schema.sh --install` installs it)",
            flatc.display()
        ));
        return;
    }
    let out = Command::new("bash")
        .arg(root.join("scripts/regen-schema.sh"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/regen-schema.sh --check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sha256_known_answers() {
    assert_eq!(
        hex(&sha256(b"")),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        hex(&sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        hex(&sha256(
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        )),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    assert_eq!(
        hex(&sha256(&[b'a'; 1_000_000])),
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
    );
}

// ---------------------------------------------------------------------------------------------
// A small SHA-256 (FIPS 180-4), so that this test needs neither flatc nor a hashing crate.

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64).wrapping_mul(8)).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes(word.try_into().unwrap());
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
