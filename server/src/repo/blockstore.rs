//! The block store port: content-addressed blocks by CID.
//!
//! Synchronous on purpose: Durable Object SQLite is synchronous, and no method
//! needs `Send`.

use super::error::{RepoError, Result};
use cid::Cid;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// Blocks by CID, in CID order (deterministic iteration for CARs and tests).
pub type BlockMap = BTreeMap<Cid, Vec<u8>>;

/// Where repository blocks live (SQLite table, memory).
pub trait BlockStore {
    /// The bytes of a block, or `None` when it is not stored.
    fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>>;
    /// Whether a block is stored.
    fn has(&self, cid: &Cid) -> Result<bool> {
        Ok(self.get(cid)?.is_some())
    }
    /// Stores a block. The caller guarantees `bytes` hash to `cid`.
    fn put(&mut self, cid: Cid, bytes: Vec<u8>) -> Result<()>;
    /// Stores many blocks; stores with batches override this.
    fn put_many(&mut self, blocks: BlockMap) -> Result<()> {
        for (cid, bytes) in blocks {
            self.put(cid, bytes)?;
        }
        Ok(())
    }
    /// Whether every tree node this store returns was fully checked before it was stored
    /// (canonical encoding, keys at their layer): then reading one back skips those checks.
    /// Only the repository's own table says yes; anything that holds blocks from outside
    /// (a CAR, an import's stage) must not.
    fn checked(&self) -> bool {
        false
    }
}

/// Reads a block that must exist.
pub fn get_required(store: &(impl BlockStore + ?Sized), cid: &Cid) -> Result<Vec<u8>> {
    store.get(cid)?.ok_or(RepoError::MissingBlock(*cid))
}

/// Blocks in memory: tests, proofs, diffs, CAR imports.
#[derive(Debug, Default, Clone)]
pub struct MemoryBlockStore {
    blocks: BlockMap,
}

impl MemoryBlockStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
    /// A store holding exactly these blocks.
    pub fn from_blocks(blocks: BlockMap) -> Self {
        Self { blocks }
    }
    /// Number of blocks held.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }
    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
    /// All blocks, in CID order.
    pub fn blocks(&self) -> &BlockMap {
        &self.blocks
    }
}

impl BlockStore for MemoryBlockStore {
    fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>> {
        Ok(self.blocks.get(cid).cloned())
    }
    fn has(&self, cid: &Cid) -> Result<bool> {
        Ok(self.blocks.contains_key(cid))
    }
    fn put(&mut self, cid: Cid, bytes: Vec<u8>) -> Result<()> {
        self.blocks.insert(cid, bytes);
        Ok(())
    }
}

/// An overlay over a read-only store for one operation: writes are collected
/// (a commit's new blocks) instead of stored, and reads that reach the base
/// store are recorded (the blocks a proof or a verifier needed).
pub struct TrackingStore<'a, S: BlockStore + ?Sized> {
    base: &'a S,
    written: BlockMap,
    read: RefCell<BlockMap>,
}

impl<'a, S: BlockStore + ?Sized> TrackingStore<'a, S> {
    /// Wraps `base`; nothing written, nothing read yet.
    pub fn new(base: &'a S) -> Self {
        Self {
            base,
            written: BlockMap::new(),
            read: RefCell::new(BlockMap::new()),
        }
    }
    /// Blocks written through this overlay.
    pub fn written(&self) -> &BlockMap {
        &self.written
    }
    /// Blocks read from the base store (not those served from the overlay).
    pub fn read_blocks(&self) -> BlockMap {
        self.read.borrow().clone()
    }
    /// Consumes the overlay: (written, read).
    pub fn into_parts(self) -> (BlockMap, BlockMap) {
        (self.written, self.read.into_inner())
    }
}

impl<S: BlockStore + ?Sized> BlockStore for TrackingStore<'_, S> {
    fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>> {
        if let Some(bytes) = self.written.get(cid) {
            return Ok(Some(bytes.clone()));
        }
        let found = self.base.get(cid)?;
        if let Some(bytes) = &found {
            self.read.borrow_mut().insert(*cid, bytes.clone());
        }
        Ok(found)
    }
    fn has(&self, cid: &Cid) -> Result<bool> {
        Ok(self.written.contains_key(cid) || self.base.has(cid)?)
    }
    fn put(&mut self, cid: Cid, bytes: Vec<u8>) -> Result<()> {
        self.written.insert(cid, bytes);
        Ok(())
    }
    /// The overlay holds what the tree code encoded itself.
    fn checked(&self) -> bool {
        self.base.checked()
    }
}

impl<S: BlockStore + ?Sized> BlockStore for &mut S {
    fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>> {
        (**self).get(cid)
    }
    fn has(&self, cid: &Cid) -> Result<bool> {
        (**self).has(cid)
    }
    fn checked(&self) -> bool {
        (**self).checked()
    }
    fn put(&mut self, cid: Cid, bytes: Vec<u8>) -> Result<()> {
        (**self).put(cid, bytes)
    }
}
