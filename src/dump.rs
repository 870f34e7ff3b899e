//! The JSON stats file of [`Stats::dump`](crate::Stats::dump) and
//! [`Stats::load`](crate::Stats::load): opening it without blocking, reading its format
//! version on its own, and checking before a dump that what is written can be read back.

use std::fmt::{self, Display};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{self, Serialize, Serializer};

use crate::error::{Error, Result};

/// The deepest nesting of JSON arrays and objects that `serde_json` reads into typed values
/// (its recursion limit is 128 levels, the 128th refused).
pub(crate) const MAX_DEPTH: usize = 127;

// ---- Reading ------------------------------------------------------------------------------

/// Reads the whole of the regular file at `path`.
///
/// The file is opened first and its type checked on the open file (no window between check
/// and use); on unix it is opened with `O_NONBLOCK`, so that opening a FIFO with no writer
/// returns at once instead of waiting for one. `O_NONBLOCK` changes nothing for a regular
/// file, the only kind read. On Windows no open waits either (a named pipe with no free
/// instance fails at once), and a directory cannot be opened as a file: the second look at the
/// path below names it. Anything else (a directory, a FIFO, a device, a socket, a pipe) is
/// [`Error::NotAFile`]: a device such as `/dev/zero` would be read without end.
pub(crate) fn read_regular_file(path: &Path) -> Result<Vec<u8>> {
    let io_err = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let mut file: File = match options.open(path) {
        Ok(file) => file,
        Err(e) => {
            // A socket cannot be opened at all (ENXIO), nor a directory on some platforms:
            // name what the path is rather than the system's code. Only the message depends
            // on this second look, never what is read.
            return Err(match fs::metadata(path) {
                Ok(meta) if !meta.is_file() => not_a_file(path, &meta.file_type()),
                _ => io_err(e),
            });
        }
    };
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(not_a_file(path, &meta.file_type()));
    }
    let too_large = || {
        io_err(io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("the file's {} bytes do not fit in memory", meta.len()),
        ))
    };
    let len = usize::try_from(meta.len()).map_err(|_| too_large())?;
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(len).map_err(|_| too_large())?;
    file.read_to_end(&mut bytes).map_err(io_err)?;
    Ok(bytes)
}

fn not_a_file(path: &Path, file_type: &fs::FileType) -> Error {
    Error::NotAFile {
        path: path.to_owned(),
        kind: kind_of(file_type),
    }
}

fn kind_of(file_type: &fs::FileType) -> &'static str {
    if file_type.is_dir() {
        return "a directory";
    }
    if file_type.is_symlink() {
        return "a symbolic link";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

// ---- The format version, read on its own -----------------------------------------------------

/// What the `version` member of a stats file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Version {
    /// A whole number from 0 up.
    Number(u64),
    /// Something else (a string, a negative or fractional number, an array...): why not.
    Invalid(String),
    /// The file is an object with no `version` member.
    Missing,
    /// The file is not JSON, or not an object, before any `version` member.
    Unknown,
}

/// Reads the `version` member of the JSON object in `bytes`, skipping every other member
/// without building it (so a large file costs no memory here), and without minding what the
/// rest of the file holds once the version is read: a newer format is told from a damaged file
/// by its version alone.
pub(crate) fn peek_version(bytes: &[u8]) -> Version {
    let mut found = None;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let whole = VersionSeed(&mut found).deserialize(&mut de);
    match (found, whole) {
        (Some(version), _) => version,
        (None, Ok(())) => Version::Missing,
        (None, Err(_)) => Version::Unknown,
    }
}

/// Reads the top-level object, storing its `version` member the moment it is read.
struct VersionSeed<'a>(&'a mut Option<Version>);

impl<'de> DeserializeSeed<'de> for VersionSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for VersionSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        while let Some(key) = map.next_key::<MemberName>()? {
            if key.is_version && self.0.is_none() {
                let version = map.next_value::<VersionValue>()?;
                *self.0 = Some(version.0);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// A member name: whether it is `version`, without keeping it.
struct MemberName {
    is_version: bool,
}

impl<'de> de::Deserialize<'de> for MemberName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Name;
        impl Visitor<'_> for Name {
            type Value = MemberName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<MemberName, E> {
                Ok(MemberName {
                    is_version: v == "version",
                })
            }
        }
        deserializer.deserialize_str(Name)
    }
}

/// The value of a `version` member, whatever it is.
struct VersionValue(Version);

impl<'de> de::Deserialize<'de> for VersionValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = Version;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a format version")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Version, E> {
                Ok(Version::Number(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Version, E> {
                Ok(u64::try_from(v).map_or_else(
                    |_| Version::Invalid(format!("the format version is {v}, below 0")),
                    Version::Number,
                ))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Version, E> {
                Ok(Version::Invalid(format!(
                    "the format version is {v}, not a whole number"
                )))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Version, E> {
                Ok(invalid("a boolean", v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Version, E> {
                Ok(invalid("a string", format_args!("{v:?}")))
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<Version, E> {
                Ok(invalid("null", ""))
            }
            fn visit_none<E: de::Error>(self) -> std::result::Result<Version, E> {
                Ok(invalid("null", ""))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Version, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(invalid("an array", ""))
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Version, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(invalid("an object", ""))
            }
        }
        deserializer.deserialize_any(Any).map(VersionValue)
    }
}

fn invalid(what: &str, value: impl Display) -> Version {
    let value = value.to_string();
    let shown = if value.is_empty() {
        String::new()
    } else {
        format!(" {}", clip(&value, 40))
    };
    Version::Invalid(format!(
        "the format version is {what}{shown}, not a whole number"
    ))
}

fn clip(s: &str, chars: usize) -> String {
    match s.char_indices().nth(chars) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_owned(),
    }
}

// ---- Checking before a dump ----------------------------------------------------------------

/// Why `value` cannot be written as JSON that reads back equal, if it cannot: a float that is
/// NaN or infinite (JSON has neither; `serde_json` would write `null`), or arrays and objects
/// nested deeper than [`MAX_DEPTH`]. The reason names the field, e.g.
/// `snapshots[2].time is NaN`.
///
/// It walks `value` through serde without writing anything, so it stays right whatever fields
/// the stats gain.
pub(crate) fn check_writable<T: Serialize + ?Sized>(value: &T) -> std::result::Result<(), String> {
    let mut checker = Checker {
        path: Vec::new(),
        depth: 0,
    };
    value
        .serialize(&mut checker)
        .map_err(|Found(reason)| reason)
}

/// One step from the stats down to a value.
enum Step {
    Field(&'static str),
    Index(usize),
    Value,
}

struct Checker {
    path: Vec<Step>,
    depth: usize,
}

impl Checker {
    fn path(&self) -> String {
        let mut s = String::new();
        for step in &self.path {
            match step {
                Step::Field(name) if s.is_empty() => s.push_str(name),
                Step::Field(name) => {
                    s.push('.');
                    s.push_str(name);
                }
                Step::Index(i) => s.push_str(&format!("[{i}]")),
                Step::Value => s.push_str("[..]"),
            }
        }
        if s.is_empty() {
            s.push_str("the stats");
        }
        s
    }

    fn float(&self, v: f64) -> std::result::Result<(), Found> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(Found(format!(
                "{} is {v}, which JSON cannot hold: make it a finite number",
                self.path()
            )))
        }
    }

    fn enter(&mut self, levels: usize) -> std::result::Result<Nested<'_>, Found> {
        self.depth += levels;
        if self.depth > MAX_DEPTH {
            return Err(Found(format!(
                "{} is nested {} arrays and objects deep, deeper than Stats::load reads \
                 ({MAX_DEPTH}): lower the resolution_level of its class",
                self.path(),
                self.depth
            )));
        }
        Ok(Nested {
            checker: self,
            index: 0,
            levels,
        })
    }
}

/// Why a value cannot be written.
#[derive(Debug)]
struct Found(String);

impl Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Found {}

impl ser::Error for Found {
    fn custom<T: Display>(msg: T) -> Self {
        Found(msg.to_string())
    }
}

type Checked = std::result::Result<(), Found>;

impl<'a> Serializer for &'a mut Checker {
    type Ok = ();
    type Error = Found;
    type SerializeSeq = Nested<'a>;
    type SerializeTuple = Nested<'a>;
    type SerializeTupleStruct = Nested<'a>;
    type SerializeTupleVariant = Nested<'a>;
    type SerializeMap = Nested<'a>;
    type SerializeStruct = Nested<'a>;
    type SerializeStructVariant = Nested<'a>;

    fn serialize_bool(self, _: bool) -> Checked {
        Ok(())
    }
    fn serialize_i8(self, _: i8) -> Checked {
        Ok(())
    }
    fn serialize_i16(self, _: i16) -> Checked {
        Ok(())
    }
    fn serialize_i32(self, _: i32) -> Checked {
        Ok(())
    }
    fn serialize_i64(self, _: i64) -> Checked {
        Ok(())
    }
    fn serialize_i128(self, _: i128) -> Checked {
        Ok(())
    }
    fn serialize_u8(self, _: u8) -> Checked {
        Ok(())
    }
    fn serialize_u16(self, _: u16) -> Checked {
        Ok(())
    }
    fn serialize_u32(self, _: u32) -> Checked {
        Ok(())
    }
    fn serialize_u64(self, _: u64) -> Checked {
        Ok(())
    }
    fn serialize_u128(self, _: u128) -> Checked {
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Checked {
        self.float(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Checked {
        self.float(v)
    }
    fn serialize_char(self, _: char) -> Checked {
        Ok(())
    }
    fn serialize_str(self, _: &str) -> Checked {
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Checked {
        // serde_json writes bytes as an array of numbers.
        self.enter(1)?.close()
    }
    fn serialize_none(self) -> Checked {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Checked {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Checked {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Checked {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Checked {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Checked {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Checked {
        // Written as `{"variant": value}`.
        let mut nested = self.enter(1)?;
        ser::SerializeStruct::serialize_field(&mut nested, variant, value)?;
        ser::SerializeStruct::end(nested)
    }
    fn serialize_seq(self, _: Option<usize>) -> std::result::Result<Nested<'a>, Found> {
        self.enter(1)
    }
    fn serialize_tuple(self, _: usize) -> std::result::Result<Nested<'a>, Found> {
        self.enter(1)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> std::result::Result<Nested<'a>, Found> {
        self.enter(1)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> std::result::Result<Nested<'a>, Found> {
        // Written as `{"variant": [...]}`.
        self.path.push(Step::Field(variant));
        self.enter(2)
    }
    fn serialize_map(self, _: Option<usize>) -> std::result::Result<Nested<'a>, Found> {
        self.enter(1)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> std::result::Result<Nested<'a>, Found> {
        self.enter(1)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> std::result::Result<Nested<'a>, Found> {
        // Written as `{"variant": {...}}`.
        self.path.push(Step::Field(variant));
        self.enter(2)
    }
}

/// An array or object being walked: the checker, the next element's index, and how many
/// levels of nesting it opened.
struct Nested<'a> {
    checker: &'a mut Checker,
    index: usize,
    levels: usize,
}

impl Nested<'_> {
    fn child<T: Serialize + ?Sized>(&mut self, step: Step, value: &T) -> Checked {
        self.checker.path.push(step);
        value.serialize(&mut *self.checker)?;
        self.checker.path.pop();
        Ok(())
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Checked {
        let step = Step::Index(self.index);
        self.index += 1;
        self.child(step, value)
    }

    fn close(self) -> Checked {
        self.checker.depth -= self.levels;
        if self.levels == 2 {
            // The variant name pushed by a tuple or struct variant.
            self.checker.path.pop();
        }
        Ok(())
    }
}

/// The compound serializers: elements of sequences and tuples are checked one by one, fields
/// of structs under their names.
macro_rules! nested_elements {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Nested<'_> {
            type Ok = ();
            type Error = Found;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Checked {
                self.element(value)
            }
            fn end(self) -> Checked {
                self.close()
            }
        }
    )*};
}

macro_rules! nested_fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Nested<'_> {
            type Ok = ();
            type Error = Found;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Checked {
                self.child(Step::Field(key), value)
            }
            fn end(self) -> Checked {
                self.close()
            }
        }
    )*};
}

nested_elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);
nested_fields!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for Nested<'_> {
    type Ok = ();
    type Error = Found;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, _: &T) -> Checked {
        // serde_json writes a key as a string (or fails itself): nothing to check.
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Checked {
        self.child(Step::Value, value)
    }
    fn end(self) -> Checked {
        self.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_read_alone_whatever_follows() {
        assert_eq!(peek_version(b"{\"version\":1}"), Version::Number(1));
        assert_eq!(
            peek_version(b"{\"a\":[[[{\"b\":\"}\"}]]],\"version\":4294967296,\"c\":"),
            Version::Number(1 << 32)
        );
        assert_eq!(peek_version(b"{\"a\":1}"), Version::Missing);
        assert_eq!(peek_version(b"[1]"), Version::Unknown);
        assert_eq!(peek_version(b"{\"a\":"), Version::Unknown);
        for (text, reason) in [
            ("\"1\"", "a string \"1\""),
            ("-1", "-1, below 0"),
            ("1.5", "1.5, not a whole"),
            ("null", "null"),
            ("[1]", "an array"),
            ("{}", "an object"),
            ("true", "a boolean true"),
        ] {
            let json = format!("{{\"version\":{text}}}");
            match peek_version(json.as_bytes()) {
                Version::Invalid(r) => assert!(r.contains(reason), "{r}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn check_names_the_non_finite_float_and_the_too_deep_value() {
        #[derive(serde::Serialize)]
        struct Inner {
            times: Vec<(f64, u64)>,
        }
        #[derive(serde::Serialize)]
        struct Outer {
            version: u32,
            inner: Vec<Inner>,
        }
        let ok = Outer {
            version: 1,
            inner: vec![Inner {
                times: vec![(1.0, 2), (f64::MAX, 3)],
            }],
        };
        assert_eq!(check_writable(&ok), Ok(()));
        let nan = Outer {
            version: 1,
            inner: vec![
                Inner {
                    times: vec![(1.0, 2)],
                },
                Inner {
                    times: vec![(1.0, 2), (f64::NEG_INFINITY, 3)],
                },
            ],
        };
        let reason = check_writable(&nan).unwrap_err();
        assert!(
            reason.starts_with("inner[1].times[1][0] is -inf"),
            "{reason}"
        );

        let mut deep = serde_json::Value::Null;
        for _ in 0..MAX_DEPTH {
            deep = serde_json::Value::Array(vec![deep]);
        }
        assert_eq!(check_writable(&deep), Ok(()));
        let deeper = serde_json::Value::Array(vec![deep]);
        let reason = check_writable(&deeper).unwrap_err();
        assert!(reason.contains("nested 128 arrays"), "{reason}");
        // The limit is serde_json's own: one level less reads, this one does not.
        let text = serde_json::to_string(&deeper).unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());
        let text = serde_json::to_string(&deeper[0]).unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
    }
}
