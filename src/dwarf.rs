//! The executable's frames from its debug info, one compilation unit at a time (Linux).
//!
//! The backtrace crate (through addr2line) indexes a program's debug info by parsing every
//! compilation unit's header, abbreviations and file table up front and keeping them: about
//! 20 KiB a unit, 13 MiB for a test binary of 600 units, and more for each unit it then reads
//! in full. Here what is kept while a batch runs is the units' address ranges (24 bytes a
//! range) and, within [`CACHE_BUDGET`], those of the functions of the units read last; each
//! address is looked up in its own unit, parsed for that lookup and dropped: its line program
//! is run up to the address, and the function's entries walked to the calls inlined there. The frames are the ones the backtrace crate gives (names from
//! linkage names, else plain names, through abstract origins and specifications; file:line of
//! the innermost frame from the line table, of the outer ones from the inlined calls' call
//! sites), and `dwarf::tests` checks that they are.
//!
//! Only the executable, and only when its debug info is in it, uncompressed, in one file (no
//! split units, no supplementary file): otherwise [`frames_at`] returns `None` and the
//! backtrace crate symbolizes, as before. The index is built at the first address of a batch
//! and dropped when the batch ends ([`empty`]).

use std::ops::Range;
use std::sync::{Mutex, PoisonError};

use gimli::{AttributeValue, EndianSlice, RunTimeEndian, SectionId};

use crate::machinery::Map;
use crate::sampling::Frame;

type R<'a> = EndianSlice<'a, RunTimeEndian>;

/// The executable as read for a batch.
struct Exe {
    map: Map,
    endian: RunTimeEndian,
    /// Runtime address less file address.
    bias: usize,
    /// The executable's loaded segments, in runtime addresses.
    segments: Vec<Range<usize>>,
    /// Each DWARF section's bytes in the file (absent sections are empty).
    sections: Vec<(SectionId, Range<usize>)>,
    /// `(begin, end, unit offset)` in file addresses, sorted by `begin`.
    units: Vec<(u64, u64, usize)>,
    /// Every unit's offset in `.debug_info`, sorted: where to find an entry another unit
    /// refers to.
    unit_offsets: Vec<usize>,
    /// The symbol table's functions (file addresses), read at the first address no unit has:
    /// `(start, end, name offset, name length)`, the name in `map` (24 bytes a function, the
    /// names not copied: a program's 16,000 functions take 0.4 MB, not 2.4).
    symbols: Option<Vec<(usize, usize, u32, u32)>>,
    /// What was read of the units looked up last, the latest last, within [`CACHE_BUDGET`].
    cache: Vec<UnitTables>,
}

/// One unit's functions, so that a unit looked up again (most addresses of a batch fall in a
/// few units) is not walked again: 24 bytes a function. (Its line table is run for each
/// lookup, up to the address, and not kept: the standard library's unit alone has hundreds of
/// thousands of rows.)
struct UnitTables {
    offset: usize,
    /// `(begin, end, entry)` of each function with code, sorted by `begin`.
    functions: Vec<(u64, u64, gimli::UnitOffset)>,
}

impl UnitTables {
    fn bytes(&self) -> usize {
        self.functions.capacity() * std::mem::size_of::<(u64, u64, gimli::UnitOffset)>()
    }
}

/// The most the unit tables kept while a batch runs may take.
const CACHE_BUDGET: usize = 1 << 20;

/// The sections read.
const READ: [SectionId; 9] = [
    SectionId::DebugAbbrev,
    SectionId::DebugAddr,
    SectionId::DebugInfo,
    SectionId::DebugLine,
    SectionId::DebugLineStr,
    SectionId::DebugRanges,
    SectionId::DebugRngLists,
    SectionId::DebugStr,
    SectionId::DebugStrOffsets,
];

/// The batch's executable: `None` before it is read, `Some(None)` when it is left to the
/// backtrace crate. A `std::sync::Mutex`, taken only under
/// [`crate::fork::with_backtrace`]'s lock, never while another lock is taken.
static EXE: Mutex<Option<Option<Exe>>> = Mutex::new(None);

/// The frames at `address` (an address inside a call), innermost first, when it is in the
/// executable and its debug info is read here; `None` when the backtrace crate is to
/// symbolize it. An address with no debug info is named from the symbol table (empty when it
/// has no symbol either).
///
/// Must run under [`crate::fork::with_backtrace`]'s lock.
pub(crate) fn frames_at(address: usize) -> Option<Vec<Frame>> {
    let mut exe = EXE.lock().unwrap_or_else(PoisonError::into_inner);
    let exe = exe
        .get_or_insert_with(|| {
            let _g = classtrack_shim::OverheadGuard::new();
            Exe::read()
        })
        .as_mut()?;
    if !exe.segments.iter().any(|s| s.contains(&address)) {
        return None;
    }
    let probe = address.wrapping_sub(exe.bias) as u64;
    let mut found = exe.lookup(probe).unwrap_or_default();
    if found.last().is_some_and(|f| !f.function.is_empty()) {
        return Some(found);
    }
    // No function named in the debug info: the symbol table names it (with the line table's
    // location, if any).
    let bytes = exe.map.bytes();
    let symbols = exe.symbols.get_or_insert_with(|| {
        object::File::parse(bytes)
            .map(|f| crate::symtab::function_ranges_of(&f, bytes))
            .unwrap_or_default()
    });
    let probe = probe as usize;
    let i = symbols.partition_point(|f| f.0 <= probe);
    let name = (i > 0 && probe < symbols[i - 1].1)
        .then(|| {
            let (_, _, offset, len) = symbols[i - 1];
            let name = bytes.get(offset as usize..offset as usize + len as usize)?;
            std::str::from_utf8(name).ok().map(demangle)
        })
        .flatten();
    match (found.last_mut(), name) {
        (Some(last), name) => last.function = name.unwrap_or_else(|| "??".to_owned()),
        (None, Some(function)) => found.push(Frame {
            function,
            file: None,
            line: None,
            inlined: false,
        }),
        (None, None) => {}
    }
    Some(found)
}

/// Drops the index (at the end of a batch).
pub(crate) fn empty() {
    let old = EXE.lock().unwrap_or_else(PoisonError::into_inner).take();
    drop(old);
}

fn demangle(name: &str) -> String {
    match rustc_demangle::try_demangle(name) {
        Ok(d) => format!("{d:#}"),
        Err(_) => name.to_owned(),
    }
}

impl Exe {
    /// The executable, if its debug info can be read here.
    fn read() -> Option<Exe> {
        use object::{Object, ObjectSection};
        let (bias, segments) = executable_segments()?;
        let map = Map::new(&std::fs::File::open("/proc/self/exe").ok()?)?;
        let file = object::File::parse(map.bytes()).ok()?;
        let endian = if file.is_little_endian() {
            RunTimeEndian::Little
        } else {
            RunTimeEndian::Big
        };
        if file.section_by_name(".debug_info").is_none()
            || file.section_by_name(".gnu_debugaltlink").is_some()
            || file.section_by_name(".debug_sup").is_some()
        {
            return None;
        }
        let mut sections = Vec::new();
        for section in file.sections() {
            let Ok(name) = section.name() else { continue };
            if name.starts_with(".zdebug") {
                return None;
            }
            let Some(&id) = READ.iter().find(|id| id.name() == name) else {
                continue;
            };
            let range = section.compressed_file_range().ok()?;
            if range.format != object::CompressionFormat::None {
                return None;
            }
            let start = usize::try_from(range.offset).ok()?;
            let end = start.checked_add(usize::try_from(range.compressed_size).ok()?)?;
            if end > map.bytes().len() {
                return None;
            }
            sections.push((id, start..end));
        }
        let mut exe = Exe {
            map,
            endian,
            bias,
            segments,
            sections,
            units: Vec::new(),
            unit_offsets: Vec::new(),
            symbols: None,
            cache: Vec::new(),
        };
        (exe.units, exe.unit_offsets) = exe.index().ok()??;
        Some(exe)
    }

    fn dwarf(&self) -> gimli::Dwarf<R<'_>> {
        let bytes = self.map.bytes();
        let load = |id: SectionId| -> Result<R<'_>, ()> {
            let data = self
                .sections
                .iter()
                .find(|(s, _)| *s == id)
                .map_or(&[][..], |(_, r)| &bytes[r.clone()]);
            Ok(EndianSlice::new(data, self.endian))
        };
        match gimli::Dwarf::load(load) {
            Ok(d) => d,
            Err(()) => unreachable!("the loader never fails"),
        }
    }

    /// Every compilation unit's address ranges; `None` when a unit is split (its debug info
    /// is elsewhere).
    #[allow(clippy::type_complexity)]
    fn index(&self) -> gimli::Result<Option<(Vec<(u64, u64, usize)>, Vec<usize>)>> {
        let dwarf = self.dwarf();
        let mut units = Vec::new();
        let mut offsets = Vec::new();
        let mut headers = dwarf.units();
        while let Some(header) = headers.next()? {
            if let Some(offset) = header.debug_info_offset() {
                offsets.push(offset.0);
            }
            match header.type_() {
                gimli::UnitType::Compilation => {}
                gimli::UnitType::Skeleton(_) | gimli::UnitType::SplitCompilation(_) => {
                    return Ok(None)
                }
                _ => continue,
            }
            let Some(offset) = header.debug_info_offset() else {
                continue;
            };
            let Ok(unit) = dwarf.unit(header) else {
                continue;
            };
            let mut ranges = dwarf.unit_ranges(&unit)?;
            while let Some(r) = ranges.next()? {
                if r.begin < r.end {
                    units.push((r.begin, r.end, offset.0));
                }
            }
        }
        units.sort_unstable();
        units.shrink_to_fit();
        offsets.sort_unstable();
        offsets.shrink_to_fit();
        Ok(Some((units, offsets)))
    }

    /// The frames at file address `probe`, innermost first (empty when no unit has it).
    fn lookup(&mut self, probe: u64) -> gimli::Result<Vec<Frame>> {
        let i = self.units.partition_point(|u| u.0 <= probe);
        let Some(&(_, _, offset)) = self.units[..i].iter().rev().take(16).find(|u| probe < u.1)
        else {
            return Ok(Vec::new());
        };
        let tables = match self.cache.iter().position(|t| t.offset == offset) {
            Some(k) => self.cache.remove(k),
            None => self.tables(offset)?,
        };
        let found = self.lookup_in(&tables, probe);
        // Kept, the latest last, the oldest dropped beyond the budget.
        self.cache.push(tables);
        let mut total: usize = self.cache.iter().map(UnitTables::bytes).sum();
        while total > CACHE_BUDGET && self.cache.len() > 1 {
            total -= self.cache.remove(0).bytes();
        }
        found
    }

    /// Reads unit `offset`'s functions and line table.
    fn tables(&self, offset: usize) -> gimli::Result<UnitTables> {
        let dwarf = self.dwarf();
        let header = dwarf
            .debug_info
            .header_from_offset(gimli::DebugInfoOffset(offset))?;
        let unit = dwarf.unit(header)?;
        let unit_ref = gimli::UnitRef::new(&dwarf, &unit);
        let mut functions = Vec::new();
        {
            let mut tree = unit.entries_tree(None)?;
            collect_functions(unit_ref, tree.root()?, &mut functions)?;
        }
        functions.sort_unstable_by_key(|f| (f.0, f.1));
        functions.shrink_to_fit();
        Ok(UnitTables { offset, functions })
    }

    fn lookup_in(&self, tables: &UnitTables, probe: u64) -> gimli::Result<Vec<Frame>> {
        let i = tables.functions.partition_point(|f| f.0 <= probe);
        let Some(&(_, _, function)) = tables.functions[..i]
            .iter()
            .rev()
            .take(16)
            .find(|f| probe < f.1)
        else {
            // No function entry (code written in assembly has a line table alone): the
            // location, named from the symbol table (see `frames_at`).
            let dwarf = self.dwarf();
            let header = dwarf
                .debug_info
                .header_from_offset(gimli::DebugInfoOffset(tables.offset))?;
            let unit = dwarf.unit(header)?;
            let (file, line) = line_of(gimli::UnitRef::new(&dwarf, &unit), probe)?;
            if file.is_none() && line.is_none() {
                return Ok(Vec::new());
            }
            return Ok(vec![Frame {
                function: String::new(),
                file,
                line,
                inlined: false,
            }]);
        };
        let dwarf = self.dwarf();
        let header = dwarf
            .debug_info
            .header_from_offset(gimli::DebugInfoOffset(tables.offset))?;
        let unit = dwarf.unit(header)?;
        let unit_ref = gimli::UnitRef::new(&dwarf, &unit);
        // The function and the calls inlined in it that hold `probe`, outermost first.
        let mut chain = vec![function];
        {
            let mut tree = unit.entries_tree(Some(function))?;
            search(unit_ref, tree.root()?, probe, &mut chain)?;
        }
        let (file, line) = line_of(unit_ref, probe)?;
        let mut frames = Vec::with_capacity(chain.len());
        // Innermost first: its location is the line table's; each outer frame's is the call
        // site of the frame inlined into it.
        let mut at = (file, line);
        for (k, offset) in chain.iter().enumerate().rev() {
            let entry = unit.entry(*offset)?;
            frames.push(Frame {
                function: name_of(&dwarf, &self.unit_offsets, &unit, &entry, 0)
                    .map_or_else(String::new, |n| demangle(&n)),
                file: at.0.take(),
                line: at.1.take(),
                inlined: k > 0,
            });
            at = (
                entry
                    .attr_value(gimli::DW_AT_call_file)
                    .and_then(|v| match v {
                        AttributeValue::FileIndex(i) | AttributeValue::Udata(i) => Some(i),
                        _ => None,
                    })
                    .and_then(|i| file_path(unit_ref, i)),
                entry
                    .attr_value(gimli::DW_AT_call_line)
                    .and_then(|v| v.udata_value())
                    .filter(|&l| l > 0)
                    .and_then(|l| u32::try_from(l).ok()),
            );
        }
        // An inlined call without a name; the function's own name, when the debug info has
        // none, is the symbol table's (see `frames_at`).
        let n = frames.len();
        for f in &mut frames[..n - 1] {
            if f.function.is_empty() {
                f.function = "??".to_owned();
            }
        }
        Ok(frames)
    }
}

/// Pushes onto `functions` the address ranges of each function entry with code under `node`
/// (in namespaces and types, not in other functions).
fn collect_functions<'a>(
    unit: gimli::UnitRef<'_, R<'a>>,
    node: gimli::EntriesTreeNode<'_, '_, R<'a>>,
    functions: &mut Vec<(u64, u64, gimli::UnitOffset)>,
) -> gimli::Result<()> {
    let mut children = node.children();
    while let Some(child) = children.next()? {
        let entry = child.entry();
        match entry.tag() {
            gimli::DW_TAG_subprogram => {
                let offset = entry.offset();
                let mut ranges = unit.die_ranges(entry)?;
                while let Some(r) = ranges.next()? {
                    if r.begin < r.end {
                        functions.push((r.begin, r.end, offset));
                    }
                }
            }
            gimli::DW_TAG_namespace
            | gimli::DW_TAG_module
            | gimli::DW_TAG_structure_type
            | gimli::DW_TAG_class_type
            | gimli::DW_TAG_union_type
            | gimli::DW_TAG_enumeration_type
            | gimli::DW_TAG_variant_part
            | gimli::DW_TAG_variant => collect_functions(unit, child, functions)?,
            _ => {}
        }
    }
    Ok(())
}

/// Pushes onto `chain` the calls inlined under `node` (a function's entry, or a block in it)
/// that hold `probe`, outermost first; whether one was found.
fn search<'a>(
    unit: gimli::UnitRef<'_, R<'a>>,
    node: gimli::EntriesTreeNode<'_, '_, R<'a>>,
    probe: u64,
    chain: &mut Vec<gimli::UnitOffset>,
) -> gimli::Result<bool> {
    let mut children = node.children();
    while let Some(child) = children.next()? {
        let entry = child.entry();
        match entry.tag() {
            gimli::DW_TAG_inlined_subroutine if holds(unit, entry, probe)? => {
                chain.push(entry.offset());
                search(unit, child, probe, chain)?;
                return Ok(true);
            }
            // Inlined calls in a block of the function.
            gimli::DW_TAG_lexical_block => {
                let mut ranges = unit.die_ranges(entry)?;
                let mut any = false;
                let mut inside = false;
                while let Some(r) = ranges.next()? {
                    any = true;
                    inside |= r.begin <= probe && probe < r.end;
                }
                if (inside || !any) && search(unit, child, probe, chain)? {
                    return Ok(true);
                }
            }
            _ => {}
        }
    }
    Ok(false)
}

/// Whether `entry`'s address ranges hold `probe`.
fn holds<'a>(
    unit: gimli::UnitRef<'_, R<'a>>,
    entry: &gimli::DebuggingInformationEntry<R<'a>>,
    probe: u64,
) -> gimli::Result<bool> {
    let mut ranges = unit.die_ranges(entry)?;
    while let Some(r) = ranges.next()? {
        if r.begin <= probe && probe < r.end {
            return Ok(true);
        }
    }
    Ok(false)
}

/// An entry's name: its linkage name, else its name, else its abstract origin's or its
/// specification's (followed a few deep, into other units too).
fn name_of<'a>(
    dwarf: &gimli::Dwarf<R<'a>>,
    unit_offsets: &[usize],
    unit: &gimli::Unit<R<'a>>,
    entry: &gimli::DebuggingInformationEntry<R<'a>>,
    depth: u32,
) -> Option<String> {
    for at in [
        gimli::DW_AT_linkage_name,
        gimli::DW_AT_MIPS_linkage_name,
        gimli::DW_AT_name,
    ] {
        if let Some(v) = entry.attr_value(at) {
            if let Ok(s) = dwarf.attr_string(unit, v) {
                return Some(s.to_string_lossy().into_owned());
            }
        }
    }
    if depth > 16 {
        return None;
    }
    for at in [gimli::DW_AT_abstract_origin, gimli::DW_AT_specification] {
        match entry.attr_value(at) {
            Some(AttributeValue::UnitRef(offset)) => {
                let origin = unit.entry(offset).ok()?;
                return name_of(dwarf, unit_offsets, unit, &origin, depth + 1);
            }
            Some(AttributeValue::DebugInfoRef(offset)) => {
                // The unit that holds the entry: the last to start before it.
                let i = unit_offsets.partition_point(|&u| u <= offset.0);
                let start = *unit_offsets.get(i.checked_sub(1)?)?;
                let header = dwarf
                    .debug_info
                    .header_from_offset(gimli::DebugInfoOffset(start))
                    .ok()?;
                let other = dwarf.unit(header).ok()?;
                let origin = other.entry(offset.to_unit_offset(&other.header)?).ok()?;
                return name_of(dwarf, unit_offsets, &other, &origin, depth + 1);
            }
            _ => {}
        }
    }
    None
}

/// The file and line of `probe` in `unit`'s line table, run up to the row that holds it.
fn line_of(
    unit: gimli::UnitRef<'_, R<'_>>,
    probe: u64,
) -> gimli::Result<(Option<String>, Option<u32>)> {
    let Some(program) = unit.line_program.clone() else {
        return Ok((None, None));
    };
    let mut rows = program.rows();
    // The last row of the sequence under way: (address, file, line). Of rows at one
    // address, the last counts.
    let mut last: Option<(u64, u64, u64)> = None;
    while let Some((_, row)) = rows.next_row()? {
        if let Some((address, file, line)) = last {
            if address <= probe && probe < row.address() {
                return Ok((
                    file_path(unit, file),
                    (line > 0).then(|| u32::try_from(line).ok()).flatten(),
                ));
            }
        }
        last = (!row.end_sequence()).then(|| {
            (
                row.address(),
                row.file_index(),
                row.line().map_or(0, |l| l.get()),
            )
        });
    }
    Ok((None, None))
}

/// The path of file `index` of `unit`'s line table: its directory (the unit's for DWARF 4's
/// index 0) joined to its name, under the unit's compilation directory when relative.
fn file_path(unit: gimli::UnitRef<'_, R<'_>>, index: u64) -> Option<String> {
    let header = unit.line_program.as_ref()?.header();
    let file = header.file(index)?;
    let mut path = std::path::PathBuf::new();
    if let Some(dir) = &unit.comp_dir {
        path.push(&*dir.to_string_lossy());
    }
    if let Some(dir) = file.directory(header) {
        if let Ok(d) = unit.attr_string(dir) {
            path.push(&*d.to_string_lossy());
        }
    }
    path.push(&*unit.attr_string(file.path_name()).ok()?.to_string_lossy());
    Some(path.display().to_string())
}

/// The executable's load bias and its loaded segments (runtime addresses): the first object
/// the loader lists.
fn executable_segments() -> Option<(usize, Vec<Range<usize>>)> {
    let first = crate::symtab::loaded_objects().into_iter().next()?;
    Some((first.bias, first.segments))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn outer() -> Vec<usize> {
        inner()
    }

    #[inline(always)]
    fn inner() -> Vec<usize> {
        let mut ips = Vec::new();
        backtrace::trace(|f| {
            ips.push(f.ip() as usize);
            true
        });
        ips
    }

    /// The frames read here are the backtrace crate's, for every return address of a real
    /// stack (through the standard library and the test harness, inlined calls included),
    /// with names, files and lines.
    #[test]
    fn frames_are_the_backtrace_crates() {
        let stack = outer();
        let mut compared = 0;
        for ip in stack.into_iter().filter(|&ip| ip > 0) {
            let at = ip - 1;
            let ours = crate::fork::with_backtrace(|| frames_at(at));
            let Some(ours) = ours else { continue };
            let mut theirs = Vec::new();
            // `resolve` looks up the address before the one it is given (a return address).
            backtrace::resolve((at + 1) as *mut std::ffi::c_void, |sym| {
                theirs.push((
                    sym.name().map(|n| format!("{n:#}")),
                    sym.filename().map(|f| f.display().to_string()),
                    sym.lineno(),
                ));
            });
            let ours: Vec<_> = ours
                .iter()
                .map(|f| (Some(f.function.clone()), f.file.clone(), f.line))
                .collect();
            assert_eq!(ours, theirs, "at {at:#x}");
            compared += 1;
        }
        empty();
        backtrace::clear_symbol_cache();
        eprintln!("{compared} addresses compared");
        assert!(
            compared >= 3,
            "only {compared} addresses were the executable's"
        );
    }

    /// The executable's compact symbol table holds the functions, ends and names of the one
    /// with copied names.
    #[test]
    fn compact_symbols_are_the_copied_ones() {
        let map = Map::new(&std::fs::File::open("/proc/self/exe").unwrap()).unwrap();
        let bytes = map.bytes();
        let file = object::File::parse(bytes).unwrap();
        let copied = crate::symtab::functions_of(&file, false);
        let compact = crate::symtab::function_ranges_of(&file, bytes);
        assert!(copied.len() > 1000, "{} functions", copied.len());
        assert_eq!(copied.len(), compact.len());
        for (a, b) in copied.iter().zip(&compact) {
            let name = &bytes[b.2 as usize..(b.2 + b.3) as usize];
            assert_eq!((a.0, a.1, a.2.as_bytes()), (b.0, b.1, name));
        }
    }

    /// The same, at addresses all over the executable's code: the middle of 1,500 of its
    /// functions (every unit's code, inlined calls, entries other units refer to).
    #[test]
    fn frames_are_the_backtrace_crates_all_over_the_program() {
        let map = Map::new(&std::fs::File::open("/proc/self/exe").unwrap()).unwrap();
        let file = object::File::parse(map.bytes()).unwrap();
        let functions = crate::symtab::functions_of(&file, false);
        let (bias, _) = executable_segments().unwrap();
        let step = (functions.len() / 1500).max(1);
        let (mut compared, mut differ) = (0, Vec::new());
        for f in functions.iter().step_by(step) {
            let at = bias + f.0 + (f.1 - f.0) / 2;
            let Some(ours) = crate::fork::with_backtrace(|| frames_at(at)) else {
                continue;
            };
            let mut theirs = Vec::new();
            backtrace::resolve((at + 1) as *mut std::ffi::c_void, |sym| {
                theirs.push((
                    sym.name()
                        .map_or_else(|| "??".to_owned(), |n| format!("{n:#}")),
                    sym.filename().map(|f| f.display().to_string()),
                    sym.lineno(),
                ));
            });
            let ours: Vec<_> = ours
                .iter()
                .map(|f| (f.function.clone(), f.file.clone(), f.line))
                .collect();
            compared += 1;
            // Where the backtrace crate finds nothing (`_init`, in its own section), the
            // symbol table's name is kept; where functions were folded into one (identical
            // code), the symbol table has several names for it, either right.
            let symbol_only = |f: &[(String, Option<String>, Option<u32>)]| {
                f.len() == 1 && f[0].1.is_none() && f[0].2.is_none()
            };
            let named_from_symbols =
                symbol_only(&ours) && (theirs.is_empty() || symbol_only(&theirs));
            if ours != theirs && !named_from_symbols {
                differ.push(format!(
                    "at {at:#x}:\n  ours   {ours:?}\n  theirs {theirs:?}"
                ));
            }
        }
        empty();
        backtrace::clear_symbol_cache();
        eprintln!("{compared} addresses compared, {} differ", differ.len());
        assert!(compared > 500, "only {compared} addresses compared");
        assert!(
            differ.is_empty(),
            "{}",
            differ[..differ.len().min(8)].join("\n")
        );
    }
}
