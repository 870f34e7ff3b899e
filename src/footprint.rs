//! Object sizes by traversal: [`Footprint`], a value's bytes found by walking what it owns,
//! field by field (pympler's `asizeof`, Meta's `allocative`).
//!
//! The allocator charges a block to the scope that allocated it; a traversal answers another
//! question, "what does this object reach now", whatever scope allocated it. It is what
//! [`ClassTracker::track_object_footprint`](crate::ClassTracker::track_object_footprint) measures
//! at each snapshot, and [`footprint_of`] measures once.

use std::alloc::Layout;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, LinkedList, VecDeque};
use std::ffi::{CString, OsString};
use std::mem::size_of_val;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use crate::objects::Referent;

/// A value that can tell what it owns on the heap, part by part.
///
/// [`footprint`](Self::footprint) reports to the [`Visitor`] the heap blocks the value owns
/// (with [`Visitor::heap`]) and its parts that own more (with [`Visitor::field`],
/// [`Visitor::items`] and [`Visitor::shared`]). Its own inline bytes (`size_of_val(self)`) are
/// counted by whoever holds it: do not report them.
///
/// Derive it with `#[derive(classtrack::Footprint)]` (feature `macros`, on by default): each
/// field becomes a part named by the field (`0`, `1`, … in a tuple struct; an enum's active
/// variant's fields), and `#[footprint(skip)]` on a field counts its inline bytes only.
///
/// ```
/// # #[cfg(feature = "macros")] {
/// #[derive(classtrack::Footprint)]
/// struct Session {
///     user: String,
///     cart: Vec<u32>,
///     #[footprint(skip)]
///     socket: std::net::UdpSocket,
/// }
///
/// let s = Session {
///     user: "ada".to_owned(),
///     cart: vec![7; 10],
///     socket: std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
/// };
/// let size = classtrack::footprint_of(&s, 1);
/// assert_eq!(size.bytes, std::mem::size_of::<Session>() as u64 + 3 + 40);
/// assert_eq!(size.referents[0].name, "cart");
/// # }
/// ```
///
/// By hand:
///
/// Implemented for the integers, floats, `bool`, `char`, `()`, `String`, `str`, `Vec`,
/// `VecDeque`, `LinkedList`, `BinaryHeap`, `HashMap`, `HashSet`, `BTreeMap`, `BTreeSet`,
/// `Box`, `Rc` and `Arc` (a block behind several of them is counted once per traversal),
/// `Option`, `Result`, `Cow`, tuples of up to 12, arrays, slices, `PathBuf`, `OsString`,
/// `CString`, references and `PhantomData` (which own nothing), `Duration`, `Instant` and
/// `SystemTime`.
///
/// Exact, as the allocator counts requested bytes, for `String`, `Vec`, `VecDeque`,
/// `BinaryHeap`, `Box`, `Rc`, `Arc`, `LinkedList`, `OsString`, `PathBuf` and `CString`. A
/// `HashMap` or `HashSet` is sized from its capacity as the standard library lays out its
/// table: exact while nothing was removed from it (a removal can leave a tombstone that lowers
/// the capacity it reports, and the size with it). A `BTreeMap` or `BTreeSet` does not tell how
/// many nodes it has: its size is that of the fewest nodes that can hold its entries, a lower
/// bound (within half of the true size in the tests). Locks (`Mutex`, `RwLock`) and cells are not implemented: reading through them
/// could block, or race; implement `Footprint` by hand for a type holding one, choosing how to
/// read it (`try_lock`).
///
/// ```
/// use classtrack::{Footprint, Visitor};
///
/// struct Buffer { bytes: Vec<u8>, label: String }
///
/// impl Footprint for Buffer {
///     fn footprint(&self, v: &mut Visitor<'_>) {
///         v.field("bytes", &self.bytes);
///         v.field("label", &self.label);
///     }
/// }
///
/// let b = Buffer { bytes: Vec::with_capacity(1000), label: "in".to_owned() };
/// let size = classtrack::footprint_of(&b, 1);
/// assert_eq!(size.bytes, std::mem::size_of::<Buffer>() as u64 + 1000 + 2);
/// assert_eq!(size.referents[0].name, "bytes");
/// assert_eq!(size.referents[0].bytes, 24 + 1000);
/// ```
pub trait Footprint {
    /// Reports what `self` owns on the heap to `v` (not its own inline bytes).
    fn footprint(&self, v: &mut Visitor<'_>);
}

/// A value's size by traversal, from [`footprint_of`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FootprintSize {
    /// Its inline bytes and every byte it owns on the heap.
    pub bytes: u64,
    /// Its parts, largest first, to the depth asked; parts of the same name are merged (the
    /// items of a collection are one part, `[items]`).
    pub referents: Vec<Referent>,
}

/// The bytes `value` reaches (its inline bytes and all it owns), broken down by its parts to
/// `depth` levels (0: no breakdown, 1: its fields, 2: also theirs, …).
///
/// ```
/// let words = vec!["alpha".to_owned(), "beta".to_owned()];
/// let size = classtrack::footprint_of(&words, 2);
/// // The Vec itself (24 bytes), its buffer of two Strings (48), and their text (9).
/// assert_eq!(size.bytes, 24 + 48 + 9);
/// assert_eq!(size.referents[0].name, "[items]");
/// assert_eq!(size.referents[0].bytes, 48 + 9);
/// ```
pub fn footprint_of<T: Footprint + ?Sized>(value: &T, depth: u32) -> FootprintSize {
    let mut seen = hashbrown::HashSet::new();
    let mut v = Visitor::new(depth, &mut seen, size_of_val(value));
    value.footprint(&mut v);
    let root = v.finish();
    FootprintSize {
        bytes: root.bytes,
        referents: root.into_referents(),
    }
}

/// One part of the tree being built.
struct Node {
    name: Cow<'static, str>,
    /// The bytes counted in it (and below it).
    bytes: u64,
    /// What of `bytes` its parent counts already (a field's inline bytes are the parent's).
    counted_above: u64,
    children: Vec<Node>,
}

impl Node {
    fn new(name: impl Into<Cow<'static, str>>, bytes: u64, counted_above: u64) -> Node {
        Node {
            name: name.into(),
            bytes,
            counted_above,
            children: Vec::new(),
        }
    }

    /// Adds `child` to this node: its bytes beyond what this node counts already, and the node
    /// itself among the children (merged with one of the same name).
    fn adopt(&mut self, child: Node, keep: bool) {
        self.bytes += child.bytes - child.counted_above;
        if !keep || child.bytes == 0 {
            return;
        }
        match self.children.iter_mut().find(|c| c.name == child.name) {
            Some(same) => same.merge(child),
            None => self.children.push(child),
        }
    }

    fn merge(&mut self, other: Node) {
        self.bytes += other.bytes;
        self.counted_above += other.counted_above;
        for c in other.children {
            match self.children.iter_mut().find(|m| m.name == c.name) {
                Some(same) => same.merge(c),
                None => self.children.push(c),
            }
        }
    }

    fn into_referents(self) -> Vec<Referent> {
        let mut out: Vec<Referent> = self
            .children
            .into_iter()
            .map(|c| Referent {
                name: c.name.clone().into_owned(),
                bytes: c.bytes,
                children: c.into_referents(),
            })
            .collect();
        out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
        out
    }
}

/// What a [`Footprint`] implementation reports to: the traversal in progress.
///
/// It keeps the tree of parts to the depth asked (deeper parts are counted in their nearest
/// shown ancestor), and the addresses of the shared blocks (`Arc`, `Rc`) seen, so that a block
/// reached twice is counted once.
pub struct Visitor<'a> {
    /// The parts from the root to the current one.
    stack: Vec<Node>,
    /// Parts deeper than this are folded into their parent.
    depth: u32,
    seen: &'a mut hashbrown::HashSet<usize>,
}

impl<'a> Visitor<'a> {
    fn new(depth: u32, seen: &'a mut hashbrown::HashSet<usize>, inline: usize) -> Visitor<'a> {
        Visitor {
            stack: vec![Node::new("", inline as u64, 0)],
            depth,
            seen,
        }
    }

    fn finish(mut self) -> Node {
        while self.stack.len() > 1 {
            self.pop();
        }
        self.stack.pop().unwrap_or_else(|| Node::new("", 0, 0))
    }

    fn current(&mut self) -> &mut Node {
        // The root is pushed in `new` and popped only by `finish`, which takes the visitor.
        let last = self.stack.len() - 1;
        &mut self.stack[last]
    }

    fn push(&mut self, name: &'static str, bytes: u64, counted_above: u64) {
        self.stack.push(Node::new(name, bytes, counted_above));
    }

    fn pop(&mut self) {
        if self.stack.len() < 2 {
            return;
        }
        let child = self.stack.pop().unwrap_or_else(|| Node::new("", 0, 0));
        // The child is at depth `len` (the root is 0); it is shown within the depth asked.
        let keep = self.stack.len() as u32 <= self.depth;
        self.current().adopt(child, keep);
    }

    /// Counts a heap block of `bytes` that the value owns (a buffer it allocated), in the
    /// current part.
    pub fn heap(&mut self, bytes: usize) {
        self.current().bytes += bytes as u64;
    }

    /// Visits a part of the value stored inline in it (a field) as a part named `name`: its
    /// inline bytes (already the value's) and what it owns.
    pub fn field<T: Footprint + ?Sized>(&mut self, name: &'static str, value: &T) {
        let inline = size_of_val(value) as u64;
        self.push(name, inline, inline);
        value.footprint(self);
        self.pop();
    }

    /// Visits values stored in a heap block the value owns (a collection's items, whose block
    /// was counted with [`heap`](Self::heap)), as one part named `name`: their inline bytes
    /// and what they own.
    pub fn items<'v, T: Footprint + 'v>(
        &mut self,
        name: &'static str,
        items: impl IntoIterator<Item = &'v T>,
    ) {
        self.push(name, 0, 0);
        for item in items {
            let inline = size_of_val(item) as u64;
            let node = self.current();
            node.bytes += inline;
            node.counted_above += inline;
            item.footprint(self);
        }
        self.pop();
    }

    /// Visits a block shared by several owners (an `Arc`'s or an `Rc`'s), at `address`, of
    /// `bytes`, holding `value`: counted, with what `value` owns, in the current part the first
    /// time the traversal reaches it, and not again. Returns whether it was counted.
    pub fn shared<T: Footprint + ?Sized>(
        &mut self,
        address: *const (),
        bytes: usize,
        value: &T,
    ) -> bool {
        if !self.seen.insert(address as usize) {
            return false;
        }
        self.heap(bytes);
        value.footprint(self);
        true
    }
}

macro_rules! owns_nothing {
    ($($t:ty),* $(,)?) => {
        $(impl Footprint for $t {
            #[inline]
            fn footprint(&self, _: &mut Visitor<'_>) {}
        })*
    };
}

owns_nothing!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    char,
    (),
    str,
    std::time::Duration,
    std::time::Instant,
    std::time::SystemTime,
    std::num::NonZeroU8,
    std::num::NonZeroU16,
    std::num::NonZeroU32,
    std::num::NonZeroU64,
    std::num::NonZeroUsize,
    std::num::NonZeroI32,
    std::num::NonZeroI64,
    std::sync::atomic::AtomicBool,
    std::sync::atomic::AtomicU32,
    std::sync::atomic::AtomicU64,
    std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicI32,
    std::sync::atomic::AtomicI64,
    std::sync::atomic::AtomicIsize,
);

/// A borrow owns nothing: what it points to is its owner's.
impl<T: ?Sized> Footprint for &T {
    #[inline]
    fn footprint(&self, _: &mut Visitor<'_>) {}
}

impl<T: ?Sized> Footprint for std::marker::PhantomData<T> {
    #[inline]
    fn footprint(&self, _: &mut Visitor<'_>) {}
}

impl Footprint for String {
    fn footprint(&self, v: &mut Visitor<'_>) {
        v.heap(self.capacity());
    }
}

impl Footprint for OsString {
    fn footprint(&self, v: &mut Visitor<'_>) {
        v.heap(self.capacity());
    }
}

impl Footprint for PathBuf {
    fn footprint(&self, v: &mut Visitor<'_>) {
        v.heap(self.capacity());
    }
}

impl Footprint for CString {
    fn footprint(&self, v: &mut Visitor<'_>) {
        // A boxed slice of the bytes and the nul.
        v.heap(self.as_bytes_with_nul().len());
    }
}

/// The name of a collection's items as a part.
const ITEMS: &str = "[items]";

impl<T: Footprint> Footprint for [T] {
    fn footprint(&self, v: &mut Visitor<'_>) {
        // The items' inline bytes are counted by the slice's holder (an array's, or the block
        // of a `Box<[T]>`): shown in the part, not added again.
        let inline = size_of_val(self) as u64;
        v.push(ITEMS, inline, inline);
        for item in self {
            item.footprint(v);
        }
        v.pop();
    }
}

impl<T: Footprint, const N: usize> Footprint for [T; N] {
    fn footprint(&self, v: &mut Visitor<'_>) {
        self.as_slice().footprint(v);
    }
}

impl<T: Footprint> Footprint for Vec<T> {
    fn footprint(&self, v: &mut Visitor<'_>) {
        v.heap(self.capacity() * std::mem::size_of::<T>());
        v.items(ITEMS, self.iter());
    }
}

impl<T: Footprint> Footprint for VecDeque<T> {
    fn footprint(&self, v: &mut Visitor<'_>) {
        v.heap(self.capacity() * std::mem::size_of::<T>());
        v.items(ITEMS, self.iter());
    }
}

impl<T: Footprint> Footprint for BinaryHeap<T> {
    fn footprint(&self, v: &mut Visitor<'_>) {
        v.heap(self.capacity() * std::mem::size_of::<T>());
        v.items(ITEMS, self.iter());
    }
}

impl<T: Footprint> Footprint for LinkedList<T> {
    fn footprint(&self, v: &mut Visitor<'_>) {
        // One block a node: the links to the next and the previous node, then the item.
        let node = Layout::new::<[usize; 2]>()
            .extend(Layout::new::<T>())
            .map_or(0, |(l, _)| l.pad_to_align().size());
        v.heap(self.len() * node);
        v.items(ITEMS, self.iter());
    }
}

/// The bytes of the table of a `HashMap`/`HashSet` of `capacity` (as it reports) holding items
/// of type `T`: the standard library's hash table (hashbrown) allocates one block of a
/// power-of-two number of buckets, the items, then a control byte a bucket and one group of
/// control bytes more.
fn hash_table_bytes<T>(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    // The widest group the table compares at once: SSE2's 16 bytes, NEON's 8, else a word.
    let group = if cfg!(all(
        any(target_arch = "x86", target_arch = "x86_64"),
        target_feature = "sse2"
    )) {
        16
    } else if cfg!(all(target_arch = "aarch64", target_feature = "neon")) {
        8
    } else {
        std::mem::size_of::<usize>()
    };
    // Up to 7/8 of the buckets are used, all but one of 4 or 8 buckets.
    let buckets = if capacity < 4 {
        4
    } else if capacity < 8 {
        8
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    let align = std::mem::align_of::<T>().max(group);
    let items = (std::mem::size_of::<T>() * buckets).next_multiple_of(align);
    items + buckets + group
}

impl<K: Footprint, V: Footprint, S> Footprint for HashMap<K, V, S> {
    fn footprint(&self, v: &mut Visitor<'_>) {
        v.heap(hash_table_bytes::<(K, V)>(self.capacity()));
        v.items("[keys]", self.keys());
        v.items("[values]", self.values());
    }
}

impl<T: Footprint, S> Footprint for HashSet<T, S> {
    fn footprint(&self, v: &mut Visitor<'_>) {
        v.heap(hash_table_bytes::<T>(self.capacity()));
        v.items(ITEMS, self.iter());
    }
}

/// The fewest bytes of B-tree nodes that can hold `len` entries of `K` and `V`: nodes of 11
/// entries each (the standard library's node size), one of them, the root, with its 12 edges
/// when there are several.
fn btree_bytes<K, V>(len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    const CAPACITY: usize = 11;
    let leaf = Layout::new::<(usize, u16, u16)>()
        .extend(Layout::new::<[K; CAPACITY]>())
        .and_then(|(l, _)| l.extend(Layout::new::<[V; CAPACITY]>()))
        .map_or(0, |(l, _)| l.pad_to_align().size());
    let nodes = len.div_ceil(CAPACITY);
    let edges = if nodes > 1 {
        (CAPACITY + 1) * std::mem::size_of::<usize>()
    } else {
        0
    };
    nodes * leaf + edges
}

impl<K: Footprint, V: Footprint> Footprint for BTreeMap<K, V> {
    fn footprint(&self, v: &mut Visitor<'_>) {
        v.heap(btree_bytes::<K, V>(self.len()));
        v.items("[keys]", self.keys());
        v.items("[values]", self.values());
    }
}

impl<T: Footprint> Footprint for BTreeSet<T> {
    fn footprint(&self, v: &mut Visitor<'_>) {
        v.heap(btree_bytes::<T, ()>(self.len()));
        v.items(ITEMS, self.iter());
    }
}

impl<T: Footprint + ?Sized> Footprint for Box<T> {
    fn footprint(&self, v: &mut Visitor<'_>) {
        // The box's block holds the value: its inline bytes (none for a zero-sized value,
        // which allocates nothing), then what it owns.
        v.heap(size_of_val(&**self));
        (**self).footprint(v);
    }
}

/// The bytes of the block of an `Arc` or an `Rc` holding `value`: the two counts, then the
/// value.
fn counted_block<T: ?Sized>(value: &T) -> usize {
    Layout::new::<[usize; 2]>()
        .extend(Layout::for_value(value))
        .map_or(0, |(l, _)| l.pad_to_align().size())
}

impl<T: Footprint + ?Sized> Footprint for Arc<T> {
    fn footprint(&self, v: &mut Visitor<'_>) {
        let address = Arc::as_ptr(self) as *const ();
        v.shared(address, counted_block(&**self), &**self);
    }
}

impl<T: Footprint + ?Sized> Footprint for Rc<T> {
    fn footprint(&self, v: &mut Visitor<'_>) {
        let address = Rc::as_ptr(self) as *const ();
        v.shared(address, counted_block(&**self), &**self);
    }
}

impl<T: Footprint> Footprint for Option<T> {
    fn footprint(&self, v: &mut Visitor<'_>) {
        if let Some(value) = self {
            value.footprint(v);
        }
    }
}

impl<T: Footprint, E: Footprint> Footprint for Result<T, E> {
    fn footprint(&self, v: &mut Visitor<'_>) {
        match self {
            Ok(value) => value.footprint(v),
            Err(e) => e.footprint(v),
        }
    }
}

impl<B: ToOwned + ?Sized> Footprint for Cow<'_, B>
where
    B::Owned: Footprint,
{
    fn footprint(&self, v: &mut Visitor<'_>) {
        if let Cow::Owned(owned) = self {
            owned.footprint(v);
        }
    }
}

macro_rules! tuples {
    ($(($($name:ident $index:tt),+))*) => {
        $(impl<$($name: Footprint),+> Footprint for ($($name,)+) {
            fn footprint(&self, v: &mut Visitor<'_>) {
                $(v.field(stringify!($index), &self.$index);)+
            }
        })*
    };
}

tuples! {
    (A 0)
    (A 0, B 1)
    (A 0, B 1, C 2)
    (A 0, B 1, C 2, D 3)
    (A 0, B 1, C 2, D 3, E 4)
    (A 0, B 1, C 2, D 3, E 4, F 5)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11)
}

/// A size by traversal of a value of a type with no [`Footprint`] but an
/// `allocative::Allocative` (feature `allocative`): allocative's own walk, its flame graph read
/// back into parts (allocative names a part by its field, and by its type below it).
#[cfg(feature = "allocative")]
pub(crate) fn allocative_of<T: allocative::Allocative>(value: &T, depth: u32) -> FootprintSize {
    let mut builder = allocative::FlameGraphBuilder::default();
    builder.visit_root(value);
    let output = builder.finish();
    let graph = output.flamegraph();
    let bytes = graph.total_size() as u64;
    // Folded stacks: `root;part;part… self-bytes`, one line a node with bytes of its own.
    let mut root = Node::new("", 0, 0);
    for line in graph.write().lines() {
        let Some((path, own)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(own) = own.parse::<u64>() else {
            continue;
        };
        root.bytes += own;
        // The first frame is the root value itself.
        let mut node = &mut root;
        for part in path.split(';').skip(1).take(depth as usize) {
            let at = match node.children.iter().position(|c| c.name == part) {
                Some(at) => at,
                None => {
                    node.children.push(Node::new(part.to_owned(), 0, 0));
                    node.children.len() - 1
                }
            };
            node = &mut node.children[at];
            node.bytes += own;
        }
    }
    debug_assert_eq!(root.bytes, bytes);
    FootprintSize {
        bytes,
        referents: root.into_referents(),
    }
}
