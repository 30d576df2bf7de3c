use crate::classify::*;
#[derive(Debug)]
pub struct ShapeCache;
impl ShapeCache {
    pub fn new(_c: usize) -> ShapeCache {
        ShapeCache
    }
    pub fn classify(&self, sql: &str) -> std::sync::Arc<Classification> {
        std::sync::Arc::new(classify(sql))
    }
}
