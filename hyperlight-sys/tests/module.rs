//! The module region on KVM: bytes the host gives a sandbox at build time (a WebAssembly module,
//! a script) reach the guest in a region of its memory mapped read-only, outside the call
//! buffers, bounded by `SandboxConfig::max_module_size`; the guest can read them and can neither
//! write nor execute them; snapshots, and every sandbox built from one, carry them.

mod common;

use hyperlight_sys::schema::abi::BootInfo;
use hyperlight_sys::{Access, Error, Sandbox, SandboxConfig};

/// `len` bytes that differ from page to page (a xorshift sequence).
fn module_bytes(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The FNV-1a hash the `simple` guest's `module_info` computes.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// What the `simple` guest's `module_info` reports: address, length and hash of its module.
fn module_info(sb: &mut Sandbox) -> (u64, u64, u64) {
    let bytes: Vec<u8> = sb.call("module_info", ()).unwrap();
    let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
    (word(0), word(1), word(2))
}

#[test]
fn the_guest_reads_the_module_it_was_built_with() {
    let module = module_bytes(3 * 4096 + 123);
    let mut sb = common::simple().module(module.clone()).build().unwrap();
    let (addr, len, hash) = module_info(&mut sb);
    assert_eq!(len, module.len() as u64);
    assert_eq!(hash, fnv1a(&module));
    assert!(addr != 0 && addr % 4096 == 0, "{addr:#x}");
    // Without a module the guest sees none.
    let mut bare = common::simple().build().unwrap();
    assert_eq!(module_info(&mut bare).1, 0);
}

#[test]
fn a_ten_mebibyte_module_arrives_whole() {
    let module = module_bytes(10 << 20);
    let mut sb = common::simple().module(module.clone()).build().unwrap();
    let (_, len, hash) = module_info(&mut sb);
    assert_eq!((len, hash), (module.len() as u64, fnv1a(&module)));
}

#[test]
fn the_module_is_read_only_and_not_executable_for_the_guest() {
    let module = module_bytes(2 * 4096);
    let mut sb = Sandbox::builder(hyperlight_testing::guest_path("hostile"))
        .module(module.clone())
        .build()
        .unwrap();
    let bytes: Vec<u8> = sb.call("boot_info", ()).unwrap();
    let info = BootInfo::from_le_bytes(bytes.as_slice().try_into().unwrap());
    assert_eq!(info.module_size, module.len() as u64);
    let base = info.module_base;
    let first = u64::from_le_bytes(module[..8].try_into().unwrap());
    assert_eq!(sb.call::<u64>("read_addr", (base,)).unwrap(), first);
    let write = sb.call::<()>("write_addr", (base, 0u64));
    assert!(
        matches!(write, Err(Error::MemoryViolation { addr, access: Access::Write, .. }) if addr == base),
        "write of the module: {write:?}"
    );
    sb.restore().unwrap();
    let exec = sb.call::<()>("exec_addr", (base + 8,));
    assert!(
        matches!(exec, Err(Error::MemoryViolation { addr, access: Access::Execute, .. }) if addr == base + 8),
        "execute of the module: {exec:?}"
    );
    sb.restore().unwrap();
    // The pages after the module (a guard page) are not mapped.
    let end = base + 2 * 4096;
    assert!(matches!(
        sb.call::<u64>("read_addr", (end,)),
        Err(Error::MemoryViolation { addr, access: Access::Read, .. }) if addr == end
    ));
    sb.restore().unwrap();
    assert_eq!(sb.call::<u64>("read_addr", (base,)).unwrap(), first);
}

#[test]
fn a_module_past_the_limit_is_a_typed_error() {
    let config = SandboxConfig {
        max_module_size: 4096,
        ..SandboxConfig::default()
    };
    let too_large = common::simple()
        .config(config.clone())
        .module(module_bytes(4097))
        .build();
    assert!(
        matches!(
            too_large,
            Err(Error::InvalidConfig {
                field: "module size",
                value: 4097,
                ..
            })
        ),
        "{too_large:?}"
    );
    // At the limit it builds.
    let mut sb = common::simple()
        .config(config)
        .module(module_bytes(4096))
        .build()
        .unwrap();
    assert_eq!(module_info(&mut sb).1, 4096);
    // The limit itself is bounded.
    let unbounded = SandboxConfig {
        max_module_size: SandboxConfig::MAX_MODULE + 1,
        ..SandboxConfig::default()
    };
    assert!(matches!(
        unbounded.validate(),
        Err(Error::InvalidConfig {
            field: "max_module_size",
            ..
        })
    ));
}

#[test]
fn sandboxes_from_a_snapshot_share_its_module() {
    let module = module_bytes(5000);
    let builder = common::simple().module(module.clone());
    let mut first = builder.clone().build().unwrap();
    let snapshot = first.post_init_snapshot().clone();
    let expected = module_info(&mut first);
    // Built from the snapshot, with or without the builder's module (ignored for a snapshot).
    for mut sb in [
        builder.source(&snapshot).build().unwrap(),
        common::simple_from(&snapshot).build().unwrap(),
    ] {
        assert_eq!(module_info(&mut sb), expected);
        sb.restore().unwrap();
        assert_eq!(module_info(&mut sb), expected);
    }
}
