//! Tests of the ELF loader.

#![allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::as_conversions
)]

use super::*;

const R: u32 = PF_R;
const RX: u32 = PF_R | PF_X;
const RW: u32 = PF_R | PF_W;
const PT_NULL: u32 = 0;
const PT_GNU_STACK: u32 = 0x6474_e551;
const R_X86_64_64: u64 = 1;

// Fixture layout, as file offsets; link-time addresses are `vbase + offset`.
// 0x0000 R  segment [0x0000, 0x2000): ELF header, program headers, RELA at 0x1000,
//                                      RELR at 0x1800, rodata at 0x1c00
// 0x2000 RX segment [0x2000, 0x2100): code (the entry point)
// 0x3000 RW segment [0x3000, 0x3400) in the file, [0x3000, 0x6000) in memory (bss after
//                                      0x3400); relocated data at 0x3000, DYNAMIC at 0x3200
const RELA_OFF: usize = 0x1000;
const RELR_OFF: usize = 0x1800;
const RODATA_OFF: usize = 0x1c00;
const CODE_OFF: usize = 0x2000;
const DATA_OFF: usize = 0x3000;
const DYN_OFF: usize = 0x3200;
const FILE_LEN: usize = 0x3400;
const SPAN: u64 = 0x6000;
const CODE: [u8; 3] = [0xf4, 0xeb, 0xfd]; // hlt; jmp -3

#[derive(Clone, Copy, Debug)]
struct Ph {
    p_type: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
}

/// A synthetic static PIE, editable before `build`.
#[derive(Clone)]
struct Fixture {
    vbase: u64,
    e_type: u16,
    machine: u16,
    entry: u64,
    phnum: Option<u16>,
    phdrs: Vec<Ph>,
    /// (r_offset, r_info, r_addend)
    rela: Vec<(u64, u64, u64)>,
    relr: Vec<u64>,
    extra_dyn: Vec<(u64, u64)>,
    dyn_override: Option<Vec<(u64, u64)>>,
    data: Vec<(usize, Vec<u8>)>,
}

fn ph(p_type: u32, flags: u32, offset: u64, vaddr: u64, size: (u64, u64), align: u64) -> Ph {
    Ph {
        p_type,
        flags,
        offset,
        vaddr,
        filesz: size.0,
        memsz: size.1,
        align,
    }
}

impl Fixture {
    fn new() -> Self {
        Self::with_vbase(0)
    }

    fn with_vbase(v: u64) -> Self {
        let rodata: Vec<u8> = (0..0x400u32).map(|i| (i % 251) as u8 | 1).collect();
        Self {
            vbase: v,
            e_type: ET_DYN,
            machine: EM_X86_64,
            entry: v + 0x2000,
            phnum: None,
            phdrs: vec![
                ph(PT_LOAD, R, 0, v, (0x2000, 0x2000), 0x1000),
                ph(PT_LOAD, RX, 0x2000, v + 0x2000, (0x100, 0x100), 0x1000),
                ph(PT_LOAD, RW, 0x3000, v + 0x3000, (0x400, 0x3000), 0x1000),
                ph(PT_DYNAMIC, RW, 0x3200, v + 0x3200, (0x200, 0x200), 8),
                ph(PT_GNU_STACK, RW, 0, 0, (0, 0), 0),
            ],
            rela: vec![
                (v + 0x3000, u64::from(R_X86_64_RELATIVE), v + 0x2000),
                (v + 0x3008, u64::from(R_X86_64_RELATIVE), v + 0x1c00),
                (v + 0x3010, u64::from(R_X86_64_RELATIVE), v + 0x3100),
            ],
            relr: Vec::new(),
            extra_dyn: Vec::new(),
            dyn_override: None,
            data: vec![
                (CODE_OFF, CODE.to_vec()),
                (RODATA_OFF, rodata),
                (DATA_OFF + 0x100, vec![0x5a; 0x100]),
            ],
        }
    }

    fn dynamic(&self) -> Vec<(u64, u64)> {
        if let Some(d) = &self.dyn_override {
            return d.clone();
        }
        let v = self.vbase;
        let mut d = vec![(0x1e, 8), (0x6fff_fffb, 0x0800_0001), (0x15, 0)];
        if !self.rela.is_empty() {
            let n = self.rela.len() as u64;
            d.extend([
                (DT_RELA, v + RELA_OFF as u64),
                (DT_RELASZ, n * 24),
                (DT_RELAENT, 24),
                (DT_RELACOUNT, n),
            ]);
        }
        if !self.relr.is_empty() {
            d.extend([
                (DT_RELR, v + RELR_OFF as u64),
                (DT_RELRSZ, self.relr.len() as u64 * 8),
                (DT_RELRENT, 8),
            ]);
        }
        d.extend(self.extra_dyn.iter().copied());
        d.push((DT_NULL, 0));
        d
    }

    fn build(&self) -> Vec<u8> {
        let mut f = vec![0u8; FILE_LEN];
        let p16 = |f: &mut Vec<u8>, o: usize, x: u16| f[o..o + 2].copy_from_slice(&x.to_le_bytes());
        let p32 = |f: &mut Vec<u8>, o: usize, x: u32| f[o..o + 4].copy_from_slice(&x.to_le_bytes());
        let p64 = |f: &mut Vec<u8>, o: usize, x: u64| f[o..o + 8].copy_from_slice(&x.to_le_bytes());
        f[0..4].copy_from_slice(b"\x7fELF");
        f[4] = ELFCLASS64;
        f[5] = ELFDATA2LSB;
        f[6] = 1;
        p16(&mut f, 16, self.e_type);
        p16(&mut f, 18, self.machine);
        p32(&mut f, 20, EV_CURRENT);
        p64(&mut f, 24, self.entry);
        p64(&mut f, 32, EHDR_SIZE as u64);
        p16(&mut f, 52, EHDR_SIZE as u16);
        p16(&mut f, 54, PHDR_SIZE as u16);
        p16(&mut f, 56, self.phnum.unwrap_or(self.phdrs.len() as u16));
        p16(&mut f, 58, 64);
        for (i, h) in self.phdrs.iter().enumerate() {
            let o = EHDR_SIZE + i * PHDR_SIZE;
            assert!(
                o + PHDR_SIZE <= RELA_OFF,
                "too many fixture program headers"
            );
            p32(&mut f, o, h.p_type);
            p32(&mut f, o + 4, h.flags);
            p64(&mut f, o + 8, h.offset);
            p64(&mut f, o + 16, h.vaddr);
            p64(&mut f, o + 24, h.vaddr);
            p64(&mut f, o + 32, h.filesz);
            p64(&mut f, o + 40, h.memsz);
            p64(&mut f, o + 48, h.align);
        }
        for (o, bytes) in &self.data {
            f[*o..*o + bytes.len()].copy_from_slice(bytes);
        }
        assert!(self.rela.len() * 24 <= RELR_OFF - RELA_OFF);
        for (i, (off, info, addend)) in self.rela.iter().enumerate() {
            let o = RELA_OFF + i * 24;
            p64(&mut f, o, *off);
            p64(&mut f, o + 8, *info);
            p64(&mut f, o + 16, *addend);
        }
        assert!(self.relr.len() * 8 <= RODATA_OFF - RELR_OFF);
        for (i, w) in self.relr.iter().enumerate() {
            p64(&mut f, RELR_OFF + i * 8, *w);
        }
        let d = self.dynamic();
        assert!(d.len() * 16 <= FILE_LEN - DYN_OFF);
        for (i, (tag, val)) in d.iter().enumerate() {
            p64(&mut f, DYN_OFF + i * 16, *tag);
            p64(&mut f, DYN_OFF + i * 16 + 8, *val);
        }
        f
    }

    fn parse_err(&self) -> ElfError {
        let bytes = self.build();
        ElfImage::parse(&bytes).expect_err("fixture should be rejected")
    }
}

/// Loads into `mem_len` bytes of guest memory prefilled with 0xcc.
fn load(bytes: &[u8], base: u64, mem_len: usize) -> (Result<LoadedImage, ElfError>, Vec<u8>) {
    let image = ElfImage::parse(bytes).expect("fixture should parse");
    let mut mem = vec![0xccu8; mem_len];
    let r = image.load(&mut mem, base);
    (r, mem)
}

fn word(mem: &[u8], at: u64) -> u64 {
    u64::from_le_bytes(mem[at as usize..at as usize + 8].try_into().unwrap())
}

const fn perms(read: bool, write: bool, execute: bool) -> SegmentPerms {
    SegmentPerms {
        read,
        write,
        execute,
    }
}

#[test]
fn valid_image_loads() {
    let fx = Fixture::new();
    let file = fx.build();
    let image = ElfImage::parse(&file).unwrap();
    assert_eq!(image.span(), SPAN);
    assert_eq!(image.alignment(), PAGE_SIZE);
    assert!(format!("{image:?}").contains("span"));

    let base = 0x10000u64;
    let (r, mem) = load(&file, base, 0x20000);
    let loaded = r.unwrap();
    let b = base as usize;
    assert_eq!(
        loaded,
        LoadedImage {
            base,
            entry: base + 0x2000,
            segments: vec![
                LoadedSegment {
                    start: base,
                    end: base + 0x2000,
                    perms: perms(true, false, false)
                },
                LoadedSegment {
                    start: base + 0x2000,
                    end: base + 0x3000,
                    perms: perms(true, false, true)
                },
                LoadedSegment {
                    start: base + 0x3000,
                    end: base + 0x6000,
                    perms: perms(true, true, false)
                },
            ],
            end: base + SPAN,
        }
    );
    // Outside the span: untouched.
    assert!(mem[..b].iter().all(|&x| x == 0xcc));
    assert!(mem[b + SPAN as usize..].iter().all(|&x| x == 0xcc));
    // File data copied (headers, rodata, code, data, dynamic).
    assert_eq!(&mem[b..b + 0x3000][..0x100], &file[..0x100]);
    assert_eq!(&mem[b + 0x1c00..b + 0x2000], &file[0x1c00..0x2000]);
    assert_eq!(&mem[b + 0x2000..b + 0x2100], &file[0x2000..0x2100]);
    assert_eq!(&mem[b + 0x3018..b + 0x3400], &file[0x3018..0x3400]);
    // Gap after the code segment and bss: zero.
    assert!(mem[b + 0x2100..b + 0x3000].iter().all(|&x| x == 0));
    assert!(mem[b + 0x3400..b + 0x6000].iter().all(|&x| x == 0));
    // Relocations.
    assert_eq!(word(&mem, base + 0x3000), base + 0x2000);
    assert_eq!(word(&mem, base + 0x3008), base + 0x1c00);
    assert_eq!(word(&mem, base + 0x3010), base + 0x3100);
    assert_eq!(&mem[b + 0x2000..b + 0x2003], &CODE);
}

#[test]
fn load_at_zero_and_end_of_memory() {
    let file = Fixture::new().build();
    let (r, mem) = load(&file, 0, SPAN as usize);
    let loaded = r.unwrap();
    assert_eq!(loaded.entry, 0x2000);
    assert_eq!(loaded.end, SPAN);
    assert_eq!(word(&mem, 0x3000), 0x2000);
    // Exactly fits at the end of a larger memory.
    let (r, _) = load(&file, 0x4000, 0x4000 + SPAN as usize);
    assert_eq!(r.unwrap().end, 0x4000 + SPAN);
}

#[test]
fn relocations_scale_with_base() {
    // Load at two bases: relocated words differ by the base difference, all else is equal.
    let mut fx = Fixture::new();
    fx.relr = vec![0x3020, 0b1011]; // 0x3020, then bitmap: 0x3028, 0x3038
    let file = fx.build();
    let (r1, m1) = load(&file, 0x1000, 0x20000);
    let (r2, m2) = load(&file, 0x9000, 0x20000);
    r1.unwrap();
    r2.unwrap();
    let relocated = [0x3000u64, 0x3008, 0x3010, 0x3020, 0x3028, 0x3038];
    for off in 0..SPAN {
        let (a, b) = (m1[(0x1000 + off) as usize], m2[(0x9000 + off) as usize]);
        if !relocated.iter().any(|r| (*r..r + 8).contains(&off)) {
            assert_eq!(a, b, "offset {off:#x}");
        }
    }
    for r in relocated {
        assert_eq!(
            word(&m2, 0x9000 + r).wrapping_sub(word(&m1, 0x1000 + r)),
            0x8000
        );
    }
}

#[test]
fn relr_applied() {
    let mut fx = Fixture::new();
    fx.rela.clear();
    // Implicit addends stored in the data.
    let mut data = Vec::new();
    for addend in [0x2000u64, 0x1c00, 0, 0x1234, 0x3333, 0x3000] {
        data.extend_from_slice(&addend.to_le_bytes());
    }
    fx.data.push((DATA_OFF + 0x40, data));
    // 0x3040 (address), bitmap bits 1,2: 0x3048, 0x3050; bit 4 -> 0x3060.
    // Then a second bitmap continuing at 0x3048 + 63 * 8 = 0x3240: bit 1 -> 0x3240.
    fx.relr = vec![0x3040, 0b1_0111, 0b11];
    let file = fx.build();
    let base = 0x40000u64;
    let (r, mem) = load(&file, base, 0x80000);
    r.unwrap();
    assert_eq!(word(&mem, base + 0x3040), base + 0x2000);
    assert_eq!(word(&mem, base + 0x3048), base + 0x1c00);
    assert_eq!(word(&mem, base + 0x3050), base);
    assert_eq!(word(&mem, base + 0x3058), 0x1234); // bit 3 clear
    assert_eq!(word(&mem, base + 0x3060), base + 0x3333);
    // 0x3240 is in the dynamic section (DT_RELA tag area); it gets relocated too.
    let dyn_word = u64::from_le_bytes(file[0x3240..0x3248].try_into().unwrap());
    assert_eq!(word(&mem, base + 0x3240), dyn_word.wrapping_add(base));
}

#[test]
fn negative_addend_and_none_relocation() {
    let mut fx = Fixture::new();
    fx.rela
        .push((0x3018, u64::from(R_X86_64_RELATIVE), (-8i64) as u64));
    fx.rela
        .push((0xdead_beef_0000, u64::from(R_X86_64_NONE), 7)); // ignored
    let file = fx.build();
    let (r, mem) = load(&file, 0x10000, 0x20000);
    r.unwrap();
    assert_eq!(word(&mem, 0x10000 + 0x3018), 0x10000 - 8);
}

#[test]
fn nonzero_link_base() {
    // An ET_DYN linked at 0x400000: the lowest page goes at `base`.
    let fx = Fixture::with_vbase(0x40_0000);
    let file = fx.build();
    let base = 0x8000u64;
    let (r, mem) = load(&file, base, 0x20000);
    let loaded = r.unwrap();
    assert_eq!(loaded.entry, base + 0x2000);
    assert_eq!(loaded.end, base + SPAN);
    assert_eq!(loaded.segments[0].start, base);
    assert_eq!(word(&mem, base + 0x3000), base + 0x2000);
    assert_eq!(word(&mem, base + 0x3010), base + 0x3100);
}

#[test]
fn no_dynamic_section() {
    let mut fx = Fixture::new();
    fx.phdrs.remove(3);
    fx.rela.clear();
    let file = fx.build();
    let (r, mem) = load(&file, 0x1000, 0x10000);
    r.unwrap();
    assert_eq!(word(&mem, 0x1000 + 0x3000), 0); // nothing relocated
}

#[test]
fn same_permission_segments_sharing_a_page_merge() {
    let mut fx = Fixture::new();
    // Split the RW segment in two, the second starting mid-page right after the first.
    fx.phdrs[2] = ph(PT_LOAD, RW, 0x3000, 0x3000, (0x300, 0x300), 0x1000);
    fx.phdrs
        .insert(3, ph(PT_LOAD, RW, 0x3300, 0x3300, (0x100, 0x2d00), 0x1000));
    let file = fx.build();
    let (r, _) = load(&file, 0x1000, 0x10000);
    let segs = r.unwrap().segments;
    assert_eq!(segs.len(), 3);
    assert_eq!((segs[2].start, segs[2].end), (0x4000, 0x7000));
    // Merely adjacent segments are not merged.
    let mut fx = Fixture::new();
    fx.phdrs[0] = ph(PT_LOAD, R, 0, 0, (0x1000, 0x1000), 0x1000);
    fx.phdrs
        .insert(1, ph(PT_LOAD, R, 0x1000, 0x1000, (0x1000, 0x1000), 0x1000));
    let file = fx.build();
    let (r, _) = load(&file, 0x1000, 0x10000);
    assert_eq!(r.unwrap().segments.len(), 4);
}

#[test]
fn every_truncation_is_rejected() {
    let file = Fixture::new().build();
    ElfImage::parse(&file).unwrap();
    for len in 0..file.len() {
        assert!(
            ElfImage::parse(&file[..len]).is_err(),
            "prefix {len} parsed"
        );
    }
    assert_eq!(
        ElfImage::parse(&file[..10]),
        Err(ElfError::TooShort { len: 10, need: 64 })
    );
    assert_eq!(
        ElfImage::parse(&file[..63]),
        Err(ElfError::TooShort { len: 63, need: 64 })
    );
    assert!(matches!(
        ElfImage::parse(&file[..0x3300]),
        Err(ElfError::SegmentOutOfFile { index: 2, .. })
    ));
}

#[test]
fn header_checks() {
    let good = Fixture::new().build();
    let patched = |o: usize, bytes: &[u8]| {
        let mut f = good.clone();
        f[o..o + bytes.len()].copy_from_slice(bytes);
        ElfImage::parse(&f).map(|_| ())
    };
    assert_eq!(patched(0, b"\x7fELG"), Err(ElfError::BadMagic));
    assert_eq!(patched(4, &[1]), Err(ElfError::NotElf64 { class: 1 }));
    assert_eq!(patched(5, &[2]), Err(ElfError::NotLittleEndian { data: 2 }));
    assert_eq!(patched(6, &[0]), Err(ElfError::BadVersion { version: 0 }));
    assert_eq!(
        patched(20, &2u32.to_le_bytes()),
        Err(ElfError::BadVersion { version: 2 })
    );
    assert_eq!(
        patched(18, &3u16.to_le_bytes()),
        Err(ElfError::WrongMachine { machine: 3 })
    );
    assert_eq!(
        patched(16, &2u16.to_le_bytes()),
        Err(ElfError::WrongType { e_type: 2 })
    );
    assert_eq!(
        patched(16, &1u16.to_le_bytes()),
        Err(ElfError::WrongType { e_type: 1 })
    );
    assert_eq!(
        patched(54, &32u16.to_le_bytes()),
        Err(ElfError::BadProgramHeaderSize { phentsize: 32 })
    );
    assert_eq!(
        patched(56, &0u16.to_le_bytes()),
        Err(ElfError::NoLoadableSegments)
    );
    assert_eq!(
        patched(32, &(FILE_LEN as u64 - 100).to_le_bytes()),
        Err(ElfError::ProgramHeadersOutOfBounds {
            offset: FILE_LEN as u64 - 100,
            size: 5 * 56,
            file_len: FILE_LEN as u64
        })
    );
    assert!(matches!(
        patched(32, &u64::MAX.to_le_bytes()),
        Err(ElfError::ProgramHeadersOutOfBounds { .. })
    ));
}

#[test]
fn program_header_limit() {
    let mut fx = Fixture::new();
    fx.phnum = Some(MAX_PROGRAM_HEADERS + 1);
    assert_eq!(
        fx.parse_err(),
        ElfError::TooManyProgramHeaders { count: 65, max: 64 }
    );
    fx.phnum = Some(u16::MAX); // PN_XNUM
    assert!(matches!(
        fx.parse_err(),
        ElfError::TooManyProgramHeaders { .. }
    ));
    // Exactly the limit is fine.
    let mut fx = Fixture::new();
    while fx.phdrs.len() < usize::from(MAX_PROGRAM_HEADERS) {
        fx.phdrs.push(ph(PT_NULL, 0, 0, 0, (0, 0), 0));
    }
    ElfImage::parse(&fx.build()).unwrap();
}

#[test]
fn overlapping_segments() {
    // Raw overlap.
    let mut fx = Fixture::new();
    fx.phdrs[2] = ph(PT_LOAD, RW, 0x30f0, 0x20f0, (0x300, 0x3000), 0x1000);
    assert_eq!(fx.parse_err(), ElfError::OverlappingSegments { a: 1, b: 2 });
    // Sharing a page with different permissions.
    let mut fx = Fixture::new();
    fx.phdrs[2] = ph(PT_LOAD, RW, 0x3100, 0x2100, (0x300, 0x3000), 0x1000);
    assert_eq!(fx.parse_err(), ElfError::OverlappingSegments { a: 1, b: 2 });
    // Same address twice.
    let mut fx = Fixture::new();
    fx.phdrs[1] = ph(PT_LOAD, R, 0, 0, (0x10, 0x10), 0x1000);
    fx.entry = 0x3000;
    assert_eq!(fx.parse_err(), ElfError::OverlappingSegments { a: 0, b: 1 });
    // A big segment covering a later non-adjacent one.
    let mut fx = Fixture::new();
    fx.phdrs[0] = ph(PT_LOAD, R, 0, 0, (0x2000, 0x4000), 0x1000);
    assert_eq!(fx.parse_err(), ElfError::OverlappingSegments { a: 0, b: 1 });
}

#[test]
fn unsorted_segments() {
    let mut fx = Fixture::new();
    fx.phdrs.swap(0, 1);
    assert_eq!(fx.parse_err(), ElfError::SegmentsNotSorted { a: 0, b: 1 });
}

#[test]
fn writable_and_executable() {
    let mut fx = Fixture::new();
    fx.phdrs[1].flags = PF_R | PF_W | PF_X;
    assert_eq!(fx.parse_err(), ElfError::WritableAndExecutable { index: 1 });
    // Even an empty one.
    let mut fx = Fixture::new();
    fx.phdrs
        .push(ph(PT_LOAD, PF_W | PF_X, 0, 0x9000, (0, 0), 0));
    assert_eq!(fx.parse_err(), ElfError::WritableAndExecutable { index: 5 });
}

#[test]
fn segment_past_end_of_file() {
    let mut fx = Fixture::new();
    fx.phdrs[2].filesz = 0x401;
    assert_eq!(
        fx.parse_err(),
        ElfError::SegmentOutOfFile {
            index: 2,
            offset: 0x3000,
            filesz: 0x401,
            file_len: FILE_LEN as u64
        }
    );
    let mut fx = Fixture::new();
    fx.phdrs[2].offset = u64::MAX - 0xfff;
    fx.phdrs[2].vaddr = 0x3000;
    assert!(matches!(
        fx.parse_err(),
        ElfError::SegmentOutOfFile { index: 2, .. }
    ));
    // The dynamic segment too.
    let mut fx = Fixture::new();
    fx.phdrs[3].filesz = 0x201;
    assert!(matches!(
        fx.parse_err(),
        ElfError::SegmentOutOfFile { index: 3, .. }
    ));
}

#[test]
fn bss_only_segment_with_offset_past_eof_is_fine() {
    let mut fx = Fixture::new();
    fx.phdrs
        .push(ph(PT_LOAD, RW, 0x10_0000, 0x10_0000, (0, 0x1000), 0x1000));
    let file = fx.build();
    let image = ElfImage::parse(&file).unwrap();
    assert_eq!(image.span(), 0x10_1000);
    let (r, mem) = load(&file, 0, 0x10_1000);
    let loaded = r.unwrap();
    assert_eq!(loaded.segments.len(), 4);
    assert!(mem[0x6000..].iter().all(|&b| b == 0)); // gap and bss zeroed
}

#[test]
fn file_size_exceeds_mem_size() {
    let mut fx = Fixture::new();
    fx.phdrs[1].memsz = 0x80;
    assert_eq!(
        fx.parse_err(),
        ElfError::FileSizeExceedsMemSize {
            index: 1,
            filesz: 0x100,
            memsz: 0x80
        }
    );
}

#[test]
fn address_overflow() {
    let mut fx = Fixture::new();
    fx.phdrs[2].vaddr = u64::MAX - 0xfff;
    assert!(matches!(fx.parse_err(), ElfError::Overflow { .. }));
    // No overflow for vaddr + memsz, but rounding up to a page overflows.
    let mut fx = Fixture::new();
    fx.phdrs[2] = ph(PT_LOAD, RW, 0x3000, u64::MAX - 0xfff, (0x10, 0x10), 0x1000);
    assert!(matches!(fx.parse_err(), ElfError::Overflow { .. }));
    // The last page of the address space: the end rounds to 2^64.
    let mut fx = Fixture::new();
    fx.phdrs[2] = ph(
        PT_LOAD,
        RW,
        0x3000,
        u64::MAX - 0xfff,
        (0x400, 0x1000),
        0x1000,
    );
    assert!(matches!(fx.parse_err(), ElfError::Overflow { .. }));
    // A huge but representable span simply does not fit.
    let mut fx = Fixture::new();
    fx.phdrs[2] = ph(
        PT_LOAD,
        RW,
        0x3000,
        u64::MAX - 0x2fff,
        (0x400, 0x1000),
        0x1000,
    );
    fx.phdrs.remove(3);
    fx.rela.clear();
    let file = fx.build();
    let image = ElfImage::parse(&file).unwrap();
    assert_eq!(image.span(), u64::MAX - 0x1fff);
    let mut mem = vec![0u8; 0x1000];
    assert!(matches!(
        image.load(&mut mem, 0x1000),
        Err(ElfError::DoesNotFit { .. })
    ));
}

#[test]
fn alignment_checks() {
    let mut fx = Fixture::new();
    fx.phdrs[1].align = 3;
    assert!(matches!(
        fx.parse_err(),
        ElfError::BadAlignment {
            index: 1,
            align: 3,
            ..
        }
    ));
    let mut fx = Fixture::new();
    fx.phdrs[2].offset = 0x3008; // not congruent with vaddr 0x3000
    fx.phdrs[2].filesz = 0x3f8;
    assert!(matches!(
        fx.parse_err(),
        ElfError::BadAlignment { index: 2, .. }
    ));
    // p_align 0 / 1 impose nothing.
    let mut fx = Fixture::new();
    fx.phdrs[2].align = 0;
    fx.phdrs[1].align = 1;
    ElfImage::parse(&fx.build()).unwrap();
}

#[test]
fn large_alignment_constrains_base() {
    let mut fx = Fixture::new();
    fx.phdrs[1].align = 0x20_0000;
    let file = fx.build();
    let image = ElfImage::parse(&file).unwrap();
    assert_eq!(image.alignment(), 0x20_0000);
    let mut mem = vec![0u8; 0x30_0000];
    assert_eq!(
        image.load(&mut mem, 0x1_0000),
        Err(ElfError::BaseNotAligned {
            base: 0x1_0000,
            align: 0x20_0000
        })
    );
    let loaded = image.load(&mut mem, 0x20_0000).unwrap();
    assert_eq!(loaded.entry, 0x20_2000);
}

#[test]
fn entry_must_be_executable() {
    for entry in [0x3000u64, 0x1000, 0x2100, 0x20ff + 1, 0x9000, u64::MAX] {
        let mut fx = Fixture::new();
        fx.entry = entry;
        assert_eq!(fx.parse_err(), ElfError::EntryNotExecutable { entry });
    }
    let mut fx = Fixture::new();
    fx.entry = 0x20ff;
    ElfImage::parse(&fx.build()).unwrap();
}

#[test]
fn no_loadable_segments() {
    let mut fx = Fixture::new();
    fx.phdrs = vec![ph(PT_GNU_STACK, RW, 0, 0, (0, 0), 0)];
    assert_eq!(fx.parse_err(), ElfError::NoLoadableSegments);
    // Empty PT_LOADs do not count.
    fx.phdrs.push(ph(PT_LOAD, R, 0, 0, (0, 0), 0x1000));
    assert_eq!(fx.parse_err(), ElfError::NoLoadableSegments);
}

#[test]
fn unsupported_program_headers() {
    for (p_type, what) in [
        (PT_TLS, "PT_TLS"),
        (PT_INTERP, "PT_INTERP"),
        (PT_SHLIB, "PT_SHLIB"),
    ] {
        let mut fx = Fixture::new();
        fx.phdrs.push(ph(p_type, R, 0, 0, (0x10, 0x10), 8));
        match fx.parse_err() {
            ElfError::Unsupported { what: w } => assert!(w.starts_with(what), "{w}"),
            e => panic!("{e:?}"),
        }
    }
    let mut fx = Fixture::new();
    fx.phdrs.push(fx.phdrs[3]);
    assert!(matches!(fx.parse_err(), ElfError::BadDynamic { .. }));
}

#[test]
fn unsupported_relocation_type() {
    for r_type in [
        R_X86_64_64,
        6, /* GLOB_DAT */
        7, /* JUMP_SLOT */
        0x1_0000_0008,
    ] {
        let mut fx = Fixture::new();
        fx.rela[1].1 = r_type;
        if r_type == 0x1_0000_0008 {
            // Symbol index 1, type RELATIVE: the type is what matters.
            ElfImage::parse(&fx.build()).unwrap();
            continue;
        }
        assert_eq!(
            fx.parse_err(),
            ElfError::UnsupportedRelocation {
                r_type: r_type as u32,
                offset: 0x3008
            }
        );
    }
}

#[test]
fn relocation_out_of_bounds() {
    for offset in [
        SPAN,           // just past the image
        SPAN - 4,       // straddles the end
        0x1ffc,         // straddles the R and RX segments
        0x2100,         // in the gap after the code segment
        u64::MAX - 3,   // overflows
        u64::MAX - 0xf, // fits in u64 but far outside
    ] {
        let mut fx = Fixture::new();
        fx.rela[2].0 = offset;
        assert_eq!(fx.parse_err(), ElfError::RelocationOutOfBounds { offset });
    }
    // The last word of the bss is fine; so is a relocation in a read-only segment
    // (e.g. .data.rel.ro placed in a R segment) or in the code.
    for offset in [SPAN - 8, 0x1c00, 0x20f8] {
        let mut fx = Fixture::new();
        fx.rela[2].0 = offset;
        ElfImage::parse(&fx.build()).unwrap();
    }
    // RELR targets are checked too.
    let mut fx = Fixture::new();
    fx.relr = vec![SPAN];
    assert_eq!(
        fx.parse_err(),
        ElfError::RelocationOutOfBounds { offset: SPAN }
    );
    let mut fx = Fixture::new();
    fx.relr = vec![SPAN - 0x10, 0b111];
    assert_eq!(
        fx.parse_err(),
        ElfError::RelocationOutOfBounds { offset: SPAN }
    );
    let mut fx = Fixture::new();
    fx.relr = vec![u64::MAX - 7, 0b11];
    assert!(fx.build().len() == FILE_LEN);
    assert!(matches!(
        fx.parse_err(),
        ElfError::RelocationOutOfBounds { .. }
    ));
}

#[test]
fn dynamic_section_checks() {
    let bad = |f: &dyn Fn(&mut Fixture)| {
        let mut fx = Fixture::new();
        f(&mut fx);
        fx.parse_err()
    };
    let is_bad_dynamic = |e: ElfError| matches!(e, ElfError::BadDynamic { .. });
    assert!(matches!(
        bad(&|fx| fx.extra_dyn.push((DT_REL, 0x1000))),
        ElfError::Unsupported { .. }
    ));
    assert!(matches!(
        bad(&|fx| fx.extra_dyn.push((DT_RELSZ, 16))),
        ElfError::Unsupported { .. }
    ));
    assert!(matches!(
        bad(&|fx| fx.extra_dyn.push((DT_NEEDED, 1))),
        ElfError::Unsupported { .. }
    ));
    assert!(matches!(
        bad(&|fx| fx.extra_dyn.push((DT_PLTRELSZ, 24))),
        ElfError::Unsupported { .. }
    ));
    assert!(matches!(
        bad(&|fx| fx.extra_dyn.push((DT_ANDROID_RELA, 0x1000))),
        ElfError::Unsupported { .. }
    ));
    assert!(is_bad_dynamic(bad(&|fx| fx
        .extra_dyn
        .push((DT_RELA, 0x1000)))));
    assert!(is_bad_dynamic(bad(&|fx| fx
        .extra_dyn
        .push((DT_RELACOUNT, 99)))));
    assert!(is_bad_dynamic(bad(&|fx| fx.dyn_override = Some(vec![
        (DT_RELACOUNT, 4),
        (DT_RELA, 0x1000),
        (DT_RELASZ, 72)
    ]))));
    assert!(is_bad_dynamic(bad(&|fx| fx.dyn_override = Some(vec![
        (DT_RELA, 0x1000),
        (DT_RELASZ, 72),
        (DT_RELAENT, 16)
    ]))));
    assert!(is_bad_dynamic(bad(
        &|fx| fx.dyn_override = Some(vec![(DT_RELA, 0x1000), (DT_RELASZ, 70)])
    )));
    assert!(is_bad_dynamic(bad(
        &|fx| fx.dyn_override = Some(vec![(DT_RELA, 0x1000)])
    )));
    assert!(is_bad_dynamic(bad(
        &|fx| fx.dyn_override = Some(vec![(DT_RELASZ, 24)])
    )));
    assert!(is_bad_dynamic(bad(
        &|fx| fx.dyn_override = Some(vec![(DT_RELR, 0x1800)])
    )));
    assert!(is_bad_dynamic(bad(
        &|fx| fx.dyn_override = Some(vec![(DT_RELR, 0x1800), (DT_RELRSZ, 12)])
    )));
    assert!(is_bad_dynamic(bad(&|fx| fx.dyn_override = Some(vec![
        (DT_RELR, 0x1800),
        (DT_RELRSZ, 8),
        (DT_RELRENT, 16)
    ]))));
    // A bitmap with no preceding address.
    assert!(is_bad_dynamic(bad(&|fx| fx.relr = vec![0b11])));
    // The relocation table must be in a segment's file data.
    assert_eq!(
        bad(&|fx| fx.dyn_override = Some(vec![(DT_RELA, 0x5000), (DT_RELASZ, 24)])),
        ElfError::RelocationTableOutOfBounds {
            addr: 0x5000,
            size: 24
        }
    );
    assert_eq!(
        bad(&|fx| fx.dyn_override = Some(vec![(DT_RELA, 0x20f0), (DT_RELASZ, 24)])),
        ElfError::RelocationTableOutOfBounds {
            addr: 0x20f0,
            size: 24
        }
    );
    assert!(matches!(
        bad(&|fx| fx.dyn_override = Some(vec![(DT_RELR, u64::MAX - 7), (DT_RELRSZ, 16)])),
        ElfError::RelocationTableOutOfBounds { .. }
    ));
    // Too many entries, checked before anything is read.
    assert_eq!(
        bad(&|fx| fx.dyn_override = Some(vec![
            (DT_RELA, 0x1000),
            (DT_RELASZ, 24 * (MAX_RELOCATIONS + 1))
        ])),
        ElfError::TooManyRelocations {
            count: MAX_RELOCATIONS + 1,
            max: MAX_RELOCATIONS
        }
    );
    assert!(matches!(
        bad(&|fx| fx.dyn_override = Some(vec![(DT_RELR, 0x1800), (DT_RELRSZ, u64::MAX - 7)])),
        ElfError::TooManyRelocations { .. }
    ));
    // Empty tables and tags after DT_NULL are fine.
    let mut fx = Fixture::new();
    fx.dyn_override = Some(vec![(DT_RELASZ, 0), (DT_NULL, 0), (DT_NEEDED, 1)]);
    ElfImage::parse(&fx.build()).unwrap();
    fx.dyn_override = Some(vec![
        (DT_RELA, 0xdead_0000),
        (DT_RELASZ, 0),
        (DT_RELR, 3),
        (DT_RELRSZ, 0),
    ]);
    ElfImage::parse(&fx.build()).unwrap();
}

#[test]
fn does_not_fit_and_base_alignment() {
    let file = Fixture::new().build();
    let image = ElfImage::parse(&file).unwrap();
    let mut mem = vec![0u8; 0x10000];
    assert_eq!(
        image.load(&mut mem[..0x1000 + SPAN as usize - 1], 0x1000),
        Err(ElfError::DoesNotFit {
            base: 0x1000,
            span: SPAN,
            mem_len: 0x1000 + SPAN - 1
        })
    );
    assert!(matches!(
        image.load(&mut mem, u64::MAX - 0xfff),
        Err(ElfError::DoesNotFit { .. })
    ));
    assert!(matches!(
        image.load(&mut mem, 0x10000),
        Err(ElfError::DoesNotFit { .. })
    ));
    for base in [1u64, 0x800, 0x1008, u64::MAX] {
        assert_eq!(
            image.load(&mut mem, base),
            Err(ElfError::BaseNotAligned {
                base,
                align: PAGE_SIZE
            })
        );
    }
    // Failed loads write nothing.
    assert!(mem.iter().all(|&b| b == 0));
}

#[test]
fn errors_display() {
    let all = [
        ElfError::TooShort { len: 1, need: 64 },
        ElfError::BadMagic,
        ElfError::NotElf64 { class: 1 },
        ElfError::NotLittleEndian { data: 2 },
        ElfError::BadVersion { version: 0 },
        ElfError::WrongMachine { machine: 3 },
        ElfError::WrongType { e_type: 2 },
        ElfError::BadProgramHeaderSize { phentsize: 32 },
        ElfError::TooManyProgramHeaders { count: 65, max: 64 },
        ElfError::ProgramHeadersOutOfBounds {
            offset: 1,
            size: 2,
            file_len: 3,
        },
        ElfError::SegmentOutOfFile {
            index: 1,
            offset: 2,
            filesz: 3,
            file_len: 4,
        },
        ElfError::FileSizeExceedsMemSize {
            index: 1,
            filesz: 2,
            memsz: 1,
        },
        ElfError::Overflow { what: "x" },
        ElfError::BadAlignment {
            index: 1,
            align: 3,
            vaddr: 0,
            offset: 0,
        },
        ElfError::SegmentsNotSorted { a: 0, b: 1 },
        ElfError::OverlappingSegments { a: 0, b: 1 },
        ElfError::WritableAndExecutable { index: 1 },
        ElfError::EntryNotExecutable { entry: 5 },
        ElfError::NoLoadableSegments,
        ElfError::Unsupported { what: "PT_TLS" },
        ElfError::BadDynamic { what: "x" },
        ElfError::RelocationTableOutOfBounds { addr: 1, size: 2 },
        ElfError::TooManyRelocations { count: 2, max: 1 },
        ElfError::UnsupportedRelocation {
            r_type: 1,
            offset: 8,
        },
        ElfError::RelocationOutOfBounds { offset: 9 },
        ElfError::BaseNotAligned { base: 1, align: 2 },
        ElfError::DoesNotFit {
            base: 1,
            span: 2,
            mem_len: 3,
        },
    ];
    let mut seen = std::collections::HashSet::new();
    for e in &all {
        let msg = e.to_string();
        assert!(!msg.is_empty());
        assert!(seen.insert(msg.clone()), "duplicate message {msg}");
        let as_error: &dyn std::error::Error = e;
        assert_eq!(as_error.to_string(), msg);
    }
}

/// Deterministic PRNG (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Parses and, if that succeeds, loads `bytes`, checking the loader's guarantees: no
/// panic, nothing written outside `[base, end)`, W^X and entry inside an executable
/// segment. Returns whether the load succeeded.
fn exercise(bytes: &[u8], rng: &mut Rng) -> bool {
    let Ok(image) = ElfImage::parse(bytes) else {
        return false;
    };
    let base = [0u64, 0x1000, 0x7000][rng.below(3)];
    let mut mem = vec![0xa5u8; 0x10000 + rng.below(0x10000)];
    let Ok(loaded) = image.load(&mut mem, base) else {
        return false;
    };
    assert_eq!(loaded.end - loaded.base, image.span());
    assert!(mem[..base as usize].iter().all(|&b| b == 0xa5));
    assert!(mem[loaded.end as usize..].iter().all(|&b| b == 0xa5));
    let mut prev_end = loaded.base;
    for s in &loaded.segments {
        assert!(s.start >= prev_end && s.start < s.end && s.end <= loaded.end);
        assert!(s.start % PAGE_SIZE == 0 && s.end % PAGE_SIZE == 0);
        assert!(!(s.perms.write && s.perms.execute));
        prev_end = s.end;
    }
    assert!(loaded
        .segments
        .iter()
        .any(|s| s.perms.execute && (s.start..s.end).contains(&loaded.entry)));
    true
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = Rng(0x1234_5678);
    let valid = Fixture::new().build();
    for i in 0..5000 {
        let len = rng.below(600);
        let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Half of them get a plausible header so parsing goes further.
        if i % 2 == 0 && len >= 64 {
            buf[..64].copy_from_slice(&valid[..64]);
            if rng.below(2) == 0 {
                buf[32..40].copy_from_slice(&(rng.below(len) as u64).to_le_bytes());
                buf[56..58].copy_from_slice(&(rng.below(8) as u16).to_le_bytes());
            }
        }
        exercise(&buf, &mut rng);
    }
}

#[test]
fn mutated_valid_files_never_panic() {
    let mut rng = Rng(0xfeed_f00d);
    let mut fx = Fixture::new();
    fx.relr = vec![0x3020, 0b1011];
    let valid = fx.build();
    assert!(exercise(&valid, &mut rng));
    // Byte offsets of interesting structures: header, program headers, RELA, RELR, DYNAMIC.
    let hot = [
        (0usize, 64usize),
        (64, 64 + 5 * 56),
        (RELA_OFF, RELA_OFF + 3 * 24),
        (RELR_OFF, RELR_OFF + 16),
        (DYN_OFF, DYN_OFF + 12 * 16),
    ];
    let interesting: [u64; 14] = [
        0,
        1,
        7,
        8,
        0x1000,
        0x2000,
        0x3000,
        0x5ff8,
        0x6000,
        FILE_LEN as u64,
        u64::MAX,
        u64::MAX - 7,
        u64::MAX - 0xfff,
        1 << 63,
    ];
    let mut loaded = 0;
    for i in 0..20_000 {
        let mut buf = valid.clone();
        for _ in 0..1 + rng.below(4) {
            let (lo, hi) = if rng.below(8) == 0 {
                (0, buf.len())
            } else {
                hot[rng.below(hot.len())]
            };
            let at = lo + rng.below(hi - lo);
            match i % 3 {
                0 => buf[at] = rng.next() as u8,
                1 => buf[at] ^= 1 << rng.below(8),
                _ => {
                    // Overwrite an aligned field with an interesting value.
                    let width = [2usize, 4, 8][rng.below(3)];
                    let at = at & !(width - 1);
                    let v = interesting[rng.below(interesting.len())]
                        .wrapping_add(rng.below(3) as u64)
                        .wrapping_sub(1);
                    if at + width <= buf.len() {
                        buf[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
                    }
                }
            }
        }
        if exercise(&buf, &mut rng) {
            loaded += 1;
        }
        // Truncations of mutated files as well.
        let cut = rng.below(buf.len());
        exercise(&buf[..cut], &mut rng);
    }
    // Many mutations hit bytes that do not matter, so a good share still loads.
    assert!(loaded > 1000, "only {loaded} mutated files loaded");
}

/// Optional check against a real guest binary, if one has been built. Set
/// `HYPERLIGHT_TEST_GUEST_ELF` to a file to check it; otherwise ELF files in the guest's
/// target directory are checked if any exist. Passes trivially when there are none.
#[test]
fn real_guest_binaries_if_present() {
    let mut paths = Vec::new();
    if let Some(p) = std::env::var_os("HYPERLIGHT_TEST_GUEST_ELF") {
        paths.push(std::path::PathBuf::from(p));
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest/target");
    // The native guests' target and the Wasm runner's.
    for target in ["x86_64-unknown-none", "x86_64-hyperlight-none"] {
        for profile in ["release", "debug"] {
            let dir = root.join(target).join(profile);
            if let Ok(entries) = std::fs::read_dir(dir) {
                paths.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
            }
        }
    }
    for path in paths {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if !bytes.starts_with(b"\x7fELF") {
            continue;
        }
        let image = ElfImage::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let align = image.alignment();
        let (b1, b2) = (align.max(0x10000), align.max(0x10000) * 2);
        let len = (b2 + image.span()) as usize;
        let (mut m1, mut m2) = (vec![0u8; len], vec![0u8; len]);
        let l1 = image.load(&mut m1, b1).unwrap();
        let l2 = image.load(&mut m2, b2).unwrap();
        assert_eq!(l2.entry - l1.entry, b2 - b1);
        // Every relocated word moves with the base; every other byte is identical.
        let mut targets = Vec::new();
        image
            .for_each_relr(|a| {
                targets.push(image.target(a)?);
                Ok(())
            })
            .unwrap();
        image
            .for_each_rela(|a, _| {
                targets.push(image.target(a)?);
                Ok(())
            })
            .unwrap();
        for t in &targets {
            assert_eq!(
                word(&m2, b2 + t).wrapping_sub(word(&m1, b1 + t)),
                b2 - b1,
                "{}: relocation at {t:#x}",
                path.display()
            );
        }
        targets.sort_unstable();
        for off in 0..image.span() {
            let in_target = {
                let i = targets.partition_point(|t| *t + 8 <= off);
                targets.get(i).is_some_and(|t| *t <= off)
            };
            if !in_target {
                assert_eq!(m1[(b1 + off) as usize], m2[(b2 + off) as usize]);
            }
        }
        eprintln!(
            "{}: {} segments, {} relocations, span {:#x}",
            path.display(),
            l1.segments.len(),
            targets.len(),
            image.span()
        );
    }
}
