//! Which return addresses are in classtrack's own code or in the allocation glue (the global
//! allocator's entry points, `alloc::alloc`, `alloc::raw_vec` growth, ...), told by address.
//!
//! Names cannot tell them in every build: with `debug = "line-tables-only"` the debug info
//! names functions without their paths (`capture`, `alloc_slow`, `grow_one`). The symbol table
//! names them in full, with their sizes, in every build that is not stripped: it is read once,
//! at the first symbolization (never on the allocation path), and the address ranges of the
//! functions whose demangled names are the machinery's are kept, sorted (a few thousand
//! ranges at most, 16 bytes each). A stripped binary, or one whose file cannot be read, has no
//! table: frames are then told by name and source file alone.

#[cfg(unix)]
use std::fmt::Write as _;
use std::sync::OnceLock;

/// The machinery's functions: `[start, end)` in this process's addresses, sorted, disjoint.
struct Table {
    ranges: Vec<(usize, usize)>,
}

static TABLE: OnceLock<Option<Table>> = OnceLock::new();

/// Whether the code at `address` (an address inside a call: a return address minus one) is
/// the machinery's: `None` when there is no symbol table to tell.
///
/// Must run under [`crate::fork::with_backtrace`]'s lock, so that the table is never being
/// built while the process forks (a child would find it half built forever).
pub(crate) fn contains(address: usize) -> Option<bool> {
    let table = TABLE
        .get_or_init(|| {
            let _g = classtrack_shim::OverheadGuard::new();
            build()
        })
        .as_ref()?;
    let i = table.ranges.partition_point(|&(start, _)| start <= address);
    Some(i > 0 && address < table.ranges[i - 1].1)
}

/// Whether a demangled name is the machinery's: classtrack's and its allocator shim's, the
/// global allocator's entry points, the standard library's allocation glue.
pub(crate) fn is_machinery_name(function: &str) -> bool {
    const PREFIXES: [&str; 16] = [
        "backtrace::",
        "<backtrace::",
        "classtrack_shim::",
        "<classtrack_shim::",
        "classtrack::",
        "<classtrack::",
        "__rustc::",
        "__rust_alloc",
        "__rust_realloc",
        "__rdl_",
        "__rg_",
        "std::alloc::",
        "<std::alloc::System",
        "alloc::alloc::",
        "<alloc::alloc::Global",
        "alloc::raw_vec::",
    ];
    PREFIXES.iter().any(|p| function.starts_with(p)) || function.starts_with("<alloc::raw_vec::")
}

/// classtrack's own sources, as debug info records them.
const OWN_SOURCES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/");

/// Whether source file `path` is the machinery's: classtrack's or its shim's, or the standard
/// library's allocation glue. Line tables give paths for inlined frames too, whose names they
/// give unqualified.
pub(crate) fn is_machinery_file(path: &str) -> bool {
    const GLUE: [&str; 5] = [
        "/library/alloc/src/alloc.rs",
        "/library/alloc/src/raw_vec.rs",
        "/library/alloc/src/raw_vec/mod.rs",
        "/library/std/src/alloc.rs",
        "/library/core/src/alloc/global.rs",
    ];
    path.starts_with(OWN_SOURCES)
        || path
            .strip_prefix(classtrack_shim::SOURCE_DIR)
            .is_some_and(|rest| rest.starts_with("/src/"))
        || (path.starts_with("/rustc/") && GLUE.iter().any(|g| path.ends_with(g)))
}

/// A function whose address and symbol name tell where this file's code is loaded.
#[cfg(unix)]
#[inline(never)]
fn anchor() -> usize {
    anchor as fn() -> usize as usize
}

/// The name [`anchor`] demangles to.
#[cfg(unix)]
const ANCHOR: &str = "classtrack::machinery::anchor";

#[cfg(unix)]
fn build() -> Option<Table> {
    let anchor = std::hint::black_box(anchor());
    let path = object_path(anchor)?;
    let file = std::fs::File::open(&path).ok()?;
    let map = Map::new(&file)?;
    table_of(map.bytes(), anchor)
}

#[cfg(not(unix))]
fn build() -> Option<Table> {
    None
}

/// The machinery's ranges in the object file `data`, mapped where [`anchor`] is at `anchor`.
#[cfg(unix)]
fn table_of(data: &[u8], anchor: usize) -> Option<Table> {
    use object::{Object, ObjectSymbol, SymbolKind};
    let file = object::File::parse(data).ok()?;
    // (start, size, machinery) in the file's addresses.
    let mut functions: Vec<(u64, u64, bool)> = Vec::new();
    let mut anchor_at = None;
    let mut name = String::new();
    for symbol in file.symbols() {
        if symbol.kind() != SymbolKind::Text || !symbol.is_definition() {
            continue;
        }
        let Ok(raw) = symbol.name() else { continue };
        name.clear();
        match rustc_demangle::try_demangle(raw) {
            Ok(d) => {
                let _ = write!(name, "{d:#}");
            }
            // Mach-O prefixes C names with an underscore.
            Err(_) if cfg!(target_vendor = "apple") => {
                name.push_str(raw.strip_prefix('_').unwrap_or(raw))
            }
            Err(_) => name.push_str(raw),
        }
        if name == ANCHOR {
            anchor_at = Some(symbol.address());
        }
        functions.push((symbol.address(), symbol.size(), is_machinery_name(&name)));
    }
    // Without the anchor, the file read is not the one this code runs from (or has no
    // symbols): no table rather than a wrong one.
    let bias = (anchor as u64).wrapping_sub(anchor_at?);
    functions.sort_unstable_by_key(|&(start, size, _)| (start, size));
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for (i, &(start, size, machinery)) in functions.iter().enumerate() {
        if !machinery {
            continue;
        }
        // A symbol without a size (Mach-O's) ends where the next one starts.
        let end = if size > 0 {
            start + size
        } else {
            match functions[i + 1..].iter().find(|f| f.0 > start) {
                Some(next) => next.0,
                None => continue,
            }
        };
        let (start, end) = (
            start.wrapping_add(bias) as usize,
            end.wrapping_add(bias) as usize,
        );
        match ranges.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => ranges.push((start, end)),
        }
    }
    ranges.shrink_to_fit();
    Some(Table { ranges })
}

/// The file of the loaded object that holds `address` (the executable, or a shared library).
#[cfg(unix)]
fn object_path(address: usize) -> Option<std::path::PathBuf> {
    // SAFETY: `dladdr` only reads the loader's tables and writes `info`, a plain struct that
    // zeroes are a valid value of; `dli_fname`, when set, points to a NUL-terminated string
    // the loader keeps while the object is loaded (and the object holding this very code
    // stays loaded while it runs), read before returning.
    let name = unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(address as *const libc::c_void, &mut info) == 0 || info.dli_fname.is_null()
        {
            None
        } else {
            Some(
                std::ffi::CStr::from_ptr(info.dli_fname)
                    .to_string_lossy()
                    .into_owned(),
            )
        }
    };
    match name {
        // The executable is named by the path it was started with, or not at all.
        Some(n) if n.starts_with('/') && !cfg!(target_os = "linux") => Some(n.into()),
        Some(n) if n.starts_with('/') && n.contains(".so") => Some(n.into()),
        _ => std::env::current_exe().ok(),
    }
}

/// A file mapped read-only, unmapped on drop: its pages are the page cache's, not the heap's,
/// and only those read (the symbol and string tables) become resident.
#[cfg(unix)]
pub(crate) struct Map {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: a read-only mapping has no tie to the thread that made it: its bytes can be read
// from any thread, and `munmap` from any thread ends it.
#[cfg(unix)]
unsafe impl Send for Map {}

#[cfg(unix)]
impl Map {
    pub(crate) fn new(file: &std::fs::File) -> Option<Map> {
        use std::os::fd::AsRawFd;
        let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
        if len == 0 {
            return None;
        }
        // SAFETY: a fresh private read-only mapping of an open file descriptor, of the file's
        // length: it aliases no Rust object; failure is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        (ptr != libc::MAP_FAILED).then_some(Map { ptr, len })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` is a live read-only mapping of `len` bytes until `self` is dropped,
        // and the slice borrows `self`. (A file truncated while mapped would fault: an
        // executable being run cannot be written to on Linux, `ETXTBSY`.)
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

#[cfg(unix)]
impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are the mapping made in `new`, unmapped once, here; no
        // slice of it outlives `self`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn this_test_binary_has_a_table_that_holds_classtrack_and_not_the_rest() {
        // Everything in this test binary is classtrack's but the standard library and deps.
        let other = std::hint::black_box(std::process::id as fn() -> u32 as usize);
        let ours = crate::fork::with_backtrace(|| (contains(anchor() + 1), contains(other + 1)));
        assert_eq!(ours, (Some(true), Some(false)));
        // Kept for the process's life: small.
        let ranges = TABLE.get().unwrap().as_ref().unwrap().ranges.len();
        eprintln!("{ranges} ranges of the machinery's functions");
        assert!(ranges * 16 < 256 << 10, "{ranges} ranges");
    }

    #[test]
    fn names_and_files_of_the_machinery() {
        assert!(is_machinery_name("__rustc::__rust_alloc"));
        assert!(is_machinery_name(
            "<classtrack_shim::TrackingAlloc<A> as core::alloc::global::GlobalAlloc>::alloc"
        ));
        assert!(!is_machinery_name("alloc::vec::Vec<T,A>::push"));
        assert!(is_machinery_file(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/scope.rs"
        )));
        assert!(is_machinery_file(
            "/rustc/0123abcd/library/alloc/src/raw_vec/mod.rs"
        ));
        assert!(!is_machinery_file(
            "/rustc/0123abcd/library/alloc/src/vec/mod.rs"
        ));
        assert!(!is_machinery_file("/home/u/app/src/main.rs"));
    }
}
