//! The process's loaded code: the executable and each shared object, where they are mapped and
//! their GNU build ids, for pprof profiles' mappings (`go tool pprof BINARY PROFILE`, and a
//! continuous profiler symbolizing by build id).
//!
//! Linux only (from `/proc/self/maps` and each file's ELF notes); elsewhere there are none, and
//! profiles carry their symbolized frames alone.

/// One executable region of a file mapped into the process.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    pub build_id: Option<String>,
}

/// The executable regions mapped now, the main executable's first (pprof takes the first
/// mapping for the main binary); empty where the memory map cannot be read.
pub(crate) fn current() -> Vec<Mapping> {
    let _g = classtrack_shim::OverheadGuard::new();
    imp::current()
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

    /// Build ids by file (device, inode and modification time: a file replaced on disk is read
    /// again). A few dozen entries at most: one per shared object. A `std::sync::Mutex`, taken
    /// only off the allocation path, never while another lock is held.
    static BUILD_IDS: LazyLock<Mutex<HashMap<(u64, u64, i64), Option<String>>>> =
        LazyLock::new(Default::default);

    pub(super) fn current() -> Vec<Mapping> {
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
            return Vec::new();
        };
        let exe = std::fs::read_link("/proc/self/exe")
            .ok()
            .map(|p| p.display().to_string());
        let mut out: Vec<Mapping> = maps
            .lines()
            .filter_map(parse_line)
            .map(|(start, limit, offset, path)| Mapping {
                start,
                limit,
                offset,
                build_id: build_id(path),
                path: path.to_owned(),
            })
            .collect();
        // The main executable first (stable: its own regions keep their order).
        out.sort_by_key(|m| Some(&m.path) != exe.as_ref());
        out
    }

    /// `start-limit perms offset dev inode path` of an executable region backed by a file.
    fn parse_line(line: &str) -> Option<(u64, u64, u64, &str)> {
        let mut fields = line.splitn(6, ' ');
        let range = fields.next()?;
        let perms = fields.next()?;
        let offset = fields.next()?;
        let _dev = fields.next()?;
        let _inode = fields.next()?;
        let path = fields.next()?.trim_start();
        if !perms.contains('x') || !path.starts_with('/') || path.ends_with(" (deleted)") {
            return None;
        }
        let (start, limit) = range.split_once('-')?;
        Some((
            u64::from_str_radix(start, 16).ok()?,
            u64::from_str_radix(limit, 16).ok()?,
            u64::from_str_radix(offset, 16).ok()?,
            path,
        ))
    }

    fn build_id(path: &str) -> Option<String> {
        let mut file = File::open(path).ok()?;
        let meta = file.metadata().ok()?;
        let key = (meta.dev(), meta.ino(), meta.mtime());
        let lock = || BUILD_IDS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = lock().get(&key) {
            return id.clone();
        }
        let id = read_build_id(&mut file);
        lock().insert(key, id.clone());
        id
    }

    /// The `NT_GNU_BUILD_ID` note of an ELF file, read from its program headers' note
    /// segments: a few KiB read, however large the file.
    fn read_build_id(file: &mut File) -> Option<String> {
        let mut head = Vec::new();
        file.by_ref().take(64 * 1024).read_to_end(&mut head).ok()?;
        let header = elf::FileHeader64::<Endianness>::parse(&*head).ok()?;
        let endian = header.endian().ok()?;
        let phdrs = header.program_headers(endian, &*head).ok()?;
        for ph in phdrs {
            if ph.p_type(endian) != elf::PT_NOTE {
                continue;
            }
            let size = usize::try_from(ph.p_filesz(endian)).ok()?;
            if size > 64 * 1024 {
                continue;
            }
            let mut data = vec![0; size];
            file.seek(SeekFrom::Start(ph.p_offset(endian))).ok()?;
            file.read_exact(&mut data).ok()?;
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
                    return Some(hex);
                }
            }
        }
        None
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_maps_line_is_read() {
            let line = "55d0c0a00000-55d0c0b00000 r-xp 00001000 08:01 1234    /usr/bin/app";
            assert_eq!(
                parse_line(line),
                Some((0x55d0c0a00000, 0x55d0c0b00000, 0x1000, "/usr/bin/app"))
            );
            assert_eq!(
                parse_line("7f00-7f10 r--p 00000000 08:01 1 /lib/x.so"),
                None
            );
            assert_eq!(parse_line("7f00-7f10 r-xp 00000000 00:00 0 [vdso]"), None);
            assert_eq!(parse_line("7f00-7f10 r-xp 00000000 00:00 0 "), None);
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
            let here = the_executable_comes_first_with_its_build_id as usize as u64;
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
