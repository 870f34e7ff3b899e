//! Frames in shared objects that carry no debug info of their own, named from symbol tables
//! alone (Linux).
//!
//! The system's libraries (the C library's `__libc_start_call_main`, `start_thread`, at the
//! bottom of every stack) have their debug info in separate files, installed by packages such
//! as Debian's `libc6-dbg`, with compressed sections: the backtrace crate decompresses them
//! into the heap to read their line tables, about 30 MB for the C library alone, for frames
//! that say nothing about where a program allocates. Such an object's functions are named here
//! from its own symbol table, else from its debug file's (found by build id or debug link: the
//! symbol table is not compressed), else from its dynamic symbols: names without file:line, at
//! a few hundred KiB while a batch runs. The executable (see `dwarf.rs`), the object holding
//! classtrack, and any object with debug info of its own are symbolized with file:line.
//!
//! Tables are read at the first address in an object during a batch and dropped when the batch
//! ends ([`empty`]), with the other symbolization caches.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::machinery::Map;

/// One object's functions: `[start, end)` in this process's addresses, sorted, and their raw
/// (mangled) names.
struct Table {
    functions: Vec<(usize, usize, Box<str>)>,
}

/// Tables read during the batch under way, by the object's load bias; `None`: the object is
/// left to the backtrace crate. A `std::sync::Mutex`, taken only under
/// [`crate::fork::with_backtrace`]'s lock, never while another lock is taken.
static TABLES: Mutex<Option<HashMap<usize, Option<Table>>>> = Mutex::new(None);

/// The name of the function at `address` (an address inside a call) when it is in a shared
/// object named from symbol tables: `Some(None)` when that object has no symbol there, `None`
/// when the address is the backtrace crate's to symbolize.
///
/// Must run under [`crate::fork::with_backtrace`]'s lock, as the tables' reading takes the
/// loader's lock (`dl_iterate_phdr`).
pub(crate) fn name_of(address: usize) -> Option<Option<String>> {
    let (bias, path) = object_of(address)?;
    let mut tables = TABLES.lock().unwrap_or_else(PoisonError::into_inner);
    let table = tables
        .get_or_insert_with(HashMap::new)
        .entry(bias)
        .or_insert_with(|| read_table(&path, bias))
        .as_ref()?;
    let i = table.functions.partition_point(|f| f.0 <= address);
    let name = (i > 0 && address < table.functions[i - 1].1).then(|| {
        let raw = &table.functions[i - 1].2;
        match rustc_demangle::try_demangle(raw) {
            Ok(d) => format!("{d:#}"),
            Err(_) => raw.to_string(),
        }
    });
    Some(name)
}

/// Drops the tables read (at the end of a batch).
pub(crate) fn empty() {
    let old = TABLES.lock().unwrap_or_else(PoisonError::into_inner).take();
    drop(old);
}

/// The load bias and file of the shared object holding `address`, if it is neither the
/// executable nor the object holding classtrack.
fn object_of(address: usize) -> Option<(usize, PathBuf)> {
    let objects = loaded_objects();
    let own = object_of as fn(usize) -> Option<(usize, PathBuf)> as usize;
    let holds = |o: &&Loaded, a: usize| o.segments.iter().any(|s| s.contains(&a));
    let own_bias = objects.iter().find(|o| holds(o, own)).map(|o| o.bias);
    // The first object listed is the executable.
    let found = objects.iter().skip(1).find(|o| holds(o, address))?;
    if own_bias == Some(found.bias) || !found.name.starts_with(b"/") {
        return None;
    }
    use std::os::unix::ffi::OsStringExt;
    Some((
        found.bias,
        PathBuf::from(std::ffi::OsString::from_vec(found.name.clone())),
    ))
}

/// An object the loader has loaded: the executable, or a shared object.
pub(crate) struct Loaded {
    /// Runtime address less file address.
    pub(crate) bias: usize,
    /// Its file as the loader names it (empty for the executable).
    pub(crate) name: Vec<u8>,
    /// Its loaded segments, in runtime addresses.
    pub(crate) segments: Vec<std::ops::Range<usize>>,
}

/// The objects loaded now, in the loader's order: the executable first.
pub(crate) fn loaded_objects() -> Vec<Loaded> {
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `Vec` passed to `dl_iterate_phdr` below, borrowed by nothing
        // else while the walk runs; `info` is the loader's description of one loaded object,
        // valid during this call, whose `dlpi_phdr` points to `dlpi_phnum` program headers
        // and whose `dlpi_name` is a NUL-terminated string (or null).
        unsafe {
            let objects = &mut *data.cast::<Vec<Loaded>>();
            let info = &*info;
            let phdrs: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
                &[]
            } else {
                std::slice::from_raw_parts(info.dlpi_phdr.cast(), usize::from(info.dlpi_phnum))
            };
            let bias = info.dlpi_addr as usize;
            let segments = phdrs
                .iter()
                .filter(|ph| ph.p_type == libc::PT_LOAD)
                .map(|ph| {
                    let start = bias.wrapping_add(ph.p_vaddr as usize);
                    start..start.wrapping_add(ph.p_memsz as usize)
                })
                .collect();
            let name = if info.dlpi_name.is_null() {
                Vec::new()
            } else {
                std::ffi::CStr::from_ptr(info.dlpi_name).to_bytes().to_vec()
            };
            objects.push(Loaded {
                bias,
                name,
                segments,
            });
        }
        0
    }
    let mut objects: Vec<Loaded> = Vec::new();
    // SAFETY: `visit` matches the callback type, and `objects` outlives the walk, which calls
    // `visit` on this thread only, before returning.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut objects).cast()) };
    objects
}

/// `path`'s functions, or `None` when it has debug info of its own (the backtrace crate reads
/// it, with file:line) or cannot be read.
fn read_table(path: &Path, bias: usize) -> Option<Table> {
    use object::Object;
    let _g = classtrack_shim::OverheadGuard::new();
    let map = Map::new(&std::fs::File::open(path).ok()?)?;
    let file = object::File::parse(map.bytes()).ok()?;
    if file.section_by_name(".debug_info").is_some() {
        return None;
    }
    let mut functions = functions_of(&file, false);
    if functions.is_empty() {
        if let Some(debug) = debug_file(path, &file) {
            if let Some(d) = Map::new(&debug) {
                if let Ok(dfile) = object::File::parse(d.bytes()) {
                    functions = functions_of(&dfile, false);
                }
            }
        }
    }
    if functions.is_empty() {
        functions = functions_of(&file, true);
    }
    for f in &mut functions {
        f.0 = f.0.wrapping_add(bias);
        f.1 = f.1.wrapping_add(bias);
    }
    Some(Table { functions })
}

/// The functions of `file`'s symbol table (or dynamic symbols), sorted by address, in the
/// file's addresses. A symbol without a size ends where the next starts.
pub(crate) fn functions_of(
    file: &object::File<'_>,
    dynamic: bool,
) -> Vec<(usize, usize, Box<str>)> {
    use object::{Object, ObjectSymbol, SymbolKind};
    let mut symbols: Vec<(u64, u64, &str)> = if dynamic {
        file.dynamic_symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.is_definition())
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?)))
            .collect()
    } else {
        file.symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.is_definition())
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?)))
            .collect()
    };
    symbols.sort_unstable_by_key(|&(start, size, _)| (start, std::cmp::Reverse(size)));
    symbols.dedup_by_key(|s| s.0);
    let mut out = Vec::with_capacity(symbols.len());
    for (i, &(start, size, name)) in symbols.iter().enumerate() {
        let end = if size > 0 {
            start + size
        } else {
            match symbols.get(i + 1) {
                Some(next) => next.0,
                None => continue,
            }
        };
        out.push((start as usize, end as usize, Box::from(name)));
    }
    out
}

/// The functions of `file`'s symbol table, sorted by address, in the file's addresses, each
/// with its name as a range of `data` (the bytes `file` was parsed from): `(start, end,
/// name offset, name length)`, 24 bytes a function, with no copy of the names. A symbol without
/// a size ends where the next starts; a name outside `data` is left out.
pub(crate) fn function_ranges_of(
    file: &object::File<'_>,
    data: &[u8],
) -> Vec<(usize, usize, u32, u32)> {
    use object::{Object, ObjectSymbol, SymbolKind};
    let base = data.as_ptr() as usize;
    let range_of = |name: &str| -> Option<(u32, u32)> {
        let offset = (name.as_ptr() as usize).checked_sub(base)?;
        (offset + name.len() <= data.len())
            .then(|| Some((u32::try_from(offset).ok()?, u32::try_from(name.len()).ok()?)))?
    };
    // (start, size as the end for now, name offset, name length)
    let mut symbols: Vec<(usize, usize, u32, u32)> = file
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.is_definition())
        .filter_map(|s| {
            let (offset, len) = range_of(s.name().ok()?)?;
            Some((
                usize::try_from(s.address()).ok()?,
                usize::try_from(s.size()).ok()?,
                offset,
                len,
            ))
        })
        .collect();
    symbols.sort_unstable_by_key(|&(start, size, ..)| (start, std::cmp::Reverse(size)));
    symbols.dedup_by_key(|s| s.0);
    // Sizes to ends: a symbol without a size ends where the next starts (the last one, then,
    // is dropped).
    let mut keep = symbols.len();
    for i in 0..symbols.len() {
        let (start, size, ..) = symbols[i];
        if size > 0 {
            symbols[i].1 = start + size;
        } else if let Some(next) = symbols.get(i + 1) {
            symbols[i].1 = next.0;
        } else {
            keep = i;
        }
    }
    symbols.truncate(keep);
    symbols.shrink_to_fit();
    symbols
}

/// The separate debug file of `path`: by build id under `/usr/lib/debug/.build-id/`, else by
/// its `.gnu_debuglink` name beside it, in its `.debug` directory or under `/usr/lib/debug`
/// (where gdb looks).
fn debug_file(path: &Path, file: &object::File<'_>) -> Option<std::fs::File> {
    use object::Object;
    let mut candidates = Vec::new();
    if let Ok(Some(id)) = file.build_id() {
        if id.len() > 1 {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            candidates.push(PathBuf::from(format!(
                "/usr/lib/debug/.build-id/{}/{}.debug",
                &hex[..2],
                &hex[2..]
            )));
        }
    }
    if let Ok(Some((name, _crc))) = file.gnu_debuglink() {
        use std::os::unix::ffi::OsStrExt;
        let name = Path::new(std::ffi::OsStr::from_bytes(name));
        if let Some(dir) = path.parent() {
            candidates.push(dir.join(name));
            candidates.push(dir.join(".debug").join(name));
            candidates.push(
                Path::new("/usr/lib/debug")
                    .join(dir.strip_prefix("/").unwrap_or(dir))
                    .join(name),
            );
        }
    }
    candidates
        .into_iter()
        .filter(|c| c != path)
        .find_map(|c| std::fs::File::open(c).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_c_library_is_named_from_symbol_tables_and_the_program_is_not() {
        // `malloc` is the C library's, a shared object on every Linux distribution that
        // builds Rust programs dynamically linked (the default).
        let malloc = libc::malloc as *const () as usize;
        let name = crate::fork::with_backtrace(|| name_of(malloc + 1));
        assert!(
            matches!(&name, Some(Some(n)) if n.contains("malloc")),
            "{name:?}"
        );
        let own = crate::fork::with_backtrace(|| name_of(empty as fn() as *const () as usize + 1));
        assert_eq!(own, None, "the program's own code is the backtrace crate's");
        empty();
    }
}
