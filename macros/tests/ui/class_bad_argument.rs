pub struct Point;

#[classtrack_macros::class(label = "points")]
impl Point {
    pub fn new() -> Self {
        Point
    }
}

fn main() {}
