//! The in-place guard of the tape: a node remembers the storage versions of its inputs
//! (see `crate::tensor`'s module docs) and refuses to backpropagate if one changed.

use super::{Node, Op};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

impl Node {
    /// A node for `op` over `inputs`, recording their current versions.
    pub(crate) fn new(op: Op, inputs: Vec<Tensor>) -> Node {
        let versions = inputs.iter().map(Tensor::version).collect();
        Node {
            op,
            inputs,
            versions,
        }
    }

    /// [`Error::Modified`] naming the op if an input's storage was written in place since
    /// the node was recorded.
    pub(crate) fn check_versions(&self) -> Result<()> {
        for (i, (t, &saved)) in self.inputs.iter().zip(&self.versions).enumerate() {
            let now = t.version();
            if now != saved {
                return Err(Error::Modified {
                    op: self.op.name(),
                    input: i,
                    shape: t.shape().to_string(),
                    saved,
                    now,
                });
            }
        }
        Ok(())
    }
}
