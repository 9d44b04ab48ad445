//! Structs read field by field (database rows, JSON members) without a `?` per field.
//!
//! Each `?` between owned fields is an exit of its own that drops the fields read so far; for a
//! struct of many strings those cleanup paths are most of the reader's code (a dozen-column row
//! reader shrinks from about 2.3 KB of wasm to 600 bytes without them). [`FirstError`] keeps the
//! first error and stands a default in for the missing field, so the struct is built on one
//! path and the error is returned once, at the end.

/// The first error of a run of reads.
#[must_use = "finish returns the first error"]
pub struct FirstError<E>(Option<E>);

impl<E> Default for FirstError<E> {
    fn default() -> Self {
        FirstError(None)
    }
}

impl<E> FirstError<E> {
    /// No error yet.
    pub fn new() -> Self {
        FirstError(None)
    }

    /// The value read, or a default in its place after keeping the error.
    pub fn keep<T: Default>(&mut self, read: Result<T, E>) -> T {
        self.keep_or(read, T::default())
    }

    /// [`FirstError::keep`] for a type without a default: `stand_in` takes the failed read's
    /// place (and is never seen: [`FirstError::finish`] returns the error).
    pub fn keep_or<T>(&mut self, read: Result<T, E>, stand_in: T) -> T {
        match read {
            Ok(v) => v,
            Err(e) => {
                self.0.get_or_insert(e);
                stand_in
            }
        }
    }

    /// `value` when every read succeeded, else the first error (and `value` is dropped).
    pub fn finish<T>(self, value: T) -> Result<T, E> {
        match self.0 {
            None => Ok(value),
            Some(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FirstError;

    #[test]
    fn the_first_error_wins_and_success_keeps_the_value() {
        let mut e = FirstError::new();
        let a: String = e.keep(Ok("a".to_owned()));
        let b: String = e.keep(Err("first"));
        let c: i64 = e.keep(Err("second"));
        let d = e.keep_or(Err("third"), 'd');
        assert_eq!((a.as_str(), b.as_str(), c, d), ("a", "", 0, 'd'));
        assert_eq!(e.finish(()), Err("first"));

        let mut e: FirstError<&str> = FirstError::new();
        let v: i64 = e.keep(Ok(7));
        assert_eq!(e.finish(v), Ok(7));
    }
}
