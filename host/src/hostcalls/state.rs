//! `state`: a small key/value store private to one probe that survives
//! between its runs (not restarts).
//!
//! A run works on its own copy; the copy replaces the probe's store only
//! when the run ends without trapping, so a crashing run cannot leave half
//! its writes behind. Quota: `limits.state_bytes` over keys and values, and
//! at most [`MAX_KEYS`] keys.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use wasmtime::component::{HasSelf, Linker};

use super::{Capability, LoadScope, RunScope, Usage};
use crate::bindings::wasmprobe::plugin::state::{self as wit, Host, StateError};
use crate::config::ProbeConfig;

pub const MAX_KEYS: usize = 256;
pub const MAX_KEY_LEN: usize = 256;

/// A probe's persistent store, shared by its runs one at a time.
pub type ProbeState = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

/// The `state` unit: the store itself lives with the probe (it survives
/// reloads), so the grant is empty.
#[derive(Debug)]
pub struct State;

/// A run's working copy of its probe's store.
#[derive(Debug, Default)]
pub struct StateView {
    /// Where [`StateView::save`] writes; `None` keeps nothing.
    store: Option<ProbeState>,
    map: BTreeMap<String, Vec<u8>>,
    quota: u64,
    dirty: bool,
    usage: Arc<Usage>,
}

impl Capability for State {
    const NAME: &'static str = "state";
    type Grant = ();
    type Context = StateView;

    fn grant(_: &ProbeConfig, _: &mut LoadScope<'_>) -> Result<(), String> {
        Ok(())
    }

    fn context(_: Option<&Arc<()>>, run: &RunScope) -> StateView {
        let view = match &run.state {
            Some(store) => StateView::load(store, run.limits.state_bytes),
            None => StateView::default(),
        };
        StateView {
            usage: run.usage.clone(),
            ..view
        }
    }

    fn link<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut StateView,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, HasSelf<StateView>>(linker, get)
    }
}

impl StateView {
    pub(crate) fn load(store: &ProbeState, quota: u64) -> Self {
        let map = store.lock().unwrap_or_else(|e| e.into_inner()).clone();
        StateView {
            store: Some(store.clone()),
            map,
            quota,
            dirty: false,
            usage: Arc::default(),
        }
    }

    /// Writes the copy back; called only after a run that did not trap.
    pub(crate) fn save(self) {
        if let (true, Some(store)) = (self.dirty, &self.store) {
            *store.lock().unwrap_or_else(|e| e.into_inner()) = self.map;
        }
    }

    fn used(&self) -> u64 {
        self.map
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }

    pub(crate) fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.map.get(key).cloned()
    }

    pub(crate) fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), StateError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(StateError::InvalidKey);
        }
        let old = self
            .map
            .get(&key)
            .map_or(0, |v| (key.len() + v.len()) as u64);
        let new_keys = self.map.len() + usize::from(!self.map.contains_key(&key));
        let after = self.used() - old + (key.len() + value.len()) as u64;
        if after > self.quota || new_keys > MAX_KEYS {
            return Err(StateError::QuotaExceeded);
        }
        self.map.insert(key, value);
        self.dirty = true;
        Ok(())
    }

    pub(crate) fn delete(&mut self, key: &str) {
        if self.map.remove(key).is_some() {
            self.dirty = true;
        }
    }
}

impl Host for StateView {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        self.usage.call(State::NAME);
        Ok(StateView::get(self, &key))
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), StateError>> {
        self.usage.call(State::NAME);
        Ok(StateView::set(self, key, value))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.usage.call(State::NAME);
        StateView::delete(self, &key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_and_keys() {
        let store = ProbeState::default();
        let mut view = StateView::load(&store, 10);
        assert_eq!(view.set("a".into(), vec![0; 5]), Ok(()));
        assert_eq!(
            view.set("b".into(), vec![0; 5]),
            Err(StateError::QuotaExceeded)
        );
        assert_eq!(
            view.set("a".into(), vec![0; 9]),
            Ok(()),
            "replacing reuses room"
        );
        assert_eq!(view.set(String::new(), vec![]), Err(StateError::InvalidKey));
        view.save();
        assert_eq!(
            StateView::load(&store, 10).get("a").map(|v| v.len()),
            Some(9)
        );
    }

    #[test]
    fn unsaved_runs_leave_nothing() {
        let store = ProbeState::default();
        let mut view = StateView::load(&store, 100);
        let _ = view.set("k".into(), vec![1]);
        drop(view);
        assert!(StateView::load(&store, 100).get("k").is_none());
    }
}
