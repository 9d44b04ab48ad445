//! The repository core's [`BlockStore`] port over the `repo_block` table.

use super::error::{Result, StorageError};
use super::sql::{placeholders, Sql, SqlValue, MAX_PARAMS};
use crate::repo::blockstore::{BlockMap, BlockStore, MemoryBlockStore};
use crate::repo::mst::{Link, Node};
use crate::repo::{Commit, RepoError};
use cid::Cid;
use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;

/// Parses a CID read from the database.
pub(crate) fn stored_cid(s: &str) -> Result<Cid> {
    crate::data::parse_cid(s).map_err(|e| StorageError::Corrupt(format!("CID {s:?}: {e}")))
}

/// Blocks recently read, kept across requests by a long-lived owner (the
/// Durable Object): the top of the MST is read by every commit. Blocks are
/// content-addressed, so a cached block is never stale; the cache is simply
/// emptied when it grows past its budget.
pub struct BlockCache {
    blocks: RefCell<BlockMap>,
    bytes: Cell<usize>,
    budget: usize,
    hits: Cell<u64>,
}

impl BlockCache {
    /// A cache holding up to about `budget` bytes of blocks.
    pub fn new(budget: usize) -> Self {
        Self {
            blocks: RefCell::new(BlockMap::new()),
            bytes: Cell::new(0),
            budget,
            hits: Cell::new(0),
        }
    }

    /// Reads served from the cache so far.
    pub fn hits(&self) -> u64 {
        self.hits.get()
    }

    fn get(&self, cid: &Cid) -> Option<Vec<u8>> {
        let found = self.blocks.borrow().get(cid).cloned();
        if found.is_some() {
            self.hits.set(self.hits.get() + 1);
        }
        found
    }

    /// Keeps `bytes` as the block `cid` (which must be their CID: nothing checks it here).
    pub fn insert(&self, cid: Cid, bytes: &[u8]) {
        if bytes.len() > self.budget {
            return;
        }
        if self.bytes.get() + bytes.len() > self.budget {
            self.blocks.borrow_mut().clear();
            self.bytes.set(0);
        }
        self.bytes.set(self.bytes.get() + bytes.len());
        self.blocks.borrow_mut().insert(cid, bytes.to_vec());
    }
}

/// Repository blocks in SQL. Reads go to the table (through a
/// [`BlockCache`] if one is given); writes through the port are tagged with
/// the revision given at construction.
///
/// Commits do not write through this store: [`super::persist_commit`] stores
/// a commit's blocks together with everything else in one transaction.
pub struct SqlBlockStore<'a> {
    db: &'a dyn Sql,
    rev: Option<String>,
    cache: Option<&'a BlockCache>,
}

impl<'a> SqlBlockStore<'a> {
    /// A store for reading (writes through the port fail).
    pub fn new(db: &'a dyn Sql) -> Self {
        Self {
            db,
            rev: None,
            cache: None,
        }
    }

    /// A store whose writes are tagged with `rev` (the commit that adds them).
    pub fn for_rev(db: &'a dyn Sql, rev: &str) -> Self {
        Self {
            db,
            rev: Some(rev.to_owned()),
            cache: None,
        }
    }

    /// Serves `get` from `cache` when it can and fills it. `has` and the
    /// batched reads always ask the database (they answer "is it stored").
    pub fn with_cache(mut self, cache: &'a BlockCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Reads many blocks in few statements; missing ones are absent from the
    /// result.
    pub fn get_many(&self, cids: &[Cid]) -> Result<BlockMap> {
        get_blocks(self.db, cids)
    }

    /// Loads a whole repository (commit, MST nodes, records) into memory,
    /// one batched query per tree level instead of one per node. For walks
    /// that visit everything: verification, CAR export of small repositories.
    pub fn load_repo(&self, commit_cid: &Cid) -> Result<MemoryBlockStore> {
        load_repo(self.db, commit_cid)
    }
}

impl BlockStore for SqlBlockStore<'_> {
    fn get(&self, cid: &Cid) -> crate::repo::error::Result<Option<Vec<u8>>> {
        if let Some(bytes) = self.cache.and_then(|c| c.get(cid)) {
            return Ok(Some(bytes));
        }
        let row = self.db.execute(
            "SELECT bytes FROM repo_block WHERE cid = ?",
            &[SqlValue::Text(crate::data::cid_string(cid))],
        )?;
        match row.into_iter().next() {
            Some(row) => {
                let bytes = row.into_blob(0)?;
                if let Some(cache) = self.cache {
                    cache.insert(*cid, &bytes);
                }
                Ok(Some(bytes))
            }
            None => Ok(None),
        }
    }

    fn has(&self, cid: &Cid) -> crate::repo::error::Result<bool> {
        let rows = self.db.execute(
            "SELECT 1 FROM repo_block WHERE cid = ?",
            &[SqlValue::Text(crate::data::cid_string(cid))],
        )?;
        Ok(!rows.is_empty())
    }

    fn put(&mut self, cid: Cid, bytes: Vec<u8>) -> crate::repo::error::Result<()> {
        let mut one = BlockMap::new();
        one.insert(cid, bytes);
        self.put_many(one)
    }

    /// The repository's table holds the tree nodes this PDS encoded itself, and those of an
    /// import, which its walk decoded with every check (from the stage) before they were
    /// swapped in.
    fn checked(&self) -> bool {
        true
    }

    fn put_many(&mut self, blocks: BlockMap) -> crate::repo::error::Result<()> {
        let Some(rev) = &self.rev else {
            return Err(RepoError::Storage(
                "block store opened read-only (no rev to tag writes with)".into(),
            ));
        };
        put_blocks(self.db, &blocks, rev)?;
        Ok(())
    }
}

/// Inserts blocks (already-stored ones are left as they are), batched.
pub(crate) fn put_blocks(db: &dyn Sql, blocks: &BlockMap, rev: &str) -> Result<()> {
    let all: Vec<(&Cid, &Vec<u8>)> = blocks.iter().collect();
    for chunk in all.chunks(MAX_PARAMS / 3) {
        let rows = vec!["(?, ?, ?)"; chunk.len()].join(", ");
        let mut params = Vec::with_capacity(chunk.len() * 3);
        for (cid, bytes) in chunk {
            params.push(SqlValue::Text(crate::data::cid_string(cid)));
            params.push(SqlValue::Blob((*bytes).clone()));
            params.push(SqlValue::from(rev));
        }
        db.execute(
            &format!("INSERT OR IGNORE INTO repo_block (cid, bytes, rev) VALUES {rows}"),
            &params,
        )?;
    }
    Ok(())
}

/// Reads blocks by CID, batched; missing ones are absent from the result.
pub(crate) fn get_blocks(db: &dyn Sql, cids: &[Cid]) -> Result<BlockMap> {
    let mut out = BlockMap::new();
    for chunk in cids.chunks(MAX_PARAMS) {
        let params: Vec<SqlValue> = chunk
            .iter()
            .map(|c| SqlValue::Text(crate::data::cid_string(c)))
            .collect();
        let rows = db.execute(
            &format!(
                "SELECT cid, bytes FROM repo_block WHERE cid IN ({})",
                placeholders(chunk.len())
            ),
            &params,
        )?;
        for row in rows {
            let cid = stored_cid(&row.text(0)?)?;
            out.insert(cid, row.into_blob(1)?);
        }
    }
    Ok(out)
}

/// See [`SqlBlockStore::load_repo`]. Missing blocks fail, as the verifier
/// would.
pub(crate) fn load_repo(db: &dyn Sql, commit_cid: &Cid) -> Result<MemoryBlockStore> {
    collect_repo(&mut |cids| get_blocks(db, cids), commit_cid)
}

/// The blocks of the repository at `commit_cid` (commit, MST nodes,
/// records) and nothing else, read from any store: drops the unreachable
/// blocks a CAR may carry.
pub fn reachable_blocks(
    source: &(impl BlockStore + ?Sized),
    commit_cid: &Cid,
) -> Result<MemoryBlockStore> {
    collect_repo(
        &mut |cids| {
            let mut out = BlockMap::new();
            for cid in cids {
                if let Some(bytes) = source.get(cid)? {
                    out.insert(*cid, bytes);
                }
            }
            Ok(out)
        },
        commit_cid,
    )
}

/// Walks a repository level by level, fetching each level's nodes and
/// records in one call of `fetch` (which omits blocks it does not have).
fn collect_repo(
    fetch: &mut dyn FnMut(&[Cid]) -> Result<BlockMap>,
    commit_cid: &Cid,
) -> Result<MemoryBlockStore> {
    let mut store = MemoryBlockStore::new();
    let commit_bytes = fetch(&[*commit_cid])?
        .remove(commit_cid)
        .ok_or(RepoError::MissingBlock(*commit_cid))?;
    let commit = Commit::decode(&commit_bytes)?;
    store.put(*commit_cid, commit_bytes)?;

    // Breadth-first: each round fetches every node of one level and the
    // records they point at. Layers come from the parent, as the verifier
    // checks them.
    let mut level: Vec<(Cid, Option<u32>)> = vec![(commit.data, None)];
    let mut seen: BTreeSet<Cid> = BTreeSet::new();
    while !level.is_empty() {
        let wanted: Vec<Cid> = level
            .iter()
            .map(|(c, _)| *c)
            .filter(|c| !store.has(c).unwrap_or(false))
            .collect();
        let mut fetched = fetch(&wanted)?;
        let mut next = Vec::new();
        let mut records = Vec::new();
        for (cid, layer) in level {
            let bytes = match fetched.remove(&cid) {
                Some(bytes) => bytes,
                None => store.get(&cid)?.ok_or(RepoError::MissingBlock(cid))?,
            };
            let node = Node::decode(&bytes, cid, layer)?;
            store.put(cid, bytes)?;
            for link in node.gaps.iter().flatten() {
                if let Link::Stored(child) = link {
                    if seen.insert(*child) {
                        next.push((*child, Some(node.layer.saturating_sub(1))));
                    }
                }
            }
            records.extend(node.vals.iter().copied().filter(|c| seen.insert(*c)));
        }
        let found = fetch(&records)?;
        for cid in &records {
            if !found.contains_key(cid) {
                return Err(RepoError::MissingBlock(*cid).into());
            }
        }
        store.put_many(found)?;
        level = next;
    }
    Ok(store)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::platform::native::NativeSql;
    use crate::repo::TrackingStore;
    use crate::storage::import::StagedBlocks;

    #[test]
    fn only_the_repository_table_vouches_for_its_tree_nodes() {
        let db = NativeSql::open_in_memory().unwrap();
        let table = SqlBlockStore::new(&db);
        let staged = StagedBlocks::new(&db);
        assert!(table.checked() && TrackingStore::new(&table).checked());
        // An import's stage holds blocks from outside until its walk has checked them.
        assert!(!staged.checked() && !TrackingStore::new(&staged).checked());
        assert!(!MemoryBlockStore::new().checked());
    }
}
