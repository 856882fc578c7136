//! One lock per image name: starts share it, an import or a GC removal holds it alone.

use std::sync::{Arc, Mutex};

/// Guards each image from its check to the clone made from it: starts of a present image share
/// the lock, an import or a GC removal holds it alone. Different images proceed in parallel. An
/// entry exists only while someone holds or waits for that image's lock.
#[derive(Default)]
pub struct ImageLocks {
    locks: Mutex<std::collections::HashMap<String, Arc<tokio::sync::RwLock<()>>>>,
}

impl ImageLocks {
    fn entry(&self, name: &str) -> LockEntry<'_> {
        LockEntry {
            lock: self.table().entry(name.to_string()).or_default().clone(),
            locks: self,
            name: name.to_string(),
        }
    }

    /// Held by a start that clones the image: other starts may hold it too.
    pub(super) async fn shared(&self, name: &str) -> ImageLock<'_> {
        let entry = self.entry(name);
        let guard = entry.lock.clone().read_owned().await;
        ImageLock {
            _guard: Guard::Shared { _read: guard },
            _entry: entry,
        }
    }

    /// Held alone, by an import.
    pub(super) async fn exclusive(&self, name: &str) -> ImageLock<'_> {
        let entry = self.entry(name);
        let guard = entry.lock.clone().write_owned().await;
        ImageLock {
            _guard: Guard::Exclusive { _write: guard },
            _entry: entry,
        }
    }

    /// The lock alone, unless someone holds it (an import or a clone of this image is under way).
    pub(super) fn try_exclusive(&self, name: &str) -> Option<ImageLock<'_>> {
        let entry = self.entry(name);
        let guard = entry.lock.clone().try_write_owned().ok()?;
        Some(ImageLock {
            _guard: Guard::Exclusive { _write: guard },
            _entry: entry,
        })
    }

    /// How many images have a lock held or awaited.
    #[cfg(test)]
    pub(super) fn active(&self) -> usize {
        self.table().len()
    }

    fn table(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<tokio::sync::RwLock<()>>>>
    {
        self.locks.lock().expect("image lock table poisoned")
    }
}

/// Field order matters: the guard is released before the entry decides whether to go.
pub struct ImageLock<'a> {
    _guard: Guard,
    _entry: LockEntry<'a>,
}

/// Held for its release on drop.
enum Guard {
    Shared {
        _read: tokio::sync::OwnedRwLockReadGuard<()>,
    },
    Exclusive {
        _write: tokio::sync::OwnedRwLockWriteGuard<()>,
    },
}

impl ImageLock<'_> {
    /// Lets other starts in once an import is done, without a gap in which GC could remove it.
    pub(super) fn downgrade(self) -> Self {
        let ImageLock { _guard, _entry } = self;
        let _guard = match _guard {
            Guard::Exclusive { _write } => Guard::Shared {
                _read: _write.downgrade(),
            },
            shared => shared,
        };
        ImageLock { _guard, _entry }
    }
}

struct LockEntry<'a> {
    locks: &'a ImageLocks,
    name: String,
    lock: Arc<tokio::sync::RwLock<()>>,
}

impl Drop for LockEntry<'_> {
    fn drop(&mut self) {
        let mut table = self.locks.table();
        // Ours and the table's: nobody else holds or waits for this image.
        if Arc::strong_count(&self.lock) == 2 {
            table.remove(&self.name);
        }
    }
}
