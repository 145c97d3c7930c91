//! `HYPERLIGHT_CRASH_DUMP_DIR` turns crash dumps on for sandboxes whose configuration sets no
//! directory, and a configured directory wins over it. Its own test binary, since it sets the
//! variable for the whole process.

mod common;

use hyperlight_sys::SandboxConfig;

/// The `.core` files in `dir`.
fn cores(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter(|e| {
                let path = e.as_ref().unwrap().path();
                path.extension().is_some_and(|x| x == "core")
            })
            .count()
    })
}

#[test]
fn the_environment_variable_turns_dumps_on_unless_the_config_names_a_directory() {
    let base = std::env::temp_dir().join(format!("hl-dump-env-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (from_env, from_config) = (base.join("env"), base.join("config"));
    std::env::set_var(SandboxConfig::CRASH_DUMP_DIR_ENV, &from_env);
    let mut sb = common::simple().build().unwrap();
    sb.call::<u64>("fault_in_callee", (1u64,)).unwrap_err();
    assert_eq!(cores(&from_env), 1);
    let config = SandboxConfig {
        crash_dump_dir: Some(from_config.clone()),
        ..SandboxConfig::default()
    };
    let mut sb = common::simple().config(config).build().unwrap();
    sb.call::<u64>("fault_in_callee", (1u64,)).unwrap_err();
    assert_eq!((cores(&from_env), cores(&from_config)), (1, 1));
    let _ = std::fs::remove_dir_all(&base);
}
