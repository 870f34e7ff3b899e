pub struct Point {
    x: i64,
}

#[classtrack_macros::class]
impl Point {
    pub const fn origin() -> Self {
        Point { x: 0 }
    }
}

fn main() {
    let _ = Point::origin().x;
}
