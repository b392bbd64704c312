//! Items the source delivered while a batch was being written, handled in order once the
//! write is done: reading and decoding the stream overlaps the Delta commits instead of
//! waiting for them.

use std::collections::VecDeque;

use crate::source::SourceItem;

/// Items read ahead, up to a limit of events.
pub(super) struct ReadAhead<E> {
    items: VecDeque<Result<SourceItem, E>>,
    events: usize,
    /// Nothing more is read ahead after an error or the end of a caught-up run.
    closed: bool,
}

impl<E> Default for ReadAhead<E> {
    fn default() -> Self {
        ReadAhead {
            items: VecDeque::new(),
            events: 0,
            closed: false,
        }
    }
}

impl<E> ReadAhead<E> {
    /// Whether to read another item while the write runs.
    pub fn wants_more(&self, limit: usize) -> bool {
        !self.closed && self.events < limit.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn push(&mut self, item: Result<SourceItem, E>) {
        self.events += events_of(&item);
        self.closed |= matches!(item, Err(_) | Ok(SourceItem::CaughtUp));
        self.items.push_back(item);
    }

    pub fn pop(&mut self) -> Option<Result<SourceItem, E>> {
        let item = self.items.pop_front()?;
        self.events -= events_of(&item);
        if self.items.is_empty() {
            self.closed = false;
        }
        Some(item)
    }

    /// Forgets what was read ahead (the source starts again from the last confirmed
    /// position).
    pub fn clear(&mut self) {
        *self = ReadAhead::default();
    }
}

/// An item's weight against the batch size: its change events, or 1.
fn events_of<E>(item: &Result<SourceItem, E>) -> usize {
    match item {
        Ok(SourceItem::Changes { transaction, .. }) => transaction.events.len().max(1),
        Ok(SourceItem::Part(part)) => part.events.len().max(1),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ahead_up_to_a_batch_and_hands_items_back_in_order() {
        let mut ahead = ReadAhead::<String>::default();
        assert!(ahead.wants_more(2));
        ahead.push(Ok(SourceItem::Up));
        assert!(ahead.wants_more(2));
        ahead.push(Ok(SourceItem::Down("gone".into())));
        assert!(!ahead.wants_more(2));
        assert!(matches!(ahead.pop(), Some(Ok(SourceItem::Up))));
        assert!(ahead.wants_more(2));
        assert!(matches!(ahead.pop(), Some(Ok(SourceItem::Down(_)))));
        assert!(ahead.pop().is_none());
    }

    #[test]
    fn stops_reading_after_an_error_or_the_end_until_those_are_handled() {
        let mut ahead = ReadAhead::<String>::default();
        ahead.push(Err("broken".into()));
        assert!(!ahead.wants_more(100));
        assert!(matches!(ahead.pop(), Some(Err(_))));
        assert!(ahead.wants_more(100));
        ahead.push(Ok(SourceItem::CaughtUp));
        assert!(!ahead.wants_more(100));
        ahead.clear();
        assert!(ahead.wants_more(100) && ahead.pop().is_none());
    }
}
