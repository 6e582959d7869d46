//! [`Resources`]: shared things tasks need (database pools, HTTP clients, configuration),
//! handed to every task through [`TaskCx::resource`](crate::TaskCx::resource).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// A set of shared values keyed by type. A worker owns one; its tasks read from it.
///
/// ```
/// use std::sync::Arc;
/// struct Db { url: String }
/// let mut resources = errand_core::Resources::new();
/// resources.insert(Arc::new(Db { url: "sqlite://x".into() }));
/// assert_eq!(resources.get::<Db>().unwrap().url, "sqlite://x");
/// assert!(resources.get::<String>().is_none());
/// ```
#[derive(Clone, Default)]
pub struct Resources {
    map: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Resources {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value`, replacing any value of the same type.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: Arc<T>) -> &mut Self {
        self.map.insert(TypeId::of::<T>(), value);
        self
    }

    /// The value of type `T`, if one was inserted.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.map
            .get(&TypeId::of::<T>())
            .and_then(|v| Arc::clone(v).downcast::<T>().ok())
    }
}

impl fmt::Debug for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Resources({} values)", self.map.len())
    }
}
