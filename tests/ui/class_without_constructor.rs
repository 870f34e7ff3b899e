pub struct Cache {
    entries: Vec<u64>,
}

#[classtrack::class]
impl Cache {
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

fn main() {}
