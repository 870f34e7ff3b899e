pub struct Cache {
    entries: Vec<u64>,
}

#[classtrack_macros::class]
impl Cache {
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

fn main() {}
