//! The guide's standalone guest crate (`docs/guest-template/`), built as a new user builds it:
//! copied to a directory outside both workspaces, `hyperlight-guest` pointed at by path, `cargo
//! build --release --target x86_64-unknown-none` with nothing else, its logic unit-tested on the
//! host with `cargo test --target x86_64-unknown-linux-gnu`, and the ELF loaded by path. Then the
//! guide's advice for `|| loop {}`: the error it shows, and the fix.

use std::path::{Path, PathBuf};
use std::process::Output;

use hyperlight_sys::schema::ErrorCode;
use hyperlight_sys::{Error, Sandbox};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Copies the files of `from` into `to`, recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Runs `cargo <args>` in `dir`, sharing one target dir across runs (so that only the copied
/// crate is rebuilt).
fn run_cargo(dir: &Path, args: &[&str]) -> Output {
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("guest-template");
    hyperlight_testing::guest_cargo()
        .current_dir(dir)
        .args(args)
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .unwrap()
}

/// [`run_cargo`], which must succeed without a warning.
fn cargo(dir: &Path, args: &[&str]) -> Output {
    let output = run_cargo(dir, args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cargo {args:?} failed:\n{stderr}");
    assert!(
        !stderr.contains("warning"),
        "cargo {args:?} warned:\n{stderr}"
    );
    output
}

const BUILD: &[&str] = &["build", "--release", "--target", "x86_64-unknown-none"];

#[test]
fn the_guide_template_builds_out_of_tree_and_runs_from_its_path() {
    let dir =
        std::env::temp_dir().join(format!("hyperlight-guest-template-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&repo().join("docs/guest-template"), &dir);
    // What the guide tells a user to change: where hyperlight-guest is.
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let relative = r#"path = "../../guest/hyperlight-guest" }"#;
    assert!(
        text.contains(relative),
        "the template names hyperlight-guest by path"
    );
    let library = repo().join("guest/hyperlight-guest");
    let absolute = format!("path = {:?} }}", library.display().to_string());
    std::fs::write(&manifest, text.replace(relative, &absolute)).unwrap();
    assert!(
        !dir.ancestors()
            .any(|d| d.join("Cargo.toml").is_file() && d != dir),
        "{} is inside a cargo project",
        dir.display()
    );

    // The logic, on the host.
    let tested = cargo(&dir, &["test", "--target", "x86_64-unknown-linux-gnu"]);
    let stdout = String::from_utf8_lossy(&tested.stdout);
    assert!(
        stdout.contains("test tests::greets_and_divides ... ok"),
        "{stdout}"
    );

    // The guest, as the guide builds it.
    cargo(&dir, BUILD);
    let elf = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("guest-template/x86_64-unknown-none/release/my-guest");
    let mut sandbox = Sandbox::builder(&elf)
        .host_fn("host_add", |a: i32, b: i32| a.wrapping_add(b))
        .build()
        .unwrap_or_else(|e| panic!("{}: {e}", elf.display()));
    let hello: String = sandbox.call("greet", ("Ada".to_string(),)).unwrap();
    assert_eq!(hello, "hello Ada");
    assert_eq!(sandbox.call::<i64>("checked_div", (7i64, 2i64)).unwrap(), 3);
    let failed = sandbox
        .call::<i64>("checked_div", (1i64, 0i64))
        .unwrap_err();
    assert!(
        matches!(&failed, Error::GuestCall { code: ErrorCode::GuestFunctionFailed, message } if message == "division by zero"),
        "{failed:?}"
    );
    assert_eq!(
        sandbox.call::<i32>("add_via_host", (40i32, 2i32)).unwrap(),
        42
    );

    // The guide's pitfall: a function that never returns, first as a newcomer writes it, then
    // with the return type the guide says to write.
    let main = dir.join("src/main.rs");
    let source = std::fs::read_to_string(&main).unwrap();
    let register = "    register_fn(\"checked_div\", my_guest::checked_div);\n";
    assert!(source.contains(register));
    let with = |line: &str| source.replace(register, &format!("{register}    {line}\n"));
    std::fs::write(&main, with("register_fn(\"spin\", || loop {});")).unwrap();
    let refused = run_cargo(&dir, BUILD);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("`!` is not a type a guest function can return")
            && stderr.contains("|| -> () { loop {} }"),
        "{stderr}"
    );
    std::fs::write(&main, with("register_fn(\"spin\", || -> () { loop {} });")).unwrap();
    cargo(&dir, BUILD);
    std::fs::remove_dir_all(&dir).unwrap();
}
