//! The process's loaded code: the executable and each shared object, where they are mapped and
//! their GNU build ids, for pprof profiles' mappings (`go tool pprof BINARY PROFILE`, and a
//! continuous profiler symbolizing by build id).
//!
//! Linux only (from `/proc/self/maps` and each file's ELF notes); elsewhere there are none, and
//! profiles carry their symbolized frames alone.

/// One executable region of a file mapped into the process (kept in dumps: see
/// [`Stats`](crate::Stats)).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Mapping {
    /// The first address of the region.
    pub start: u64,
    /// The address just past its end.
    pub limit: u64,
    /// The file offset mapped at `start`.
    pub offset: u64,
    /// The file's path.
    pub path: String,
    /// The file's GNU build id in lower-case hex, when it has one.
    #[serde(default)]
    pub build_id: Option<String>,
}

/// The executable regions mapped now, the main executable's first (pprof takes the first
/// mapping for the main binary); empty where the memory map cannot be read.
pub(crate) fn current() -> Vec<Mapping> {
    let _g = classtrack_shim::OverheadGuard::new();
    imp::current()
}

/// The address of each location of `frames` (each run of inlined frames ending with one that
/// is not), found by matching `frames` against the symbolized `stack` they were trimmed from:
/// the call instruction's (the return address less one). Empty when they do not match.
pub(crate) fn location_addresses(stack: &[usize], frames: &[crate::sampling::Frame]) -> Vec<u64> {
    if stack.is_empty() {
        return Vec::new();
    }
    let groups: Vec<_> = stack
        .iter()
        .map(|&ip| crate::sampling::symbolize(ip).frames)
        .collect();
    let full: Vec<(&crate::sampling::Frame, usize)> = groups
        .iter()
        .zip(stack)
        .flat_map(|(g, &ip)| g.iter().map(move |f| (f, ip)))
        .collect();
    let n = frames.len();
    let Some(cut) = (0..=full.len().saturating_sub(n))
        .find(|&c| full.len() >= c + n && full[c..c + n].iter().map(|x| x.0).eq(frames))
    else {
        return Vec::new();
    };
    frames
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.inlined)
        .map(|(i, _)| (full[cut + i].1 as u64).saturating_sub(1))
        .collect()
}

#[cfg(target_os = "linux")]
mod imp {
    use std::collections::HashMap;
    use std::fs::File;
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;
    use std::sync::{LazyLock, Mutex, PoisonError};

    use object::elf;
    use object::read::elf::{FileHeader, NoteIterator, ProgramHeader};
    use object::Endianness;

    use super::Mapping;

    /// What a mapping needs of an ELF file: its build id and its executable segments.
    #[derive(Debug, Clone, Default)]
    struct ElfInfo {
        build_id: Option<String>,
        /// `(p_offset, p_filesz)` of each executable `PT_LOAD` segment.
        code: Vec<(u64, u64)>,
    }

    /// Files read so far, by device, inode and modification time (a file replaced on disk is
    /// read again). A few dozen entries at most: one per shared object. A `std::sync::Mutex`,
    /// taken only off the allocation path, never while another lock is held.
    static FILES: LazyLock<Mutex<HashMap<FileKey, ElfInfo>>> = LazyLock::new(Default::default);

    /// A file's device, inode and modification time.
    type FileKey = (u64, u64, i64);

    pub(super) fn current() -> Vec<Mapping> {
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
            return Vec::new();
        };
        let exe = std::fs::read_link("/proc/self/exe").ok().map(|p| {
            let p = p.display().to_string();
            match p.strip_suffix(DELETED) {
                Some(p) => p.to_owned(),
                None => p,
            }
        });
        let mut out: Vec<Mapping> = maps
            .lines()
            .filter_map(parse_line)
            .map(|(start, limit, offset, path, deleted)| {
                // The executable is read through /proc/self/exe, which is the running file
                // even when a new build has replaced it on disk (the map says "(deleted)");
                // another file that was replaced is not read: the path names a different one.
                let info = if exe.as_deref() == Some(path) {
                    elf_info("/proc/self/exe")
                } else if deleted {
                    ElfInfo::default()
                } else {
                    elf_info(path)
                };
                let (start, offset) = code_start(start, limit, offset, &info.code);
                Mapping {
                    start,
                    limit,
                    offset,
                    build_id: info.build_id,
                    path: path.to_owned(),
                }
            })
            .collect();
        // The main executable first (stable: its own regions keep their order).
        out.sort_by_key(|m| Some(&m.path) != exe.as_ref());
        out
    }

    /// What the kernel appends to the path of a file removed or replaced since it was mapped.
    const DELETED: &str = " (deleted)";

    /// `start-limit perms offset dev inode path` of an executable region backed by a file:
    /// start, limit, offset, the path, and whether the file was removed since.
    fn parse_line(line: &str) -> Option<(u64, u64, u64, &str, bool)> {
        let mut fields = line.splitn(6, ' ');
        let range = fields.next()?;
        let perms = fields.next()?;
        let offset = fields.next()?;
        let _dev = fields.next()?;
        let _inode = fields.next()?;
        let path = fields.next()?.trim_start();
        if !perms.contains('x') || !path.starts_with('/') {
            return None;
        }
        let (path, deleted) = match path.strip_suffix(DELETED) {
            Some(path) => (path, true),
            None => (path, false),
        };
        let (start, limit) = range.split_once('-')?;
        Some((
            u64::from_str_radix(start, 16).ok()?,
            u64::from_str_radix(limit, 16).ok()?,
            u64::from_str_radix(offset, 16).ok()?,
            path,
            deleted,
        ))
    }

    /// Where the code of a region starts: a region is mapped from a page boundary, and an
    /// executable segment may start within its first page (as rust-lld lays binaries out), after
    /// the end of the segment before it. The start and file offset of the segment's first byte
    /// are what pprof's tools take for the mapping (Go's `cmd/pprof` computes the binary's base
    /// as the mapping's start less the segment's address, so the region's own start would shift
    /// every address by the difference).
    pub(super) fn code_start(
        start: u64,
        limit: u64,
        offset: u64,
        code: &[(u64, u64)],
    ) -> (u64, u64) {
        let len = limit - start;
        code.iter()
            .find(|&&(off, size)| off > offset && off < offset + len && size > 0)
            .map_or((start, offset), |&(off, _)| (start + (off - offset), off))
    }

    fn elf_info(path: &str) -> ElfInfo {
        let Ok(mut file) = File::open(path) else {
            return ElfInfo::default();
        };
        let Ok(meta) = file.metadata() else {
            return ElfInfo::default();
        };
        let key = (meta.dev(), meta.ino(), meta.mtime());
        let lock = || FILES.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(info) = lock().get(&key) {
            return info.clone();
        }
        let info = read_elf_info(&mut file).unwrap_or_default();
        lock().insert(key, info.clone());
        info
    }

    /// The executable segments and the `NT_GNU_BUILD_ID` note of an ELF file, read from its
    /// program headers and note segments: a few KiB read, however large the file.
    fn read_elf_info(file: &mut File) -> Option<ElfInfo> {
        let mut head = Vec::new();
        file.by_ref().take(64 * 1024).read_to_end(&mut head).ok()?;
        let header = elf::FileHeader64::<Endianness>::parse(&*head).ok()?;
        let endian = header.endian().ok()?;
        let phdrs = header.program_headers(endian, &*head).ok()?;
        let mut info = ElfInfo::default();
        for ph in phdrs {
            if ph.p_type(endian) == elf::PT_LOAD && ph.p_flags(endian).0 & elf::PF_X.0 != 0 {
                info.code.push((ph.p_offset(endian), ph.p_filesz(endian)));
            }
        }
        for ph in phdrs {
            if ph.p_type(endian) != elf::PT_NOTE || info.build_id.is_some() {
                continue;
            }
            let Ok(size) = usize::try_from(ph.p_filesz(endian)) else {
                continue;
            };
            if size > 64 * 1024 {
                continue;
            }
            let mut data = vec![0; size];
            let read = file
                .seek(SeekFrom::Start(ph.p_offset(endian)))
                .and_then(|_| file.read_exact(&mut data));
            if read.is_err() {
                continue;
            }
            let Ok(mut notes) = NoteIterator::<elf::FileHeader64<Endianness>>::new(
                endian,
                ph.p_align(endian),
                &data,
            ) else {
                continue;
            };
            while let Ok(Some(note)) = notes.next() {
                if note.name() == elf::ELF_NOTE_GNU && note.n_type(endian) == elf::NT_GNU_BUILD_ID {
                    let desc = note.desc();
                    let mut hex = String::with_capacity(desc.len() * 2);
                    for b in desc {
                        hex.push_str(&format!("{b:02x}"));
                    }
                    info.build_id = Some(hex);
                    break;
                }
            }
        }
        Some(info)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_maps_line_is_read() {
            let line = "55d0c0a00000-55d0c0b00000 r-xp 00001000 08:01 1234    /usr/bin/app";
            assert_eq!(
                parse_line(line),
                Some((
                    0x55d0c0a00000,
                    0x55d0c0b00000,
                    0x1000,
                    "/usr/bin/app",
                    false
                ))
            );
            let line = "7f00-7f10 r-xp 00002000 08:01 77 /srv/app (deleted)";
            assert_eq!(
                parse_line(line),
                Some((0x7f00, 0x7f10, 0x2000, "/srv/app", true))
            );
            assert_eq!(
                parse_line("7f00-7f10 r--p 00000000 08:01 1 /lib/x.so"),
                None
            );
            assert_eq!(parse_line("7f00-7f10 r-xp 00000000 00:00 0 [vdso]"), None);
            assert_eq!(parse_line("7f00-7f10 r-xp 00000000 00:00 0 "), None);
        }

        #[test]
        fn a_region_starts_where_its_code_does() {
            // rust-lld: the code segment at file offset 0x11d700, mapped from 0x11d000.
            let code = [(0x11d700, 0x2ef700)];
            assert_eq!(
                code_start(0x5000_0000, 0x5030_0000, 0x11d000, &code),
                (0x5000_0700, 0x11d700)
            );
            // GNU ld: page-aligned, nothing to move.
            let code = [(0x1000, 0x5000)];
            assert_eq!(
                code_start(0x5000_0000, 0x5000_6000, 0x1000, &code),
                (0x5000_0000, 0x1000)
            );
            // A segment of another region.
            assert_eq!(
                code_start(0x5000_0000, 0x5000_1000, 0, &[(0x9000, 10)]),
                (0x5000_0000, 0)
            );
        }

        #[test]
        fn the_executable_comes_first_with_its_build_id() {
            let maps = current();
            let exe = std::env::current_exe().unwrap();
            assert_eq!(
                std::path::Path::new(&maps[0].path),
                std::fs::canonicalize(exe).unwrap()
            );
            // This function's own code is in the executable's region.
            let here = the_executable_comes_first_with_its_build_id as *const () as usize as u64;
            assert!(
                maps.iter()
                    .any(|m| m.path == maps[0].path && (m.start..m.limit).contains(&here)),
                "{here:#x} in {maps:#x?}"
            );
            let libc = maps.iter().find(|m| m.path.contains("libc.so"));
            let libc = libc.expect("libc is mapped");
            let id = libc.build_id.as_deref().expect("libc has a build id");
            assert!(
                id.len() >= 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{id}"
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::Mapping;

    pub(super) fn current() -> Vec<Mapping> {
        Vec::new()
    }
}
