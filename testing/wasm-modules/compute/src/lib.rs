//! A test module with compute workloads for a Wasm runner's tests and benchmarks, with the core
//! signatures of the canonical ABI for core modules (the `cabi` crate documents the convention).
//!
//! Exports (Rust signature, then core signature):
//!
//! - `sha256(Vec<u8>) -> Vec<u8>`: `(i32, i32) -> i32`, the 32-byte digest; freed by
//!   `cabi_post_sha256(i32)`.
//! - `sha256_rounds(n: i32) -> i32`: hashes a fixed 1 KiB buffer `n` times, each digest written
//!   back over the buffer's first 32 bytes, and returns the buffer's first 4 bytes (little-endian
//!   `i32`; with `n` ≥ 1, of the last digest): an integer workload with no data transfer.
//! - `nbody(steps: i32) -> f64`: the benchmarks game's n-body simulation of the Sun and the four
//!   outer planets, `steps` steps of 0.01, returning the system's energy afterwards (-0.169075164
//!   at 0 steps, -0.169087605 after 1000): a float workload.
//! - `cabi_realloc(i32, i32, i32, i32) -> i32`.

use sha2::{Digest, Sha256};

/// The allocator export of the convention.
#[unsafe(no_mangle)]
pub extern "C" fn cabi_realloc(old_ptr: i32, old_size: i32, align: i32, new_size: i32) -> i32 {
    // SAFETY: by the convention, the runner passes back only blocks this export returned, with
    // their size and alignment.
    unsafe { cabi::realloc(old_ptr, old_size, align, new_size) }
}

/// The SHA-256 digest of the bytes.
#[unsafe(no_mangle)]
pub extern "C" fn sha256(ptr: i32, len: i32) -> i32 {
    // SAFETY: by the convention, the runner passes a block it allocated for this parameter.
    let bytes = unsafe { cabi::lift_bytes(ptr, len) };
    cabi::lower(Sha256::digest(&bytes).as_slice())
}

/// Frees the result of `sha256`.
#[unsafe(no_mangle)]
pub extern "C" fn cabi_post_sha256(retptr: i32) {
    // SAFETY: by the convention, the runner calls this once per result of `sha256`.
    unsafe { cabi::post_return(retptr) }
}

/// Hashes a 1 KiB buffer (bytes `0, 1, ..., 255, 0, ...`) `n` times, each digest written over the
/// buffer's first 32 bytes; returns the buffer's first 4 bytes as a little-endian `i32`.
#[unsafe(no_mangle)]
pub extern "C" fn sha256_rounds(n: i32) -> i32 {
    let mut buffer: [u8; 1024] = std::array::from_fn(|i| i as u8);
    for _ in 0..n {
        let digest = Sha256::digest(buffer);
        buffer[..32].copy_from_slice(&digest);
    }
    i32::from_le_bytes([buffer[0], buffer[1], buffer[2], buffer[3]])
}

/// A body of the n-body simulation: position, velocity (per day) and mass, in solar-system
/// units.
#[derive(Clone, Copy)]
struct Body {
    position: [f64; 3],
    velocity: [f64; 3],
    mass: f64,
}

const PI: f64 = std::f64::consts::PI;
const SOLAR_MASS: f64 = 4.0 * PI * PI;
const DAYS_PER_YEAR: f64 = 365.24;

/// The Sun, Jupiter, Saturn, Uranus and Neptune, as the benchmarks game starts them (the Sun at
/// rest before the momentum correction of [`offset_momentum`]).
const BODIES: [Body; 5] = [
    Body {
        position: [0.0; 3],
        velocity: [0.0; 3],
        mass: SOLAR_MASS,
    },
    Body {
        position: [
            4.841_431_442_464_72e0,
            -1.160_320_044_027_428_4e0,
            -1.036_220_444_711_231_1e-1,
        ],
        velocity: [
            1.660_076_642_744_037e-3 * DAYS_PER_YEAR,
            7.699_011_184_197_404e-3 * DAYS_PER_YEAR,
            -6.904_600_169_720_63e-5 * DAYS_PER_YEAR,
        ],
        mass: 9.547_919_384_243_266e-4 * SOLAR_MASS,
    },
    Body {
        position: [
            8.343_366_718_244_58e0,
            4.124_798_564_124_305e0,
            -4.035_234_171_143_214e-1,
        ],
        velocity: [
            -2.767_425_107_268_624e-3 * DAYS_PER_YEAR,
            4.998_528_012_349_172e-3 * DAYS_PER_YEAR,
            2.304_172_975_737_639_3e-5 * DAYS_PER_YEAR,
        ],
        mass: 2.858_859_806_661_308e-4 * SOLAR_MASS,
    },
    Body {
        position: [
            1.289_436_956_213_913_1e1,
            -1.511_115_140_169_863_1e1,
            -2.233_075_788_926_557_3e-1,
        ],
        velocity: [
            2.964_601_375_647_616e-3 * DAYS_PER_YEAR,
            2.378_471_739_594_809_5e-3 * DAYS_PER_YEAR,
            -2.965_895_685_402_375_6e-5 * DAYS_PER_YEAR,
        ],
        mass: 4.366_244_043_351_563e-5 * SOLAR_MASS,
    },
    Body {
        position: [
            1.537_969_711_485_091_1e1,
            -2.591_931_460_998_796_4e1,
            1.792_587_729_503_711_8e-1,
        ],
        velocity: [
            2.680_677_724_903_893_2e-3 * DAYS_PER_YEAR,
            1.628_241_700_382_423e-3 * DAYS_PER_YEAR,
            -9.515_922_545_197_159e-5 * DAYS_PER_YEAR,
        ],
        mass: 5.151_389_020_466_114_5e-5 * SOLAR_MASS,
    },
];

/// Gives the Sun the velocity that makes the system's total momentum zero.
fn offset_momentum(bodies: &mut [Body; 5]) {
    let mut momentum = [0.0; 3];
    for body in bodies.iter() {
        for (p, v) in momentum.iter_mut().zip(body.velocity) {
            *p += v * body.mass;
        }
    }
    for (v, p) in bodies[0].velocity.iter_mut().zip(momentum) {
        *v = -p / SOLAR_MASS;
    }
}

/// The system's kinetic plus potential energy.
fn energy(bodies: &[Body; 5]) -> f64 {
    let mut energy = 0.0;
    for (i, body) in bodies.iter().enumerate() {
        let speed2: f64 = body.velocity.iter().map(|v| v * v).sum();
        energy += 0.5 * body.mass * speed2;
        for other in &bodies[i + 1..] {
            let distance2: f64 = (0..3)
                .map(|k| (body.position[k] - other.position[k]).powi(2))
                .sum();
            energy -= body.mass * other.mass / distance2.sqrt();
        }
    }
    energy
}

/// Advances the system by `dt` days: velocities from the pairwise gravity, then positions.
fn advance(bodies: &mut [Body; 5], dt: f64) {
    for i in 0..bodies.len() {
        let (left, right) = bodies.split_at_mut(i + 1);
        let body = &mut left[i];
        for other in right {
            let d: [f64; 3] = std::array::from_fn(|k| body.position[k] - other.position[k]);
            let distance2: f64 = d.iter().map(|x| x * x).sum();
            let magnitude = dt / (distance2 * distance2.sqrt());
            for ((v, other_v), d) in body.velocity.iter_mut().zip(&mut other.velocity).zip(d) {
                *v -= d * other.mass * magnitude;
                *other_v += d * body.mass * magnitude;
            }
        }
    }
    for body in bodies.iter_mut() {
        for (x, v) in body.position.iter_mut().zip(body.velocity) {
            *x += dt * v;
        }
    }
}

/// The system's energy after `steps` steps of 0.01 days (none for a negative `steps`).
#[unsafe(no_mangle)]
pub extern "C" fn nbody(steps: i32) -> f64 {
    let mut bodies = BODIES;
    offset_momentum(&mut bodies);
    for _ in 0..steps {
        advance(&mut bodies, 0.01);
    }
    energy(&bodies)
}
