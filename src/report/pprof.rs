//! pprof profiles of allocation sites: gzipped `profile.proto`, encoded with prost.
//!
//! Sample types are `alloc_objects`/`count`, `alloc_space`/`bytes`, `inuse_objects`/`count`
//! and `inuse_space`/`bytes` (as Go's heap profiles), each sample labelled with its `class`.
//! `go tool pprof -top file.pb.gz` reads it; `go tool pprof -http=: file.pb.gz` shows it.
//!
//! A snapshot's profile (what [`Snapshot::write_pprof`] and the endpoint's `/debug/pprof/heap`
//! write) carries the process's mappings on Linux: the path, address range, file offset and
//! GNU build id of the executable and of each shared object, the executable first, and each
//! location its address and mapping. So `go tool pprof BINARY PROFILE` knows the binary, and a
//! frame debug info could not name when the profile was taken (a stripped binary) is written as
//! an address alone, in a mapping marked as not symbolized, for `go tool pprof` (given the
//! unstripped binary, or finding it by build id) or a continuous profiler to symbolize later.
//! A profile of stats ([`Stats::write_pprof`], `classtrack pprof DUMP`) carries the mappings
//! of the process when its stats were gathered, and its sites' addresses, which dumps keep
//! (dumps of versions before them have neither, and their profiles no mapping).

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use hashbrown::HashMap;
use prost::Message;

use crate::mapping::{self, Mapping};
use crate::sampling::Frame;
use crate::snapshot::Snapshot;
use crate::stats::{SnapshotStats, Stats};

/// The messages of `profile.proto` that classtrack writes.
#[allow(missing_docs)]
pub mod proto {
    /// A profile.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }

    /// A sample type or unit, as string-table indices.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    /// One stack and its values.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }

    /// A label on a sample.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(int64, tag = "1")]
        pub key: i64,
        #[prost(int64, tag = "2")]
        pub str: i64,
        #[prost(int64, tag = "3")]
        pub num: i64,
        #[prost(int64, tag = "4")]
        pub num_unit: i64,
    }

    /// A loaded binary.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub memory_start: u64,
        #[prost(uint64, tag = "3")]
        pub memory_limit: u64,
        #[prost(uint64, tag = "4")]
        pub file_offset: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
        #[prost(int64, tag = "6")]
        pub build_id: i64,
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
        #[prost(bool, tag = "8")]
        pub has_filenames: bool,
        #[prost(bool, tag = "9")]
        pub has_line_numbers: bool,
        #[prost(bool, tag = "10")]
        pub has_inline_frames: bool,
    }

    /// A code address and the (inlined) lines at it.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(uint64, tag = "3")]
        pub address: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
    }

    /// A source line in a function.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }

    /// A function.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
        #[prost(int64, tag = "5")]
        pub start_line: i64,
    }
}

#[derive(Default)]
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Strings {
        let mut s = Strings::default();
        s.get("");
        s
    }

    fn get(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

/// One allocation site as a profile sample: its class, its symbolized stack (innermost
/// frame first) and its estimates.
struct ProfileSite<'a> {
    class: &'a str,
    frames: &'a [Frame],
    /// The code address of each location of `frames` (see `location_addresses`; empty:
    /// unknown).
    addresses: Vec<u64>,
    allocations: f64,
    allocated_bytes: f64,
    live_blocks: f64,
    live_bytes: f64,
}

/// Whether debug info named nothing at this frame: the symbolizer wrote its address instead.
fn unsymbolized(f: &Frame) -> bool {
    f.file.is_none() && f.function.starts_with("0x")
}

/// What the locations of one mapping have: every flag starts true and is cleared by the first
/// location without it.
#[derive(Clone, Copy)]
struct Has {
    any: bool,
    functions: bool,
    filenames: bool,
    line_numbers: bool,
}

/// Which sample type a profile shows by default: Go's `/debug/pprof/heap` and
/// `/debug/pprof/allocs` are the same profile but for this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DefaultType {
    /// `inuse_space`: the heap profile.
    InUse,
    /// `alloc_space`: the allocations profile.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    Allocated,
}

/// The profile of `sites`: what [`Snapshot::pprof_profile`] and [`Stats::pprof_profile`]
/// share. `period` is the sampling mean in bytes, `time_nanos` the wall-clock time (0:
/// unknown), `mappings` the process's (empty: unknown).
fn build<'a>(
    sites: impl IntoIterator<Item = ProfileSite<'a>>,
    period: u64,
    time_nanos: i64,
    mappings: &[Mapping],
    default_type: DefaultType,
) -> proto::Profile {
    let mut strings = Strings::new();
    let vt = |s: &mut Strings, t: &str, u: &str| proto::ValueType {
        r#type: s.get(t),
        unit: s.get(u),
    };
    let sample_type = vec![
        vt(&mut strings, "alloc_objects", "count"),
        vt(&mut strings, "alloc_space", "bytes"),
        vt(&mut strings, "inuse_objects", "count"),
        vt(&mut strings, "inuse_space", "bytes"),
    ];
    let class_key = strings.get("class");
    let mut functions: Vec<proto::Function> = Vec::new();
    let mut function_ids: HashMap<(String, String), u64> = HashMap::new();
    let mut locations: Vec<proto::Location> = Vec::new();
    // Locations by their run of frames, so trimmed and untrimmed uses of an address stay
    // apart.
    let mut location_ids: HashMap<Vec<Frame>, u64> = HashMap::new();
    let mut has = vec![
        Has {
            any: false,
            functions: true,
            filenames: true,
            line_numbers: true,
        };
        mappings.len()
    ];
    let mut samples: Vec<proto::Sample> = Vec::new();
    // Sites whose stacks read the same (of one class) are one sample.
    let mut sample_ids: HashMap<(Vec<u64>, i64), usize> = HashMap::new();
    // Their values, added before rounding.
    let mut sums: Vec<[f64; 4]> = Vec::new();
    for site in sites {
        let addresses = &site.addresses;
        // Group the symbolized frames back into locations: each location holds a run of
        // inlined frames ending with a non-inlined one.
        let mut location_id = Vec::new();
        let mut group: Vec<Frame> = Vec::new();
        for (i, f) in site.frames.iter().enumerate() {
            group.push(f.clone());
            // The last frame closes its group too: a stack cut below `main` (or at the
            // capture's depth) can end in frames inlined into one it leaves out.
            if f.inlined && i + 1 < site.frames.len() {
                continue;
            }
            let frames = std::mem::take(&mut group);
            let address = addresses.get(location_id.len()).copied().unwrap_or(0);
            let next = locations.len() as u64 + 1;
            let id = *location_ids.entry(frames.clone()).or_insert_with(|| {
                let mapping = mappings
                    .iter()
                    .position(|m| (m.start..m.limit).contains(&address));
                let bare = frames.iter().all(unsymbolized);
                if let Some(i) = mapping {
                    let h = &mut has[i];
                    h.any = true;
                    h.functions &= !bare;
                    h.filenames &= frames.iter().all(|f| f.file.is_some());
                    h.line_numbers &= frames.iter().all(|f| f.line.is_some());
                }
                if bare && mapping.is_some() {
                    // An address alone, for the binary to name later.
                    locations.push(proto::Location {
                        id: next,
                        mapping_id: mapping.map_or(0, |i| i as u64 + 1),
                        address,
                        line: Vec::new(),
                    });
                    return next;
                }
                let line = frames
                    .iter()
                    .map(|f| {
                        let file = f.file.clone().unwrap_or_default();
                        let key = (f.function.clone(), file.clone());
                        let next_fn = functions.len() as u64 + 1;
                        let function_id = *function_ids.entry(key).or_insert_with(|| {
                            functions.push(proto::Function {
                                id: next_fn,
                                name: strings.get(&f.function),
                                // Left empty: where it equals the name, pprof takes the
                                // name for C++ and strips everything between `<` and `>`,
                                // leaving `::reserve` of `<alloc::vec::Vec<u8>>::reserve`.
                                system_name: 0,
                                filename: strings.get(&file),
                                start_line: 0,
                            });
                            next_fn
                        });
                        proto::Line {
                            function_id,
                            line: f.line.map_or(0, i64::from),
                        }
                    })
                    .collect();
                locations.push(proto::Location {
                    id: next,
                    mapping_id: mapping.map_or(0, |i| i as u64 + 1),
                    address,
                    line,
                });
                next
            });
            location_id.push(id);
        }
        let value = [
            site.allocations,
            site.allocated_bytes,
            site.live_blocks,
            site.live_bytes,
        ];
        let class = strings.get(site.class);
        match sample_ids.entry((location_id, class)) {
            hashbrown::hash_map::Entry::Occupied(e) => {
                for (sum, v) in sums[*e.get()].iter_mut().zip(value) {
                    *sum += v;
                }
            }
            hashbrown::hash_map::Entry::Vacant(e) => {
                let location_id = e.key().0.clone();
                e.insert(samples.len());
                sums.push(value);
                samples.push(proto::Sample {
                    location_id,
                    value: Vec::new(),
                    label: vec![proto::Label {
                        key: class_key,
                        str: class,
                        num: 0,
                        num_unit: 0,
                    }],
                });
            }
        }
    }
    for (sample, sum) in samples.iter_mut().zip(sums) {
        sample.value = sum.iter().map(|v| v.round() as i64).collect();
    }
    let mapping = mappings
        .iter()
        .zip(&has)
        .enumerate()
        .map(|(i, (m, h))| proto::Mapping {
            id: i as u64 + 1,
            memory_start: m.start,
            memory_limit: m.limit,
            file_offset: m.offset,
            filename: strings.get(&m.path),
            build_id: m.build_id.as_deref().map_or(0, |id| strings.get(id)),
            // A mapping no location points into is left for the tools to symbolize, as one
            // with a bare address.
            has_functions: h.any && h.functions,
            has_filenames: h.any && h.functions && h.filenames,
            has_line_numbers: h.any && h.functions && h.line_numbers,
            has_inline_frames: h.any && h.functions,
        })
        .collect();
    let period_type = Some(vt(&mut strings, "space", "bytes"));
    // An index into the string table: the type shown by default.
    let default_sample_type = strings.get(match default_type {
        DefaultType::InUse => "inuse_space",
        DefaultType::Allocated => "alloc_space",
    });
    proto::Profile {
        sample_type,
        sample: samples,
        mapping,
        location: locations,
        function: functions,
        string_table: strings.table,
        time_nanos,
        period_type,
        period: i64::try_from(period).unwrap_or(i64::MAX),
        default_sample_type,
    }
}

/// Writes `profile` gzipped.
fn write_gzipped(profile: &proto::Profile, out: &mut dyn Write) -> crate::Result<()> {
    let bytes = profile.encode_to_vec();
    let mut gz = GzEncoder::new(out, Compression::default());
    gz.write_all(&bytes)
        .and_then(|()| gz.finish().map(drop))
        .map_err(|e| crate::Error::Report(e.to_string()))
}

#[cfg_attr(docsrs, doc(cfg(feature = "pprof")))]
impl Snapshot {
    /// The sampled sites as a pprof profile (not yet compressed), live bytes (`inuse_space`)
    /// shown by default, with the process's mappings (see the [module](self)).
    pub fn pprof_profile(&self) -> proto::Profile {
        self.profile_showing(DefaultType::InUse)
    }

    /// The sampled sites as a pprof profile showing `default_type` by default.
    pub(crate) fn profile_showing(&self, default_type: DefaultType) -> proto::Profile {
        let _g = classtrack_shim::OverheadGuard::new();
        let _b = crate::sampling::Batch::new();
        let symbolized: Vec<(String, Vec<Frame>)> = self
            .sites
            .iter()
            .map(|s| (self.class_label(s.class), s.frames()))
            .collect();
        let time_nanos = self
            .timestamp
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        build(
            self.sites
                .iter()
                .zip(&symbolized)
                .map(|(s, (class, frames))| ProfileSite {
                    class,
                    frames,
                    addresses: crate::mapping::location_addresses(&s.stack, frames),
                    allocations: s.estimate.allocations,
                    allocated_bytes: s.estimate.allocated_bytes,
                    live_blocks: s.estimate.live_blocks,
                    live_bytes: s.estimate.live_bytes,
                }),
            self.sampling.mean_bytes,
            time_nanos,
            &mapping::current(),
            default_type,
        )
    }

    /// Writes the sampled sites as a gzipped pprof profile (as [`pprof_profile`](Self::pprof_profile)).
    pub fn write_pprof(&self, out: &mut dyn Write) -> crate::Result<()> {
        self.write_pprof_showing(DefaultType::InUse, out)
    }

    /// Writes the sampled sites as a gzipped pprof profile showing `default_type` by default.
    pub(crate) fn write_pprof_showing(
        &self,
        default_type: DefaultType,
        out: &mut dyn Write,
    ) -> crate::Result<()> {
        let _g = classtrack_shim::OverheadGuard::new();
        write_gzipped(&self.profile_showing(default_type), out)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "pprof")))]
impl Stats {
    /// The sites kept of `snapshot` (one of [`snapshots`](Self::snapshots)) as a pprof
    /// profile (not yet compressed), as [`Snapshot::pprof_profile`]. Stats keep no wall-clock
    /// time, so the profile's `time_nanos` is 0; its period is the snapshot's sampling mean.
    pub fn pprof_profile(&self, snapshot: &SnapshotStats) -> proto::Profile {
        let _g = classtrack_shim::OverheadGuard::new();
        build(
            snapshot.sites.iter().map(|s| ProfileSite {
                class: &s.class,
                frames: self.frames(s),
                addresses: self
                    .stack_addresses
                    .get(s.stack)
                    .cloned()
                    .unwrap_or_default(),
                allocations: s.estimate.allocations,
                allocated_bytes: s.estimate.allocated_bytes,
                live_blocks: s.estimate.live_blocks,
                live_bytes: s.estimate.live_bytes,
            }),
            snapshot.sampling.mean_bytes,
            0,
            &self.mappings,
            DefaultType::InUse,
        )
    }

    /// Writes the sites kept of `snapshot` as a gzipped pprof profile (`go tool pprof -top
    /// FILE` reads it). Only recent snapshots keep their sites (see
    /// [`Retention::recent_snapshots`](crate::Retention::recent_snapshots)); for another, the
    /// profile has no sample.
    ///
    /// ```
    /// let tracker = classtrack::ClassTracker::new();
    /// tracker.create_snapshot("now");
    /// let stats = tracker.stats();
    /// let mut gz = Vec::new();
    /// stats.write_pprof(&stats.snapshots[0], &mut gz)?;
    /// assert_eq!(&gz[..2], [0x1f, 0x8b]); // gzip's magic number
    /// # Ok::<(), classtrack::Error>(())
    /// ```
    pub fn write_pprof(&self, snapshot: &SnapshotStats, out: &mut dyn Write) -> crate::Result<()> {
        let _g = classtrack_shim::OverheadGuard::new();
        write_gzipped(&self.pprof_profile(snapshot), out)
    }
}
